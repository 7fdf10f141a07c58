"""Sentinel weights: lower a bucket once with values that say which layer they are, then fill in the real ones.

A hole must be found by *where* the runtime keeps a tensor, not by *what* the tensor holds: real
weights are full of coincidences (all-zero layers, ``-0.0``, two identical blocks, dead channels, the
all-zero folded biases of an untrained BatchNorm) that make a search by value ambiguous, and a
converter may store equal constants once. So the exporters lower the bucket's network with every
layer tensor replaced by pseudo-random float32 values (no zeros, no repeats between tensors: the
converter cannot merge, drop or fold them), locate each layer's bytes through the runtime file's
own tables, check that they are exactly the sentinel in one of the core's layouts (the converter
stored the tensor verbatim, so the real one lands at the same place) and then write the real
tensors there. The graph's structure does not depend on the weight values, so the result is the
file the converter would write for the real weights, minus any sharing between equal constants;
an exporter whose converter shares them (LiteRT) asks for equal tensors to get equal sentinels, and
gets the sharing back.

The generator is seeded from the real weights' bytes: lowering is reproducible, and two models (or
two widths) get different sentinels, hence different content-derived keys (XNNPACK names its
external constants by a hash of their bytes).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Hashable

import numpy as np
import torch

from inn_mobile.errors import LoweringError

Weights = dict[str, dict[str, torch.Tensor]]
MAX_MESSAGE = 300  # characters: lowering errors are one line (API and CLI alike)


def seed_of(weights: Weights) -> int:
    """A 32-bit seed from every tensor's bytes (names included), in a fixed order."""
    crc = 0
    for name in sorted(weights):
        crc = zlib.crc32(name.encode(), crc)
        for key in sorted(weights[name]):
            crc = zlib.crc32(weights[name][key].detach().float().contiguous().numpy().tobytes(), crc)
    return crc


def float_sentinels(weights: Weights, rng: np.random.Generator, *,
                    share: Callable[[str, str], Hashable] | None = None) -> Weights:
    """Same names and shapes, every element ``±[0.5, 1)`` at random (never zero, never ``-0.0``).

    With ``share`` (``(layer, tensor name) -> class``: tensors of one class are stored alike), a tensor equal
    in value (``-0.0 == 0.0``) to an earlier tensor of the same class and shape gets that tensor's sentinel
    instead of a new one: a converter that stores equal constants once (LiteRT does) then shares their buffer
    in the bucket's file as it would in a plain file of the real weights, and the filled file is as small.
    Whoever shares must then tell equal sentinels apart by what else differs.
    """
    out: Weights = {}
    first: dict[tuple, torch.Tensor] = {}  # (class, tensor name, shape, digest of the values) -> its sentinel
    for name, tensors in weights.items():
        out[name] = {}
        for key, t in tensors.items():
            equal = None
            if share is not None:
                values = (t.detach().float().contiguous() + 0.0).numpy()  # + 0.0 turns -0.0 into 0.0
                equal = (share(name, key), tuple(t.shape), hashlib.sha256(values.tobytes()).digest())
                if equal in first:
                    out[name][key] = first[equal]
                    continue
            mag = rng.uniform(0.5, 1.0, t.numel()).astype(np.float32)
            sign = np.where(rng.integers(0, 2, t.numel()) == 1, 1.0, -1.0).astype(np.float32)
            out[name][key] = torch.from_numpy((mag * sign).reshape(tuple(t.shape)))
            if equal is not None:
                first[equal] = out[name][key]
    return out


def one_line(message: str) -> str:
    """``message`` on one line of at most :data:`MAX_MESSAGE` characters (long lists are cut, marked ``…``)."""
    flat = " ".join(str(message).split())
    return flat if len(flat) <= MAX_MESSAGE else flat[:MAX_MESSAGE - 1] + "…"


def error(message: str) -> LoweringError:
    """A :class:`LoweringError` whose message is :func:`one_line`."""
    return LoweringError(one_line(message))
