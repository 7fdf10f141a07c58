"""Fill speed of two builds of the C core, side by side: the core of a git revision against this checkout's.

    python tools/bench_fill.py BUNDLE [--runtimes litert-i8 executorch-i8] [--baseline HEAD~1] [--rounds 5]
                               [--fills 100] [--threads 1] [--fresh]

Each round runs one process per build (the baseline's library built by the setup.py of ``git archive`` of --baseline,
then this checkout's installed one), taking turns; each process opens BUNDLE from its file
and fills the full width --fills times on --threads threads, after one untimed fill, and reports the median.
Printed per runtime: the median over rounds of those medians, per build, and the ratio. A warm process
measures the fill's computing (the output memory was touched before): what a change to the core's loops
does, apart from the first-touch cost of fresh pages that a startup also pays (``tools/bench_real.py``).
With --fresh each process times its first fill instead, as a startup runs it: new output pages, the nodes
read from the page cache, their checks done by the fill; the median over rounds of those.
Both builds must write the same bytes: the first fill of each process is compared by checksum.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build(revision: str, out: Path) -> Path:
    """The core's shared library at ``revision``, built by that revision's own setup.py (its sources, its flags)."""
    src = out / "src"
    src.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "setup.py", "inn_mobile/csrc"],
                             capture_output=True, check=False)
    if archive.returncode:
        sys.exit(f"bench_fill.py: git archive {revision}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
    built = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(out / "lib"),
                            "--build-temp", str(out / "tmp")], cwd=src, capture_output=True, text=True, check=False)
    libs = sorted((out / "lib" / "inn_mobile").glob("_inn_core*.so"))
    if built.returncode or not libs:
        sys.exit(f"bench_fill.py: building the core of {revision} failed: {built.stderr.strip()[-300:]}")
    return libs[0]


def child(bundle: str, runtime: str, fills: int, threads: int) -> None:
    """In this process: the median ms of ``fills`` warm fills (none: the first fill's ms), and the first fill's
    checksum, as JSON."""
    from inn_mobile import native

    nb = native.NativeBundle.from_file(bundle)
    full = nb.bucket_count - 1
    t = time.perf_counter()
    files = nb.fill(full, runtime, threads=threads)
    times = [(time.perf_counter() - t) * 1e3] if fills == 0 else []
    digest = hashlib.sha256(b"".join(files[k] for k in sorted(files))).hexdigest()
    for _ in range(fills):
        t = time.perf_counter()
        nb.fill(full, runtime, threads=threads)
        times.append((time.perf_counter() - t) * 1e3)
    print(json.dumps({"ms": statistics.median(times), "sha256": digest}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("bundle", type=Path)
    p.add_argument("--runtimes", nargs="+", default=["litert-i8", "executorch-i8", "litert", "executorch"])
    p.add_argument("--baseline", default="HEAD~1", help="git revision whose core is the baseline")
    p.add_argument("--rounds", type=int, default=5, help="processes per build and runtime, taking turns")
    p.add_argument("--fills", type=int, default=100, help="timed fills per process")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fresh", action="store_true", help="time each process's first fill (as a startup runs it)")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(str(args.bundle), args.child[0], args.fills, int(args.child[1]))
        return
    if not args.bundle.is_file():
        sys.exit(f"bench_fill.py: {args.bundle}: no such file")
    with tempfile.TemporaryDirectory(prefix="bench_fill_") as tmp:
        builds = {args.baseline: build(args.baseline, Path(tmp)), "this checkout": None}
        fills = 0 if args.fresh else args.fills
        what = "fill ms, first fill of a fresh process" if args.fresh else f"warm fill ms, median of {fills} fills"
        print(f"| {args.bundle.name}, full width, {what} ({args.threads} thread(s), median of {args.rounds} "
              f"processes) | " + " | ".join(builds) + " | ratio |")
        print("|---|---|---|---|")
        for runtime in args.runtimes:
            rows: dict[str, list[float]] = {name: [] for name in builds}
            digests = set()
            for _ in range(args.rounds):
                for name, lib in builds.items():
                    env = {**os.environ, "OMP_NUM_THREADS": "1"}
                    env.pop("INN_NATIVE_LIB", None)
                    if lib is not None:
                        env["INN_NATIVE_LIB"] = str(lib)
                    res = subprocess.run([sys.executable, __file__, str(args.bundle), "--fills", str(fills),
                                          "--child", runtime, str(args.threads)], capture_output=True, text=True,
                                         env=env, check=True)
                    out = json.loads(res.stdout.strip().splitlines()[-1])
                    rows[name].append(out["ms"])
                    digests.add(out["sha256"])
            if len(digests) != 1:
                sys.exit(f"bench_fill.py: the two builds wrote different {runtime} files")
            base, new = (statistics.median(v) for v in rows.values())
            print(f"| {runtime} | {base:.2f} | {new:.2f} | {new / base:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
