"""Weights that defeat a search by value: every runtime must still pack and rebuild its files exactly.

Real checkpoints are full of coincidences: timm's ``zero_init_last`` leaves the last conv of every
block all zeros (half of them ``-0.0``), an untrained BatchNorm folds into all-zero biases, two
branches can hold identical weights, a depthwise filter can be dead. One small network with all of
those is packed for litert, litert-i8, executorch and executorch-i8 at two widths; the core and the
Python reference must rebuild every lowered file byte for byte, fp32 outputs must equal torch's
resized network, int8 outputs must agree with it within the usual bars.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from inn_mobile import native
from inn_mobile.core.convert import convert
from inn_mobile.export import pack
from inn_mobile.format import bundle, reference, runtime_file

pytestmark = pytest.mark.slow
RUNTIMES = ("litert", "litert-i8", "executorch", "executorch-i8")
BATCH = 4


class Adversarial(nn.Module):
    """Untrained BatchNorm everywhere; twin branches with equal weights; a dead depthwise channel; an
    all-zero (``-0.0`` and ``0.0``) residual conv; an all-zero linear bias."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.twin_a = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        self.twin_b = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), nn.BatchNorm2d(16),
                                nn.ReLU())
        self.zero = nn.Sequential(nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.head = nn.Linear(16, 10)
        with torch.no_grad():
            self.twin_b[0].weight.copy_(self.twin_a[0].weight)
            self.dw[0].weight[3].zero_()
            zero = self.zero[0].weight
            zero.zero_()
            zero[: zero.shape[0] // 2].neg_()  # -0.0
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(self.twin_a(x) + self.twin_b(x))
        x = self.dw(x)
        x = torch.relu(x + self.zero(x))
        return self.head(x.mean((2, 3)))


@pytest.fixture(scope="module")
def packed(digits_data):
    """(IntegralModel, Bundle) with every runtime at 50% and 100% width, plus the lowered images."""
    pytest.importorskip("litert_torch")
    pytest.importorskip("executorch")
    x, _, _, _ = digits_data
    torch.manual_seed(0)
    im = convert(Adversarial().eval(), x[:2])
    zero = next(s for s in im.layers if s.name.startswith("zero"))
    assert (im.weights_at()[zero.name]["weight"] == 0).all()  # the adversary survives conversion
    buckets = bundle.make_buckets(im, (0.5, 1.0))
    lowered = {(k, rt): pack.lower(im, bk, x[:BATCH], rt, calibration=x[:256])
               for k, bk in enumerate(buckets) for rt in RUNTIMES}
    b = bundle.Bundle(im, buckets, graphs={key: runtime_file.encode_record(v) for key, v in lowered.items()})
    return im, b, lowered


def test_the_weights_are_adversarial(packed):
    """What a search by value trips on really is there at full width."""
    im, b, _ = packed
    w = b.weights(len(b.buckets) - 1)
    by = {s.name.split(".")[0]: w[s.name] for s in im.layers}
    assert torch.equal(by["twin_a"]["weight"], by["twin_b"]["weight"])
    assert (by["stem"]["bias"] == 0).all() and (by["head"]["bias"] == 0).all()
    assert torch.signbit(by["zero"]["weight"]).any() and (by["zero"]["weight"] == 0).all()
    dead = by["dw"]["weight"].flatten(1).abs().amax(1)
    assert (dead <= 1e-9).sum() == 1


def _weight_buffers(flat: bytes) -> tuple[int, int, int]:
    """Of the conv / depthwise / fully-connected operators' weights: (tensors, distinct buffers, their bytes)."""
    from ai_edge_litert import schema_py_generated as schema

    from inn_mobile.export import litert

    root = schema.Model.GetRootAs(flat, 0)
    weights = [op.weight for op in litert._weight_ops(root)]
    buffers = {t.Buffer(): litert._buffer_range(root, t)[1] for t in weights}
    return len(weights), len(buffers), sum(buffers.values())


def test_litert_stores_equal_tensors_once_as_its_converter_does_in_a_plain_file(packed, digits_data):
    """Equal tensors get equal sentinels, so the converter treats the bucket's graph as it treats the plain
    file of the real weights (it stores equal constants once and merges the twin branches' equal convolutions):
    the same weight tensors in the same number of buffers of the same size, and the all-zero biases of the
    untrained BatchNorms in one buffer per length. (The converter also drops an all-zero fully-connected bias,
    which a graph made for every set of weights of that width cannot.)"""
    from inn_mobile.export import litert

    im, b, lowered = packed
    x = digits_data[0][:BATCH]
    for k, bk in enumerate(b.buckets):
        plain = litert.to_tflite(im.resize(sizes=bk.sizes), x)
        (ours,) = lowered[(k, "litert")]
        assert _weight_buffers(ours.data) == _weight_buffers(plain), bk.name
        biases = [h for h in ours.holes if h.tensor == "bias"]
        assert len(biases) < sum(s.has_bias for s in im.layers), bk.name  # the zero biases share


def test_reference_rebuilds_every_file_exactly(packed):
    _, b, lowered = packed
    for (k, rt), images in lowered.items():
        filled = reference.fill(b, k, rt)
        for img in images:
            assert filled[img.name] == img.data, (k, rt, img.name)


def test_core_rebuilds_every_file_byte_for_byte(packed, tmp_path):
    """The C core rebuilds every file exactly as lowered, ``-0.0`` weights included (its sums and the
    Python reference's skip zero-weight taps and start from the first term, so even the sign of a zero
    agrees)."""
    _, b, lowered = packed
    path = tmp_path / "adversarial.innb"
    bundle.save(b, path)
    core = native.NativeBundle.from_file(path)
    negative_zero = np.float32(-0.0).tobytes()
    assert any(negative_zero in img.data for images in lowered.values() for img in images)  # really exercised
    for (k, rt), images in lowered.items():
        filled = core.fill(k, rt)
        for img in images:
            assert bytes(filled[img.name]) == img.data, (k, rt, img.name)


def test_outputs_match_torch(packed, digits_data):
    """fp32 equals torch's resized network (1e-4 of the output scale); int8 agrees on >= 97% top-1."""
    from inn_mobile import runtime

    im, b, _ = packed
    xt = digits_data[2][:200]
    blob = bundle.encode(b)
    for k, bk in enumerate(b.buckets):
        with torch.no_grad():
            ref = im.resize(sizes=bk.sizes)(xt)
        for rt in RUNTIMES:
            out = runtime.open_model(blob, rt, k)(xt)
            if rt.endswith("-i8"):
                agree = (out.argmax(1) == ref.argmax(1)).float().mean().item()
                assert agree >= 0.97, (bk.name, rt, agree)
            else:
                assert (out - ref).abs().max() <= 1e-4 * ref.abs().max(), (bk.name, rt)


def test_pack_in_worker_processes_writes_the_same_graphs(packed, digits_data):
    """``pack(..., jobs=2)`` lowers in spawned workers, which receive the model pickled (its graph rebuilt
    node by node, names kept): every graph record equals the one lowered in this process."""
    im, b, lowered = packed
    x = digits_data[0]
    parallel = pack.pack(im, x[:BATCH], RUNTIMES, buckets=b.buckets, calibration=x[:256], jobs=2)
    assert sorted(parallel.graphs) == sorted(lowered)
    for key, images in lowered.items():
        assert parallel.graphs[key] == runtime_file.encode_record(images), key
    with pytest.raises(ValueError, match="jobs must be a whole number >= 1"):
        pack.pack(im, x[:BATCH], RUNTIMES, buckets=b.buckets, calibration=x[:256], jobs=0)


def test_a_worker_that_cannot_load_the_model_says_so(packed, monkeypatch):
    """A model class a worker cannot import (pickled by reference) fails the lowering with one line."""
    from inn_mobile.errors import LoweringError
    from inn_mobile.export import workers

    _, b, _ = packed
    monkeypatch.setattr(workers, "_WORKER", {"inputs": b"cno_such_module_of_the_user\nNet\n."})  # pickle GLOBAL
    with pytest.raises(LoweringError, match="cannot load the model .*no_such_module_of_the_user.*jobs=1"):
        workers._lower(b.buckets[0], ["litert"])
