"""Per-width norms for widths that were never trained, after fine-tuning (universally slimmable networks).

A model fine-tuned with ``switchable=True`` has per-width normalisation only at its trained widths,
and serves only those (``im.norms``). Universally slimmable networks showed that a width between
trained ones works once its BatchNorm statistics are re-estimated at that width on a few thousand
images: the weights (here: the nodes, sampled at the new width) are shared, only the normalisation
is per width. Two things make up a BatchNorm, and a new width gets each from where it is best known:

- the affine ``(gamma, beta)``, the output distribution the training asked of each channel, comes
  from the trained neighbours: a trained width's folded ``(a, c)`` fixes its output's per-channel
  mean (``beta``) and standard deviation (``|gamma|``) on data, which are measured, read off at the
  new width's channel positions along the continuous axis (linear in position, per channel group),
  and blended linearly in width between the narrower and the wider neighbour;
- the statistics ``(mean, var)`` of each convolution's output at the new width are re-estimated on
  the calibration images (no labels), every layer seeing the already-normalised layers before it.

Optionally (``distill_steps``) each new width's folded ``(a, c)`` is then tuned by distillation from the
widest trained width on the same unlabelled images, nodes frozen: the derived affine is a guess from the
neighbours, and the per-channel affine is the one thing a width owns, so a few hundred steps on it alone
recover part of what the shared nodes cannot give that width (docs/benchmarks.md, "Any width after
fine-tuning").

The result is folded like a trained width's (``SwitchableNorm.fold``) and added to ``im.norms``, so
``bundle.make_buckets(im, ratios=...)`` ships it and the C core applies it like any other NORM record.
The derivation of the affine is :func:`inn_mobile.train.switchable.derived_affine`, the one a switchable
run also uses for its random in-between widths (``FinetuneConfig.between``): the nodes are trained at
widths normalised the way this module will normalise them (docs/benchmarks.md, "Any width after
fine-tuning").
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch

from inn_mobile.core.integral import IntegralModel, Norm, SizesKey, sizes_key
from inn_mobile.progress import progress
from inn_mobile.train.data import take_images
from inn_mobile.train.finetune import DeviceForward, distillation_loss
from inn_mobile.train.switchable import EPS, SwitchableNorm, derived_affine, neighbours, norm_layers, width_ratio

Affine = dict[str, tuple[torch.Tensor, torch.Tensor]]  # layer -> (gamma, beta)


def calibrate(
    im: IntegralModel,
    data: torch.Tensor | Iterable,
    widths: Sequence[float | dict[int, int]],
    *,
    images: int = 4096,
    multiple_of: int = 1,
    batch: int = 256,
    device: torch.device | str | None = None,
    distill_steps: int = 0,
    distill_lr: float = 3e-3,
    distill_batch: int = 128,
    seed: int = 0,
) -> list[dict[int, int]]:
    """Give ``im`` per-width norms at every width of ``widths`` that has none; returns those sizes.

    ``data``: unlabelled images (a tensor, or an iterable of batches, labels ignored); the first
    ``images`` are used. ``widths``: global ratios (sized with ``multiple_of``, which must match the
    ``multiple_of`` given to ``bundle.make_buckets`` later) or complete per-group sizes. Widths that
    already have norms (trained ones) are left as they are. The model must have per-width norms
    (``finetune.fit`` with ``switchable=True``): without them every width already works as it is.

    ``distill_steps`` > 0: then tune each new width's folded norms for that many Adam steps (``distill_lr``,
    batches of ``distill_batch`` of the same images, drawn with ``seed``) to match the widest trained
    width's logits; kept only if the distillation loss over all the images fell.
    """
    if not im.norms:
        raise ValueError("this model has no per-width normalisation: every width already works (resize); "
                         "calibrate() adds widths to a model fine-tuned with switchable=True")
    device = torch.device(device or "cpu")
    targets: list[dict[int, int]] = []
    for w in widths:
        sizes = im.check_sizes(w if isinstance(w, dict) else im.sizes_at(w, multiple_of=multiple_of))
        if sizes_key(sizes) not in im.norms and all(sizes != t for t in targets):
            targets.append(sizes)
    if not targets:
        return []
    x = take_images(data, images).to(device)
    trained = [(width_ratio(im, s), s) for s in im.calibrated_sizes()]
    im.nodes.to(device)
    forward = DeviceForward(im, device)
    try:
        measured: dict[SizesKey, Affine] = {}
        affine: dict[tuple[SizesKey, str], tuple[torch.Tensor, torch.Tensor]] = {}
        for sizes in targets:
            near = neighbours(trained, width_ratio(im, sizes))
            for _, s in near:
                if sizes_key(s) not in measured:
                    measured[sizes_key(s)] = _trained_affine(forward, im, s, x, batch, device)
            for name in norm_layers(im):
                affine[(sizes_key(sizes), name)] = derived_affine(
                    im, name, sizes, [(w, s, measured[sizes_key(s)][name]) for w, s in near])
        norm = SwitchableNorm(forward, targets)
        norm.attach_affine(affine)
        try:
            norm.calibrate(x, batch=batch)
        finally:
            norm.detach()
        folded = norm.fold()
        if distill_steps > 0:
            widest = max(trained, key=lambda t: t[0])[1]
            teacher = _logits(forward, widest, _trained_norms(im, widest, device), x, batch)
            for i, sizes in enumerate(targets):
                key = sizes_key(sizes)
                folded[key] = _distill(forward, sizes, folded[key], x, teacher, steps=distill_steps, lr=distill_lr,
                                       batch=distill_batch, eval_batch=batch, seed=seed + i,
                                       desc=f"tuning the norms of width {i + 1}/{len(targets)}")
        for key, layers in folded.items():
            im.norms[key] = {n: (a.cpu(), c.cpu()) for n, (a, c) in layers.items()}
    finally:
        im.nodes.to("cpu")
    return targets


@torch.no_grad()
def _trained_affine(forward: DeviceForward, im: IntegralModel, sizes: dict[int, int], x: torch.Tensor, batch: int,
                    device: torch.device) -> Affine:
    """The BatchNorm affine a trained width ended with, per normalised layer, from its folded ``(a, c)``.

    The deployed layer outputs ``a·z + c``; a BatchNorm in eval mode outputs ``gamma·ẑ + beta``, so on
    data whose statistics are the calibrated ones its output has mean ``beta`` and variance
    ``gamma² - a²·eps``: measured here on ``x``, sign of ``gamma`` that of ``a``.
    """
    folded = _trained_norms(im, sizes, device)
    sums: dict[str, list[torch.Tensor]] = {}

    def observe(name: str, out: torch.Tensor) -> None:
        o = out.double()
        s = sums.setdefault(name, [torch.zeros(o.shape[1], dtype=torch.float64, device=o.device) for _ in range(2)]
                            + [0])
        s[0] += o.sum((0, 2, 3))
        s[1] += (o * o).sum((0, 2, 3))
        s[2] += o.numel() // o.shape[1]

    with _applied(forward.graph(sizes), folded, observe):
        for i in range(0, len(x), batch):
            forward(x[i:i + batch], sizes)
    out: Affine = {}
    for name, (s1, s2, n) in sums.items():
        mean = s1 / n
        var = (s2 / n - mean * mean).clamp_min(0.0)
        a = folded[name][0].double()
        out[name] = (torch.sign(a) * torch.sqrt(var + a * a * EPS), mean)
    return out


def _trained_norms(im: IntegralModel, sizes: dict[int, int], device: torch.device) -> dict[str, Norm]:
    """The folded norms ``im`` holds for the trained width ``sizes``, on ``device``."""
    return {n: (a.to(device), c.to(device)) for n, (a, c) in im.norms[sizes_key(sizes)].items()}


@contextlib.contextmanager
def _applied(gm: torch.fx.GraphModule, norms: dict[str, Norm],
             observe: Callable[[str, torch.Tensor], None] | None = None) -> Iterator[None]:
    """While the block runs, each normalised layer of ``gm`` outputs ``a·z + c`` with its ``norms`` (the
    deployed network), and ``observe(name, output)`` sees each such output."""

    def hook(name: str, a: torch.Tensor, c: torch.Tensor):
        def apply(_module, _inputs, z):
            out = z * a.reshape(1, -1, 1, 1) + c.reshape(1, -1, 1, 1)
            if observe is not None:
                observe(name, out)
            return out
        return apply

    hooks = [gm.get_submodule(name).register_forward_hook(hook(name, a, c)) for name, (a, c) in norms.items()]
    try:
        yield
    finally:
        for h in hooks:
            h.remove()


def _normed(forward: DeviceForward, sizes: dict[int, int], norms: dict[str, Norm], x: torch.Tensor) -> torch.Tensor:
    """The bare layers of ``sizes`` (nodes frozen: the built graph's weights) with ``norms`` applied to each
    normalised layer's output: the deployed network, differentiable in ``norms``."""
    gm = forward.graph(sizes)
    with _applied(gm, norms):
        return gm(x)


@torch.no_grad()
def _logits(forward: DeviceForward, sizes: dict[int, int], norms: dict[str, Norm], x: torch.Tensor,
            batch: int) -> torch.Tensor:
    """:func:`_normed` over all of ``x``, ``batch`` images at a time."""
    return torch.cat([_normed(forward, sizes, norms, x[i:i + batch]) for i in range(0, len(x), batch)])


def _distill(forward: DeviceForward, sizes: dict[int, int], norms: dict[str, Norm], x: torch.Tensor,
             teacher: torch.Tensor, *, steps: int, lr: float, batch: int, eval_batch: int, seed: int,
             desc: str) -> dict[str, Norm]:
    """``norms`` of ``sizes`` tuned to make its logits on ``x`` match ``teacher``'s (Adam, nodes frozen); the
    tuned ones if the loss over all of ``x`` fell, else ``norms`` as given."""

    def loss_on_all(layers: dict[str, Norm]) -> float:
        return float(distillation_loss(_logits(forward, sizes, layers, x, eval_batch), teacher))

    tuned = {n: (torch.nn.Parameter(a.clone()), torch.nn.Parameter(c.clone())) for n, (a, c) in norms.items()}
    opt = torch.optim.Adam([t for pair in tuned.values() for t in pair], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in progress(range(steps), desc=desc):
        idx = torch.randint(0, len(x), (min(batch, len(x)),), generator=gen).to(x.device)
        loss = distillation_loss(_normed(forward, sizes, tuned, x[idx]), teacher[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    out = {n: (a.detach(), c.detach()) for n, (a, c) in tuned.items()}
    return out if loss_on_all(out) < loss_on_all(norms) else norms
