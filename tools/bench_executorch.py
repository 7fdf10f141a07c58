"""ExecuTorch per width bucket: a bundle (nodes once + weightless graphs) vs one plain .pte per bucket.

    python tools/bench_executorch.py [--widths 0.5 0.75 1] [--int8] [--repeats 50] [--batch 1]

Uses the committed Fashion-MNIST reference ResNet (tools/checkpoints/resnet_fmnist.pt) and, for
activation ordering and int8 calibration, Fashion-MNIST train images. Per bucket and runtime, all in
one run:
  - startup: bundle = read + open (core validates) + materialise (core writes .pte/.ptd) + load
    program and method; plain = read the .pte + load program and method. Median of --repeats.
  - latency: median forward time at 1 and 2 threads, bundle-loaded vs plain, with their ratio
    (the graphs are the same lowering, so it should be 1.00 within noise).
  - size: the bundle (nodes + every bucket's graph) vs the single full-width .pte and vs shipping
    one .pte per bucket, with the nodes stored as f32, f16 and i8 (startup and latency are timed with
    f32 nodes for fp32 graphs and i8 nodes for int8 graphs).
Prints Markdown tables.
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
from inn_mobile.export import executorch as ex  # noqa: E402
from inn_mobile.format import bundle, runtime_file, vocab  # noqa: E402
from inn_mobile.runtime.executorch import ExecutorchModel, set_threads  # noqa: E402
from inn_mobile.runtime.reader import Startup  # noqa: E402

SHIPPED_NODES = {False: "f32", True: "i8"}  # node storage timed per graph kind (int8 graphs ship int8 nodes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", type=float, nargs="+", default=[0.5, 0.75, 1.0])
    ap.add_argument("--int8", action="store_true", help="also benchmark int8 graphs (PT2E, static activations)")
    ap.add_argument("--repeats", type=int, default=50, help="timed runs per measurement (median reported)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--calibration", type=int, default=512, help="train images for ordering and int8 calibration")
    args = ap.parse_args()
    if not datasets.fashion_mnist_available():
        sys.exit("Fashion-MNIST missing: apt-get install dataset-fashion-mnist")
    torch.manual_seed(0)
    xtr, _ = datasets.fashion_mnist("train")
    calib = xtr[:args.calibration]
    x = datasets.fashion_mnist("test")[0][:args.batch]
    im = convert(load_reference(), x, calibration=calib[:256])
    buckets = bundle.make_buckets(im, args.widths)
    out = Path(tempfile.mkdtemp(prefix="bench_et_"))
    sizes, rows = [], []
    for int8 in ([False, True] if args.int8 else [False]):
        runtime = ex.RUNTIME_INT8 if int8 else ex.RUNTIME
        t = time.time()
        graphs, plain = {}, []
        for k, b in enumerate(buckets):
            graphs[(k, runtime)] = runtime_file.encode_record(ex.lower(im, b, x, int8=int8, calibration=calib))
            path = out / f"{runtime}_{b.name}.pte"
            path.write_bytes(ex.plain_pte(im.resize(sizes=b.sizes), x, int8=int8, calibration=calib))
            plain.append(path)
        print(f"{runtime}: lowered {len(buckets)} buckets twice (bundle + plain) in {time.time() - t:.0f} s",
              file=sys.stderr)
        plain_sizes = [p.stat().st_size for p in plain]
        for nodes in vocab.NODE_DTYPES:
            path = out / f"{runtime}_{nodes}.innb"
            size = bundle.save(bundle.Bundle(im, buckets, graphs=graphs), path, node_dtype=nodes)
            sizes.append((runtime, nodes, size, plain_sizes[-1], sum(plain_sizes)))
        bundle_path = out / f"{runtime}_{SHIPPED_NODES[int8]}.innb"
        for k, b in enumerate(buckets):
            rows.append(_measure(runtime, b, bundle_path, plain[k], x, int8, args.repeats))
    _print(rows, sizes, args, buckets[-1].ratio)


def _median_s(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _load_plain(path: Path):
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(path.read_bytes())
    return program, program.load_method("forward")


def _measure(runtime: str, b: bundle.Bucket, bundle_path: Path, plain_path: Path, x: torch.Tensor, int8: bool,
             repeats: int) -> dict:
    set_threads(1)  # only while nothing is loaded: each XNNPACK delegate keeps a pointer to the pool
    timings: list[Startup] = []

    def open_bundle() -> None:
        timings.append(ExecutorchModel.open(bundle_path, bucket=b.name, int8=int8).startup)

    row = {"runtime": runtime, "bucket": b.name, "start_bundle": _median_s(open_bundle, repeats),
           "start_plain": _median_s(lambda: _load_plain(plain_path), repeats)}
    row["materialise"] = statistics.median(t.fill_ms for t in timings) / 1e3
    for threads in (1, 2):
        set_threads(threads)
        row[f"bundle_{threads}"], row[f"plain_{threads}"] = _latency(bundle_path, plain_path, b.name, x, int8, repeats)
    return row


def _latency(bundle_path: Path, plain_path: Path, bucket: str, x: torch.Tensor, int8: bool,
             repeats: int) -> tuple[float, float]:
    """Median ``execute`` seconds of the bundle-loaded and the plain method (both loaded at the current
    pool size), timed in alternating blocks so machine noise hits both alike; the same call path on
    both sides (``ExecutorchModel.__call__`` adds input checks and batching on top)."""
    model = ExecutorchModel.open(bundle_path, bucket=bucket, int8=int8)
    program, method = _load_plain(plain_path)  # the program must outlive its method
    ours = model.method
    ours.execute((x,)), method.execute((x,))  # warm-up
    a, b = [], []
    for _ in range(5):
        a.append(_median_s(lambda: ours.execute((x,)), max(1, repeats // 5)))
        b.append(_median_s(lambda: method.execute((x,)), max(1, repeats // 5)))
    return statistics.median(a), statistics.median(b)


def _print(rows: list[dict], sizes: list[tuple], args, full_ratio: float) -> None:
    ms = 1000.0
    print(f"\nFashion-MNIST reference ResNet, batch {args.batch}, median of {args.repeats}; "
          f"{torch.get_num_threads()} torch threads available\n")
    print("| runtime | bucket | startup bundle ms (materialise) | startup plain .pte ms | "
          "1 thr bundle ms | 1 thr plain ms | ratio | 2 thr bundle ms | 2 thr plain ms | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['runtime']} | {r['bucket']} | {r['start_bundle'] * ms:.2f} ({r['materialise'] * ms:.2f}) | "
              f"{r['start_plain'] * ms:.2f} | {r['bundle_1'] * ms:.3f} | {r['plain_1'] * ms:.3f} | "
              f"{r['bundle_1'] / r['plain_1']:.2f} | {r['bundle_2'] * ms:.3f} | {r['plain_2'] * ms:.3f} | "
              f"{r['bundle_2'] / r['plain_2']:.2f} |")
    print(f"\n| runtime | nodes | bundle KiB (all buckets) | full-width .pte KiB ({full_ratio:g}) | "
          "bundle / full .pte | one .pte per bucket KiB | bundle / per-bucket |")
    print("|---|---|---|---|---|---|---|")
    kib = 1024.0
    for runtime, nodes, bsize, full, total in sizes:
        print(f"| {runtime} | {nodes} | {bsize / kib:.1f} | {full / kib:.1f} | {bsize / full:.2f}x | "
              f"{total / kib:.1f} | {bsize / total:.2f}x |")


if __name__ == "__main__":
    main()
