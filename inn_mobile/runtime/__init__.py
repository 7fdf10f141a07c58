"""Host loaders: open a bundle, let the native core fill a width's runtime files, run them.

``open_model(source, runtime, bucket)`` is the one entry point the CLI, the demo and the width
policy use. Every runtime returns a :class:`LoadedModel` (same call, ``input_shape``, ``startup`` in
milliseconds). The runtime modules (``litert``, ``executorch``) are imported only when asked for, so a
user ships and installs only the runtime they use.
"""

from __future__ import annotations

import importlib.util
import os

from inn_mobile.format.vocab import RUNTIMES, Runtime
from inn_mobile.runtime.reader import LoadedModel, Startup
from inn_mobile.runtime.width_cache import WidthCache

__all__ = ["RUNTIMES", "LoadedModel", "Startup", "WidthCache", "check_runtime", "installed", "open_model"]


def _missing(rt: Runtime) -> list[str]:
    return [p for p in rt.packages if importlib.util.find_spec(p) is None]


def installed() -> list[str]:
    """Runtime names whose Python packages are installed (``pip install inn-mobile[litert]`` etc.)."""
    return [name for name, rt in RUNTIMES.items() if not _missing(rt)]


def check_runtime(name: str) -> Runtime:
    """The registry entry of a runtime name, or a ``ValueError`` that lists the choices or says what to install."""
    if name not in RUNTIMES:
        raise ValueError(f"unknown runtime {name!r}; choose one of {sorted(RUNTIMES)}")
    rt = RUNTIMES[name]
    missing = _missing(rt)
    if missing:
        raise ValueError(f"runtime {name!r} needs {missing}: pip install 'inn-mobile[{rt.family}]'")
    return rt


def open_model(source: str | os.PathLike | bytes, runtime: str, bucket: int | str | float = -1, *,
               threads: int = 1, cache_dir: str | os.PathLike | WidthCache | None = None) -> LoadedModel:
    """Load one width of a bundle (path or bytes) in ``runtime``: the core fills its files from the
    nodes, the runtime loads them. ``bucket``: index (negative counts from the widest), name
    (``"w0500"``) or width ratio (``0.5``). ``cache_dir``: a width cache (:mod:`inn_mobile.runtime.width_cache`):
    the first start of a width keeps its filled files there (a thread writes them while the runtime loads; a
    :class:`WidthCache` given here can :meth:`~WidthCache.wait` for it), later starts load them as plain
    files, each byte checked first (``startup.cache`` says which happened)."""
    rt = check_runtime(runtime)
    cache = cache_dir if isinstance(cache_dir, WidthCache) or cache_dir is None else WidthCache(cache_dir)
    if rt.family == "litert":
        from inn_mobile.runtime.litert import LiteRTModel

        return LiteRTModel.open(source, bucket=bucket, int8=rt.int8, threads=threads, cache=cache)
    from inn_mobile.runtime.executorch import ExecutorchModel

    return ExecutorchModel.open(source, bucket=bucket, int8=rt.int8, threads=threads, cache=cache)
