"""Device profiles: each bucket's startup, latency and peak memory, measured on the device itself.

Peak memory is what the width policy budgets, so it is measured, not estimated: every bucket runs in
a fresh process (``python -m inn_mobile.runtime.profiling``) that loads the runtime libraries and the bundle,
resets the kernel's resident-set high-water mark (``/proc/self/clear_refs``), and reports how far
opening, materialising and running the bucket raised it above the resident set at that point
(weights, the runtime's arena, the interpreter's own buffers, transient copies included). A process
per bucket keeps one bucket's allocations from being reused by the next.
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from inn_mobile import runtime
from inn_mobile.format import bundle
from inn_mobile.progress import progress
from inn_mobile.runtime import policy


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> int:
    """Reset the resident-set high-water mark; returns the current resident set in bytes."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError as e:
        raise RuntimeError(f"cannot reset the peak resident set on this system ({e}): profiles need Linux") from e
    return _status_kib("VmRSS") * 1024


def measure(path: str, runtime_name: str, bucket: int, *, runs: int = 20, threads: int = 1) -> dict:
    """Measure one bucket in this process (meant to run in a fresh one: see :func:`profile`)."""
    module = runtime.check_runtime(runtime_name).family
    __import__(f"inn_mobile.runtime.{module}")  # runtime libraries are part of the baseline, not the bucket
    data = Path(path).read_bytes()
    shape = bundle.decode(data).meta.get("input_shape")
    if not shape:
        raise ValueError(f"{path} records no input shape: pack it with inn_mobile.export.pack / `inn-mobile pack`")
    x = torch.randn(*shape)
    base = _reset_peak()
    t = time.perf_counter()
    model = runtime.open_model(data, runtime_name, bucket, threads=threads)
    startup = (time.perf_counter() - t) * 1e3
    model(x)  # first run allocates lazily in some runtimes: part of the peak, not of the latency
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        model(x)
        times.append((time.perf_counter() - t) * 1e3)
    peak = _status_kib("VmHWM") * 1024 - base
    return {"startup_ms": startup, "latency_ms": statistics.median(times), "peak_bytes": peak, "batch": shape[0],
            "threads": threads}


def profile(path: str, runtime_name: str, out: str | None = None, *, runs: int = 20, threads: int = 1,
            device: str | None = None) -> dict:
    """Measure every bucket that has a ``runtime_name`` graph, each in its own process."""
    b = bundle.load(path)
    rows = {}
    ks = [k for k in range(len(b.buckets)) if (k, runtime_name) in b.graphs]
    if not ks:
        raise ValueError(f"{path} has no {runtime_name!r} graphs; it has {b.runtimes() or 'none'}")
    for k in progress(ks, desc="profiling", total=len(ks)):
        cmd = [sys.executable, "-m", "inn_mobile.runtime.profiling", str(path), runtime_name, str(k), str(runs),
               str(threads)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"profiling bucket {b.buckets[k].name} failed:\n{r.stderr[-2000:]}")
        rows[b.buckets[k].name] = json.loads(r.stdout.strip().splitlines()[-1])
    device = device or f"{platform.node()} ({platform.machine()}, {platform.system()})"
    if out:
        policy.save_profile(out, runtime_name, device, rows)
    return {"version": policy.PROFILE_VERSION, "runtime": runtime_name, "device": device, "buckets": rows}


if __name__ == "__main__":
    p, rt, k, n, th = sys.argv[1:6]
    print(json.dumps(measure(p, rt, int(k), runs=int(n), threads=int(th))))
