"""What a device reads to choose a width, without torch: a bucket's measured costs (the binary
``COST`` rows) and the informational ``META`` JSON, with the checks both Python readers (the bundle
decoder and the ctypes binding of the C core) apply to them."""

from __future__ import annotations

import json
import math
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
