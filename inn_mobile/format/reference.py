"""The Python reference for what the native core writes: runtime layouts and int8 after discretisation.

The C core must match this bit for bit (tests/test_native.py, and the shared vectors in
tests/vectors/ that the C test program checks too).
"""

from __future__ import annotations

import numpy as np
import torch

from .bundle import Bundle

LAYOUTS = ("oit", "oti", "ito")


def quantize_per_channel(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per output channel (dim 0): ``scale = max|w| / 127`` (1 for an all-zero row),
    ``q = clamp(round_half_even(w / scale), -127, 127)``; float32 throughout, like the C core."""
    w = w.float()
    flat = w.reshape(w.shape[0], -1)
    amax = flat.abs().amax(1)
    scales = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    q = torch.round(flat / scales[:, None]).clamp(-127, 127).to(torch.int8)
    return q.reshape(w.shape), scales


def to_layout(w: np.ndarray, layout: str) -> np.ndarray:
    """``w[O, I, T]`` in one of the core's layouts: ``oit`` as is, ``oti`` (OHWI), ``ito`` (1HWO / IO)."""
    if layout == "oit":
        return w
    if layout == "oti":
        return w.transpose(0, 2, 1)
    if layout == "ito":
        return w.transpose(1, 2, 0)
    raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")


def materialize(bundle: Bundle, bucket: int, *, layout: str = "oit", dtype: str = "f32"):
    """Per layer ``(weight flat, scales or None, bias/shift or None)`` as the C core produces them."""
    weights = bundle.weights(bucket)
    out = []
    for spec in bundle.model.layers:
        r = weights[spec.name]
        if spec.kind == "affine":
            out.append((r["scale"].numpy().ravel(), None, r["shift"].numpy()))
            continue
        w = r["weight"]
        w3 = w.reshape(w.shape[0], -1, spec.taps)
        scales = None
        if dtype == "i8":
            q, s = quantize_per_channel(w3)
            w3, scales = q, s.numpy()
        arr = np.ascontiguousarray(to_layout(w3.numpy(), layout)).ravel()
        bias = r["bias"].numpy() if "bias" in r else None
        out.append((arr, scales, bias))
    return out


def every_case(bundle: Bundle):
    """``(bucket, layout, dtype, layer, weight, scales, bias)`` for every combination the core serves
    (affine layers only as f32): what parity tests and test vectors walk through."""
    for k in range(len(bundle.buckets)):
        for layout in LAYOUTS:
            for dtype in ("f32", "i8"):
                for layer, (w, scales, bias) in enumerate(materialize(bundle, k, layout=layout, dtype=dtype)):
                    if bundle.model.layers[layer].kind != "affine" or dtype == "f32":
                        yield k, layout, dtype, layer, w, scales, bias
