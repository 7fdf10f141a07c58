"""The integral math, in one place: cubic-convolution interpolation, partitions, quadrature.

An axis of ``m`` interpolation nodes has nodes at ``t_i = i / (m - 1)`` on [0, 1]. The continuous
function along the axis is ``F(x) = sum_i lambda_i u(x (m - 1) - i)`` with Keys' cubic kernel
(``a = -0.5``)::

    u(s) = (a+2)|s|^3 - (a+3)|s|^2 + 1       for |s| <= 1
    u(s) = a|s|^3 - 5a|s|^2 + 8a|s| - 4a     for 1 < |s| < 2
    u(s) = 0                                 otherwise

Out-of-range node indices are clamped (the edge node is replicated). Sampling ``F`` at the ``n``
points of a partition is a sparse ``n x m`` matrix with at most four taps per row; we keep it as a
tap table ``(idx[n, 4], w[n, 4])`` and never build the dense matrix.

The C core (``csrc/inn_kernel.c``, ``inn_resample.c``) evaluates *exactly* the same expressions in
the same order (tap weights and quadrature in float64, rounded to float32; the weighted sums in
float32), so weights agree bit for bit on hosts without fused multiply-add contraction (we build
with ``-ffp-contract=off``). Keep the two in sync: the shared test vectors in
``tests/vectors`` fail when they drift.
"""

from __future__ import annotations

from typing import Literal

import torch

A = -0.5
TAPS = 4
# A sample position within SNAP of a node is the node (csrc/inn_kernel.c has the same constant and why).
SNAP = 2.0 ** -20
Quadrature = Literal["trapezoid", "simpson", "rectangle"]
QUADRATURES: tuple[str, ...] = ("trapezoid", "simpson", "rectangle")


def cubic(s: torch.Tensor) -> torch.Tensor:
    """Keys' cubic-convolution kernel ``u(s)`` (a = -0.5), evaluated as the C core does."""
    x = s.abs()
    near = ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    far = ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
    return torch.where(x <= 1.0, near, torch.where(x < 2.0, far, torch.zeros_like(x)))


def uniform_partition(n: int) -> torch.Tensor:
    """``n`` equally spaced points ``k / (n - 1)`` on [0, 1] (float64); ``n = 1`` gives ``[0.5]``."""
    if n < 1:
        raise ValueError(f"a partition needs at least one point, got n={n}")
    if n == 1:
        return torch.tensor([0.5], dtype=torch.float64)
    return torch.arange(n, dtype=torch.float64) / float(n - 1)


def partition_from_deltas(delta: torch.Tensor) -> torch.Tensor:
    """Trainable partition ``P = [0, cumsum(delta^2) / sum(delta^2)]``: sorted, 0 and 1 fixed.

    ``delta`` has ``n - 1`` entries for ``n`` points. Squaring keeps every gap non-negative, so any
    gradient step leaves a valid partition; the last point is exactly 1 by construction.
    """
    d2 = delta.to(torch.float64) ** 2
    total = d2.sum()
    if not bool(total > 0):
        raise ValueError("partition deltas are all zero")
    inner = torch.cumsum(d2[:-1], 0) / total
    return torch.cat([d2.new_zeros(1), inner.clamp(0.0, 1.0), d2.new_ones(1)])


def deltas_for_partition(points: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`partition_from_deltas` (up to scale): ``delta = sqrt(diff(points))``."""
    return torch.sqrt(torch.diff(points.to(torch.float64)).clamp_min(0.0))


def check_partition(points: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``points`` is a valid partition: sorted, within [0, 1], ends fixed."""
    p = points.detach().to(torch.float64)
    if p.ndim != 1 or p.numel() < 2:
        raise ValueError("a partition is a 1-D tensor of at least two points")
    if not torch.isfinite(p).all():
        raise ValueError("partition has non-finite points")
    if p[0] != 0.0 or p[-1] != 1.0:
        raise ValueError(f"partition must start at 0 and end at 1, got {p[0].item()}..{p[-1].item()}")
    if bool((torch.diff(p) < 0).any()):
        raise ValueError("partition points must be non-decreasing")


def taps(points: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tap table sampling an ``m``-node function at ``points``: ``(idx[n, 4] int64, w[n, 4] f64)``.

    Row ``k`` reads nodes ``j-1 .. j+2`` (clamped to ``[0, m-1]``) with ``j = floor(p_k (m-1))``; a
    position within :data:`SNAP` of a node is moved onto it (rounding error, not an offset), so sampling
    at the nodes reads each node with weight exactly 1. Differentiable in ``points`` (the weights are
    polynomials of the fractional position; the snap is a constant shift, passing gradients through).
    """
    if m < 1:
        raise ValueError(f"an axis needs at least one node, got m={m}")
    s = points.to(torch.float64) * float(m - 1)
    off = s.detach() - torch.round(s.detach())
    s = s - torch.where(off.abs() <= SNAP, off, torch.zeros_like(off))
    base = torch.floor(s.detach()).to(torch.int64).clamp(0, max(m - 1, 0))
    offsets = torch.arange(-1, TAPS - 1, dtype=torch.int64)
    raw = base[:, None] + offsets[None, :]
    w = cubic(s[:, None] - raw.to(torch.float64))
    return raw.clamp(0, m - 1), w


def identity_taps(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Taps of a fixed (discrete) axis: sample ``k`` reads node ``k`` with weight 1."""
    idx = torch.arange(n, dtype=torch.int64)[:, None].expand(n, TAPS).contiguous()
    w = torch.zeros(n, TAPS, dtype=torch.float64)
    w[:, 0] = 1.0
    return idx, w


def quadrature(points: torch.Tensor, rule: Quadrature = "trapezoid") -> torch.Tensor:
    """Quadrature weights on [0, 1] for samples at ``points`` (float64, they sum to 1).

    - ``trapezoid``: ``q_k = (p_{k+1} - p_{k-1}) / 2`` with one-sided ends; any partition.
    - ``simpson``: composite Simpson on a uniform partition (odd ``n``; even ``n`` closes with
      Simpson's 3/8 rule on the last three intervals). Requires ``n >= 3``.
    - ``rectangle``: ``1 / n`` each, independent of the partition (a plain mean).
    """
    p = points.to(torch.float64)
    n = p.numel()
    if n == 1:
        return torch.ones(1, dtype=torch.float64)
    if rule == "trapezoid":
        left = torch.cat([p[:1], p[:-1]])
        right = torch.cat([p[1:], p[-1:]])
        return (right - left) * 0.5
    if rule == "rectangle":
        return torch.full((n,), 1.0 / n, dtype=torch.float64)
    if rule == "simpson":
        return _simpson(n)
    raise ValueError(f"unknown quadrature {rule!r}; choose one of {QUADRATURES}")


def _simpson(n: int) -> torch.Tensor:
    if n < 3:
        raise ValueError("simpson quadrature needs at least 3 points")
    h = 1.0 / (n - 1)
    q = torch.zeros(n, dtype=torch.float64)
    intervals = n - 1
    simpson_end = intervals if intervals % 2 == 0 else intervals - 3
    for k in range(0, simpson_end, 2):
        q[k] += h / 3.0
        q[k + 1] += 4.0 * h / 3.0
        q[k + 2] += h / 3.0
    if simpson_end != intervals:
        k = simpson_end
        for j, c in enumerate((1.0, 3.0, 3.0, 1.0)):
            q[k + j] += 3.0 * h / 8.0 * c
    return q


def resample(nodes: torch.Tensor, dim: int, idx: torch.Tensor, w: torch.Tensor, *,
             signed_zeros: bool = True) -> torch.Tensor:
    """Sample ``nodes`` along ``dim`` with a tap table: ``out[k] = sum_b w[k, b] nodes[idx[k, b]]``.

    The sum runs over the non-zero taps only, b = 0, 1, 2, 3 left to right, starting from the first
    term (a row without one is +0.0), in the dtype of ``w`` (float32 for weights): exactly the C
    core's sums, down to the sign of a zero (``-0.0`` weights stay ``-0.0``, FORMAT.md "Semantics").

    ``signed_zeros=False`` (training) sums all four taps left to right, zero weights included, without
    the masks that skip them: a skipped term is ``0 * node``, a zero, and adding a zero changes no
    non-zero sum, so the values are the same for finite nodes except that a zero may carry the other sign.
    """
    x = nodes.to(w.dtype)
    shape = [1] * x.ndim
    shape[dim] = idx.shape[0]
    if not signed_zeros:
        out = x.index_select(dim, idx[:, 0]) * w[:, 0].reshape(shape)
        for b in range(1, idx.shape[1]):
            out = out + x.index_select(dim, idx[:, b]) * w[:, b].reshape(shape)
        return out
    acc = torch.zeros((), dtype=w.dtype)
    started = torch.zeros(shape, dtype=torch.bool)
    for b in range(idx.shape[1]):
        wb = w[:, b].reshape(shape)
        term = x.index_select(dim, idx[:, b]) * wb
        acc = torch.where(wb != 0, torch.where(started, acc + term, term), acc)
        started = started | (wb != 0)
    return acc


def scaled_nodes(weight: torch.Tensor, q: torch.Tensor, dim: int) -> torch.Tensor:
    """Nodes that reproduce ``weight`` exactly at its own width: divide by the quadrature weights."""
    shape = [1] * weight.ndim
    shape[dim] = q.numel()
    return (weight.to(torch.float64) / q.reshape(shape)).to(torch.float32)


def total_variation(x: torch.Tensor, dim: int = 0) -> float:
    """Mean absolute difference between neighbours along ``dim``: the smoothness we permute for."""
    if x.shape[dim] < 2:
        return 0.0
    return float(torch.diff(x.to(torch.float64), dim=dim).abs().mean())
