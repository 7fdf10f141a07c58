"""Per-width normalisation on the Fashion-MNIST reference: fine-tune, ship, and measure through the C core.

    python tools/bench_switchable_bn.py [--epochs 6] [--lr 0.02] [--init full] [--threads 2]

Converts the committed reference ResNet (tools/checkpoints/resnet_fmnist.pt, 92.42%), fine-tunes it
with ``finetune.fit(..., FinetuneConfig(switchable=True))`` (a BatchNorm private to each of
``--widths`` after every convolution, the sandwich rule over those widths, the statistics
recalibrated on the last ``--calibration`` train images and folded into per-width ``(a, c)``), then
writes the bundle a phone would get (``bundle.make_buckets``: one bucket per trained width, NORM
records included, ``--node-dtype`` nodes) and measures test accuracy (10,000 images) at every width
twice: with torch's own resized network (``im.resize``), and with every weight and bias written by
the C core from the bundle. The scratch column is ``tools/bench_finetune.py``'s cached 6-epoch
model of the same shape (``-`` where that cache is absent). The fine-tuning checkpoints under
``--cache`` (every 100 steps), so an interrupted run resumes.

A last row gives the accuracy on ``--train-eval`` training images, so underfitting (train close
to test) shows apart from overfitting. ``--train-partitions`` trains every narrow width's partition
points with the nodes (the bundle stores them as trained partitions). ``--init own`` starts each
narrow width's BatchNorm from its own (collapsed) statistics instead of the full width's resampled
ones (the default, 8 points better at 25% width).

``--between 1`` (the default) trains one random width between the widest and narrowest per step besides
the shipped ones (``FinetuneConfig.between``), so that the widths calibrated post hoc were trained too;
``--between 0`` is the recipe before it.

``--post-hoc 16`` then gives every width at 1/16 steps from 25% to 100% that was not trained its
norms after the fact (``train.calibrate.calibrate``: affine from the trained neighbours, statistics
re-estimated on the ``--calibration`` images, no labels), ships all of them in one bundle
(``make_buckets(im, ratios, multiple_of=1)``), measures each through the C core, prints how far each
untrained width lies from the straight line between its trained neighbours, and plots accuracy vs
width (``--posthoc-png``). ``--distill-steps N`` also tunes each of those widths' norms for N steps by
distillation from the widest width on the same unlabelled images (``calibrate(..., distill_steps=N)``).
``--train-eval 0`` skips the train-images row.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_finetune import plot_rows, scratch_widths  # noqa: E402
from train_reference import ARCH, load_reference  # noqa: E402

from inn_mobile import native
from inn_mobile.app import datasets, models
from inn_mobile.core.convert import convert  # noqa: E402
from inn_mobile.core.integral import IntegralModel, sizes_key  # noqa: E402
from inn_mobile.format import (
    bundle,  # noqa: E402
    vocab,
)
from inn_mobile.metrics import accuracy
from inn_mobile.runtime.core_network import core_network
from inn_mobile.train import finetune
from inn_mobile.train.calibrate import calibrate
from inn_mobile.train.finetune import DeviceForward
from inn_mobile.train.switchable import SwitchableNorm


def scratch_accuracy(ratio: float, cache: Path, xt: torch.Tensor, yt: torch.Tensor) -> float | None:
    """Test accuracy of bench_finetune's cached 6-epoch scratch model at ``ratio`` (the reference at 1.0)."""
    if ratio == 1.0:
        return accuracy(load_reference(), xt, yt)
    path = cache / f"scratch_r{round(ratio * 1000):04d}_e6.pt"
    if not path.exists():
        return None
    model = models.resnet(widths=scratch_widths(ratio), blocks=ARCH["blocks"])
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return accuracy(model, xt, yt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", type=float, nargs="+", default=[1.0, 0.75, 0.5, 0.25])
    ap.add_argument("--epochs", type=float, default=6.0)
    ap.add_argument("--lr", type=float, default=0.02, help="relative Adam step (see finetune.node_optimizer)")
    ap.add_argument("--init", choices=["full", "own"], default="full", help="narrow widths' BatchNorm start")
    ap.add_argument("--n-random", type=int, default=1, help="widths between the widest and narrowest per step")
    ap.add_argument("--between", type=int, default=1,
                    help="random (not shipped) widths per step, normalised as calibrate derives them (0: none)")
    ap.add_argument("--between-draw", choices=finetune.BETWEEN_DRAWS, default="uniform",
                    help="random widths uniform in width or in log-width (as many below 50%% as above)")
    ap.add_argument("--train-partitions", action="store_true",
                    help="also train each narrow width's partitions (stored in the bundle, used by the core)")
    ap.add_argument("--calibration", type=int, default=4096, help="train images to recalibrate statistics")
    ap.add_argument("--node-dtype", choices=vocab.NODE_DTYPES, default="f32", help="node storage in the bundle")
    ap.add_argument("--png", type=Path, default=Path("out/switchable_vs_width.png"))
    ap.add_argument("--train-eval", type=int, default=20000, help="train images to measure accuracy on too")
    ap.add_argument("--post-hoc", type=int, default=0, metavar="N",
                    help="calibrate and measure every width at 1/N steps from 25%% to 100%% after training")
    ap.add_argument("--posthoc-png", type=Path, default=Path("out/posthoc_widths.png"))
    ap.add_argument("--distill-steps", type=int, default=0,
                    help="post hoc: tune each untrained width's norms for this many distillation steps")
    ap.add_argument("--distill-lr", type=float, default=3e-3, help="Adam step of --distill-steps")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=Path("out/bench_finetune"),
                    help="checkpoints and bundles; bench_finetune's cache of scratch models")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x, y = datasets.fashion_mnist("train")
    xt, yt = datasets.fashion_mnist("test")
    im = convert(load_reference(), xt[:2], calibration=x[:256])
    untrained = {sizes_key(im.check_sizes(im.sizes_at(r))): accuracy(im.resize(r), xt, yt)  # no fine-tuning
                 for r in args.widths}
    cfg = finetune.FinetuneConfig(epochs=args.epochs, lr=args.lr, balance=False, switchable=True,
                                  widths=tuple(args.widths), norm_init=args.init, n_random=args.n_random,
                                  calibration=args.calibration, train_partitions=args.train_partitions,
                                  between=args.between, between_draw=args.between_draw)
    parts = ", trained partitions" if args.train_partitions else ""
    name = (f"switchable-BN FT ({args.epochs:g} ep, step {args.lr:g}, init {args.init}, {args.n_random} random, "
            f"{args.between} between{'' if args.between_draw == 'uniform' else f' {args.between_draw}-drawn'}{parts})")
    tag = (f"switchable_e{args.epochs:g}_lr{args.lr:g}_{args.init}_r{args.n_random}_b{args.between}"
           + ("" if args.between_draw == "uniform" else f"_{args.between_draw}") + ("_tp" if parts else ""))
    args.cache.mkdir(parents=True, exist_ok=True)
    t = time.time()
    finetune.fit(im, (x, y), cfg, checkpoint=args.cache / f"{tag}.pt", checkpoint_every=100, desc="switchable-BN FT")
    secs = time.time() - t
    buckets = bundle.make_buckets(im)
    raw = bundle.encode(bundle.Bundle(im, buckets), node_dtype=args.node_dtype)
    (args.cache / f"{tag}.innb").write_bytes(raw)
    nb = native.NativeBundle(raw)
    rows = {}
    for k, bk in enumerate(buckets):
        core = core_network(im, nb, k, bk.sizes)
        rows[bk.ratio] = (accuracy(im.resize(sizes=bk.sizes), xt, yt), accuracy(core, xt, yt),
                          scratch_accuracy(bk.ratio, args.cache, xt, yt),
                          accuracy(core, x[:args.train_eval], y[:args.train_eval]) if args.train_eval else None,
                          untrained[sizes_key(im.check_sizes(bk.sizes))])
    ratios = sorted(rows, reverse=True)
    print(f"\n{name}: {secs:.0f} s of training; bundle {len(raw) / 1024:.1f} KiB ({args.node_dtype} nodes, "
          f"{len(buckets)} buckets with NORM)\n")
    print("| method | " + " | ".join(f"{round(r * 100)}%" for r in ratios) + " |")
    print("|---|" + "---|" * len(ratios))
    print("| no fine-tuning | " + " | ".join(f"{rows[r][4]:.2f}" for r in ratios) + " |")
    print(f"| {name}, torch | " + " | ".join(f"{rows[r][0]:.2f}" for r in ratios) + " |")
    print(f"| {name}, C core from the bundle | " + " | ".join(f"{rows[r][1]:.2f}" for r in ratios) + " |")
    print("| scratch (6 ep) | " + " | ".join("-" if rows[r][2] is None else f"{rows[r][2]:.2f}" for r in ratios)
          + " |")
    if args.train_eval:
        print(f"| C core, on {args.train_eval} train images (underfitting check) | "
              + " | ".join(f"{rows[r][3]:.2f}" for r in ratios) + " |")
    plot_rows(args.png, ratios, {"no fine-tuning": [rows[r][4] for r in ratios],
                                 f"{name}, C core": [rows[r][1] for r in ratios],
                                 "scratch (6 ep)": [rows[r][2] for r in ratios]},
              title="Per-width normalisation vs training from scratch")
    posthoc = (post_hoc(im, x[-args.calibration:], xt, yt, args, tag, args.cache / f"{tag}.pt", x[:256])
               if args.post_hoc else None)
    out = args.cache / f"{tag}{distill_suffix(args)}.json"
    out.write_text(json.dumps({"args": vars(args), "seconds": secs, "accuracy": {str(r): v for r, v in rows.items()},
                               "post_hoc": posthoc}, default=str))


def distill_suffix(args) -> str:
    """What output names add for a post-hoc run whose norms were tuned by distillation (empty otherwise)."""
    return f"_distill{args.distill_steps}" if args.post_hoc and args.distill_steps else ""


def as_trained(im: IntegralModel, checkpoint: Path, x_attach: torch.Tensor, ratios: list[float], xt: torch.Tensor,
               yt: torch.Tensor, batch: int) -> dict[float, float]:
    """Test accuracy at each of ``ratios`` as the training ran that width: BatchNorms in training mode
    (statistics of each batch of ``batch`` test images), the width's own affine where it was trained,
    else the one derived from its trained neighbours. The network the nodes were trained to serve, before
    any post-hoc calibration: whether what a width lacks is in its norms or in the nodes. Call it before
    ``calibrate``: the run's BatchNorms are per trained width, widest first, as ``im.calibrated_sizes()``
    lists them until then."""
    norm = SwitchableNorm(DeviceForward(im), im.calibrated_sizes())
    norm.attach(x_attach)
    norm.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["norms"])
    out = {}
    with torch.no_grad():
        for r in ratios:
            sizes = im.sizes_at(r, multiple_of=1)
            hits = sum(int((norm(xt[i:i + batch], sizes).argmax(1) == yt[i:i + batch]).sum())
                       for i in range(0, len(yt), batch))
            out[r] = 100.0 * hits / len(yt)
    return out


def post_hoc(im: IntegralModel, xc: torch.Tensor, xt: torch.Tensor, yt: torch.Tensor, args, tag: str,
             checkpoint: Path, x_attach: torch.Tensor) -> dict:
    """Norms for every untrained width at 1/N steps, one bundle with all of them, C-core accuracy per width
    and, for each untrained width, its distance to the line between its trained neighbours; beside them,
    every width's accuracy as the training ran it (:func:`as_trained`)."""
    n = args.post_hoc
    ratios = [k / n for k in range(round(0.25 * n), n + 1)]
    trained_mode = as_trained(im, checkpoint, x_attach, ratios, xt, yt, batch=128)
    t = time.time()
    added = calibrate(im, xc, ratios, images=len(xc), distill_steps=args.distill_steps, distill_lr=args.distill_lr)
    secs = time.time() - t
    buckets = bundle.make_buckets(im, ratios, multiple_of=1)
    raw = bundle.encode(bundle.Bundle(im, buckets), node_dtype=args.node_dtype)
    (args.cache / f"{tag}_posthoc{n}{distill_suffix(args)}.innb").write_bytes(raw)
    nb = native.NativeBundle(raw)
    core = {bk.ratio: accuracy(core_network(im, nb, k, bk.sizes), xt, yt) for k, bk in enumerate(buckets)}
    trained = sorted(args.widths)
    new = {sizes_key(s) for s in added}
    how = f", norms tuned by {args.distill_steps} distillation steps" if args.distill_steps else ""
    print(f"\npost-hoc calibration{how}: {len(added)} untrained widths in {secs:.0f} s on {len(xc)} unlabelled images; "
          f"one bundle of {len(buckets)} buckets, {len(raw) / 1024:.1f} KiB\n")
    print("| width | trained | C core test acc | line between trained neighbours | difference | as trained (batch "
          "statistics of 128 test images) | its line | difference |")
    print("|---|---|---|---|---|---|---|---|")
    lines = {}

    def line(acc: dict[float, float], r: float) -> float:
        lo, hi = max(w for w in trained if w <= r), min(w for w in trained if w >= r)
        return acc[lo] + (r - lo) / (hi - lo) * (acc[hi] - acc[lo])

    for bk in buckets:
        r, acc, mode = bk.ratio, core[bk.ratio], trained_mode[bk.ratio]
        if sizes_key(im.check_sizes(bk.sizes)) not in new:
            print(f"| {r * 100:g}% | yes | {acc:.2f} | | | {mode:.2f} | | |")
            continue
        lines[r] = line(core, r)
        print(f"| {r * 100:g}% | no | {acc:.2f} | {lines[r]:.2f} | {acc - lines[r]:+.2f} | {mode:.2f} | "
              f"{line(trained_mode, r):.2f} | {mode - line(trained_mode, r):+.2f} |")
    widths = sorted(core)
    plot_rows(args.posthoc_png, widths, {
        "every width, C core (untrained ones calibrated post hoc)": [core[r] for r in widths],
        "trained widths": [core[r] if r not in lines else None for r in widths]},
        title=f"Accuracy vs width: {len(trained)} trained widths, the others calibrated post hoc")
    return {"seconds": secs, "core": core, "line": lines, "as_trained": trained_mode}


if __name__ == "__main__":
    main()
