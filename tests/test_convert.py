"""convert / resize: exactness at full width, permutation, shapes, errors, behaviour on real data."""

import pytest
import torch
from torch import nn

from inn_mobile.app import models
from inn_mobile.core.convert import convert
from inn_mobile.metrics import accuracy
from inn_mobile.train.prune import l1_prune


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@torch.no_grad()
def test_full_width_reproduces_original(arch):
    name, model, x = arch
    im = convert(model, x)
    assert rel_err(im.resize(1.0)(x), model(x)) <= 1e-4, name


@torch.no_grad()
def test_permutation_keeps_outputs_and_smooths_weights(arch):
    name, model, x = arch
    plain = convert(model, x, permute=False).resize(1.0)
    permuted = convert(model, x)
    assert rel_err(permuted.resize(1.0)(x), plain(x)) <= 1e-4
    assert permuted.smoothness, "every resizable group reports its smoothness"
    for s in permuted.smoothness:
        assert s.after <= s.before + 1e-12, (name, s)
    assert sum(s.before - s.after for s in permuted.smoothness) > 0


@pytest.mark.parametrize("quadrature", ["trapezoid", "simpson", "rectangle"])
@torch.no_grad()
def test_every_quadrature_is_exact_at_full_width(quadrature):
    torch.manual_seed(0)
    model = models.resnet().eval()
    x = torch.randn(2, 1, 28, 28)
    assert rel_err(convert(model, x, quadrature=quadrature).resize(1.0)(x), model(x)) <= 1e-4


@torch.no_grad()
def test_resize_gives_plain_modules_of_the_requested_width(arch):
    name, model, x = arch
    im = convert(model, x)
    n_params_full = sum(p.numel() for p in im.resize(1.0).parameters())
    previous = n_params_full
    for ratio in (0.75, 0.5, 0.25):
        small = im.resize(ratio)
        assert small(x).shape == model(x).shape
        kinds = {type(m) for m in small.modules()}
        assert not any("Integral" in k.__name__ for k in kinds)
        assert all(not m._parameters or isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.BatchNorm1d))
                   for m in small.modules())
        n_params = sum(p.numel() for p in small.parameters())
        assert n_params < previous
        previous = n_params
        sizes = im.sizes_at(ratio)
        for g in im.groups:
            if g.resizable:
                assert sizes[g.id] == max(2, round(ratio * g.size))
    exported = torch.export.export(im.resize(0.5), (x,))  # ready for the mobile exporters
    assert exported is not None


def test_per_group_sizes_and_errors():
    torch.manual_seed(0)
    model = models.resnet().eval()
    x = torch.randn(1, 1, 28, 28)
    im = convert(model, x)
    g = next(g for g in im.groups if "fc.in" in g.members)
    small = im.resize(sizes={g.id: 40})
    fc = small.get_submodule("fc")
    assert fc.in_features == 40
    with pytest.raises(ValueError, match="fixed"):
        im.resize(sizes={0: 3})
    with pytest.raises(ValueError, match="no group 99"):
        im.resize(sizes={99: 3})
    with pytest.raises(ValueError, match="at least 2"):
        im.resize(sizes={g.id: 1})
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        im.resize(1.5)
    with pytest.raises(ValueError, match="exactly one"):
        im.resize()
    assert all(n % 8 == 0 for gid, n in im.sizes_at(0.6, multiple_of=8).items() if im.groups[gid].resizable)


@pytest.mark.slow
@torch.no_grad()
def test_pretrained_efficientnet_lite0_exact_on_a_real_photo():
    skimage_data = pytest.importorskip("skimage.data")
    model = models.efficientnet_lite0(models.pretrained_lite0_path())
    img = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1)[None].float()
    x = (nn.functional.interpolate(img, size=(224, 224), mode="bilinear", antialias=True) - 127.0) / 128.0
    y = model(x)
    assert int(y.argmax()) in (281, 282, 285)  # tabby / tiger cat / Egyptian cat: the weights are real
    im = convert(model, x)
    assert sum(g.resizable for g in im.groups) == 24  # 16 MBConv blocks: expanded axes + residual streams
    assert rel_err(im.resize(1.0)(x), y) <= 1e-4


@torch.no_grad()
def test_on_real_digits_inn_degrades_gracefully_and_beats_l1(digits_model, digits_data):
    _, _, xt, yt = digits_data
    im = convert(digits_model, xt[:2])
    full = accuracy(digits_model, xt, yt)
    assert full >= 95.0
    assert accuracy(im.resize(1.0), xt, yt) == full
    sizes = im.sizes_at(0.875)
    inn = accuracy(im.resize(sizes=sizes), xt, yt)
    l1 = accuracy(l1_prune(im, sizes), xt, yt)
    assert inn > l1
    assert inn >= full - 25.0
