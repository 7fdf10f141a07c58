"""Data-parallel fine-tuning over processes (``torchrun --nproc_per_node N``; NCCL on GPUs, gloo on CPU).

Why not ``torch.nn.parallel.DistributedDataParallel`` around a module: a sandwich step runs several
forward/backward passes (one per width) before one optimiser step, and the per-width BatchNorms of the
widths not drawn in a step get no gradient, which DDP's reducer treats as an error (or, with
``find_unused_parameters``, as a graph search per pass). The trainable tensors are a flat dict, so we do
what DDP does, once per step: average the gradients of every rank with one coalesced all-reduce, after
the last width's backward. Every rank draws the same widths (same seeded RNG), so the set of tensors
that have a gradient is the same on every rank, which the coalesced reduce relies on.

Per-width BatchNorms use the *global* batch's statistics (:func:`sync_batch_norm`, a differentiable
all-reduce of per-channel sums), so N processes with batch B/N compute what one process with batch B
does, up to float rounding; running statistics and the final calibration are identical on every rank.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (``rank 0 of 1`` without torch.distributed)."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def world() -> World:
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def init_from_env(device: torch.device) -> World:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1), once.

    NCCL for CUDA devices (each rank on ``cuda:LOCAL_RANK``), gloo otherwise. A group the caller
    initialised already is used as it is.
    """
    if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return world()


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Replace every existing ``.grad`` by its mean over the ranks (one coalesced all-reduce)."""
    w = world()
    if w.size == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= w.size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """The mean of ``t`` over the ranks (a new tensor; ``t`` itself without torch.distributed)."""
    if world().size == 1:
        return t
    out = t.detach().clone()
    dist.all_reduce(out)
    return out / world().size


def sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
    if world().size == 1:
        return t
    out = t.detach().clone()
    dist.all_reduce(out)
    return out


def broadcast_(tensors: list[torch.Tensor]) -> None:
    """Make every rank's ``tensors`` rank 0's, in place (the same start wherever each rank came from)."""
    if world().size == 1:
        return
    with torch.no_grad():
        for t in tensors:
            dist.broadcast(t.data, 0)


def barrier() -> None:
    if world().size > 1:
        dist.barrier()


def sync_batch_norm(z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, running_mean: torch.Tensor,
                    running_var: torch.Tensor, *, momentum: float, eps: float) -> torch.Tensor:
    """Training-mode BatchNorm over the global batch of all ranks (differentiable), as ``F.batch_norm``
    would compute on the concatenated batch: biased variance to normalise, unbiased for the running one."""
    if world().size == 1:
        return F.batch_norm(z, running_mean, running_var, weight, bias, training=True, momentum=momentum, eps=eps)
    from torch.distributed.nn.functional import all_reduce  # autograd-aware: gradients flow to every rank's z

    c = z.shape[1]
    dims = [0] + list(range(2, z.ndim))
    zf = z.float()
    count = torch.tensor([z.numel() / c], dtype=torch.float32, device=z.device)
    totals = all_reduce(torch.cat([zf.sum(dims), (zf * zf).sum(dims), count]))
    n = totals[-1]
    mean = totals[:c] / n
    var = (totals[c:2 * c] / n - mean * mean).clamp_min(0.0)
    with torch.no_grad():
        running_mean.lerp_(mean.detach(), momentum)
        running_var.lerp_(var.detach() * n / (n - 1).clamp_min(1.0), momentum)
    shape = [1, c] + [1] * (z.ndim - 2)
    scale = (weight * torch.rsqrt(var + eps)).reshape(shape)
    return ((zf - mean.reshape(shape)) * scale + bias.reshape(shape)).to(z.dtype)
