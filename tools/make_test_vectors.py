"""Write the shared C/Python test vectors: tests/vectors/vectors.innb + tests/vectors/expected.bin.

    python tools/make_test_vectors.py

The bundle covers every layer kind (dense conv, grouped conv, depthwise, linear after flatten,
standalone BatchNorm, biases), uniform and trained (non-uniform) partitions, and several widths;
expected.bin holds the Python reference's output for every (bucket, layer, layout, dtype). The C
test program (csrc/tests/test_core.c) and tests/test_native.py both check against these files, so
the two implementations cannot drift apart silently.

expected.bin records, little-endian: u32 bucket, u32 layer, u32 layout, u32 dtype, u64 weight bytes,
weight, u64 scale bytes, scales, u64 bias bytes, bias.
"""

from __future__ import annotations

import struct
from pathlib import Path

import torch
from torch import nn

from inn_mobile import bundle, kernel, reference
from inn_mobile.convert import convert

OUT = Path(__file__).resolve().parent.parent / "tests" / "vectors"
LAYOUT_CODES = {"oit": 0, "oti": 1, "ito": 2}


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
    return bundle.Bundle(im, buckets, meta={"purpose": "shared C/Python test vectors"})


def expected_records(b: bundle.Bundle) -> bytes:
    out = bytearray()
    for k in range(len(b.buckets)):
        for layout in reference.LAYOUTS:
            for dtype in ("f32", "i8"):
                for layer, (w, scales, bias) in enumerate(reference.materialize(b, k, layout=layout, dtype=dtype)):
                    if b.model.layers[layer].kind == "affine" and dtype == "i8":
                        continue
                    out += struct.pack("<IIII", k, layer, LAYOUT_CODES[layout], 1 if dtype == "i8" else 0)
                    for arr in (w, scales, bias):
                        raw = b"" if arr is None else arr.tobytes()
                        out += struct.pack("<Q", len(raw)) + raw
    return bytes(out)


def main() -> None:
    b = build()
    OUT.mkdir(parents=True, exist_ok=True)
    size = bundle.save(b, OUT / "vectors.innb")
    (OUT / "expected.bin").write_bytes(expected_records(bundle.decode((OUT / "vectors.innb").read_bytes())))
    print(f"wrote {OUT / 'vectors.innb'} ({size} bytes) and expected.bin")


if __name__ == "__main__":
    main()
