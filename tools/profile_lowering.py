"""Where one ExecuTorch lowering of a bucket spends its time, and what the older lowering route would save.

    python tools/profile_lowering.py [--model lite0] [--ratio 1.0] [--int8] [--calibration 32]

Lowers one bucket of the real EfficientNet-Lite0 (or timm ResNet-18) the way ``pack`` does
(``export.executorch.lower``), after a one-convolution lowering that pays the process's one-off setup,
and prints the seconds of each stage: the int8 calibration (export, PT2E prepare / observe / convert),
ExecuTorch's ``to_edge_transform_and_lower`` and within it every ``ExportedProgram.run_decompositions``
(a retracing of the whole graph), then ``to_executorch``. Then the same bucket through ExecuTorch's
deprecated ``to_edge() + to_backend()`` route, side by side: its seconds, and whether its ``.pte`` and
``.ptd`` equal the supported route's byte for byte. The stages are timed by wrapping the library and
ExecuTorch functions for this process only.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

CALIBRATION = "int8 calibration (export, prepare, observe, convert)"
RETRACE = "  of which run_decompositions (a retracing of the whole graph)"


@contextlib.contextmanager
def timed(owner: object, name: str, into: dict[str, list[float]], label: str | None = None) -> Iterator[None]:
    """While the block runs, ``owner.name`` appends each call's seconds to ``into[label or name]``."""
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            into.setdefault(label or name, []).append(time.perf_counter() - t)

    setattr(owner, name, wrapper)
    try:
        yield
    finally:
        setattr(owner, name, original)


def legacy_route(ep, partitioner):
    """ExecuTorch's older route: decompose once to the edge dialect, then delegate (what it now deprecates)."""
    from executorch.exir import EdgeCompileConfig, to_edge

    return to_edge(ep, compile_config=EdgeCompileConfig(_check_ir_validity=False)).to_backend(partitioner[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["lite0", "resnet18"], default="lite0")
    ap.add_argument("--ratio", type=float, default=1.0, help="the bucket's width")
    ap.add_argument("--int8", action="store_true", help="the executorch-i8 lowering (default: fp32)")
    ap.add_argument("--calibration", type=int, default=32, help="calibration crops for int8")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    from inn_mobile.app.cli import native_stderr_silenced, quiet_third_party

    quiet_third_party()
    import bench_real
    import torch
    from executorch import exir
    from torch.export import ExportedProgram

    from inn_mobile.core.convert import convert
    from inn_mobile.export import executorch as ex
    from inn_mobile.format import bundle

    torch.set_num_threads(args.threads)
    with native_stderr_silenced():
        full = bench_real._sample_photos()
        photos, calib = bench_real._photos(full), bench_real._calibration(full, args.calibration)
        im = convert(bench_real._model(args.model), photos[:1])
        bucket = bundle.make_buckets(im, [args.ratio])[0]
        runtime = "executorch-i8" if args.int8 else "executorch"
        print(f"{args.model} {bucket.name} {runtime}: one-off setup {bench_real._warm_up([runtime], calib):.1f} s",
              flush=True)
        stages: dict[str, list[float]] = {}
        with contextlib.ExitStack() as stack:
            stack.enter_context(timed(ex, "_calibrated", stages, CALIBRATION))
            stack.enter_context(timed(exir, "to_edge_transform_and_lower", stages))
            stack.enter_context(timed(ExportedProgram, "run_decompositions", stages, RETRACE))
            stack.enter_context(timed(exir.EdgeProgramManager, "to_executorch", stages))
            t = time.perf_counter()
            supported = ex.lower(im, bucket, photos[:1], int8=args.int8, calibration=calib)
            total = time.perf_counter() - t
        print(f"\n| stage of one lowering | calls | s |\n|---|---|---|\n| whole lowering | 1 | {total:.1f} |")
        for name in (CALIBRATION, "to_edge_transform_and_lower", RETRACE, "to_executorch"):
            secs = stages.get(name, [])
            print(f"| {name} | {len(secs)} | {sum(secs):.1f} |")
        # the partitioner logs a deprecation warning on this route: that is the point of the comparison
        logging.getLogger("executorch.backends.xnnpack.partition.xnnpack_partitioner").setLevel(logging.ERROR)
        with timed(exir, "to_edge_transform_and_lower", {}):
            exir.to_edge_transform_and_lower = legacy_route  # restored when the block ends
            t = time.perf_counter()
            legacy = ex.lower(im, bucket, photos[:1], int8=args.int8, calibration=calib)
            legacy_s = time.perf_counter() - t
    same = {a.name: a.data == b.data for a, b in zip(supported, legacy)}
    print(f"\n| route | s | files equal to the supported route's |\n|---|---|---|\n"
          f"| to_edge_transform_and_lower (supported; what pack uses) | {total:.1f} | |\n"
          f"| to_edge + to_backend (deprecated) | {legacy_s:.1f} | "
          + ", ".join(f"{n}: {'yes' if s else 'no'}" for n, s in same.items()) + " |")


if __name__ == "__main__":
    main()
