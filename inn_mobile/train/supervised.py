"""A small, dependency-free training loop (CPU friendly) for reference models and demos."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from inn_mobile.progress import progress


def augment(
    x: torch.Tensor, *, pad: int = 2, flip: bool = True, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random crop (zero padding ``pad``) and horizontal flip, per batch element."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None].expand(n, x.shape[1], h, w + 2 * pad)
    out = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :].expand(n, x.shape[1], h, w)
    out = out.gather(3, cols)
    if flip:
        mask = torch.rand(n, generator=generator) < 0.5
        out[mask] = out[mask].flip(3)
    return out


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: float = 1.0,
    batch: int = 128,
    lr: float = 0.1,
    weight_decay: float = 5e-4,
    seed: int = 0,
    augmentation: bool = True,
    loss_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    desc: str = "train",
) -> nn.Module:
    """SGD with Nesterov momentum and a one-cycle cosine schedule; returns ``model`` (trained in place).

    ``loss_fn(model, xb, yb)`` replaces plain cross-entropy (e.g. to sample widths per step).
    """
    g = torch.Generator().manual_seed(seed)
    steps = max(1, math.ceil(epochs * len(y) / batch))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    model.train()
    perm = torch.randperm(len(y), generator=g)
    pos = 0
    for _ in progress(range(steps), desc=desc):
        if pos + batch > len(y):
            perm, pos = torch.randperm(len(y), generator=g), 0
        idx = perm[pos:pos + batch]
        pos += batch
        xb = augment(x[idx], generator=g) if augmentation else x[idx]
        loss = loss_fn(model, xb, y[idx]) if loss_fn else F.cross_entropy(model(xb), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()
