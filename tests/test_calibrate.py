"""Post-hoc per-width norms (train/calibrate.py): widths never trained, shipped and run by the C core."""

from __future__ import annotations

import copy

import pytest
import torch
from parity import assert_core_weights_equal_torch

from inn_mobile import native
from inn_mobile.core.convert import convert
from inn_mobile.core.integral import sizes_key
from inn_mobile.format import bundle
from inn_mobile.metrics import accuracy
from inn_mobile.runtime.core_network import core_network
from inn_mobile.train import finetune
from inn_mobile.train.calibrate import calibrate
from inn_mobile.train.finetune import distillation_loss

TRAINED = (1.0, 0.5, 0.25)
UNTRAINED = (0.75, 0.375)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def switchable_im(digits_model, digits_data):
    """The digits ResNet fine-tuned at three widths, each with its own norms (the 50% run of test_finetune)."""
    x, y = digits_data[0], digits_data[1]
    im = convert(digits_model, x[:2], calibration=x[:256])
    cfg = finetune.FinetuneConfig(epochs=5, batch=64, lr=1e-2, augmentation=False, switchable=True,
                                  widths=TRAINED, calibration=1024)
    with torch.random.fork_rng():
        torch.set_num_threads(1)
        finetune.fit(im, (x, y), cfg)
    return im


def core_accuracy(im, raw: bytes, buckets: list[bundle.Bucket], xt: torch.Tensor,
                  yt: torch.Tensor) -> dict[float, float]:
    """Test accuracy per bucket with every weight and bias written by the C core from the bundle."""
    nb = native.NativeBundle(raw)
    out = {}
    for k, bk in enumerate(buckets):
        out[bk.ratio] = accuracy(core_network(im, nb, k, bk.sizes), xt, yt)
    return out


def test_untrained_widths_calibrated_ship_through_the_core(switchable_im, digits_data):
    """Widths between trained ones get norms from unlabelled images; make_buckets ships them; the C core
    writes the weights torch computes, and every width predicts (how well: docs/benchmarks.md)."""
    x, _, xt, yt = digits_data
    im = copy.deepcopy(switchable_im)
    before = {k: {n: (a.clone(), c.clone()) for n, (a, c) in v.items()} for k, v in im.norms.items()}
    with pytest.raises(ValueError, match="calibrated only at"):
        im.resize(0.75)
    added = calibrate(im, x[:1024], widths=list(UNTRAINED) + [0.5])  # 0.5 is trained: left alone
    assert [im.check_sizes(im.sizes_at(r)) for r in UNTRAINED] == added
    for key, layers in before.items():
        assert all(torch.equal(a, im.norms[key][n][0]) and torch.equal(c, im.norms[key][n][1])
                   for n, (a, c) in layers.items())
    ratios = sorted(TRAINED + UNTRAINED)
    buckets = bundle.make_buckets(im, ratios, multiple_of=1)
    assert [b.ratio for b in buckets] == ratios
    raw = assert_core_weights_equal_torch(im, buckets)
    acc = core_accuracy(im, raw, buckets, xt, yt)
    assert min(acc.values()) > 10.0, acc  # every calibrated width predicts (chance is 10%)


def test_a_trained_width_rederived_post_hoc_keeps_its_accuracy(switchable_im, digits_data):
    """Leave one out: drop the trained 50% width's norms and derive them from its neighbours (100%, 25%)
    and 1,024 unlabelled images: through the C core it scores close to its trained norms (measured: equal,
    and 2 points = 10 of the 500 test images lower, on two fixture models; a broken derivation loses tens
    of points). The nodes were trained at 50%; a width they never saw does worse (docs/benchmarks.md)."""
    x, _, xt, yt = digits_data
    im = copy.deepcopy(switchable_im)
    half = im.check_sizes(im.sizes_at(0.5))
    buckets = bundle.make_buckets(im, (0.5,), multiple_of=1)
    trained = core_accuracy(im, bundle.encode(bundle.Bundle(im, buckets)), buckets, xt, yt)[0.5]
    del im.norms[sizes_key(half)]
    assert calibrate(im, x[:1024], widths=[0.5]) == [half]
    derived = core_accuracy(im, bundle.encode(bundle.Bundle(im, buckets)), buckets, xt, yt)[0.5]
    assert abs(derived - trained) <= 3.0, (trained, derived)


def test_norms_tuned_by_distillation_match_the_widest_width_better_and_ship(switchable_im, digits_data):
    """``distill_steps``: an untrained width's norms, tuned against the widest trained width's logits on the
    calibration images, fit them better than the derived ones (the tuning is kept only then: equal norms
    would mean it was dropped or never ran); the trained widths' norms stay as they were; the C core writes
    the tuned width exactly as torch computes it."""
    x = digits_data[0][:1024]
    plain, tuned = copy.deepcopy(switchable_im), copy.deepcopy(switchable_im)
    assert calibrate(plain, x, widths=[0.375]) == calibrate(tuned, x, widths=[0.375], distill_steps=40)
    with torch.no_grad():
        teacher = tuned.resize(1.0)(x)
        loss = {name: float(distillation_loss(im.resize(0.375)(x), teacher)) for name, im in
                (("plain", plain), ("tuned", tuned))}
    assert loss["tuned"] < loss["plain"], loss
    for key, layers in switchable_im.norms.items():
        assert all(torch.equal(a, tuned.norms[key][n][0]) and torch.equal(c, tuned.norms[key][n][1])
                   for n, (a, c) in layers.items())
    assert_core_weights_equal_torch(tuned, bundle.make_buckets(tuned, (1.0, 0.375, 0.25), multiple_of=1))


def test_calibrate_needs_per_width_norms(digits_model, digits_data):
    x = digits_data[0]
    im = convert(digits_model, x[:2])
    with pytest.raises(ValueError, match="no per-width normalisation"):
        calibrate(im, x[:64], widths=[0.5])
