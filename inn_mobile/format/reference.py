"""The Python twin of the native core: what it writes for a bucket, bit for bit.

Per layer: the discretised weights in a runtime layout, quantised to int8 after discretisation
(``materialize``); per runtime graph: every hole of its files written from the nodes (``fill``). The
C core must match this exactly (tests/test_native.py, and the shared vectors in tests/vectors/ that
the C test program checks too). The discretisation itself is ``IntegralModel.weights_at``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from inn_mobile.format import runtime_file, vocab

if TYPE_CHECKING:  # type hints only: the bundle codec imports this module for the int8 rule
    from inn_mobile.format.bundle import Bundle

LAYOUTS = tuple(vocab.LAYOUTS)


# Smallest max|w| a row is quantised with: ai-edge-quantizer's floor (``min_bound``), so an all-zero or
# tiny (dead) channel gets the very scale the LiteRT quantizer writes, 1e-9f / 127 (not 1, not 0).
MIN_BOUND = np.float32(1e-9)


def quantize_per_channel(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per output channel (dim 0): ``scale = max(max|w|, 1e-9) / 127``,
    ``q = clamp(round_half_even(w / scale), -127, 127)``; float32 throughout, like the C core.

    The floor is the runtimes' quantizer's (ai-edge-quantizer): for a dead channel the core, this
    reference and the converter's own int8 graph then hold the same scale (1e-9f/127) and zeros.
    """
    w = w.float()
    flat = w.reshape(w.shape[0], -1)
    amax = flat.abs().amax(1)
    scales = torch.clamp(amax, min=float(MIN_BOUND)) / 127.0
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


def hole_bytes(weights: dict[str, torch.Tensor], kind: str, hole: runtime_file.Hole, taps: int) -> bytes:
    """The Python reference for what the core writes into ``hole`` (``weights``: one layer's
    discretised tensors, as ``IntegralModel.discretize`` returns them)."""
    if kind == "affine":
        vec = weights["scale" if hole.tensor == "weight" else "shift"].float()
        return vec.numpy().astype("<f4").tobytes()
    w = weights["weight"].float()
    w3 = w.reshape(w.shape[0], -1, taps)
    q, scales = quantize_per_channel(w3)
    bias = weights["bias"].float() if "bias" in weights else torch.zeros(w.shape[0])
    if hole.tensor == "weight":
        arr = (q if hole.dtype == "i8" else w3).numpy()
        return np.ascontiguousarray(to_layout(arr, hole.layout)).tobytes()
    if hole.tensor == "bias":
        return bias.numpy().astype("<f4").tobytes()
    if hole.tensor == "scale":
        return scales.numpy().astype("<f4").tobytes()
    bias_scale = torch.tensor(hole.param, dtype=torch.float32) * scales
    if hole.tensor == "bias_scale":
        return bias_scale.numpy().astype("<f4").tobytes()
    qb = torch.round(bias / bias_scale).double()  # float32 division, half to even; then exact clamping
    qb = qb.nan_to_num(0.0, posinf=2**31 - 1, neginf=-(2**31)).clamp(-(2**31), 2**31 - 1)
    return qb.to(torch.int64).numpy().astype("<i4").tobytes()


def fill_image(stored: runtime_file.StoredImage, weights: dict[str, dict[str, torch.Tensor]], layers) -> bytes:
    """Rebuild one image in Python (the reference of the core's ``inn_graph_fill``, per image)."""
    out = bytearray(stored.size)
    for off, chunk in stored.spans:
        out[off:off + len(chunk)] = chunk
    for h in stored.holes:
        if not 0 <= h.layer < len(layers):
            raise runtime_file.RecordError(f"{stored.name}: hole names layer {h.layer}, the model has {len(layers)}")
        spec = layers[h.layer]
        data = hole_bytes(weights[spec.name], spec.kind, h, spec.taps)
        if len(data) != h.size:
            raise runtime_file.RecordError(f"{stored.name}: hole for {spec.name}.{h.tensor} is {h.size} bytes, "
                              f"the bucket's tensor is {len(data)}")
        out[h.offset:h.offset + h.size] = data
    return bytes(out)


def fill(bundle: Bundle, bucket: str | int, runtime: str) -> dict[str, bytes]:
    """Every file of ``bucket``'s ``runtime`` graph rebuilt in Python: ``{file name: complete bytes}``."""
    weights = bundle.weights(bucket)
    return {s.name: fill_image(s, weights, bundle.model.layers) for s in bundle.images(bucket, runtime)}
