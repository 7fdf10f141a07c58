"""Choosing a width at app start: the most accurate bucket that fits the device's budgets.

Inputs are measured, not guessed: each bucket's accuracy and weight bytes are recorded in the bundle
at pack time, in its binary COST table (:meth:`Bundle.cost`; what a device reads with ``inn_cost_find``,
no JSON), and a device profile (``inn-mobile profile``)
records each bucket's latency and peak memory on the device itself. Without a profile the choice
falls back to memory alone (weights + the runtime's activation arena measured at pack time).
A bundle's confidence cascades (CSCD) can be candidates too (``candidates(..., cascades=True)``): every
step is materialised at once, so a cascade needs the sum of its steps' memory, and its latency budget
is checked against the sum of its steps' latencies (an input that reaches the last step runs them all);
its accuracy is the one calibrated at pack time.
The Android demo implements the same rule (``android_demo``), so keep the two in step.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from inn_mobile import atomic
from inn_mobile.errors import BudgetError
from inn_mobile.format.bundle import Bundle
from inn_mobile.format.tables import Cost

PROFILE_VERSION = 1


@dataclass(frozen=True)
class Candidate:
    """What one bucket costs and gives on one runtime."""

    name: str
    accuracy: float | None  # %, measured at pack time on the user's validation data
    memory_bytes: int  # peak memory from the device profile, else weights + arena from the bundle
    latency_ms: float | None = None  # from the device profile
    cascade: str | None = None  # a cascade's name (then ``name`` is ``cascade:<name>``), None for one bucket
    macs: float | None = None  # MACs per input (a cascade: on average), from the bundle's MACS / CSCD


@dataclass(frozen=True)
class Choice:
    bucket: str  # the bucket's name (``Bundle.bucket_index`` finds it in the bundle); ``cascade:<name>`` for a cascade
    index: int  # position in the candidate list
    reason: str
    cascade: str | None = None  # the chosen cascade's name (``open_cascade`` opens it), None for one bucket


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


def choose(candidates: list[Candidate], memory_budget: int, latency_budget_ms: float | None = None, *,
           accuracy_tolerance: float = 0.0) -> Choice:
    """The most accurate candidate within both budgets; ties go to the smaller one. Candidates are
    ordered narrow to wide; when accuracy was not measured the widest that fits wins.
    ``accuracy_tolerance``: accuracy points worth giving up for compute: among the candidates that fit
    and lie within it of the most accurate one, the one with the fewest MACs per input wins (how a
    cascade calibrated to ``acc:X`` is chosen over the widest bucket when X is within it)."""
    if not candidates:
        raise BudgetError("the bundle has no buckets for this runtime")
    use_latency = latency_budget_ms is not None and all(c.latency_ms is not None for c in candidates)
    fits = [i for i, c in enumerate(candidates) if c.memory_bytes <= memory_budget
            and (not use_latency or c.latency_ms <= latency_budget_ms)]
    if not fits:
        small = min(candidates, key=lambda c: c.memory_bytes)
        need = f"{_mib(small.memory_bytes)}" + (f" and {small.latency_ms:.2f} ms" if use_latency else "")
        raise BudgetError(f"no bucket fits: budget {_mib(memory_budget)}"
                          + (f" / {latency_budget_ms:.2f} ms" if use_latency else "")
                          + f"; the smallest bucket {small.name!r} needs {need}")
    measured = all(candidates[i].accuracy is not None for i in fits)
    if measured:
        best = max(fits, key=lambda i: (candidates[i].accuracy, -candidates[i].memory_bytes))
        top = candidates[best].accuracy
        near = [i for i in fits
                if candidates[i].accuracy >= top - accuracy_tolerance and candidates[i].macs is not None]
        if accuracy_tolerance > 0 and near:
            best = min(near, key=lambda i: (candidates[i].macs, -candidates[i].accuracy, candidates[i].memory_bytes))
    else:
        best = max(fits)
    c = candidates[best]
    why = [f"{_mib(c.memory_bytes)} <= {_mib(memory_budget)}"]
    if use_latency:
        why.append(f"{c.latency_ms:.2f} ms <= {latency_budget_ms:.2f} ms")
    elif latency_budget_ms is not None:
        why.append("latency budget ignored: no device profile")
    acc = f"{c.accuracy:.2f}% accurate" if c.accuracy is not None else "accuracy not measured: widest that fits"
    excluded = [candidates[i].name for i in range(len(candidates)) if i not in fits]
    tail = f"; over budget: {', '.join(excluded)}" if excluded else ""
    return Choice(c.name, best, f"{c.name}: {acc}, {', '.join(why)}{tail}", c.cascade)


def candidates(b: Bundle, runtime: str, profile: dict | None = None, *, cascades: bool = False) -> list[Candidate]:
    """Candidates for ``runtime`` from the bundle's pack-time measurements (its COST rows: for a bundle read
    from a file what the decoder read there, for one in memory what :func:`~inn_mobile.format.bundle.encode`
    will write) and, where given, a device profile (whose measured peak memory and latency take precedence).
    ``cascades``: also one candidate per cascade whose steps all have graphs (module doc), after the buckets."""
    rows = (profile or {}).get("buckets", {})
    if profile is not None and profile.get("runtime") != runtime:
        raise ValueError(f"the profile was measured for {profile.get('runtime')!r}, not {runtime!r}")
    out = []
    for k, bucket in enumerate(b.buckets):
        if (k, runtime) not in b.graphs:
            continue
        cost = b.cost(k, runtime) or Cost()
        row = rows.get(bucket.name)
        if row is not None:
            memory, latency = int(row["peak_bytes"]), float(row["latency_ms"])
        elif cost.weights_bytes is not None:
            memory, latency = cost.weights_bytes + (cost.arena_bytes or 0), None
        else:
            raise ValueError(f"bucket {bucket.name!r} has no memory measurement for {runtime!r} "
                             "(pack it with inn_mobile.export.pack, or pass a device profile)")
        out.append(Candidate(bucket.name, cost.accuracy, memory, latency, macs=bucket.macs))
    if not out:
        raise ValueError(f"the bundle has no {runtime!r} graphs; it has {b.runtimes() or 'none'}")
    return out + (_cascade_candidates(b, out) if cascades else [])


def _cascade_candidates(b: Bundle, buckets: list[Candidate]) -> list[Candidate]:
    by_name = {c.name: c for c in buckets}
    out = []
    for c in b.cascades:
        steps = [by_name.get(b.buckets[k].name) for k in c.buckets]
        if any(s is None for s in steps):
            continue
        latency = None if any(s.latency_ms is None for s in steps) else sum(s.latency_ms for s in steps)
        out.append(Candidate(f"cascade:{c.name}", c.accuracy, sum(s.memory_bytes for s in steps), latency, c.name,
                             c.mean_macs))
    return out


def save_profile(path: str | os.PathLike, runtime: str, device: str, rows: dict[str, dict]) -> None:
    """Write a device profile atomically: ``rows[bucket] = {"latency_ms": float, "peak_bytes": int, ...}``."""
    for name, row in rows.items():
        if not (math.isfinite(row["latency_ms"]) and row["peak_bytes"] > 0):
            raise ValueError(f"profile row {name!r} is not a measurement: {row}")
    doc = {"version": PROFILE_VERSION, "runtime": runtime, "device": device, "buckets": rows}
    atomic.write_bytes(path, json.dumps(doc, indent=2, sort_keys=True).encode())


def load_profile(path: str | os.PathLike) -> dict:
    """Read a device profile written by :func:`save_profile` (clear errors for anything else)."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read device profile {path}: {e}") from e
    if not isinstance(doc, dict) or doc.get("version") != PROFILE_VERSION or not isinstance(doc.get("buckets"), dict):
        raise ValueError(f"{path} is not an inn-mobile device profile (version {PROFILE_VERSION})")
    for name, row in doc["buckets"].items():
        if not {"latency_ms", "peak_bytes"} <= set(row):
            raise ValueError(f"{path}: bucket {name!r} lacks latency_ms/peak_bytes")
    return doc


def describe(cands: list[Candidate]) -> str:
    """A table of the candidates (for ``inn-mobile run --explain`` and the demo)."""
    lines = ["| bucket | accuracy % | memory | latency ms |", "|---|---|---|---|"]
    for c in cands:
        d = asdict(c)
        acc = "-" if d["accuracy"] is None else f"{d['accuracy']:.2f}"
        lat = "-" if d["latency_ms"] is None else f"{d['latency_ms']:.2f}"
        lines.append(f"| {c.name} | {acc} | {c.memory_bytes / 1024:.1f} KiB | {lat} |")
    return "\n".join(lines)
