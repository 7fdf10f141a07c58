"""``inn-mobile demo``: the whole product in one run, on real data, on this machine.

Train (or load) a small CNN, convert it to an INN, fine-tune it briefly so every width works
(integral fine-tuning, sandwich rule over the bucket widths, each with its own normalisation that
the bundle carries and the C core folds into the weights), pack one bundle for every installed runtime
(measuring each width's accuracy, weight bytes and activation arena), then play three devices with
different memory budgets: each chooses its width with the policy, materialises it through the C
core, runs it and reports what it got. (``inn-mobile profile`` measures a real device's peaks.)
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from inn_mobile import runtime
from inn_mobile.app import datasets, models, plotting
from inn_mobile.core.convert import convert
from inn_mobile.export import pack
from inn_mobile.format import bundle
from inn_mobile.metrics import accuracy
from inn_mobile.runtime import policy
from inn_mobile.train import finetune, supervised

REFERENCE = Path(__file__).resolve().parents[1] / "tools" / "checkpoints" / "resnet_fmnist.pt"
BUCKET_MULTIPLE = 8  # channel counts of the buckets (and of the fine-tuned widths) round to this


@dataclass
class Dataset:
    name: str
    x: torch.Tensor
    y: torch.Tensor
    xt: torch.Tensor
    yt: torch.Tensor


def load_dataset(name: str) -> Dataset:
    if name == "fashion-mnist":
        x, y = datasets.fashion_mnist("train")
        xt, yt = datasets.fashion_mnist("test")
        return Dataset(name, x, y, xt, yt)
    return Dataset("digits", *datasets.digits())


def trained_model(ds: Dataset, epochs: float) -> torch.nn.Module:
    """The reference Fashion-MNIST ResNet when its checkpoint is here, else a small ResNet trained now."""
    torch.manual_seed(0)
    if ds.name == "fashion-mnist" and REFERENCE.exists():
        model = models.resnet(widths=(16, 32, 64), blocks=(2, 2, 2))
        model.load_state_dict(torch.load(REFERENCE, weights_only=True))
        print(f"loaded the reference ResNet from {REFERENCE}")
        return model.eval()
    model = models.resnet(widths=(16, 32), blocks=(1, 1))
    t = time.time()
    supervised.fit(model, ds.x, ds.y, epochs=epochs, batch=64, lr=0.05, augmentation=False, desc="training")
    print(f"trained a small ResNet on {ds.name} in {time.time() - t:.1f} s")
    return model.eval()


def _finetune(im, ds: Dataset, buckets: list[bundle.Bucket], epochs: float) -> None:
    """Integral fine-tuning over exactly the bucket widths, each with its own normalisation
    (``switchable=True``), so the narrow buckets keep their accuracy."""
    def accs() -> str:
        return ", ".join(f"{b.name} {accuracy(im.resize(sizes=b.sizes), ds.xt, ds.yt):.1f}%" for b in buckets)

    before = accs()
    t = time.time()
    cfg = finetune.FinetuneConfig(epochs=epochs, batch=64, lr=1e-2, augmentation=False, switchable=True,
                                  widths=tuple(b.ratio or 1.0 for b in buckets), multiple_of=BUCKET_MULTIPLE,
                                  calibration=1024)
    finetune.fit(im, (ds.x, ds.y), cfg)
    print(f"\nintegral fine-tuning, {epochs:g} epochs in {time.time() - t:.1f} s (torch, before packing):\n"
          f"  before: {before}\n  after:  {accs()}")


def devices(cands: list[policy.Candidate]) -> list[tuple[str, int]]:
    """Three devices whose model memory budgets are the smallest bucket's need, the median one's and
    twice the largest (needs measured at pack time: weights written + activation arena)."""
    needs = sorted(c.memory_bytes for c in cands)
    return [("low-end phone", needs[0]), ("mid-range phone", needs[len(needs) // 2]), ("flagship phone", 2 * needs[-1])]


def run(args: argparse.Namespace) -> int:
    rts = [rt for rt in runtime.installed() if args.int8 or not rt.endswith("-i8")]
    if not rts:
        print("error: no runtime installed: pip install 'inn-mobile[litert]' or 'inn-mobile[executorch]'")
        return 2
    ds = load_dataset(args.dataset)
    print(f"{ds.name}: {len(ds.y)} train / {len(ds.yt)} test images {tuple(ds.x.shape[1:])}")
    model = trained_model(ds, args.epochs)
    print(f"original model: {accuracy(model, ds.xt, ds.yt):.2f}% test accuracy")
    im = convert(model, ds.x[:2], calibration=ds.x[:256])
    print("\nchannel groups found by tracing:\n" + im.channel_graph.table())
    buckets = bundle.make_buckets(im, args.ratios, multiple_of=BUCKET_MULTIPLE)
    epochs = args.finetune_epochs if args.finetune_epochs is not None else (10.0 if ds.name == "digits" else 0.0)
    if epochs > 0:
        _finetune(im, ds, buckets, epochs)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t = time.time()
    b = pack.pack(im, ds.x[:args.batch], rts, buckets=buckets, calibration=ds.x[:256],
                  validation=(ds.xt, ds.yt), meta={"model": f"{ds.name}-resnet"}, path=out)
    size = out.stat().st_size
    print(f"\npacked {len(buckets)} widths x {rts} in {time.time() - t:.1f} s: {out} ({size} bytes)")
    primary = rts[0]
    cands = policy.candidates(b, primary)
    print(f"\nwhat each width needs and gives ({primary}, measured while packing):\n" + policy.describe(cands))
    print("\n| device | memory budget | chosen width | bundle bytes | weights bytes | startup ms | latency ms | "
          "accuracy % |\n|---|---|---|---|---|---|---|---|")
    for name, budget in devices(cands):
        try:
            choice = policy.choose(cands, budget)
        except policy.BudgetError as e:
            print(f"| {name} | {budget / 1024:.1f} KiB | none: {e} | | | | | |")
            continue
        t = time.perf_counter()
        net = runtime.open_model(out, primary, choice.bucket)
        startup = (time.perf_counter() - t) * 1e3
        x = ds.xt[:args.batch]
        net(x)  # warm-up: first runs allocate
        t = time.perf_counter()
        for _ in range(20):
            net(x)
        latency = (time.perf_counter() - t) * 1e3 / 20
        info = b.buckets[b.bucket_index(choice.bucket)].info["runtimes"][primary]
        print(f"| {name} | {budget / 1024:.1f} KiB | {choice.bucket} | {size} | {info['weights_bytes']} | "
              f"{startup:.1f} | {latency:.2f} | {accuracy(net, ds.xt, ds.yt):.2f} |")
    _plot(b, rts, out.with_suffix(".png"))
    return 0


def _plot(b: bundle.Bundle, rts: list[str], path: Path) -> None:
    """Accuracy and weight bytes vs width, one line per runtime."""
    plt = plotting.pyplot()
    if plt is None:
        return
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    widths = [100 * (bk.ratio or 1.0) for bk in b.buckets]
    for rt in rts:
        infos = [bk.info["runtimes"][rt] for bk in b.buckets]
        a1.plot(widths, [i["accuracy"] for i in infos], "o-", label=rt)
        a2.plot(widths, [i["weights_bytes"] / 1024 for i in infos], "o-", label=rt)
    a1.set(xlabel="width %", ylabel="test accuracy %", title="accuracy vs width")
    a2.set(xlabel="width %", ylabel="weights KiB", title="weights written at load vs width")
    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.legend()
    fig.tight_layout()
    plotting.save(fig, path)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=("digits", "fashion-mnist"), default="digits",
                   help="digits (scikit-learn, fast) or fashion-mnist (Debian dataset-fashion-mnist; "
                        "uses the reference checkpoint)")
    p.add_argument("--out", default="out/demo.innb", help="bundle to write (default: %(default)s)")
    p.add_argument("--epochs", type=float, default=12.0, help="training epochs on digits (default: %(default)s)")
    p.add_argument("--ratios", type=float, nargs="+", default=[0.5, 0.75, 1.0],
                   help="bucket widths as fractions (default: %(default)s)")
    p.add_argument("--finetune-epochs", type=float, default=None,
                   help="integral fine-tuning epochs after conversion (default: 10 on digits, 0 on fashion-mnist, "
                        "where it takes about 20 min per epoch on 2 cores)")
    p.add_argument("--batch", type=int, default=1, help="graph batch size (default: %(default)s)")
    p.add_argument("--int8", action="store_true", help="also pack the int8 graphs (calibrated per bucket)")
