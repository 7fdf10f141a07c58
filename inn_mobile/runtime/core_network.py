"""A bucket's network in torch with every weight and bias the C core writes from the bundle.

What a device runs, without a device runtime: the benchmarks measure a shipped bundle's accuracy this
way, and the tests check that the core's weights are torch's. The shapes (and everything that is not
a resized weight) come from :meth:`IntegralModel.resize` at the bucket's sizes.
"""

from __future__ import annotations

import torch

from inn_mobile.core.integral import IntegralModel
from inn_mobile.native import NativeBundle

__all__ = ["core_network"]


def core_network(im: IntegralModel, nb: NativeBundle, bucket: int, sizes: dict[int, int]) -> torch.nn.Module:
    """``im`` resized to ``sizes`` (bucket ``bucket``'s), its weights replaced by the core's (nodes as
    stored in ``nb``, NORM applied; float32, no quantisation)."""
    net = im.resize(sizes=sizes)
    with torch.no_grad():
        for layer, spec in enumerate(im.layers):
            w, _, bias = nb.materialize(bucket, layer)
            mod = net.get_submodule(spec.name)
            mod.weight.copy_(torch.from_numpy(w).reshape(mod.weight.shape))
            if bias is not None:
                mod.bias.copy_(torch.from_numpy(bias))
    return net
