"""Packing: one bundle with the nodes once and, per width bucket, every requested runtime's graph.

Besides the graphs, packing measures what the width policy needs, on the host, per (bucket, runtime):
the weight bytes the core will write, the runtime files' size, the activation arena (LiteRT; a
device profile measures every runtime's peak memory), and (given validation data) the accuracy of the
real runtime running the real filled files, so an int8 graph is judged as int8.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from inn_mobile import runtime
from inn_mobile.core.integral import IntegralModel
from inn_mobile.export import exporter
from inn_mobile.format import bundle, runtime_file
from inn_mobile.metrics import accuracy
from inn_mobile.progress import progress


def lower(model: IntegralModel, bucket: bundle.Bucket, example_input: torch.Tensor, runtime_name: str, *,
          calibration: torch.Tensor | None = None) -> list[runtime_file.Image]:
    """One bucket's files for one runtime (``litert``, ``litert-i8``, ``executorch``, ``executorch-i8``)."""
    rt = runtime.check_runtime(runtime_name)
    return exporter(rt.family).lower(model, bucket, example_input, int8=rt.int8, calibration=calibration)


def pack(
    model: IntegralModel,
    example_input: torch.Tensor,
    runtimes: Sequence[str],
    *,
    buckets: list[bundle.Bucket] | None = None,
    calibration: torch.Tensor | None = None,
    validation: tuple[torch.Tensor, torch.Tensor] | None = None,
    meta: dict | None = None,
    path: str | os.PathLike | None = None,
    node_dtype: str = "f32",
) -> bundle.Bundle:
    """Lower every bucket for every runtime into one bundle (written atomically to ``path`` if given).

    ``example_input`` fixes the graphs' input shape (batch included); ``calibration`` (unlabelled
    inputs) sets int8 activation ranges per bucket; ``validation`` ``(x, y)`` records each bucket's
    accuracy in the bundle for the width policy. ``node_dtype="f16"`` halves the nodes (the core
    widens them exactly; the weights then differ from the f32 nodes' by f16 rounding, well below an
    int8 step); ``"i8"`` quarters them (int8 with a float32 scale per node row: about one int8 step
    of error before the int8 runtimes quantise again, so meant for int8 graphs). Accuracy is
    measured with the nodes as stored.
    """
    for rt in runtimes:
        if runtime.check_runtime(rt).int8 and calibration is None:
            raise ValueError(f"runtime {rt!r} is int8: pass calibration= inputs to set activation ranges")
    b = bundle.Bundle(model, buckets or bundle.make_buckets(model), dict(meta or {}))
    b.meta["input_shape"] = list(example_input.shape)
    jobs = [(k, rt) for k in range(len(b.buckets)) for rt in runtimes]
    for k, rt in progress(jobs, desc="lowering", total=len(jobs)):
        bk = b.buckets[k]
        images = lower(model, bk, example_input, rt, calibration=calibration)
        b.graphs[(k, rt)] = runtime_file.encode_record(images)
        bk.info.setdefault("runtimes", {})[rt] = {
            "weights_bytes": sum(h.size for im in images for h in im.holes),
            "file_bytes": sum(len(im.data) for im in images),
        }
    _measure(b, runtimes, validation, node_dtype)
    if path is not None:
        bundle.save(b, path, node_dtype=node_dtype)
    return b


def _measure(b: bundle.Bundle, runtimes: Sequence[str], validation, node_dtype: str) -> None:
    """Per bucket and runtime, loaded from the encoded bundle exactly as a device would: the
    activation arena where the runtime reports it, and the accuracy on ``validation``."""
    encoded = bundle.encode(b, node_dtype=node_dtype)
    jobs = [(k, rt) for k in range(len(b.buckets)) for rt in runtimes]
    for k, rt in progress(jobs, desc="measuring", total=len(jobs)):
        net = runtime.open_model(encoded, rt, k)
        info = b.buckets[k].info["runtimes"][rt]
        if hasattr(net, "arena_bytes"):
            info["arena_bytes"] = net.arena_bytes()
        if validation is not None:
            info["accuracy"] = round(accuracy(net, *validation), 3)
