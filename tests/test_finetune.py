"""Integral fine-tuning and partition tuning on real data (scikit-learn digits), small and fast."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from parity import assert_core_weights_equal_torch

from inn_mobile import native
from inn_mobile.core import kernel
from inn_mobile.core.convert import convert
from inn_mobile.core.integral import sizes_key
from inn_mobile.core.width_forward import WidthForward
from inn_mobile.format import bundle, reference
from inn_mobile.metrics import accuracy
from inn_mobile.train import finetune
from inn_mobile.train.partitions import recalibrate, tune_partitions
from inn_mobile.train.switchable import SwitchableNorm, width_ratio

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def digits_im(digits_model, digits_data):
    x = digits_data[0]
    return convert(digits_model, x[:2], calibration=x[:256])


def test_width_forward_matches_resize_and_reaches_nodes(digits_im, digits_data):
    """The differentiable forward is the resized network, and gradients reach every node."""
    x, y = digits_data[0][:32], digits_data[1][:32]
    sizes = digits_im.sizes_at(0.5)
    fw = WidthForward(digits_im)
    with torch.no_grad():
        assert torch.equal(fw(x, sizes), digits_im.resize(sizes=sizes)(x))
    torch.nn.functional.cross_entropy(fw(x, sizes), y).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in digits_im.nodes.values())


def test_released_widths_keep_their_graphs_within_the_budget(digits_im, digits_data):
    """A released width's graph comes back on a redraw (no rebuild) while the released graphs fit the byte
    budget; past it the least recently released is dropped and rebuilt when drawn again, computing the same."""
    x = digits_data[0][:8]
    half, quarter = digits_im.sizes_at(0.5), digits_im.sizes_at(0.25)
    fw = WidthForward(digits_im)
    first = fw.graph(half)
    fw.release(half)
    assert fw.graph(half) is first  # kept
    fw.release(half)
    fw.release(half)  # releasing a width not in use: nothing happens
    one = sum(t.numel() * t.element_size() for t in [*first.parameters(), *first.buffers()])
    tight = WidthForward(digits_im, keep_released=one)  # room for the half width's graph alone
    a = tight.graph(half)
    tight.release(half)
    assert tight.graph(half) is a  # within the budget
    tight.release(half)
    q = tight.graph(quarter)
    tight.release(quarter)  # over the budget: the older release (half) is dropped, the quarter one fits
    assert tight.graph(quarter) is q
    assert tight.graph(half) is not a
    with torch.no_grad():
        assert torch.equal(tight(x, half), digits_im.resize(sizes=half)(x))
    none = WidthForward(digits_im, keep_released=0)
    b = none.graph(quarter)
    none.release(quarter)
    assert none.graph(quarter) is not b


def test_partitions_stay_valid_under_training(digits_im, digits_data):
    """A large step size still leaves every partition sorted, in [0, 1], with fixed ends; and they move."""
    x, y = digits_data[0][:256], digits_data[1][:256]
    before = {k: v.detach().clone() for k, v in digits_im.nodes.items()}
    parts = tune_partitions(digits_im, x, y, ratio=0.5, steps=15, lr=0.5, batch=64, keep_if_worse=True)
    assert parts and all((g, n) in digits_im.partitions for g, n in parts)
    for (_gid, n), p in parts.items():
        kernel.check_partition(p)
        assert p.dtype == torch.float32 and p.numel() == n
        assert p[0] == 0.0 and p[-1] == 1.0 and bool((p >= 0).all() and (p <= 1).all())
        assert not torch.allclose(p.double(), kernel.uniform_partition(n), atol=1e-3), "partition did not train"
    assert all(torch.equal(v, digits_im.nodes[k]) for k, v in before.items())  # nodes frozen


def test_resume_gives_the_same_state(digits_model, digits_data, tmp_path):
    """Stopping mid-epoch and resuming from the checkpoint ends bit-identical to one straight run."""
    x, y = digits_data[0][:320], digits_data[1][:320]
    cfg = finetune.FinetuneConfig(epochs=2.0, batch=64, lr=1e-2, augmentation=True)  # 2 x 5 steps
    straight = convert(digits_model, x[:2])
    finetune.fit(straight, (x, y), cfg, checkpoint=tmp_path / "a.pt")
    resumed = convert(digits_model, x[:2])
    finetune.fit(resumed, (x, y), cfg, checkpoint=tmp_path / "b.pt", max_steps=7)  # 2 batches into epoch 2
    again = convert(digits_model, x[:2])  # a fresh process would start from the converted model
    finetune.fit(again, (x, y), cfg, checkpoint=tmp_path / "b.pt")
    assert torch.load(tmp_path / "b.pt", weights_only=True)["state"]["step"] == 10
    for k, v in straight.nodes.items():
        assert torch.equal(v, again.nodes[k]), k
        assert not torch.equal(v, resumed.nodes[k]), "the first call should have stopped early"
    with pytest.raises(ValueError, match="different config"):
        finetune.fit(again, (x, y), finetune.FinetuneConfig(epochs=3.0, batch=64), checkpoint=tmp_path / "b.pt")
    with pytest.raises(ValueError, match="other training data"):
        finetune.fit(again, (x[:256], y[:256]), cfg, checkpoint=tmp_path / "b.pt")
    ck = torch.load(tmp_path / "b.pt", weights_only=True)  # a checkpoint from before a config field existed
    del ck["config"]["train_partitions"], ck["config"]["switchable"]
    torch.save(ck, tmp_path / "old.pt")
    finetune.fit(convert(digits_model, x[:2]), (x, y), cfg, checkpoint=tmp_path / "old.pt")  # resumes: no error
    with pytest.raises(TypeError, match=r"fit\(im, \(x, y\), cfg\)"):
        finetune.fit(again, x, y, cfg)


class _Payload:
    """Unpickling this runs code: what a crafted checkpoint would do without weights_only=True."""

    def __reduce__(self):
        return (print, ("code ran",))


def test_checkpoints_load_weights_only(digits_model, digits_data, tmp_path, capsys):
    """A crafted .pt is refused without running anything; a checkpoint of the older format is refused
    with the fix named; both load_nodes and fit(checkpoint=) read with weights_only=True."""
    x, y = digits_data[0][:128], digits_data[1][:128]
    cfg = finetune.FinetuneConfig(epochs=1.0, batch=64)
    torch.save({"nodes": {}, "config": _Payload()}, tmp_path / "evil.pt")
    for call in (lambda: finetune.load_nodes(convert(digits_model, x[:2]), tmp_path / "evil.pt"),
                 lambda: finetune.fit(convert(digits_model, x[:2]), (x, y), cfg, checkpoint=tmp_path / "evil.pt")):
        with pytest.raises(ValueError, match="weights_only=True"):
            call()
    assert "code ran" not in capsys.readouterr().out
    finetune.fit(convert(digits_model, x[:2]), (x, y), cfg, checkpoint=tmp_path / "ok.pt")
    ck = torch.load(tmp_path / "ok.pt", weights_only=True)
    ck["state"] = {"step": 1, "pos": 64, "perm": torch.arange(128)}  # the format before data-order seeds
    torch.save(ck, tmp_path / "older.pt")
    with pytest.raises(ValueError, match="older inn_mobile.*delete it"):
        finetune.fit(convert(digits_model, x[:2]), (x, y), cfg, checkpoint=tmp_path / "older.pt")


def test_loader_resumes_mid_epoch_and_logs(digits_model, digits_data, tmp_path):
    """A shuffling DataLoader: stopping mid-epoch and resuming is bit-identical to a straight run; the
    log hook gets one record per epoch with every trained width's loss, train and val accuracy."""
    x, y, xt, yt = digits_data
    ds = torch.utils.data.TensorDataset(x[:320], y[:320])
    loader = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True)
    cfg = finetune.FinetuneConfig(epochs=2.0, lr=1e-2, switchable=True, widths=(1.0, 0.5), calibration=128)
    records: list[dict] = []
    straight = convert(digits_model, x[:2])
    finetune.fit(straight, loader, cfg, val_data=(xt, yt), checkpoint=tmp_path / "a.pt", log=records.append)
    assert [r["epoch"] for r in records] == [1.0, 2.0] and records[-1]["step"] == records[-1]["total_steps"] == 10
    assert set(records[-1]["widths"]) == {"100%", "50%", "between"}  # the random widths trained too
    assert all({"loss", "train_acc", "val_acc"} <= set(records[-1]["widths"][w]) for w in ("100%", "50%"))
    assert {"loss", "train_acc"} <= set(records[-1]["widths"]["between"])
    assert records[-1]["images_per_s"] > 0 and records[-1]["eta_s"] == 0
    stopped = convert(digits_model, x[:2])
    finetune.fit(stopped, loader, cfg, checkpoint=tmp_path / "b.pt", max_steps=3)
    again = convert(digits_model, x[:2])
    finetune.fit(again, loader, cfg, checkpoint=tmp_path / "b.pt")
    for k, v in straight.nodes.items():
        assert torch.equal(v, again.nodes[k]), k
    for key, layers in straight.norms.items():
        for name, (a, c) in layers.items():
            assert torch.equal(a, again.norms[key][name][0]) and torch.equal(c, again.norms[key][name][1])


def test_random_widths_between_the_shipped_ones_are_trained(digits_model, digits_data, tmp_path):
    """Each switchable step also trains ``between`` random widths: a function of the seed alone (every rank
    draws the same), spread between the shipped widths, normalised with the affine derived from the trained
    neighbours (as calibrate derives it), which the random width's loss therefore trains."""
    x, y = digits_data[0][:128], digits_data[1][:128]
    im = convert(digits_model, x[:2])
    cfg = finetune.FinetuneConfig(epochs=1.0, batch=64, lr=1e-2, switchable=True, widths=(1.0, 0.5), between=2,
                                  calibration=64)
    shipped = [s for _, s in finetune._discrete_widths(im, cfg)]

    def draws(c: finetune.FinetuneConfig) -> list[list[dict[int, int]]]:
        state = finetune._State(c)
        return [finetune._step_widths(c, im, state, 20, shipped) for _ in range(20)]

    first = draws(cfg)
    assert first == draws(cfg) and first != draws(dataclasses.replace(cfg, seed=1))
    assert all(step[:2] == shipped and len(step) == 4 for step in first)
    extra = [s for step in first for s in step[2:]]
    ratios = [width_ratio(im, s) for s in extra]
    assert all(0.5 <= r <= 1.0 for r in ratios) and len({sizes_key(s) for s in extra}) >= 10, ratios
    assert [len(step) for step in draws(dataclasses.replace(cfg, between=0))] == [2] * 20

    # log-drawn: the same RNG draw u gives lo * (hi / lo) ** u instead of lo + u * (hi - lo), so the run's
    # sequence (and its resumption) is the uniform one's, mapped
    def drawn_ratios(c: finetune.FinetuneConfig) -> list[float]:
        asked: list[float] = []

        class Recording:
            def sizes_at(self, r: float, multiple_of: int = 1) -> dict[int, int]:
                asked.append(r)
                return im.sizes_at(r, multiple_of=multiple_of)

        state = finetune._State(c)
        for _ in range(20):
            finetune._step_widths(c, Recording(), state, 20, shipped)
        return asked

    uniform, logged = drawn_ratios(cfg), drawn_ratios(dataclasses.replace(cfg, between_draw="log"))
    assert len(logged) == 40 and logged == pytest.approx([0.5 * 2 ** ((r - 0.5) / 0.5) for r in uniform], rel=1e-12)
    # inverse: uniform in 1/width, 1/hi + u * (1/lo - 1/hi) from the same u
    inverse = drawn_ratios(dataclasses.replace(cfg, between_draw="inverse"))
    assert inverse == pytest.approx([1 / (1 + (r - 0.5) / 0.5) for r in uniform], rel=1e-12)
    with pytest.raises(ValueError, match="between_draw must be one of uniform, log, inverse"):
        finetune.fit(convert(digits_model, x[:2]), (x, y), dataclasses.replace(cfg, between_draw="normal"))

    norm = SwitchableNorm(WidthForward(im), shipped)
    norm.attach(x)
    F.cross_entropy(norm(x, im.sizes_at(0.75)), y).backward()
    for name, p in norm.parameters().items():  # w0: 100%, w1: 50%, both neighbours of 75%
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in im.nodes.values())
    norm.training = False
    with pytest.raises(ValueError, match="training mode only"):
        norm(x, im.sizes_at(0.75))
    norm.detach()

    finetune.fit(convert(digits_model, x[:2]), (x, y), cfg, checkpoint=tmp_path / "a.pt", max_steps=1)
    ck = torch.load(tmp_path / "a.pt", weights_only=True)  # a switchable run from before random widths
    del ck["config"]["between"]
    torch.save(ck, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="different config"):
        finetune.fit(convert(digits_model, x[:2]), (x, y), cfg, checkpoint=tmp_path / "old.pt")
    finetune.fit(convert(digits_model, x[:2]), (x, y), dataclasses.replace(cfg, between=0),
                 checkpoint=tmp_path / "old.pt")  # resumes as the run it was


def test_bf16_autocast_trains_float32_masters(digits_model, digits_data):
    """bf16 autocast on the CPU: nodes and norms stay float32 and every width's loss goes down."""
    x, y = digits_data[0][:256], digits_data[1][:256]
    im = convert(digits_model, x[:2])
    records: list[dict] = []
    cfg = finetune.FinetuneConfig(epochs=2.0, batch=64, lr=1e-2, switchable=True, widths=(1.0, 0.5), calibration=128,
                                  augmentation=False)
    finetune.fit(im, (x, y), cfg, precision="bf16", log=records.append)
    assert all(v.dtype == torch.float32 and v.device.type == "cpu" for v in im.nodes.values())
    assert all(a.dtype == torch.float32 for layers in im.norms.values() for a, _ in layers.values())
    assert all(records[-1]["widths"][w]["loss"] < records[0]["widths"][w]["loss"] for w in ("100%", "50%")), records


def test_tuned_partition_round_trips_through_the_bundle_bit_exact(digits_im, digits_data):
    """Trained points are stored in the bundle; C and Python then produce identical weights."""
    x, y = digits_data[0][:256], digits_data[1][:256]
    buckets = bundle.make_buckets(digits_im, (0.5, 1.0))
    parts = tune_partitions(digits_im, x, y, sizes=buckets[0].sizes, steps=10, lr=0.1, batch=64,
                            keep_if_worse=True)
    assert parts
    raw = bundle.encode(bundle.Bundle(digits_im, buckets))
    back = bundle.decode(raw)
    for key, p in parts.items():
        assert torch.equal(back.model.partitions[key], p)
    nb = native.NativeBundle(raw)
    python = digits_im.discretize(digits_im.samplers(buckets[0].sizes))
    for layer, (rw, _, rbias) in enumerate(reference.materialize(back, 0)):
        w, _, bias = nb.materialize(0, layer)
        assert np.array_equal(w, rw)
        spec = digits_im.layers[layer]
        ours = python[spec.name]["scale" if spec.kind == "affine" else "weight"]
        assert np.array_equal(w, ours.detach().numpy().ravel())
        if rbias is not None:
            assert np.array_equal(bias, rbias)


def test_partition_tuning_improves_a_narrow_width(digits_im, digits_data):
    x, y, xt, yt = digits_data
    before = accuracy(digits_im.resize(0.75), xt, yt)
    tune_partitions(digits_im, x, y, ratio=0.75, steps=100, lr=0.02, distill=0.5)
    after = accuracy(digits_im.resize(0.75), xt, yt)
    assert after > before + 5.0, (before, after)


def test_integral_finetuning_improves_narrow_widths(digits_im, digits_data):
    """The sandwich rule lifts the narrow widths that a plain conversion loses, keeping full width."""
    x, y, xt, yt = digits_data
    before = {r: accuracy(digits_im.resize(r), xt, yt) for r in (1.0, 0.5)}
    cfg = finetune.FinetuneConfig(epochs=5, batch=64, min_ratio=0.5, augmentation=False)
    finetune.fit(digits_im, (x, y), cfg)
    after = {r: accuracy(digits_im.resize(r), xt, yt) for r in (1.0, 0.5)}
    assert after[0.5] > before[0.5] + 20.0, (before, after)
    assert after[1.0] > before[1.0] - 4.0, (before, after)


def test_recalibration_keeps_full_width_and_lifts_a_narrow_one(digits_im, digits_data):
    """Matching per-channel statistics is the identity at full width and helps at 75% without training."""
    x, _, xt, yt = digits_data
    full = recalibrate(digits_im, x[:512], ratio=1.0)
    with torch.no_grad():
        ref = digits_im.resize(1.0)(xt)
        assert (full(xt) - ref).abs().max() <= 1e-3 * ref.abs().max()
    before = accuracy(digits_im.resize(0.75), xt, yt)
    after = accuracy(recalibrate(digits_im, x[:512], ratio=0.75), xt, yt)
    assert after > before + 5.0, (before, after)


SWITCHABLE = (1.0, 0.5, 0.25)


def test_switchable_norms_beat_the_shared_folded_ones_at_narrow_widths(digits_im, digits_data):
    """Same budget, same nodes: a BatchNorm per width (folded into the bundle's NORM afterwards) keeps
    the narrow widths that one shared normalisation loses."""
    x, y, xt, yt = digits_data
    results = {}
    for switchable in (False, True):
        im = copy.deepcopy(digits_im)
        cfg = finetune.FinetuneConfig(epochs=5, batch=64, lr=1e-2, augmentation=False, switchable=switchable,
                                      widths=SWITCHABLE, min_ratio=0.25, calibration=1024)
        finetune.fit(im, (x, y), cfg)
        assert bool(im.norms) == switchable
        results[switchable] = {r: accuracy(im.resize(r), xt, yt) for r in SWITCHABLE}
    folded, own = results[False], results[True]
    assert own[0.5] > folded[0.5] + 20.0 and own[0.25] > folded[0.25] + 10.0, results
    assert own[1.0] >= 97.0, results


def test_folded_norms_reproduce_the_batchnorm_network(digits_im, digits_data):
    """Folding eval-mode BatchNorms into (a, c) gives the network the hooks computed."""
    x = digits_data[0]
    forward = WidthForward(digits_im)
    widths = [digits_im.sizes_at(r) for r in SWITCHABLE]
    norm = SwitchableNorm(forward, widths)
    norm.attach(x[:256])
    with torch.no_grad():  # make the affines non-trivial, as training would
        for p in norm.parameters().values():
            p.mul_(1.0 + 0.2 * torch.rand_like(p))
    norm.calibrate(x[:512])
    with torch.no_grad():
        hooked = {tuple(s.items()): norm(x[:64], s) for s in widths}
    norm.detach()
    digits_im.norms = norm.fold()
    for s in widths:
        ref = hooked[tuple(s.items())]
        with torch.no_grad():
            out = digits_im.resize(sizes=s)(x[:64])
        assert (out - ref).abs().max() <= 1e-4 * ref.abs().max(), digits_im.width_report(s)


def test_switchable_resume_and_bundle_round_trip(digits_model, digits_data, tmp_path):
    """A switchable run resumes bit-exactly (norm state included); its widths become the bundle's buckets,
    whose weights the C core writes bit-exactly; other widths are refused with a clear error."""
    x, y = digits_data[0][:320], digits_data[1][:320]
    cfg = finetune.FinetuneConfig(epochs=1.0, batch=64, lr=1e-2, switchable=True, widths=SWITCHABLE,
                                  calibration=256)  # 5 steps
    straight = convert(digits_model, x[:2])
    finetune.fit(straight, (x, y), cfg, checkpoint=tmp_path / "a.pt")
    stopped = convert(digits_model, x[:2])
    finetune.fit(stopped, (x, y), cfg, checkpoint=tmp_path / "b.pt", max_steps=3)
    assert not stopped.norms, "norms are folded only when the run completes"
    again = convert(digits_model, x[:2])
    finetune.fit(again, (x, y), cfg, checkpoint=tmp_path / "b.pt")
    for k, v in straight.nodes.items():
        assert torch.equal(v, again.nodes[k]), k
    assert straight.norms.keys() == again.norms.keys() and len(straight.norms) == len(SWITCHABLE)
    for key, layers in straight.norms.items():
        for name, (a, c) in layers.items():
            assert torch.equal(a, again.norms[key][name][0]) and torch.equal(c, again.norms[key][name][1])

    buckets = bundle.make_buckets(again)
    assert [b.sizes for b in buckets] == [again.check_sizes(again.sizes_at(r)) for r in sorted(SWITCHABLE)]
    assert_core_weights_equal_torch(again, buckets)
    with pytest.raises(ValueError, match="calibrated only at"):
        again.resize(0.75)
    with pytest.raises(ValueError, match="no per-width normalisation"):
        bundle.make_buckets(again, (0.75,))
    with pytest.raises(ValueError, match="already has per-width normalisation"):
        finetune.fit(again, (x, y), cfg)


def test_switchable_on_every_architecture_ships_bit_exact(arch):
    """Depthwise, grouped and concat layers get per-width norms too; the core writes what torch computes."""
    _, model, x = arch
    g = torch.Generator().manual_seed(0)
    xs, ys = torch.randn(32, *x.shape[1:], generator=g), torch.randint(0, 10, (32,), generator=g)
    im = convert(model, x)
    cfg = finetune.FinetuneConfig(epochs=0.25, batch=4, switchable=True, widths=(1.0, 0.5), calibration=16,
                                  augmentation=False)
    finetune.fit(im, (xs, ys), cfg)
    buckets = bundle.make_buckets(im)
    assert len(buckets) == 2 and all(len(v) > 0 for v in im.norms.values())
    raw = bundle.encode(bundle.Bundle(im, buckets), node_dtype="f16")
    nb, back = native.NativeBundle(raw), bundle.decode(raw)
    for k in range(len(buckets)):
        for layer, (rw, _, rbias) in enumerate(reference.materialize(back, k)):
            w, _, bias = nb.materialize(k, layer)
            assert np.array_equal(w, rw) and (rbias is None or np.array_equal(bias, rbias)), im.layers[layer].name


def test_switchable_with_trained_partitions_resumes_and_ships(digits_model, digits_data, tmp_path):
    """Narrow widths' partitions train with the nodes: valid, moved, restored on resume, stored in the
    bundle and sampled by the C core exactly as by torch."""
    x, y = digits_data[0][:320], digits_data[1][:320]
    cfg = finetune.FinetuneConfig(epochs=1.0, batch=64, lr=5e-2, switchable=True, widths=(1.0, 0.5),
                                  train_partitions=True, calibration=256)  # 5 steps
    straight = convert(digits_model, x[:2])
    finetune.fit(straight, (x, y), cfg, checkpoint=tmp_path / "a.pt")
    again = convert(digits_model, x[:2])
    finetune.fit(again, (x, y), cfg, checkpoint=tmp_path / "b.pt", max_steps=2)
    again = convert(digits_model, x[:2])
    finetune.fit(again, (x, y), cfg, checkpoint=tmp_path / "b.pt")
    narrow = again.check_sizes(again.sizes_at(0.5))
    expected = {(g.id, narrow[g.id]) for g in again.groups if g.resizable and narrow[g.id] < g.size}
    assert expected and set(straight.partitions) == expected == set(again.partitions)
    for key, p in again.partitions.items():
        kernel.check_partition(p)
        assert p.dtype == torch.float32 and torch.equal(p, straight.partitions[key])
        assert not torch.allclose(p.double(), kernel.uniform_partition(key[1]), atol=1e-5), "partition did not train"
    buckets = bundle.make_buckets(again)
    raw = bundle.encode(bundle.Bundle(again, buckets))
    nb, back = native.NativeBundle(raw), bundle.decode(raw)
    assert set(back.model.partitions) == expected
    for k in range(len(buckets)):
        for layer, (rw, _, rbias) in enumerate(reference.materialize(back, k)):
            w, _, bias = nb.materialize(k, layer)
            assert np.array_equal(w, rw) and (rbias is None or np.array_equal(bias, rbias))
    with pytest.raises(ValueError, match="needs switchable=True"):
        finetune.fit(convert(digits_model, x[:2]), (x, y), finetune.FinetuneConfig(train_partitions=True))
