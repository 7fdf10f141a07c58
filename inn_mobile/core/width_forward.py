"""A differentiable forward pass of an :class:`IntegralModel` at any width: what training loops,
per-width normalisation and partition tuning run (gradients reach the nodes and partitions)."""

from __future__ import annotations

import torch
from torch import fx
from torch.func import functional_call

from inn_mobile.core.integral import IntegralModel, sizes_key

# IntegralModel tensor names -> the parameter names of the built (Conv2d/Linear) module
_PARAM_NAMES = {"weight": "weight", "bias": "bias", "scale": "weight", "shift": "bias"}

class WidthForward:
    """Differentiable forward pass of an :class:`IntegralModel` at any per-group sizes.

    ``discretize`` gives the weights as functions of the nodes (and of any trainable partition put
    in ``im.partitions``); the plain network built by ``im.build`` supplies the graph, and
    ``torch.func.functional_call`` runs it with those weights, so gradients reach the nodes. Built
    graphs are cached per sizes (building deep-copies the template).
    """

    def __init__(self, im: IntegralModel) -> None:
        self.im = im
        self._graphs: dict[tuple[tuple[int, int], ...], fx.GraphModule] = {}

    def graph(self, sizes: dict[int, int]) -> fx.GraphModule:
        key = sizes_key(self.im.check_sizes(sizes))
        gm = self._graphs.get(key)
        if gm is None:
            with torch.no_grad():
                gm = self.im.build(self.im.discretize(self.im.samplers(dict(key))), dict(key))
            for p in gm.parameters():
                p.requires_grad_(False)
            self._graphs[key] = gm
        return gm

    def release(self, sizes: dict[int, int]) -> None:
        """Drop the graph built for ``sizes`` (a width used once, e.g. a random one while training)."""
        self._graphs.pop(sizes_key(self.im.check_sizes(sizes)), None)

    def __call__(self, x: torch.Tensor, sizes: dict[int, int] | None = None) -> torch.Tensor:
        sizes = self.im.check_sizes(sizes or {})
        gm = self.graph(sizes)
        weights = self.im.weights_at(sizes)
        params = {}
        bare = {s.name for s in self.im.layers if s.module == "param"}
        for layer, tensors in weights.items():
            for what, t in tensors.items():
                name = layer if layer in bare else f"{layer}.{_PARAM_NAMES[what]}"
                params[name] = t.reshape(gm.get_parameter(name).shape)
        return functional_call(gm, params, (x,))
