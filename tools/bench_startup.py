"""What opening a bundle and filling one width cost in the C core, and what the checksums cost, on one file.

    python tools/bench_startup.py BUNDLE [--bucket -1] [--runtimes litert ...] [--runs 20]

A quick, repeatable view of the parts of startup that are ours (``tools/bench_real.py`` times the whole
load, runtime included, against a plain file, but first packs the models): in this process,
interleaved, median and best of --runs, wall clock and this thread's CPU time (the CPU time is what a
busy machine disturbs least):
  - checksums over the whole file: zlib's CRC-32 (bundles up to 1.3, the table method) and CRC-32C (1.4,
    the CPU's CRC instructions where it has them), both in the core (``inn_crc32`` / ``inn_crc32c``);
  - open: ``inn_bundle_open`` on the memory-mapped file (every checksum, every table and node checked);
  - fill: ``NativeBundle.fill``, the graph of each runtime at the bucket (validation of the record, the
    output files allocated, every hole written), as ``open_model`` does before the runtime loads.
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import statistics
import time
from pathlib import Path

import numpy as np

from inn_mobile import native


def _timed(fn) -> tuple[float, float]:
    """(wall ms, thread CPU ms) of one call."""
    w, c = time.perf_counter(), time.thread_time()
    fn()
    return (time.perf_counter() - w) * 1e3, (time.thread_time() - c) * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("bundle", type=Path)
    p.add_argument("--bucket", type=int, default=-1, help="bucket index (negative counts from the widest)")
    p.add_argument("--runtimes", nargs="+", default=None, help="graphs to fill (default: every one at the bucket)")
    p.add_argument("--runs", type=int, default=20)
    args = p.parse_args()

    with open(args.bundle, "rb") as f:
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    buf = np.frombuffer(data, np.uint8)
    address, size = ctypes.c_void_p(buf.ctypes.data), buf.nbytes
    lib = native.lib()
    nb = native.NativeBundle(data)
    bucket = args.bucket % nb.bucket_count
    runtimes = args.runtimes or sorted(rt for k, rt in nb.graphs() if k == bucket)
    version = ".".join(map(str, np.frombuffer(data, "<u2", 2, 4)))
    print(f"{args.bundle}: {size / 2**20:.1f} MiB, format {version}, bucket {bucket}, {args.runs} runs "
          "(median / best, ms)")

    steps = {
        "CRC-32 of the file": lambda: lib.inn_crc32(address, size),
        "CRC-32C of the file": lambda: lib.inn_crc32c(address, size),
        "open": lambda: native.NativeBundle(data),
    }
    for rt in runtimes:
        steps[f"fill {rt}"] = lambda rt=rt: nb.fill(bucket, rt)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in steps}
    for _ in range(args.runs):
        for name, fn in steps.items():
            times[name].append(_timed(fn))
    print("| step | wall median | wall best | CPU median | CPU best |")
    print("|---|---|---|---|---|")
    for name, rows in times.items():
        wall, cpu = [r[0] for r in rows], [r[1] for r in rows]
        print(f"| {name} | {statistics.median(wall):.2f} | {min(wall):.2f} | {statistics.median(cpu):.2f} | "
              f"{min(cpu):.2f} |")


if __name__ == "__main__":
    main()
