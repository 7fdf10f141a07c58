"""Write the demo app's assets: a bundle with LiteRT graphs for four widths, and a sample image.

    .venv/bin/python android_demo/make_assets.py          # from the repository root, ~1 minute

Trains the small ResNet of `inn-mobile demo` on scikit-learn's digits, converts it and packs every width
bucket as a LiteRT graph whose weights are holes (inn_mobile.export.pack), which records per bucket what the
app's width policy reads (the bundle's binary COST table, `Bucket.info["runtimes"]["litert"]` here; see
inn_mobile/runtime/policy.py): accuracy on the 500 held-out digits measured with LiteRT on the graph the C core
filled, weights_bytes and arena_bytes.
Then writes app/src/main/assets/{model.innb, sample.png, sample.json}.
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import torch

ASSETS = Path(__file__).resolve().parent / "app" / "src" / "main" / "assets"
MEAN, STD = 0.3, 0.4  # inn_mobile.datasets.digits: x = (pixel / 16 - 0.3) / 0.4


def png_gray(pixels: np.ndarray) -> bytes:
    """A minimal 8-bit grayscale PNG (no imaging library needed)."""
    h, w = pixels.shape
    raw = b"".join(b"\0" + bytes(row) for row in pixels.astype(np.uint8))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def main() -> int:
    from inn_mobile.app import datasets, models
    from inn_mobile.core.convert import convert
    from inn_mobile.export import litert, pack
    from inn_mobile.format import bundle
    from inn_mobile.train import supervised

    torch.manual_seed(0)
    x, y, xt, yt = datasets.digits()
    model = models.resnet(widths=(16, 32), blocks=(1, 1))
    supervised.fit(model, x, y, epochs=12, batch=64, lr=0.05, augmentation=False, desc="training")
    im = convert(model.eval(), x[:2], calibration=x[:256])
    buckets = bundle.make_buckets(im, (0.5, 0.75, 0.875, 1.0), multiple_of=1)
    b = pack.pack(im, x[:1], [litert.RUNTIME], buckets=buckets, validation=(xt, yt),
                  meta={"model": "digits-resnet", "input": {"mean": MEAN, "std": STD}})
    for bk in b.buckets:
        info = bk.info["runtimes"][litert.RUNTIME]
        print(f"{bk.name}: {info['accuracy']:.1f}% on {len(yt)} test digits, {info['weights_bytes']} B weights, "
              f"{info['arena_bytes']} B activations")
    ASSETS.mkdir(parents=True, exist_ok=True)
    size = bundle.save(b, ASSETS / "model.innb")
    pixel = ((xt[0, 0] * STD + MEAN) * 255).round().clamp(0, 255).numpy()
    (ASSETS / "sample.png").write_bytes(png_gray(pixel))
    (ASSETS / "sample.json").write_text(json.dumps({
        "runtime": litert.RUNTIME, "label": int(yt[0]), "mean": MEAN, "std": STD,
        "source": "scikit-learn digits, first held-out image"}, indent=2) + "\n")
    print(f"wrote {ASSETS}/model.innb ({size} bytes), sample.png (label {int(yt[0])}), sample.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
