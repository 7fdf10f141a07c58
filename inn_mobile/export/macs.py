"""Multiply-accumulates per input at each width, counted from the graph (the bundle's MACS table, 1.4).

Every weight element of a layer is used once per output position (a convolution's output pixel, a
linear layer's row, a norm's element): ``MACs = Σ positions(layer) × weight elements(layer, width)``.
The positions come from one forward pass of the torch graph on the example input (they do not depend
on the width); the weight elements at a width are the layer shapes both readers compute
(:func:`inn_mobile.format.bundle.layer_shape`). So a cascade's average is an exact count, not an
estimate. Biases, activations, pooling and parameters used outside a module (``module == "param"``)
are not counted.
"""

from __future__ import annotations

import torch

from inn_mobile.core.integral import IntegralModel
from inn_mobile.format import bundle


def positions(model: IntegralModel, example_input: torch.Tensor) -> dict[str, int]:
    """``{layer name: output positions per input}`` from one forward pass at full width: a layer's output
    elements divided by its batch and its channels (``H·W`` for a convolution, 1 for a linear layer)."""
    full = model.full_sizes()
    net = model.resize(sizes=full)
    out: dict[str, int] = {}
    hooks = []
    for spec in model.layers:
        if spec.module == "param":
            continue
        channels = spec.out_channels(full)

        def hook(_mod, _inp, y, name=spec.name, channels=channels) -> None:
            per_input = y.numel() // y.shape[0]
            if per_input % channels:
                raise ValueError(f"layer {name!r}: output {tuple(y.shape)} is not a multiple of its {channels} "
                                 "channels per input")
            out[name] = per_input // channels

        hooks.append(net.get_submodule(spec.name).register_forward_hook(hook))
    try:
        with torch.no_grad():
            net(example_input[:1])
    finally:
        for h in hooks:
            h.remove()
    missing = [s.name for s in model.layers if s.module != "param" and s.name not in out]
    if missing:
        raise ValueError(f"layers {missing} did not run on the example input: their MACs cannot be counted")
    return out


def bucket_macs(model: IntegralModel, sizes: dict[int, int], where: dict[str, int]) -> int:
    """MACs of one input at complete per-group ``sizes``, given :func:`positions`."""
    sizes = model.check_sizes(sizes)
    return sum(where[spec.name] * bundle.layer_shape(model, sizes, spec)[1]
               for spec in model.layers if spec.module != "param")


def count(b: bundle.Bundle, example_input: torch.Tensor) -> list[int]:
    """Every bucket's MACs, written into ``Bucket.macs`` (what :func:`bundle.encode` stores in MACS)."""
    where = positions(b.model, example_input)
    for bk in b.buckets:
        bk.macs = bucket_macs(b.model, bk.sizes, where)
    return [bk.macs for bk in b.buckets]
