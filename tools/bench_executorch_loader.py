"""Peak memory of a bundle's ExecuTorch graph loaded in C++ as an app would, with and without
``inn::ReleasingDataLoader`` (``inn_mobile/csrc/executorch/inn_releasing_loader.h``), against the plain file.

    python tools/bench_executorch_loader.py BUNDLE PLAIN_PTE [--bucket -1] [--runtime executorch] [--runs 5]

Builds ``tools/executorch_host/et_host.cpp`` (linked to the installed C core and ExecuTorch's C++ runtime from
the installed ``executorch`` wheel: its headers and shared libraries) and runs, each in a fresh process, taking turns:
the plain ``.pte`` loaded from its path; the bundle's graph filled by the core into memory and loaded from
there with the ``.ptd`` as a plain buffer (what the Python bindings allow); and the same with the releasing
loader. Each prints its peak RSS (VmHWM) after loading the method and one inference; the table has the
medians and the issue's bound: the plain file's peak + the largest layer's float weights + the fill's
scratch. The outputs of the three are compared (the two bundle loads must agree byte for byte). Run
``tools/bench_real.py --out DIR`` first for the real models' bundles and plain files (``DIR/lite0.innb``
and ``DIR/lite0_executorch.pte``, ...).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from bench_real import rss_allowance

ROOT = Path(__file__).resolve().parent.parent
HOST = ROOT / "tools" / "executorch_host" / "et_host.cpp"
MODES = ("plain", "buffer", "release")


def build(out: Path) -> Path:
    """Compile the host program into ``out``, linked to the core this Python process loads
    (:func:`inn_mobile.native.library_path`: the same build, the same flags); returns its path. Raises
    ``RuntimeError`` with the compiler's last lines when it does not build (no compiler, no ExecuTorch wheel)."""
    import executorch

    from inn_mobile import native

    et = Path(executorch.__path__[0])
    include, lib = et / "include", et / "lib"
    core = native.library_path().resolve()
    exe = out / "et_host"
    # ExecuTorch's headers carry their own c10 (with the macros its build generates); the XNNPACK backend
    # registers itself when its library loads, so it is linked even though no symbol of it is named
    _run(["g++", "-std=c++17", "-O2", "-pthread", "-Wno-deprecated-declarations",
          "-DC10_USING_CUSTOM_GENERATED_MACROS", f"-I{include}",
          f"-I{include / 'executorch/runtime/core/portable_type/c10'}", str(HOST), str(core),
          f"-L{lib}", "-Wl,--no-as-needed", "-lexecutorch_backend_xnnpack", "-lexecutorch",
          "-lexecutorch_kernels_optimized", "-Wl,--as-needed", f"-Wl,-rpath,{lib}", "-lm", "-o", str(exe)])
    return exe


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise RuntimeError(f"{Path(cmd[0]).name} failed: {tail[:300]}")


def write_input(x: np.ndarray, work: Path) -> Path:
    """``x`` as the raw float32 file every :func:`load_once` reads."""
    path = work / "x.bin"
    np.ascontiguousarray(x, np.float32).tofile(path)
    return path


def load_once(exe: Path, mode: str, bundle: Path, plain: Path, bucket: int, runtime: str, xin: Path,
              work: Path, threads: int = 1, cache_dir: Path | None = None) -> tuple[dict[str, float], np.ndarray]:
    """One load + inference of input file ``xin`` in a fresh process: what et_host prints (``hwm_kib``,
    ``base_kib``, ``files``, ``open_ms``, ``fill_ms``, ``load_ms``, ``hit``) and output 0. A bundle
    is filled on ``threads`` threads; mode ``"cached"`` goes through the width cache in ``cache_dir``."""
    yout = work / f"y_{mode}.bin"
    args = (["plain", str(plain)] if mode == "plain"
            else ["cached", str(bundle), str(bucket), runtime, str(cache_dir), str(threads)] if mode == "cached"
            else ["bundle", str(bundle), str(bucket), runtime, mode, str(threads)])
    done = subprocess.run([str(exe), *args, str(xin), str(yout)],
                          capture_output=True, text=True, env={**os.environ, "ET_LOG_LEVEL": "Error"})
    if done.returncode != 0:
        raise RuntimeError(f"et_host {mode}: {done.stderr.strip().splitlines()[-1:] or done.returncode}")
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("hwm_kib="))
    return {k: float(v) for k, v in (f.split("=") for f in line.split())}, np.fromfile(yout, np.float32)


def fresh_ms(exe: Path, size: int) -> float:
    """Milliseconds a fresh et_host process takes to write ``size`` bytes of new memory, nothing else."""
    done = subprocess.run([str(exe), "fresh", str(size)], capture_output=True, text=True, check=True)
    return float(done.stdout.split("=")[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", type=Path)
    ap.add_argument("plain", type=Path, help="the plain .pte of the same width (weights inside)")
    ap.add_argument("--bucket", type=int, default=-1, help="bucket index (negative counts from the widest)")
    ap.add_argument("--runtime", default="executorch", choices=["executorch", "executorch-i8"])
    ap.add_argument("--runs", type=int, default=5, help="fresh processes per mode")
    args = ap.parse_args()
    from inn_mobile import native
    from inn_mobile.app.cli import quiet_third_party

    quiet_third_party()

    for p in (args.bundle, args.plain):
        if not p.is_file():
            sys.exit(f"bench_executorch_loader: no such file: {p}")
    nb = native.NativeBundle.from_file(args.bundle)
    bucket = args.bucket % nb.bucket_count
    largest, scratch = rss_allowance(nb, bucket)
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        exe = build(work)
        shape = input_shape(args.plain)
        xin = write_input(np.random.default_rng(0).standard_normal(shape).astype(np.float32), work)
        peaks: dict[str, list[float]] = {m: [] for m in MODES}
        outs: dict[str, np.ndarray] = {}
        for _ in range(args.runs):
            for mode in MODES:
                got, outs[mode] = load_once(exe, mode, args.bundle, args.plain, bucket, args.runtime, xin, work)
                peaks[mode].append(got["hwm_kib"] / 1024)
    plain = statistics.median(peaks["plain"])
    print(f"{args.bundle.name} ({args.runtime}, bucket {bucket}): largest layer {largest:.1f} MiB, "
          f"scratch {scratch:.1f} MiB, bound = plain + both = {plain + largest + scratch:.1f} MiB")
    print("| load (C++, fresh process) | peak RSS MiB | over plain MiB | <= bound | max abs diff to plain |")
    print("|---|---|---|---|---|")
    for mode, title in zip(MODES, ("plain .pte from its path", ".ptd as a plain buffer",
                                   ".ptd through inn::ReleasingDataLoader")):
        peak = statistics.median(peaks[mode])
        met = "" if mode == "plain" else ("met" if peak <= plain + largest + scratch else "NOT met")
        diff = float(np.abs(outs[mode] - outs["plain"]).max())
        print(f"| {title} | {peak:.1f} | {peak - plain:+.1f} | {met} | {diff:.3g} |")
    if outs["buffer"].tobytes() != outs["release"].tobytes():
        sys.exit("bench_executorch_loader: the two bundle loads disagree")


def input_shape(pte: Path) -> tuple[int, ...]:
    """The forward method's input shape, read by ExecuTorch's Python bindings (nothing is run)."""
    from executorch.extension.pybindings.portable_lib import _load_for_executorch

    return tuple(_load_for_executorch(str(pte)).method_meta("forward").input_tensor_meta(0).sizes())


if __name__ == "__main__":
    main()
