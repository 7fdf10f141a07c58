"""Lowering an :class:`~inn_mobile.core.integral.IntegralModel` to mobile runtimes, one graph per width bucket.

Each runtime family has an exporter module with ``lower(model, bucket, example_input, *, int8=False,
calibration=None) -> list[runtime_file.Image]``: the runtime's files for that bucket with every
weight-bearing byte range recorded as a hole (see :mod:`inn_mobile.format.runtime_file`), so the bundle
ships the nodes once and no weights. ``EXPORTERS`` is the registry; exporters are imported only when
used, so a user installs only the runtimes they ship.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# runtime family (inn_mobile.format.vocab.Runtime.family) -> exporter module
EXPORTERS = {"litert": "inn_mobile.export.litert", "executorch": "inn_mobile.export.executorch"}


def exporter(family: str) -> ModuleType:
    """The exporter module of a runtime family (``ValueError`` for one that has none)."""
    if family not in EXPORTERS:
        raise ValueError(f"no exporter for runtime family {family!r}; known: {sorted(EXPORTERS)}")
    return importlib.import_module(EXPORTERS[family])
