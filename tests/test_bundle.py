"""The .innb container: round trips, and bad input rejected with a specific error by both readers."""

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from inn_mobile import native
from inn_mobile.format import bundle

VECTORS = Path(__file__).parent / "vectors"
GOOD = (VECTORS / "vectors.innb").read_bytes()
GOOD_I8 = (VECTORS / "vectors_i8.innb").read_bytes()  # the same model with int8 nodes + NSCL scales


def reseal(data: bytearray) -> bytes:
    """Recompute every CRC so an edit reaches the semantic checks behind the checksums."""
    count, table = struct.unpack_from("<IQ", data, 12)
    for i in range(count):
        off, size = struct.unpack_from("<QQ", data, table + 32 * i + 8)
        struct.pack_into("<I", data, table + 32 * i + 4, zlib.crc32(data[off:off + size]))
    struct.pack_into("<I", data, 36, zlib.crc32(data[table:table + 32 * count]))
    struct.pack_into("<I", data, 60, zlib.crc32(data[:60]))
    return bytes(data)


def entry(data: bytes, tag: bytes) -> int:
    """Offset of the section table entry of ``tag``."""
    count, table = struct.unpack_from("<IQ", data, 12)
    for i in range(count):
        if data[table + 32 * i: table + 32 * i + 4] == tag:
            return table + 32 * i
    raise KeyError(tag)


def section(data: bytes, tag: bytes) -> int:
    return struct.unpack_from("<Q", data, entry(data, tag) + 8)[0]


def edited(offset_of, value: int, good: bytes = GOOD) -> bytes:
    d = bytearray(good)
    struct.pack_into("<I", d, offset_of(good), value)
    return reseal(d)


BAD = {
    "truncated": (GOOD[:1000], "truncated", "TRUNCATED"),
    "header only": (GOOD[:40], "truncated", "TRUNCATED"),
    "bit flip": (GOOD[:300] + bytes([GOOD[300] ^ 0x10]) + GOOD[301:], "checksum", "CHECKSUM"),
    "wrong magic": (b"PK\x03\x04" + GOOD[4:], "magic", "MAGIC"),
    "wrong version": (edited(lambda d: 4, 7), "version", "VERSION"),
    "oversized dimension": (edited(lambda d: section(d, b"GRPS") + 8, 1 << 25), "out of range", "RANGE"),
    "overflowing count": (edited(lambda d: section(d, b"LAYR"), 0xFFFFFFFF), "declares", ("TRUNCATED", "OVERFLOW")),
    "unsorted partition": (edited(lambda d: section(d, b"PART") + 4, 0x40000000), "partition", "PARTITION"),
    "missing group": (edited(lambda d: section(d, b"PIEC") + 8, 999), "out of range", "RANGE"),
    "unknown node type": (edited(lambda d: entry(d, b"NODE") + 24, 9), "element type", "FORMAT"),
    "int8 nodes without scales": (edited(lambda d: entry(d, b"NSCL"), int.from_bytes(b"XSCL", "little"), GOOD_I8),
                                  "missing section NSCL", "MISSING"),
    "int8 scales past NSCL": (edited(lambda d: section(d, b"LAYR") + 8 + 56, 1 << 20, GOOD_I8), "scales past",
                              "RANGE"),
    # per-width normalisation (NORM records: bucket, layer, first, reserved; the vectors' first two are
    # bucket 0's layers 0 and 2)
    "unknown feature flag": (edited(lambda d: 32, 3), "feature flags", "VERSION"),
    "norm without the flag": (edited(lambda d: 32, 0), "without the header flag", "FORMAT"),
    "flag without norm": (edited(lambda d: entry(d, b"NORM"), int.from_bytes(b"XORM", "little")),
                          "missing section NORM", "MISSING"),
    "norm on a missing layer": (edited(lambda d: section(d, b"NORM") + 8 + 4, 99), "out of range", "RANGE"),
    "norm records repeated": (edited(lambda d: section(d, b"NORM") + 8 + 16 + 4, 0), "out of order", "FORMAT"),
    "norm on an affine layer": (edited(lambda d: section(d, b"NORM") + 8 + 4, 1), "needs a conv", "FORMAT"),
    "norm past NRMV": (edited(lambda d: section(d, b"NORM") + 8 + 8, 1 << 20), "past the NRMV", "RANGE"),
    "non-finite norm": (edited(lambda d: section(d, b"NRMV"), 0x7F800000), "non-finite", "FORMAT"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_bundles_give_specific_errors(case):
    data, py_message, c_names = BAD[case]
    with pytest.raises(native.NativeError) as e:
        native.NativeBundle(data)
    assert e.value.name in ((c_names,) if isinstance(c_names, str) else c_names)
    with pytest.raises(bundle.BundleError, match=py_message):
        bundle.decode(data)


def test_round_trip_keeps_everything():
    b = bundle.load(VECTORS / "vectors.innb")
    again = bundle.decode(bundle.encode(b))
    assert [x.sizes for x in again.buckets] == [x.sizes for x in b.buckets]
    assert [x.name for x in again.buckets] == [x.name for x in b.buckets]
    assert again.model.layers == b.model.layers
    assert again.model.partitions.keys() == b.model.partitions.keys()
    assert b.model.norms and again.model.norms.keys() == b.model.norms.keys()
    for key, layers in b.model.norms.items():
        assert layers.keys() == again.model.norms[key].keys()
        for name, (a, c) in layers.items():
            assert torch.equal(again.model.norms[key][name][0], a) and torch.equal(again.model.norms[key][name][1], c)
    for k in b.model.nodes:
        assert torch.equal(again.model.nodes[k], b.model.nodes[k])
    for k in range(len(b.buckets)):
        w1, w2 = b.weights(k), again.weights(k)
        for name in w1:
            for t in w1[name]:
                assert torch.equal(w1[name][t], w2[name][t])


def test_graph_blobs_and_alignment(tmp_path):
    b = bundle.load(VECTORS / "vectors.innb")
    b.graphs = {(0, "xnn"): b"graph-zero" * 7, (2, "tfl"): bytes(range(200))}
    path = tmp_path / "g.innb"
    size = bundle.save(b, path)
    data = path.read_bytes()
    assert size == len(data) and not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
    count, table = struct.unpack_from("<IQ", data, 12)
    for i in range(count):
        assert struct.unpack_from("<Q", data, table + 32 * i + 8)[0] % 64 == 0
    assert bundle.decode(data).graphs == b.graphs
    native.NativeBundle(data)  # unknown sections are fine for the C reader


def test_f16_nodes_halve_the_bundle():
    b = bundle.load(VECTORS / "vectors.innb")
    f32, f16 = bundle.encode(b), bundle.encode(b, node_dtype="f16")
    n_nodes = sum(v.numel() for v in b.model.nodes.values())
    assert len(f32) - len(f16) >= 2 * n_nodes - 128
    w = bundle.decode(f16).model.nodes
    for k, v in b.model.nodes.items():
        assert np.allclose(w[k].detach().numpy(), v.detach().numpy(), rtol=1e-3, atol=1e-4)


def test_i8_nodes_quarter_the_bundle_and_dequantise_per_row():
    b = bundle.load(VECTORS / "vectors.innb")
    f32, i8 = bundle.encode(b), bundle.encode(b, node_dtype="i8")
    n_nodes = sum(v.numel() for v in b.model.nodes.values())
    rows = sum(v.shape[0] for v in b.model.nodes.values())
    assert len(i8) <= len(f32) - 3 * n_nodes + 4 * rows + 128  # 1 byte per node + 4 per row's scale
    w = bundle.decode(i8).model.nodes
    for k, v in b.model.nodes.items():
        rows_max = v.detach().reshape(v.shape[0], -1).abs().amax(1)
        err = (w[k] - v.detach()).reshape(v.shape[0], -1).abs().amax(1)
        assert torch.all(err <= rows_max / 254 * 1.0001 + 1e-12), k  # half a step of max|row| / 127
