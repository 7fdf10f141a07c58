"""Input-adaptive width: a confidence cascade across a bundle's buckets (its CSCD table, format 1.4).

A narrow bucket runs first; an input whose confidence reaches the step's threshold keeps that answer,
the others go on to the next (wider) bucket, and the last step answers every input that reaches it.
Easy inputs cost a narrow network's MACs, hard ones a wide network's. Every step's model is
materialised once, at :func:`open_cascade`: memory is the sum of the steps (what
``policy.candidates(..., cascades=True)`` charges), switching steps costs nothing.

The confidence is computed from the step's outputs as softmax probabilities (:func:`confidence`), so a
threshold means the same on every runtime; the packer calibrates thresholds with the same function
(:mod:`inn_mobile.export.cascade`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from inn_mobile import runtime
from inn_mobile.format.tables import Cascade
from inn_mobile.runtime.reader import BundleReader, LoadedModel, Startup


def confidence(logits: torch.Tensor | np.ndarray, score: str = "max_prob") -> np.ndarray:
    """Per-input confidence in [0, 1] from ``[N, classes]`` outputs: ``max_prob`` the top softmax
    probability, ``margin`` the top probability minus the second (float64 softmax: the same value for
    the same logits on every host)."""
    z = np.asarray(logits.detach().cpu() if isinstance(logits, torch.Tensor) else logits, dtype=np.float64)
    z = z.reshape(len(z), -1)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    if score == "max_prob":
        return p.max(axis=1)
    if score == "margin":
        top2 = np.sort(p, axis=1)[:, -2:] if p.shape[1] > 1 else np.concatenate([np.zeros_like(p), p], axis=1)
        return top2[:, 1] - top2[:, 0]
    raise ValueError(f"score must be 'max_prob' or 'margin', not {score!r}")


@dataclass(frozen=True)
class CascadeOutput:
    """Outputs of a batch and, per input, the index of the step that answered it."""

    outputs: torch.Tensor
    steps: np.ndarray  # int, [N]


class CascadeModel:
    """A cascade ready to run: one loaded model per step (:func:`open_cascade`)."""

    def __init__(self, cascade: Cascade, models: list[LoadedModel], bucket_names: list[str],
                 macs: list[int | None]) -> None:
        self.cascade = cascade
        self.models = models
        self.bucket_names = bucket_names  # per step
        self.macs = macs  # per step, from the bundle's MACS (None without it)
        self.name = f"cascade {cascade.name!r} ({' > '.join(bucket_names)})"
        self.startup = Startup(*(sum(getattr(m.startup, f) for m in models) for f in ("open_ms", "fill_ms", "load_ms")))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.models[0].input_shape

    def run(self, x: torch.Tensor | np.ndarray) -> CascadeOutput:
        """Every input leaves at the first step whose confidence reaches its threshold; only the undecided
        inputs run the next step."""
        x = torch.as_tensor(np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float32))
        if not len(x):
            raise ValueError(f"{self.name}: no inputs")
        steps = np.full(len(x), -1, dtype=np.int64)
        out: torch.Tensor | None = None
        left = np.arange(len(x))
        for j, (model, threshold) in enumerate(zip(self.models, self.cascade.thresholds)):
            y = model(x[torch.from_numpy(left)])
            if out is None:
                out = torch.zeros((len(x), *y.shape[1:]), dtype=y.dtype)
            last = j == len(self.models) - 1
            accept = np.ones(len(left), bool) if last else confidence(y, self.cascade.score) >= threshold
            take = torch.from_numpy(np.flatnonzero(accept))
            out[torch.from_numpy(left[accept])] = y[take]
            steps[left[accept]] = j
            left = left[~accept]
            if not len(left):
                break
        assert out is not None  # the first step ran on every input
        return CascadeOutput(out, steps)

    def __call__(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """The outputs alone (a :class:`LoadedModel`'s call); :meth:`run` also says which step answered."""
        return self.run(x).outputs

    def mean_macs(self, steps: np.ndarray) -> float:
        """Average MACs of inputs that left at ``steps`` (each ran every step up to its own)."""
        if any(m is None for m in self.macs):
            raise ValueError(f"{self.name}: the bundle has no MACS table")
        cum = np.cumsum(np.asarray(self.macs, dtype=np.float64))
        return float(cum[steps].mean())


def open_cascade(source: str | os.PathLike | bytes | BundleReader, runtime_name: str, cascade: int | str = 0, *,
                 threads: int = 1) -> CascadeModel:
    """Materialise every step of a bundle's cascade (index or name) in ``runtime_name`` (``litert``,
    ``executorch``, ...); :class:`~inn_mobile.errors.NotInBundleError` when the bundle has no such cascade."""
    reader = BundleReader.of(source)
    c = reader.cascade(cascade)
    models = [runtime.open_model(reader, runtime_name, k, threads=threads) for k in c.buckets]
    return CascadeModel(c, models, [reader.names[k] for k in c.buckets], [reader.macs[k] for k in c.buckets])
