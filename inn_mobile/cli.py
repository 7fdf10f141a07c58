"""The ``inn-mobile`` command line.

    inn-mobile demo                 # end to end on real data: train/convert/pack/materialise in C/evaluate
    inn-mobile inspect model.innb   # what a bundle holds
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch


def _demo(args: argparse.Namespace) -> int:
    from . import bundle, data, models, native, train
    from .convert import convert

    torch.manual_seed(0)
    x, y, xt, yt = data.digits()
    print(f"scikit-learn digits: {len(y)} train / {len(yt)} test images (8x8)")
    model = models.resnet(widths=(16, 32), blocks=(1, 1))
    t = time.time()
    train.fit(model, x, y, epochs=args.epochs, batch=64, lr=0.05, augmentation=False, desc="training")
    print(f"trained a small ResNet in {time.time() - t:.1f} s: {data.accuracy(model, xt, yt):.1f}% test accuracy")
    im = convert(model, x[:2], calibration=x[:256])
    print("\nchannel groups found by tracing:\n" + im.channel_graph.table())
    buckets = bundle.make_buckets(im, (0.5, 0.75, 0.875, 1.0), multiple_of=1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    size = bundle.save(bundle.Bundle(im, buckets, meta={"model": "digits-resnet"}), out)
    print(f"\nbundle: {out} ({size} bytes, nodes stored once for {len(buckets)} widths)")
    nb = native.NativeBundle.from_file(out)
    print("\n| bucket | channels | weights bytes | C materialise ms | accuracy (C weights) |")
    print("|---|---|---|---|---|")
    for k, bk in enumerate(buckets):
        net = im.resize(sizes=bk.sizes)
        scratch = np.zeros(nb.scratch_size(k), np.uint8)
        t = time.perf_counter()
        results = [nb.materialize(k, layer, scratch=scratch) for layer in range(nb.layer_count)]
        ms = (time.perf_counter() - t) * 1e3
        _load_weights(net, im.layers, results)
        nbytes = sum(w.nbytes + (0 if b is None else b.nbytes) for w, _, b in results)
        channels = sum(bk.sizes[g.id] for g in im.groups if g.resizable)
        print(f"| {bk.name} | {channels} | {nbytes} | {ms:.2f} | {data.accuracy(net, xt, yt):.1f}% |")
    return 0


def _load_weights(net: torch.nn.Module, layers, results) -> None:
    """Copy weights materialised by the C core into the torch module of the same width."""
    with torch.no_grad():
        for spec, (w, _, b) in zip(layers, results):
            mod = net.get_submodule(spec.name)
            mod.weight.copy_(torch.from_numpy(w).reshape(mod.weight.shape))
            if b is not None:
                mod.bias.copy_(torch.from_numpy(b))


def _inspect(args: argparse.Namespace) -> int:
    from . import bundle

    path = Path(args.bundle)
    if not path.exists():
        print(f"error: {path} does not exist", file=sys.stderr)
        return 2
    try:
        b = bundle.load(path)
    except bundle.BundleError as e:
        print(f"error: {path}: {e}", file=sys.stderr)
        return 1
    m = b.model
    print(f"{path}: {path.stat().st_size} bytes, quadrature {m.quadrature}, {len(m.layers)} layers, "
          f"{len(m.groups)} groups ({sum(g.resizable for g in m.groups)} resizable)")
    print("buckets: " + ", ".join(f"{x.name} ({sum(x.sizes.values())} ch)" for x in b.buckets))
    for key in sorted(b.graphs):
        print(f"graph: bucket {key[0]} runtime {key[1]} ({len(b.graphs[key])} bytes)")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="inn-mobile", description="Integral Neural Networks on device.")
    sub = ap.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="end-to-end demo on scikit-learn digits (about a minute on 2 cores)")
    demo.add_argument("--out", default="out/demo.innb", help="where to write the bundle (default: %(default)s)")
    demo.add_argument("--epochs", type=float, default=12.0, help="training epochs (default: %(default)s)")
    demo.set_defaults(fn=_demo)
    insp = sub.add_parser("inspect", help="print what a .innb bundle holds")
    insp.add_argument("bundle", help="path to a .innb file")
    insp.set_defaults(fn=_inspect)
    args = ap.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
