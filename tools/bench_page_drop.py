"""What dropping a mapped bundle's pages as they are read costs in startup and saves in peak memory.

    python tools/bench_page_drop.py BUNDLE [--runtimes litert litert-i8 executorch executorch-i8] [--runs 7]

A bundle mapped from a file (``NativeBundle.from_file``) is dropped from memory as the core reads it: each
stretch the open has verified, and each fill part's nodes once written (docs/benchmarks.md, stop 18). This
tool loads BUNDLE's widest bucket both ways, the drops as they are and the drops disabled for the process
(as loading was before stop 18: one fill part per thread, nothing dropped until ``release_pages`` after the
fill), taking turns: in fresh processes (open / fill / runtime load ms and peak RSS over the process before
loading, as ``tools/bench_real.py`` measures them) and in one warm process (the median total ms). BUNDLE is
e.g. ``out/real/lite0.innb``, which ``tools/bench_real.py --out out/real`` writes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

VARIANTS = ("dropping", "kept")
RUNTIMES = ("litert", "litert-i8", "executorch", "executorch-i8")
_LIBRARY: dict[str, tuple] = {}


def use(variant: str) -> None:
    """Make this process load bundles as ``variant`` says: the drops as they are, or disabled."""
    from inn_mobile import native

    # the library's own behaviour, read once (before any switch) to switch back to
    parts, release = _LIBRARY.setdefault("dropping", (native._PARTS_PER_THREAD, native.NativeBundle._release))
    native._PARTS_PER_THREAD = parts if variant == "dropping" else 1
    native.NativeBundle._release = release if variant == "dropping" else (lambda self, first, end: None)


def child(variant: str, path: Path, runtime: str, bucket: int) -> None:
    """One load in this fresh process, as bench_real's child does it; prints its timings as JSON."""
    import bench_real

    use(variant)
    bench_real._child(argparse.Namespace(child=["bundle", str(path), runtime, str(bucket)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES)
    ap.add_argument("--runs", type=int, default=7, help="loads per variant, fresh and warm")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    from inn_mobile import native
    from inn_mobile.app.cli import native_stderr_silenced, quiet_third_party

    quiet_third_party()
    if not args.bundle.exists():
        sys.exit(f"error: {args.bundle} does not exist (python tools/bench_real.py --out out/real writes it)")
    bucket = native.NativeBundle.from_file(args.bundle).bucket_count - 1
    with native_stderr_silenced():
        if args.child:
            child(args.child[0], args.bundle, args.child[1], int(args.child[2]))
            return
        import bench_real

        print(f"{args.bundle}: widest bucket, {args.runs} loads per variant\n")
        print("| runtime | pages | open ms | fill ms | load ms | total ms | peak RSS MiB | warm total ms |")
        print("|---|---|---|---|---|---|---|---|")
        for rt in args.runtimes:
            fresh: dict[str, list[dict]] = {v: [] for v in VARIANTS}
            warm: dict[str, list[float]] = {v: [] for v in VARIANTS}
            for v in VARIANTS:  # one untimed load each: the warm process's libraries and caches
                use(v)
                bench_real._load_once("bundle", args.bundle, rt, bucket)
            for _ in range(args.runs):
                for v in VARIANTS:
                    res = subprocess.run([sys.executable, __file__, str(args.bundle), "--child", v, rt, str(bucket)],
                                         capture_output=True, text=True, check=True,
                                         env={**os.environ, "OMP_NUM_THREADS": "1"})
                    fresh[v].append(json.loads(res.stdout.strip().splitlines()[-1]))
                    use(v)
                    warm[v].append(bench_real._load_once("bundle", args.bundle, rt, bucket)["total_ms"])
            for v in VARIANTS:
                m = {k: statistics.median(r[k] for r in fresh[v]) for k in fresh[v][0]}
                print(f"| {rt} | {v} | {m['open_ms']:.1f} | {m['fill_ms']:.1f} | {m['load_ms']:.1f} | "
                      f"{m['total_ms']:.1f} | {m['peak_extra_mib']:.1f} | {statistics.median(warm[v]):.1f} |",
                      flush=True)
        use("dropping")


if __name__ == "__main__":
    main()
