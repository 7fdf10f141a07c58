"""Write the demo app's assets: a bundle with LiteRT graphs for four widths, and a sample image.

    .venv/bin/python android_demo/make_assets.py          # from the repository root, ~1 minute

Trains the small ResNet of `inn-mobile demo` on scikit-learn's digits, converts it, lowers every width
bucket to a `.tflite` whose weights are holes (inn_mobile.export.litert), and records per bucket what
the app's width policy reads (META `info["runtimes"]["litert"]`, see inn_mobile/policy.py):
  accuracy       % on the 500 held-out digits, measured with LiteRT on the graph the C core filled
  weights_bytes  the filled .tflite's size (the Interpreter holds the whole file)
  arena_bytes    every operator output + the input (no memory reuse assumed: an upper bound)
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
MEAN, STD = 0.3, 0.4  # inn_mobile.data.digits: x = (pixel / 16 - 0.3) / 0.4


def png_gray(pixels: np.ndarray) -> bytes:
    """A minimal 8-bit grayscale PNG (no imaging library needed)."""
    h, w = pixels.shape
    raw = b"".join(b"\0" + bytes(row) for row in pixels.astype(np.uint8))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def litert_stats(model_bytes: bytes, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
    """(accuracy %, activation bytes) of a .tflite on (x, y), one image at a time as on the phone."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_content=bytes(model_bytes), num_threads=2)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    correct = 0
    for xi, yi in zip(x, y):
        it.set_tensor(inp["index"], xi[None].numpy())
        it.invoke()
        correct += int(it.get_tensor(out["index"]).argmax() == int(yi))
    # Activations: every operator's output plus the input, read from the plain (undelegated) graph.
    plain = Interpreter(model_content=bytes(model_bytes),
                        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    plain.allocate_tensors()
    produced = {inp["index"]} | {i for op in plain._get_ops_details() for i in op["outputs"]}  # noqa: SLF001
    arena = sum(int(np.prod(t["shape"])) * np.dtype(t["dtype"]).itemsize for t in plain.get_tensor_details()
                if t["index"] in produced)
    return 100.0 * correct / len(y), arena


def main() -> int:
    from inn_mobile import bundle, data, image, models, native, train
    from inn_mobile.convert import convert
    from inn_mobile.export import litert

    torch.manual_seed(0)
    x, y, xt, yt = data.digits()
    model = models.resnet(widths=(16, 32), blocks=(1, 1))
    train.fit(model, x, y, epochs=12, batch=64, lr=0.05, augmentation=False, desc="training")
    im = convert(model.eval(), x[:2], calibration=x[:256])
    buckets = bundle.make_buckets(im, (0.5, 0.75, 0.875, 1.0), multiple_of=1)
    b = bundle.Bundle(im, buckets, meta={"model": "digits-resnet", "input": {"mean": MEAN, "std": STD}})
    for k, bk in enumerate(buckets):
        b.graphs[(k, litert.RUNTIME)] = image.encode_record(litert.lower(im, bk, x[:1]))
    # Measure each bucket on the graph the C core fills, exactly what the phone will run.
    nb = native.NativeBundle(bundle.encode(b))
    for k, bk in enumerate(buckets):
        filled = nb.fill(k, litert.RUNTIME)[litert.FILE_NAME]
        acc, arena = litert_stats(filled, xt, yt)
        bk.info["runtimes"] = {litert.RUNTIME: {"accuracy": round(acc, 2), "weights_bytes": len(filled),
                                                "arena_bytes": arena}}
        print(f"{bk.name}: {acc:.1f}% on {len(yt)} test digits, {len(filled)} B model, {arena} B activations")
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
