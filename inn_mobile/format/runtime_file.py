"""Runtime files with holes: the per-bucket graphs a bundle ships without their weights.

A lowered graph (ExecuTorch ``.pte`` + ``.ptd``, LiteRT ``.tflite``) is a byte image in which the
weights sit at known offsets. At pack time the exporter records each weight-bearing byte range as a
:class:`Hole` (which layer, which tensor, which layout and dtype) and the bundle stores only the bytes
around the holes. On device the native core rebuilds the image: it copies the stored bytes and writes
each hole straight from the nodes (resampled, and quantised to int8 after discretisation where the
graph wants int8), so the full-width weights are never shipped and never held twice.

Record layout (little-endian, one record per ``(bucket, runtime)`` in the bundle's ``BLOB``; see
``csrc/FORMAT.md``)::

    "IGR1" u32 image_count
    per image:  u32 name_len  u32 span_count  u32 hole_count  u32 packed  u64 size
                name bytes, zero-padded to a multiple of 8
                spans: u64 offset  u64 length                     (stored bytes of the image)
                holes: u64 offset  u64 size  u32 layer  u8 tensor  u8 layout  u8 dtype  u8 reserved
                       f32 param  u32 reserved                    (32 bytes)
                span data, concatenated (LZ-packed into `packed` bytes when packed != 0, see
                lz.py), zero-padded to a multiple of 8
Bytes covered by neither a span nor a hole are zero.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

import numpy as np

from inn_mobile.errors import BundleError
from inn_mobile.format import lz, vocab

RECORD_MAGIC = b"IGR1"
# What a hole holds (per layer; O = output channels of the bucket):
#   weight      the weight in `layout`/`dtype` (affine layers: the per-channel scale, f32)
#   bias        f32 [O] (affine layers: the shift)
#   scale       f32 [O] int8 weight scales (max|w| / 127 per output channel)
#   bias_i32    i32 [O] round_half_even(bias / (param * scale)), param = the input activation scale
#   bias_scale  f32 [O] param * scale (the int32 bias' quantisation scale)
TENSORS = vocab.HOLE_TENSORS
LAYOUTS = vocab.LAYOUTS
DTYPES = vocab.HOLE_DTYPES
_IMAGE_HEAD = struct.Struct("<IIIIQ")
_SPAN = struct.Struct("<QQ")
_HOLE = struct.Struct("<QQIBBBBfI")
_MIN_GAP = 64  # zero runs shorter than this are stored: fewer spans beat a few saved bytes


class RecordError(BundleError):
    """A graph record is malformed (the message says which check failed)."""


@dataclass(frozen=True)
class Hole:
    """A weight-bearing byte range of an image, filled at load time from the nodes."""

    offset: int
    size: int
    layer: int
    tensor: str = "weight"
    layout: str = "oit"
    dtype: str = "f32"
    param: float = 0.0

    def __post_init__(self) -> None:
        if self.tensor not in TENSORS:
            raise ValueError(f"unknown hole tensor {self.tensor!r}; choose one of {sorted(TENSORS)}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}; choose one of {sorted(LAYOUTS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; choose one of {sorted(DTYPES)}")
        if self.offset < 0 or self.size <= 0:
            raise ValueError(f"hole at {self.offset} of {self.size} bytes is empty or negative")


@dataclass
class Image:
    """One runtime file: its bytes (holes may hold anything: they are dropped) and its holes."""

    name: str
    data: bytes
    holes: list[Hole] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.holes = sorted(self.holes, key=lambda h: h.offset)
        end = 0
        for h in self.holes:
            if h.offset < end:
                raise ValueError(f"{self.name}: hole at {h.offset} overlaps the previous one")
            end = h.offset + h.size
        if end > len(self.data):
            raise ValueError(f"{self.name}: hole ends at {end}, past the image ({len(self.data)} bytes)")

    def spans(self) -> list[tuple[int, int]]:
        """Byte ranges to store: everything but holes and long zero runs."""
        keep = np.ones(len(self.data), bool)
        for h in self.holes:
            keep[h.offset:h.offset + h.size] = False
        keep &= _not_long_zero_run(np.frombuffer(self.data, np.uint8))
        edges = np.flatnonzero(np.diff(np.concatenate([[0], keep.view(np.int8), [0]])))
        return [(int(a), int(b - a)) for a, b in zip(edges[::2], edges[1::2])]


def _not_long_zero_run(a: np.ndarray) -> np.ndarray:
    zero = np.concatenate([[0], (a == 0).view(np.int8), [0]])
    edges = np.flatnonzero(np.diff(zero))
    keep = np.ones(len(a), bool)
    for s, e in zip(edges[::2], edges[1::2]):
        if e - s >= _MIN_GAP:
            keep[s:e] = False
    return keep


def _pad8(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 8)


def encode_record(images: list[Image]) -> bytes:
    """Serialise a runtime's images for one bucket; each image's stored bytes are LZ-packed when
    that makes them smaller (graph structure repeats a lot: about 1.5x smaller for XNNPACK files)."""
    out = bytearray(RECORD_MAGIC + struct.pack("<I", len(images)))
    for im in images:
        name = im.name.encode()
        spans = im.spans()
        stored = b"".join(im.data[o:o + n] for o, n in spans)
        packed = lz.encode(stored) if stored else b""
        if len(packed) >= len(stored) or len(packed) > 0xFFFFFFFF:
            packed = b""
        out += _IMAGE_HEAD.pack(len(name), len(spans), len(im.holes), len(packed), len(im.data))
        out += _pad8(name)
        for off, n in spans:
            out += _SPAN.pack(off, n)
        for h in im.holes:
            out += _HOLE.pack(h.offset, h.size, h.layer, TENSORS[h.tensor], LAYOUTS[h.layout], DTYPES[h.dtype], 0,
                              h.param, 0)
        out += _pad8(packed or stored)
    return bytes(out)


@dataclass
class StoredImage:
    """An image as a record stores it: size, stored spans (with their bytes) and holes."""

    name: str
    size: int
    spans: list[tuple[int, bytes]]
    holes: list[Hole]


_SCALE_FAMILY = ("scale", "bias_i32", "bias_scale")  # vector holes computed from an int8 weight's scales


@dataclass
class _Parsed:
    """An image header and its tables, before the stored bytes are unpacked."""

    name: str
    size: int
    spans: list[tuple[int, int]]
    holes: list[Hole]
    stored: memoryview
    data_len: int
    packed: int


def decode_record(data: bytes, *, layers: list[tuple[str, tuple[int, int]]] | None = None) -> list[StoredImage]:
    """Parse and validate a record: spans and holes each sorted, inside their image, not overlapping.

    ``layers`` (``(kind, (output channels, weight elements))`` per layer at the record's bucket, from
    :func:`inn_mobile.format.bundle.layer_shape`) adds the checks ``inn_graph_find`` makes before
    anything is unpacked or written: every hole names a layer's tensor of exactly its size, the
    reader limits above, and vector holes next to the weight hole they are computed from.
    """
    view = memoryview(data)
    if len(view) < 8 or bytes(view[:4]) != RECORD_MAGIC:
        raise RecordError("not a graph record (bad magic)")
    count = struct.unpack_from("<I", view, 4)[0]
    if count > vocab.MAX_DIM:
        raise RecordError(f"record declares {count} images")
    pos = 8

    def take(n: int) -> memoryview:
        nonlocal pos
        if pos + n > len(view):
            raise RecordError(f"record truncated at byte {pos} (needs {n} more)")
        pos += n
        return view[pos - n:pos]

    parsed = []
    for _ in range(count):  # every header parses (each takes 24 bytes) before anything else is done
        name_len, n_spans, n_holes, packed, size = _IMAGE_HEAD.unpack(take(_IMAGE_HEAD.size))
        if name_len > vocab.MAX_DIM or n_spans > vocab.MAX_DIM or n_holes > vocab.MAX_DIM:
            raise RecordError(f"image header declares {name_len} name bytes, {n_spans} spans, {n_holes} holes")
        name = bytes(take(name_len + (-name_len % 8))[:name_len]).decode("utf-8", "replace")
        spans = list(_SPAN.iter_unpack(take(_SPAN.size * n_spans)))
        holes = []
        for off, hsize, layer, t, lay, dt, _, param, _ in _HOLE.iter_unpack(take(_HOLE.size * n_holes)):
            try:
                holes.append(Hole(off, hsize, layer, _name(TENSORS, t), _name(LAYOUTS, lay), _name(DTYPES, dt), param))
            except ValueError as e:
                raise RecordError(f"{name}: {e}") from e
        data_len = 0
        for _, n in spans:
            if n > size - data_len:
                raise RecordError(f"{name}: spans hold more than the image's {size} bytes")
            data_len += n
        stored = take(packed or data_len)
        take(-len(stored) % 8)
        _check_ranges(name, size, spans, holes)
        parsed.append(_Parsed(name, size, spans, holes, stored, data_len, packed))
    if layers is not None:
        _check_against_layers(parsed, layers)
    images = []
    for p in parsed:
        stored = p.stored
        if p.packed:
            try:
                stored = lz.decode(stored, p.data_len)
            except lz.LZError as e:
                raise RecordError(f"{p.name}: {e}") from e
        chunks, at = [], 0
        for o, n in p.spans:
            chunks.append((o, bytes(stored[at:at + n])))
            at += n
        images.append(StoredImage(p.name, p.size, chunks, p.holes))
    return images


def _check_ranges(name: str, size: int, spans: list[tuple[int, int]], holes: list[Hole]) -> None:
    """Spans and holes, each sorted by offset, merged: inside the image and not overlapping."""
    ranges = [*spans, *((h.offset, h.size) for h in holes)]
    s, h, end = 0, len(spans), 0
    while s < len(spans) or h < len(ranges):
        take_span = h == len(ranges) or (s < len(spans) and ranges[s][0] <= ranges[h][0])
        o, n = ranges[s] if take_span else ranges[h]
        s, h = (s + 1, h) if take_span else (s, h + 1)
        if o < end or o > size or n > size - o:
            raise RecordError(f"{name}: span/hole at {o} (+{n}) out of order, overlapping or past the image "
                              f"({size} bytes)")
        end = o + n


def _check_against_layers(images: list[_Parsed], layers: list[tuple[str, tuple[int, int]]]) -> None:
    """The checks of ``inn_graph_find`` that need the bucket's layers (see :func:`decode_record`)."""
    weight_holes: dict[int, set[str]] = {}
    for im in images:
        for h in im.holes:
            if h.layer >= len(layers):
                raise RecordError(f"{im.name}: hole names layer {h.layer}, the model has {len(layers)}")
            kind, (n_out, weights) = layers[h.layer]
            if h.tensor == "weight":
                if h.dtype == "i32" or (kind == "affine" and h.dtype != "f32"):
                    raise RecordError(f"{im.name}: a {kind} layer's weight hole cannot be {h.dtype}")
                elem, need = (1, weights) if h.dtype == "i8" else (4, 4 * weights)
                weight_holes.setdefault(h.layer, set()).add(h.dtype)
            else:
                if h.dtype != ("i32" if h.tensor == "bias_i32" else "f32"):
                    raise RecordError(f"{im.name}: a {h.tensor} hole cannot be {h.dtype}")
                if h.tensor in _SCALE_FAMILY and kind == "affine":
                    raise RecordError(f"{im.name}: affine layer {h.layer} has no int8 scales for a {h.tensor} hole")
                if h.tensor in ("bias_i32", "bias_scale") and not (math.isfinite(h.param) and h.param > 0):
                    raise RecordError(f"{im.name}: {h.tensor} hole with activation scale {h.param}")
                elem, need = 4, 4 * n_out
            if h.size != need or (elem == 4 and h.offset % 4):
                raise RecordError(f"{im.name}: hole for layer {h.layer} {h.tensor} is {h.size} bytes at {h.offset}, "
                                  f"the bucket's tensor is {need} bytes ({elem}-byte aligned)")
    model = sum(4 * weights + 16 * n_out for _, (n_out, weights) in layers)
    stored = sum(im.data_len for im in images)
    holes = sum(h.size for im in images for h in im.holes)
    gaps = sum(im.size - im.data_len - sum(h.size for h in im.holes) for im in images)
    if holes > vocab.HOLE_REUSE * model or gaps > vocab.GAP_RATIO * (stored + holes) + vocab.GAP_FLOOR:
        raise RecordError(f"images of {stored + holes + gaps} bytes ({holes} in holes, {gaps} zeros) exceed the "
                          f"reader limits for {model} bytes of tensors")
    for im in images:
        for h in im.holes:
            have = weight_holes.get(h.layer, set())
            if h.tensor != "weight" and (not have or (h.tensor in _SCALE_FAMILY and "i8" not in have)):
                raise RecordError(f"{im.name}: {h.tensor} hole of layer {h.layer} without the "
                                  f"{'int8 ' * (h.tensor in _SCALE_FAMILY)}weight hole it comes from")


def _name(table: dict[str, int], code: int) -> str:
    for k, v in table.items():
        if v == code:
            return k
    return f"<{code}>"  # rejected by Hole's validation
