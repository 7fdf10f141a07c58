"""Integral-aware fine-tuning: train the nodes so that *every* width is good (the INN paper's pipeline B).

A converted network reproduces the original exactly at full width, but an ordinarily trained layer
is not smooth along its channel axis, so narrow widths collapse (README, "Measured"). Training the
nodes through :meth:`IntegralModel.discretize` at widths sampled per step makes the continuous
functions smooth where it matters. Per step we use the *sandwich rule* of slimmable networks:

- the largest width (full sizes), trained on the labels;
- the smallest width (``min_ratio``) and ``n_random`` widths drawn uniformly in between, trained on
  the labels or, with ``distill > 0``, towards the largest width's (detached) predictions
  (self-distillation: the full network teaches the narrow ones, no separate teacher needed).

With ``switchable=True`` the widths are the discrete ``widths`` the app will ship, and each gets a
BatchNorm of its own after every convolution (:mod:`inn_mobile.train.switchable`), calibrated and folded
into ``im.norms`` when the run completes: the recipe that brings narrow widths close to networks
trained from scratch at that width (README, "Measured").

Each width's loss is back-propagated on its own (gradients accumulate), so memory stays at one
width's activations. Pieces usable in any loop: :class:`WidthForward` (a differentiable forward at
given sizes), :func:`sandwich_sizes`, :func:`sandwich_step`, :func:`node_optimizer`. :func:`fit` is a
complete loop with checkpoint/resume.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from inn_mobile import atomic
from inn_mobile.core import kernel
from inn_mobile.core.integral import IntegralModel
from inn_mobile.core.width_forward import WidthForward
from inn_mobile.progress import progress
from inn_mobile.train.supervised import augment
from inn_mobile.train.switchable import SwitchableNorm


# discretize() names the affine vectors after what they mean; the rebuilt BatchNorm calls them weight/bias
def sandwich_sizes(
    im: IntegralModel,
    rng: random.Random,
    *,
    min_ratio: float = 0.25,
    max_ratio: float = 1.0,
    n_random: int = 1,
    multiple_of: int = 1,
) -> list[dict[int, int]]:
    """Sizes for one step: largest first (it is the distillation teacher), smallest, then random."""
    ratios = [max_ratio, min_ratio] + [rng.uniform(min_ratio, max_ratio) for _ in range(n_random)]
    return [im.sizes_at(r, multiple_of=multiple_of) for r in ratios]


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL divergence from the teacher's softened predictions (scaled by T² so gradients keep their size)."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, 1), F.softmax(teacher / t, 1), reduction="batchmean") * t * t


def sandwich_step(
    forward: WidthForward,
    x: torch.Tensor,
    y: torch.Tensor,
    widths: list[dict[int, int]],
    *,
    distill: float = 1.0,
    temperature: float = 1.0,
    balance: bool = False,
) -> float:
    """Back-propagate the losses of every width in ``widths`` (gradients accumulate); returns their sum.

    The first width is trained on the labels; the others mix label loss and distillation from the
    first width's detached logits: ``(1 - distill) * CE + distill * KL``.
    """
    total = 0.0
    teacher = None
    for k, sizes in enumerate(widths):
        logits = forward(x, sizes)
        loss = F.cross_entropy(logits, y)
        if k == 0:
            teacher = logits.detach()
        elif distill > 0:
            loss = (1.0 - distill) * loss + distill * distillation_loss(logits, teacher, temperature)
        (loss / loss.detach().clamp_min(1.0) if balance else loss).backward()
        total += float(loss.detach())
    return total


def node_optimizer(
    params: dict[str, torch.nn.Parameter], lr: float, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """Adam with a per-tensor learning rate ``lr * rms(tensor)``: a *relative* step size.

    Nodes are weights divided by the quadrature (about ``1/width``), so their scale differs per layer
    by the layer's width; a relative step size updates each layer's weights by the same fraction,
    whatever its width (plain SGD would move 64-wide layers 4,000x slower than 1-wide ones).
    """
    groups = []
    for p in params.values():
        scale = float(p.detach().pow(2).mean().sqrt()) if p.numel() else 1.0
        groups.append({"params": [p], "lr": lr * max(scale, 1e-3), "weight_decay": weight_decay})
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


@dataclass
class FinetuneConfig:
    """Hyper-parameters of :func:`fit` (stored in checkpoints; resuming checks they match)."""

    epochs: float = 3.0
    batch: int = 128
    lr: float = 3e-2  # relative: each tensor moves by about lr * its rms per step
    weight_decay: float = 0.0
    min_ratio: float = 0.25
    max_ratio: float = 1.0
    n_random: int = 1
    multiple_of: int = 1
    distill: float = 1.0
    temperature: float = 1.0
    warmup: float = 0.05  # fraction of steps with linearly rising lr, then cosine decay to 0
    shrink: float = 0.5  # fraction of steps over which the smallest width goes from max_ratio to min_ratio
    balance: bool = True  # divide each width's loss by its value when above 1 (no width's gradient swamps the rest)
    augmentation: bool = True
    seed: int = 0
    # per-width normalisation (inn_mobile.train.switchable): train only these global widths, each with its own
    # BatchNorms (the widest trains on labels, the narrowest and n_random others distil from it);
    # min_ratio, max_ratio and shrink are then unused
    switchable: bool = False
    widths: tuple[float, ...] = (1.0, 0.75, 0.5, 0.25)
    norm_init: str = "full"  # narrow widths' BatchNorms start from the full width's statistics ("own": theirs)
    calibration: int = 4096  # training images (the last ones) that set each width's statistics at the end
    train_partitions: bool = False  # switchable only: also train every narrow width's partitions (stored in bundles)


def _min_ratio(cfg: FinetuneConfig, step: int, total: int) -> float:
    """Progressive shrinking: the smallest width sampled moves from ``max_ratio`` down to ``min_ratio``.

    A converted (not yet smooth) network at 25% width has activations many times too large (each
    sample stands for 4x as many channels, which are not correlated yet), so its loss starts in the
    hundreds; widening the range gradually lets the narrow widths inherit smoothness learnt at wider ones.
    """
    ramp = max(1.0, cfg.shrink * total)
    t = min(1.0, (step + 1) / ramp)
    return cfg.max_ratio - t * (cfg.max_ratio - cfg.min_ratio)


def lr_factor(step: int, total: int, warmup: float) -> float:
    w = max(1, int(warmup * total))
    if step < w:
        return (step + 1) / w
    return 0.5 * (1.0 + math.cos(math.pi * (step - w) / max(1, total - w)))


class _State:
    """Everything a resumed run needs to continue bit for bit: nodes, optimiser, data order, RNGs."""

    def __init__(self, cfg: FinetuneConfig, n: int) -> None:
        self.step = 0
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.rng = random.Random(cfg.seed)
        self.perm = torch.randperm(n, generator=self.gen)
        self.pos = 0

    def batch(self, size: int) -> torch.Tensor:
        if self.pos + size > len(self.perm):
            self.perm, self.pos = torch.randperm(len(self.perm), generator=self.gen), 0
        idx = self.perm[self.pos:self.pos + size]
        self.pos += size
        return idx

    def to_dict(self) -> dict:
        return {"step": self.step, "gen": self.gen.get_state(), "rng": self.rng.getstate(),
                "perm": self.perm, "pos": self.pos}

    def load(self, d: dict) -> None:
        self.step, self.pos, self.perm = d["step"], d["pos"], d["perm"]
        self.gen.set_state(d["gen"])
        self.rng.setstate(d["rng"])


def _save(
    path: Path, im: IntegralModel, opt: torch.optim.Optimizer, state: _State, cfg: FinetuneConfig,
    base_lrs: list[float], norm: SwitchableNorm | None, deltas: dict[tuple[int, int], torch.nn.Parameter],
) -> None:
    with atomic.replace(path) as f:
        torch.save({"nodes": {k: v.detach().clone() for k, v in im.nodes.items()}, "optimizer": opt.state_dict(),
                    "state": state.to_dict(), "config": asdict(cfg), "base_lrs": base_lrs,
                    "norms": norm.state_dict() if norm is not None else None,
                    "partition_deltas": {k: d.detach().clone() for k, d in deltas.items()}}, f)


def _step_widths(cfg: FinetuneConfig, im: IntegralModel, state: _State, total: int,
                 discrete: list[dict[int, int]] | None) -> list[dict[int, int]]:
    """This step's sizes, the teacher first: the sandwich over a range, or over the discrete widths."""
    if discrete is None:
        return sandwich_sizes(im, state.rng, min_ratio=_min_ratio(cfg, state.step, total), max_ratio=cfg.max_ratio,
                              n_random=cfg.n_random, multiple_of=cfg.multiple_of)
    inner = discrete[1:-1]
    return discrete[:1] + discrete[-1:] + [state.rng.choice(inner) for _ in range(cfg.n_random if inner else 0)]


def load_nodes(im: IntegralModel, checkpoint: str | os.PathLike) -> IntegralModel:
    """Copy the nodes saved by :func:`fit` into ``im`` (converted the same way); returns ``im``."""
    ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
    with torch.no_grad():
        for k, v in ck["nodes"].items():
            im.nodes[k].copy_(v)
    return im


def fit(
    im: IntegralModel,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: FinetuneConfig | None = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 200,
    max_steps: int | None = None,
    desc: str = "integral fine-tune",
) -> IntegralModel:
    """Fine-tune ``im``'s nodes in place with the sandwich rule; returns ``im``.

    With ``checkpoint``, the run saves its full state there every ``checkpoint_every`` steps and at
    the end, and *resumes* from it if the file exists (same config required): an interrupted run
    continues exactly where it stopped. ``max_steps`` stops this call early (the schedule still
    spans the whole run), e.g. to time-box a session and resume later.

    ``cfg.switchable``: the per-width BatchNorms are saved in the checkpoint too, and are calibrated
    and folded into ``im.norms`` only by the call that completes the run (an early stop leaves
    ``im.norms`` empty: resume to finish). A model that already has norms is refused (training the
    nodes would make them stale).
    """
    cfg = cfg or FinetuneConfig()
    total = max(1, math.ceil(cfg.epochs * len(y) / cfg.batch))
    forward = WidthForward(im)
    params = dict(im.nodes.items())
    norm, discrete = None, None
    if im.norms:
        raise ValueError("this model already has per-width normalisation (im.norms), which training the nodes would "
                         "invalidate: fine-tune a fresh conversion (switchable=True makes new norms at the end)")
    deltas: dict[tuple[int, int], torch.nn.Parameter] = {}
    if cfg.train_partitions and not cfg.switchable:
        raise ValueError("train_partitions needs switchable=True (partitions belong to the discrete shipped widths)")
    if cfg.switchable:
        discrete = _discrete_widths(im, cfg)
        norm = SwitchableNorm(forward, discrete)
        norm.attach(x[:512], init=cfg.norm_init)
        params.update(norm.parameters())
        if cfg.train_partitions:
            deltas = _partition_deltas(im, discrete)
            params.update({f"partition/{g}/{n}": d for (g, n), d in deltas.items()})
    opt = node_optimizer(params, cfg.lr, cfg.weight_decay)
    base_lrs = [g["lr"] for g in opt.param_groups]
    state = _State(cfg, len(y))
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        ck = torch.load(path, map_location="cpu", weights_only=False)
        saved = {**asdict(FinetuneConfig()), **ck["config"]}  # fields added since then have their old meaning
        if saved != asdict(cfg):
            raise ValueError(f"{path} was written with a different config: {ck['config']}")
        if len(ck["state"]["perm"]) != len(y):
            raise ValueError(f"{path} was written for {len(ck['state']['perm'])} training examples, not {len(y)}")
        load_nodes(im, path)
        if norm is not None:
            norm.load_state_dict(ck["norms"])
        with torch.no_grad():
            for key, d in deltas.items():
                d.copy_(ck["partition_deltas"][key])
        opt.load_state_dict(ck["optimizer"])
        base_lrs = ck["base_lrs"]  # from the initial nodes, not the resumed ones
        state.load(ck["state"])
    stop = total if max_steps is None else min(total, state.step + max_steps)
    for _ in progress(range(state.step, stop), desc=desc, total=stop - state.step):
        idx = state.batch(cfg.batch)
        xb = augment(x[idx], generator=state.gen) if cfg.augmentation else x[idx]
        widths = _step_widths(cfg, im, state, total, discrete)
        factor = lr_factor(state.step, total, cfg.warmup)
        for g, lr in zip(opt.param_groups, base_lrs):
            g["lr"] = lr * factor
        opt.zero_grad(set_to_none=True)
        for (g, n), d in deltas.items():  # differentiable partitions, rebuilt from the deltas every step
            im.partitions[(g, n)] = kernel.partition_from_deltas(d)
        sandwich_step(norm or forward, xb, y[idx], widths, distill=cfg.distill, temperature=cfg.temperature,
                      balance=cfg.balance)
        opt.step()
        state.step += 1
        if path is not None and (state.step % checkpoint_every == 0 or state.step == stop):
            _save(path, im, opt, state, cfg, base_lrs, norm, deltas)
    for (g, n), d in deltas.items():  # float32, as bundles store them and the core samples with them
        im.partitions[(g, n)] = kernel.partition_from_deltas(d.detach()).float()
    if norm is not None:
        if state.step == total:  # finished: every width's statistics, folded into the layers
            norm.calibrate(x[-cfg.calibration:])
            im.norms = norm.fold()
        norm.detach()
    return im


def _partition_deltas(im: IntegralModel, widths: list[dict[int, int]]) -> dict[tuple[int, int], torch.nn.Parameter]:
    """Trainable ``delta`` (``kernel.partition_from_deltas``) of every narrowed group at every width,
    starting from the model's current partition (uniform unless tuned before)."""
    out: dict[tuple[int, int], torch.nn.Parameter] = {}
    for sizes in widths:
        for g in im.groups:
            n = sizes[g.id]
            if g.resizable and n < g.size and (g.id, n) not in out:
                out[(g.id, n)] = torch.nn.Parameter(kernel.deltas_for_partition(im.partition(g.id, n)))
    return out


def _discrete_widths(im: IntegralModel, cfg: FinetuneConfig) -> list[dict[int, int]]:
    """The switchable run's distinct widths, widest first (the teacher), narrowest last."""
    if not cfg.widths or not all(0.0 < r <= 1.0 for r in cfg.widths):
        raise ValueError(f"widths must be ratios in (0, 1], got {cfg.widths}")
    out: list[dict[int, int]] = []
    for r in sorted(set(cfg.widths), reverse=True):
        sizes = im.check_sizes(im.sizes_at(r, multiple_of=cfg.multiple_of))
        if sizes not in out:
            out.append(sizes)
    return out
