"""Packing in one process against packing in worker processes (``pack(..., jobs=N)``), side by side.

    python tools/bench_pack_jobs.py [--model lite0] [--ratios 0.25 0.5 0.75 1] [--jobs 2] [--calibration 32]

Packs the real EfficientNet-Lite0 (or timm's ResNet-18, as ``tools/bench_real.py`` builds both) at the
given widths for litert, litert-i8, executorch and executorch-i8 with ``export.pack.pack``, once with
``jobs=1`` and once with ``jobs=N``, and prints each run's seconds, the seconds per (width, runtime)
over the whole pack, and whether the two bundles are the same byte for byte. The one-process run goes
first, after this process has lowered a one-convolution network for every runtime (the imports and the
converters' one-off setup, as ``bench_real`` pays them before timing); the workers pay that setup
inside their run, so the comparison does not flatter the workers. Wall-clock seconds on this machine;
on N free cores the worker run should take about 1/N of the lowering time plus one setup per worker.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

RUNTIMES = ("litert", "litert-i8", "executorch", "executorch-i8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["lite0", "resnet18"], default="lite0")
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    ap.add_argument("--jobs", type=int, default=2, help="worker processes of the second run")
    ap.add_argument("--calibration", type=int, default=32, help="int8 calibration crops")
    args = ap.parse_args()

    from inn_mobile.app.cli import native_stderr_silenced, quiet_third_party

    quiet_third_party()
    import bench_real
    import torch

    from inn_mobile.core.convert import convert
    from inn_mobile.export import pack
    from inn_mobile.format import bundle

    with native_stderr_silenced():
        full = bench_real._sample_photos()
        photos, calib = bench_real._photos(full), bench_real._calibration(full, args.calibration)
        im = convert(bench_real._model(args.model), photos[:1])
        setup = bench_real._warm_up(list(RUNTIMES), calib)
        print(f"{args.model}, {len(args.ratios)} widths x {len(RUNTIMES)} runtimes, {torch.get_num_threads()} torch "
              f"threads; this process's one-off setup {setup:.1f} s", flush=True)
        seconds, blobs, graphs = {}, {}, {}
        for jobs in (1, args.jobs):
            t = time.perf_counter()
            b = pack.pack(im, photos[:1], RUNTIMES, buckets=bundle.make_buckets(im, args.ratios), calibration=calib,
                          jobs=jobs)
            seconds[jobs] = time.perf_counter() - t
            blobs[jobs], graphs[jobs] = bundle.encode(b), b.graphs
            print(f"  jobs={jobs}: {seconds[jobs]:.1f} s", flush=True)
    pairs = len(args.ratios) * len(RUNTIMES)
    print(f"\n| {args.model} pack | s | s per (width, runtime) | speed-up |\n|---|---|---|---|")
    for jobs, s in seconds.items():
        print(f"| jobs={jobs} | {s:.1f} | {s / pairs:.1f} | {seconds[1] / s:.2f}x |")
    differ = [f"{k}:{rt}" for (k, rt), g in graphs[1].items() if graphs[args.jobs].get((k, rt)) != g]
    print(f"bundles the same byte for byte: {'yes' if blobs[1] == blobs[args.jobs] else 'NO'}"
          + (f" (graphs that differ, bucket:runtime: {', '.join(differ)})" if differ else ""))


if __name__ == "__main__":
    main()
