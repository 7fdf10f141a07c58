"""Write the shared C/Python test vectors: tests/vectors/vectors.innb + tests/vectors/expected.bin.

    python tools/make_test_vectors.py

The bundle covers every layer kind (dense conv, grouped conv, depthwise, linear after flatten,
standalone BatchNorm, biases), uniform and trained (non-uniform) partitions, and several widths;
expected.bin holds the Python reference's output for every (bucket, layer, layout, dtype). The C
test program (csrc/tests/test_core.c) and tests/test_native.py both check against these files, so
the two implementations cannot drift apart silently.

expected.bin records, little-endian: u32 bucket, u32 layer, u32 layout, u32 dtype, u64 weight bytes,
weight, u64 scale bytes, scales, u64 bias bytes, bias.

Each bucket also carries a graph record (runtime ``vectors``) whose images hold every kind of
hole (f32 weights in every layout, int8 weights at odd offsets, scales, f32 and int32 biases, bias
scales) between stored bytes and long zero runs; the third image's stored bytes are repetitive, so
the record packs them (LZ); expected_graphs.bin holds the images the Python
reference rebuilds: u32 bucket, u32 image, u64 size, bytes.

The same files with the suffix ``_i8`` hold the model with int8 nodes (NODE element type 3 + NSCL).

Buckets carry names and ratios (BKIN) and pack-time costs (COST) with every combination of measured
fields, one byte count past 2^32 and a runtime name of the full 16 bytes; test_core.c checks them.

Every bucket has per-width normalisation (NORM + NRMV) on some of its layers with a bias (a
different subset per bucket, a depthwise layer included), so the vectors cover weights scaled and
biases shifted after resampling, before int8 quantisation.
"""

from __future__ import annotations

import struct
from pathlib import Path

import torch
from torch import nn

from inn_mobile.core import kernel
from inn_mobile.core.convert import convert
from inn_mobile.core.integral import sizes_key
from inn_mobile.format import bundle, reference, runtime_file

OUT = Path(__file__).resolve().parent.parent / "tests" / "vectors"
LAYOUT_CODES = {"oit": 0, "oti": 1, "ito": 2}
RUNTIME = "vectors"
SETS = (("", "f32"), ("_i8", "i8"))  # file suffix, node storage: the same model twice
# per bucket: {runtime: measurements} (csrc/tests/test_core.c checks these values)
COSTS = (
    {RUNTIME: {"weights_bytes": 5000, "file_bytes": 7000, "arena_bytes": 900, "accuracy": 97.25}},
    {RUNTIME: {"weights_bytes": 3000, "accuracy": 91.125}},
    {RUNTIME: {}, "sixteen-chars-rt": {"weights_bytes": (1 << 40) + 3, "arena_bytes": 0}},
)


class VectorNet(nn.Module):
    """Tiny, but with every layer kind the core handles."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 12, 3, padding=1)
        self.act = nn.ReLU()
        self.norm = nn.BatchNorm2d(12)  # after ReLU: stays a standalone affine layer
        self.dw = nn.Conv2d(12, 12, 3, padding=1, groups=12)
        self.grouped = nn.Conv2d(12, 16, 1, groups=2)
        self.side = nn.Conv2d(12, 8, 1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(24 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.act(self.stem(x)))
        y = self.act(self.dw(x))
        z = torch.cat([self.grouped(y), self.side(x)], 1)
        return self.fc(torch.flatten(self.pool(z), 1))


def build() -> bundle.Bundle:
    torch.manual_seed(1234)
    net = VectorNet()
    with torch.no_grad():
        net.norm.running_mean.uniform_(-0.5, 0.5)
        net.norm.running_var.uniform_(0.5, 2.0)
    im = convert(net.eval(), torch.randn(2, 3, 8, 8))
    buckets = [bundle.Bucket(f"r{r}", im.sizes_at(r), r) for r in (1.0, 0.75, 0.5)]
    # a trained-looking, non-uniform partition for every resizable group at 75% width
    g = torch.Generator().manual_seed(7)
    for gid, n in buckets[1].sizes.items():
        if im.groups[gid].resizable:
            im.partitions[(gid, n)] = kernel.partition_from_deltas(torch.rand(n - 1, generator=g) + 0.3).float()
    with_bias = [s for s in im.layers if s.has_bias and s.kind != "affine"]
    for k, bk in enumerate(buckets):  # per-width normalisation on a different subset of layers per bucket
        sizes = im.check_sizes(bk.sizes)
        im.norms[sizes_key(sizes)] = {
            s.name: (torch.rand(n, generator=g) + 0.5, torch.rand(n, generator=g) * 0.4 - 0.2)
            for j, s in enumerate(with_bias) if (j + k) % 3 != 2 for n in [s.out_channels(sizes)]}
    b = bundle.Bundle(im, buckets, meta={"purpose": "shared C/Python test vectors"})
    for bk, runtimes in zip(buckets, COSTS):
        bk.info["runtimes"] = runtimes
    for k in range(len(buckets)):
        b.graphs[(k, RUNTIME)] = runtime_file.encode_record(graph_images(b, k, g))
    return b


def graph_images(b: bundle.Bundle, k: int, g: torch.Generator) -> list[runtime_file.Image]:
    """Two images per bucket with every hole kind, separated by random bytes and zero runs."""
    weights = b.weights(k)
    images = []
    def noise(n: int) -> bytes:
        return torch.randint(0, 256, (n,), generator=g, dtype=torch.uint8).numpy().tobytes()

    def structured(n: int) -> bytes:  # repetitive, like a graph's tables: the record packs it (LZ)
        return (b"op:conv2d;shape=[" + noise(3) + b"];") * (n // 20 + 1)

    for name, kinds, filler in (
            ("a.bin", [("weight", "oit", "f32"), ("bias", "oit", "f32"), ("weight", "ito", "f32")], noise),
            ("b.bin", [("weight", "oti", "i8"), ("scale", "oit", "f32"), ("bias_i32", "oit", "i32"),
                       ("bias_scale", "oit", "f32")], noise),
            ("c.bin", [("weight", "oti", "f32"), ("bias", "oit", "f32")], structured)):
        data, holes = bytearray(torch.randint(1, 256, (13,), generator=g, dtype=torch.uint8).numpy().tobytes()), []
        for layer, spec in enumerate(b.model.layers):
            for tensor, layout, dtype in kinds:
                if spec.kind == "affine" and (dtype != "f32" or tensor not in ("weight", "bias")):
                    continue
                hole = runtime_file.Hole(len(data), 1, layer, tensor, layout, dtype, param=0.037)
                size = len(reference.hole_bytes(weights[spec.name], spec.kind, hole, spec.taps))
                if dtype != "i8":
                    data += bytes(-len(data) % 4)
                holes.append(runtime_file.Hole(len(data), size, layer, tensor, layout, dtype, param=0.037))
                data += noise(size)
                data += bytes(70) + filler(40)  # a zero run the record skips, and stored bytes
        images.append(runtime_file.Image(name, bytes(data), holes))
    return images


def expected_graphs(b: bundle.Bundle) -> bytes:
    out = bytearray()
    for k in range(len(b.buckets)):
        for i, data in enumerate(reference.fill(b, k, RUNTIME).values()):
            out += struct.pack("<IIQ", k, i, len(data)) + data
    return bytes(out)


def expected_records(b: bundle.Bundle) -> bytes:
    out = bytearray()
    for k, layout, dtype, layer, w, scales, bias in reference.every_case(b):
        out += struct.pack("<IIII", k, layer, LAYOUT_CODES[layout], 1 if dtype == "i8" else 0)
        for arr in (w, scales, bias):
            raw = b"" if arr is None else arr.tobytes()
            out += struct.pack("<Q", len(raw)) + raw
    return bytes(out)


def main() -> None:
    b = build()
    OUT.mkdir(parents=True, exist_ok=True)
    for suffix, node_dtype in SETS:
        path = OUT / f"vectors{suffix}.innb"
        size = bundle.save(b, path, node_dtype=node_dtype)
        written = bundle.decode(path.read_bytes())
        (OUT / f"expected{suffix}.bin").write_bytes(expected_records(written))
        (OUT / f"expected_graphs{suffix}.bin").write_bytes(expected_graphs(written))
        print(f"wrote {path} ({size} bytes, {node_dtype} nodes), expected{suffix}.bin and expected_graphs{suffix}.bin")


if __name__ == "__main__":
    main()
