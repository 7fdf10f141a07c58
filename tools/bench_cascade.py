"""Input-adaptive width on the fine-tuned Fashion-MNIST reference: confidence cascades through the real runtime.

    python tools/bench_cascade.py [--model out/issue20/fmnist/switchable_e0.25_lr0.02_full_r1.innb]
        [--runtimes litert executorch] [--targets acc:0.3 acc:0.5 macs:50% macs:35%] [--calib 10000]

The model is the committed reference converted as ``tools/bench_switchable_bn.py`` converts it, with the
nodes and per-width norms its fine-tuning stored in ``--model`` (a bundle it wrote; the buckets are its
trained widths). ``export.pack.pack`` lowers every bucket for ``--runtimes`` (graph batch 1), counts each
bucket's MACs from the graph and calibrates one cascade per ``--targets`` entry on ``--calib`` images
at the end of the TRAINING set (never the test set; the reference and its fine-tuning trained on them
too, so they are held out from the test only), through the first runtime, with the top
softmax probability as confidence; the same targets are calibrated with the margin (top minus second)
for comparison. Then, on the 10,000 test images, per runtime: every bucket alone and every cascade
(``runtime.cascade.open_cascade``, each step materialised once): accuracy, average MACs per input
(exact: each input counts every step it ran) and measured latency per input (wall time over the test
set / 10,000, one thread). Also checked: the cascade's answers equal the simulation of its thresholds on
the buckets' own outputs. ``--png`` plots accuracy vs average MACs. Last, a diagnostic that is not a
result: the same targets with thresholds fit on the test set itself (an upper bound of what any
thresholds can do with these buckets; it says whether a miss is the calibration's or the model's).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_reference import load_reference  # noqa: E402

from inn_mobile import runtime  # noqa: E402
from inn_mobile.app import datasets, plotting  # noqa: E402
from inn_mobile.core.convert import convert  # noqa: E402
from inn_mobile.core.integral import IntegralModel  # noqa: E402
from inn_mobile.export import cascade as calib  # noqa: E402
from inn_mobile.export.pack import pack  # noqa: E402
from inn_mobile.format import bundle  # noqa: E402
from inn_mobile.runtime.cascade import open_cascade  # noqa: E402

DEFAULT_MODEL = Path("/work/main/out/issue20/fmnist/switchable_e0.25_lr0.02_full_r1.innb")


def fine_tuned(path: Path, x: torch.Tensor, xt: torch.Tensor) -> IntegralModel:
    """The reference converted as bench_switchable_bn converts it, with the fine-tuned nodes and norms of
    the bundle at ``path`` (which has no torch graph of its own)."""
    im = convert(load_reference(), xt[:2], calibration=x[:256])
    stored = bundle.load(path).model
    if set(stored.nodes) != set(im.nodes) or any(stored.nodes[k].shape != im.nodes[k].shape for k in im.nodes):
        raise ValueError(f"{path} does not hold nodes of the reference ResNet")
    with torch.no_grad():
        for k, v in stored.nodes.items():
            im.nodes[k].copy_(v)
    im.norms = stored.norms
    im.partitions = stored.partitions
    return im


def calibrated(args, x, y, xt, xc, yc, path: Path) -> bundle.Bundle:
    """The bundle packed for ``args.runtimes`` with one max-probability cascade per target, and the same
    targets calibrated with the margin on the same held-out outputs (first runtime); saved at ``path``."""
    im = fine_tuned(args.model, x, xt)
    t = time.time()
    b = pack(im, xt[:1], args.runtimes, validation=(xc, yc), cascades=args.targets, cascade_data=(xc, yc),
             cascade_score="max_prob")
    print(f"packed {len(b.buckets)} buckets for {args.runtimes} in {time.time() - t:.0f} s")
    macs = [bk.macs for bk in b.buckets]
    held_out = [runtime.open_model(bundle.encode(b), args.runtimes[0], k)(xc) for k in range(len(b.buckets))]
    for c in list(b.cascades):
        target = calib.Target(c.target, c.target_value)
        b.cascades.append(calib.calibrate(held_out, yc, macs, target, name=f"{c.name}-margin", score="margin"))
    args.out.mkdir(parents=True, exist_ok=True)
    bundle.save(b, path)
    return b


def timed(fn, x: torch.Tensor):
    t = time.perf_counter()
    out = fn(x)
    return out, (time.perf_counter() - t) * 1e3 / len(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--runtimes", nargs="+", default=["litert", "executorch"])
    ap.add_argument("--targets", nargs="+", default=["acc:0.3", "acc:0.5", "macs:50%", "macs:35%"])
    ap.add_argument("--calib", type=int, default=10000, help="last training images for the thresholds")
    ap.add_argument("--out", type=Path, default=Path("out/cascade"))
    ap.add_argument("--png", type=Path, default=Path("out/cascade/accuracy_vs_macs.png"))
    ap.add_argument("--reuse", action="store_true", help="measure the bundle a previous run saved in --out "
                    "instead of packing and calibrating again")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x, y = datasets.fashion_mnist("train")
    xt, yt = datasets.fashion_mnist("test")
    xc, yc = x[-args.calib:], y[-args.calib:]
    path = args.out / "fmnist_cascade.innb"
    if args.reuse:
        b = bundle.load(path)
    else:
        b = calibrated(args, x, y, xt, xc, yc, path)
    print("MACs per bucket: " + ", ".join(f"{bk.name} {bk.macs:,}" for bk in b.buckets))
    macs = [bk.macs for bk in b.buckets]
    widest = max(range(len(macs)), key=lambda k: macs[k])
    rows, results = [], {}
    first_outputs = []
    for rt in args.runtimes:
        bucket_out = first_outputs if rt == args.runtimes[0] else []
        for k, bk in enumerate(b.buckets):
            net = runtime.open_model(path, rt, k)
            out, ms = timed(net, xt)
            bucket_out.append(out)
            acc = 100.0 * float((out.argmax(1) == yt).double().mean())
            rows.append((rt, bk.name, "-", acc, float(macs[k]), ms))
        for c in b.cascades:
            model = open_cascade(path, rt, c.name)
            res, ms = timed(model.run, xt)
            acc = 100.0 * float((res.outputs.argmax(1) == yt).double().mean())
            mean = model.mean_macs(res.steps)
            sim = calib.evaluate(c, bucket_out, yt, macs)
            if not np.array_equal(sim.steps, res.steps) or abs(sim.accuracy - acc) > 1e-9:
                raise SystemExit(f"{rt} {c.name}: the cascade's answers differ from its simulation")
            shares = np.bincount(res.steps, minlength=len(c.buckets)) / len(yt) * 100
            steps = " > ".join(f"{b.buckets[k].name}@{t:.3f}" for k, t in zip(c.buckets, c.thresholds))
            rows.append((rt, c.name, f"{steps} (answered {'/'.join(f'{s:.0f}' for s in shares)}%)", acc, mean, ms))
            results[f"{rt}/{c.name}"] = {"calibration": {"accuracy": c.accuracy, "mean_macs": c.mean_macs}}
    print("\n| runtime | model | steps (threshold; share answered per step) | test accuracy % | vs widest (points) "
          "| mean MACs | vs widest MACs | latency ms/input |")
    print("|---|---|---|---|---|---|---|---|")
    base = {rt: next(r for r in rows if r[0] == rt and r[1] == b.buckets[widest].name) for rt in args.runtimes}
    for rt, name, steps, acc, mean, ms in rows:
        ref = base[rt]
        print(f"| {rt} | {name} | {steps} | {acc:.2f} | {acc - ref[3]:+.2f} | {mean:,.0f} | "
              f"{100 * (mean / ref[4] - 1):+.1f}% | {ms:.3f} |")
    print("\ncalibration (the last training images, first runtime): "
          + "; ".join(f"{c.name}: {c.accuracy:.2f}% at {c.mean_macs:,.0f} MACs" for c in b.cascades))
    oracle = {}
    for t in args.targets:
        for score in ("max_prob", "margin"):
            c = calib.calibrate(first_outputs, yt, macs, t, score=score)
            oracle[f"{t} {score}"] = (c.accuracy, c.mean_macs)
    print("\ndiagnostic, NOT a result (thresholds fit on the test set itself, first runtime): "
          + "; ".join(f"{k}: {a:.2f}% ({a - base[args.runtimes[0]][3]:+.2f}) at {m / macs[widest] - 1:+.1%} MACs"
                      for k, (a, m) in oracle.items()))
    doc = {"rows": rows, "cascades": results, "oracle": oracle}
    (args.out / "bench_cascade.json").write_text(json.dumps(doc, indent=1))
    plot(args.png, rows, args.runtimes[0])


def plot(path: Path, rows, rt: str) -> None:
    plt = plotting.pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    buckets = [(r[4], r[3], r[1]) for r in rows if r[0] == rt and r[2] == "-"]
    ax.plot([m / 1e6 for m, _, _ in buckets], [a for _, a, _ in buckets], marker="o", label="one width")
    for m, a, name in buckets:
        ax.annotate(name, (m / 1e6, a), fontsize=7)
    for marker, which in (("s", "max_prob"), ("^", "margin")):
        pts = [(r[4], r[3], r[1]) for r in rows if r[0] == rt and r[2] != "-"
               and (r[1].endswith("-margin") == (which == "margin"))]
        ax.scatter([m / 1e6 for m, _, _ in pts], [a for _, a, _ in pts], marker=marker, label=f"cascade ({which})")
        for m, a, name in pts:
            ax.annotate(name, (m / 1e6, a), fontsize=7)
    plotting.finish(fig, ax, path, xlabel="average MMACs per input", ylabel="Fashion-MNIST test accuracy (%)",
                    title=f"Confidence cascades vs single widths ({rt})", legend_size=8)


if __name__ == "__main__":
    main()
