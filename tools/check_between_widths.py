"""Accuracy of widths that have no BatchNorm of their own, as a switchable run trains them: is post-hoc
calibration faithful to what training optimised, or were the widths simply not learnt?

    python tools/check_between_widths.py CHECKPOINT [--ratios 0.3125 0.375 ...] [--widths 1 0.75 0.5 0.25]

CHECKPOINT is a ``finetune.fit`` checkpoint of a switchable run of the Fashion-MNIST reference (as
``tools/bench_switchable_bn.py`` writes under ``out/bench_finetune``; ``--widths`` its trained widths).
Each ratio runs as a random width does in a training step (``SwitchableNorm`` on an untrained width:
batch statistics of each 256-image test batch, affine derived from the trained widths' affines), and
the test accuracy (10,000 images) is printed. Compare with the C-core accuracy of the same widths after
``train.calibrate.calibrate`` (``bench_switchable_bn.py --post-hoc``): equal accuracy means calibration
reproduces what training optimised, and a low one means the training never made that width good.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_reference import load_reference  # noqa: E402

from inn_mobile.app import datasets  # noqa: E402
from inn_mobile.core.convert import convert  # noqa: E402
from inn_mobile.train import finetune  # noqa: E402
from inn_mobile.train.switchable import SwitchableNorm  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--widths", type=float, nargs="+", default=[1.0, 0.75, 0.5, 0.25], help="the run's trained widths")
    ap.add_argument("--ratios", type=float, nargs="+",
                    default=[0.3125, 0.375, 0.4375, 0.5625, 0.625, 0.6875, 0.8125, 0.875, 0.9375])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x, _ = datasets.fashion_mnist("train")
    xt, yt = datasets.fashion_mnist("test")
    im = convert(load_reference(), xt[:2], calibration=x[:256])  # as bench_switchable_bn converts it
    finetune.load_nodes(im, args.checkpoint)
    cfg = finetune.FinetuneConfig(switchable=True, widths=tuple(args.widths))
    norm = SwitchableNorm(finetune.DeviceForward(im), [s for _, s in finetune._discrete_widths(im, cfg)])
    norm.attach(xt[:64])  # creates the per-width state, overwritten by the checkpoint's
    norm.load_state_dict(torch.load(args.checkpoint, map_location="cpu", weights_only=True)["norms"])
    print("| width | training-mode test acc (batch statistics, derived affine) |\n|---|---|")
    with torch.no_grad():
        for r in args.ratios:
            sizes = im.sizes_at(r)
            correct = sum(int((norm(xt[i:i + 256], sizes).argmax(1) == yt[i:i + 256]).sum())
                          for i in range(0, len(yt), 256))
            print(f"| {r * 100:g}% | {100.0 * correct / len(yt):.2f} |", flush=True)
    norm.detach()


if __name__ == "__main__":
    main()
