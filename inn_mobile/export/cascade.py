"""Calibrating a confidence cascade at pack time (the bundle's CSCD table; the runtime is
:mod:`inn_mobile.runtime.cascade`).

Given every bucket's outputs on a labelled validation set (from the real runtime) and each bucket's
MACs, :func:`calibrate` searches the cascades (buckets in increasing MACs, a threshold per step but the
last) for the one that meets a user target: ``acc:X`` (at most X accuracy points below the widest
bucket, with the fewest average MACs) or ``macs:M`` / ``macs:P%`` (at most M MACs per input on
average, or P% of the widest bucket's, with the best accuracy). Thresholds are taken from the
quantiles of each step's confidence on the data, so the search is exact on that data; they hold on
other data as far as it resembles the validation set (calibrate on held-out data, never on the test set).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from inn_mobile.format.tables import Cascade
from inn_mobile.runtime.cascade import confidence


@dataclass(frozen=True)
class Target:
    """What a cascade is calibrated to: ``accuracy_drop`` (points below the widest bucket) or ``mean_macs``
    (per input; ``relative``: a fraction of the widest bucket's MACs)."""

    kind: str
    value: float
    relative: bool = False

    @classmethod
    def parse(cls, text: str) -> Target:
        """``acc:0.3`` (points), ``macs:2.5e6`` (MACs per input) or ``macs:50%`` (of the widest bucket)."""
        kind, _, value = text.partition(":")
        try:
            relative = kind == "macs" and value.endswith("%")
            number = float(value[:-1]) / 100 if relative else float(value)
        except ValueError:
            number = float("nan")
        if kind not in ("acc", "macs") or not np.isfinite(number) or number < 0:
            raise ValueError(f"cascade target {text!r}: use acc:<points> (e.g. acc:0.3), macs:<MACs per input> "
                             "or macs:<percent of the widest>% (e.g. macs:50%)")
        return cls("accuracy_drop" if kind == "acc" else "mean_macs", number, relative)

    def label(self) -> str:
        if self.kind == "accuracy_drop":
            return f"acc{self.value:g}"
        return f"macs{self.value * 100:g}pct" if self.relative else f"macs{self.value:.4g}"


@dataclass(frozen=True)
class Result:
    """What a cascade gives on labelled data: accuracy (%), average MACs per input, and per input the step
    that answered it."""

    accuracy: float
    mean_macs: float
    steps: np.ndarray


def evaluate(cascade: Cascade, outputs: list[np.ndarray | torch.Tensor], labels: np.ndarray | torch.Tensor,
             macs: list[int]) -> Result:
    """``cascade`` simulated on every bucket's outputs (``outputs[k]``: bucket k's ``[N, classes]``), as
    :class:`~inn_mobile.runtime.cascade.CascadeModel` runs it."""
    y = np.asarray(labels)
    left = np.ones(len(y), bool)
    steps = np.full(len(y), -1, np.int64)
    correct = 0
    for j, (k, t) in enumerate(zip(cascade.buckets, cascade.thresholds)):
        out = np.asarray(outputs[k])
        accept = left if j == len(cascade.buckets) - 1 else left & (confidence(out, cascade.score) >= t)
        correct += int((out[accept].argmax(axis=1) == y[accept]).sum())
        steps[accept] = j
        left &= ~accept
    cum = np.cumsum([float(macs[k]) for k in cascade.buckets])
    return Result(100.0 * correct / len(y), float(cum[steps].mean()), steps)


def calibrate(outputs: list[np.ndarray | torch.Tensor], labels: np.ndarray | torch.Tensor, macs: list[int],
              target: Target | str, *, name: str | None = None, score: str = "max_prob", max_steps: int = 4,
              grid: int = 64, combos: int = 2048) -> Cascade:
    """The cascade over buckets ``0..len(outputs)-1`` that meets ``target`` on this data (module doc):
    every chain of up to ``max_steps`` buckets in increasing MACs, each step's threshold among ``grid``
    quantiles of its confidence (fewer for longer chains: at most about ``combos`` threshold combinations
    per chain, so the search stays in seconds). Ties go to
    fewer MACs, then to higher accuracy. ``ValueError`` when no cascade meets the target."""
    target = Target.parse(target) if isinstance(target, str) else target
    y = np.asarray(labels)
    n = len(y)
    if n == 0 or len(outputs) != len(macs) or any(len(o) != n for o in outputs):
        raise ValueError(f"calibration needs one [N, classes] output per bucket ({len(macs)}) on N > 0 labelled inputs")
    correct = [np.asarray(o).argmax(axis=1) == y for o in outputs]
    conf = [confidence(o, score) for o in outputs]
    order = sorted(range(len(macs)), key=lambda k: (macs[k], k))
    widest = order[-1]
    reference = 100.0 * correct[widest].mean()
    limit = target.value * (macs[widest] if target.relative else 1.0)
    best: tuple[tuple[float, float], Cascade, float, float] | None = None  # (key, cascade, accuracy, MACs)
    for m in range(1, min(max_steps, len(order)) + 1):
        per_step = min(grid, max(2, int(combos ** (1 / max(1, m - 1)))))
        for chain in itertools.combinations(order, m):
            cands = [_thresholds(conf[k], per_step) for k in chain[:-1]]
            for ts in itertools.product(*cands):
                acc, mean = _score(chain, ts, conf, correct, macs, n)
                ok = acc >= reference - target.value - 1e-9 if target.kind == "accuracy_drop" else mean <= limit
                key = (mean, -acc) if target.kind == "accuracy_drop" else (-acc, mean)
                if ok and (best is None or key < best[0]):
                    best = (key, Cascade("", chain, (*ts, 0.0)), acc, mean)
    if best is None:
        raise ValueError(f"no cascade meets {target.kind} {target.value:g}: the widest bucket gives {reference:.2f}% "
                         f"at {macs[widest]} MACs, the narrowest costs {macs[order[0]]}")
    _, c, acc, mean = best
    stored = float(target.value * macs[widest]) if target.relative else float(target.value)
    return Cascade(name or target.label(), c.buckets, c.thresholds, score, target.kind, stored, round(acc, 4),
                   round(mean, 1))


def _thresholds(conf: np.ndarray, count: int) -> list[float]:
    """Candidate thresholds of one step: ``count`` quantiles of its confidence (float32, as CSCD stores them),
    from accepting nearly everything to accepting almost nothing."""
    qs = np.quantile(conf, np.linspace(0.02, 0.98, count))
    return sorted({float(np.float32(min(1.0, q))) for q in qs})


def _score(chain: tuple[int, ...], ts: tuple[float, ...], conf: list[np.ndarray], correct: list[np.ndarray],
           macs: list[int], n: int) -> tuple[float, float]:
    """Accuracy (%) and mean MACs of one cascade on the calibration data."""
    left = np.ones(n, bool)
    right = 0
    spent = 0.0
    cum = 0.0
    for j, k in enumerate(chain):
        cum += macs[k]
        accept = left if j == len(chain) - 1 else left & (conf[k] >= ts[j])
        count = int(accept.sum())
        right += int(correct[k][accept].sum())
        spent += cum * count
        left &= ~accept
    return 100.0 * right / n, spent / n
