"""Malformed ``.innb`` bundles for the hostile-input tests, generated from one small valid bundle.

Nothing is committed: :func:`base_bundle` lowers a tiny network to LiteRT (about 10 s), and
:func:`corpus` derives a few hundred deterministic cases from it (and from the same bundle with int8
nodes): truncations, bit flips, inflated counts and sizes in every table and in the graph record,
and type-confused ``META``; edits are re-sealed (:func:`reseal`) so they get past the checksums to the
semantic checks. Also the edit helpers other bundle tests use (one definition each).
"""

from __future__ import annotations

import json
import random
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from inn_mobile.format.tables import Cascade  # torch-free, like this module's other imports

HEADER_SIZE = 64
ENTRY_SIZE = 32


def reseal(data: bytearray | bytes) -> bytes:
    """Recompute every CRC so an edit reaches the semantic checks behind the checksums, with the checksum the
    header's flags name (the Python twin of ``reseal`` in csrc/tests/bundle_edit.h; entries out of bounds are
    left as they are)."""
    from inn_mobile.format import bundle

    data = bytearray(data)
    if len(data) < HEADER_SIZE:
        return bytes(data)
    count, table = struct.unpack_from("<IQ", data, 12)
    crc = bundle.checksum(struct.unpack_from("<I", data, 32)[0])
    if count <= 64 and table + ENTRY_SIZE * count <= len(data):
        for i in range(count):
            off, size = struct.unpack_from("<QQ", data, table + ENTRY_SIZE * i + 8)
            if off + size <= len(data):
                struct.pack_into("<I", data, table + ENTRY_SIZE * i + 4, crc(data[off:off + size]))
        struct.pack_into("<I", data, 36, crc(data[table:table + ENTRY_SIZE * count]))
    struct.pack_into("<I", data, 60, zlib.crc32(data[:60]))
    return bytes(data)


def as_minor(data: bytes, minor: int) -> bytes:
    """``data`` as a writer of format 1.``minor`` wrote it: before 1.4 without the CRC-32C flag, every checksum
    zlib's CRC-32 (the sections are left as they are)."""
    from inn_mobile.format import vocab

    d = bytearray(data)
    struct.pack_into("<H", d, 6, minor)
    if minor < 4:
        struct.pack_into("<I", d, 32, struct.unpack_from("<I", d, 32)[0] & ~vocab.FLAG_CRC32C)
    return reseal(d)


def entry(data: bytes, tag: bytes) -> int:
    """Offset of the section table entry of ``tag``."""
    count, table = struct.unpack_from("<IQ", data, 12)
    for i in range(count):
        if data[table + ENTRY_SIZE * i: table + ENTRY_SIZE * i + 4] == tag:
            return table + ENTRY_SIZE * i
    raise KeyError(tag)


def section(data: bytes, tag: bytes) -> int:
    """Offset of the payload of section ``tag``."""
    return struct.unpack_from("<Q", data, entry(data, tag) + 8)[0]


def section_size(data: bytes, tag: bytes) -> int:
    return struct.unpack_from("<Q", data, entry(data, tag) + 16)[0]


def layer(data: bytes, i: int) -> int:
    """Offset of layer record ``i``."""
    return section(data, b"LAYR") + 8 + 64 * i


def put(data: bytes, offset: int, value: int, fmt: str = "<I") -> bytes:
    """``data`` with one little-endian field replaced, re-sealed."""
    d = bytearray(data)
    struct.pack_into(fmt, d, offset, value)
    return reseal(d)


def with_section(data: bytes, tag: bytes, payload: bytes) -> bytes:
    """``data`` re-packed with the payload of section ``tag`` replaced (sizes and CRCs consistent)."""
    from inn_mobile.format import bundle

    count, table = struct.unpack_from("<IQ", data, 12)
    flags = struct.unpack_from("<I", data, 32)[0]
    sections = []
    for i in range(count):
        t, _, off, size, elem, _ = struct.unpack_from("<4sIQQII", data, table + ENTRY_SIZE * i)
        sections.append((t, payload if t == tag else data[off:off + size], elem))
    return bundle._pack(sections, flags=flags)  # noqa: SLF001 - the writer's own layout, not a copy of it


def base_bundle() -> bytes:
    """A small valid bundle: a conv + BatchNorm + linear network at two widths, each with a LiteRT
    graph, pack-time measurements (so ``inn-mobile run`` gets to open the graph), an input shape, MACs
    per bucket and two confidence cascades (1.4)."""
    import torch

    from inn_mobile.core.convert import convert
    from inn_mobile.export import litert, macs
    from inn_mobile.format import bundle, runtime_file
    from inn_mobile.format.tables import Cascade

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 3)).eval()
    x = torch.randn(1, 1, 4, 4)
    im = convert(net, x)
    b = bundle.Bundle(im, bundle.make_buckets(im, (0.5, 1.0), multiple_of=1), {"input_shape": list(x.shape)})
    for k, bk in enumerate(b.buckets):
        images = litert.lower(im, bk, x)
        b.graphs[(k, "litert")] = runtime_file.encode_record(images)
        bk.info["runtimes"] = {"litert": {"weights_bytes": sum(h.size for i in images for h in i.holes),
                                          "file_bytes": sum(len(i.data) for i in images), "accuracy": 50.0 + k}}
    macs.count(b, x)
    b.cascades = [Cascade("fast", (0, 1), (0.75, 0.0), "max_prob", "accuracy_drop", 0.3, 50.5, 1000.0),
                  Cascade("by-hand", (1, 0), (0.5, 0.0), "margin")]
    return bundle.encode(b)


def with_cascades(path, cascades=None, bucket_macs=(3000, 2000, 1000)) -> bytes:
    """The bundle at ``path`` (the vectors: three buckets) with MACs per bucket and ``cascades`` (default: three
    covering both scores, every target and measured field: fast = steps 0-1, lean = 2-4, one = 5)."""
    from inn_mobile.format import bundle

    b = bundle.load(path)
    for bk, m in zip(b.buckets, bucket_macs):
        bk.macs = m
    b.cascades = list(CASCADES if cascades is None else cascades)
    return bundle.encode(b)


CASCADES = [Cascade("fast", (2, 0), (0.75, 0.0), "max_prob", "accuracy_drop", 0.3, 91.5, 1234.5),
            Cascade("lean", (2, 1, 0), (0.5, 0.25, 0.0), "margin", "mean_macs", 2000.0, None, 1999.0),
            Cascade("one", (1,), (0.0,))]


@dataclass(frozen=True)
class Case:
    name: str
    family: str  # truncation, flip, flip-unsealed, field, graph, meta
    data: bytes
    where: bytes = b""  # the section an edit landed in, where one did

    @property
    def meta_only(self) -> bool:
        """Only META changed: host metadata the C core never reads (the readers' one intended difference)."""
        return self.family == "meta" or (self.family == "flip" and self.where == b"META")


def assert_rejected_by_both(data: bytes, py_message: str, c_names: str | tuple[str, ...]) -> None:
    """Both readers refuse ``data``: the C core with one of the status names ``c_names``, the Python
    decoder with a ``BundleError`` whose message matches ``py_message``."""
    import pytest

    from inn_mobile import native
    from inn_mobile.format import bundle

    with pytest.raises(native.NativeError) as e:
        native.NativeBundle(data)
    assert e.value.name in ((c_names,) if isinstance(c_names, str) else c_names)
    with pytest.raises(bundle.BundleError, match=py_message):
        bundle.decode(data)


def section_at(data: bytes, offset: int) -> bytes:
    """The tag of the section whose payload holds byte ``offset`` (b"" for the header, table, padding)."""
    count, table = struct.unpack_from("<IQ", data, 12)
    for i in range(count):
        tag, _, off, size = struct.unpack_from("<4sIQQ", data, table + ENTRY_SIZE * i)
        if off <= offset < off + size:
            return tag
    return b""


# Values an attacker writes into counts and sizes: empty, one, signed and unsigned extremes, the
# readers' own limits and just past them.
HOSTILE = (0, 1, 2, 3, 0x7FFFFFFF, 0xFFFFFFFF, 0xFFFFFFFE, 1 << 24, (1 << 24) + 1, 1 << 16, 65540, 0x80000000)


def _u32_fields(data: bytes) -> Iterator[tuple[str, int]]:
    """(name, offset) of every u32 count, size and index in the tables a reader trusts."""
    for tag in (b"GRPS", b"LAYR", b"PIEC", b"BUCK", b"GIDX", b"INFO"):
        yield f"{tag.decode()}.count", section(data, tag)
    yield "BUCK.groups", section(data, b"BUCK") + 4
    for g in range(struct.unpack_from("<I", data, section(data, b"GRPS"))[0]):
        yield f"group {g} nodes", section(data, b"GRPS") + 8 + 8 * g
        yield f"group {g} flags", section(data, b"GRPS") + 12 + 8 * g
    for i in range(struct.unpack_from("<I", data, section(data, b"LAYR"))[0]):
        for k, field in enumerate(("kind", "blocks", "taps", "flags", "out piece", "out count", "in piece",
                                   "in count", "weight", "weight hi", "bias", "bias hi", "name", "name len",
                                   "weight scale", "bias scale")):
            yield f"layer {i} {field}", layer(data, i) + 4 * k
    buck = section(data, b"BUCK")
    n = struct.unpack_from("<II", data, buck)
    for j in range(2 * n[0] * n[1]):
        yield f"BUCK value {j}", buck + 8 + 4 * j
    for j in range(struct.unpack_from("<I", data, section(data, b"PIEC"))[0]):
        yield f"piece {j}", section(data, b"PIEC") + 8 + 4 * j
    yield "MACS.count", section(data, b"MACS")
    cscd = section(data, b"CSCD")
    yield "CSCD.count", cscd
    yield "CSCD.steps", cscd + 4
    n_cascades, n_steps = struct.unpack_from("<II", data, cscd)
    for i in range(n_cascades):
        for k, field in enumerate(("name", "name len", "score", "target", "first step", "step count", "flags",
                                   "reserved")):
            yield f"cascade {i} {field}", cscd + 8 + 56 * i + 4 * k
    for j in range(n_steps):
        yield f"cascade step {j} bucket", cscd + 8 + 56 * n_cascades + 8 * j
        yield f"cascade step {j} threshold", cscd + 8 + 56 * n_cascades + 8 * j + 4
    gidx = section(data, b"GIDX")
    for j in range(struct.unpack_from("<I", data, gidx)[0]):
        for k, field in ((0, "bucket"), (24, "offset"), (28, "offset hi"), (32, "size"), (36, "size hi")):
            yield f"graph {j} {field}", gidx + 8 + 40 * j + k


def _record_fields(data: bytes) -> Iterator[tuple[str, int]]:
    """(name, offset) of the u32/u64 fields of the first graph record: image header, spans, holes."""
    rec = section(data, b"BLOB") + struct.unpack_from("<Q", data, section(data, b"GIDX") + 8 + 24)[0]
    yield "record images", rec + 4
    head = rec + 8
    name_len, n_spans, n_holes = struct.unpack_from("<III", data, head)
    for k, field in enumerate(("name len", "spans", "holes", "packed", "size", "size hi")):
        yield f"image {field}", head + 4 * k
    spans = head + 24 + name_len + (-name_len % 8)
    for s in range(min(n_spans, 4)):
        yield f"span {s} offset", spans + 16 * s
        yield f"span {s} length", spans + 16 * s + 8
    holes = spans + 16 * n_spans
    for h in range(min(n_holes, 4)):
        for k, field in ((0, "offset"), (8, "size"), (16, "layer"), (20, "codes"), (24, "param")):
            yield f"hole {h} {field}", holes + 32 * h + k


def _meta_cases(data: bytes) -> Iterator[tuple[str, bytes]]:
    """META replaced by JSON of the wrong shape (and by bytes that are not JSON at all)."""
    meta = json.loads(bytes(data[section(data, b"META"):section(data, b"META") + section_size(data, b"META")]))

    def changed(edit: Callable[[dict], None]) -> bytes:
        m = json.loads(json.dumps(meta))
        edit(m)
        return json.dumps(m).encode()

    raw = {
        "list": b"[]", "string": b'"meta"', "number": b"7", "null": b"null", "not JSON": b"{meta",
        "not UTF-8": b'{"a": "\xff\xfe"}', "deeply nested": b"[" * 100000 + b"]" * 100000,
        "layers an object": changed(lambda m: m.update(layers={"a": 1})),
        "layer a number": changed(lambda m: m["layers"].__setitem__(0, 5)),
        "layer name a number": changed(lambda m: m["layers"][0].update(name=5)),
        "layer names repeated": changed(lambda m: m["layers"][1].update(name=m["layers"][0]["name"])),
        "conv a list": changed(lambda m: m["layers"][0].update(conv=[1, 2])),
        "in_spatial negative": changed(lambda m: m["layers"][0].update(in_spatial=-4)),
        "groups a string": changed(lambda m: m.update(groups="all")),
        "members a number": changed(lambda m: m["groups"][0].update(members=3)),
        "buckets an object": changed(lambda m: m.update(buckets={"w0500": {}})),
        "bucket name a list": changed(lambda m: m["buckets"][0].update(name=["w"])),
        "ratio a string": changed(lambda m: m["buckets"][0].update(ratio="half")),
        "info a list": changed(lambda m: m["buckets"][0].update(info=[])),
        "runtimes a list": changed(lambda m: m["buckets"][0]["info"].update(runtimes=[1])),
        "weights_bytes a string": changed(lambda m: m["buckets"][0]["info"]["runtimes"]["litert"].update(
            weights_bytes="many")),
        "weights_bytes negative": changed(lambda m: m["buckets"][1]["info"]["runtimes"]["litert"].update(
            weights_bytes=-1)),
        "accuracy NaN": changed(lambda m: m["buckets"][1]["info"]["runtimes"]["litert"].update(accuracy=float("nan"))),
        "input_shape negative": changed(lambda m: m.update(input_shape=[1, -1, 4, 4])),
        "input_shape a string": changed(lambda m: m.update(input_shape="1,1,4,4")),
        "input_shape empty": changed(lambda m: m.update(input_shape=[])),
    }
    for name, payload in raw.items():
        yield name, with_section(data, b"META", payload)


def corpus(good: bytes, good_i8: bytes, *, seed: int = 0) -> list[Case]:
    """Deterministic malformed variants of ``good`` (float32 nodes) and ``good_i8`` (int8 nodes)."""
    rng = random.Random(seed)
    cases: list[Case] = []
    for n in sorted({0, 3, 4, 40, 63, 64, 65, 100, len(good) // 2, len(good) - 64, len(good) - 1,
                     *rng.sample(range(len(good)), 14)}):
        cases.append(Case(f"truncated to {n}", "truncation", good[:n]))
        if n >= HEADER_SIZE:  # the header promises only what is left: the sections run off the end
            cases.append(Case(f"truncated to {n}, size re-sealed", "truncation", put(good[:n], 24, n, "<Q")))
    structural = [(section(good, t), section(good, t) + section_size(good, t))
                  for t in (b"GRPS", b"LAYR", b"PIEC", b"BUCK", b"GIDX", b"INFO", b"MACS", b"CSCD")]
    blob = section(good, b"BLOB")
    structural.append((blob, blob + min(256, section_size(good, b"BLOB"))))
    for src, label in ((good, "f32"), (good_i8, "i8")):
        for _ in range(40):
            at, bit = rng.randrange(len(src)), rng.randrange(8)
            d = bytearray(src)
            d[at] ^= 1 << bit
            cases.append(Case(f"{label}: bit {bit} of byte {at} flipped, re-sealed", "flip", reseal(d),
                              section_at(src, at)))
    for _ in range(60):
        lo, hi = rng.choice(structural)
        at, bit = rng.randrange(lo, hi), rng.randrange(8)
        d = bytearray(good)
        d[at] ^= 1 << bit
        cases.append(Case(f"table bit {bit} of byte {at} flipped, re-sealed", "flip", reseal(d), section_at(good, at)))
    for _ in range(8):
        at = rng.randrange(len(good))
        d = bytearray(good)
        d[at] ^= 0x55
        cases.append(Case(f"byte {at} changed, not re-sealed", "flip-unsealed", bytes(d)))
    fields = list(_u32_fields(good))
    for name, at in fields:
        for value in rng.sample(HOSTILE, 2):
            cases.append(Case(f"{name} = {value:#x}", "field", put(good, at, value)))
    for name, at in list(_u32_fields(good_i8))[:: 3]:
        cases.append(Case(f"i8: {name} = 0xffffffff", "field", put(good_i8, at, 0xFFFFFFFF)))
    nscl = section(good_i8, b"NSCL")
    cases.append(Case("i8: NaN scale", "field", put(good_i8, nscl, 0x7FC00000)))
    cases.append(Case("NaN node", "field", put(good, section(good, b"NODE") + 4, 0x7FC00000)))
    cases.append(Case("inf node", "field", put(good, section(good, b"NODE"), 0xFF800000)))
    for name, at in _record_fields(good):
        for value in rng.sample(HOSTILE, 3):
            cases.append(Case(f"graph record {name} = {value:#x}", "graph", put(good, at, value)))
    for name, data in _meta_cases(good):
        cases.append(Case(f"META {name}", "meta", data))
    return cases
