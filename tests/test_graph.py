"""Channel-group discovery by tracing, on each architecture."""

import pytest
import torch
from torch import nn

from inn_mobile.app import models
from inn_mobile.core import rules
from inn_mobile.core.channels import UnsupportedGraphError, trace
from inn_mobile.core.convert import convert


def groups_by_member(graph):
    return {m: g for g in graph.groups for m in g.members}


def test_resnet_residual_adds_share_one_group():
    graph = trace(torch.fx.symbolic_trace(models.resnet()), torch.randn(1, 1, 28, 28))
    by = groups_by_member(graph)
    # stage 1: stem output, both residual block outputs and the next block inputs are one axis
    stage1 = by["stem.0.out"]
    assert by["layers.0.body.3.out"] is stage1 and by["layers.1.body.3.out"] is stage1
    assert by["layers.2.body.0.in"] is stage1 and by["layers.2.shortcut.0.in"] is stage1
    # a strided block's shortcut output joins its body output; inner block axes are separate groups
    assert by["layers.2.shortcut.0.out"] is by["layers.2.body.3.out"]
    assert by["layers.0.body.0.out"] is not stage1
    assert by["fc.in"] is by["layers.5.body.3.out"] and by["fc.in"].size == 64
    assert not by["stem.0.in"].resizable and not by["fc.out"].resizable  # model input / output stay discrete
    assert sum(g.resizable for g in graph.groups) == 9


def test_mobilenet_depthwise_ties_input_and_output():
    graph = trace(torch.fx.symbolic_trace(models.mobilenet_v2()), torch.randn(1, 3, 64, 64))
    by = groups_by_member(graph)
    assert by["4.conv.0.out"] is by["4.conv.3.out"] is by["4.conv.6.in"]  # expand -> depthwise -> project
    assert by["4.conv.6.out"] is by["5.conv.6.out"]  # inverted residual add
    assert by["5.conv.6.out"] is not by["6.conv.6.out"]  # a strided block starts a new axis
    assert any(s.kind == "depthwise" for s in graph.layers)


def test_concat_makes_composite_axis_and_grouped_conv_cuts_it():
    graph = trace(torch.fx.symbolic_trace(models.BranchNet()), torch.randn(1, 1, 28, 28))
    mix = next(s for s in graph.layers if s.name == "mix.0")
    axis = graph.axis_groups(mix.in_desc)
    sizes = [graph.groups[g].size for g in axis]
    assert sizes == [16, 8, 16, 8]  # cat(a:16, b:24, c:8) cut at 24 by the 2-block grouped conv
    assert sum(sizes[:2]) == sum(sizes[2:]) == 24
    head = next(s for s in graph.layers if s.name == "head")
    assert head.in_spatial == 16  # flatten of (32, 4, 4) -> linear


def test_table_prints_every_group():
    graph = trace(torch.fx.symbolic_trace(models.BranchNet()), torch.randn(1, 1, 28, 28))
    table = graph.table()
    assert table.splitlines()[0].split()[:3] == ["group", "size", "resize"]
    assert len(table.splitlines()) == len(graph.groups) + 1
    assert "mix.0.in" in table


class ChannelShuffle(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        y = self.conv(x)
        return y.reshape(y.shape[0], 2, 4, y.shape[2], y.shape[3]).transpose(1, 2).flatten(1, 2)


class ChannelSoftmax(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        return torch.softmax(self.conv(x), 1)


@pytest.mark.parametrize("model", [ChannelShuffle(), ChannelSoftmax()])
def test_unsupported_op_keeps_its_channels_fixed_and_says_why(model):
    graph = trace(model, torch.randn(1, 3, 8, 8))
    conv_out = next(g for g in graph.groups if "conv.out" in g.members)
    assert not conv_out.resizable and "reshape" in conv_out.why or "softmax" in conv_out.why
    assert "fixed:" in graph.table() and graph.opaque
    im = convert(model.eval(), torch.randn(1, 3, 8, 8))
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(im.resize(1.0)(x), model(x), atol=1e-5)


class NotReallyAConv(nn.Conv2d):
    def forward(self, x):
        return super().forward(x).flip(1)


def test_a_wrong_rule_is_caught_at_full_width_and_names_the_module():
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), NotReallyAConv(8, 8, 1), nn.ReLU(), nn.Conv2d(8, 4, 1))
    x = torch.randn(1, 3, 8, 8)
    assert convert(model.eval(), x).resize(1.0)(x).shape == (1, 4, 8, 8)  # traced through: correct
    rules.register_module(NotReallyAConv)(rules.module_rule(nn.Conv2d(1, 1, 1)))  # a user rule that is wrong
    try:
        with pytest.raises(UnsupportedGraphError, match=r"cannot reproduce '2'.*register a channel rule"):
            convert(model.eval(), x)
    finally:
        rules._MODULE_RULES.pop(NotReallyAConv)
