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


def decode_record(data: bytes) -> list[StoredImage]:
    """Parse and validate a record (spans and holes in bounds, sorted, not overlapping)."""
    view = memoryview(data)
    if len(view) < 8 or bytes(view[:4]) != RECORD_MAGIC:
        raise RecordError("not a graph record (bad magic)")
    pos = 8

    def take(n: int) -> memoryview:
        nonlocal pos
        if n < 0 or pos + n > len(view):
            raise RecordError(f"record truncated at byte {pos} (needs {n} more)")
        pos += n
        return view[pos - n:pos]

    images = []
    for _ in range(struct.unpack_from("<I", view, 4)[0]):
        name_len, n_spans, n_holes, packed, size = _IMAGE_HEAD.unpack(take(_IMAGE_HEAD.size))
        name = bytes(take(name_len + (-name_len % 8))[:name_len]).decode("utf-8", "replace")
        spans = [_SPAN.unpack(take(_SPAN.size)) for _ in range(n_spans)]
        holes = []
        for _ in range(n_holes):
            off, hsize, layer, t, lay, dt, _, param, _ = _HOLE.unpack(take(_HOLE.size))
            try:
                holes.append(Hole(off, hsize, layer, _name(TENSORS, t), _name(LAYOUTS, lay), _name(DTYPES, dt), param))
            except ValueError as e:
                raise RecordError(f"{name}: {e}") from e
        ranges = sorted([(o, n) for o, n in spans] + [(h.offset, h.size) for h in holes])
        end = 0
        for o, n in ranges:
            if o < end or o + n > size:
                raise RecordError(f"{name}: span/hole at {o} (+{n}) overlaps or leaves the image ({size} bytes)")
            end = o + n
        total = sum(n for _, n in spans)
        stored = take(packed or total)
        take(-len(stored) % 8)
        if packed:
            try:
                stored = lz.decode(stored, total)
            except lz.LZError as e:
                raise RecordError(f"{name}: {e}") from e
        chunks, at = [], 0
        for o, n in spans:
            chunks.append((o, bytes(stored[at:at + n])))
            at += n
        images.append(StoredImage(name, size, chunks, holes))
    return images


def _name(table: dict[str, int], code: int) -> str:
    for k, v in table.items():
        if v == code:
            return k
    return f"<{code}>"  # rejected by Hole's validation
