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
trained from scratch at that width (README, "Measured"). Widths that were not trained get norms
afterwards from :func:`inn_mobile.train.calibrate.calibrate`; so that those widths work, each step
also trains ``between`` random widths between the shipped ones (universally slimmable networks),
normalised exactly as ``calibrate`` will normalise them (:class:`SwitchableNorm` on an untrained width).

Each width's loss is back-propagated on its own (gradients accumulate), so memory stays at one
width's activations. Pieces usable in any loop: :class:`DeviceForward` (a differentiable forward at
given sizes, on any device), :func:`sandwich_sizes`, :func:`sandwich_step`, :func:`node_optimizer`.
:func:`fit` is a complete loop: tensors or any re-iterable of batches (:mod:`inn_mobile.train.data`),
CPU/CUDA/MPS, fp32/bf16/fp16, several processes (:mod:`inn_mobile.train.distributed`), per-epoch logs,
and checkpoints that resume bit for bit, mid-epoch included. Checkpoints hold only tensors and plain
containers and are read with ``torch.load(weights_only=True)``: a crafted file cannot run code.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from inn_mobile import atomic
from inn_mobile.core import kernel
from inn_mobile.core.integral import AxisSampler, IntegralModel, SizesKey, sizes_key
from inn_mobile.core.width_forward import WidthForward
from inn_mobile.progress import progress
from inn_mobile.train import distributed
from inn_mobile.train.data import TensorBatches, loader_batches, split_batch, take_images
from inn_mobile.train.supervised import augment
from inn_mobile.train.switchable import SwitchableNorm

logger = logging.getLogger(__name__)


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
    forward: Callable[[torch.Tensor, dict[int, int]], torch.Tensor],
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
    return sum(loss for loss, _ in _sandwich(forward, x, y, widths, distill=distill, temperature=temperature,
                                             balance=balance))


def _sandwich(
    forward: Callable[[torch.Tensor, dict[int, int]], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    widths: list[dict[int, int]],
    *,
    distill: float,
    temperature: float,
    balance: bool,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    scaler: torch.amp.GradScaler | None = None,
) -> list[tuple[float, int]]:
    """:func:`sandwich_step`'s work; returns per width ``(loss, correct predictions in x)``.

    The loss reported and the ``balance`` divisor are the global batch's (mean over the processes),
    so N processes scale their gradients exactly as one process with the whole batch would.
    """
    out = []
    teacher = None
    for k, sizes in enumerate(widths):
        with autocast():
            logits = forward(x, sizes).float()
        loss = F.cross_entropy(logits, y)
        if k == 0:
            teacher = logits.detach()
        elif distill > 0:
            loss = (1.0 - distill) * loss + distill * distillation_loss(logits, teacher, temperature)
        value = distributed.mean_over_ranks(loss.detach())
        scaled = loss / value.clamp_min(1.0) if balance else loss
        (scaler.scale(scaled) if scaler is not None else scaled).backward()
        out.append((float(value), int((logits.detach().argmax(1) == y).sum())))
    return out


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


BETWEEN_DRAWS = ("uniform", "log", "inverse")


def between_ratio(rng: random.Random, lo: float, hi: float, draw: str) -> float:
    """One random width in ``[lo, hi]`` drawn by the rule ``draw`` (``BETWEEN_DRAWS``), from one RNG draw
    whatever the rule, so that a resumed run continues the same sequence: "uniform" in width; "log" uniform
    in log-width (as many draws between 25% and 50% as between 50% and 100%); "inverse" uniform in
    1/width (density in proportion to 1/width², and a pass costs about width²: every stretch of width gets
    the same compute, and narrow widths, which train slowest, the most draws)."""
    if draw == "log":
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))
    if draw == "inverse":
        return 1.0 / rng.uniform(1.0 / hi, 1.0 / lo)
    return rng.uniform(lo, hi)


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
    # switchable only: per step, this many random widths between the narrowest and the widest of ``widths`` (any
    # width, not only the shipped ones), normalised as train.calibrate derives an untrained width's norms (affine
    # interpolated from the trained neighbours', batch statistics) and distilled from the widest, so the widths in
    # between that calibrate() ships later are trained too (universally slimmable networks' random widths)
    between: int = 1
    # how the random widths are drawn between the narrowest and widest (between_ratio): "uniform" in width, "log"
    # (uniform in log-width: as many draws between 25% and 50% as between 50% and 100%, where narrow widths train
    # slowest and each of their passes costs least) or "inverse" (uniform in 1/width: the same compute per
    # stretch of width)
    between_draw: str = "uniform"


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


class DeviceForward(WidthForward):
    """:class:`WidthForward` on ``device`` (the nodes must live there), with the bare trained weights.

    The samplers (tap tables, quadrature) are computed on the CPU in float64, as the core does, and
    moved to ``device`` rounded to float32 (what :func:`discretize_dense` rounds them to anyway), so
    they stay differentiable in trainable partitions kept on the CPU and work on devices without
    float64 (MPS). Per-width norms (``im.norms``) are never applied: training and post-hoc calibration
    run the bare discretised layers, with BatchNorms hooked on by :class:`SwitchableNorm`.
    """

    def __init__(self, im: IntegralModel, device: torch.device | str = "cpu") -> None:
        super().__init__(_OnDevice(im, torch.device(device)))  # WidthForward reads its weights from weights_at
        self.device = torch.device(device)

    def _build(self, key: SizesKey) -> torch.fx.GraphModule:
        return super()._build(key).to(self.device)


class _OnDevice:
    """``im`` as :class:`WidthForward` sees it, with ``weights_at`` = the bare weights computed on ``device``."""

    def __init__(self, im: IntegralModel, device: torch.device) -> None:
        self._im, self._device = im, device

    def __getattr__(self, name: str):
        return getattr(self._im, name)

    def weights_at(self, sizes: dict[int, int] | None = None, *,
                   signed_zeros: bool = True) -> dict[str, dict[str, torch.Tensor]]:
        d = self._device
        samplers = {gid: AxisSampler(s.idx.to(d), s.w.float().to(d), s.q.float().to(d))
                    for gid, s in self._im.samplers(sizes).items()}
        return self._im.discretize(samplers, signed_zeros=signed_zeros)


def _precision(device: torch.device, precision: str) -> tuple[Callable[[], contextlib.AbstractContextManager],
                                                              torch.amp.GradScaler | None]:
    """Autocast for the forward passes, and a gradient scaler where the dtype needs one (fp16).

    Nodes, partitions and per-width norms stay float32 masters: autocast only casts the convolutions'
    inputs and weights inside the forward; gradients and the optimiser work on the float32 tensors.
    """
    dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in dtypes:
        raise ValueError(f"precision must be one of {', '.join(dtypes)}, not {precision!r}")
    dtype = dtypes[precision]
    if dtype is None:
        return contextlib.nullcontext, None
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    return (lambda: torch.autocast(device.type, dtype=dtype)), scaler


class _State:
    """Where the run is: step, epoch, batches of the epoch done, and the RNGs (augmentation, widths).

    The data order is a function of ``(seed, epoch)`` (:mod:`inn_mobile.train.data`), so these few
    numbers resume a run bit for bit, mid-epoch included, with any number of processes.
    """

    def __init__(self, cfg: FinetuneConfig) -> None:
        self.step = self.epoch = self.batch = 0
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.rng = random.Random(cfg.seed)

    def to_dict(self, batches_per_epoch: int, examples: int | None) -> dict:
        version, internal, gauss = self.rng.getstate()
        return {"step": self.step, "epoch": self.epoch, "batch": self.batch, "gen": self.gen.get_state(),
                "rng": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
                "batches_per_epoch": batches_per_epoch, "examples": examples}

    def load(self, d: dict) -> None:
        self.step, self.epoch, self.batch = d["step"], d["epoch"], d["batch"]
        self.gen.set_state(d["gen"])
        r = d["rng"]
        self.rng.setstate((r["version"], tuple(int(v) for v in r["internal"]), r["gauss"]))


def _read_checkpoint(path: Path) -> dict:
    """A checkpoint of :func:`fit`, unpickled with ``weights_only=True`` (tensors and plain containers only)."""
    fix = "delete it to start over, or finish that run with the inn_mobile version that wrote it"
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(f"{path} holds more than tensors and plain containers, which weights_only=True refuses "
                         f"to unpickle (an older inn_mobile checkpoint, or not a checkpoint): {fix}") from None
    if not isinstance(ck, dict) or "nodes" not in ck:
        raise ValueError(f"{path} is not a fine-tuning checkpoint")
    if "perm" in ck.get("state", {}):
        raise ValueError(f"{path} is a checkpoint of an older inn_mobile (another data order): {fix}")
    return ck


def load_nodes(im: IntegralModel, checkpoint: str | os.PathLike) -> IntegralModel:
    """Copy the nodes saved by :func:`fit` into ``im`` (converted the same way); returns ``im``."""
    try:
        ck = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(f"{checkpoint} holds more than tensors and plain containers (weights_only=True "
                         "refuses it): load it with the inn_mobile version that wrote it") from None
    with torch.no_grad():
        for k, v in ck["nodes"].items():
            im.nodes[k].copy_(v)
    return im


def _step_widths(cfg: FinetuneConfig, im: IntegralModel, state: _State, total: int,
                 discrete: list[dict[int, int]] | None) -> list[dict[int, int]]:
    """This step's sizes, the teacher first: the sandwich over a range, or over the discrete widths."""
    if discrete is None:
        return sandwich_sizes(im, state.rng, min_ratio=_min_ratio(cfg, state.step, total), max_ratio=cfg.max_ratio,
                              n_random=cfg.n_random, multiple_of=cfg.multiple_of)
    inner = discrete[1:-1]
    widths = discrete[:1] + discrete[-1:] + [state.rng.choice(inner) for _ in range(cfg.n_random if inner else 0)]
    lo, hi = min(cfg.widths), max(cfg.widths)
    count = cfg.between if len(discrete) > 1 else 0
    ratios = [between_ratio(state.rng, lo, hi, cfg.between_draw) for _ in range(count)]
    return widths + [im.sizes_at(r, multiple_of=cfg.multiple_of) for r in ratios]


class _Source:
    """The training data as :func:`fit` consumes it: batches of an epoch from a position on, this rank's share."""

    def __init__(self, data, cfg: FinetuneConfig, world: distributed.World) -> None:
        self.cfg, self.tensors = cfg, None
        if _is_pair(data):
            self.tensors = TensorBatches(data[0], data[1], cfg.batch, cfg.seed, world)
            self.batches, self.examples = len(self.tensors), len(data[1])
            return
        if isinstance(data, torch.Tensor) or iter(data) is data:
            raise TypeError("train_data must be an (x, y) pair of tensors or a re-iterable of (x, y) batches (a "
                            "DataLoader, a list), iterated once per epoch; not a tensor alone or a one-shot iterator")
        try:
            self.batches = len(data)
        except TypeError:
            raise TypeError("train_data must have a length (batches per epoch: the schedule spans the run)") from None
        if world.size > 1 and isinstance(data, DataLoader) and not hasattr(data.sampler, "set_epoch"):
            raise ValueError("with several processes each rank needs its own share of the data: "
                             "DataLoader(dataset, sampler=DistributedSampler(dataset), ...)")
        self.data, self.examples = data, None

    def epoch(self, epoch: int, skip: int, gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's ``(x, y)`` batches of ``epoch`` from batch ``skip`` on, augmented with ``gen`` if asked."""
        aug = self.cfg.augmentation
        if self.tensors is not None:
            t = self.tensors
            for idx in t.indices(epoch, skip):
                x = augment(t.x[idx], generator=gen) if aug else t.x[idx]  # the global batch: same draws as 1 process
                yield t.shard(x), t.shard(t.y[idx])
            return
        for x, y in loader_batches(self.data, self.cfg.seed, epoch, skip):
            yield (augment(x, generator=gen) if aug else x), y

    def images(self, n: int, last: bool, data=None) -> torch.Tensor:
        """``n`` unaugmented images: the last (calibration) or first (initial statistics) of the training
        tensors, the first of ``data``, or the first of the training iterable in epoch 0's order (this
        rank's; a fixed order, so a resumed run starts from the same norms as the straight one)."""
        if data is not None:
            return take_images(data, n)
        if self.tensors is not None:
            return self.tensors.x[-n:] if last else self.tensors.x[:n]
        return take_images(loader_batches(self.data, self.cfg.seed, 0, 0), n)


def _is_pair(data) -> bool:
    return (isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data)
            and data[1].ndim == 1 and data[0].ndim > 1 and len(data[0]) == len(data[1]))


class _Meter:
    """Per-width training loss and accuracy over an epoch, images and time: what a log record reports."""

    def __init__(self) -> None:
        self.sums: dict[str, list[float]] = {}  # label -> [loss sum, steps, correct, images]
        self.t0, self.images, self.steps = time.time(), 0, 0

    def add(self, labels: list[str], results: list[tuple[float, int]], n: int) -> None:
        for label, (loss, correct) in zip(labels, results):
            s = self.sums.setdefault(label, [0.0, 0, 0, 0])
            s[0] += loss
            s[1] += 1
            s[2] += correct
            s[3] += n

    def widths(self) -> dict[str, dict[str, float]]:
        """Per width label: mean loss and training accuracy (%), summed over the ranks."""
        labels = sorted(self.sums)
        t = torch.tensor([self.sums[k][2:] for k in labels], dtype=torch.float64).reshape(-1, 2)
        t = distributed.sum_over_ranks(t)
        return {k: {"loss": self.sums[k][0] / max(1, self.sums[k][1]),
                    "train_acc": 100.0 * float(c) / max(1.0, float(n))} for k, (c, n) in zip(labels, t.tolist())}


def _validate(forward, norm: SwitchableNorm | None, widths: dict[str, dict[int, int]], data, device: torch.device,
              autocast) -> dict[str, float]:
    """Accuracy (%) of each width on ``data`` (an (x, y) pair or an iterable of batches; this rank's share)."""
    if _is_pair(data):
        w = distributed.world()
        x, y = data[0][w.rank::w.size], data[1][w.rank::w.size]
        data = [(x[i:i + 256], y[i:i + 256]) for i in range(0, len(y), 256)]
    counts = torch.zeros(len(widths), 2, dtype=torch.float64)
    if norm is not None:
        norm.training = False
    try:
        with torch.no_grad():
            for item in data:
                x, y = (t.to(device) for t in split_batch(item))
                for k, sizes in enumerate(widths.values()):
                    with autocast():
                        counts[k, 0] += float((forward(x, sizes).argmax(1) == y).sum())
                    counts[k, 1] += len(y)
    finally:
        if norm is not None:
            norm.training = True
    counts = distributed.sum_over_ranks(counts)
    return {label: 100.0 * float(c) / max(1.0, float(n)) for label, (c, n) in zip(widths, counts.tolist())}


def format_record(r: dict) -> str:
    """One log line: epoch, step, throughput, ETA, then per width loss / train / val accuracy."""
    per = "  ".join(f"{k}: loss {v['loss']:.3f} train {v['train_acc']:.1f}%"
                    + (f" val {v['val_acc']:.1f}%" if "val_acc" in v else "") for k, v in r["widths"].items())
    return (f"epoch {r['epoch']:.2f} step {r['step']}/{r['total_steps']} lr x{r['lr_factor']:.3f} "
            f"{r['images_per_s']:.0f} img/s ETA {r['eta_s'] / 60:.1f} min | {per}")


def fit(
    im: IntegralModel,
    train_data: tuple[torch.Tensor, torch.Tensor] | Iterable,
    cfg: FinetuneConfig | None = None,
    *legacy: object,
    val_data: tuple[torch.Tensor, torch.Tensor] | Iterable | None = None,
    calibration_data: torch.Tensor | Iterable | None = None,
    device: torch.device | str | None = None,
    precision: str = "fp32",
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 200,
    max_steps: int | None = None,
    log: Callable[[dict], None] | None = None,
    desc: str = "integral fine-tune",
) -> IntegralModel:
    """Fine-tune ``im``'s nodes in place with the sandwich rule; returns ``im`` (nodes on the CPU).

    ``train_data``: an ``(x, y)`` pair of tensors (shuffled per epoch in batches of ``cfg.batch``,
    augmented with ``cfg.augmentation``), or any re-iterable of ``(x, y)`` batches with a length, e.g. a
    ``DataLoader`` over an image folder (its batches as they come, ``cfg.batch`` unused; ``cfg.augmentation``
    adds :func:`augment`'s crop and flip on top of the loader's transforms). ``val_data`` (same kinds):
    each epoch's log gets every width's accuracy on it.

    ``device``: ``"cpu"`` (default), ``"cuda"``, ``"mps"``; ``precision``: ``"fp32"``, ``"bf16"`` or ``"fp16"``
    autocast (fp16 with a gradient scaler); nodes, partitions and norms stay float32. Under ``torchrun``
    (``WORLD_SIZE`` > 1) the processes train data-parallel (:mod:`inn_mobile.train.distributed`): tensors are
    split per global batch of ``cfg.batch``; a ``DataLoader`` needs a ``DistributedSampler``.

    With ``checkpoint``, the run saves its full state there (rank 0) every ``checkpoint_every`` steps
    and at the end, and *resumes* from it if the file exists (same config required): an interrupted run
    continues exactly where it stopped, mid-epoch included, with any number of processes (tensors) or
    the same loader length. ``max_steps`` stops this call early (the schedule still spans the whole run).

    ``log(record)`` (rank 0) gets a dict at every epoch's end and at the end of the call: ``epoch`` (a
    fraction mid-epoch), ``step``, ``total_steps``, ``lr_factor``, ``images_per_s``, ``eta_s`` and
    ``widths``: per width label, ``loss``, ``train_acc`` and (with ``val_data``) ``val_acc``. The same
    line goes to the ``inn_mobile.train.finetune`` logger at INFO.

    ``cfg.switchable``: the per-width BatchNorms are saved in the checkpoint too, and are calibrated
    (on the last ``cfg.calibration`` training images, or the first of ``calibration_data``) and folded
    into ``im.norms`` only by the call that completes the run (an early stop leaves ``im.norms`` empty:
    resume to finish). A model that already has norms is refused (training the nodes would make them
    stale).
    """
    if isinstance(cfg, torch.Tensor) or legacy:  # the signature before loaders: fit(im, x, y, cfg)
        raise TypeError("fit(im, x, y, cfg) is now fit(im, (x, y), cfg): pass the tensors as one (x, y) pair")
    cfg = cfg or FinetuneConfig()
    device = torch.device(device or "cpu")
    world = distributed.init_from_env(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    autocast, scaler = _precision(device, precision)
    if im.norms:
        raise ValueError("this model already has per-width normalisation (im.norms), which training the nodes would "
                         "invalidate: fine-tune a fresh conversion (switchable=True makes new norms at the end)")
    if cfg.between < 0:
        raise ValueError(f"between must be >= 0, got {cfg.between}")
    if cfg.between_draw not in BETWEEN_DRAWS:
        raise ValueError(f"between_draw must be one of {', '.join(BETWEEN_DRAWS)}, got {cfg.between_draw!r}")
    if cfg.train_partitions and not cfg.switchable:
        raise ValueError("train_partitions needs switchable=True (partitions belong to the discrete shipped widths)")
    source = _Source(train_data, cfg, world)
    total = max(1, math.ceil(cfg.epochs * source.batches))
    im.nodes.to(device)
    forward = DeviceForward(im, device)
    params = dict(im.nodes.items())
    norm, discrete = None, None
    deltas: dict[tuple[int, int], torch.nn.Parameter] = {}
    if cfg.switchable:
        discrete = _discrete_widths(im, cfg)
        labels = {sizes_key(s): f"{r * 100:g}%" for r, s in discrete}
        discrete = [s for _, s in discrete]
        norm = SwitchableNorm(forward, discrete)
        norm.attach(source.images(512, last=False).to(device), init=cfg.norm_init)
        params.update(norm.parameters())
        if cfg.train_partitions:
            deltas = _partition_deltas(im, discrete)
            params.update({f"partition/{g}/{n}": d for (g, n), d in deltas.items()})
        eval_widths = {labels[sizes_key(s)]: s for s in discrete}
    else:
        eval_widths = {f"{r * 100:g}%": im.sizes_at(r, multiple_of=cfg.multiple_of)
                       for r in (cfg.max_ratio, cfg.min_ratio)}
    distributed.broadcast_(list(params.values()))  # one start on every rank, whatever each rank's data
    opt = node_optimizer(params, cfg.lr, cfg.weight_decay)
    base_lrs = [g["lr"] for g in opt.param_groups]
    state = _State(cfg)
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        ck = _read_checkpoint(path)
        # fields added since then have their old meaning (switchable runs before ``between`` had no random widths)
        old = {"between": 0} if ck["config"].get("switchable") else {}
        saved = {**asdict(FinetuneConfig()), **old, **ck["config"]}
        if saved != asdict(cfg):
            raise ValueError(f"{path} was written with a different config: {ck['config']}")
        s = ck["state"]
        if s["examples"] != source.examples or s["batches_per_epoch"] != source.batches:
            raise ValueError(f"{path} was written for other training data ({s['examples'] or 'a loader'} examples, "
                             f"{s['batches_per_epoch']} batches per epoch; this data: {source.examples or 'a loader'}, "
                             f"{source.batches}): resume with the same data, batch size and, for a loader, processes")
        with torch.no_grad():
            for k, v in ck["nodes"].items():
                im.nodes[k].copy_(v)
            for key, d in deltas.items():
                d.copy_(ck["partition_deltas"][f"{key[0]}/{key[1]}"])
        if norm is not None:
            norm.load_state_dict(ck["norms"])
        opt.load_state_dict(ck["optimizer"])
        base_lrs = ck["base_lrs"]  # from the initial nodes, not the resumed ones
        if scaler is not None and ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
        state.load(s)
    stop = total if max_steps is None else min(total, state.step + max_steps)
    start_step, meter = state.step, _Meter()
    trainable = list(params.values())

    def emit(epoch: float) -> None:
        widths = meter.widths()
        if val_data is not None:
            for label, acc in _validate(forward, norm, eval_widths, val_data, device, autocast).items():
                widths.setdefault(label, {"loss": float("nan"), "train_acc": float("nan")})["val_acc"] = acc
        secs = max(1e-9, time.time() - t0)
        record = {"epoch": epoch, "step": state.step, "total_steps": total,
                  "lr_factor": lr_factor(min(state.step, total - 1), total, cfg.warmup),
                  "images_per_s": meter.images * world.size / max(1e-9, time.time() - meter.t0),
                  "eta_s": (total - state.step) * secs / max(1, state.step - start_step), "widths": widths}
        if world.main:
            logger.info(format_record(record))
            if log is not None:
                log(record)

    def stream() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches across epochs; the loop below rolls ``state.epoch`` over when an epoch's batches are done."""
        while True:
            epoch, served = state.epoch, 0
            for batch in source.epoch(epoch, state.batch, state.gen):
                yield batch
                served += 1
                if state.epoch != epoch:
                    break
            else:  # the iterable ran out before its len(): the epoch ends here
                if served == 0 and state.batch == 0:
                    raise ValueError("train_data yielded no batches")
                state.epoch, state.batch = epoch + 1, 0

    t0 = time.time()
    if state.step < stop:
        for xb, yb in progress(stream(), desc=desc, total=stop - state.step):
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            widths = _step_widths(cfg, im, state, total, discrete)
            factor = lr_factor(state.step, total, cfg.warmup)
            for g, lr in zip(opt.param_groups, base_lrs):
                g["lr"] = lr * factor
            opt.zero_grad(set_to_none=True)
            for (g, n), d in deltas.items():  # differentiable partitions, rebuilt from the deltas every step
                im.partitions[(g, n)] = kernel.partition_from_deltas(d)
            results = _sandwich(norm or forward, xb, yb, widths, distill=cfg.distill, temperature=cfg.temperature,
                                balance=cfg.balance, autocast=autocast, scaler=scaler)
            distributed.average_gradients(trainable)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            names = ([labels.get(sizes_key(s), "between") for s in widths] if norm is not None
                     else ["max", "min"] + ["random"] * (len(widths) - 2))
            meter.add(names, results, len(yb))
            meter.images += len(yb)
            state.step += 1
            state.batch += 1
            if state.batch >= source.batches:
                state.epoch, state.batch = state.epoch + 1, 0
                emit(float(state.epoch))
                meter = _Meter()
            if path is not None and (state.step % checkpoint_every == 0 or state.step == stop):
                if world.main:
                    _save(path, im, opt, state, cfg, base_lrs, norm, deltas, scaler, source)
                distributed.barrier()
            if state.step >= stop:
                break
        if meter.sums:
            emit(state.epoch + state.batch / source.batches)
    for (g, n), d in deltas.items():  # float32, as bundles store them and the core samples with them
        im.partitions[(g, n)] = kernel.partition_from_deltas(d.detach()).float()
    if norm is not None:
        if state.step == total:  # finished: every width's statistics, folded into the layers
            norm.calibrate(source.images(cfg.calibration, last=True, data=calibration_data).to(device))
            im.norms = {k: {n: (a.cpu(), c.cpu()) for n, (a, c) in v.items()} for k, v in norm.fold().items()}
        norm.detach()
    im.nodes.to("cpu")
    return im


def _save(path: Path, im: IntegralModel, opt: torch.optim.Optimizer, state: _State, cfg: FinetuneConfig,
          base_lrs: list[float], norm: SwitchableNorm | None, deltas: dict[tuple[int, int], torch.nn.Parameter],
          scaler: torch.amp.GradScaler | None, source: _Source) -> None:
    """Everything a resumed run needs, as tensors and plain containers only (``weights_only=True`` loads it)."""
    with atomic.replace(path) as f:
        torch.save({"nodes": {k: v.detach().cpu().clone() for k, v in im.nodes.items()},
                    "optimizer": opt.state_dict(), "state": state.to_dict(source.batches, source.examples),
                    "config": asdict(cfg), "base_lrs": base_lrs,
                    "norms": norm.state_dict() if norm is not None else None,
                    "partition_deltas": {f"{g}/{n}": d.detach().clone() for (g, n), d in deltas.items()},
                    "scaler": scaler.state_dict() if scaler is not None else None}, f)


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


def _discrete_widths(im: IntegralModel, cfg: FinetuneConfig) -> list[tuple[float, dict[int, int]]]:
    """The switchable run's distinct widths as (ratio, sizes), widest first (the teacher), narrowest last."""
    if not cfg.widths or not all(0.0 < r <= 1.0 for r in cfg.widths):
        raise ValueError(f"widths must be ratios in (0, 1], got {cfg.widths}")
    out: list[tuple[float, dict[int, int]]] = []
    for r in sorted(set(cfg.widths), reverse=True):
        sizes = im.check_sizes(im.sizes_at(r, multiple_of=cfg.multiple_of))
        if all(sizes != s for _, s in out):
            out.append((r, sizes))
    return out
