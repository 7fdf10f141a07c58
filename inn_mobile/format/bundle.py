"""The ``.innb`` bundle: nodes stored once, width buckets, partitions, and per-bucket runtime graphs.

Layout and field meanings are specified in ``csrc/FORMAT.md``; the C reader is ``csrc/inn_bundle.c``.
This module writes bundles (atomically) and reads them back with the same validation, so a Python
host can inspect or run what a phone will load.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import google_crc32c
import numpy as np
import torch

from inn_mobile import atomic
from inn_mobile.core import kernel
from inn_mobile.core.channels import Group
from inn_mobile.core.integral import IntegralModel, LayerSpec, node_key, sizes_key
from inn_mobile.errors import BundleError, NotInBundleError
from inn_mobile.format import runtime_file, vocab
from inn_mobile.format.reference import quantize_per_channel
from inn_mobile.format.tables import Cascade, Cost, check_cascades, check_meta

NORM_ROW = struct.Struct("<IIII")  # bucket, layer, first float in NRMV, reserved
HEADER_SIZE = 64
ENTRY_SIZE = 32
LAYER_SIZE = 64
LAYER_ROW = struct.Struct("<IIIIIIIIQQIIII")  # FORMAT.md "Layer record"
GRAPH_ROW = struct.Struct("<II16sQQ")  # bucket, reserved, runtime name (NUL-padded), offset, size in BLOB
BKIN_ROW = struct.Struct("<IIIId")  # name offset, name length (in NAME), flags (BUCKET_RATIO), reserved, ratio
COST_ROW = struct.Struct("<II16sQQQd")  # bucket, flags (COST_FIELDS), runtime, weights/file/arena bytes, accuracy
# CSCD (1.4): name offset/length (in NAME), score, target, first step, step count, flags, reserved,
# target value, accuracy, mean MACs; then the steps of every cascade: bucket, float32 threshold
CASCADE_ROW = struct.Struct("<IIIIIIIIddd")
STEP_ROW = struct.Struct("<If")
CASCADE_ACCURACY, CASCADE_MACS = vocab.CASCADE_FIELDS["accuracy"], vocab.CASCADE_FIELDS["macs"]  # CSCD flags


def resolve_bucket(names: list[str], ratios: list[float | None], bucket: int | str | float) -> int:
    """The one bucket lookup: an index (negative counts from the widest), a name (``"w0500"``) or a
    width ratio (``0.5``); :class:`NotInBundleError` lists what the bundle has."""
    n = len(names)
    if isinstance(bucket, bool) or not isinstance(bucket, (int, str, float)):
        raise TypeError(f"bucket must be an index, a name or a width ratio, not {bucket!r}")
    if isinstance(bucket, int):
        if not -n <= bucket < n:
            raise NotInBundleError(f"bucket {bucket} not in bundle (it has {n}: {names})")
        return bucket % n
    if isinstance(bucket, str):
        if bucket not in names:
            raise NotInBundleError(f"width {bucket!r} not in bundle; it has {names}")
        return names.index(bucket)
    for i, r in enumerate(ratios):
        if r is not None and abs(r - bucket) < 1e-9:
            return i
    raise NotInBundleError(f"width {bucket} not in bundle; widths: {ratios}")



def resolve_cascade(cascades: list[Cascade], which: int | str) -> Cascade:
    """The one cascade lookup: an index or a name; :class:`NotInBundleError` lists what the bundle has."""
    names = [c.name for c in cascades]
    if isinstance(which, int) and not isinstance(which, bool) and -len(names) <= which < len(names):
        return cascades[which]
    if isinstance(which, str) and which in names:
        return cascades[names.index(which)]
    raise NotInBundleError(f"cascade {which!r} not in bundle; it has {names or 'none'}")


@dataclass
class Bucket:
    """One width: per-group channel counts; ``ratio`` is the global width it was made for (if any).

    ``info["runtimes"][runtime]`` holds what packing measured (:class:`Cost`'s fields); the bundle
    stores it in binary (COST), and any other ``info`` in the informational META. ``macs``: the
    multiply-accumulates of one input at this width (``export.macs``), stored in MACS (1.4)."""

    name: str
    sizes: dict[int, int]
    ratio: float | None = None
    info: dict = field(default_factory=dict)
    macs: int | None = None


@dataclass
class Bundle:
    """A bundle in memory (as written, or as read back)."""

    model: IntegralModel
    buckets: list[Bucket]
    meta: dict = field(default_factory=dict)
    graphs: dict[tuple[int, str], bytes] = field(default_factory=dict)  # (bucket, runtime) -> blob
    cascades: list[Cascade] = field(default_factory=list)  # CSCD (1.4): confidence cascades across buckets

    def cascade(self, which: int | str) -> Cascade:
        """See :func:`resolve_cascade`."""
        return resolve_cascade(self.cascades, which)

    def bucket_index(self, bucket: int | str | float) -> int:
        """See :func:`resolve_bucket`."""
        return resolve_bucket([b.name for b in self.buckets], [b.ratio for b in self.buckets], bucket)

    def weights(self, bucket: str | int) -> dict[str, dict[str, torch.Tensor]]:
        """Python reference weights of one bucket (what the C core must reproduce)."""
        b = self.buckets[self.bucket_index(bucket)]
        with torch.no_grad():
            return self.model.weights_at(b.sizes)

    def runtimes(self) -> list[str]:
        """Runtime names that have graphs in this bundle."""
        return sorted({rt for _, rt in self.graphs})

    def costs(self) -> dict[tuple[int, str], Cost]:
        """``{(bucket, runtime): Cost}``: what :func:`encode` writes to COST (and what :func:`decode`
        read from it), checked as both readers check a COST row."""
        return {(k, rt): Cost.of(row, f"bucket {b.name!r}, runtime {rt!r}")
                for k, b in enumerate(self.buckets) for rt, row in b.info.get("runtimes", {}).items()}

    def cost(self, bucket: int | str | float, runtime: str) -> Cost | None:
        """The pack-time measurements of one bucket on one runtime, or None when it has none."""
        k = self.bucket_index(bucket)
        row = self.buckets[k].info.get("runtimes", {}).get(runtime)
        return None if row is None else Cost.of(row, f"bucket {self.buckets[k].name!r}, runtime {runtime!r}")

    def images(self, bucket: str | int, runtime: str) -> list[runtime_file.StoredImage]:
        """The stored images (bytes around the holes) of one bucket's graph for ``runtime``, checked
        as ``inn_graph_find`` checks them: every hole names a layer's tensor of exactly its size at
        this width, and the images stay within the reader limits (``RecordError`` otherwise)."""
        k = self.bucket_index(bucket)
        if (k, runtime) not in self.graphs:
            have = sorted(b for b, rt in self.graphs if rt == runtime)
            raise KeyError(f"no {runtime!r} graph for bucket {self.buckets[k].name!r}; "
                           f"buckets with one: {[self.buckets[b].name for b in have]}, runtimes: {self.runtimes()}")
        sizes = self.model.check_sizes(self.buckets[k].sizes)
        shapes = [layer_shape(self.model, sizes, spec) for spec in self.model.layers]
        kinds = [spec.kind for spec in self.model.layers]
        return runtime_file.decode_record(self.graphs[(k, runtime)], layers=list(zip(kinds, shapes)))


DEFAULT_RATIOS = (0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0)


def make_buckets(model: IntegralModel, ratios=None, *, multiple_of: int = 8) -> list[Bucket]:
    """Width buckets for global ratios, channel counts rounded to ``multiple_of`` where groups allow.

    A model with per-width normalisation serves only its calibrated widths: without ``ratios`` the
    buckets are exactly those (narrowest first), and a ratio that is not one of them is an error.
    """
    if ratios is None and model.norms:
        out = []
        for sizes in reversed(model.calibrated_sizes()):
            shares = [sizes[g.id] / g.size for g in model.groups if g.resizable] or [1.0]
            r = round(sum(shares) / len(shares), 3)  # the global ratio the width was made for (up to rounding)
            out.append(Bucket(f"w{round(r * 1000):04d}", sizes, r))
        return out
    out, seen = [], set()
    for r in sorted(DEFAULT_RATIOS if ratios is None else ratios):
        sizes = model.sizes_at(r, multiple_of=multiple_of)
        key = sizes_key(model.check_sizes(sizes))
        if model.norms and key not in model.norms:
            raise ValueError(f"width {r} ({model.width_report(sizes)}) has no per-width normalisation; this model "
                             f"serves {len(model.norms)} calibrated widths: call make_buckets(model) without ratios")
        if key not in seen:
            seen.add(key)
            out.append(Bucket(f"w{round(r * 1000):04d}", sizes, r))
    return out


# ---------------------------------------------------------------------------------------- writing
def _table(count: int, extra: int, rows: bytes) -> bytes:
    return struct.pack("<II", count, extra) + rows


def encode(bundle: Bundle, *, node_dtype: str = "f32") -> bytes:
    """Serialise ``bundle`` to bytes (see FORMAT.md).

    ``node_dtype``: ``f32``; ``f16`` (half the size); ``i8`` (a quarter: int8 with one float32 scale per
    node row, the core's per-channel rule, so an int8 graph's bundle is about the size of its weights).
    """
    if node_dtype not in vocab.NODE_DTYPES:
        raise ValueError(f"node_dtype must be one of {', '.join(vocab.NODE_DTYPES)}, not {node_dtype!r}")

    m = bundle.model
    np_dtype = {"f32": np.float32, "f16": np.float16, "i8": np.int8}[node_dtype]
    groups = b"".join(struct.pack("<II", g.size, 1 if g.resizable else 0) for g in m.groups)
    pieces: list[int] = []
    node_chunks: list[np.ndarray] = []
    scale_chunks: list[np.ndarray] = []
    node_count = scale_count = 0
    names = bytearray()
    layer_rows = []

    def add_nodes(t: torch.Tensor) -> tuple[int, int]:
        """Append one tensor; returns its offset in NODE elements and (int8) in NSCL scales."""
        nonlocal node_count, scale_count
        t = t.detach().cpu().float()
        first, first_scale = node_count, scale_count
        if node_dtype == "i8":
            q, scales = quantize_per_channel(t.reshape(t.shape[0], -1))
            arr = q.numpy().ravel()
            scale_chunks.append(scales.numpy())
            scale_count += scales.numel()
        else:
            arr = t.numpy().astype(np_dtype).ravel()
        node_chunks.append(arr)
        node_count += arr.size
        return first, first_scale

    for spec in m.layers:
        out_first = len(pieces)
        pieces.extend(spec.out_groups)
        in_first = len(pieces)
        pieces.extend(spec.in_groups)
        if spec.kind == "affine":
            woff, wsoff = add_nodes(m.nodes[node_key(spec.name, "scale")])
            boff, bsoff = add_nodes(m.nodes[node_key(spec.name, "shift")])
        else:
            woff, wsoff = add_nodes(m.nodes[node_key(spec.name, "weight")])
            boff, bsoff = add_nodes(m.nodes[node_key(spec.name, "bias")]) if spec.has_bias else (0, 0)
        name = spec.name.encode()
        layer_rows.append(LAYER_ROW.pack(
            vocab.KINDS[spec.kind], spec.blocks, spec.taps, 1 if spec.has_bias else 0, out_first, len(spec.out_groups),
            in_first, len(spec.in_groups), woff, boff, len(names), len(name), wsoff, bsoff))
        names += name
    parts: list[float] = []
    sizes_rows, ref_rows = [], []
    for b in bundle.buckets:
        sizes = m.check_sizes(b.sizes)
        for g in m.groups:
            n = sizes[g.id]
            if g.resizable and n > g.size * vocab.MAX_UPSAMPLE:  # both readers reject it (FORMAT.md "Reader limits")
                raise ValueError(f"bucket {b.name!r} samples group {g.id} of {g.size} nodes at {n} points: at most "
                                 f"{vocab.MAX_UPSAMPLE} per node")
            sizes_rows.append(n)
            p = m.partitions.get((g.id, n))
            if g.resizable and p is not None:
                ref_rows.append(len(parts))
                parts.extend(p.detach().float().tolist())
            else:
                ref_rows.append(vocab.UNIFORM)
    buck = struct.pack("<II", len(bundle.buckets), len(m.groups)) + struct.pack(
        f"<{len(sizes_rows) + len(ref_rows)}I", *sizes_rows, *ref_rows)
    norm_rows, norm_values = _encode_norms(bundle)
    bkin_rows = []
    for b in bundle.buckets:
        name = b.name.encode()
        if b.ratio is not None and not math.isfinite(b.ratio):
            raise ValueError(f"bucket {b.name!r}: ratio {b.ratio} is not finite")
        flags = vocab.BUCKET_RATIO if b.ratio is not None else 0
        bkin_rows.append(BKIN_ROW.pack(len(names), len(name), flags, 0, 0.0 if b.ratio is None else float(b.ratio)))
        names += name
    cost_rows = []
    for (k, rt), cost in sorted(bundle.costs().items(), key=lambda kv: (kv[0][0], _runtime_field(kv[0][1]))):
        flags = sum(bit for f, bit in vocab.COST_FIELDS.items() if getattr(cost, f) is not None)
        cost_rows.append(COST_ROW.pack(k, flags, _runtime_field(rt), cost.weights_bytes or 0, cost.file_bytes or 0,
                                       cost.arena_bytes or 0, float(cost.accuracy or 0.0)))
    cascade_rows, step_rows = [], []
    for c in check_cascades(bundle.cascades, len(bundle.buckets)):
        name = c.name.encode()
        flags = (CASCADE_ACCURACY if c.accuracy is not None else 0) | (CASCADE_MACS if c.mean_macs is not None else 0)
        cascade_rows.append(CASCADE_ROW.pack(
            len(names), len(name), vocab.CASCADE_SCORES[c.score], vocab.CASCADE_TARGETS[c.target], len(step_rows),
            len(c.buckets), flags, 0, float(c.target_value), float(c.accuracy or 0.0), float(c.mean_macs or 0.0)))
        names += name
        step_rows += [STEP_ROW.pack(k, t) for k, t in zip(c.buckets, c.thresholds)]
    macs = [b.macs for b in bundle.buckets]
    if any(m is not None for m in macs) and not all(isinstance(m, int) and 0 < m < 1 << 64 for m in macs):
        raise ValueError(f"MACs per bucket must be given for every bucket, each an integer in 1..2^64-1: {macs}")
    meta = dict(bundle.meta)
    meta["layers"] = [{k: v for k, v in asdict(s).items()} for s in m.layers]
    meta["groups"] = [{"id": g.id, "size": g.size, "resizable": g.resizable, "members": g.members} for g in m.groups]
    meta["buckets"] = [{"name": b.name, "ratio": b.ratio, "info": b.info} for b in bundle.buckets]
    meta["quadrature"] = m.quadrature
    try:  # strict JSON: NaN and infinity are not JSON, and other readers reject them
        meta_json = json.dumps(meta, sort_keys=True, default=_json_default, allow_nan=False).encode()
    except ValueError as e:
        raise ValueError(f"META must be strict JSON (no NaN or infinity): {e}") from e
    graph_index, blob = [], bytearray()
    for (bucket, runtime), data in sorted(bundle.graphs.items()):
        graph_index.append(GRAPH_ROW.pack(bucket, 0, _runtime_field(runtime), len(blob), len(data)))
        blob += data
        blob += b"\0" * (-len(blob) % 64)
    sections = [
        (b"INFO", struct.pack("<IIII", vocab.QUADRATURES[m.quadrature], 0, 0, 0), vocab.ELEMENTS["bytes"]),
        (b"GRPS", _table(len(m.groups), 0, groups), vocab.ELEMENTS["bytes"]),
        (b"LAYR", _table(len(layer_rows), 0, b"".join(layer_rows)), vocab.ELEMENTS["bytes"]),
        (b"PIEC", _table(len(pieces), 0, struct.pack(f"<{len(pieces)}I", *pieces)), vocab.ELEMENTS["bytes"]),
        (b"NODE", np.concatenate(node_chunks).astype(np.dtype(np_dtype).newbyteorder("<")).tobytes(),
         vocab.ELEMENTS[node_dtype]),
        (b"BUCK", buck, vocab.ELEMENTS["bytes"]),
        (b"PART", struct.pack(f"<{len(parts)}f", *parts), vocab.ELEMENTS["f32"]),
        (b"NAME", bytes(names), vocab.ELEMENTS["bytes"]),
        (b"META", meta_json, vocab.ELEMENTS["bytes"]),
        (b"BKIN", _table(len(bkin_rows), 0, b"".join(bkin_rows)), vocab.ELEMENTS["bytes"]),
        (b"COST", _table(len(cost_rows), 0, b"".join(cost_rows)), vocab.ELEMENTS["bytes"]),
    ]
    if macs[0] is not None:
        sections.append((b"MACS", _table(len(macs), 0, struct.pack(f"<{len(macs)}Q", *macs)), vocab.ELEMENTS["bytes"]))
    if cascade_rows:
        sections.append((b"CSCD", _table(len(cascade_rows), len(step_rows), b"".join(cascade_rows + step_rows)),
                         vocab.ELEMENTS["bytes"]))
    if node_dtype == "i8":
        sections.append((b"NSCL", np.concatenate(scale_chunks).astype("<f4").tobytes(), vocab.ELEMENTS["f32"]))
    if norm_rows:
        sections.append((b"NORM", _table(len(norm_rows), 0, b"".join(norm_rows)), vocab.ELEMENTS["bytes"]))
        sections.append((b"NRMV", np.concatenate(norm_values).astype("<f4").tobytes(), vocab.ELEMENTS["f32"]))
    if graph_index:
        sections.append((b"GIDX", _table(len(graph_index), 0, b"".join(graph_index)), vocab.ELEMENTS["bytes"]))
        sections.append((b"BLOB", bytes(blob), vocab.ELEMENTS["bytes"]))
    return _pack(sections, flags=vocab.FLAG_NORM if norm_rows else 0)


def _encode_norms(bundle: Bundle) -> tuple[list[bytes], list[np.ndarray]]:
    """NORM records and NRMV values (``a`` then ``c`` per record) for every bucket (FORMAT.md)."""
    m = bundle.model
    rows: list[bytes] = []
    values: list[np.ndarray] = []
    first = 0
    if not m.norms:
        return rows, values
    for k, b in enumerate(bundle.buckets):
        sizes = m.check_sizes(b.sizes)
        norm = m.norms.get(sizes_key(sizes))
        if norm is None:
            raise ValueError(f"bucket {b.name!r} ({m.width_report(sizes)}) has no per-width normalisation; "
                             "buckets of this model must be its calibrated widths (bundle.make_buckets(model))")
        for layer, spec in enumerate(m.layers):
            if spec.name not in norm:
                continue
            a, c = (t.detach().cpu().float().numpy().ravel() for t in norm[spec.name])
            n_out = spec.out_channels(sizes)
            if spec.kind == "affine" or not spec.has_bias or a.size != n_out or c.size != n_out:
                raise ValueError(f"normalisation of layer {spec.name!r} at bucket {b.name!r} must be two vectors "
                                 f"of its {n_out} output channels on a conv/linear layer with a bias")
            rows.append(NORM_ROW.pack(k, layer, first, 0))
            values += [a, c]
            first += 2 * n_out
    return rows, values


def _runtime_field(runtime: str) -> bytes:
    """A runtime name as GIDX and COST rows hold it: 1..16 bytes of UTF-8 without NUL, NUL-padded."""
    rt = runtime.encode()
    if not 0 < len(rt) <= vocab.RUNTIME_NAME or b"\0" in rt:
        raise ValueError(f"runtime name {runtime!r} must be 1..{vocab.RUNTIME_NAME} bytes without NUL")
    return rt.ljust(vocab.RUNTIME_NAME, b"\0")


def _json_default(o):
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """CRC-32C (Castagnoli) of ``data``, as ``inn_crc32c`` computes it (``google-crc32c``: the CPU's CRC
    instructions where it has them). That package reads only ``bytes``: other buffers are copied first."""
    return google_crc32c.value(data if isinstance(data, bytes) else bytes(data))


def checksum(flags: int) -> Callable[[bytes | bytearray | memoryview], int]:
    """The checksum of the section table and the sections of a bundle with header ``flags`` (FORMAT.md
    "Checksums"): CRC-32C with ``FLAG_CRC32C`` (1.4), else zlib's CRC-32. The header is always CRC-32."""
    return crc32c if flags & vocab.FLAG_CRC32C else zlib.crc32


def _pack(sections: list[tuple[bytes, bytes, int]], *, flags: int = 0) -> bytes:
    flags |= vocab.FLAG_CRC32C
    crc = checksum(flags)
    body = bytearray(b"\0" * HEADER_SIZE)
    entries = []
    for tag, payload, elem in sections:
        body += b"\0" * (-len(body) % 64)
        entries.append(struct.pack("<4sIQQII", tag, crc(payload), len(body), len(payload), elem, 0))
        body += payload
    body += b"\0" * (-len(body) % 64)
    table_off = len(body)
    table = b"".join(entries)
    body += table
    header = struct.pack("<4sHHIIQQII20x", vocab.MAGIC, *vocab.VERSION, HEADER_SIZE, len(entries), table_off,
                         len(body), flags, crc(table))
    header += struct.pack("<I", zlib.crc32(header))
    body[:HEADER_SIZE] = header
    return bytes(body)


def save(bundle: Bundle, path: str | os.PathLike, *, node_dtype: str = "f32") -> int:
    """Write ``bundle`` to ``path`` atomically (:mod:`inn_mobile.atomic`); returns its size in bytes."""
    data = encode(bundle, node_dtype=node_dtype)
    atomic.write_bytes(path, data)
    return len(data)


# ---------------------------------------------------------------------------------------- reading
_REQUIRED = (b"INFO", b"GRPS", b"LAYR", b"PIEC", b"NODE", b"BUCK")


def _sections(data: bytes) -> tuple[dict[bytes, tuple[memoryview, int]], int]:
    """The validated sections ``{tag: (payload, element type)}`` and the header flags (the C reader's
    header and table checks, ``inn_bundle_open``)."""
    if len(data) < HEADER_SIZE:
        raise BundleError("bundle truncated: shorter than its 64-byte header" if data[:4] == vocab.MAGIC[:len(data[:4])]
                          else "not an .innb bundle (bad magic)")
    if data[:4] != vocab.MAGIC:
        raise BundleError("not an .innb bundle (bad magic)")
    if zlib.crc32(data[:60]) != struct.unpack_from("<I", data, 60)[0]:
        raise BundleError("checksum mismatch: the bundle header is corrupted")
    magic, major, minor, hsize, count, table_off, file_size, flags, table_crc = struct.unpack_from("<4sHHIIQQII", data)
    if major != vocab.VERSION[0]:
        raise BundleError(f"unsupported bundle version {major}.{minor} (this reader: {vocab.VERSION[0]}.x)")
    if hsize != HEADER_SIZE:
        raise BundleError(f"inconsistent bundle tables: header size {hsize}")
    if flags & ~(vocab.FLAG_NORM | vocab.FLAG_CRC32C):
        raise BundleError(f"unsupported bundle version {major}.{minor}: unknown feature flags {flags:#x}")
    crc = checksum(flags)
    if file_size > len(data):
        raise BundleError(f"bundle truncated: {len(data)} bytes, header says {file_size}")
    if not 0 < count <= 64 or table_off % 64 or table_off < HEADER_SIZE or table_off + count * ENTRY_SIZE > file_size:
        raise BundleError("inconsistent bundle tables: bad section table")
    if crc(data[table_off:table_off + count * ENTRY_SIZE]) != table_crc:
        raise BundleError("checksum mismatch: the section table is corrupted")
    view = memoryview(data)
    out = {}
    for i in range(count):
        tag, section_crc, off, size, elem, _ = struct.unpack_from("<4sIQQII", data, table_off + i * ENTRY_SIZE)
        if off % 64 or off < HEADER_SIZE or off + size > file_size:
            raise BundleError(f"bundle truncated or malformed: section {tag!r} out of bounds")
        if crc(view[off:off + size]) != section_crc:
            raise BundleError(f"checksum mismatch: section {tag.decode(errors='replace')} is corrupted")
        if tag in out:
            raise BundleError(f"inconsistent bundle tables: duplicate section {tag!r}")
        out[tag] = (view[off:off + size], elem)
    for need in _REQUIRED:
        if need not in out:
            raise BundleError(f"missing section {need.decode()}")
    return out, flags


def _count(view: memoryview, record: int, what: str) -> int:
    """Record count of a table section, checked against the section's size."""
    if len(view) < 8:
        raise BundleError(f"bundle truncated: {what} table header")
    count = struct.unpack_from("<I", view)[0]
    if 8 + count * record > len(view):
        raise BundleError(f"bundle truncated: {what} table declares {count} records")
    return count


def _floats(view: memoryview, dtype: str) -> np.ndarray:
    """The whole elements of a section (a trailing partial element is ignored, as by the C reader)."""
    size = np.dtype(dtype).itemsize
    return np.frombuffer(view[:len(view) - len(view) % size], dtype=dtype)


def _finite(values: np.ndarray, what: str) -> None:
    """inf or NaN would reach the int8 conversion and the runtimes: both readers reject them."""
    if not np.isfinite(values).all():
        raise BundleError(f"inconsistent bundle tables: {what} holds inf or NaN")


def decode(data: bytes) -> Bundle:
    """Parse and validate bundle bytes; raises :class:`BundleError` naming what is wrong.

    Rejects what the C reader rejects (``inn_bundle_open``), and reads what it reads: layer and bucket
    names from NAME, ratios from BKIN, costs from COST (bundles before 1.3, without BKIN and COST, take
    bucket names, ratios and costs from META). The intentional differences: ``META``, which the core never
    reads, rebuilds the torch modules here (their kind, conv arguments, group members), so this reader also
    rejects a ``META`` that is not UTF-8 JSON of the expected shape (:func:`check_meta`); and layers
    must have distinct names (they key the model's nodes).
    Graph records are checked when used (:meth:`Bundle.images`), as ``inn_graph_find`` checks them.
    """
    try:
        return _decode(data)
    except (struct.error, IndexError, json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise BundleError(f"inconsistent bundle tables: {e}") from e


def _decode(data: bytes) -> Bundle:
    sec, header_flags = _sections(data)
    meta = check_meta(bytes(sec[b"META"][0])) if b"META" in sec else {}
    info = sec[b"INFO"][0]
    if len(info) < 16:
        raise BundleError("bundle truncated: INFO section")
    quad = struct.unpack_from("<I", info)[0]
    quad_name = {v: k for k, v in vocab.QUADRATURES.items()}.get(quad)
    if quad_name is None:
        raise BundleError(f"inconsistent bundle tables: unknown quadrature {quad}")
    gview = sec[b"GRPS"][0]
    n_groups = _count(gview, 8, "group")
    lview = sec[b"LAYR"][0]
    n_layers = _count(lview, LAYER_SIZE, "layer")
    pview = sec[b"PIEC"][0]
    pieces = struct.unpack_from(f"<{_count(pview, 4, 'piece')}I", pview, 8)
    if n_groups == 0 or n_layers == 0:
        raise BundleError("inconsistent bundle tables: a bundle needs at least one group and one layer")
    node_view, node_elem = sec[b"NODE"]
    node_np = {vocab.ELEMENTS["f32"]: "<f4", vocab.ELEMENTS["f16"]: "<f2", vocab.ELEMENTS["i8"]: "i1"}.get(node_elem)
    if node_np is None:
        raise BundleError(f"inconsistent bundle tables: NODE element type {node_elem}")
    nodes_arr = _floats(node_view, node_np)
    node_scales = None
    if node_elem == vocab.ELEMENTS["i8"]:
        if b"NSCL" not in sec:
            raise BundleError("missing section NSCL (scales of int8 nodes)")
        if sec[b"NSCL"][1] != vocab.ELEMENTS["f32"]:
            raise BundleError("inconsistent bundle tables: NSCL must be float32")
        node_scales = _floats(sec[b"NSCL"][0], "<f4")
        _finite(node_scales, "NSCL")
    else:
        _finite(nodes_arr, "NODE")
        nodes_arr = nodes_arr.astype(np.float32)
    meta_groups = meta.get("groups", [])
    groups = []
    for i in range(n_groups):
        size, flags = struct.unpack_from("<II", gview, 8 + 8 * i)
        if not 0 < size <= vocab.MAX_DIM:
            raise BundleError(f"index or dimension out of range: group {i} has {size} nodes")
        members = meta_groups[i].get("members", []) if i < len(meta_groups) else []
        groups.append(Group(i, size, bool(flags & 1), members))
    bview = sec[b"BUCK"][0]
    if len(bview) < 8:
        raise BundleError("bundle truncated: bucket table header")
    if struct.unpack_from("<I", bview, 4)[0] != n_groups:
        raise BundleError("inconsistent bundle tables: bucket table group count")
    n_buckets = _count(bview, 8 * n_groups, "bucket")
    if n_buckets == 0:
        raise BundleError("missing buckets: the bucket table is empty")

    def tensor(off: int, count: int, rows: int, scale_off: int, what: str) -> torch.Tensor:
        """``count`` nodes at ``off`` as float32; int8 nodes times their row scales (float32 product)."""
        if off + count > nodes_arr.size:
            raise BundleError(f"index or dimension out of range: layer {what} nodes past the NODE section")
        arr = nodes_arr[off:off + count]
        if node_scales is not None:
            if scale_off + rows > node_scales.size:
                raise BundleError(f"index or dimension out of range: layer {what} scales past the NSCL section")
            arr = (arr.reshape(rows, -1).astype(np.float32) * node_scales[scale_off:scale_off + rows, None]).ravel()
        return torch.from_numpy(arr.copy())

    names = sec[b"NAME"][0] if b"NAME" in sec else memoryview(b"")
    layer_meta = meta.get("layers", [])
    specs, nodes = [], {}
    for i in range(n_layers):
        kind, blocks, taps, flags, of, oc, inf, ic, woff, boff, noff, nlen, wsoff, bsoff = LAYER_ROW.unpack_from(
            lview, 8 + LAYER_SIZE * i)
        kind_name = {v: k for k, v in vocab.KINDS.items()}.get(kind)
        if kind_name is None:
            raise BundleError(f"inconsistent bundle tables: layer {i} has kind {kind}")
        if not (0 < blocks <= vocab.MAX_DIM and 0 < taps <= vocab.MAX_DIM):
            raise BundleError(f"index or dimension out of range: layer {i} has {blocks} blocks and {taps} taps")
        if oc == 0 or max(of + oc, inf + ic) > len(pieces):
            raise BundleError(f"index or dimension out of range: layer {i} pieces")
        name = _name(names, noff, nlen, f"layer {i}") or f"layer{i}"
        out_groups, in_groups = tuple(pieces[of:of + oc]), tuple(pieces[inf:inf + ic])
        if any(g >= n_groups for g in out_groups + in_groups):
            raise BundleError(f"index or dimension out of range: layer {i} names a missing group")
        m_out = sum(groups[g].size for g in out_groups)
        m_in_total = sum(groups[g].size for g in in_groups)
        if m_out > vocab.MAX_DIM or m_in_total > vocab.MAX_DIM:
            raise BundleError(f"index or dimension out of range: layer {i} has {m_out} x {m_in_total} nodes")
        if kind_name == "dense":
            if ic == 0 or m_out % blocks or m_in_total % blocks:
                raise BundleError(f"inconsistent bundle tables: dense layer {i} axes do not split into {blocks} blocks")
        elif ic != 0 or blocks != 1 or (kind_name == "affine" and taps != 1):
            raise BundleError(f"inconsistent bundle tables: {kind_name} layer {i} has an input axis, blocks or taps")
        lm = layer_meta[i] if i < len(layer_meta) else {}
        if any(node_key(name, "") == node_key(s.name, "") for s in specs):
            raise BundleError(f"inconsistent bundle tables: two layers named {name!r}")
        spec = LayerSpec(name, kind_name, lm.get("module", "conv2d"), out_groups, in_groups, blocks, taps,
                         lm.get("in_spatial", 1), bool(flags & 1), _tuples(lm.get("conv", {})))
        count = m_out * (m_in_total // blocks) * taps if kind_name == "dense" else m_out * taps
        w = tensor(woff, count, m_out, wsoff, repr(name))
        if kind_name == "affine":
            nodes[node_key(name, "scale")] = w
            nodes[node_key(name, "shift")] = tensor(boff, m_out, m_out, bsoff, repr(name))
        else:
            nodes[node_key(name, "weight")] = w.reshape(m_out, -1, taps)
            if flags & 1:
                nodes[node_key(name, "bias")] = tensor(boff, m_out, m_out, bsoff, repr(name))
        specs.append(spec)
    model = IntegralModel(None, groups, specs, nodes, quadrature=quad_name)
    buckets = _decode_buckets(sec, bview, n_buckets, model, meta.get("buckets", []), names)
    _decode_norms(sec, header_flags, model, buckets)
    for b, m in zip(buckets, _decode_macs(sec, len(buckets)) or []):
        b.macs = m
    return Bundle(model, buckets, meta, _decode_graphs(sec, len(buckets)), _decode_cascades(sec, len(buckets), names))


def _name(names: memoryview, off: int, length: int, what: str) -> str:
    """A name in NAME, checked as the C reader checks it (inside the section, strict UTF-8)."""
    if off + length > len(names):
        raise BundleError(f"index or dimension out of range: {what} name past the NAME section")
    try:
        return bytes(names[off:off + length]).decode()
    except UnicodeDecodeError as e:
        raise BundleError(f"inconsistent bundle tables: {what} name is not UTF-8 ({e.reason})") from e


def _decode_bucket_infos(sec: dict, n_buckets: int, names: memoryview) -> list[tuple[str, float | None]] | None:
    """BKIN (1.3): ``(name, ratio)`` per bucket with ``open_bucket_infos``'s checks; None without BKIN."""
    if b"BKIN" not in sec:
        return None
    view = sec[b"BKIN"][0]
    count = _count(view, BKIN_ROW.size, "BKIN")
    if count != n_buckets or struct.unpack_from("<I", view, 4)[0]:
        raise BundleError(f"inconsistent bundle tables: BKIN has {count} records for {n_buckets} buckets")
    out = []
    for k in range(count):
        off, length, flags, reserved, ratio = BKIN_ROW.unpack_from(view, 8 + BKIN_ROW.size * k)
        name = _name(names, off, length, f"bucket {k}")
        raw_ratio = view[8 + BKIN_ROW.size * k + 16:8 + BKIN_ROW.size * (k + 1)]
        if flags & ~vocab.BUCKET_RATIO or reserved or (
                not math.isfinite(ratio) if flags else any(raw_ratio)):
            raise BundleError(f"inconsistent bundle tables: BKIN record {k} (flags {flags:#x}, ratio {ratio})")
        out.append((name, ratio if flags else None))
    return out


def _decode_costs(sec: dict, n_buckets: int) -> dict[tuple[int, str], Cost] | None:
    """COST (1.3): ``{(bucket, runtime): Cost}`` with ``open_costs``'s checks; None without COST."""
    if b"COST" not in sec:
        return None
    view = sec[b"COST"][0]
    count = _count(view, COST_ROW.size, "COST")
    if struct.unpack_from("<I", view, 4)[0]:
        raise BundleError("inconsistent bundle tables: COST reserved field")
    out, prev = {}, None
    for i in range(count):
        k, flags, rt, *values = COST_ROW.unpack_from(view, 8 + COST_ROW.size * i)
        if k >= n_buckets:
            raise BundleError(f"index or dimension out of range: COST row {i} names bucket {k}")
        name = rt.rstrip(b"\0")
        try:
            runtime = name.decode() if name and b"\0" not in name else ""
        except UnicodeDecodeError:
            runtime = ""
        raw = bytes(view[8 + COST_ROW.size * i + 24:8 + COST_ROW.size * (i + 1)])
        known = {f: bool(flags & bit) for f, bit in vocab.COST_FIELDS.items()}
        if (not runtime or flags & ~sum(vocab.COST_FIELDS.values())
                or any(not known[f] and raw[8 * j:8 * j + 8] != bytes(8) for j, f in enumerate(vocab.COST_FIELDS))
                or (known["accuracy"] and not math.isfinite(values[3]))):
            raise BundleError(f"inconsistent bundle tables: COST row {i} (runtime {rt!r}, flags {flags:#x})")
        if prev is not None and (k, rt) <= prev:
            raise BundleError(f"inconsistent bundle tables: COST row {i} out of order or not unique")
        prev = (k, rt)
        out[(k, runtime)] = Cost(**{f: v for (f, bit), v in zip(vocab.COST_FIELDS.items(), values) if known[f]})
    return out


def _decode_macs(sec: dict, n_buckets: int) -> list[int] | None:
    """MACS (1.4): one non-zero u64 per bucket (``open_macs``'s checks); None without MACS."""
    if b"MACS" not in sec:
        return None
    view = sec[b"MACS"][0]
    count = _count(view, 8, "MACS")
    values = struct.unpack_from(f"<{count}Q", view, 8)
    if count != n_buckets or struct.unpack_from("<I", view, 4)[0] or not all(values):
        raise BundleError(f"inconsistent bundle tables: MACS has {count} values for {n_buckets} buckets "
                          "(each non-zero, reserved field zero)")
    return list(values)


def _decode_cascades(sec: dict, n_buckets: int, names: memoryview) -> list[Cascade]:
    """CSCD (1.4) with ``open_cascades``'s checks: records inside the section, steps contiguous and in
    order, known score, target and flags, reserved zero, names in NAME and distinct, and each cascade as
    :meth:`Cascade.check` requires it (distinct existing buckets, thresholds in [0, 1], the last 0)."""
    if b"CSCD" not in sec:
        return []
    view = sec[b"CSCD"][0]
    if len(view) < 8:
        raise BundleError("bundle truncated: CSCD table header")
    count, n_steps = struct.unpack_from("<II", view)
    if 8 + CASCADE_ROW.size * count + STEP_ROW.size * n_steps > len(view):
        raise BundleError(f"bundle truncated: CSCD table declares {count} cascades and {n_steps} steps")
    steps_at = 8 + CASCADE_ROW.size * count
    out, first_free = [], 0
    for i in range(count):
        (noff, nlen, score, target, first, n, flags, reserved, value, acc,
         macs) = CASCADE_ROW.unpack_from(view, 8 + CASCADE_ROW.size * i)
        name = _name(names, noff, nlen, f"cascade {i}")
        if first != first_free or n > n_steps - first:
            raise BundleError(f"inconsistent bundle tables: cascade {i} steps {first}+{n} (next free step "
                              f"{first_free} of {n_steps})")
        first_free += n
        score_name = {v: k for k, v in vocab.CASCADE_SCORES.items()}.get(score)
        target_name = {v: k for k, v in vocab.CASCADE_TARGETS.items()}.get(target)
        unused = (not flags & CASCADE_ACCURACY and acc != 0.0) or (not flags & CASCADE_MACS and macs != 0.0)
        if (score_name is None or target_name is None or flags & ~(CASCADE_ACCURACY | CASCADE_MACS) or reserved
                or unused):
            raise BundleError(f"inconsistent bundle tables: cascade {i} (score {score}, target {target}, "
                              f"flags {flags:#x})")
        rows = [STEP_ROW.unpack_from(view, steps_at + STEP_ROW.size * (first + j)) for j in range(n)]
        if any(k >= n_buckets for k, _ in rows):
            raise BundleError(f"index or dimension out of range: cascade {i} names a bucket past {n_buckets}")
        c = Cascade(name, tuple(k for k, _ in rows), tuple(t for _, t in rows), score_name, target_name, value,
                    acc if flags & CASCADE_ACCURACY else None, macs if flags & CASCADE_MACS else None)
        try:
            c.check(n_buckets)
        except ValueError as e:
            raise BundleError(f"inconsistent bundle tables: {e}") from e
        out.append(c)
    if first_free != n_steps or len({c.name for c in out}) != len(out):
        raise BundleError(f"inconsistent bundle tables: CSCD has {n_steps} steps, its cascades use {first_free}; "
                          "or two cascades share a name")
    return out


def _decode_buckets(sec: dict, bview: memoryview, n_buckets: int, model: IntegralModel,
                    bucket_meta: list, names: memoryview) -> list[Bucket]:
    """The BUCK table with the C reader's checks (``check_buckets``); trained partitions into ``model``;
    names, ratios and costs from BKIN and COST (from META in bundles before 1.3)."""
    infos = _decode_bucket_infos(sec, n_buckets, names)
    costs = _decode_costs(sec, n_buckets)
    groups = model.groups
    n_g = len(groups)
    sizes = struct.unpack_from(f"<{n_buckets * n_g}I", bview, 8)
    refs = struct.unpack_from(f"<{n_buckets * n_g}I", bview, 8 + 4 * n_buckets * n_g)
    parts = _floats(sec[b"PART"][0], "<f4") if b"PART" in sec else np.zeros(0, np.float32)
    simpson = model.quadrature == "simpson"
    buckets = []
    for k in range(n_buckets):
        bs = {g: sizes[k * n_g + g] for g in range(n_g)}
        for g, grp in enumerate(groups):
            n, ref = bs[g], refs[k * n_g + g]
            if not grp.resizable:
                if n != grp.size or ref != vocab.UNIFORM:
                    raise BundleError(f"inconsistent bundle tables: bucket {k} resizes fixed group {g}")
                continue
            if not 2 <= n <= min(vocab.MAX_DIM, grp.size * vocab.MAX_UPSAMPLE) or (simpson and n < 3):
                raise BundleError(f"index or dimension out of range: bucket {k} gives group {g} of {grp.size} "
                                  f"nodes {n} channels (2..{vocab.MAX_UPSAMPLE} per node"
                                  f"{', 3+ for Simpson' * simpson})")
            if ref == vocab.UNIFORM:
                continue
            if simpson:
                raise BundleError(f"invalid partition (bucket {k}, group {g}): Simpson needs uniform points")
            if ref + n > parts.size:
                raise BundleError(f"index or dimension out of range: bucket {k} partition of group {g}")
            p = torch.from_numpy(parts[ref:ref + n].copy())
            try:
                kernel.check_partition(p)
            except ValueError as e:
                raise BundleError(f"invalid partition (bucket {k}, group {g}): {e}") from e
            model.partitions[(g, n)] = p
        bm = bucket_meta[k] if k < len(bucket_meta) else {}
        name, ratio = infos[k] if infos is not None else (bm.get("name", ""), bm.get("ratio"))
        info = dict(bm.get("info", {}))
        if costs is not None:
            info["runtimes"] = {rt: c.as_dict() for (b, rt), c in costs.items() if b == k}
        buckets.append(Bucket(name or f"b{k}", bs, ratio, info))
    return buckets


def _decode_graphs(sec: dict, n_buckets: int) -> dict[tuple[int, str], bytes]:
    """GIDX rows and their BLOB bytes. Like ``inn_graph_find``, the first row of a (bucket, runtime)
    wins and a GIDX without a BLOB has no graphs; the records themselves are checked when used."""
    graphs: dict[tuple[int, str], bytes] = {}
    if b"GIDX" not in sec or b"BLOB" not in sec:
        return graphs
    gi, blob = sec[b"GIDX"][0], sec[b"BLOB"][0]
    for i in range(_count(gi, GRAPH_ROW.size, "graph")):
        bucket, _, rt, off, size = GRAPH_ROW.unpack_from(gi, 8 + GRAPH_ROW.size * i)
        if bucket >= n_buckets or off + size > len(blob):
            raise BundleError(f"graph {i} out of range (bucket {bucket}, bytes {off}+{size})")
        name = rt.split(b"\0", 1)[0]
        try:
            runtime = name.decode()
        except UnicodeDecodeError:
            runtime = ""
        if not runtime:
            raise BundleError(f"inconsistent bundle tables: graph {i} has no UTF-8 runtime name ({rt!r})")
        graphs.setdefault((bucket, runtime), bytes(blob[off:off + size]))
    return graphs


def _decode_norms(sec: dict, flags: int, model: IntegralModel, buckets: list[Bucket]) -> None:
    """Read NORM/NRMV into ``model.norms`` with the C reader's checks (FORMAT.md "Per-width normalisation").

    Every bucket gets an entry (empty without records): its layers without a record are as resampled."""
    present = b"NORM" in sec or b"NRMV" in sec
    if not flags & vocab.FLAG_NORM:
        if present:
            raise BundleError("inconsistent bundle tables: NORM sections without the header flag")
        return
    if b"NORM" not in sec or b"NRMV" not in sec:
        raise BundleError("missing section NORM/NRMV (the header flag says the bundle has per-width normalisation)")
    vview, velem = sec[b"NRMV"]
    if velem != vocab.ELEMENTS["f32"] or len(vview) % 4:
        raise BundleError("inconsistent bundle tables: NRMV must be float32")
    values = np.frombuffer(vview, dtype="<f4")
    if not np.isfinite(values).all():
        raise BundleError("inconsistent bundle tables: NRMV has non-finite values")
    nview = sec[b"NORM"][0]
    for b in buckets:
        model.norms.setdefault(sizes_key(b.sizes), {})
    prev = None
    for i in range(_count(nview, NORM_ROW.size, "NORM")):
        k, layer, first, reserved = NORM_ROW.unpack_from(nview, 8 + NORM_ROW.size * i)
        if k >= len(buckets) or layer >= len(model.layers):
            raise BundleError(f"index or dimension out of range: NORM record {i} names bucket {k}, layer {layer}")
        if reserved or (prev is not None and (k, layer) <= prev):
            raise BundleError(f"inconsistent bundle tables: NORM record {i} out of order or not unique")
        prev = (k, layer)
        spec = model.layers[layer]
        if spec.kind == "affine" or not spec.has_bias:
            raise BundleError(f"inconsistent bundle tables: NORM on layer {spec.name!r} "
                              "(needs a conv/linear with bias)")
        n_out = layer_shape(model, buckets[k].sizes, spec)[0]
        if first + 2 * n_out > values.size:
            raise BundleError(f"index or dimension out of range: NORM record {i} past the NRMV section")
        v = values[first:first + 2 * n_out]
        model.norms[sizes_key(buckets[k].sizes)][spec.name] = (
            torch.from_numpy(v[:n_out].copy()), torch.from_numpy(v[n_out:].copy()))


def _axis_size(model: IntegralModel, sizes: dict[int, int], groups: tuple[int, ...], blocks: int) -> int:
    """Channels of a layer axis at ``sizes`` (the C core's ``axis_size``): at most MAX_DIM, a multiple
    of ``blocks``, and every block boundary of the nodes on a block boundary of the samples (or blocks
    would read each other's nodes)."""
    m_total = sum(model.groups[g].size for g in groups)
    n_total = sum(sizes[g] for g in groups)
    if n_total > vocab.MAX_DIM:
        raise BundleError(f"index or dimension out of range: an axis of {n_total} channels")
    if n_total % blocks:
        raise BundleError(f"inconsistent bundle tables: {n_total} channels do not split into {blocks} blocks")
    m = n = 0
    for g in groups:
        m += model.groups[g].size
        n += sizes[g]
        if (m * blocks) % m_total == 0 and n * blocks != (m * blocks // m_total) * n_total:
            raise BundleError(f"inconsistent bundle tables: the {blocks} blocks of an axis split its groups")
    return n_total


def layer_shape(model: IntegralModel, sizes: dict[int, int], spec: LayerSpec) -> tuple[int, int]:
    """``(output channels, weight elements)`` of a layer at complete ``sizes``, checked as the C core's
    ``inn_layer_info_get`` checks them (:class:`BundleError` when the bucket cannot serve the layer)."""
    n_out = _axis_size(model, sizes, spec.out_groups, spec.blocks)
    if spec.kind != "dense":
        return n_out, n_out * spec.taps
    n_in = _axis_size(model, sizes, spec.in_groups, spec.blocks)
    return n_out, n_out * (n_in // spec.blocks) * spec.taps


def _tuples(conv: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in conv.items()}


def load(path: str | os.PathLike) -> Bundle:
    """Read and validate a bundle file."""
    return decode(Path(path).read_bytes())
