"""Packing: one bundle with the nodes once and, per width bucket, every requested runtime's graph.

Each bucket is lowered by :mod:`inn_mobile.export.lowering` (one conversion per runtime family; errors
as one line naming runtime, width and layer); ``jobs=N`` lowers N (bucket, runtime family) pairs at
once in worker processes (:mod:`inn_mobile.export.workers`), and the bundle is the same byte for byte.
Besides the graphs, packing measures what the width policy needs, on the host, per (bucket, runtime):
the weight bytes the core will write, the runtime files' size, the activation arena (LiteRT; a device
profile measures every runtime's peak memory), and (given validation data) the accuracy of the real
runtime running the real filled files, so an int8 graph is judged as int8. The bundle is encoded and
validated once for all of those measurements. Every bucket's MACs per input are counted from the
graph (:mod:`inn_mobile.export.macs`), and confidence cascades are calibrated to the targets asked for
(:mod:`inn_mobile.export.cascade`) on the first runtime's outputs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from inn_mobile import runtime
from inn_mobile.core.integral import IntegralModel
from inn_mobile.export import cascade as cascades_
from inn_mobile.export import macs, workers
from inn_mobile.export.lowering import lower, lower_runtimes
from inn_mobile.format import bundle, runtime_file
from inn_mobile.metrics import accuracy
from inn_mobile.progress import progress
from inn_mobile.runtime.reader import BundleReader

__all__ = ["lower", "lower_runtimes", "pack"]


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
    cascades: Sequence[str | cascades_.Target] = (),
    cascade_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    cascade_score: str = "max_prob",
    jobs: int = 1,
) -> bundle.Bundle:
    """Lower every bucket for every runtime into one bundle (written atomically to ``path`` if given).

    ``example_input`` fixes the graphs' input shape (batch included); ``calibration`` (unlabelled
    inputs) sets int8 activation ranges per bucket; ``validation`` ``(x, y)`` records each bucket's
    accuracy in the bundle for the width policy. ``node_dtype="f16"`` halves the nodes (the core
    widens them exactly; the weights then differ from the f32 nodes' by f16 rounding, well below an
    int8 step); ``"i8"`` quarters them (int8 with a float32 scale per node row: about one int8 step
    of error before the int8 runtimes quantise again, so meant for int8 graphs). Accuracy is
    measured with the nodes as stored.

    ``cascades``: targets (``"acc:0.3"``, ``"macs:50%"``, :class:`~inn_mobile.export.cascade.Target`) of
    confidence cascades to calibrate on ``cascade_data`` ``(x, y)`` (default ``validation``; keep it apart
    from the data you report on) through ``runtimes[0]``, with ``cascade_score`` (``max_prob`` or ``margin``).

    ``jobs``: (bucket, runtime family) lowerings run at once, each in a worker process holding a copy of
    the model and its converter's memory (:mod:`inn_mobile.export.workers`); the bundle is the same.
    Workers are spawned, so a script that packs with ``jobs > 1`` runs under ``if __name__ == "__main__":``.
    """
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a whole number >= 1, got {jobs!r}")
    for rt in runtimes:
        if runtime.check_runtime(rt).int8 and calibration is None:
            raise ValueError(f"runtime {rt!r} is int8: pass calibration= inputs to set activation ranges")
    targets = [cascades_.Target.parse(t) if isinstance(t, str) else t for t in cascades]
    cascade_data = cascade_data if cascade_data is not None else validation
    if targets and cascade_data is None:
        raise ValueError("cascades need labelled calibration data: pass cascade_data= or validation=")
    b = bundle.Bundle(model, buckets or bundle.make_buckets(model), dict(meta or {}))
    b.meta["input_shape"] = list(example_input.shape)
    macs.count(b, example_input)
    if jobs == 1:
        lowered = (lower_runtimes(model, bk, example_input, runtimes, calibration=calibration)
                   for bk in progress(b.buckets, desc="lowering", total=len(b.buckets)))
    else:
        lowered = workers.lower_all(model, b.buckets, example_input, runtimes, calibration=calibration, jobs=jobs)
    for k, (bk, files) in enumerate(zip(b.buckets, lowered)):
        for rt, images in files.items():
            b.graphs[(k, rt)] = runtime_file.encode_record(images)
            bk.info.setdefault("runtimes", {})[rt] = {
                "weights_bytes": sum(h.size for im in images for h in im.holes),
                "file_bytes": sum(len(im.data) for im in images),
            }
    outputs = _measure(b, runtimes, validation, node_dtype, cascade_data if targets else None)
    for t in targets:
        b.cascades.append(cascades_.calibrate(outputs, cascade_data[1], [bk.macs for bk in b.buckets], t,
                                              score=cascade_score))
    if path is not None:
        bundle.save(b, path, node_dtype=node_dtype)
    return b


def _measure(b: bundle.Bundle, runtimes: Sequence[str], validation, node_dtype: str,
             cascade_data=None) -> list[torch.Tensor]:
    """Per bucket and runtime, loaded from the encoded bundle exactly as a device would: the
    activation arena where the runtime reports it, and the accuracy on ``validation``; with
    ``cascade_data``, every bucket's outputs on its inputs through ``runtimes[0]`` (else none)."""
    reader = BundleReader(bundle.encode(b, node_dtype=node_dtype))  # encoded and validated once for every pair
    jobs = [(k, rt) for k in range(len(b.buckets)) for rt in runtimes]
    outputs = []
    for k, rt in progress(jobs, desc="measuring", total=len(jobs)):
        net = runtime.open_model(reader, rt, k)
        if cascade_data is not None and rt == runtimes[0]:
            outputs.append(net(cascade_data[0]))
        info = b.buckets[k].info["runtimes"][rt]
        if hasattr(net, "arena_bytes"):
            info["arena_bytes"] = net.arena_bytes()
        if validation is not None:
            info["accuracy"] = round(accuracy(net, *validation), 3)
    return outputs
