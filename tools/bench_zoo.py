"""convert() on the models people ship: timm and HuggingFace architectures built by their own libraries.

    python tools/bench_zoo.py [--size 224] [--models resnet50 hf:ResNetConfig ...] [--threads 1]
    python tools/bench_zoo.py --ordering      # channel ordering: this code vs the previous 2-opt

Random init, batch 1. Per model: parameters, channel groups / resizable groups, convert seconds
(of which channel ordering), the full-width max error relative to max |output|, and at 50% width
the parameter fraction and whether the output is finite. Prints a Markdown table.

``--ordering`` compares the neighbour distance (mean |difference| between neighbouring channels'
normalised features, what ``convert(...).smoothness`` reports) and the path length on the Fashion-MNIST
reference ResNet (tools/checkpoints/resnet_fmnist.pt), against the full 2-opt of the commit given
by ``--before`` (read with ``git show``), and times the largest group of timm's resnet50.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from zoo_compat import ensure_torchvision, import_timm  # noqa: E402

from inn_mobile.app import zoo  # noqa: E402
from inn_mobile.core import convert as convert_module  # noqa: E402
from inn_mobile.core import permute  # noqa: E402
from inn_mobile.core.convert import convert  # noqa: E402

MODELS = [
    "resnet18", "resnet50", "mobilenetv2_100", "mobilenetv3_small_100", "mobilenetv3_large_100", "efficientnet_b0",
    "efficientnet_lite0", "tf_efficientnet_lite0", "mnasnet_100", "regnety_002", "densenet121", "repvgg_a0",
    "lcnet_050", "ghostnet_100", "convnext_atto", "mobilevit_xxs", "hf:ResNetConfig", "hf:MobileNetV2Config",
    "hf:ConvNextConfig",
]


def build(name: str) -> torch.nn.Module:
    return zoo.load(name) if name.startswith("hf:") else zoo.timm_model(name)


def _timed_ordering() -> list[float]:
    """Wrap the ordering convert() calls so its seconds can be reported apart."""
    spent: list[float] = []
    original = convert_module.smooth_order

    def timed(features):
        t = time.perf_counter()
        out = original(features)
        spent.append(time.perf_counter() - t)
        return out

    convert_module.smooth_order = timed
    return spent


def params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@torch.no_grad()
def row(name: str, size: int, spent: list[float]) -> str:
    torch.manual_seed(0)
    model = build(name).eval()
    x = torch.randn(1, 3, size, size)
    spent.clear()
    t = time.perf_counter()
    im = convert(model, x)
    seconds = time.perf_counter() - t
    y = model(x)
    err = float((im.resize(1.0)(x) - y).abs().max() / y.abs().max())
    half = im.resize(0.5)
    out = half(x)
    g = im.channel_graph.groups
    return (f"| {name} | {params(model) / 1e6:.2f}M | {len(g)} / {sum(x.resizable for x in g)} | "
            f"{seconds:.1f} ({sum(spent):.1f}, largest group {max(spent, default=0):.2f}) | {err:.1e} | "
            f"{params(half) / params(model):.2f} | {'yes' if bool(torch.isfinite(out).all()) else 'NO'} |")


def ordering(before: str) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from train_reference import load_reference

    from inn_mobile.core import kernel

    src = subprocess.run(["git", "show", f"{before}:inn_mobile/core/permute.py"], capture_output=True, text=True,
                         check=True).stdout
    spec = importlib.util.spec_from_loader("permute_before", loader=None)
    old = importlib.util.module_from_spec(spec)
    exec(src, old.__dict__)  # the previous implementation, as committed
    model = load_reference()
    feats: list[torch.Tensor] = []
    original = convert_module.smooth_order
    convert_module.smooth_order = lambda f: (feats.append(torch.from_numpy(f.copy())), original(f))[1]
    convert(model, torch.randn(2, 1, 28, 28))
    convert_module.smooth_order = original
    rows = {"before": [0.0, 0.0, 0.0, 0.0], "now": [0.0, 0.0, 0.0, 0.0]}
    for f in feats:
        dist = permute.distances(f.numpy())
        for label, fn in (("before", old.smooth_order), ("now", permute.smooth_order)):
            t = time.perf_counter()
            order = fn(f.numpy())
            rows[label][0] += time.perf_counter() - t
            rows[label][1] += kernel.total_variation(f[torch.from_numpy(order)]) / len(feats)
            rows[label][2] += permute.path_length(dist, order)
        rows["now"][3] = rows["before"][3] = kernel.total_variation(f) / len(feats) + rows["now"][3]
    print(f"Fashion-MNIST reference ResNet, {len(feats)} groups ({max(f.shape[0] for f in feats)} channels max):\n")
    print("| ordering | seconds | mean neighbour distance (unordered) | total path length |")
    print("|---|---|---|---|")
    for label, (sec, tv, length, tv0) in rows.items():
        name = f"{before} (full 2-opt)" if label == "before" else "neighbour-list 2-opt"
        print(f"| {name} | {sec:.2f} | {tv:.5f} ({tv0:.5f}) | {length:.3f} |")
    spent = _timed_ordering()
    torch.manual_seed(0)
    model = build("resnet50")
    t = time.perf_counter()
    convert(model, torch.randn(1, 3, 224, 224))
    print(f"\ntimm resnet50 at 224x224: convert {time.perf_counter() - t:.1f} s, ordering {sum(spent):.1f} s, "
          f"largest group (2048 channels) {max(spent):.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=224, help="input height and width (default: %(default)s)")
    ap.add_argument("--models", nargs="+", default=MODELS, help="timm names or hf:<config or class>")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s; a shared "
                    "2-core machine slows down badly when every process takes two)")
    ap.add_argument("--ordering", action="store_true", help="compare channel ordering with --before instead")
    ap.add_argument("--before", default="86b8d99", help="commit with the previous ordering (default: %(default)s)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ensure_torchvision()
    import_timm()
    if args.ordering:
        return ordering(args.before)
    spent = _timed_ordering()
    print(f"input 1x3x{args.size}x{args.size}, random init, {args.threads} thread(s)\n")
    print("| model | params | groups / resizable | convert s (ordering s) | full-width error | "
          "params at 50% | finite at 50% |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models:
        try:
            print(row(name, args.size, spent), flush=True)
        except Exception as e:  # noqa: BLE001 - a failing model is a row of the table, not the end of it
            print(f"| {name} | FAILED: {type(e).__name__}: {str(e).splitlines()[0][:150]} | | | | | |", flush=True)


if __name__ == "__main__":
    main()
