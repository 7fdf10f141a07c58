"""The LZ format of packed graph bytes (inn_mobile/format/lz.py; C: csrc/inn_lz.c, covered by the shared
vectors' packed image and test_native's corrupt-stream test)."""

import random

import pytest

from inn_mobile.format import lz


def cases() -> dict[str, bytes]:
    rng = random.Random(3)
    noise = bytes(rng.randrange(256) for _ in range(5000))
    return {
        "empty": b"",
        "short": b"abc",
        "exactly one match": b"abcdabcd",
        "long zero run": bytes(300_000),
        "overlapping pattern": b"xy" * 40_000,
        "noise": noise,
        "noise then its copy far back": noise + bytes(70_000) + noise,
        "long literal run then matches": noise + noise[:3000] * 3,
    }


@pytest.mark.parametrize("name", sorted(cases()))
def test_round_trip(name):
    data = cases()[name]
    packed = lz.encode(data)
    assert lz.decode(packed, len(data)) == data


def test_repetitive_bytes_shrink_and_noise_barely_grows():
    c = cases()
    assert len(lz.encode(c["long zero run"])) < 1300  # one match: the length costs a byte per 255
    assert len(lz.encode(c["overlapping pattern"])) < 400
    assert len(lz.encode(c["noise"])) <= len(c["noise"]) + 25


def test_wrong_size_and_garbage_raise_lz_error_only():
    packed = lz.encode(b"hello hello hello hello")
    with pytest.raises(lz.LZError, match="promises"):
        lz.decode(packed, 24)
    with pytest.raises(lz.LZError):
        lz.decode(packed, 10)
    rng = random.Random(5)
    for _ in range(2000):
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
        try:
            lz.decode(junk, rng.randrange(0, 100))
        except lz.LZError:
            pass
