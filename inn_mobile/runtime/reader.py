"""What every host loader does before its runtime sees a byte: validate the bundle, find the width,
let the core fill that width's files; and, after, run inputs in chunks of the graph's batch.

The native core does the work, as on a device; ``reference=True`` uses the Python reference instead
(same bytes, much slower: for debugging and parity tests).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .. import bundle, native


class NotInBundleError(KeyError):
    """The bundle has no such width, or no graph for the runtime at that width (the message lists
    what it has)."""

    def __str__(self) -> str:
        return str(self.args[0])


class BundleReader:
    """A validated bundle: bucket lookup by index, name or width ratio, and graph filling."""

    def __init__(self, source: str | os.PathLike | bytes, *, reference: bool = False) -> None:
        data = source if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
        try:
            if reference:
                self._py = bundle.decode(data)
                buckets = [{"name": b.name, "ratio": b.ratio} for b in self._py.buckets]
                self.graphs = set(self._py.graphs)
            else:
                self._core = native.NativeBundle(data)
                buckets = self._core.meta().get("buckets", [])
                self.graphs = set(self._core.graphs())
        except (native.NativeError, bundle.BundleError) as e:
            raise bundle.BundleError(f"corrupted or invalid bundle: {e}") from e
        self.reference = reference
        self.names = [b.get("name", f"b{k}") for k, b in enumerate(buckets)]
        self.ratios = [b.get("ratio") for b in buckets]

    def bucket_index(self, bucket: int | str | float) -> int:
        """Index (negative counts from the widest), name (``"w0500"``) or width ratio (``0.5``)."""
        n = len(self.names)
        if isinstance(bucket, bool) or not isinstance(bucket, (int, str, float)):
            raise TypeError(f"bucket must be an index, a name or a width ratio, not {bucket!r}")
        if isinstance(bucket, int):
            if not -n <= bucket < n:
                raise NotInBundleError(f"bucket {bucket} not in bundle (it has {n}: {self.names})")
            return bucket % n
        if isinstance(bucket, str):
            if bucket not in self.names:
                raise NotInBundleError(f"width {bucket!r} not in bundle; it has {self.names}")
            return self.names.index(bucket)
        for i, r in enumerate(self.ratios):
            if r is not None and abs(r - bucket) < 1e-9:
                return i
        raise NotInBundleError(f"width {bucket} not in bundle; widths: {self.ratios}")

    def fill(self, k: int, runtime: str) -> dict[str, bytearray | bytes]:
        """The runtime's files of bucket ``k`` with their weights written."""
        if (k, runtime) not in self.graphs:
            have = sorted(rt for b, rt in self.graphs if b == k)
            raise NotInBundleError(f"no {runtime!r} graph for width {self.names[k]!r} in this bundle "
                                   f"(it has {have or 'none'} there)")
        if self.reference:
            return self._py.fill(k, runtime)
        try:
            return self._core.fill(k, runtime)
        except native.NativeError as e:
            raise bundle.BundleError(f"the core rejected the {runtime!r} graph of {self.names[k]!r}: {e}") from e


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
