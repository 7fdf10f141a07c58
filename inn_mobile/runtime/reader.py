"""What every host loader does before its runtime sees a byte: validate the bundle, find the width,
let the core fill that width's files; and, after, run inputs in chunks of the graph's batch.

The native core does the work, as on a device; ``reference=True`` uses the Python reference instead
(same bytes, much slower: for debugging and parity tests).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from inn_mobile import native
from inn_mobile.errors import NotInBundleError
from inn_mobile.format import bundle, reference
from inn_mobile.format.tables import Cascade
from inn_mobile.runtime.width_cache import WidthCache


@dataclass(frozen=True)
class Startup:
    """Where the time from bundle bytes to a ready model went, in milliseconds (every runtime)."""

    open_ms: float  # validate the bundle (CRCs, tables) and find the width and its graph
    fill_ms: float  # the core writes the width's weights into the runtime's files (width cache: a hit checks them)
    load_ms: float  # the runtime parses its files and prepares to run (interpreter / program + method)
    cache: str = ""  # "" without a width cache, else "hit" or "storing" (WidthCache.wait says when kept, or why not)

    @property
    def total_ms(self) -> float:
        return self.open_ms + self.fill_ms + self.load_ms


@runtime_checkable
class LoadedModel(Protocol):
    """What :func:`inn_mobile.runtime.open_model` returns for every runtime: one width, ready to run.

    Called like a module on float inputs ``[N, *input_shape[1:]]`` (any ``N``: the graph's fixed batch
    is handled in chunks), it returns float outputs. A runtime that can report its activation arena
    also has ``arena_bytes() -> int``.
    """

    name: str  # "<width> (<runtime>)"
    startup: Startup

    @property
    def input_shape(self) -> tuple[int, ...]: ...

    def __call__(self, x: torch.Tensor | np.ndarray) -> torch.Tensor: ...


class BundleReader:
    """A validated bundle: bucket lookup by index, name or width ratio, and graph filling."""

    def __init__(self, source: str | os.PathLike | bytes, *, reference: bool = False) -> None:
        """Validate ``source`` (a path, opened through a memory map: no copy of the file is held; or
        bytes, read in place)."""
        in_memory = isinstance(source, (bytes, bytearray, memoryview))
        try:
            if reference:
                self._py = bundle.decode(source if in_memory else Path(source).read_bytes())
                buckets = [{"name": b.name, "ratio": b.ratio} for b in self._py.buckets]
                self.graphs = set(self._py.graphs)
                self.macs = [b.macs for b in self._py.buckets]
                self.cascades = self._py.cascades
            else:
                self._core = native.NativeBundle(source) if in_memory else native.NativeBundle.from_file(source)
                # from the binary tables, as a device reads them (before 1.3: META, checked)
                buckets = [vars(self._core.bucket_info(k)) for k in range(self._core.bucket_count)]
                self.graphs = set(self._core.graphs())
                self.macs = [self._core.macs(k) for k in range(self._core.bucket_count)]  # MACS (1.4)
                self.cascades = self._core.cascades()  # CSCD (1.4)
        except (native.NativeError, bundle.BundleError) as e:
            raise bundle.BundleError(f"corrupted or invalid bundle: {e}") from e
        self.reference = reference
        self.names = [b.get("name", f"b{k}") for k, b in enumerate(buckets)]
        self.ratios = [b.get("ratio") for b in buckets]

    @classmethod
    def of(cls, source: str | os.PathLike | bytes | BundleReader, *, reference: bool = False) -> BundleReader:
        """``source`` itself if it is already a reader (one validation serves many loads, as when
        packing measures every width), else a new reader of it."""
        return source if isinstance(source, BundleReader) else cls(source, reference=reference)

    @property
    def native(self) -> native.NativeBundle:
        """The core's bundle (not with ``reference=True``)."""
        return self._core

    def bucket_index(self, bucket: int | str | float) -> int:
        """See :func:`inn_mobile.format.bundle.resolve_bucket`."""
        return bundle.resolve_bucket(self.names, self.ratios, bucket)

    def cascade(self, which: int | str) -> Cascade:
        """See :func:`inn_mobile.format.bundle.resolve_cascade`."""
        return bundle.resolve_cascade(self.cascades, which)

    def require_graph(self, k: int, runtime: str) -> None:
        """Raise :class:`NotInBundleError` (a ``KeyError``) unless the bundle has a ``runtime`` graph for
        bucket ``k``."""
        if (k, runtime) not in self.graphs:
            have = sorted(rt for b, rt in self.graphs if b == k)
            raise NotInBundleError(f"no {runtime!r} graph for width {self.names[k]!r} in this bundle "
                                   f"(it has {have or 'none'} there)")

    def fill(self, k: int, runtime: str) -> dict[str, bytearray | bytes]:
        """The runtime's files of bucket ``k`` with their weights written."""
        self.require_graph(k, runtime)
        if self.reference:
            return reference.fill(self._py, k, runtime)
        try:
            files = self._core.fill(k, runtime)
        except native.NativeError as e:
            raise bundle.BundleError(f"the core rejected the {runtime!r} graph of {self.names[k]!r}: {e}") from e
        self._core.release_pages()  # the runtime is about to copy the weights: do not hold the nodes too
        return files


@dataclass
class Prepared:
    """A width's runtime files, ready for the runtime: filled in memory, or checked files of a width cache."""

    bucket: int
    name: str  # the width's name
    files: dict[str, bytes]  # filled now (empty on a cache hit)
    paths: dict[str, Path]  # a width cache's checked files (empty when filled now)
    startup: Startup  # open and fill (or check) times; load_ms is the runtime's, 0 here


def prepare(source: str | os.PathLike | bytes | BundleReader, bucket: int | str | float, runtime: str, *,
            reference: bool = False, cache: WidthCache | None = None) -> Prepared:
    """What every loader does before its runtime: open (validate) the bundle, find the width, then either
    load it from ``cache`` (every byte checked against its stamp) or fill it in memory (and keep it in
    ``cache``, when given, by a thread of its own: :meth:`WidthCache.store_later`)."""
    if cache is not None and reference:
        raise ValueError("a width cache keeps the native core's fill: it cannot be used with reference=True")
    t0 = time.perf_counter()
    reader = BundleReader.of(source, reference=reference)
    k = reader.bucket_index(bucket)
    reader.require_graph(k, runtime)
    t1 = time.perf_counter()
    try:
        paths = cache.load(reader.native, k, runtime) if cache is not None else None
    except native.NativeError as e:  # the graph record itself is bad: as the fill would say
        raise bundle.BundleError(f"the core rejected the {runtime!r} graph of {reader.names[k]!r}: {e}") from e
    if paths is not None:
        t2 = time.perf_counter()
        return Prepared(k, reader.names[k], {}, paths, Startup((t1 - t0) * 1e3, (t2 - t1) * 1e3, 0.0, cache="hit"))
    files = reader.fill(k, runtime)
    t2 = time.perf_counter()
    if cache is not None:  # kept by a thread of its own while the runtime loads the files from memory
        cache.store_later(reader.native, k, runtime, files)
    return Prepared(k, reader.names[k], files, {}, Startup((t1 - t0) * 1e3, (t2 - t1) * 1e3, 0.0,
                                                           cache="storing" if cache is not None else ""))


def run_batched(invoke: Callable[[np.ndarray], np.ndarray], x: torch.Tensor | np.ndarray,
                input_shape: tuple[int, ...], name: str) -> torch.Tensor:
    """Run ``[N, ...]`` inputs through a graph lowered for a fixed batch: chunks, the last one padded."""
    x = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float32)
    batch, shape = input_shape[0], tuple(input_shape[1:])
    if x.shape[1:] != shape:
        raise ValueError(f"{name}: input of shape {x.shape}, the graph takes [N, *{shape}]")
    outs = []
    for i in range(0, len(x), batch):
        chunk = x[i:i + batch]
        pad = batch - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad, *shape), np.float32)])
        outs.append(invoke(chunk)[:batch - pad])
    return torch.from_numpy(np.concatenate(outs))
