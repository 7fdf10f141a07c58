"""A differentiable forward pass of an :class:`IntegralModel` at any width: what training loops,
per-width normalisation and partition tuning run (gradients reach the nodes and partitions)."""

from __future__ import annotations

import itertools
from collections import OrderedDict

import torch
from torch import fx
from torch.func import functional_call

from inn_mobile.core.integral import IntegralModel, SizesKey, sizes_key

# IntegralModel tensor names -> the parameter names of the built (Conv2d/Linear) module
_PARAM_NAMES = {"weight": "weight", "bias": "bias", "scale": "weight", "shift": "bias"}
# bytes of weights in the graphs of released widths kept for a redraw (WidthForward.release)
KEEP_RELEASED = 64 << 20


class WidthForward:
    """Differentiable forward pass of an :class:`IntegralModel` at any per-group sizes.

    ``discretize`` gives the weights as functions of the nodes (and of any trainable partition put
    in ``im.partitions``); the plain network built by ``im.build`` supplies the graph, and
    ``torch.func.functional_call`` runs it with those weights, so gradients reach the nodes. Built
    graphs are cached per sizes (building deep-copies the template).
    """

    def __init__(self, im: IntegralModel, *, keep_released: int = KEEP_RELEASED) -> None:
        self.im = im
        self._graphs: dict[SizesKey, fx.GraphModule] = {}
        # released widths' graphs, least recently released first, with their bytes of weights
        self._released: OrderedDict[SizesKey, tuple[fx.GraphModule, int]] = OrderedDict()
        self._released_bytes, self._keep_released = 0, keep_released

    def graph(self, sizes: dict[int, int]) -> fx.GraphModule:
        key = sizes_key(self.im.check_sizes(sizes))
        gm = self._graphs.get(key)
        if gm is None:
            kept = self._released.pop(key, None)
            if kept is not None:
                self._released_bytes -= kept[1]
            gm = self._graphs[key] = kept[0] if kept is not None else self._build(key)
        return gm

    def _build(self, key: SizesKey) -> fx.GraphModule:
        with torch.no_grad():
            gm = self.im.build(self.im.discretize(self.im.samplers(dict(key))), dict(key))
        for p in gm.parameters():
            p.requires_grad_(False)
        return gm

    def release(self, sizes: dict[int, int]) -> None:
        """Done with ``sizes`` for now (a random width while training). Its graph is kept for a redraw while
        the released graphs hold at most ``keep_released`` bytes of weights, the least recently released
        dropped first: widths are whole channel counts, so a run's random widths come back (a deep copy of
        the template and a discretisation saved each time)."""
        key = sizes_key(self.im.check_sizes(sizes))
        gm = self._graphs.pop(key, None)
        if gm is None:
            return
        size = sum(t.numel() * t.element_size() for t in itertools.chain(gm.parameters(), gm.buffers()))
        self._released[key] = (gm, size)
        self._released_bytes += size
        while self._released_bytes > self._keep_released:
            _, (_, dropped) = self._released.popitem(last=False)
            self._released_bytes -= dropped

    def __call__(self, x: torch.Tensor, sizes: dict[int, int] | None = None) -> torch.Tensor:
        sizes = self.im.check_sizes(sizes or {})
        gm = self.graph(sizes)
        weights = self.im.weights_at(sizes, signed_zeros=False)  # training: values only
        params = {}
        bare = {s.name for s in self.im.layers if s.module == "param"}
        for layer, tensors in weights.items():
            for what, t in tensors.items():
                name = layer if layer in bare else f"{layer}.{_PARAM_NAMES[what]}"
                params[name] = t.reshape(gm.get_parameter(name).shape)
        return functional_call(gm, params, (x,))
