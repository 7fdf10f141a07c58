"""Partition tuning (the INN paper's pipeline C): structured pruning by moving the sample points.

At a target width each resizable group samples its continuous channel axis at ``n`` points. By
default they are uniform; here the nodes stay frozen and only the points move, parameterised as
``P = [0, cumsum(δ²)/Σδ²]`` (``kernel.partition_from_deltas``), so every gradient step keeps them
sorted, inside [0, 1], with both ends fixed. A few hundred steps on a small calibration set are
enough (few parameters: one δ per kept channel), and unlabelled data works too: the loss is then
pure self-distillation from the same model at full width.

The tuned points are stored in ``im.partitions[(group, n)]`` as float32; ``Bundle`` writes them as
explicit trained partitions and the C core samples with exactly them (bit-exact with Python).
Optionally the biases (and affine shifts) are trained too; those are shared by every width, so use
that only when the model will ship at the tuned width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx, nn

from inn_mobile.core import kernel
from inn_mobile.core.integral import IntegralModel
from inn_mobile.core.width_forward import WidthForward
from inn_mobile.progress import progress
from inn_mobile.train.finetune import distillation_loss


def _targets(im: IntegralModel, sizes: dict[int, int], groups: list[int] | None) -> list[int]:
    """Resizable groups actually narrowed at ``sizes`` (at full width the uniform partition is exact)."""
    chosen = [g.id for g in im.groups if g.resizable and sizes[g.id] < g.size]
    return chosen if groups is None else [g for g in chosen if g in groups]


@torch.no_grad()
def _teacher_logits(forward: WidthForward, x: torch.Tensor, batch: int = 512) -> torch.Tensor:
    return torch.cat([forward(x[i:i + batch]) for i in range(0, len(x), batch)])


@torch.no_grad()
def _objective(forward, sizes, x, y, teacher, distill, temperature, batch: int = 512) -> float:
    """The tuning loss over the whole calibration set (for the keep-or-revert decision)."""
    total = 0.0
    for i in range(0, len(x), batch):
        logits = forward(x[i:i + batch], sizes)
        n = len(logits) / len(x)
        if teacher is not None:
            total += n * distill * float(distillation_loss(logits, teacher[i:i + batch], temperature))
        if y is not None and distill < 1.0:
            total += n * (1.0 - distill) * float(F.cross_entropy(logits, y[i:i + batch]))
    return total


def tune_partitions(
    im: IntegralModel,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    ratio: float | None = None,
    sizes: dict[int, int] | None = None,
    multiple_of: int = 1,
    groups: list[int] | None = None,
    steps: int = 200,
    batch: int = 128,
    lr: float = 0.01,
    distill: float = 1.0,
    temperature: float = 1.0,
    train_bias: bool = False,
    keep_if_worse: bool = False,
    seed: int = 0,
    desc: str = "partition tuning",
) -> dict[tuple[int, int], torch.Tensor]:
    """Train the partitions of ``groups`` (default: every narrowed group) at one width; returns them.

    Give the width as ``ratio`` (with ``multiple_of``) or explicit ``sizes``. ``x`` is a small
    calibration set; with labels ``y`` the loss is ``(1 - distill) * CE + distill * KL(full width)``,
    without labels it is the distillation term alone. Nodes are frozen (biases too unless
    ``train_bias``). The result is stored in ``im.partitions`` (float32) and validated. Unless
    ``keep_if_worse``, the starting partitions are restored when the loss on all of ``x`` got worse
    (a few noisy steps on little data must not make a width worse than it was).
    """
    if (ratio is None) == (sizes is None):
        raise ValueError("give exactly one of ratio= or sizes=")
    sizes = im.check_sizes(im.sizes_at(ratio, multiple_of=multiple_of) if ratio is not None else sizes)
    if y is None:
        distill = 1.0
    targets = _targets(im, sizes, groups)
    if not targets:
        return {}
    deltas = {g: nn.Parameter(kernel.deltas_for_partition(im.partition(g, sizes[g]))) for g in targets}
    trainable = list(deltas.values())
    flags = {k: p.requires_grad for k, p in im.nodes.items()}
    original = {g: im.partitions.get((g, sizes[g])) for g in targets}
    reverted = False
    forward = WidthForward(im)
    try:
        for k, p in im.nodes.items():
            p.requires_grad_(train_bias and k.endswith(("__bias", "__shift")))
            if p.requires_grad:
                trainable.append(p)
        teacher = _teacher_logits(forward, x) if distill > 0 else None
        before = _objective(forward, sizes, x, y, teacher, distill, temperature)
        opt = torch.optim.Adam([{"params": list(deltas.values()), "lr": lr},
                                {"params": trainable[len(deltas):], "lr": lr * 0.1}])
        gen = torch.Generator().manual_seed(seed)
        for _ in progress(range(steps), desc=desc):
            idx = torch.randint(0, len(x), (min(batch, len(x)),), generator=gen)
            for g, d in deltas.items():
                im.partitions[(g, sizes[g])] = kernel.partition_from_deltas(d)
            logits = forward(x[idx], sizes)
            loss = distill * distillation_loss(logits, teacher[idx], temperature) if teacher is not None else 0.0
            if y is not None and distill < 1.0:
                loss = loss + (1.0 - distill) * F.cross_entropy(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        for g, d in deltas.items():
            im.partitions[(g, sizes[g])] = kernel.partition_from_deltas(d.detach()).float()
        reverted = not keep_if_worse and _objective(forward, sizes, x, y, teacher, distill, temperature) > before
    finally:
        for k, p in im.nodes.items():
            p.requires_grad_(flags[k])
        for g, d in deltas.items():
            im.partitions[(g, sizes[g])] = kernel.partition_from_deltas(d.detach()).float()
            if reverted and original[g] is None:
                del im.partitions[(g, sizes[g])]
            elif reverted:
                im.partitions[(g, sizes[g])] = original[g]
    out = {(g, sizes[g]): im.partition(g, sizes[g]).float() for g in deltas}
    for p in out.values():
        kernel.check_partition(p)
    return out


@torch.no_grad()
def recalibrate(
    im: IntegralModel, x: torch.Tensor, *, ratio: float | None = None, sizes: dict[int, int] | None = None,
    multiple_of: int = 1,
) -> fx.GraphModule:
    """A resized network whose per-channel output statistics match the full-width network's (no training).

    A narrow width of a network that is not yet smooth along its channels has activations of the
    wrong scale, and the error compounds layer by layer (what BatchNorm recalibration fixes in
    slimmable networks; here BatchNorm is folded). On the unlabelled calibration inputs ``x`` we
    record each layer's per-output-channel mean and std at full width, resample them along the
    output axis exactly like the weights (the narrow channel ``k`` stands for the continuous channel
    at ``p_k``), and rescale/shift each narrow layer's weights and bias to match, layer by layer in one
    pass (each hook corrects its output, so later layers see corrected inputs). Returns a plain
    ``GraphModule``; the nodes are untouched, so this is per width and host-side (it is not in bundles).
    """
    if (ratio is None) == (sizes is None):
        raise ValueError("give exactly one of ratio= or sizes=")
    sizes = im.check_sizes(im.sizes_at(ratio, multiple_of=multiple_of) if ratio is not None else sizes)
    layers = [s for s in im.layers if s.kind != "affine"]
    full, narrow = im.resize(sizes=im.full_sizes()), im.resize(sizes=sizes)
    stats = _output_stats(full, layers, x)
    samplers = im.samplers(sizes)
    targets = {}
    for spec in layers:
        axis = im.axis(spec.out_groups, samplers)
        targets[spec.name] = [kernel.resample(v, 0, axis.idx, axis.w.float()) for v in stats[spec.name]]

    def hook_for(name: str):
        def hook(module, inputs, out):
            mean, std = _channel_stats(out)
            t_mean, t_std = targets[name]
            gain = t_std / std.clamp_min(1e-8)
            module.weight.mul_(gain.reshape(-1, *[1] * (module.weight.ndim - 1)))
            bias = module.bias if module.bias is not None else torch.zeros_like(mean)
            module.bias = nn.Parameter((bias - mean) * gain + t_mean)
            return (out - _bcast(mean, out)) * _bcast(gain, out) + _bcast(t_mean, out)
        return hook

    hooks = [narrow.get_submodule(s.name).register_forward_hook(hook_for(s.name)) for s in layers]
    try:
        narrow(x)
    finally:
        for h in hooks:
            h.remove()
    return narrow.eval()


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape(1, -1, *[1] * (like.ndim - 2))


def _channel_stats(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (dim 1) mean and std over the batch and spatial positions."""
    flat = out.transpose(0, 1).reshape(out.shape[1], -1)
    return flat.mean(1), flat.std(1)


@torch.no_grad()
def _output_stats(gm: fx.GraphModule, layers, x: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    found = {}
    hooks = [gm.get_submodule(s.name).register_forward_hook(
        lambda m, i, o, name=s.name: found.__setitem__(name, _channel_stats(o))) for s in layers]
    try:
        gm(x)
    finally:
        for h in hooks:
            h.remove()
    return found
