"""LiteRT lowering and host loader: per-bucket .tflite graphs whose weights the core writes at load time.

One bundle (three widths, fp32 and int8 graphs of a ResNet trained on scikit-learn's digits) is built
once per module; the tests open it the way an app would and compare with the torch network resized to
the same width. Fashion-MNIST int8 accuracy uses the committed reference checkpoint (skipped without
the dataset).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

from inn_mobile import native
from inn_mobile.app import datasets
from inn_mobile.core.convert import convert  # noqa: E402
from inn_mobile.export import litert  # noqa: E402
from inn_mobile.format import bundle, reference, runtime_file  # noqa: E402
from inn_mobile.runtime.litert import LiteRTModel  # noqa: E402

RATIOS = (0.75, 0.875, 1.0)  # widths where the digits network still classifies (at 50% it has collapsed)


def _top1(out: torch.Tensor, y: torch.Tensor) -> float:
    return 100.0 * (out.argmax(1) == y).float().mean().item()


def _torch_out(im, b: bundle.Bucket, x: torch.Tensor) -> torch.Tensor:
    """The torch network discretised at the bucket's widths (in chunks: one 10k batch is slow)."""
    net = im.resize(sizes=b.sizes)
    with torch.no_grad():
        return torch.cat([net(c) for c in x.split(500)])


@pytest.fixture(scope="module")
def packed(digits_model, digits_data, tmp_path_factory):
    """(IntegralModel, Bundle, path, {(bucket, runtime): converter bytes}) with fp32 + int8 graphs."""
    x, _, _, _ = digits_data
    im = convert(digits_model, x[:2], calibration=x[:256])
    b = bundle.Bundle(im, bundle.make_buckets(im, RATIOS, multiple_of=2))
    lowered = {}
    for k, bk in enumerate(b.buckets):
        for int8, images in litert.lower_variants(im, bk, x[:1], (False, True), calibration=x[:256]).items():
            lowered[(k, litert.runtime_name(int8))] = images[0].data
            b.graphs[(k, litert.runtime_name(int8))] = runtime_file.encode_record(images)
    path = tmp_path_factory.mktemp("litert") / "digits.innb"
    bundle.save(b, path)
    return im, b, path, lowered


@pytest.mark.slow
def test_fp32_matches_torch_at_three_widths(packed, digits_data):
    im, b, path, _ = packed
    _, _, xt, _ = digits_data
    assert len(b.buckets) == 3
    for k, bk in enumerate(b.buckets):
        out = LiteRTModel.open(path, bucket=k)(xt)
        ref = _torch_out(im, bk, xt)
        err = (out - ref).abs().max().item()
        assert err <= 1e-4 * ref.abs().max().item(), (bk.name, err)


@pytest.mark.slow
def test_int8_agrees_with_torch_at_three_widths(packed, digits_data):
    """int8 vs the fp32 torch net at the same width, on all 1,797 digits images, with bars whose odds are known.

    The old bar (<= 0.5 points of accuracy on the 500 test images, i.e. <= 2 net lost images) failed on
    clean runs: the digits net trains to slightly different weights with 1 or 2 torch threads (float
    sums), and at 75% width its 500 test images then gave 3 lost / 0 gained against 3 / 1. Measured on
    all 1,797 images with both thread counts (worst width w0750): 20-25 disagreements, 8-12 lost and
    4-8 gained. As Binomial counts at the worst rate (p = 25/1797): disagreements have mean 25, sd 5,
    so "agreement >= 97.5%" (<= 44) fails with probability ~1e-4; the net loss (lost - gained) has mean
    8, sd ~3.7 images, so "drop <= 1.0 point" (<= 17 images) fails with probability ~0.5%, while a
    real int8 regression (e.g. a wrong scale in one layer) costs far more than either bar allows."""
    im, b, path, _ = packed
    x, y, xt, yt = digits_data
    xs, ys = torch.cat([x, xt]), torch.cat([y, yt])
    for bk in b.buckets:
        out = LiteRTModel.open(path, bucket=bk.name, int8=True)(xs)
        ref = _torch_out(im, bk, xs)
        agree = (out.argmax(1) == ref.argmax(1)).float().mean().item()
        drop = _top1(ref, ys) - _top1(out, ys)
        assert agree >= 0.975 and drop <= 1.0, (bk.name, agree, drop)


@pytest.mark.slow
def test_reference_filling_runs_the_same_graph(packed, digits_data):
    """The Python reference fills the same bytes as the core, so the same predictions come out."""
    _, _, path, _ = packed
    _, _, xt, _ = digits_data
    expected = LiteRTModel.open(path, bucket="w0875")(xt)
    assert torch.equal(LiteRTModel.open(path, bucket="w0875", reference=True)(xt), expected)


@pytest.mark.slow
def test_core_rebuilds_the_converter_bytes(packed):
    """Python and C filling both give back exactly what litert-torch / ai-edge-quantizer wrote."""
    _, b, path, lowered = packed
    nb = native.NativeBundle.from_file(path)
    for (k, runtime), flat in lowered.items():
        assert reference.fill(b, k, runtime)[litert.FILE_NAME] == flat, (k, runtime)
        assert bytes(nb.fill(k, runtime)[litert.FILE_NAME]) == flat, (k, runtime)


@pytest.mark.slow
def test_bundle_ships_no_weights(packed):
    """No 32-byte run of any layer's fp32 or int8 weights occurs in the stored graph records."""
    im, b, path, _ = packed
    blob = b"".join(b.graphs.values())
    for k in range(len(b.buckets)):
        weights = b.weights(k)
        for spec in im.layers:
            w = weights[spec.name]["weight"]
            w3 = w.reshape(w.shape[0], -1, spec.taps)
            q, _ = reference.quantize_per_channel(w3)
            for arr in (w3.numpy(), q.numpy()):
                for layout in reference.LAYOUTS:
                    needle = np.ascontiguousarray(reference.to_layout(arr, layout)).tobytes()[:32]
                    assert needle not in blob, (k, spec.name, layout)
    assert len(blob) < 0.5 * sum(len(f) for f in packed[3].values())


@pytest.mark.slow
def test_errors_are_clear(packed, digits_data):
    _, b, path, _ = packed
    _, _, xt, _ = digits_data
    with pytest.raises(KeyError, match="width 0.3 not in bundle"):
        LiteRTModel.open(path, bucket=0.3)
    with pytest.raises(KeyError, match="not in bundle"):
        LiteRTModel.open(path, bucket="w0100")
    fp32_only = bundle.Bundle(b.model, b.buckets, graphs={k: v for k, v in b.graphs.items() if k[1] == "litert"})
    with pytest.raises(KeyError, match="no 'litert-i8' graph"):
        LiteRTModel.open(bundle.encode(fp32_only), int8=True)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    with pytest.raises(bundle.BundleError, match="checksum mismatch"):
        LiteRTModel.open(bytes(raw))
    with pytest.raises(bundle.BundleError, match="truncated"):
        LiteRTModel.open(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="graph takes"):
        LiteRTModel.open(path)(torch.zeros(2, 1, 9, 9))
    with pytest.raises(ValueError, match="needs calibration"):
        litert.lower(b.model, b.buckets[0], xt[:1], int8=True)


@pytest.mark.slow
def test_garbled_graph_is_rejected_not_run(packed):
    """A record whose stored bytes are damaged (CRCs re-sealed, as a bad writer would) fails on load."""
    _, b, _, _ = packed
    k = len(b.buckets) - 1
    stored = b.images(k, "litert")[0]
    off, chunk = stored.spans[0]
    bad = runtime_file.Image(stored.name, bytes(off) + b"\xff" * len(chunk) + bytes(stored.size - off - len(chunk)))
    broken = bundle.Bundle(b.model, b.buckets, graphs={(k, "litert"): runtime_file.encode_record([bad])})
    with pytest.raises(bundle.BundleError, match="not a loadable .tflite"):
        LiteRTModel.open(bundle.encode(broken), bucket=k)


@pytest.mark.slow
def test_untrained_net_and_transformed_weights(digits_data):
    """An untrained net has all-zero folded biases, which the converter stores once per length, as in a
    plain file: one bias hole per distinct bias, and the file still rebuilds exactly. A graph whose weight
    buffers are not the sentinels lowering put there (as if the converter had transformed them) fails with
    one line naming the operator."""
    from inn_mobile.app import models
    from inn_mobile.export.sentinel import float_sentinels

    x, _, xt, _ = digits_data
    torch.manual_seed(0)
    im = convert(models.resnet(widths=(16, 32), blocks=(1, 1)).eval(), x[:2])
    small, full = bundle.make_buckets(im, (0.5, 1.0))
    (img,) = litert.lower(im, full, x[:1])
    with torch.no_grad():
        biases = [im.weights_at(full.sizes)[s.name]["bias"] for s in im.layers if s.has_bias]
    distinct = {(b + 0.0).numpy().tobytes() for b in biases}
    assert len(distinct) < len(biases)  # really shared: the all-zero ones
    assert sum(h.tensor == "bias" for h in img.holes) == len(distinct)
    b = bundle.Bundle(im, [small, full], graphs={(1, "litert"): runtime_file.encode_record([img])})
    assert reference.fill(b, 1, "litert")[litert.FILE_NAME] == img.data
    with torch.no_grad():
        other = float_sentinels(im.weights_at(full.sizes), np.random.default_rng(1))
    with pytest.raises(litert.LoweringError, match="operator 0 .* no layer's tensor") as e:
        litert._locate_float(img.data, im, other)
    assert "\n" not in str(e.value) and len(str(e.value)) <= 300


@pytest.mark.slow
def test_same_bundle_serves_executorch_too(packed, digits_data, tmp_path):
    """The ExecuTorch graph of a bucket added next to the LiteRT ones: both run from one bundle."""
    executorch_export = pytest.importorskip("inn_mobile.export.executorch")
    runtime = pytest.importorskip("executorch.runtime")
    im, b, _, _ = packed
    x, _, xt, _ = digits_data
    k = len(b.buckets) - 1
    both = bundle.Bundle(im, b.buckets, graphs=dict(b.graphs))
    both.graphs[(k, executorch_export.RUNTIME)] = runtime_file.encode_record(
        executorch_export.lower(im, b.buckets[k], x[:1]))
    blob = bundle.encode(both)
    files = reference.fill(both, k, executorch_export.RUNTIME)
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    program = runtime.Runtime.get().load_program(tmp_path / executorch_export.PTE,
                                                 data_path=tmp_path / executorch_export.PTD)
    method = program.load_method("forward")
    et = torch.cat([method.execute((xt[i:i + 1],))[0] for i in range(64)])
    lt = LiteRTModel.open(blob, bucket=k)(xt[:64])
    ref = _torch_out(im, b.buckets[k], xt[:64])
    scale = ref.abs().max().item()
    assert (et - ref).abs().max().item() <= 1e-4 * scale
    assert (lt - ref).abs().max().item() <= 1e-4 * scale


@pytest.mark.slow
@pytest.mark.skipif(not datasets.fashion_mnist_available(), reason="Fashion-MNIST not installed "
                    "(apt-get install dataset-fashion-mnist, or set INN_FASHION_MNIST)")
def test_int8_fashion_mnist_reference(tmp_path):
    """int8 on the reference ResNet: >= 99% top-1 agreement, <= 0.5 point accuracy drop at 3 widths."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
    from train_reference import load_reference

    xt, yt = datasets.fashion_mnist("test")
    xtr, _ = datasets.fashion_mnist("train")
    im = convert(load_reference(), xt[:2], calibration=xtr[:256])
    for bk in bundle.make_buckets(im, (0.75, 0.875, 1.0)):
        b = bundle.Bundle(im, [bk], graphs={(0, "litert-i8"): runtime_file.encode_record(
            litert.lower(im, bk, xt[:1], int8=True, calibration=xtr[:512]))})
        out = LiteRTModel.open(bundle.encode(b), bucket=0, int8=True)(xt)
        ref = _torch_out(im, bk, xt)
        agree = (out.argmax(1) == ref.argmax(1)).float().mean().item()
        drop = _top1(ref, yt) - _top1(out, yt)
        assert agree >= 0.99 and drop <= 0.5, (bk.name, agree, drop)


def test_a_saturated_int32_bias_is_recognised_at_either_end_of_the_range():
    """The quantizer casts a bias past the int32 range without saturating (a near-dead channel of the real
    EfficientNet-Lite0 at 75%); the core saturates. Lowering must still recognise the tensor, and only there."""
    hole = runtime_file.Hole(0, 12, 0, "bias_i32", "oit", "i32", 0.1)
    core = np.array([5, 2**31 - 1, -(2**31)], np.int32).tobytes()
    assert litert._close(np.array([6, -(2**31), 2**31 - 1], np.int32).tobytes(), core, hole)
    assert not litert._close(np.array([8, -(2**31), 2**31 - 1], np.int32).tobytes(), core, hole)
    assert not litert._close(np.array([5, 2**31 - 1, 12345], np.int32).tobytes(), core, hole)
