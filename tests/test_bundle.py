"""The .innb container: round trips, and bad input rejected with a specific error by both readers."""

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from corpus import assert_rejected_by_both, entry, layer, put, section

from inn_mobile import atomic, native
from inn_mobile.format import bundle, vocab

VECTORS = Path(__file__).parent / "vectors"
GOOD = (VECTORS / "vectors.innb").read_bytes()
GOOD_I8 = (VECTORS / "vectors_i8.innb").read_bytes()  # the same model with int8 nodes + NSCL scales


def edited(offset_of, value: int, good: bytes = GOOD, fmt: str = "<I") -> bytes:
    return put(good, offset_of(good), value, fmt)


def bkin(d: bytes, k: int) -> int:
    """Offset of bucket k's BKIN record (name offset, name length, flags, reserved, f64 ratio)."""
    return section(d, b"BKIN") + 8 + 24 * k


def cost(d: bytes, i: int) -> int:
    """Offset of COST row i (bucket, flags, runtime[16], weights, file, arena bytes, f64 accuracy). The vectors'
    rows: (0, "vectors") all four fields, (1, "vectors") weights + accuracy, (2, "sixteen-chars-rt"), (2, "vectors")."""
    return section(d, b"COST") + 8 + 56 * i


def name_byte(d: bytes, offset_field: int) -> int:
    """Offset in NAME of the first byte of the name whose offset is stored at ``offset_field``."""
    return section(d, b"NAME") + struct.unpack_from("<I", d, offset_field)[0]


NAN64 = 0x7FF8000000000000


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
    "unknown feature flag": (edited(lambda d: 32, 7), "feature flags", "VERSION"),
    "norm without the flag": (edited(lambda d: 32, vocab.FLAG_CRC32C), "without the header flag", "FORMAT"),
    "flag without norm": (edited(lambda d: entry(d, b"NORM"), int.from_bytes(b"XORM", "little")),
                          "missing section NORM", "MISSING"),
    "norm on a missing layer": (edited(lambda d: section(d, b"NORM") + 8 + 4, 99), "out of range", "RANGE"),
    "norm records repeated": (edited(lambda d: section(d, b"NORM") + 8 + 16 + 4, 0), "out of order", "FORMAT"),
    "norm on an affine layer": (edited(lambda d: section(d, b"NORM") + 8 + 4, 1), "needs a conv", "FORMAT"),
    "norm past NRMV": (edited(lambda d: section(d, b"NORM") + 8 + 8, 1 << 20), "past the NRMV", "RANGE"),
    "non-finite norm": (edited(lambda d: section(d, b"NRMV"), 0x7F800000), "non-finite", "FORMAT"),
    # what the Python reader used to accept or choke on while the C reader rejected it (layer record:
    # kind, blocks, taps, flags, out piece, out count, in piece, in count, ..., name offset at 48)
    "no blocks": (edited(lambda d: layer(d, 0) + 4, 0), "0 blocks", "RANGE"),
    "no taps": (edited(lambda d: layer(d, 0) + 8, 0), "0 taps", "RANGE"),
    "no output pieces": (edited(lambda d: layer(d, 0) + 20, 0), "pieces", "RANGE"),
    "name past NAME": (edited(lambda d: layer(d, 5) + 48, 1 << 20), "name past the NAME", "RANGE"),
    "NaN node": (edited(lambda d: section(d, b"NODE") + 8, 0x7FC00000), "inf or NaN", "FORMAT"),
    "inf int8 scale": (edited(lambda d: section(d, b"NSCL") + 4, 0xFF800000, GOOD_I8), "inf or NaN", "FORMAT"),
    "header size": (edited(lambda d: 8, 128), "header size", "FORMAT"),
    # a group of 6 nodes sampled at 97 points: more than 16 per node (a 690 KB file asked for 576 TiB)
    "bucket upsamples past the limit": (edited(lambda d: section(d, b"BUCK") + 8 + 4, 6 * 16 + 1), "out of range",
                                        "RANGE"),
    # 1.3: names in NAME (layers and buckets), BKIN and COST, checked alike by both readers
    "layer name not UTF-8": (edited(lambda d: name_byte(d, layer(d, 0) + 48), 0xFF, fmt="<B"), "not UTF-8", "FORMAT"),
    "bucket name not UTF-8": (edited(lambda d: name_byte(d, bkin(d, 1)), 0xC0, fmt="<B"), "not UTF-8", "FORMAT"),
    "bucket name past NAME": (edited(lambda d: bkin(d, 0), 1 << 20), "name past the NAME", "RANGE"),
    "BKIN count not the buckets": (edited(lambda d: section(d, b"BKIN"), 2), "BKIN has 2 records", "FORMAT"),
    "BKIN count past the section": (edited(lambda d: section(d, b"BKIN"), 1 << 20), "declares", "TRUNCATED"),
    "unknown bucket flag": (edited(lambda d: bkin(d, 0) + 8, 3), "BKIN record 0", "FORMAT"),
    "BKIN reserved": (edited(lambda d: bkin(d, 2) + 12, 1), "BKIN record 2", "FORMAT"),
    "NaN ratio": (edited(lambda d: bkin(d, 1) + 16, NAN64, fmt="<Q"), "BKIN record 1", "FORMAT"),
    "ratio without its flag": (edited(lambda d: bkin(d, 0) + 8, 0), "BKIN record 0", "FORMAT"),
    "cost of a missing bucket": (edited(lambda d: cost(d, 0), 9), "COST row 0 names bucket 9", "RANGE"),
    "unknown cost flag": (edited(lambda d: cost(d, 0) + 4, 31), "COST row 0", "FORMAT"),
    "unmeasured cost not zero": (edited(lambda d: cost(d, 1) + 32, 5), "COST row 1", "FORMAT"),
    "NaN accuracy": (edited(lambda d: cost(d, 0) + 48, NAN64, fmt="<Q"), "COST row 0", "FORMAT"),
    "runtime not NUL-padded": (edited(lambda d: cost(d, 3) + 8 + 12, ord("x"), fmt="<B"), "COST row 3", "FORMAT"),
    "empty runtime name": (edited(lambda d: cost(d, 3) + 8, 0, fmt="<Q"), "COST row 3", "FORMAT"),
    "runtime not UTF-8": (edited(lambda d: cost(d, 2) + 8, 0xFF, fmt="<B"), "COST row 2", "FORMAT"),
    "cost rows repeated": (edited(lambda d: cost(d, 1), 0), "out of order or not unique", "FORMAT"),
    "COST count past the section": (edited(lambda d: section(d, b"COST"), 1000), "declares", "TRUNCATED"),
    # no groups and 2^32-1 buckets of zero groups each: the Python reader looped for hours
    "no groups, 2^32-1 buckets": (edited(lambda d: section(d, b"BUCK"), 0xFFFFFFFF,
                                         edited(lambda d: section(d, b"BUCK") + 4, 0,
                                                edited(lambda d: section(d, b"GRPS"), 0))),
                                  "at least one group", "FORMAT"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_bundles_give_specific_errors(case):
    assert_rejected_by_both(*BAD[case])


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


def test_save_never_follows_a_planted_temp_symlink(tmp_path):
    """The old writer wrote a fixed ``<out>.tmp``: a symlink planted there overwrote its target."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "m.innb"
    (tmp_path / "m.innb.tmp").symlink_to(victim)
    bundle.save(bundle.load(VECTORS / "vectors.innb"), out)
    assert victim.read_text() == "precious" and out.read_bytes() == bundle.encode(bundle.decode(out.read_bytes()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.innb", "m.innb.tmp", "victim.txt"]
    assert out.stat().st_mode & 0o777 == 0o666 & ~atomic._UMASK  # noqa: SLF001 - the mode open() would give


def test_failed_writes_leave_the_old_file_and_no_temp(tmp_path):
    out = tmp_path / "profile.json"
    out.write_text("old")
    with pytest.raises(RuntimeError, match="mid-write"), atomic.replace(out) as f:
        f.write(b"partial")
        raise RuntimeError("mid-write")
    assert out.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["profile.json"]
    with pytest.raises(IsADirectoryError):
        atomic.write_bytes(tmp_path, b"x")  # a folder named as the output
    with pytest.raises(FileNotFoundError):
        atomic.write_bytes(tmp_path / "missing" / "m.innb", b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["profile.json"]


# -------------------------------------------------------------------------------- checksums (1.4: CRC-32C)
LEGACY = (VECTORS / "legacy_1_3.innb").read_bytes()  # vectors.innb as the 1.3 writer wrote it (CRC-32)
ISCSI = {b"": 0, bytes(32): 0x8A9136AA, b"\xff" * 32: 0x62A8AB43, bytes(range(32)): 0x46DD794E}  # RFC 3720 B.4


def test_crc32c_known_answers_in_python_and_c():
    assert bundle.crc32c(b"123456789") == 0xE3069283 == native.lib().inn_crc32c(b"123456789", 9)
    for data, want in ISCSI.items():
        assert bundle.crc32c(data) == want == native.lib().inn_crc32c(data, len(data))
    rng = np.random.default_rng(0)
    for n in (1, 7, 8, 9, 24575, 24576, 24577, 3 * 3 * 8192 + 13, 1 << 20):  # around the C core's 3 x 8 KiB lanes
        data = rng.integers(0, 256, n + 8, np.uint8).tobytes()
        for off in (0, 3):
            part = data[off:off + n]
            assert native.lib().inn_crc32c(part, n) == bundle.crc32c(part), (n, off)
    assert bundle.crc32c(memoryview(b"0123456789")[1:]) == 0xE3069283  # any buffer, not only bytes


def test_new_bundles_are_1_4_with_crc32c_checksums():
    flags, table_crc = struct.unpack_from("<II", GOOD, 32)
    count, table = struct.unpack_from("<IQ", GOOD, 12)
    assert (1, 4) == struct.unpack_from("<HH", GOOD, 4) and flags & vocab.FLAG_CRC32C
    assert table_crc == bundle.crc32c(GOOD[table:table + 32 * count])
    for i in range(count):
        crc, off, size = struct.unpack_from("<IQQ", GOOD, table + 32 * i + 4)
        assert crc == bundle.crc32c(GOOD[off:off + size]) != zlib.crc32(GOOD[off:off + size])


@pytest.mark.parametrize("good", [GOOD, LEGACY], ids=["1.4-crc32c", "1.3-crc32"])
def test_a_flipped_byte_in_any_section_or_the_table_is_rejected_by_both_readers(good):
    count, table = struct.unpack_from("<IQ", good, 12)
    places = {"table": table + 32 * count - 1}
    for i in range(count):
        tag, off, size = struct.unpack_from("<4s4xQQ", good, table + 32 * i)
        places.update({f"{tag.decode()} first": off, f"{tag.decode()} last": off + size - 1})
    for where, at in places.items():
        bad = bytearray(good)
        bad[at] ^= 0x40
        with pytest.raises(native.NativeError) as e:
            native.NativeBundle(bytes(bad))
        assert e.value.name == "CHECKSUM", where
        with pytest.raises(bundle.BundleError, match="checksum"):
            bundle.decode(bytes(bad))


def test_1_3_bundles_still_open_with_the_same_weights():
    assert struct.unpack_from("<HHI", LEGACY, 4)[1] == 3 and not struct.unpack_from("<I", LEGACY, 32)[0] & 2
    old, new = native.NativeBundle(LEGACY), native.NativeBundle(GOOD)
    for k in range(new.bucket_count):
        for i in range(new.layer_count):
            for a, b in zip(old.materialize(k, i), new.materialize(k, i)):
                assert (a is None and b is None) or a.tobytes() == b.tobytes()
        assert old.fill(k, "vectors") == new.fill(k, "vectors")
    assert bundle.encode(bundle.decode(LEGACY)) == GOOD  # the Python reader reads it, the writer writes 1.4


def test_the_flag_chooses_the_checksum():
    """A header that says CRC-32 over CRC-32C checksums (and the reverse) fails the table's checksum."""
    for good, flip in ((GOOD, ~vocab.FLAG_CRC32C), (LEGACY, vocab.FLAG_CRC32C)):
        bad = bytearray(good)
        flags = struct.unpack_from("<I", bad, 32)[0]
        struct.pack_into("<I", bad, 32, flags & flip if flip < 0 else flags | flip)
        struct.pack_into("<I", bad, 60, zlib.crc32(bad[:60]))
        with pytest.raises(native.NativeError) as e:
            native.NativeBundle(bytes(bad))
        assert e.value.name == "CHECKSUM"
        with pytest.raises(bundle.BundleError, match="section table is corrupted"):
            bundle.decode(bytes(bad))
