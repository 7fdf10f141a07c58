"""Progress bars that stay quiet when output is not a terminal (CI logs) unless asked."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], *, desc: str = "", total: int | None = None) -> Iterator[T]:
    """Wrap ``items`` in a tqdm bar on a terminal (or with ``INN_PROGRESS=1``); plain iteration otherwise."""
    show = os.environ.get("INN_PROGRESS", "1" if sys.stderr.isatty() else "0") == "1"
    if not show:
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, desc=desc, total=total, leave=False, dynamic_ncols=True)
