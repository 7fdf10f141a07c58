"""Accuracy vs width on Fashion-MNIST, without any fine-tuning: INN resize vs L1-norm pruning.

    python tools/bench_accuracy.py [--widths 1 0.875 0.75 0.5 0.25] [--png out/accuracy_vs_width.png]

Uses the committed reference ResNet (tools/checkpoints/resnet_fmnist.pt; trains it if missing, ~20
min on 2 cores). Rows, all evaluated on the 10,000 test images in one run:
  - inn (weights):      convert() ordering channels by weight similarity, then resize
  - inn (activations):  convert(calibration=256 unlabelled train images) ordering by activations
  - inn (no permute):   convert(permute=False): what the smoothness ordering buys
  - inn (act., rectangle): activation ordering with the rectangle rule instead of trapezoid
  - l1 prune:           keep the highest-L1 channels of every coupled group (same groups, same widths)
Prints a Markdown table and writes a PNG plot.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_reference import CHECKPOINT, load_reference  # noqa: E402

from inn_mobile.app import (
    datasets,  # noqa: E402
    plotting,
)
from inn_mobile.core.convert import convert  # noqa: E402
from inn_mobile.metrics import accuracy
from inn_mobile.train.prune import l1_prune  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", type=float, nargs="+", default=[1.0, 0.875, 0.75, 0.5, 0.25])
    ap.add_argument("--png", type=Path, default=Path("out/accuracy_vs_width.png"))
    ap.add_argument("--calibration", type=int, default=256, help="unlabelled train images for activation ordering")
    args = ap.parse_args()
    if not CHECKPOINT.exists():
        subprocess.run([sys.executable, str(Path(__file__).parent / "train_reference.py")], check=True)
    torch.manual_seed(0)
    model = load_reference()
    xt, yt = datasets.fashion_mnist("test")
    xtr, _ = datasets.fashion_mnist("train")
    example = xt[:2]
    t = time.time()
    variants = {
        "inn (weights)": convert(model, example),
        "inn (activations)": convert(model, example, calibration=xtr[:args.calibration]),
        "inn (no permute)": convert(model, example, permute=False),
        "inn (act., rectangle)": convert(model, example, calibration=xtr[:args.calibration], quadrature="rectangle"),
    }
    print(f"converted {len(variants)} variants in {time.time() - t:.1f} s")
    sm = variants["inn (weights)"].smoothness
    drop = sum(1 - s.after / s.before for s in sm) / len(sm)
    print(f"weight-feature ordering: mean neighbour distance reduced by {drop:.1%} over {len(sm)} groups")
    base = accuracy(model, xt, yt)
    rows: dict[str, list[float]] = {name: [] for name in [*variants, "l1 prune"]}
    for w in args.widths:
        for name, im in variants.items():
            rows[name].append(accuracy(im.resize(w), xt, yt))
        ref = variants["inn (weights)"]
        rows["l1 prune"].append(accuracy(l1_prune(ref, ref.sizes_at(w)), xt, yt))
    print(f"\noriginal model: {base:.2f}% test accuracy ({len(yt)} Fashion-MNIST test images)\n")
    print("| method | " + " | ".join(f"{round(w * 100, 1)}%" for w in args.widths) + " |")
    print("|---|" + "---|" * len(args.widths))
    for name, accs in rows.items():
        print(f"| {name} | " + " | ".join(f"{a:.2f}" for a in accs) + " |")
    _plot(args.png, args.widths, rows, base)


def _plot(path: Path, widths, rows, base) -> None:
    plt = plotting.pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, accs in rows.items():
        ax.plot([w * 100 for w in widths], accs, marker="o", label=name)
    ax.axhline(base, color="grey", ls="--", lw=1, label="original")
    plotting.finish(fig, ax, path, xlabel="width (% of channels)", ylabel="Fashion-MNIST test accuracy (%)",
                    title="Resizing without fine-tuning")


if __name__ == "__main__":
    main()
