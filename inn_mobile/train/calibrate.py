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

The result is folded like a trained width's (``SwitchableNorm.fold``) and added to ``im.norms``, so
``bundle.make_buckets(im, ratios=...)`` ships it and the C core applies it like any other NORM record.
The derivation of the affine is :func:`inn_mobile.train.switchable.derived_affine`, the one a switchable
run also uses for its random in-between widths (``FinetuneConfig.between``): the nodes are trained at
widths normalised the way this module will normalise them (docs/benchmarks.md, "Any width after
fine-tuning").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from inn_mobile.core.integral import IntegralModel, SizesKey, sizes_key
from inn_mobile.train.data import take_images
from inn_mobile.train.finetune import DeviceForward
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
) -> list[dict[int, int]]:
    """Give ``im`` per-width norms at every width of ``widths`` that has none; returns those sizes.

    ``data``: unlabelled images (a tensor, or an iterable of batches, labels ignored); the first
    ``images`` are used. ``widths``: global ratios (sized with ``multiple_of``, which must match the
    ``multiple_of`` given to ``bundle.make_buckets`` later) or complete per-group sizes. Widths that
    already have norms (trained ones) are left as they are. The model must have per-width norms
    (``finetune.fit`` with ``switchable=True``): without them every width already works as it is.
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
    x = take_images(data, images)
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
            norm.calibrate(x.to(device), batch=batch)
        finally:
            norm.detach()
        for key, layers in norm.fold().items():
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
    folded = im.norms[sizes_key(sizes)]
    gm = forward.graph(sizes)
    sums: dict[str, list[torch.Tensor]] = {}

    def hook(name: str):
        a, c = (t.to(device) for t in folded[name])

        def apply(_module, _inputs, z):
            out = z * a.reshape(1, -1, 1, 1) + c.reshape(1, -1, 1, 1)
            o = out.double()
            s = sums.setdefault(name, [torch.zeros_like(a, dtype=torch.float64) for _ in range(2)] + [0])
            s[0] += o.sum((0, 2, 3))
            s[1] += (o * o).sum((0, 2, 3))
            s[2] += o.numel() // o.shape[1]
            return out
        return apply

    hooks = [gm.get_submodule(n).register_forward_hook(hook(n)) for n in folded]
    try:
        for i in range(0, len(x), batch):
            forward(x[i:i + batch].to(device), sizes)
    finally:
        for h in hooks:
            h.remove()
    out: Affine = {}
    for name, (s1, s2, n) in sums.items():
        mean = s1 / n
        var = (s2 / n - mean * mean).clamp_min(0.0)
        a = folded[name][0].to(device).double()
        out[name] = (torch.sign(a) * torch.sqrt(var + a * a * EPS), mean)
    return out
