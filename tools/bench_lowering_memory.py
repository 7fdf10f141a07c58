"""What each lowering leaves behind in a process that lowers many widths, as ``pack`` with ``jobs=1`` does.

    python tools/bench_lowering_memory.py [--model resnet18] [--ratio 1.0] [--runtime executorch-i8]
                                          [--lowerings 4] [--calibration 8]

Lowers one bucket of the real EfficientNet-Lite0 or timm ResNet-18 (``tools/bench_real.py``'s models and
photos) ``--lowerings`` times in one process and prints, after each, the real tensors the process still holds
and its resident memory (after a full collection and ``malloc_trim``), side by side for the library as it is
and for the lowering libraries' graph caches left as they are (``executorch._GRAPH_CACHES`` emptied: what
every lowering did before stop 24). Each variant runs in its own fresh process.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

VARIANTS = {"as it is": "shipped", "caches kept": "kept"}


def live_tensor_bytes() -> int:
    """Bytes of the real (not fake) CPU tensors this process still holds, after a full collection
    (``tests/test_executorch.py`` bounds a lowering's leftovers with it)."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensor

    gc.collect()
    return sum(o.untyped_storage().nbytes() for o in gc.get_objects()
               if isinstance(o, torch.Tensor) and not isinstance(o, FakeTensor) and o.device.type == "cpu")


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _child(args: argparse.Namespace) -> None:
    from inn_mobile.app.cli import native_stderr_silenced, quiet_third_party

    quiet_third_party()
    import bench_real
    import torch

    from inn_mobile.core.convert import convert
    from inn_mobile.export import executorch, lowering
    from inn_mobile.format import bundle

    if args.child == "kept":
        executorch._GRAPH_CACHES = ()  # noqa: SLF001 - the control case: nothing dropped after a lowering
    torch.set_num_threads(1)
    trim = ctypes.CDLL("libc.so.6").malloc_trim
    with native_stderr_silenced():
        full = bench_real._sample_photos()
        photos, calib = bench_real._photos(full), bench_real._calibration(full, args.calibration)
        im = convert(bench_real._model(args.model), photos[:1])
        bucket = bundle.make_buckets(im, [args.ratio])[0]
        for _ in range(args.lowerings):
            lowering.lower_runtimes(im, bucket, photos[:1], [args.runtime], calibration=calib)
            tensors = live_tensor_bytes() / 2**20  # collects first
            trim(0)
            print(json.dumps({"tensors": tensors, "rss": _rss_mib()}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["lite0", "resnet18"], default="resnet18")
    ap.add_argument("--ratio", type=float, default=1.0, help="the bucket's width")
    ap.add_argument("--runtime", default="executorch-i8",
                    choices=["litert", "litert-i8", "executorch", "executorch-i8"])
    ap.add_argument("--lowerings", type=int, default=4, help="lowerings in one process")
    ap.add_argument("--calibration", type=int, default=8, help="calibration crops for int8")
    ap.add_argument("--child", choices=sorted(VARIANTS.values()), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args)
        return
    rows = {}
    for title, variant in VARIANTS.items():
        cmd = [sys.executable, __file__, "--child", variant, "--model", args.model, "--ratio", str(args.ratio),
               "--runtime", args.runtime, "--lowerings", str(args.lowerings), "--calibration", str(args.calibration)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"{title}: the lowering process failed: {out.stderr.strip().splitlines()[-1:]}")
        rows[title] = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    print(f"{args.model} at {args.ratio:g}, {args.runtime}: after each lowering in one process, MiB "
          "(real tensors still held | resident)\n")
    print("| lowering | " + " | ".join(f"{t}: tensors | {t}: RSS" for t in VARIANTS) + " |")
    print("|---|" + "---|---|" * len(VARIANTS))
    for i in range(args.lowerings):
        print(f"| {i + 1} | " + " | ".join(f"{rows[t][i]['tensors']:.1f} | {rows[t][i]['rss']:.0f}" for t in VARIANTS)
              + " |")
    n = args.lowerings - 1
    if n:
        print("\nper lowering after the first: " + "; ".join(
            f"{t}: +{(rows[t][-1]['tensors'] - rows[t][0]['tensors']) / n:.1f} MiB tensors, "
            f"+{(rows[t][-1]['rss'] - rows[t][0]['rss']) / n:.0f} MiB RSS" for t in VARIANTS))


if __name__ == "__main__":
    main()
