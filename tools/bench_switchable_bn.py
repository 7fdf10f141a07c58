"""Experiment: does per-width ("switchable") normalization close the narrow-width gap of fine-tuning?

    python tools/bench_switchable_bn.py [--epochs 3] [--lr 0.01] [--init full] [--threads 2]

Why: integral fine-tuning (``finetune.fit``) trains a network whose BatchNorms were folded into the
convolutions at conversion, so every width shares one per-channel affine and trains without
normalisation. Slimmable networks showed that sharing BatchNorm statistics across widths is what
breaks narrow widths, and gave each width private BatchNorms. This script measures that recipe on
the INN before the bundle format carries it: after every convolution, a BatchNorm private to each
*discrete* width (batch statistics while training, affine trained per width), the sandwich rule over
the widths (largest on the labels, the smallest and one random other by distillation from the
largest), nodes and affines stepped by ``finetune.node_optimizer``. Afterwards each width's
statistics are recalibrated on ``--calibration`` train images (cumulative average), and test accuracy
is reported next to the scratch baselines cached by ``tools/bench_finetune.py`` (``-`` when absent).

``--init full``: each narrow width's BatchNorm starts from the full width's per-channel statistics
resampled along the channel axis (the narrow network starts as a copy of the full one's output
distribution); ``--init own``: from its own (collapsed) converted statistics.

Only an experiment: deployment would need per-bucket statistics in the bundle (not in format 1.1).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from bench_finetune import scratch_widths  # noqa: E402
from train_reference import ARCH, load_reference  # noqa: E402

from inn_mobile import data, finetune, kernel, models  # noqa: E402
from inn_mobile.convert import convert  # noqa: E402
from inn_mobile.integral import IntegralModel  # noqa: E402
from inn_mobile.progress import progress  # noqa: E402
from inn_mobile.train import augment  # noqa: E402


class SwitchableNorm:
    """A private BatchNorm per (width, conv layer), applied by forward hooks on the width's graph."""

    def __init__(self, im: IntegralModel, forward: finetune.WidthForward, ratios: list[float]) -> None:
        self.im, self.forward, self.ratios = im, forward, ratios
        self.sizes = {r: im.sizes_at(r) for r in ratios}
        full = forward.graph(self.sizes[max(ratios)])
        self.layers = [s for s in im.layers
                       if s.kind == "dense" and isinstance(full.get_submodule(s.name), torch.nn.Conv2d)]
        self.params: dict[tuple[float, str], list[torch.Tensor]] = {}  # weight, bias, running mean, running var
        self.ratio: float | None = None
        self.training = True
        self.momentum = 0.1

    def _hook(self, name: str):
        def hook(_module, _inputs, z):
            w, b, mean, var = self.params[(self.ratio, name)]
            return F.batch_norm(z, mean, var, w, b, training=self.training, momentum=self.momentum, eps=1e-5)
        return hook

    def _statistics(self, x: torch.Tensor, ratio: float) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per conv layer: the per-channel mean and std of its output on ``x`` at ``ratio``."""
        gm = self.forward.graph(self.sizes[ratio])
        stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

        def record(name: str):
            def hook(_module, _inputs, z):
                stats[name] = (z.mean((0, 2, 3)), z.std((0, 2, 3)) + 1e-3)
            return hook

        hooks = [gm.get_submodule(s.name).register_forward_hook(record(s.name)) for s in self.layers]
        self.forward(x, self.sizes[ratio])
        for h in hooks:
            h.remove()
        return stats

    @torch.no_grad()
    def attach(self, x: torch.Tensor, init: str) -> None:
        """Per width: measure each conv's output statistics on ``x``, initialise its BatchNorm, hook it."""
        full_stats = None
        for r in sorted(self.ratios, reverse=True):
            gm = self.forward.graph(self.sizes[r])
            stats = self._statistics(x, r)
            full_stats = full_stats or stats
            samplers = self.im.samplers(self.sizes[r])
            for s in self.layers:
                mean, std = stats[s.name]
                if init == "full":  # the full width's per-channel distribution, resampled to this width
                    axis = self.im.axis(s.out_groups, samplers)
                    mean, std = (kernel.resample(v, 0, axis.idx, axis.w.float()) for v in full_stats[s.name])
                self.params[(r, s.name)] = [torch.nn.Parameter(std.clone()), torch.nn.Parameter(mean.clone()),
                                            torch.zeros_like(mean), torch.ones_like(mean)]
                gm.get_submodule(s.name).register_forward_hook(self._hook(s.name))

    def __call__(self, x: torch.Tensor, ratio: float) -> torch.Tensor:
        self.ratio = ratio
        return self.forward(x, self.sizes[ratio])

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor, ratio: float, batch: int = 256) -> None:
        """Recompute ``ratio``'s running statistics as the average over ``x`` (batch statistics)."""
        for s in self.layers:
            self.params[(ratio, s.name)][2].zero_()
            self.params[(ratio, s.name)][3].fill_(1.0)
        self.training = True
        for k, i in enumerate(range(0, len(x), batch)):
            self.momentum = 1.0 / (k + 1)  # cumulative average
            self(x[i:i + batch], ratio)
        self.training, self.momentum = False, 0.1


def train(norm: SwitchableNorm, x: torch.Tensor, y: torch.Tensor, epochs: float, lr: float, seed: int = 0) -> None:
    """The sandwich rule over the discrete widths, nodes and per-width affines trained together."""
    params = dict(norm.im.nodes.items())
    params.update({f"{r}/{n}/{k}": p[j] for (r, n), p in norm.params.items() for j, k in enumerate(("w", "b"))})
    opt = finetune.node_optimizer(params, lr)
    base = [g["lr"] for g in opt.param_groups]
    total = max(1, int(epochs * len(y) / 128))
    gen, rng = torch.Generator().manual_seed(seed), random.Random(seed)
    perm, pos = torch.randperm(len(y), generator=gen), 0
    widest, narrowest = max(norm.ratios), min(norm.ratios)
    others = [r for r in norm.ratios if r not in (widest, narrowest)]
    norm.training = True
    for step in progress(range(total), desc="switchable-BN fine-tune"):
        factor = finetune.lr_factor(step, total, 0.05)
        for g, b in zip(opt.param_groups, base):
            g["lr"] = b * factor
        if pos + 128 > len(y):
            perm, pos = torch.randperm(len(y), generator=gen), 0
        idx = perm[pos:pos + 128]
        pos += 128
        xb, yb = augment(x[idx], generator=gen), y[idx]
        opt.zero_grad(set_to_none=True)
        teacher = None
        for r in [widest, narrowest] + ([rng.choice(others)] if others else []):
            logits = norm(xb, r)
            if teacher is None:
                loss, teacher = F.cross_entropy(logits, yb), logits.detach()
            else:
                loss = finetune.distillation_loss(logits, teacher)
            loss.backward()
        opt.step()


def scratch_accuracy(ratio: float, cache: Path, xt: torch.Tensor, yt: torch.Tensor) -> float | None:
    """Test accuracy of bench_finetune's cached 6-epoch scratch model at ``ratio`` (the reference at 1.0)."""
    if ratio == 1.0:
        return data.accuracy(load_reference(), xt, yt)
    path = cache / f"scratch_r{round(ratio * 1000):04d}_e6.pt"
    if not path.exists():
        return None
    model = models.resnet(widths=scratch_widths(ratio), blocks=ARCH["blocks"])
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return data.accuracy(model, xt, yt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", type=float, nargs="+", default=[1.0, 0.75, 0.5, 0.25])
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--lr", type=float, default=0.01, help="relative Adam step (see finetune.node_optimizer)")
    ap.add_argument("--init", choices=["full", "own"], default="full", help="narrow widths' BatchNorm start")
    ap.add_argument("--calibration", type=int, default=4096, help="train images to recalibrate statistics")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=Path("out/bench_finetune"), help="bench_finetune's cache")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x, y = data.fashion_mnist("train")
    xt, yt = data.fashion_mnist("test")
    ratios = sorted(args.widths, reverse=True)
    im = convert(load_reference(), xt[:2], calibration=x[:256])
    norm = SwitchableNorm(im, finetune.WidthForward(im), ratios)
    norm.attach(x[:512], args.init)
    t = time.time()
    train(norm, x, y, args.epochs, args.lr)
    secs = time.time() - t
    rows = {}
    for r in ratios:
        norm.calibrate(x[-args.calibration:], r)
        rows[r] = (data.accuracy(lambda xb, r=r: norm(xb, r), xt, yt), scratch_accuracy(r, args.cache, xt, yt))
    name = f"switchable-BN FT ({args.epochs:g} ep, step {args.lr:g}, init {args.init})"
    print(f"\n{name}: {secs:.0f} s of training\n")
    print("| method | " + " | ".join(f"{round(r * 100)}%" for r in ratios) + " |")
    print("|---|" + "---|" * len(ratios))
    print(f"| {name} | " + " | ".join(f"{rows[r][0]:.2f}" for r in ratios) + " |")
    print("| scratch (6 ep) | " + " | ".join("-" if rows[r][1] is None else f"{rows[r][1]:.2f}" for r in ratios) + " |")
    out = args.cache / f"switchable_bn_e{args.epochs:g}_lr{args.lr:g}_{args.init}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "accuracy": {str(r): v for r, v in rows.items()}}, default=str))


if __name__ == "__main__":
    main()
