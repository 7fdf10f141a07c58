"""Host loaders: open a bundle, let the native core fill a bucket's runtime files, run them.

``open_model(source, runtime, bucket)`` is the one entry point the CLI, the demo and the width
policy use; the runtime modules (``litert``, ``executorch``) are imported only when asked for, so a
user ships and installs only the runtime they use.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

# runtime name in a bundle -> (module under inn_mobile.export / inn_mobile.runtime, int8 graph?)
RUNTIMES: dict[str, tuple[str, bool]] = {
    "litert": ("litert", False),
    "litert-i8": ("litert", True),
    "executorch": ("executorch", False),
    "executorch-i8": ("executorch", True),
}
_PACKAGES = {"litert": ("ai_edge_litert", "litert_torch"), "executorch": ("executorch",)}


def runtime_name(module: str, int8: bool) -> str:
    """The bundle's name for ``module``'s fp32 or int8 graphs (the exporters take theirs from here)."""
    return next(name for name, key in RUNTIMES.items() if key == (module, int8))


def installed() -> list[str]:
    """Runtime names whose Python packages are installed (``pip install inn-mobile[litert]`` etc.)."""
    ok = {m for m, pkgs in _PACKAGES.items() if all(importlib.util.find_spec(p) is not None for p in pkgs)}
    return [name for name, (module, _) in RUNTIMES.items() if module in ok]


def check_runtime(name: str) -> tuple[str, bool]:
    """``(module, int8)`` of a runtime name, or a ``ValueError`` that lists the choices."""
    if name not in RUNTIMES:
        raise ValueError(f"unknown runtime {name!r}; choose one of {sorted(RUNTIMES)}")
    module, int8 = RUNTIMES[name]
    missing = [p for p in _PACKAGES[module] if importlib.util.find_spec(p) is None]
    if missing:
        raise ValueError(f"runtime {name!r} needs {missing}: pip install 'inn-mobile[{module}]'")
    return module, int8


def open_model(source: str | os.PathLike | bytes, runtime: str, bucket: int | str, *, threads: int = 1) -> Any:
    """Load one bucket of a bundle in ``runtime``; the result is called like a module on float inputs."""
    module, int8 = check_runtime(runtime)
    if module == "litert":
        from .litert import LiteRTModel

        return LiteRTModel.open(source, bucket=bucket, int8=int8, threads=threads)
    from .executorch import ExecutorchModel

    return ExecutorchModel.open(source, bucket=bucket, int8=int8, threads=threads)
