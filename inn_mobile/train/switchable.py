"""Per-width ("switchable") BatchNorm for integral fine-tuning, folded into ``IntegralModel.norms``.

Why: conversion folds every BatchNorm into its convolution, so fine-tuning trains all widths with
one shared per-channel affine and no normalisation. A narrow width's activations have other
statistics than the full width's (each sample stands for several channels), and slimmable networks
showed that sharing normalisation across widths is what breaks narrow widths. Here every chosen
width gets a BatchNorm of its own after each convolution (batch statistics while training, affine
trained with the nodes); after training, each width's statistics are recalibrated and the whole
BatchNorm is folded into a per-channel ``(a, c)``: ``W'[o] = W[o]·a[o]``, ``b'[o] = b[o]·a[o] + c[o]``,
which the bundle stores (FORMAT.md "Per-width normalisation") and the C core applies. So the
deployed network is as plain as before: no BatchNorm op at run time.

Fashion-MNIST ResNet (README, "Measured"): over the folded recipe, 25% width 79 -> 88.5%, 50% 86 -> 91%,
every width within 1 point of networks trained from scratch at that width.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from inn_mobile.core import kernel
from inn_mobile.core.integral import IntegralModel, Norm, SizesKey, sizes_key
from inn_mobile.core.width_forward import WidthForward
from inn_mobile.train import distributed

EPS = 1e-5


def norm_layers(im: IntegralModel) -> list[str]:
    """The layers that get a per-width BatchNorm: convolutions (dense or depthwise) with a bias."""
    return [s.name for s in im.layers if s.module == "conv2d" and s.kind != "affine" and s.has_bias]


def width_ratio(im: IntegralModel, sizes: dict[int, int]) -> float:
    """The global ratio a complete ``sizes`` stands for: the mean share of its resizable groups (as
    ``bundle.make_buckets`` names buckets)."""
    shares = [sizes[g.id] / g.size for g in im.groups if g.resizable]
    return sum(shares) / len(shares) if shares else 1.0


def neighbours(trained: Sequence[tuple[float, dict[int, int]]], ratio: float) -> list[tuple[float, dict[int, int]]]:
    """``(weight, sizes)`` of the trained widths (``(ratio, sizes)``, any order) that a width at ``ratio``
    takes its BatchNorm affine from: the nearest narrower and wider one, weights linear in width; outside
    the trained range (or on a trained ratio) the nearest alone, with weight 1."""
    ordered = sorted(trained, key=lambda t: t[0])
    lower = [t for t in ordered if t[0] <= ratio][-1:]
    upper = [t for t in ordered if t[0] >= ratio][:1]
    if lower and upper and upper[0][0] > lower[0][0]:
        t = (ratio - lower[0][0]) / (upper[0][0] - lower[0][0])
        return [(1.0 - t, lower[0][1]), (t, upper[0][1])]
    return [(1.0, (lower or upper)[0][1])]


def derived_affine(im: IntegralModel, name: str, target: dict[int, int],
                   sources: Sequence[tuple[float, dict[int, int], tuple[torch.Tensor, torch.Tensor]]]
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(gamma, beta)`` of layer ``name`` at an untrained width ``target``: each source's (``(weight,
    sizes, (gamma, beta))``, from :func:`neighbours`) read at ``target``'s channel positions, blended by weight.

    The one derivation of an untrained width's affine: post hoc (``train.calibrate``, from measured
    trained norms) and while training (a random width's BatchNorm, from the live trained affines, so
    gradients teach the trained norms to interpolate). Differentiable in the values.
    """
    read = [(w, _at_width(im, name, s, target, values)) for w, s, values in sources]
    return (sum(w * v[0] for w, v in read), sum(w * v[1] for w, v in read))


def _at_width(im: IntegralModel, name: str, source: dict[int, int], target: dict[int, int],
              values: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``values`` of layer ``name`` at width ``source``, read at ``target``'s channels: linear
    interpolation along each output group's partition points (where the channels sit on the axis)."""
    spec = next(s for s in im.layers if s.name == name)
    out = []
    for v in values:
        pieces, offset = [], 0
        for gid in spec.out_groups:
            n_src, n_dst = source[gid], target[gid]
            piece = v[offset:offset + n_src]
            offset += n_src
            pieces.append(_interp(im.partition(gid, n_dst).detach().double().to(v.device),
                                  im.partition(gid, n_src).detach().double().to(v.device), piece))
        out.append(torch.cat(pieces).float())
    return out[0], out[1]


def _interp(points: torch.Tensor, known: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear ``values`` (given at the sorted ``known`` points) at ``points``."""
    if len(known) == 1:
        return values.expand(len(points))
    j = torch.searchsorted(known, points, right=True).clamp(1, len(known) - 1)
    x0, x1 = known[j - 1], known[j]
    t = ((points - x0) / (x1 - x0).clamp_min(1e-12)).clamp(0.0, 1.0)
    return values[j - 1] + t * (values[j] - values[j - 1])


class SwitchableNorm:
    """A BatchNorm per (width, layer), applied by forward hooks on each width's graph of a ``WidthForward``.

    ``forward`` is a :class:`inn_mobile.core.width_forward.WidthForward`; each width has its own built graph,
    so a hook knows its width without shared state. Call it like the forward: ``norm(x, sizes)``.

    In training mode ``norm(x, sizes)`` also runs widths that have no BatchNorm of their own (universally
    slimmable networks' random widths): normalised with the batch's statistics and the affine
    :func:`derived_affine` reads off the trained neighbours, exactly as ``train.calibrate`` gives such a
    width its norms after training, so the gradient reaches the neighbours' affines.
    """

    def __init__(self, forward: WidthForward, widths: list[dict[int, int]], *, momentum: float = 0.1) -> None:
        self.forward, self.im = forward, forward.im
        self.widths = [self.im.check_sizes(s) for s in widths]
        self.layers = norm_layers(self.im)
        if not self.layers:
            raise ValueError("the model has no convolution with a bias to normalise per width")
        # per (width, layer): [weight (gamma), bias (beta), running mean, running var]
        self.state: dict[tuple[SizesKey, str], list[torch.Tensor]] = {}
        self.training, self.momentum = True, momentum
        self._sync = True  # training batches: global statistics over the ranks (calibrate turns it off)
        self._hooks: list = []

    # ------------------------------------------------------------------ set-up
    @torch.no_grad()
    def attach(self, x: torch.Tensor, *, init: str = "full") -> None:
        """Create and hook every width's BatchNorms, initialised so the network starts as it is.

        Each BatchNorm starts with ``gamma = std`` and ``beta = mean`` of its convolution's output on
        ``x``, so normalising changes nothing at first. ``init="full"``: every width takes the full
        width's statistics resampled along the channel axis (the narrow network is asked to
        reproduce the full one's activation distribution: 8 points better at 25% width than
        ``"own"``, each width's own collapsed statistics).
        """
        if init not in ("full", "own"):
            raise ValueError(f"init must be 'full' or 'own', not {init!r}")
        reference = self._statistics(x, self.im.full_sizes()) if init == "full" else None
        for sizes in self.widths:
            own = self._statistics(x, sizes) if reference is None else None
            samplers = self.im.samplers(sizes)
            for spec in self.im.layers:
                if spec.name not in self.layers:
                    continue
                if own is not None:
                    mean, std = own[spec.name]
                else:  # the full width's statistics, sampled at this width's channels like the weights
                    axis = self.im.axis(spec.out_groups, samplers)
                    mean, std = (kernel.resample(v, 0, axis.idx, axis.w.float()) for v in reference[spec.name])
                self.state[(sizes_key(sizes), spec.name)] = [
                    torch.nn.Parameter(std.clone()), torch.nn.Parameter(mean.clone()),
                    torch.zeros_like(mean), torch.ones_like(mean)]
        self._register()

    @torch.no_grad()
    def attach_affine(self, affine: dict[tuple[SizesKey, str], tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Create and hook every width's BatchNorms with the given ``(gamma, beta)`` per (width, layer),
        running statistics to be set by :meth:`calibrate` (how untrained widths get theirs post hoc)."""
        for sizes in self.widths:
            for name in self.layers:
                gamma, beta = affine[(sizes_key(sizes), name)]
                self.state[(sizes_key(sizes), name)] = [
                    torch.nn.Parameter(gamma.detach().clone()), torch.nn.Parameter(beta.detach().clone()),
                    torch.zeros_like(beta), torch.ones_like(beta)]
        self._register()

    def _register(self) -> None:
        for sizes in self.widths:
            gm = self.forward.graph(sizes)
            for name in self.layers:
                self._hooks.append(gm.get_submodule(name).register_forward_hook(self._hook(sizes_key(sizes), name)))

    def detach(self) -> None:
        """Remove the hooks (the forward is then the plain one again)."""
        for h in self._hooks:
            h.remove()
        self._hooks.clear()

    def _hook(self, key: SizesKey, name: str):
        def hook(_module, _inputs, z):
            w, b, mean, var = self.state[(key, name)]
            if self.training and self._sync and distributed.world().size > 1:  # the global batch's statistics
                return distributed.sync_batch_norm(z, w, b, mean, var, momentum=self.momentum, eps=EPS)
            return F.batch_norm(z, mean, var, w, b, training=self.training, momentum=self.momentum, eps=EPS)
        return hook

    def _statistics(self, x: torch.Tensor, sizes: dict[int, int]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per normalised layer: the per-channel mean and std of its output on ``x`` at ``sizes`` (no hooks)."""
        gm = self.forward.graph(sizes)
        stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

        def record(name: str):
            def hook(_module, _inputs, z):
                stats[name] = (z.mean((0, 2, 3)), z.std((0, 2, 3)) + 1e-3)
            return hook

        hooks = [gm.get_submodule(n).register_forward_hook(record(n)) for n in self.layers]
        try:
            self.forward(x, sizes)
        finally:
            for h in hooks:
                h.remove()
        return stats

    # ------------------------------------------------------------------ use
    def __call__(self, x: torch.Tensor, sizes: dict[int, int]) -> torch.Tensor:
        sizes = self.im.check_sizes(sizes)
        if any(sizes == s for s in self.widths):
            return self.forward(x, sizes)
        if not self.training:
            raise ValueError(f"width {sizes} has no BatchNorm of its own: it runs in training mode only (batch "
                             "statistics); train.calibrate.calibrate gives it running ones")
        affine = self.between_affine(sizes)
        gm = self.forward.graph(sizes)
        hooks = [gm.get_submodule(n).register_forward_hook(self._batch_hook(*affine[n])) for n in self.layers]
        try:
            return self.forward(x, sizes)
        finally:
            for h in hooks:
                h.remove()
            self.forward.release(sizes)  # a random width: its graph is kept for a redraw within a byte budget

    def between_affine(self, sizes: dict[int, int]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, the ``(gamma, beta)`` of an untrained width, from the trained affines (differentiable)."""
        trained = [(width_ratio(self.im, s), s) for s in self.widths]
        near = neighbours(trained, width_ratio(self.im, sizes))
        return {name: derived_affine(self.im, name, sizes,
                                     [(w, s, tuple(self.state[(sizes_key(s), name)][:2])) for w, s in near])
                for name in self.layers}

    def _batch_hook(self, gamma: torch.Tensor, beta: torch.Tensor):
        def hook(_module, _inputs, z):
            if self._sync and distributed.world().size > 1:
                unused = torch.zeros_like(gamma), torch.ones_like(gamma)  # no running statistics to keep
                return distributed.sync_batch_norm(z, gamma, beta, *unused, momentum=0.0, eps=EPS)
            return F.batch_norm(z, None, None, gamma, beta, training=True, eps=EPS)
        return hook

    def parameters(self) -> dict[str, torch.nn.Parameter]:
        """The trainable affines, named ``w{width index}/{layer}/{gamma|beta}`` (stable across runs)."""
        out = {}
        for i, sizes in enumerate(self.widths):
            for name in self.layers:
                w, b, _, _ = self.state[(sizes_key(sizes), name)]
                out[f"w{i}/{name}/gamma"], out[f"w{i}/{name}/beta"] = w, b
        return out

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor, *, batch: int = 256) -> None:
        """Every width's running statistics recomputed as the average over ``x`` (batch statistics,
        cumulative average), as the deployed network will see them; leaves eval mode on.

        With several processes each rank calibrates on its own ``x`` (batch statistics local to the
        rank) and the statistics are then averaged over the ranks, so every rank folds the same norms."""
        sync, self._sync = self._sync, False
        for sizes in self.widths:
            key = sizes_key(sizes)
            for name in self.layers:
                self.state[(key, name)][2].zero_()
                self.state[(key, name)][3].fill_(1.0)
            self.training = True
            for k, i in enumerate(range(0, len(x), batch)):
                self.momentum = 1.0 / (k + 1)
                self(x[i:i + batch], sizes)
        self.training, self.momentum, self._sync = False, 0.1, sync
        for state in self.state.values():
            for t in state[2:]:
                t.copy_(distributed.mean_over_ranks(t))

    @torch.no_grad()
    def fold(self) -> dict[SizesKey, dict[str, Norm]]:
        """The eval-mode BatchNorms as per-width ``(a, c)``: ``a = gamma / sqrt(var + eps)``, ``c = beta - mean·a``."""
        out: dict[SizesKey, dict[str, Norm]] = {}
        for (key, name), (w, b, mean, var) in self.state.items():
            a = (w / torch.sqrt(var + EPS)).float()
            out.setdefault(key, {})[name] = (a.detach().clone(), (b - mean * a).float().detach().clone())
        return out

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, torch.Tensor]:
        names = ("gamma", "beta", "mean", "var")
        return {f"w{i}/{name}/{what}": t.detach().clone()
                for i, sizes in enumerate(self.widths) for name in self.layers
                for what, t in zip(names, self.state[(sizes_key(sizes), name)])}

    @torch.no_grad()
    def load_state_dict(self, d: dict[str, torch.Tensor]) -> None:
        for i, sizes in enumerate(self.widths):
            for name in self.layers:
                for t, what in zip(self.state[(sizes_key(sizes), name)], ("gamma", "beta", "mean", "var")):
                    t.copy_(d[f"w{i}/{name}/{what}"])
