"""ExecuTorch lowering per width bucket: weights as holes filled by the native core, run with XNNPACK."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from inn_mobile.app import datasets
from inn_mobile.core.convert import convert
from inn_mobile.format import bundle, reference, runtime_file

pytest.importorskip("executorch", reason="executorch not installed (pip install -e '.[executorch]')")
from inn_mobile.export import executorch as ex  # noqa: E402
from inn_mobile.runtime.executorch import ExecutorchModel  # noqa: E402

pytestmark = pytest.mark.slow  # every test here lowers graphs (seconds each)
BATCH = 8


@pytest.fixture(scope="module")
def packed(tmp_path_factory, digits_model, digits_data):
    """A digits ResNet packed with fp32 graphs at three widths and an int8 graph at full width."""
    x, _, xt, _ = digits_data
    im = convert(digits_model, xt[:2], calibration=x[:256])
    buckets = bundle.make_buckets(im, (0.5, 0.75, 1.0))
    example = xt[:BATCH]
    lowered = {(k, ex.RUNTIME): ex.lower(im, b, example) for k, b in enumerate(buckets)}
    full = len(buckets) - 1
    lowered[(full, ex.RUNTIME_INT8)] = ex.lower(im, buckets[full], example, int8=True, calibration=x[:256])
    b = bundle.Bundle(im, buckets, graphs={key: runtime_file.encode_record(imgs) for key, imgs in lowered.items()})
    path = tmp_path_factory.mktemp("et") / "digits.innb"
    bundle.save(b, path)
    return im, b, path, lowered


def _batches(x: torch.Tensor) -> list[torch.Tensor]:
    return [c for c in x.split(BATCH) if len(c) == BATCH]


def test_fp32_matches_torch_at_three_widths(packed, digits_data):
    im, b, path, _ = packed
    xt = digits_data[2]
    for k, bucket in enumerate(b.buckets):
        model = ExecutorchModel.open(path, bucket=bucket.name)
        ref = im.resize(sizes=bucket.sizes)
        assert model.bucket == k and model.input_shape == (BATCH, 1, 8, 8)
        for x in _batches(xt)[:8]:
            want = ref(x).detach()
            assert (model(x) - want).abs().max() <= 1e-4 * want.abs().max(), bucket.name


def test_core_rebuilds_exactly_the_lowered_files_without_storing_weights(packed):
    im, b, path, lowered = packed
    for (k, runtime), images in lowered.items():
        filled = reference.fill(b, k, runtime)
        for img in images:
            assert filled[img.name] == img.data, (b.buckets[k].name, runtime, img.name)
        ptd = next(s for s in runtime_file.decode_record(b.graphs[(k, runtime)]) if s.name == ex.PTD)
        stored = sum(len(chunk) for _, chunk in ptd.spans)  # FlatTensor header and keys (64-char hashes) only
        assert stored <= 256 * (len(ptd.holes) + 1), f"{runtime} {b.buckets[k].name}: {stored} .ptd bytes stored"


def test_an_nn_sequential_keeps_its_weights_out_of_the_pte(tmp_path):
    """nn.Sequential names its parameters "0.weight", "2.weight"...: torch.export used to drop the external
    tag of such names when the graph was exported a second time, so the weights stayed inside model.pte and
    lowering failed ("ExecuTorch wrote data files []"). Every weight must be a hole of weights.ptd."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3),
                              torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(8, 4)).eval()
    x = torch.randn(2, 3, 12, 12)
    im = convert(net, x)
    buckets = bundle.make_buckets(im, (0.5,))
    images = ex.lower(im, buckets[0], x)
    holes = {img.name: {(h.layer, h.tensor) for h in img.holes} for img in images}
    assert holes[ex.PTE] == set()
    assert holes[ex.PTD] == {(k, t) for k in range(len(im.layers)) for t in ("weight", "bias")}
    path = tmp_path / "seq.innb"
    bundle.save(bundle.Bundle(im, buckets, graphs={(0, ex.RUNTIME): runtime_file.encode_record(images)}), path)
    got = ExecutorchModel.open(path, bucket=buckets[0].name)(x)
    want = im.resize(sizes=buckets[0].sizes)(x).detach()
    assert (got - want).abs().max() <= 1e-4 * want.abs().max()


def test_int8_agrees_with_fp32(packed, digits_data):
    im, b, path, _ = packed
    xt = digits_data[2]
    full = len(b.buckets) - 1
    model = ExecutorchModel.open(path, bucket=full, int8=True)
    ref = im.resize(sizes=b.buckets[full].sizes)
    xs = _batches(xt)
    agree = torch.cat([model(x).argmax(1) == ref(x).argmax(1) for x in xs]).float().mean().item()
    assert agree >= 0.97


def test_errors_are_clear(packed, tmp_path):
    im, b, path, lowered = packed
    raw = bytearray(path.read_bytes())
    raw[bundle.HEADER_SIZE + 2] ^= 0xFF  # inside the INFO section: checksummed
    with pytest.raises(bundle.BundleError, match="corrupted"):
        ExecutorchModel.open(bytes(raw), bucket=0)
    with pytest.raises(KeyError, match="not in bundle"):
        ExecutorchModel.open(path, bucket="w0300")
    with pytest.raises(KeyError, match="not in bundle"):
        ExecutorchModel.open(path, bucket=len(b.buckets))
    with pytest.raises(KeyError, match="no 'executorch-i8' graph"):
        ExecutorchModel.open(path, bucket=0, int8=True)
    pte_only = [img for img in lowered[(0, ex.RUNTIME)] if img.name == ex.PTE]
    broken = bundle.Bundle(im, b.buckets, graphs={(0, ex.RUNTIME): runtime_file.encode_record(pte_only)})
    with pytest.raises(bundle.BundleError, match="has no weights.ptd"):  # XNNPACK would segfault
        ExecutorchModel.open(bundle.encode(broken), bucket=0)


def test_lowering_fails_loudly_when_a_tensor_is_not_found_exactly_once(packed):
    """A tensor missing from the files, or found twice, stops lowering with one line naming the layer."""
    im, b, _, lowered = packed
    files = {img.name: img.data for img in lowered[(0, ex.RUNTIME)]}
    wanted = ex.float_wanted(im.layers, b.weights(0))  # the lowered files hold the real weights in their holes
    assert sum(len(h) for h in ex.locate_holes(files, im.layers, wanted).values()) == sum(
        len(t) for _, t in wanted)
    for bad, match in (({ex.PTE: files[ex.PTE]}, "not in"), ({**files, "copy.ptd": files[ex.PTD]}, "occurs 2 times")):
        with pytest.raises(ex.LoweringError, match=match) as e:
            ex.locate_holes(bad, im.layers, wanted)
        assert "\n" not in str(e.value) and len(str(e.value)) <= 300 and "layer '" in str(e.value)


def test_int8_activation_ranges_are_the_calibration_min_max_after_a_fused_relu6():
    """Activations are quantised over the absolute min/max seen in calibration (the LiteRT recipe's rule),
    not a range fitted to a histogram that clips the largest values: one rare large input sets the scale.
    A conv followed by ReLU6 is one quantised operator: its output range is the clamp's, not the
    conv's (which XNNPACK's quantizer shared with the clamp, quantising [0, 6] many times too coarsely)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU6(), torch.nn.Conv2d(4, 2, 1)).eval()
    calib = torch.rand(16, 1, 8, 8) * 2 - 1
    calib[5, 0, 3, 4] = 40.0  # an outlier a squared-error range would clip
    gm = ex._calibrated(net, calib[:1], calib)
    convs = [n for n in gm.graph.nodes if n.target == torch.ops.aten.conv2d.default]
    assert [u.target for u in convs[0].users] == [torch.ops.aten.hardtanh.default]  # no quantize in between
    x, hidden_q = convs[0].args[0], convs[1].args[0]
    assert x.target == hidden_q.target == torch.ops.quantized_decomposed.dequantize_per_tensor.default
    lo, hi = min(calib.min().item(), 0.0), max(calib.max().item(), 0.0)
    assert x.args[1] == pytest.approx((hi - lo) / 255, rel=1e-6)
    with torch.no_grad():
        pre = net[0](calib)
        hidden = net[1](pre)
    assert (pre.max() - pre.min()).item() > 3 * 6  # the conv's own range is far wider than the clamp's
    assert hidden_q.args[1] == pytest.approx(hidden.max().item() / 255, rel=1e-6)


def test_int8_calibration_runs_on_one_thread_whatever_the_callers_setting(monkeypatch):
    """The observed ranges must not depend on torch's thread count (a reduction split over threads rounds
    differently: on EfficientNet-Lite0 at 224x224 the int8 .pte differed between 1 and 2 threads), or pack's
    worker processes, each with its share of the threads, would write other bytes than one process."""
    import torchao.quantization.pt2e.quantize_pt2e as pt2e

    seen: list[int] = []
    prepare = pt2e.prepare_pt2e

    def recording(model, quantizer):
        prepared = prepare(model, quantizer)
        prepared.register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads()))
        return prepared

    monkeypatch.setattr(pt2e, "prepare_pt2e", recording)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1)).eval()
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ex._calibrated(net, torch.rand(1, 1, 8, 8), torch.rand(6, 1, 8, 8))
        assert seen == [1] * 6 and torch.get_num_threads() == 2  # the caller's setting is restored
    finally:
        torch.set_num_threads(before)


def test_provenance_is_shared_only_while_lowering():
    """Inside the block a node's history is shared, not deep-copied; after it torch behaves as before."""
    import copy

    from torch.fx.traceback import NodeSource

    source = NodeSource(None, "a pass")
    with ex._shared_provenance():
        assert copy.deepcopy([source])[0] is source
    assert copy.deepcopy([source])[0] is not source
    assert "__deepcopy__" not in NodeSource.__dict__


@pytest.mark.parametrize("keep_caches", [False, True], ids=["as shipped", "caches kept"])
def test_a_lowering_leaves_no_network_behind(monkeypatch, keep_caches):
    """Packing lowers many widths in one process: a finished int8 lowering must not leave its networks (the
    calibrated copy holds the float weights) in the lowering libraries' unbounded caches. Each later lowering
    adds well under half the float weights' bytes; with the caches left as they are (the control case) it
    adds more than all of them, which shows the measurement can tell the two apart."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
    from bench_lowering_memory import live_tensor_bytes

    if keep_caches:
        monkeypatch.setattr(ex, "_GRAPH_CACHES", ())
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 256, 3), torch.nn.ReLU(), torch.nn.Conv2d(256, 256, 3),
                              torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(256, 10)).eval()
    x = torch.rand(8, 3, 12, 12)
    im = convert(net, x[:1])
    bucket = bundle.make_buckets(im, [1.0])[0]
    weights = sum(p.numel() * 4 for p in net.parameters())
    ex.lower(im, bucket, x[:1], int8=True, calibration=x)  # the first pays the libraries' one-off state
    before = live_tensor_bytes()
    for _ in range(2):
        ex.lower(im, bucket, x[:1], int8=True, calibration=x)
    grown = (live_tensor_bytes() - before) / 2
    if keep_caches:
        assert grown > weights, (grown, weights)
    else:
        assert grown < 0.5 * weights, (grown, weights)


@pytest.mark.skipif(not datasets.fashion_mnist_available(), reason="Fashion-MNIST absent (apt-get install "
                    "dataset-fashion-mnist)")
def test_int8_fashion_mnist_top1_agreement_and_accuracy(tmp_path):
    """Full width, 10,000 test images: int8 ExecuTorch vs the fp32 torch model at the same width, with
    float32 nodes and with int8 nodes (the small bundle: nodes quantised, then weights again)."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
    from train_reference import CHECKPOINT, load_reference

    if not CHECKPOINT.exists():
        pytest.skip(f"{CHECKPOINT} missing")
    xt, yt = datasets.fashion_mnist("test")
    xtr, _ = datasets.fashion_mnist("train")
    im = convert(load_reference(), xt[:2], calibration=xtr[:256])
    full = bundle.make_buckets(im, (1.0,))
    graphs = {(0, ex.RUNTIME_INT8): runtime_file.encode_record(ex.lower(im, full[0], xt[:500], int8=True,
                                                                 calibration=xtr[:1000]))}
    ref = im.resize(sizes=full[0].sizes)
    with torch.no_grad():
        p32 = torch.cat([ref(x).argmax(1) for x in xt.split(500)])
    acc32 = (p32 == yt).float().mean().item() * 100
    for nodes in ("f32", "i8"):
        path = tmp_path / f"fmnist_{nodes}.innb"
        bundle.save(bundle.Bundle(im, full, graphs=graphs), path, node_dtype=nodes)
        model = ExecutorchModel.open(path, bucket=0, int8=True, threads=2)
        with torch.no_grad():
            p8 = torch.cat([model(x).argmax(1) for x in xt.split(500)])
        agree = (p8 == p32).float().mean().item()
        acc8 = (p8 == yt).float().mean().item() * 100
        assert agree >= 0.99, f"{nodes} nodes: top-1 agreement {agree:.4f}"
        assert acc32 - acc8 <= 0.5, f"{nodes} nodes: int8 {acc8:.2f}% vs fp32 {acc32:.2f}%"
