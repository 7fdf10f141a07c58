"""What a device reads to choose a width, without torch: a bucket's measured costs (the binary
``COST`` rows), the confidence cascades (``CSCD``) and the informational ``META`` JSON, with the checks
both Python readers (the bundle decoder and the ctypes binding of the C core) apply to them."""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import asdict, dataclass

from inn_mobile.errors import BundleError
from inn_mobile.format import vocab

_U64 = 1 << 64


@dataclass(frozen=True)
class Cost:
    """What one bucket costs and gives on one runtime, measured at pack time (a COST row, what a device
    chooses its width from); None where it was not measured."""

    weights_bytes: int | None = None  # the weights the core writes into the runtime's files
    file_bytes: int | None = None  # the runtime's files without their weights
    arena_bytes: int | None = None  # the runtime's activation memory
    accuracy: float | None = None  # %, on the packer's validation data

    @classmethod
    def of(cls, row: dict, what: str) -> Cost:
        """From ``info["runtimes"][runtime]`` (other keys stay META-only); ``ValueError`` naming ``what`` for a
        byte count that is not an integer in 0..2^64-1 or an accuracy that is not a finite number."""
        if not isinstance(row, dict):
            raise ValueError(f"{what}: measurements must be a dict, not {type(row).__name__}")
        values = {k: row.get(k) for k in vocab.COST_FIELDS}
        for k, v in values.items():
            if v is None:
                continue
            if k == "accuracy":
                ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            else:
                ok = isinstance(v, int) and not isinstance(v, bool) and 0 <= v < _U64
            if not ok:
                raise ValueError(f"{what}: {k} = {v!r} is not a finite number" if k == "accuracy"
                                 else f"{what}: {k} = {v!r} is not a byte count (an integer in 0..2^64-1)")
        return cls(**values)

    def as_dict(self) -> dict:
        """The measured fields, as ``info["runtimes"][runtime]`` holds them."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Cascade:
    """An input-adaptive width (a ``CSCD`` record, FORMAT.md "Cascade table"): run ``buckets[0]`` first and
    keep its answer when the input's ``score`` (``max_prob``: the top softmax probability; ``margin``: top
    minus second) reaches ``thresholds[0]``, else run the next bucket; the last step answers every input that
    gets there (its threshold is 0). ``target`` is what the thresholds were calibrated to (``accuracy_drop``:
    percentage points below the widest bucket; ``mean_macs``: average multiply-accumulates per input;
    ``none``: set by hand), ``accuracy`` / ``mean_macs`` what they gave on the calibration data (None:
    not measured)."""

    name: str
    buckets: tuple[int, ...]
    thresholds: tuple[float, ...]
    score: str = "max_prob"
    target: str = "none"
    target_value: float = 0.0
    accuracy: float | None = None
    mean_macs: float | None = None

    def check(self, n_buckets: int) -> Cascade:
        """Itself, or ``ValueError`` for what both readers reject: a name of 1..255 UTF-8 bytes, 1..n steps
        naming distinct existing buckets, thresholds as float32 in [0, 1], the last one 0, a known score
        and target, finite numbers."""
        what = f"cascade {self.name!r}"
        if not isinstance(self.name, str) or not 0 < len(self.name.encode()) <= vocab.CASCADE_NAME:
            raise ValueError(f"{what}: the name must be 1..{vocab.CASCADE_NAME} bytes of UTF-8")
        if self.score not in vocab.CASCADE_SCORES or self.target not in vocab.CASCADE_TARGETS:
            raise ValueError(f"{what}: score must be one of {list(vocab.CASCADE_SCORES)}, target one of "
                             f"{list(vocab.CASCADE_TARGETS)}")
        steps = len(self.buckets)
        if not 0 < steps == len(self.thresholds):
            raise ValueError(f"{what}: {steps} buckets and {len(self.thresholds)} thresholds (one per step, 1+)")
        if any(not isinstance(k, numbers.Integral) or not 0 <= k < n_buckets for k in self.buckets) or len(
                set(self.buckets)) != steps:
            raise ValueError(f"{what}: buckets {list(self.buckets)} must be distinct indices below {n_buckets}")
        if not all(isinstance(t, numbers.Real) and 0.0 <= t <= 1.0 for t in self.thresholds) or self.thresholds[-1]:
            raise ValueError(f"{what}: thresholds {list(self.thresholds)} must lie in [0, 1], the last one 0 "
                             "(the last step answers every input that reaches it)")
        values = [self.target_value, *(v for v in (self.accuracy, self.mean_macs) if v is not None)]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
                   for v in values):
            raise ValueError(f"{what}: target value, accuracy and mean MACs must be finite and >= 0")
        return self


def check_cascades(cascades: list[Cascade], n_buckets: int) -> list[Cascade]:
    """Every cascade checked (:meth:`Cascade.check`) and their names distinct."""
    names = [c.check(n_buckets).name for c in cascades]
    if len(set(names)) != len(names):
        raise ValueError(f"cascade names must be distinct: {names}")
    return cascades


def check_meta(raw: bytes) -> dict:
    """``META`` as the Python readers use it: a strict-JSON object whose ``layers``/``groups``/``buckets``
    are lists of objects with fields of the right types (the C core ignores META; a host rebuilds modules
    from it); :class:`BundleError` for anything else."""
    try:
        meta = json.loads(raw.decode(), parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, ValueError) as e:
        raise BundleError(f"inconsistent bundle tables: META is not UTF-8 JSON: {e}") from e
    if not isinstance(meta, dict):
        raise BundleError(f"inconsistent bundle tables: META is a JSON {type(meta).__name__}, not an object")

    def bad(what: str) -> BundleError:
        return BundleError(f"inconsistent bundle tables: META {what}")

    def objects(key: str) -> list[dict]:
        rows = meta.get(key, [])
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise bad(f"{key!r} must be a list of objects")
        return rows

    def number(v: object, *, integer: bool = False) -> bool:
        kinds = (int,) if integer else (int, float)
        return isinstance(v, kinds) and not isinstance(v, bool) and math.isfinite(v)

    for i, lm in enumerate(objects("layers")):
        if not (isinstance(lm.get("name", ""), str) and isinstance(lm.get("module", ""), str)
                and isinstance(lm.get("conv", {}), dict) and number(spatial := lm.get("in_spatial", 1), integer=True)
                and spatial >= 1):
            raise bad(f"layer {i}: name and module must be strings, conv an object, in_spatial a positive integer")
    for i, gm in enumerate(objects("groups")):
        if not isinstance(gm.get("members", []), list):
            raise bad(f"group {i}: members must be a list")
    for i, bm in enumerate(objects("buckets")):
        info = bm.get("info", {})
        runtimes = info.get("runtimes", {}) if isinstance(info, dict) else None
        if not (isinstance(bm.get("name", ""), str) and (bm.get("ratio") is None or number(bm["ratio"]))
                and isinstance(runtimes, dict) and all(isinstance(r, dict) for r in runtimes.values())):
            raise bad(f"bucket {i}: name must be a string, ratio a number, info.runtimes an object of objects")
        for rt, row in runtimes.items():
            counts = [row[k] for k in ("weights_bytes", "file_bytes", "arena_bytes") if k in row]
            if not all(number(c, integer=True) and c >= 0 for c in counts) or not (
                    row.get("accuracy") is None or number(row["accuracy"])):
                raise bad(f"bucket {i}, {rt!r}: byte counts must be non-negative integers, accuracy a number")
    shape = meta.get("input_shape", [1])
    if not (isinstance(shape, list) and shape and all(number(d, integer=True) and d >= 1 for d in shape)):
        raise bad(f"input_shape must be a list of positive integers, not {shape!r}")
    return meta


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")
