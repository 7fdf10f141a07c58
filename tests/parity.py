"""One check shared by the tests: the C core, reading an encoded bundle, writes exactly the weights
torch's discretisation gives at every bucket."""

from __future__ import annotations

import numpy as np

from inn_mobile import native
from inn_mobile.core.integral import IntegralModel
from inn_mobile.format import bundle


def assert_core_weights_equal_torch(im: IntegralModel, buckets: list[bundle.Bucket]) -> bytes:
    """Encode ``im`` with ``buckets``, materialise every (bucket, layer) through the C core and compare
    weights and biases bit for bit with ``im.weights_at``; returns the encoded bundle."""
    raw = bundle.encode(bundle.Bundle(im, buckets))
    nb = native.NativeBundle(raw)
    for k, bk in enumerate(buckets):
        python = im.weights_at(bk.sizes)
        for layer, spec in enumerate(im.layers):
            w, _, bias = nb.materialize(k, layer)
            assert np.array_equal(w, python[spec.name]["weight"].detach().numpy().ravel()), (bk.name, spec.name)
            if bias is not None:
                assert np.array_equal(bias, python[spec.name]["bias"].detach().numpy())
    return raw
