"""Integral-aware fine-tuning and partition tuning vs training from scratch, on Fashion-MNIST.

    python tools/bench_finetune.py [--ft-epochs 3] [--ft-subset 60000] [--scratch-epochs 6]

Starts from the committed reference ResNet (tools/checkpoints/resnet_fmnist.pt: 6 epochs, 92.42%),
converts it with activation ordering, and reports test accuracy (10,000 images) at every width for:

  - no fine-tuning:        convert() + resize, nothing trained (README's "inn (activations)" row)
  - recalibrated:          no training; per-channel output statistics of every layer matched to the
                           full-width network on --calibration train images (``recalibrate``)
  - partition tuning:      nodes frozen; per target width, train only the partition points of every
                           narrowed group on --calibration labelled train images (half CE, half
                           distillation from full width), --pt-steps steps of batch 128
  - integral fine-tuning:  ``finetune.fit``: sandwich rule (largest, smallest, random widths per step),
                           self-distillation from the largest width, ``--ft-epochs`` epochs of train data
  - integral FT + recalibrated / + partition tuning: the same two tools on the fine-tuned nodes
  - scratch:               the same shapes (ResNet widths scaled like ``sizes_at``) trained from random
                           init with the reference recipe for ``--scratch-epochs`` epochs; 100% width
                           is the reference checkpoint itself when ``--scratch-epochs`` is 6

Every trained model is cached under ``--cache`` (default out/bench_finetune/), so an interrupted run
resumes (the fine-tuning checkpoints every 25 steps). ``--stage scratch`` trains only
the scratch baselines (handy to run them in a second process). Prints a Markdown table and writes a
PNG plot (``--png``).
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_reference import ARCH, CHECKPOINT, load_reference  # noqa: E402

from inn_mobile.app import datasets, models, plotting  # noqa: E402
from inn_mobile.core.convert import convert  # noqa: E402
from inn_mobile.metrics import accuracy
from inn_mobile.train import finetune, supervised
from inn_mobile.train.partitions import recalibrate, tune_partitions  # noqa: E402

REFERENCE_EPOCHS = 6.0


def scratch_widths(ratio: float) -> tuple[int, ...]:
    """ResNet stage widths at ``ratio``, rounded like ``IntegralModel.sizes_at`` (checked in the run)."""
    return tuple(max(2, round(ratio * w)) for w in ARCH["widths"])


def scratch_model(ratio: float, epochs: float, cache: Path, x: torch.Tensor, y: torch.Tensor) -> torch.nn.Module:
    """The reference architecture at ``ratio`` width, trained from scratch with the reference recipe."""
    if ratio == 1.0 and epochs == REFERENCE_EPOCHS:
        return load_reference()
    path = cache / f"scratch_r{round(ratio * 1000):04d}_e{epochs:g}.pt"
    model = models.resnet(widths=scratch_widths(ratio), blocks=ARCH["blocks"])
    if path.exists():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.eval()
    t = time.time()
    torch.manual_seed(0)
    model = models.resnet(widths=scratch_widths(ratio), blocks=ARCH["blocks"])
    supervised.fit(model, x, y, epochs=epochs, seed=0, desc=f"scratch {ratio:g}")
    torch.save(model.state_dict(), path)
    print(f"scratch {ratio:g}: {epochs:g} epochs in {time.time() - t:.0f} s", flush=True)
    return model.eval()


def same_shapes(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Both networks have the same conv/linear weight shapes (the scratch baseline matches the resize)."""
    def shapes(m):
        return sorted(tuple(x.weight.shape) for x in m.modules() if isinstance(x, (torch.nn.Conv2d, torch.nn.Linear)))
    return shapes(a) == shapes(b)


def ft_tag(args) -> str:
    """Names the fine-tuning run in cache files (its checkpoint, and partitions tuned on its nodes)."""
    shrink = "" if args.ft_shrink == finetune.FinetuneConfig.shrink else f"_sh{args.ft_shrink:g}"
    random = "" if args.ft_random == finetune.FinetuneConfig.n_random else f"_rnd{args.ft_random}"
    return f"ft_e{args.ft_epochs:g}_lr{args.ft_lr:g}{shrink}{random}"


def finetuned(im, x, y, args) -> tuple[object, float]:
    """Integral fine-tuning of ``im`` (resumable checkpoint in the cache); returns (im, seconds this call)."""
    cfg = finetune.FinetuneConfig(epochs=args.ft_epochs, lr=args.ft_lr, min_ratio=min(args.widths),
                                  shrink=args.ft_shrink, n_random=args.ft_random)
    ck = args.cache / f"{ft_tag(args)}_n{len(y)}.pt"
    t = time.time()
    finetune.fit(im, (x, y), cfg, checkpoint=ck, checkpoint_every=25)
    return im, time.time() - t


def partition_rows(im, widths, x, y, args, tag: str) -> list[torch.nn.Module]:
    """Per width, the network after tuning that width's partitions on a copy of ``im`` (nodes frozen).

    Tuned partitions are cached (``pt_<tag>_...pt``) so a rerun only re-evaluates.
    """
    out = []
    for r in widths:
        tuned = copy.deepcopy(im)
        path = args.cache / f"pt_{tag}_r{round(r * 1000):04d}_s{args.pt_steps}_n{len(y)}_lr{args.pt_lr:g}.pt"
        if r < 1.0 and path.exists():
            tuned.partitions.update(torch.load(path, weights_only=False))
        elif r < 1.0:
            parts = tune_partitions(tuned, x, y, ratio=r, steps=args.pt_steps, lr=args.pt_lr, distill=0.5)
            torch.save(parts, path)
        out.append(tuned.resize(r))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", type=float, nargs="+", default=[1.0, 0.75, 0.5, 0.25])
    ap.add_argument("--ft-epochs", type=float, default=3.0, help="integral fine-tuning epochs over --ft-subset")
    ap.add_argument("--ft-subset", type=int, default=60000, help="train images used for fine-tuning")
    ap.add_argument("--ft-lr", type=float, default=3e-2, help="relative Adam step (see finetune.node_optimizer)")
    ap.add_argument("--ft-shrink", type=float, default=finetune.FinetuneConfig.shrink,
                    help="fraction of the run over which the smallest sampled width shrinks to the narrowest")
    ap.add_argument("--ft-random", type=int, default=finetune.FinetuneConfig.n_random,
                    help="widths drawn at random per step, besides the largest and the smallest")
    ap.add_argument("--pt-steps", type=int, default=100, help="partition-tuning steps per width (batch 128)")
    ap.add_argument("--pt-lr", type=float, default=0.02)
    ap.add_argument("--calibration", type=int, default=2048, help="labelled train images for partition tuning")
    ap.add_argument("--scratch-epochs", type=float, default=REFERENCE_EPOCHS)
    ap.add_argument("--no-train-scratch", action="store_true", help="use cached scratch models only (else: '-')")
    ap.add_argument("--cache", type=Path, default=Path("out/bench_finetune"))
    ap.add_argument("--png", type=Path, default=Path("out/finetune_vs_width.png"))
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the CI machine has 2 shared cores)")
    ap.add_argument("--stage", choices=["all", "scratch", "finetune"], default="all",
                    help="scratch / finetune: only train (and cache) those models, e.g. in parallel processes")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    if not CHECKPOINT.exists():
        subprocess.run([sys.executable, str(Path(__file__).parent / "train_reference.py")], check=True)
    widths = sorted(args.widths, reverse=True)
    x, y = datasets.fashion_mnist("train")
    xt, yt = datasets.fashion_mnist("test")
    t0 = time.time()
    if args.stage == "scratch":
        for r in widths:
            scratch_model(r, args.scratch_epochs, args.cache, x, y)
        return
    reference = load_reference()
    im0 = convert(reference, xt[:2], calibration=x[:256])
    if args.stage == "finetune":
        _, secs = finetuned(copy.deepcopy(im0), x[:args.ft_subset], y[:args.ft_subset], args)
        print(f"integral fine-tuning: {secs:.0f} s this call", flush=True)
        return
    rows: dict[str, list[float | None]] = {}
    rows["no fine-tuning"] = [accuracy(im0.resize(r), xt, yt) for r in widths]
    t = time.time()
    xc, yc = x[-args.calibration:], y[-args.calibration:]
    rows[f"recalibrated ({args.calibration} imgs, no training)"] = [
        accuracy(recalibrate(im0, xc, ratio=r), xt, yt) for r in widths]
    rows[f"partition tuning ({args.calibration} imgs, {args.pt_steps} steps)"] = [
        accuracy(m, xt, yt) for m in partition_rows(im0, widths, xc, yc, args, "noft")]
    print(f"partition tuning: {time.time() - t:.0f} s", flush=True)
    im_ft, secs = finetuned(copy.deepcopy(im0), x[:args.ft_subset], y[:args.ft_subset], args)
    print(f"integral fine-tuning: {secs:.0f} s this call (resumed from cache if any)", flush=True)
    ft_name = (f"integral FT ({args.ft_epochs:g} ep, step {args.ft_lr:g}, shrink {args.ft_shrink:g}, "
               f"{args.ft_random} random)")
    rows[ft_name] = [accuracy(im_ft.resize(r), xt, yt) for r in widths]
    rows["integral FT + recalibrated"] = [accuracy(recalibrate(im_ft, xc, ratio=r), xt, yt) for r in widths]
    tuned = partition_rows(im_ft, widths, xc, yc, args, ft_tag(args))
    rows["integral FT + partition tuning"] = [accuracy(m, xt, yt) for m in tuned]
    scratch_row = []
    for r in widths:
        path = args.cache / f"scratch_r{round(r * 1000):04d}_e{args.scratch_epochs:g}.pt"
        if args.no_train_scratch and not path.exists() and not (r == 1.0 and args.scratch_epochs == REFERENCE_EPOCHS):
            scratch_row.append(None)
            continue
        m = scratch_model(r, args.scratch_epochs, args.cache, x, y)
        if not same_shapes(m, im0.resize(r)):
            raise RuntimeError(f"scratch model at {r} does not have the resized network's shapes")
        scratch_row.append(accuracy(m, xt, yt))
    rows[f"scratch ({args.scratch_epochs:g} ep)"] = scratch_row
    print(f"\nreference: {rows['no fine-tuning'][0]:.2f}% at full width; total {time.time() - t0:.0f} s\n")
    print("| method | " + " | ".join(f"{round(r * 100, 1)}%" for r in widths) + " |")
    print("|---|" + "---|" * len(widths))
    for name, accs in rows.items():
        print(f"| {name} | " + " | ".join("-" if a is None else f"{a:.2f}" for a in accs) + " |")
    (args.cache / "results.json").write_text(json.dumps({"widths": widths, "rows": rows, "args": vars(args)},
                                                         default=str, indent=1))
    plot_rows(args.png, widths, rows)


def plot_rows(path: Path, widths, rows, title: str = "Integral fine-tuning and partition tuning vs training "
              "from scratch") -> None:
    """Accuracy vs width, one line per method (``rows``: name -> accuracies per width, None where absent)."""
    plt = plotting.pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, accs in rows.items():
        pts = [(w * 100, a) for w, a in zip(widths, accs) if a is not None]
        ax.plot(*zip(*pts), marker="o", label=name, ls="--" if name.startswith("scratch") else "-")
    plotting.finish(fig, ax, path, xlabel="width (% of channels)", ylabel="Fashion-MNIST test accuracy (%)",
                    title=title, legend_size=8)


if __name__ == "__main__":
    main()
