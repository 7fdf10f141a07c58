"""Load-time resampling speed: the C core vs the torch reference vs memcpy, on a ResNet-18-sized model.

    python tools/bench_resample.py [--repeats 15] [--node-dtypes f32 f16 i8] [--threads 1 2] [--per-layer]

For each node storage, width (100% and 50%) and thread count in one run: time to materialise every layer
(float32, OIHW) with the native core, with the torch reference (kernel.py, float64 as the core computes),
and the time libc memcpy needs to move the same traffic: the output bytes alone, and (nodes read +
weights written). Peak extra memory of the core is its scratch buffer per thread (it allocates nothing
else), compared with the largest single layer's float weights. Best of --repeats, the four timed in turn.

Threads: all four get the same number. The core is reentrant (no globals, the opened bundle is read-only),
so N caller threads each take the next layer, largest first, with a scratch buffer of their own, as a
device loader with a thread pool would; torch runs its own N intra-op threads; memcpy is cut into N
pieces copied at once.
"""

from __future__ import annotations

import argparse
import ctypes
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from inn_mobile import native
from inn_mobile.app import models
from inn_mobile.core.convert import convert
from inn_mobile.format import bundle, vocab

NODE_BYTES = {"f32": 4, "f16": 2, "i8": 1}


def best(fn, repeats: int) -> float:
    return interleaved([fn], repeats)[0]


def interleaved(fns, repeats: int) -> list[float]:
    """Best time of each of ``fns``, run in turn ``repeats`` times: a slow spell of this shared VM hits
    all of them alike instead of whichever happened to be timed then, so the ratios stay fair."""
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return [min(ts) for ts in times]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--node-dtypes", nargs="+", choices=vocab.NODE_DTYPES, default=list(vocab.NODE_DTYPES),
                    help="node storage to time (the issue's targets are for f32)")
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="thread counts to time (each >= 1)")
    ap.add_argument("--per-layer", action="store_true",
                    help="also time every layer on its own (one thread, the first node storage)")
    args = ap.parse_args()
    if min(args.threads) < 1:
        ap.error("--threads: every count must be at least 1")
    torch.manual_seed(0)
    model = models.resnet(widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2), in_channels=3, num_classes=1000).eval()
    n_params = sum(p.numel() for p in model.parameters())
    im = convert(model, torch.randn(1, 3, 64, 64), permute=False)
    buckets = [bundle.Bucket("w1000", im.sizes_at(1.0), 1.0), bundle.Bucket("w0500", im.sizes_at(0.5), 0.5)]
    n_nodes = sum(v.numel() for v in im.nodes.values())
    n_rows = sum(v.shape[0] for v in im.nodes.values())
    print(f"model: ResNet-18-sized, {n_params / 1e6:.2f}M parameters, {n_nodes * 4 / 2**20:.1f} MiB of f32 nodes")
    rows = []
    for nodes in args.node_dtypes:
        data = bundle.encode(bundle.Bundle(im, buckets), node_dtype=nodes)
        nb = native.NativeBundle(data)
        if nodes == args.node_dtypes[0]:
            open_ms = best(lambda data=data: native.NativeBundle(data), args.repeats) * 1e3
            print(f"opening the {nodes}-node bundle (every section's CRC32 checked): {open_ms:.1f} ms for "
                  f"{len(data) / 2**20:.1f} MiB, {open_ms / (len(data) / 2**20):.2f} ms per MiB (includes one copy "
                  "into the binding's buffer)\n")
        b = bundle.decode(data)  # the reference works on the nodes as stored (f16 / int8 widened)
        nodes_bytes = n_nodes * NODE_BYTES[nodes] + (n_rows * 4 if nodes == "i8" else 0)  # + int8 row scales
        rows += [measure(nb, b, k, nodes, nodes_bytes, args.repeats, threads)
                 for threads in args.threads for k in range(len(buckets))]
    print("| nodes | threads | width | weights MiB | C core ms | torch ref ms | memcpy(out) ms | memcpy(nodes+out) ms "
          "| C vs torch | C / memcpy(out) | C / memcpy(nodes+out) | scratch KiB per thread | largest layer KiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if args.per_layer:
        data = bundle.encode(bundle.Bundle(im, buckets), node_dtype=args.node_dtypes[0])
        per_layer(native.NativeBundle(data), buckets, NODE_BYTES[args.node_dtypes[0]], args.repeats)


def call_args(nb: native.NativeBundle, k: int, layer: int, out: tuple[np.ndarray, np.ndarray],
              scratch: np.ndarray) -> tuple:
    """inn_materialize's arguments for one layer (float32, OIHW, weights and bias into ``out``), built
    once outside the timing: numpy's .ctypes conversions are Python work a device loader does not have."""
    w, bias = out
    return (ctypes.byref(nb._b), k, layer, 0, 0, w.ctypes.data, w.nbytes, None, 0,
            bias.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), bias.nbytes, scratch.ctypes.data, scratch.nbytes)


def per_layer(nb: native.NativeBundle, buckets: list[bundle.Bucket], node_bytes: int, repeats: int) -> None:
    """Each layer's best time per width, timed call by call inside runs over the whole model (timed alone,
    a layer's nodes would stay in cache between repeats), and its memory traffic: node bytes read +
    weight bytes written (buckets[0] is 100% width, where a layer's weights are as many as its nodes)."""
    materialize = native.lib().inn_materialize
    print("\n| layer | nodes (out x in x taps) | "
          + " | ".join(f"{b.ratio:.0%} us | {b.ratio:.0%} GB/s" for b in buckets) + " |")
    print("|---|---|" + "---|---|" * len(buckets))
    cells = {}
    for k in range(len(buckets)):
        scratch = np.zeros(nb.scratch_size(k), np.uint8)
        infos = [nb.layer_info(k, layer) for layer in range(nb.layer_count)]
        outs = [(np.zeros(i.weight_count, np.float32), np.zeros(i.n_out, np.float32)) for i in infos]
        calls = [call_args(nb, k, layer, outs[layer], scratch) for layer in range(len(outs))]
        times = np.full(len(calls), np.inf)
        for _ in range(repeats):
            for layer, args in enumerate(calls):
                t = time.perf_counter()
                materialize(*args)
                times[layer] = min(times[layer], time.perf_counter() - t)
        for layer, t in enumerate(times):
            traffic = nb.layer_info(0, layer).weight_count * node_bytes + outs[layer][0].nbytes
            cells[layer, k] = f"{t * 1e6:.0f} | {traffic / t / 1e9:.1f}"
    for layer in range(nb.layer_count):
        full = nb.layer_info(0, layer)
        shape = f"{full.n_out}x{full.weight_count // (full.n_out * full.taps)}x{full.taps}"
        print(f"| {full.name} | {shape} | " + " | ".join(cells[layer, k] for k in range(len(buckets))) + " |")


def measure(nb: native.NativeBundle, b: bundle.Bundle, k: int, nodes: str, nodes_bytes: int, repeats: int,
            threads: int) -> str:
    """One table row: bucket k timed with the C core, the torch reference and memcpy, on `threads` threads."""
    infos = [nb.layer_info(k, layer) for layer in range(nb.layer_count)]
    out_bytes = sum(i.weight_count * 4 + (i.n_out * 4 if i.has_bias else 0) for i in infos)
    scratch = [np.zeros(nb.scratch_size(k), np.uint8) for _ in range(threads)]
    outs = [(np.zeros(i.weight_count, np.float32), np.zeros(i.n_out, np.float32)) for i in infos]
    materialize = native.lib().inn_materialize
    largest_first = sorted(range(len(infos)), key=lambda layer: -infos[layer].weight_count)
    calls = [[call_args(nb, k, layer, outs[layer], s) for layer in largest_first] for s in scratch]
    half = (nodes_bytes + out_bytes) // 2  # copying X bytes = X read + X written
    src = np.ones(max(out_bytes, half), np.uint8)
    dst = np.zeros_like(src)
    with ThreadPoolExecutor(threads) as pool:  # ctypes calls release the GIL: the threads run at once
        def run_c():
            if threads == 1:  # in the calling thread: no hand-off to time
                for args in calls[0]:
                    assert materialize(*args) == 0
                return
            todo = iter(range(len(largest_first)))
            lock = threading.Lock()

            def worker(mine):
                while True:
                    with lock:
                        nxt = next(todo, None)
                    if nxt is None:
                        return
                    assert materialize(*mine[nxt]) == 0

            list(pool.map(worker, calls))

        def copy(n):
            if threads == 1:
                ctypes.memmove(dst.ctypes.data, src.ctypes.data, n)
                return
            cuts = np.linspace(0, n, threads + 1).astype(int)
            list(pool.map(lambda a, z: ctypes.memmove(dst.ctypes.data + int(a), src.ctypes.data + int(a), int(z - a)),
                          cuts[:-1], cuts[1:]))

        def run_ref():
            torch.set_num_threads(threads)
            b.weights(k)

        t_c, t_ref, t_out, t_both = interleaved([run_c, run_ref, lambda: copy(out_bytes), lambda: copy(half)], repeats)
    largest = max(i.weight_count for i in infos) * 4
    ref = b.weights(k)  # correctness: the benchmark times bit-identical work
    for layer, spec in enumerate(b.model.layers):
        assert np.array_equal(outs[layer][0], ref[spec.name]["weight"].numpy().ravel())
    ratio = b.buckets[k].ratio
    return (f"| {nodes} | {threads} | {ratio:.0%} | {out_bytes / 2**20:.1f} | {t_c * 1e3:.1f} | {t_ref * 1e3:.1f} "
            f"| {t_out * 1e3:.2f} | {t_both * 1e3:.2f} | {t_ref / t_c:.1f}x | {t_c / t_out:.1f}x | {t_c / t_both:.1f}x "
            f"| {scratch[0].nbytes / 1024:.0f} | {largest / 1024:.0f} |")


if __name__ == "__main__":
    main()
