"""Baseline: L1-norm structured channel pruning on the same coupled groups, without fine-tuning.

Each group keeps the channels whose producing filters have the largest L1 norm (summed over every
layer that writes the group). It is expressed as a sampler that picks whole channels, so it runs
through exactly the same discretisation as the integral resize: the only difference between the
two baselines is *how* a narrower axis is obtained.
"""

from __future__ import annotations

import torch
from torch import fx

from inn_mobile.core import kernel
from inn_mobile.core.integral import AxisSampler, IntegralModel


def l1_scores(model: IntegralModel) -> dict[int, torch.Tensor]:
    """Per resizable group: L1 norm of every channel's output filters at full width."""
    with torch.no_grad():
        weights = model.discretize(model.samplers())
    scores = {g.id: torch.zeros(g.size, dtype=torch.float64) for g in model.groups if g.resizable}
    for spec in model.layers:
        w = weights[spec.name]
        rows = w["scale"][:, None] if spec.kind == "affine" else w["weight"].reshape(w["weight"].shape[0], -1)
        if spec.kind == "affine":
            continue  # a per-channel affine does not produce the channel
        offset = 0
        for gid in spec.out_groups:
            n = model.groups[gid].size
            if gid in scores:
                scores[gid] += rows[offset:offset + n].abs().sum(1).double()
            offset += n
    return scores


def l1_prune(model: IntegralModel, sizes: dict[int, int]) -> fx.GraphModule:
    """Plain network keeping the ``sizes[g]`` highest-L1 channels of every group (original weights)."""
    sizes = model.check_sizes(sizes)
    scores = l1_scores(model)
    samplers = {}
    for g in model.groups:
        full = model.sampler(g.id, g.size)
        if not g.resizable:
            samplers[g.id] = full
            continue
        keep = torch.sort(torch.topk(scores[g.id], sizes[g.id]).indices).values
        idx, w = kernel.identity_taps(g.size)
        samplers[g.id] = AxisSampler(idx[keep], w[keep], full.q[keep])
    with torch.no_grad():
        return model.build(model.discretize(samplers))
