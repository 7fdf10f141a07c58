"""LiteRT: a bundle whose per-width .tflite graphs get their weights from the nodes at load time,
against shipping one .tflite per width converted directly from the plain torch model.

    python tools/bench_litert.py [--ratios 0.25 0.5 0.75 1] [--threads 1] [--runs 200] [--no-int8]

Model: the committed Fashion-MNIST reference ResNet (tools/checkpoints/resnet_fmnist.pt), converted
with activation ordering; int8 graphs are calibrated on 512 Fashion-MNIST training images (needs the
dataset; without it only fp32 is measured). One run prints, per bucket and runtime:
  - startup: bundle bytes in memory -> ready interpreter (parse + core fill + Interpreter/allocate),
    against Interpreter(model_content=direct file) + allocate; median of --startups loads;
  - inference: median ``interpreter.invoke()`` latency, batch 1, both interpreters timed in
    alternating blocks so machine noise hits both alike;
  - whether the filled file is byte-identical to the directly converted one (the direct file is
    ``export.litert.to_tflite`` of the plain resized model: litert-torch, ai-edge-quantizer for int8,
    tensor names blanked in place, so same size and speed as the converter's own file);
and the sizes: the bundle (nodes once + graphs without weights) against one .tflite per bucket and
against the single full-width file.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_reference import load_reference  # noqa: E402

from inn_mobile.app import datasets
from inn_mobile.core.convert import convert  # noqa: E402
from inn_mobile.export import litert  # noqa: E402
from inn_mobile.format import bundle, runtime_file, vocab  # noqa: E402
from inn_mobile.runtime.litert import LiteRTModel, quantize_input  # noqa: E402


def _median_ms(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def _direct_interpreter(flat: bytes, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=flat, num_threads=threads)
    it.allocate_tensors()
    return it


def _invoke_ms(a, b, x, runs: int) -> tuple[float, float]:
    """Median invoke latency of two interpreters, measured in alternating blocks of 10."""
    for it in (a, b):
        detail = it.get_input_details()[0]
        it.set_tensor(detail["index"], quantize_input(x, detail))
        for _ in range(10):
            it.invoke()
    ta, tb = [], []
    for _ in range(max(1, runs // 10)):
        ta.append(_median_ms(a.invoke, 10))
        tb.append(_median_ms(b.invoke, 10))
    return statistics.median(ta), statistics.median(tb)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=200, help="timed invocations per interpreter")
    ap.add_argument("--startups", type=int, default=15, help="timed loads per bucket")
    ap.add_argument("--no-int8", action="store_true", help="fp32 graphs only")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = load_reference()
    have_data = datasets.fashion_mnist_available()
    calib = datasets.fashion_mnist("train")[0][:512] if have_data else None
    example = calib[:1] if have_data else torch.zeros(1, 1, 28, 28)
    if not have_data:
        print("Fashion-MNIST not installed: converting without activation ordering, fp32 only")
    im = convert(model, example, calibration=calib[:256] if have_data else None)
    buckets = bundle.make_buckets(im, args.ratios)
    variants = [False] + ([True] if have_data and not args.no_int8 else [])
    b = bundle.Bundle(im, buckets)
    direct: dict[tuple[int, str], bytes] = {}
    t = time.time()
    for k, bk in enumerate(buckets):
        for int8 in variants:
            rt = litert.runtime_name(int8)
            b.graphs[(k, rt)] = runtime_file.encode_record(litert.lower(im, bk, example, int8=int8, calibration=calib))
            direct[(k, rt)] = litert.to_tflite(im.resize(sizes=bk.sizes), example, int8=int8, calibration=calib)
    print(f"lowered {len(direct)} graphs and their direct twins in {time.time() - t:.0f} s "
          f"({args.threads} thread(s), median of {args.startups} loads / {args.runs} invokes)\n")
    blob = bundle.encode(b)
    _latency_table(b, blob, direct, example.numpy(), args)
    _size_table(b, direct, buckets, variants)


def _latency_table(b: bundle.Bundle, blob: bytes, direct: dict, x, args) -> None:
    print("| bucket | runtime | startup INN ms (parse + fill + interp) | startup direct ms | startup ratio "
          "| infer INN ms | infer direct ms | infer ratio | same bytes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (k, rt), flat in sorted(direct.items()):
        int8 = rt == litert.RUNTIME_I8
        loads = [LiteRTModel.open(blob, bucket=k, int8=int8, threads=args.threads) for _ in range(args.startups)]
        s = {f: statistics.median(getattr(m.startup, f) for m in loads)
             for f in ("open_ms", "fill_ms", "load_ms", "total_ms")}
        d_start = _median_ms(lambda f=flat: _direct_interpreter(f, args.threads), args.startups)
        inn = loads[-1]
        inf_inn, inf_direct = _invoke_ms(inn.interpreter, _direct_interpreter(flat, args.threads), x, args.runs)
        print(f"| {b.buckets[k].name} | {rt} | {s['total_ms']:.2f} ({s['open_ms']:.2f} + {s['fill_ms']:.2f} + "
              f"{s['load_ms']:.2f}) | {d_start:.2f} | {s['total_ms'] / d_start:.2f} | {inf_inn:.3f} | "
              f"{inf_direct:.3f} | {inf_inn / inf_direct:.2f} | {'yes' if inn.flatbuffer == flat else 'no'} |")


def _size_table(b: bundle.Bundle, direct: dict, buckets, variants) -> None:
    full = len(buckets) - 1
    full_fp32 = len(direct[(full, litert.RUNTIME)])
    print(f"\nsizes (KiB); reference: the single full-width fp32 .tflite = {full_fp32 / 1024:.1f} KiB\n")
    int8 = len(variants) > 1
    print("| what | KiB | x full-width fp32 .tflite |" + (" x full-width int8 .tflite |" if int8 else ""))
    print("|---|---|---|" + ("---|" if int8 else ""))
    rows = []
    with tempfile.TemporaryDirectory() as d:
        runtimes = [litert.runtime_name(i) for i in variants]
        for names in ([litert.RUNTIME], runtimes, runtimes[1:]) if len(runtimes) > 1 else ([litert.RUNTIME],):
            graphs = {key: v for key, v in b.graphs.items() if key[1] in names}
            for nodes in vocab.NODE_DTYPES:
                size = bundle.save(bundle.Bundle(b.model, buckets, graphs=graphs), Path(d) / "b.innb", node_dtype=nodes)
                rows.append((f"bundle, {nodes} nodes, graphs: {' + '.join(names)}", size))
    for rt in [litert.runtime_name(i) for i in variants]:
        rows.append((f"one {rt} .tflite per bucket ({len(buckets)} files)",
                     sum(len(v) for (_, r), v in direct.items() if r == rt)))
        rows.append((f"graph records only ({rt}, all buckets)",
                     sum(len(v) for (_, r), v in b.graphs.items() if r == rt)))
    full_i8 = len(direct[(full, litert.RUNTIME_I8)]) if len(variants) > 1 else None
    if full_i8:
        rows.append(("full-width int8 .tflite", full_i8))
    for name, size in rows:
        vs_i8 = f" {size / full_i8:.2f} |" if full_i8 else ""
        print(f"| {name} | {size / 1024:.1f} | {size / full_fp32:.2f} |{vs_i8}")


if __name__ == "__main__":
    main()
