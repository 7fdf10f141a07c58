"""What the first touch of fresh memory costs a fill, and what transparent huge pages save of it.

    python tools/bench_fill_pages.py BUNDLE [--runtimes litert litert-i8 ...] [--bucket -1] [--runs 7]

A fill writes every byte of its runtime files into memory the process has never used; on a real model
that is tens of MiB, and with 4 KiB pages each 4 KiB costs a page fault. ``NativeBundle.fill`` asks Linux
for transparent huge pages on its output buffers (``native._prefer_huge_pages``); this tool measures the
fill with and without that advice, each in a fresh process (a warm process reuses freed memory and hides
the faults), the variants taking turns, and prints the medians and their ratio. The bundle is mapped from
its file, as ``open_model`` maps it; the timed part is ``NativeBundle.fill`` alone. Both variants' files
are compared byte for byte (the advice must not change them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _child(path: str, runtime: str, bucket: int, advice: str) -> None:
    from inn_mobile import native

    if advice == "off":
        native._prefer_huge_pages = lambda _address, _size: None  # noqa: SLF001 - the variant without the advice
    nb = native.NativeBundle.from_file(path)
    t = time.perf_counter()
    files = nb.fill(bucket % nb.bucket_count, runtime)
    ms = (time.perf_counter() - t) * 1e3
    digest = hashlib.sha256(b"".join(files[k] for k in sorted(files))).hexdigest()
    print(json.dumps({"fill_ms": ms, "mib": sum(len(v) for v in files.values()) / 2**20, "sha256": digest}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("bundle", type=Path)
    p.add_argument("--runtimes", nargs="+", default=None, help="graphs to fill (default: every one at the bucket)")
    p.add_argument("--bucket", type=int, default=-1, help="bucket index (negative counts from the widest)")
    p.add_argument("--runs", type=int, default=7, help="fresh processes per variant")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        runtime, bucket, advice = args.child
        _child(str(args.bundle), runtime, int(bucket), advice)
        return
    from inn_mobile import native

    nb = native.NativeBundle.from_file(args.bundle)
    bucket = args.bucket % nb.bucket_count
    runtimes = args.runtimes or sorted(rt for k, rt in nb.graphs() if k == bucket)
    del nb
    print(f"{args.bundle}, bucket {bucket}: fill ms, median of {args.runs} fresh processes per variant\n")
    print("| runtime | files MiB | 4 KiB pages ms | huge pages ms | ratio |")
    print("|---|---|---|---|---|")
    for rt in runtimes:
        rows: dict[str, list[dict]] = {"off": [], "on": []}
        for _ in range(args.runs):
            for advice in rows:
                cmd = [sys.executable, __file__, str(args.bundle), "--child", rt, str(bucket), advice]
                res = subprocess.run(cmd, capture_output=True, text=True, check=True,
                                     env={**os.environ, "OMP_NUM_THREADS": "1"})
                rows[advice].append(json.loads(res.stdout.strip().splitlines()[-1]))
        if len({r["sha256"] for v in rows.values() for r in v}) != 1:
            sys.exit(f"{rt}: the files differ between runs or variants")
        off, on = (statistics.median(r["fill_ms"] for r in rows[k]) for k in ("off", "on"))
        print(f"| {rt} | {rows['on'][0]['mib']:.1f} | {off:.1f} | {on:.1f} | {on / off:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
