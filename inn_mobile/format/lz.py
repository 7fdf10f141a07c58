"""A small LZ77 byte format for the stored bytes of graph records (FORMAT.md "Packed spans").

Runtime files keep a lot of repeated structure around their weights (flatbuffer tables, tensor
names, per-op headers); packing it makes a bundle of int8 graphs cost little more than its int8
nodes. The format is chosen for a decoder of a few dozen lines in the dependency-free C core
(``inn_lz.c``), not for ratio: a sequence is

    token (u8): literal count in the high nibble, match length - 4 in the low nibble
    [255 ... n]  more literal count when the nibble is 15 (bytes added until one is < 255)
    literals
    u16 distance (1..65535, little-endian), then [255 ... n] more match length when its nibble is 15

and the stream ends right after the literals of its last sequence (which has no match). Matches may
overlap the bytes they produce (distance < length repeats a pattern).
"""

from __future__ import annotations

from inn_mobile.errors import BundleError

MIN_MATCH = 4
WINDOW = 65535


class LZError(BundleError):
    """A packed stream that does not decode to the promised size."""


def _count(value: int) -> bytes:
    """The extension bytes of a count whose nibble was 15 (``value`` = count - 15)."""
    out = bytearray()
    while value >= 255:
        out.append(255)
        value -= 255
    out.append(value)
    return bytes(out)


def _match_length(data: bytes, a: int, b: int) -> int:
    """Common prefix length of ``data[a:]`` and ``data[b:]`` (a < b), compared in growing chunks."""
    n, length, step = len(data) - b, 0, 8
    while length < n:
        step = min(step, n - length)
        if data[a + length:a + length + step] == data[b + length:b + length + step]:
            length += step
            step *= 2
        elif step > 1:
            step = 1
        else:
            break
    return length


def encode(data: bytes, *, chain: int = 16) -> bytes:
    """Greedy LZ77, the longest of the last ``chain`` positions with the same 4 bytes; a long
    zero or repeated run costs a few bytes. ``decode(encode(x), len(x)) == x``."""
    data = bytes(data)
    out = bytearray()
    seen: dict[bytes, list[int]] = {}
    lit_start, i, n = 0, 0, len(data)

    def remember(j: int) -> list[int]:
        where = seen.setdefault(data[j:j + MIN_MATCH], [])
        where.append(j)
        if len(where) > chain:
            del where[0]
        return where

    while i + MIN_MATCH <= n:
        where = seen.get(data[i:i + MIN_MATCH], [])
        best, best_at = 0, 0
        for cand in reversed(where):
            if i - cand > WINDOW:
                break
            length = _match_length(data, cand, i)
            if length > best:
                best, best_at = length, cand
        remember(i)
        if best < MIN_MATCH:
            i += 1
            continue
        _sequence(out, data[lit_start:i], i - best_at, best)
        for j in range(i + 1, min(i + best, n - MIN_MATCH + 1)):
            remember(j)
        i += best
        lit_start = i
    _sequence(out, data[lit_start:])
    return bytes(out)


def _sequence(out: bytearray, literals: bytes, distance: int = 0, length: int = MIN_MATCH) -> None:
    """One sequence; ``distance`` 0: the last one (literals only)."""
    m = length - MIN_MATCH
    out.append(min(len(literals), 15) << 4 | min(m, 15))
    if len(literals) >= 15:
        out += _count(len(literals) - 15)
    out += literals
    if distance:
        out += distance.to_bytes(2, "little")
        if m >= 15:
            out += _count(m - 15)


def decode(packed: bytes, size: int) -> bytes:
    """Unpack exactly ``size`` bytes (the reference of ``inn_lz_decode``); raises :class:`LZError`."""
    src, out, p = memoryview(packed), bytearray(), 0

    def count(nibble: int) -> int:
        nonlocal p
        if nibble < 15:
            return nibble
        while True:
            if p >= len(src):
                raise LZError("packed stream truncated in a length")
            b = src[p]
            p += 1
            nibble += b
            if b < 255:
                return nibble

    while True:
        if p >= len(src):
            raise LZError("packed stream truncated before a token")
        token = src[p]
        p += 1
        lit = count(token >> 4)
        if lit > len(src) - p or len(out) + lit > size:
            raise LZError("packed literals past the stream or the promised size")
        out += src[p:p + lit]
        p += lit
        if p == len(src):
            break
        if p + 2 > len(src):
            raise LZError("packed stream truncated in a distance")
        dist = src[p] | src[p + 1] << 8
        p += 2
        length = count(token & 15) + MIN_MATCH
        if dist == 0 or dist > len(out) or len(out) + length > size:
            raise LZError(f"packed match (distance {dist}, length {length}) outside the output")
        start = len(out) - dist
        while length > 0:  # overlapping copies repeat the last `dist` bytes
            chunk = out[start:start + min(length, dist)]
            out += chunk
            start += len(chunk)
            length -= len(chunk)
    if len(out) != size:
        raise LZError(f"packed stream gives {len(out)} bytes, the record promises {size}")
    return bytes(out)
