"""Real datasets available offline: Fashion-MNIST (Debian package) and scikit-learn's digits."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

FASHION_DIR = Path(os.environ.get("INN_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))


def fashion_mnist_available() -> bool:
    return (FASHION_DIR / "t10k-images-idx3-ubyte.gz").exists()


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    if data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_mnist(split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST ``(images [N, 1, 28, 28] float in [0, 1] normalised, labels [N])``.

    Needs the Debian package ``dataset-fashion-mnist`` (``apt-get install dataset-fashion-mnist``) or
    ``INN_FASHION_MNIST`` pointing at a folder of the four ``*-ubyte.gz`` files.
    """
    prefix = {"train": "train", "test": "t10k"}[split]
    if not fashion_mnist_available():
        raise FileNotFoundError(
            f"Fashion-MNIST not found in {FASHION_DIR}; run `apt-get install dataset-fashion-mnist` "
            "or set INN_FASHION_MNIST to a folder with the IDX files")
    images = _idx(FASHION_DIR / f"{prefix}-images-idx3-ubyte.gz")
    labels = _idx(FASHION_DIR / f"{prefix}-labels-idx1-ubyte.gz")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return (x - 0.2860) / 0.3530, torch.from_numpy(labels.astype(np.int64))


def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits, split 1,297 train / 500 test: ``(x_train, y_train, x_test, y_test)``."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy((d.images / 16.0).astype(np.float32)).unsqueeze(1)
    y = torch.from_numpy(d.target.astype(np.int64))
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(y), generator=g)
    x, y = (x - 0.3) / 0.4, y
    train, test = perm[:-500], perm[-500:]
    return x[train], y[train], x[test], y[test]
