"""Would other pages make a fill faster? The fill with and without advice on its outputs' memory.

    python tools/bench_fill_pages.py BUNDLE [--runtimes litert litert-i8 ...] [--bucket -1] [--runs 11]
                                     [--advice huge populate]

A fill writes every byte of its runtime files into memory the process has never used; on a real model
that is tens of MiB, one page fault per 4 KiB. Transparent huge pages (Linux, ``MADV_HUGEPAGE`` where
``/sys/kernel/mm/transparent_hugepage/enabled`` says "madvise" or "always") take one fault per 2 MiB. This
tool measures ``NativeBundle.fill`` as it is ("4 KiB pages") against the same fill with each output buffer's
huge-page-aligned interior advised for huge pages before the core writes it ("huge pages"), and with each
buffer's pages mapped by one ``MADV_POPULATE_WRITE`` call before the core writes it ("populated": Linux 5.14+,
the same 4 KiB pages without a fault per page), each in a fresh
process (a warm process reuses freed memory and hides the faults), the variants taking turns; it prints the
medians and their ratio. Each child first loads the runtime's libraries (torch included), as an app and
``tools/bench_real.py``'s startup children do (``--bare``: the core alone), which changes the answer
(docs/benchmarks.md). The bundle is
mapped from its file, as ``open_model`` maps it. Both variants' files are compared byte for byte.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import mmap
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HUGE_PAGE_SIZE = Path("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")
MADV_POPULATE_WRITE = 23  # <linux/mman.h>, Linux 5.14+
ADVICE = {"huge": "huge pages", "populate": "populated"}  # --advice: column title


def _advise_outputs(native, advice: str) -> None:
    """Make ``native``'s output buffers take ``advice`` on their aligned interior (this process only)."""
    madvise = ctypes.CDLL(None, use_errno=True).madvise
    madvise.restype, madvise.argtypes = ctypes.c_int, [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    unit = int(HUGE_PAGE_SIZE.read_text()) if advice == "huge" else mmap.PAGESIZE
    flag = mmap.MADV_HUGEPAGE if advice == "huge" else MADV_POPULATE_WRITE
    new_bytes = native._new_bytes  # noqa: SLF001

    def advised(size: int):
        out, address = new_bytes(size)
        start, stop = -(-address // unit) * unit, (address + size) // unit * unit
        if stop > start and madvise(start, stop - start, flag) != 0:
            raise OSError(ctypes.get_errno(), f"madvise({ADVICE[advice]}) failed")
        return out, address

    native._new_bytes = advised  # noqa: SLF001


def _child(path: str, runtime: str, bucket: int, advice: str, bare: bool) -> None:
    # the runtime's libraries loaded first, as in an app (and in tools/bench_real.py's startup children)
    if not bare and runtime.startswith("litert"):
        from inn_mobile.runtime import litert  # noqa: F401
    elif not bare:
        from inn_mobile.runtime import executorch  # noqa: F401
    from inn_mobile import native

    if advice in ADVICE:
        _advise_outputs(native, advice)
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
    p.add_argument("--runs", type=int, default=11, help="fresh processes per variant")
    p.add_argument("--bare", action="store_true", help="children load the core alone, no runtime library")
    p.add_argument("--advice", nargs="+", choices=sorted(ADVICE), default=["huge"],
                   help="the variants measured against the fill as it is (default: huge)")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        runtime, bucket, variant = args.child
        _child(str(args.bundle), runtime, int(bucket), variant, args.bare)
        return
    if "huge" in args.advice and (not hasattr(mmap, "MADV_HUGEPAGE") or not HUGE_PAGE_SIZE.is_file()):
        sys.exit("this system has no transparent huge pages (Linux only)")
    from inn_mobile import native

    nb = native.NativeBundle.from_file(args.bundle)
    bucket = args.bucket % nb.bucket_count
    runtimes = args.runtimes or sorted(rt for k, rt in nb.graphs() if k == bucket)
    del nb
    mode = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().strip()
    libs = "the core alone" if args.bare else "the runtime's libraries loaded first"
    print(f"{args.bundle}, bucket {bucket}: fill ms, median of {args.runs} fresh processes per variant, {libs} "
          f"(transparent huge pages: {mode})\n")
    variants = ["small", *dict.fromkeys(args.advice)]
    print("| runtime | files MiB | 4 KiB pages ms | " + " | ".join(f"{ADVICE[v]} ms | ratio" for v in variants[1:])
          + " |")
    print("|---|---|---|" + "---|---|" * (len(variants) - 1))
    for rt in runtimes:
        rows: dict[str, list[dict]] = {v: [] for v in variants}
        for _ in range(args.runs):
            for variant in rows:
                cmd = [sys.executable, __file__, str(args.bundle), "--child", rt, str(bucket), variant]
                cmd += ["--bare"] if args.bare else []
                res = subprocess.run(cmd, capture_output=True, text=True, check=True,
                                     env={**os.environ, "OMP_NUM_THREADS": "1"})
                rows[variant].append(json.loads(res.stdout.strip().splitlines()[-1]))
        if len({r["sha256"] for v in rows.values() for r in v}) != 1:
            sys.exit(f"{rt}: the files differ between runs or variants")
        ms = {v: statistics.median(r["fill_ms"] for r in rows[v]) for v in variants}
        print(f"| {rt} | {rows['small'][0]['mib']:.1f} | {ms['small']:.1f} | "
              + " | ".join(f"{ms[v]:.1f} | {ms[v] / ms['small']:.2f}x" for v in variants[1:]) + " |", flush=True)


if __name__ == "__main__":
    main()
