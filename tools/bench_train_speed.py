"""What the integral machinery costs per training step: one switchable step over 4 shipped widths plus
``--between`` random ones against the sum of plain training steps of as many networks of the same
widths trained separately (same batch, same device).

    python tools/bench_train_speed.py [--batch 128] [--rounds 12] [--threads 1] [--device cpu] [--between 1]
                                      [--between-draw uniform]

The integral step is what ``finetune.fit(..., FinetuneConfig(switchable=True))`` runs: the weights of each
width sampled from the nodes (``DeviceForward``), a BatchNorm per width after every convolution
(``SwitchableNorm``), forward and backward at all 4 widths and at ``--between`` random widths drawn per round
between 25% and 100% as ``--between-draw`` says (normalised with the affine derived from the trained
neighbours and batch statistics; their graphs kept for a redraw within ``WidthForward``'s byte budget, as in
``fit``), the narrow ones distilled from the widest, then one AdamW step over nodes and norms. The plain
baseline is one ordinary ResNet of the same shapes per width (``models.resnet`` with BatchNorm, stage widths
as ``sizes_at`` rounds them; for a random width, built at the same drawn width before the round, outside the
timing), each doing a forward, backward and SGD-momentum step on the same batch: a random width counts as one
more plain step. Before the rounds every width the draws can give is built once and released, as a run has
done after a few hundred steps. Rounds interleave the two (the machine is shared: interleaving puts both under
the same load) and medians are reported.
Target: integral <= 1.25x the sum. ``--between 0`` is the step before random widths (4 against 4).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from bench_finetune import scratch_widths  # noqa: E402
from train_reference import ARCH, load_reference  # noqa: E402

from inn_mobile.app import datasets, models  # noqa: E402
from inn_mobile.core.convert import convert  # noqa: E402
from inn_mobile.train import finetune  # noqa: E402
from inn_mobile.train.switchable import SwitchableNorm  # noqa: E402

WIDTHS = (1.0, 0.75, 0.5, 0.25)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=12, help="timed rounds (after 2 warm-up rounds)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--between", type=int, default=1, help="random widths per step besides the 4 shipped ones")
    ap.add_argument("--between-draw", choices=finetune.BETWEEN_DRAWS, default="uniform",
                    help="how the random widths are drawn (FinetuneConfig.between_draw)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    if datasets.fashion_mnist_available():
        x, y = datasets.fashion_mnist("test")
        x, y = x[:args.batch], y[:args.batch]
    else:  # shapes are what matters for speed
        x, y = torch.randn(args.batch, 1, 28, 28), torch.randint(0, 10, (args.batch,))
    im = convert(load_reference(), x[:2])
    im.nodes.to(device)
    forward = finetune.DeviceForward(im, device)
    sizes = [im.check_sizes(im.sizes_at(r)) for r in WIDTHS]
    norm = SwitchableNorm(forward, sizes)
    xd, yd = x.to(device), y.to(device)
    norm.attach(xd)
    params = dict(im.nodes.items())
    params.update(norm.parameters())
    opt = finetune.node_optimizer(params, 0.02)
    def plain_net(r: float) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        m = models.resnet(widths=scratch_widths(r), blocks=ARCH["blocks"]).to(device).train()
        return m, torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, nesterov=True)

    plain = [plain_net(r) for r in WIDTHS]
    rng = random.Random(0)
    # as in a run past its first few hundred steps: every width the draws can give built once and released
    # (what fit keeps of them, within WidthForward's byte budget, comes back on a redraw)
    for r in torch.linspace(min(WIDTHS), max(WIDTHS), 1001).tolist():
        drawn = im.check_sizes(im.sizes_at(r))
        if drawn not in sizes:
            forward.graph(drawn)
            forward.release(drawn)

    def integral_step(extra: list[float]) -> None:
        opt.zero_grad(set_to_none=True)
        finetune.sandwich_step(norm, xd, yd, sizes + [im.sizes_at(r) for r in extra], distill=1.0)
        opt.step()

    def plain_step(m: torch.nn.Module, o: torch.optim.Optimizer) -> None:
        o.zero_grad(set_to_none=True)
        F.cross_entropy(m(xd), yd).backward()
        o.step()

    def timed(fn, *a) -> float:
        sync(device)
        t = time.perf_counter()
        fn(*a)
        sync(device)
        return time.perf_counter() - t

    t_int, t_plain, t_extra = [], [[] for _ in WIDTHS], []
    for k in range(args.rounds + 2):
        extra = [finetune.between_ratio(rng, min(WIDTHS), max(WIDTHS), args.between_draw) for _ in range(args.between)]
        extra_nets = [plain_net(r) for r in extra]
        ti = timed(integral_step, extra)
        tp = [timed(plain_step, m, o) for m, o in plain]
        te = sum(timed(plain_step, m, o) for m, o in extra_nets)
        if k >= 2:
            t_int.append(ti)
            t_extra.append(te)
            for lst, t in zip(t_plain, tp):
                lst.append(t)
    med_int = statistics.median(t_int)
    med_plain = [statistics.median(t) for t in t_plain]
    shipped = sum(med_plain)
    total = shipped + (statistics.median(t_extra) if args.between else 0.0)
    n = len(WIDTHS) + args.between
    print(f"device {device}, {args.threads} thread(s), batch {args.batch}, {args.rounds} rounds (medians), random "
          f"widths drawn {args.between_draw}")
    for r, t in zip(WIDTHS, med_plain):
        print(f"  plain ResNet {round(r * 100)}% step: {t * 1000:.1f} ms")
    if args.between:
        print(f"  plain ResNet at the round's {args.between} random width(s): {(total - shipped) * 1000:.1f} ms")
    print(f"sum of {n} plain steps:      {total * 1000:.1f} ms  ({args.batch / total:.0f} images/s)")
    print(f"switchable step, 4 widths + {args.between} random: {med_int * 1000:.1f} ms  "
          f"({args.batch / med_int:.0f} images/s)")
    print(f"ratio integral / sum of {n} plain: {med_int / total:.2f}x (target <= 1.25x)")
    if args.between:
        print(f"ratio integral / sum of the 4 shipped widths' plain steps: {med_int / shipped:.2f}x")


if __name__ == "__main__":
    main()
