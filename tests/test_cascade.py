"""Input-adaptive width: MACs per bucket (MACS), confidence cascades (CSCD) in both readers, their
calibration, and running them through a real runtime."""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from corpus import CASCADES, assert_rejected_by_both, put, section, with_cascades

from inn_mobile import native
from inn_mobile.errors import BudgetError, NotInBundleError
from inn_mobile.export import cascade as calib
from inn_mobile.export import macs
from inn_mobile.format import bundle
from inn_mobile.format.tables import Cascade
from inn_mobile.runtime import policy
from inn_mobile.runtime.cascade import confidence

VECTORS = Path(__file__).parent / "vectors"


def small_model():
    """conv 1->8 3x3 (padding 1) on 4x4, BatchNorm (folded into the conv), linear 128->3."""
    from inn_mobile.core.convert import convert

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 3)).eval()
    x = torch.randn(1, 1, 4, 4)
    return convert(net, x), x


def test_macs_are_exact_counts_of_a_small_model():
    im, x = small_model()
    b = bundle.Bundle(im, bundle.make_buckets(im, (0.5, 1.0), multiple_of=1))
    assert macs.positions(im, x) == {"0": 16, "4": 1}  # 4x4 output pixels; one row of the linear layer
    # full: conv 8 out x 1 in x 9 taps x 16 pixels = 1152, linear 3 x 8 channels x 16 taps = 384
    # half: conv 4 x 1 x 9 x 16 = 576, linear 3 x 4 x 16 = 192
    assert macs.count(b, x) == [576 + 192, 1152 + 384]
    raw = bundle.encode(b)
    assert [bk.macs for bk in bundle.decode(raw).buckets] == [768, 1536]
    nb = native.NativeBundle(raw)
    assert [nb.macs(k) for k in range(2)] == [768, 1536]


# ------------------------------------------------------------------------------- the CSCD table
def with_tables(cascades=None, bucket_macs=(3000, 2000, 1000)) -> bytes:
    return with_cascades(VECTORS / "vectors.innb", cascades, bucket_macs)


GOOD = with_tables()


def rec(d: bytes, i: int) -> int:
    """Offset of cascade record i (name off/len, score, target, first, count, flags, reserved, f64 x3)."""
    return section(d, b"CSCD") + 8 + 56 * i


def step(d: bytes, j: int) -> int:
    """Offset of step j (u32 bucket, f32 threshold) of the 6 steps: fast 0-1, lean 2-4, one 5."""
    return section(d, b"CSCD") + 8 + 56 * 3 + 8 * j


def edited(offset_of, value, fmt: str = "<I") -> bytes:
    return put(GOOD, offset_of(GOOD), value, fmt)


NAN32, NAN64 = 0x7FC00000, 0x7FF8000000000000
BAD = {
    "MACS count not the buckets": (edited(lambda d: section(d, b"MACS"), 2), "MACS has 2 values", "FORMAT"),
    "MACS count past the section": (edited(lambda d: section(d, b"MACS"), 1 << 20), "declares", "TRUNCATED"),
    "MACS zero": (edited(lambda d: section(d, b"MACS") + 16, 0, "<Q"), "MACS has", "FORMAT"),
    "MACS reserved": (edited(lambda d: section(d, b"MACS") + 4, 1), "MACS has", "FORMAT"),
    "step of a missing bucket": (edited(lambda d: step(d, 0), 3), "cascade 0 names a bucket", "RANGE"),
    "NaN threshold": (edited(lambda d: step(d, 0) + 4, NAN32), "thresholds", "FORMAT"),
    "threshold above 1": (edited(lambda d: step(d, 2) + 4, 1.5, "<f"), "thresholds", "FORMAT"),
    "negative threshold": (edited(lambda d: step(d, 3) + 4, -0.25, "<f"), "thresholds", "FORMAT"),
    "last threshold not 0": (edited(lambda d: step(d, 1) + 4, 0.5, "<f"), "the last one 0", "FORMAT"),
    "a bucket twice": (edited(lambda d: step(d, 3), 2), "distinct", "FORMAT"),
    "unknown score": (edited(lambda d: rec(d, 0) + 8, 3), "cascade 0 .score 3", "FORMAT"),
    "unknown target": (edited(lambda d: rec(d, 1) + 12, 7), "target 7", "FORMAT"),
    "unknown flag": (edited(lambda d: rec(d, 0) + 24, 4), "flags 0x4", "FORMAT"),
    "reserved": (edited(lambda d: rec(d, 2) + 28, 1), "cascade 2", "FORMAT"),
    "unmeasured accuracy set": (edited(lambda d: rec(d, 1) + 40, 5.0, "<d"), "cascade 1", "FORMAT"),
    "NaN target": (edited(lambda d: rec(d, 0) + 32, NAN64, "<Q"), "finite", "FORMAT"),
    "negative mean MACs": (edited(lambda d: rec(d, 0) + 48, -1.0, "<d"), "finite", "FORMAT"),
    "steps overlap": (edited(lambda d: rec(d, 1) + 16, 1), "cascade 1 steps 1", "FORMAT"),
    "steps past the table": (edited(lambda d: rec(d, 2) + 20, 2), "cascade 2 steps", "FORMAT"),
    "no steps": (edited(lambda d: rec(d, 2) + 20, 0), "one per step", "FORMAT"),
    "a step no cascade uses": (edited(lambda d: section(d, b"CSCD") + 4, 7), "declares|steps", ("FORMAT", "TRUNCATED")),
    "count past the section": (edited(lambda d: section(d, b"CSCD"), 1 << 20), "declares", "TRUNCATED"),
    "name past NAME": (edited(lambda d: rec(d, 0), 1 << 20), "name past the NAME", "RANGE"),
    "empty name": (edited(lambda d: rec(d, 1) + 4, 0), "1..255 bytes", "FORMAT"),
    # cascade 2 ("one") renamed to cascade 0's name ("fast": its offset and length)
    "names alike": (put(put(GOOD, rec(GOOD, 2), struct.unpack_from("<I", GOOD, rec(GOOD, 0))[0]), rec(GOOD, 2) + 4, 4),
                    "share a name", "FORMAT"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_cascade_tables_are_rejected_by_both_readers(case):
    assert_rejected_by_both(*BAD[case])


def test_readers_agree_on_the_tables():
    py = bundle.decode(GOOD)
    nb = native.NativeBundle(GOOD)
    assert py.cascades == nb.cascades() == CASCADES  # thresholds here are exact in float32
    assert [b.macs for b in py.buckets] == [nb.macs(k) for k in range(nb.bucket_count)] == [3000, 2000, 1000]
    assert py.cascade("lean") == py.cascade(1) and py.cascade(-1).name == "one"
    with pytest.raises(NotInBundleError, match="fast"):
        py.cascade("slow")
    old = bundle.load(VECTORS / "vectors.innb")  # before 1.4: no tables, nothing known
    assert old.cascades == [] and old.buckets[0].macs is None
    nb_old = native.NativeBundle((VECTORS / "vectors.innb").read_bytes())
    assert nb_old.cascades() == [] and nb_old.macs(0) is None
    with pytest.raises(native.NativeError):
        nb_old.macs(3)


@pytest.mark.parametrize("bad, message", [
    (Cascade("x", (0, 1), (0.5, 0.5)), "the last one 0"),
    (Cascade("x", (0, 0), (0.5, 0.0)), "distinct"),
    (Cascade("x", (0, 3), (0.5, 0.0)), "distinct indices below 3"),
    (Cascade("", (0,), (0.0,)), "1..255 bytes"),
    (Cascade("x", (0,), (0.0,), score="entropy"), "score must be"),
    (Cascade("x", (), ()), "one per step"),
    (Cascade("x", (0,), (0.0,), accuracy=float("nan")), "finite"),
])
def test_writer_refuses_what_readers_reject(bad, message):
    with pytest.raises(ValueError, match=message):
        with_tables([bad])
    with pytest.raises(ValueError, match="distinct"):
        with_tables([CASCADES[0], dataclasses.replace(CASCADES[1], name="fast")])
    with pytest.raises(ValueError, match="every bucket"):
        with_tables([], (3000, None, 1000))


# ------------------------------------------------------------------------------- calibration
def synthetic(n: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Two buckets over 3 classes. The narrow one's top probability c is uniform in [0.4, 1) and its answer is
    right exactly when c >= 0.7 (else it names the wrong class); the wide one is always right. So the truth:
    a threshold t >= 0.7 loses nothing, and a share (t - 0.4) / 0.6 of inputs go on to the wide bucket."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    c = rng.uniform(0.4, 1.0, n)
    top = np.where(c >= 0.7, y, (y + 1) % 3)
    p = np.repeat(((1 - c) / 2)[:, None], 3, axis=1)
    p[np.arange(n), top] = c
    wide = np.full((n, 3), -4.0)
    wide[np.arange(n), y] = 4.0
    return [np.log(p), wide], y


def test_calibration_respects_its_target_on_held_out_data():
    outs, y = synthetic(4000, 0)
    held_outs, held_y = synthetic(20000, 1)
    cost = [100, 1000]
    # acc:0 -> the narrow step's threshold at or above 0.7 (the truth), and as low as the data allow
    c = calib.calibrate(outs, y, cost, "acc:0")
    assert c.buckets == (0, 1) and 0.7 <= c.thresholds[0] <= 0.72, c
    held = calib.evaluate(c, held_outs, held_y, cost)
    assert held.accuracy == 100.0  # no loss on held-out data either
    truth = 100 + 1000 * (c.thresholds[0] - 0.4) / 0.6
    assert abs(held.mean_macs - truth) < 15  # 20,000 draws: 1000 * 3 sigma of a share is about 10
    assert c.mean_macs == pytest.approx(calib.evaluate(c, outs, y, cost).mean_macs, abs=0.1)
    # macs:40% -> at most 400 MACs on average: a share (t - 0.4) / 0.6 <= 0.3, so t <= 0.58, and the best
    # accuracy under it is that of the highest such threshold
    c = calib.calibrate(outs, y, cost, "macs:40%")
    assert c.target == "mean_macs" and c.target_value == 400.0 and c.mean_macs <= 400
    assert 0.55 <= c.thresholds[0] <= 0.58, c
    held = calib.evaluate(c, held_outs, held_y, cost)
    assert held.mean_macs <= 400 + 15
    # a target nothing meets
    with pytest.raises(ValueError, match="no cascade meets"):
        calib.calibrate(outs, y, cost, "macs:5%")


def test_confidence_scores_and_targets():
    logits = np.log(np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]]))
    assert confidence(logits) == pytest.approx([0.7, 0.4])
    assert confidence(logits, "margin") == pytest.approx([0.5, 0.05])
    assert calib.Target.parse("acc:0.3") == calib.Target("accuracy_drop", 0.3)
    assert calib.Target.parse("macs:50%") == calib.Target("mean_macs", 0.5, True)
    for bad in ("acc:", "fast:1", "macs:-3", "acc:nan"):
        with pytest.raises(ValueError, match="acc:<points>"):
            calib.Target.parse(bad)


def test_policy_charges_a_cascade_the_sum_of_its_steps():
    b = bundle.decode(GOOD)
    for k, bk in enumerate(b.buckets):
        b.graphs[(k, "litert")] = b""
        bk.info["runtimes"] = {"litert": {"weights_bytes": 1000 * (3 - k), "accuracy": 90.0 - 5 * k}}
    cands = policy.candidates(b, "litert", cascades=True)
    by = {c.name: c for c in cands}
    assert by["cascade:fast"].memory_bytes == 1000 + 3000 and by["cascade:fast"].accuracy == 91.5
    assert by["cascade:lean"].accuracy is None  # not measured: the widest that fits wins among all
    assert [c.name for c in policy.candidates(b, "litert")] == [bk.name for bk in b.buckets]
    measured = [c for c in cands if c.accuracy is not None]
    # fits the cascade: the most accurate wins; with a tolerance the cheapest within it
    assert policy.choose(measured, 4000).cascade == "fast"
    assert policy.choose(measured, 3999).bucket == b.buckets[0].name
    tolerant = [dataclasses.replace(c, accuracy=89.8) if c.cascade else c for c in measured]
    assert policy.choose(tolerant, 4000).bucket == b.buckets[0].name
    choice = policy.choose(tolerant, 4000, accuracy_tolerance=0.3)
    assert choice.cascade == "fast" and choice.bucket == "cascade:fast"
    with pytest.raises(BudgetError):
        policy.choose(measured, 10)


# ------------------------------------------------------------------------------- through a runtime
RUNTIMES = ["litert", pytest.param("executorch", marks=pytest.mark.slow)]


@pytest.mark.parametrize("rt", RUNTIMES)
def test_each_answer_is_the_answer_of_the_step_that_accepted_it(rt, tmp_path, digits_model, digits_data):
    """The digits ResNet at two widths through a real runtime: each input's output is, bit for bit, the
    output of the step that accepted it, which is the first whose confidence reaches its threshold."""
    pytest.importorskip("litert_torch" if rt == "litert" else "executorch")
    from inn_mobile import runtime
    from inn_mobile.core.convert import convert
    from inn_mobile.export.pack import pack
    from inn_mobile.runtime.cascade import open_cascade

    x, _, xt, yt = digits_data
    im = convert(digits_model, xt[:1], calibration=x[:256])
    xs, ys = xt[:120], yt[:120]
    path = tmp_path / "c.innb"
    buckets = bundle.make_buckets(im, (0.25, 1.0))
    b = pack(im, xt[:1], [rt], buckets=buckets, validation=(xs, ys), cascades=["macs:50%", "acc:5"], path=path)
    want = [macs.bucket_macs(im, bk.sizes, macs.positions(im, xt[:1])) for bk in buckets]
    assert [bk.macs for bk in b.buckets] == want and want[0] < want[1] / 4
    assert [c.name for c in bundle.load(path).cascades] == ["macs50pct", "acc5"]
    model = open_cascade(path, rt, "macs50pct")
    res = model.run(xs)
    assert set(res.steps.tolist()) == {0, 1}, res.steps  # some inputs leave early, some go on
    alone = [runtime.open_model(path, rt, k)(xs) for k in model.cascade.buckets]
    for i, s in enumerate(res.steps):
        assert torch.equal(res.outputs[i], alone[s][i])
    conf = confidence(alone[0], model.cascade.score)
    assert ((conf >= model.cascade.thresholds[0]) == (res.steps == 0)).all()
    cost = [b.buckets[k].macs for k in model.cascade.buckets]
    assert model.mean_macs(res.steps) == pytest.approx(cost[0] + cost[1] * float((res.steps == 1).mean()))
    assert model.mean_macs(res.steps) <= want[1] / 2  # calibrated on these very inputs: the target holds
    sim = calib.evaluate(model.cascade, [a for _, a in sorted(zip(model.cascade.buckets, alone))], ys, want)
    assert np.array_equal(sim.steps, res.steps)
    assert torch.equal(model(xs), res.outputs)
    with pytest.raises(NotInBundleError, match="macs50pct"):
        open_cascade(path, rt, "nope")
