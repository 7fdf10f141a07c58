"""Train the Fashion-MNIST reference ResNet and save it to tools/checkpoints/ (committed).

    python tools/train_reference.py [--epochs 6] [--out tools/checkpoints/resnet_fmnist.pt]

On our 2-core CPU this takes about 20 minutes; the benchmarks reuse the checkpoint.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from inn_mobile.app import datasets, models
from inn_mobile.metrics import accuracy
from inn_mobile.train import supervised

CHECKPOINT = Path(__file__).parent / "checkpoints" / "resnet_fmnist.pt"
ARCH = dict(widths=(16, 32, 64), blocks=(2, 2, 2))


def load_reference(path: Path = CHECKPOINT) -> torch.nn.Module:
    """The committed reference ResNet (raises with the command to make it if missing)."""
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: run `python tools/train_reference.py`")
    model = models.resnet(**ARCH)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=float, default=6.0)
    ap.add_argument("--out", type=Path, default=CHECKPOINT)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    x, y = datasets.fashion_mnist("train")
    xt, yt = datasets.fashion_mnist("test")
    model = models.resnet(**ARCH)
    t = time.time()
    supervised.fit(model, x, y, epochs=args.epochs, seed=args.seed, desc="reference")
    acc = accuracy(model, xt, yt)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(args.out)
    print(f"trained {args.epochs} epochs in {time.time() - t:.0f} s; test accuracy {acc:.2f}% -> {args.out}")


if __name__ == "__main__":
    main()
