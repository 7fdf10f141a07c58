"""The ``inn-mobile`` command line.

    inn-mobile demo                                   # the whole product end to end on real data
    inn-mobile convert --model M --input-shape 1,3,32,32 --out m.innb   # nodes only (C core, JNI)
    inn-mobile pack --model M --input-shape 1,3,32,32 --runtime litert --calibration x.pt --out m.innb
    inn-mobile inspect m.innb                         # what a bundle holds
    inn-mobile profile m.innb --runtime litert --out device.json
    inn-mobile run m.innb --runtime litert --memory-budget 8MiB [--profile device.json] [--input x.pt]
    inn-mobile bench m.innb --runtime litert --dataset digits

Exit codes: 0 success, 1 the input was bad (corrupt bundle, nothing fits the budget), 2 usage errors.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib
import importlib.util
import json
import logging
import os
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

UNITS = {"": 1, "b": 1, "k": 2**10, "kib": 2**10, "m": 2**20, "mib": 2**20, "g": 2**30, "gib": 2**30}


class UsageError(Exception):
    """Bad arguments or files named on the command line (exit code 2)."""


def parse_bytes(text: str) -> int:
    """``8MiB``, ``512k``, ``1.5G`` or a plain byte count."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 8MiB, 512k, 1.5G, 1048576)")
    return int(float(m.group(1)) * UNITS[m.group(2).lower()])


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"not a shape: {text!r} (example: 1,3,32,32)")
    return shape


def load_tensor(path: str) -> torch.Tensor:
    """Inputs from a ``.pt`` tensor or a ``.npy`` array."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{path} does not exist")
    try:
        t = torch.from_numpy(np.load(p)) if p.suffix == ".npy" else torch.load(p, weights_only=True)
    except Exception as e:
        raise UsageError(f"cannot read a tensor from {path}: {e}") from e
    if not isinstance(t, torch.Tensor):
        raise UsageError(f"{path} holds a {type(t).__name__}, not a tensor")
    return t.float()


def _torch_load(path: str, what: str, trust_pickle: bool):
    """``torch.load`` of a file named on the command line. Unpickling a file can run any code in it,
    so by default only tensors and containers of them are read (``weights_only``); ``trust_pickle``
    (``--trust-pickle``) unpickles everything, for files the user made or trusts."""
    if not Path(path).is_file():
        raise UsageError(f"{what} {path} does not exist or is not a file")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except Exception as e:  # unpickling raises anything the file makes it raise: one line, not a traceback
        hint = "" if trust_pickle else " (read without running code from it; pass --trust-pickle only if you trust it)"
        raise UsageError(f"cannot read {what} {path}{hint}: {_one_line(e)}") from e


def load_model(spec: str, weights: str | None, *, trust_pickle: bool = False,
               kwargs: str | None = None) -> torch.nn.Module:
    """``timm:<name>`` or ``hf:<config, class or model type>`` (a zoo model, random weights, see
    ``app/zoo.py``), ``package.module:factory`` or ``path/to/file.py:factory``, called with ``kwargs``
    (a JSON object, e.g. ``'{"num_classes": 10}'``), or a ``.pt`` file holding a whole pickled module
    (only with ``trust_pickle``: unpickling a module runs code from the file); ``weights`` an optional
    state dict (tensors only unless ``trust_pickle``)."""
    from inn_mobile.app import zoo

    try:
        options = json.loads(kwargs) if kwargs else {}
    except json.JSONDecodeError as e:
        raise UsageError(f"--model-kwargs is not JSON: {e}") from e
    if not isinstance(options, dict):
        raise UsageError("--model-kwargs must be a JSON object, e.g. '{\"num_classes\": 10}'")
    model = zoo.load(spec, **options)
    if model is None and spec.endswith(".pt"):
        if not trust_pickle:
            raise UsageError(f"--model {spec}: a pickled module runs code from the file when loaded; use "
                             "module:factory or file.py:factory with --weights, or pass --trust-pickle if you "
                             "made or trust this file")
        model = _torch_load(spec, "--model", trust_pickle)
    elif model is None:
        if ":" not in spec:
            raise UsageError(f"--model {spec!r}: use module:factory, file.py:factory or model.pt")
        where, name = spec.rsplit(":", 1)
        try:
            if where.endswith(".py"):
                loc = importlib.util.spec_from_file_location("inn_user_model", where)
                if loc is None or not Path(where).exists():
                    raise UsageError(f"{where} does not exist")
                mod = importlib.util.module_from_spec(loc)
                loc.loader.exec_module(mod)
            else:
                mod = importlib.import_module(where)
            model = getattr(mod, name)(**options)
        except (ImportError, AttributeError, TypeError) as e:
            raise UsageError(f"cannot load --model {spec!r}: {e}") from e
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"--model {spec!r} gave a {type(model).__name__}, not a torch.nn.Module")
    if weights:
        state = _torch_load(weights, "--weights", trust_pickle)
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as e:
            raise UsageError(f"--weights {weights} does not fit --model {spec}: {_one_line(e)}") from e
    return model.eval()


def _convert_args(args: argparse.Namespace):
    from inn_mobile.core.convert import convert

    model = load_model(args.model, args.weights, trust_pickle=args.trust_pickle, kwargs=args.model_kwargs)
    x = torch.randn(*args.input_shape)
    calib = load_tensor(args.calibration) if args.calibration else None
    im = convert(model, x, calibration=calib)
    print(im.channel_graph.table())
    return im, x, calib


def _buckets(im, ratios):
    from inn_mobile.format import bundle

    return bundle.make_buckets(im, tuple(ratios), multiple_of=8)


def check_out(path: str) -> None:
    """Fail on an output path that cannot be written before any work is done (a conversion takes
    minutes): its folder must exist and it must not be a folder itself."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"--out {path} is a folder: name the file to write")
    if not p.parent.is_dir():
        raise UsageError(f"--out {path}: folder {p.parent} does not exist")


def cmd_convert(args: argparse.Namespace) -> int:
    from inn_mobile.format import bundle

    check_out(args.out)
    im, _, _ = _convert_args(args)
    size = bundle.save(bundle.Bundle(im, _buckets(im, args.ratios)), args.out, node_dtype=args.node_dtype)
    print(f"wrote {args.out} ({size} bytes, nodes only: add runtime graphs with `inn-mobile pack`)")
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from inn_mobile.export import pack
    from inn_mobile.format.vocab import RUNTIMES

    check_out(args.out)
    if args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    int8 = [rt for rt in args.runtime if RUNTIMES[rt].int8]
    if int8 and not args.calibration:  # before the conversion, which can take minutes
        raise UsageError(f"{int8[0]} is int8: give --calibration (unlabelled inputs, .pt/.npy) "
                         "for its activation ranges")
    im, x, calib = _convert_args(args)
    from inn_mobile.export.cascade import Target

    try:
        targets = [Target.parse(t) for t in args.cascade or []]
    except ValueError as e:
        raise UsageError(str(e)) from e
    validation = cascade_data = None
    if args.validation:
        validation = (load_tensor(args.validation), load_tensor(args.validation_labels).long())
    if args.cascade_data:
        cascade_data = (load_tensor(args.cascade_data), load_tensor(args.cascade_labels).long())
    if targets and cascade_data is None and validation is None:
        raise UsageError("--cascade needs labelled data: --cascade-data/--cascade-labels or --validation")
    t = time.time()
    b = pack.pack(im, x, args.runtime, buckets=_buckets(im, args.ratios), calibration=calib,
                  validation=validation, path=args.out, node_dtype=args.node_dtype, cascades=targets,
                  cascade_data=cascade_data, cascade_score=args.cascade_score, jobs=args.jobs)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size} bytes): {len(b.buckets)} widths x {args.runtime} "
          f"in {time.time() - t:.1f} s")
    for c in b.cascades:
        steps = " > ".join(f"{b.buckets[k].name} ({th:.3f})" for k, th in zip(c.buckets, c.thresholds))
        print(f"cascade {c.name}: {steps}; on the calibration data {c.accuracy:.2f}% at {c.mean_macs:,.0f} MACs "
              f"per input")
    return 0


def _open_bundle(path: str):
    from inn_mobile.format import bundle

    if not Path(path).exists():
        raise UsageError(f"{path} does not exist")
    if not Path(path).is_file():
        raise UsageError(f"{path} is not a file")
    return bundle.load(path)


def cmd_inspect(args: argparse.Namespace) -> int:
    b = _open_bundle(args.bundle)
    path = Path(args.bundle)
    m = b.model
    print(f"{path}: {path.stat().st_size} bytes, quadrature {m.quadrature}, {len(m.layers)} layers, "
          f"{len(m.groups)} groups ({sum(g.resizable for g in m.groups)} resizable)")
    print(f"runtimes: {', '.join(b.runtimes()) or 'none (nodes only)'}")
    if m.norms:
        counts = sorted({len(v) for v in m.norms.values()})
        print(f"per-width normalisation: {'/'.join(map(str, counts))} layers per bucket (NORM, applied by the core)")
    print("| bucket | channels | MACs | runtime | weights bytes | file bytes | accuracy % |\n"
          "|---|---|---|---|---|---|---|")
    for bk in b.buckets:
        channels = sum(bk.sizes[g.id] for g in m.groups if g.resizable)
        rows = bk.info.get("runtimes", {}) or {"-": {}}
        for rt, info in rows.items():
            acc = info.get("accuracy", "-")
            print(f"| {bk.name} | {channels} | {bk.macs or '-'} | {rt} | {info.get('weights_bytes', '-')} | "
                  f"{info.get('file_bytes', '-')} | {acc} |")
    for c in b.cascades:
        steps = " > ".join(f"{b.buckets[k].name} ({th:.3f})" for k, th in zip(c.buckets, c.thresholds))
        print(f"cascade {c.name} ({c.score}, {c.target} {c.target_value:g}): {steps}")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from inn_mobile.runtime import policy, profiling

    check_out(args.out)
    b = _open_bundle(args.bundle)
    prof = profiling.profile(args.bundle, args.runtime, args.out, runs=args.runs, threads=args.threads)
    print(policy.describe(policy.candidates(b, args.runtime, prof)))
    print(f"wrote {args.out}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from inn_mobile import runtime
    from inn_mobile.runtime import policy

    b = _open_bundle(args.bundle)
    prof = policy.load_profile(args.profile) if args.profile else None
    cands = policy.candidates(b, args.runtime, prof)
    choice = policy.choose(cands, args.memory_budget, args.latency_budget)
    print(f"chose {choice.reason}")
    cache = runtime.WidthCache(args.cache_dir) if args.cache_dir else None
    net = runtime.open_model(args.bundle, args.runtime, choice.bucket, threads=args.threads, cache_dir=cache)
    s = net.startup  # what an app pays at each start (the runtime's one-off import is not part of it)
    step = "width cache checked" if s.cache == "hit" else "fill"
    print(f"startup: {s.total_ms:.1f} ms (open {s.open_ms:.1f} + {step} {s.fill_ms:.1f} + "
          f"runtime load {s.load_ms:.1f})")
    x = load_tensor(args.input) if args.input else torch.randn(*net.input_shape)  # the graph's, not META's
    t = time.perf_counter()
    y = net(x)
    print(f"inference on {tuple(x.shape)}: {(time.perf_counter() - t) * 1e3:.2f} ms")
    top = torch.as_tensor(y).float().softmax(-1).topk(min(3, y.shape[-1]), dim=-1)
    for i in range(min(len(x), 5)):
        print(f"input {i}: " + ", ".join(f"class {c} ({p:.2f})" for p, c in zip(top.values[i].tolist(),
                                                                                  top.indices[i].tolist())))
    if s.cache == "storing":  # written while the runtime loaded and ran: its outcome, before the process ends
        failed = cache.wait()
        print(f"width cache: not stored: {failed[0]}" if failed else "width cache: stored for the next start",
              file=sys.stderr if failed else sys.stdout)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from inn_mobile import runtime
    from inn_mobile.app.demo import load_dataset
    from inn_mobile.metrics import accuracy

    b = _open_bundle(args.bundle)
    ds = load_dataset(args.dataset)
    size = Path(args.bundle).stat().st_size
    print(f"{args.bundle}: {size} bytes; {ds.name} test set ({len(ds.yt)} images)")
    print("| bucket | runtime | weights bytes | startup ms | latency ms | accuracy % |\n|---|---|---|---|---|---|")
    rows = []
    for rt in args.runtime:
        for k, bk in enumerate(b.buckets):
            if (k, rt) not in b.graphs:
                continue
            t = time.perf_counter()
            net = runtime.open_model(args.bundle, rt, k, threads=args.threads)
            startup = (time.perf_counter() - t) * 1e3
            x = ds.xt[:b.meta.get("input_shape", [1])[0]]
            net(x)
            t = time.perf_counter()
            for _ in range(args.runs):
                net(x)
            latency = (time.perf_counter() - t) * 1e3 / args.runs
            acc = accuracy(net, ds.xt, ds.yt)
            wb = bk.info.get("runtimes", {}).get(rt, {}).get("weights_bytes", 0)
            rows.append((bk, rt, wb, startup, latency, acc))
            print(f"| {bk.name} | {rt} | {wb} | {startup:.1f} | {latency:.3f} | {acc:.2f} |")
    if args.plot and rows:
        _bench_plot(rows, args.plot)
    return 0


def _bench_plot(rows, path: str) -> None:
    from inn_mobile.app import plotting

    plt = plotting.pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for rt in dict.fromkeys(r[1] for r in rows):
        mine = [r for r in rows if r[1] == rt]
        w = [100 * (r[0].ratio or 1.0) for r in mine]
        for ax, col, label in zip(axes, (5, 4, 2), ("accuracy %", "latency ms", "weights bytes")):
            ax.plot(w, [r[col] for r in mine], "o-", label=rt)
            ax.set(xlabel="width %", ylabel=label, title=f"{label} vs width")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    plotting.save(fig, path)


def cmd_demo(args: argparse.Namespace) -> int:
    from inn_mobile.app import demo

    return demo.run(args)


def build_parser() -> argparse.ArgumentParser:
    from inn_mobile.app import demo
    from inn_mobile.runtime import RUNTIMES

    ap = argparse.ArgumentParser(prog="inn-mobile", description="Integral Neural Networks on device: one trained "
                                 "model, every width, resampled at app start by a small C core.")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="the whole product end to end on real data (about 2 minutes on 2 cores)",
                       description=demo.__doc__)
    demo.add_arguments(p)
    p.set_defaults(fn=cmd_demo)

    def model_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", required=True, help="timm:<name>, hf:<config or class>, module:factory, "
                       "file.py:factory, or a pickled model.pt")
        p.add_argument("--model-kwargs", help="JSON object of keyword arguments for the model factory / zoo")
        p.add_argument("--weights", help="state dict (.pt) to load into the model")
        p.add_argument("--trust-pickle", action="store_true",
                       help="unpickle --model/--weights fully: loading a pickle runs code from the file, so only "
                            "for files you made or trust (default: tensors only, and no pickled model.pt)")
        p.add_argument("--input-shape", required=True, type=parse_shape, help="e.g. 1,3,32,32 (batch included)")
        p.add_argument("--calibration", help="unlabelled inputs (.pt/.npy): channel ordering and int8 ranges")
        p.add_argument("--ratios", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0],
                       help="bucket widths (default: %(default)s)")
        p.add_argument("--out", required=True, help="bundle to write (.innb)")
        # vocab.NODE_DTYPES, spelled out so that --help does not import torch
        p.add_argument("--node-dtype", choices=("f32", "f16", "i8"), default="f32",
                       help="node storage: f16 halves the nodes, i8 quarters them (int8 + a scale per node row; "
                            "for int8 graphs) (default: %(default)s)")

    p = sub.add_parser("convert", help="convert a PyTorch CNN to an INN bundle (nodes and buckets, no graphs)")
    model_args(p)
    p.set_defaults(fn=cmd_convert)

    p = sub.add_parser("pack", help="convert and lower every bucket for one or more runtimes into one bundle")
    model_args(p)
    p.add_argument("--runtime", nargs="+", required=True, choices=sorted(RUNTIMES), help="runtimes to lower for")
    p.add_argument("--validation", help="validation inputs (.pt/.npy) to record each bucket's accuracy")
    p.add_argument("--validation-labels", help="labels for --validation")
    p.add_argument("--cascade", nargs="+", metavar="TARGET",
                   help="calibrate a confidence cascade per target: acc:POINTS (at most that far below the widest "
                        "bucket, fewest MACs), macs:N or macs:P%% (average MACs per input, best accuracy)")
    p.add_argument("--cascade-data", help="labelled inputs (.pt/.npy) the cascades are calibrated on (default: "
                                          "--validation); keep them apart from the data you report on")
    p.add_argument("--cascade-labels", help="labels for --cascade-data")
    p.add_argument("--cascade-score", choices=("max_prob", "margin"), default="max_prob",
                   help="a step's confidence: the top softmax probability, or top minus second (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="lowerings at once, each a (width, runtime family) in its own worker process with a copy of "
                        "the model: about N times faster with N free cores, N times the converters' memory; the "
                        "bundle is the same (default: %(default)s)")
    p.set_defaults(fn=cmd_pack)

    p = sub.add_parser("inspect", help="print what a bundle holds")
    p.add_argument("bundle", help="a .innb file")
    p.set_defaults(fn=cmd_inspect)

    p = sub.add_parser("profile", help="measure every bucket's latency and peak memory on this device")
    p.add_argument("bundle", help="a .innb file with graphs")
    p.add_argument("--runtime", required=True, choices=sorted(RUNTIMES))
    p.add_argument("--out", default="device.json", help="profile to write (default: %(default)s)")
    p.add_argument("--runs", type=int, default=20, help="timed runs per bucket (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="runtime threads (default: %(default)s)")
    p.set_defaults(fn=cmd_profile)

    p = sub.add_parser("run", help="choose a width for a budget, materialise it and run an input")
    p.add_argument("bundle", help="a .innb file with graphs")
    p.add_argument("--runtime", required=True, choices=sorted(RUNTIMES))
    p.add_argument("--memory-budget", required=True, type=parse_bytes, help="e.g. 8MiB, 512k")
    p.add_argument("--latency-budget", type=float, help="milliseconds (needs --profile)")
    p.add_argument("--profile", help="device profile from `inn-mobile profile`")
    p.add_argument("--input", help="inputs (.pt/.npy) shaped like the graph's input; random if omitted")
    p.add_argument("--threads", type=int, default=1, help="runtime threads (default: %(default)s)")
    p.add_argument("--cache-dir", help="a width cache: the first start of a width keeps its filled files there, "
                   "later starts load them (checked) as plain files")
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("bench", help="startup, latency, size and accuracy of every bucket, with plots")
    p.add_argument("bundle", help="a .innb file with graphs")
    p.add_argument("--runtime", nargs="+", required=True, choices=sorted(RUNTIMES))
    p.add_argument("--dataset", choices=("digits", "fashion-mnist"), default="digits")
    p.add_argument("--runs", type=int, default=20, help="timed runs per bucket (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="runtime threads (default: %(default)s)")
    p.add_argument("--plot", help="PNG to write (accuracy / latency / size vs width)")
    p.set_defaults(fn=cmd_bench)
    return ap


def quiet_third_party() -> None:
    """The converters log deprecation chatter and optional-CUDA-kernel failures that say nothing about
    the user's model; the command line hides them (library users keep their own logging settings)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # the LiteRT converter's oneDNN notice goes through absl before TF_CPP_MIN_LOG_LEVEL applies; without
    # oneDNN's reordered sums the conversion is also bit-reproducible
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    warnings.filterwarnings("ignore", category=FutureWarning)
    for name in ("torchao", "torch.utils._pytree", "torch._export"):
        logging.getLogger(name).setLevel(logging.ERROR)


class NativeNoticeFilter:
    """A command's ``sys.stderr`` without ExecuTorch's native log lines ("[cpuinfo_utils.cpp:71] Reading
    file ...", "[threadpool.cpp:66] Resetting threadpool ..."): its Python bindings print them through
    ``sys.stderr`` piece by piece ("[", "cpuinfo_utils.cpp", ":", "71", "] ", the text, "\\n"), not file
    descriptor 2, so silencing the descriptor does not reach them. A line is held back only while it
    can still become such a notice; everything else passes through as it comes."""

    NOTICE = re.compile(r"\[[\w.]+\.(?:cpp|cc|c|h):\d+\] ")
    PARTIAL = re.compile(r"\[[\w.]*(?::\d*\]?)?")  # what a notice's start looks like before its "] "

    def __init__(self, out) -> None:
        self._out = out
        self._held = ""
        self._line_start = True

    def write(self, text: str) -> int:
        for part in text.splitlines(keepends=True):
            if self._held or (self._line_start and part.startswith("[")):
                self._held += part
                if self.NOTICE.match(self._held):
                    if self._held.endswith("\n"):
                        self._held = ""  # a whole notice: dropped
                elif not self.PARTIAL.fullmatch(self._held) or self._held.endswith(("\n", "\r")):
                    self._out.write(self._held)
                    self._held = ""
            else:
                self._out.write(part)
            self._line_start = part.endswith(("\n", "\r"))
        return len(text)

    def __getattr__(self, name: str):
        return getattr(self._out, name)


@contextlib.contextmanager
def native_stderr_silenced():
    """LiteRT's C++ code prints notices straight to file descriptor 2 ("Created TensorFlow Lite XNNPACK
    delegate") that say nothing about the user's model: while a command runs, that descriptor points at
    /dev/null and Python's own ``sys.stderr`` (our errors, progress bars) at a copy of the real one.
    (ExecuTorch's notices come through ``sys.stderr`` instead: :class:`NativeNoticeFilter`.) ``INN_VERBOSE=1``
    keeps everything, e.g. to see a native crash's last words."""
    real = getattr(sys.stderr, "fileno", None)
    try:
        is_fd2 = real is not None and real() == 2
    except (OSError, ValueError):  # a replaced stderr (pytest's capture) has no descriptor: nothing to do
        is_fd2 = False
    if os.environ.get("INN_VERBOSE") == "1" or not is_fd2:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    original, sys.stderr = sys.stderr, NativeNoticeFilter(open(saved, "w", buffering=1, closefd=False))  # noqa: SIM115
    try:
        yield
    finally:
        sys.stderr.flush()
        ctypes.CDLL(None).fflush(None)  # C stdio's buffered notices go where fd 2 points now: /dev/null
        sys.stderr = original
        os.dup2(saved, 2)
        os.close(saved)


def main(argv: list[str] | None = None) -> int:
    from inn_mobile.errors import InnError

    args = build_parser().parse_args(argv)
    quiet_third_party()
    for data, labels in (("validation", "validation_labels"), ("cascade_data", "cascade_labels")):
        if getattr(args, data, None) and not getattr(args, labels, None):
            print(f"error: --{data.replace('_', '-')} needs --{labels.replace('_', '-')}", file=sys.stderr)
            return 2
    try:
        with native_stderr_silenced():
            return args.fn(args)
    except UsageError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory (the input asks for more than this machine has)", file=sys.stderr)
        return 1
    except (InnError, OSError, KeyError, ValueError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 1


def _one_line(e: BaseException) -> str:
    """An error as one line of the ``error:`` message: its first line (unpickling errors run to
    paragraphs), or its class when it has no message."""
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    lines = text.strip().splitlines()
    return lines[0] if lines else type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
