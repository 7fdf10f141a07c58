"""convert() on architectures built by their own libraries (timm, HuggingFace transformers).

A representative subset at 64x64 (MobileNetV3, EfficientNet, GhostNet, ConvNeXt, RegNet, an HF
model): exact at full width, running at 50%. The full list at 224x224 is tools/bench_zoo.py. In CI
(``CI=true``) a missing timm fails instead of skipping: the zoo is part of what we promise.
"""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from inn_mobile.app import models, zoo
from inn_mobile.core import rules
from inn_mobile.core.convert import convert

try:
    from zoo_compat import ensure_torchvision, import_timm

    ensure_torchvision()
    timm = import_timm()
except ImportError as e:  # pragma: no cover - depends on the environment
    if os.environ.get("CI") == "true":
        raise
    pytest.skip(f"zoo packages missing ({e}); pip install 'inn-mobile[zoo]'", allow_module_level=True)


pytestmark = pytest.mark.usefixtures("one_thread")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().abs().max() / b.detach().abs().max())


ZOO = ["mobilenetv3_small_100", "efficientnet_b0", "ghostnet_100", "convnext_atto", "regnety_002",
       "hf:MobileNetV2Config"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
@torch.no_grad()
def test_zoo_model_is_exact_at_full_width_and_runs_at_half(name):
    torch.manual_seed(0)
    model = zoo.load(name) if name.startswith("hf:") else zoo.timm_model(name)
    x = torch.randn(2, 3, 64, 64)
    im = convert(model, x[:1])
    assert rel_err(im.resize(1.0)(x), model(x)) <= 1e-4  # batch 2: nothing was specialised to the traced batch
    assert sum(g.resizable for g in im.groups) >= 0.8 * len(im.groups), im.channel_graph.table()
    half = im.resize(0.5)
    out = half(x)
    assert out.shape == model(x).shape and torch.isfinite(out).all()
    assert sum(p.numel() for p in half.parameters()) < 0.6 * sum(p.numel() for p in model.parameters())


def test_library_layers_become_plain_torch_layers():
    """timm's fused BatchNorm+activation, TF-"same" conv and Linear subclasses are swapped for plain torch
    modules (checked on the example input), so every conv/norm is a resizable layer."""
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=10).eval()
    im = convert(model, torch.randn(1, 3, 64, 64))
    kinds = {type(m) for m in im.template.modules()}
    assert not any(k.__module__.startswith("timm") for k in kinds if k.__name__ not in ("EfficientNet",))
    assert nn.ZeroPad2d in kinds and not im.channel_graph.opaque


def test_attention_stays_fixed_and_the_convolutions_around_it_resize():
    model = timm.create_model("mobilevit_xxs", pretrained=False, num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64)
    im = convert(model, x)
    table = im.channel_graph.table()
    assert "fixed:" in table and im.channel_graph.opaque
    resizable = {m for g in im.groups if g.resizable for m in g.members}
    assert "stem.conv.out" in resizable and any(m.startswith("stages.2.1.conv_kxk") for m in resizable)
    assert torch.isfinite(im.resize(0.5)(x)).all()


def test_a_user_rule_makes_an_unknown_layer_resizable():
    class Swish2(nn.Module):  # an activation we do not know: opaque (fixed) until someone registers it
        def forward(self, x):
            return x * torch.special.expit(2 * x)

    model = nn.Sequential(nn.Conv2d(3, 16, 3), Swish2(), nn.Conv2d(16, 4, 1)).eval()
    x = torch.randn(1, 3, 16, 16)
    fixed = convert(model, x)
    assert not any(g.resizable for g in fixed.groups)
    rules.register_module(Swish2)(rules.passthrough)
    try:
        im = convert(model, x)
        assert any(g.resizable and g.size == 16 for g in im.groups)
        assert rel_err(im.resize(1.0)(x), model(x)) <= 1e-5
    finally:
        rules._MODULE_RULES.pop(Swish2)


def _lite0_in_timm() -> nn.Module:
    """The real EfficientNet-Lite0 ImageNet weights, loaded tensor by tensor into timm's structure (same
    order of use, same shapes: checked)."""
    src = torch.load(models.pretrained_lite0_path(), map_location="cpu", weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    dst = model.state_dict()
    keys_src = [k for k in src if not k.endswith("num_batches_tracked")]
    keys_dst = [k for k in dst if not k.endswith("num_batches_tracked")]
    assert len(keys_src) == len(keys_dst)
    state = {}
    for a, b in zip(keys_src, keys_dst):
        assert src[a].shape == dst[b].shape, (a, b)
        state[b] = src[a]
    model.load_state_dict(state, strict=False)
    return model


@pytest.mark.slow
@torch.no_grad()
def test_pretrained_lite0_in_timm_converted_matches_on_real_photos():
    skimage_data = pytest.importorskip("skimage.data")
    model = _lite0_in_timm()
    photos = [skimage_data.chelsea(), skimage_data.coffee(), skimage_data.astronaut(), skimage_data.rocket()]
    x = torch.cat([
        nn.functional.interpolate(torch.from_numpy(p).permute(2, 0, 1)[None].float(), size=(224, 224),
                                  mode="bilinear", antialias=True)
        for p in photos
    ])
    x = (x - 127.0) / 128.0
    y = model(x)
    assert int(y[0].argmax()) in (281, 282, 285)  # tabby / tiger / Egyptian cat: the weights are real
    im = convert(model, x[:1])
    got = im.resize(1.0)(x)
    assert rel_err(got, y) <= 1e-4
    assert torch.equal(got.topk(5).indices, y.topk(5).indices)
