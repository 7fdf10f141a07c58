"""A converted model pickles (pack's worker processes, ``torch.save``) and comes back the same."""

from __future__ import annotations  # the annotations below are strings, as in timm: fx cannot pickle those

import io
import pickle

import torch
from torch import nn

from inn_mobile.core.convert import convert


class Annotated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean((2, 3)))


@torch.no_grad()
def test_every_zoo_architecture_survives_pickling(arch):
    """Same node names (layers and channel rewrites are found by name), same module order, same outputs at
    a narrow width; ``channel_graph`` (the tracer's analysis, holding the traced nodes) is dropped."""
    name, model, x = arch
    im = convert(model, x)
    back = pickle.loads(pickle.dumps(im))
    assert [n.name for n in back.template.graph.nodes] == [n.name for n in im.template.graph.nodes], name
    assert [n for n, _ in back.template.named_modules()] == [n for n, _ in im.template.named_modules()], name
    assert torch.equal(back.resize(0.5)(x), im.resize(0.5)(x)), name
    assert back.channel_graph is None and im.channel_graph is not None


@torch.no_grad()
def test_a_model_with_postponed_annotations_saves_and_loads():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    im = convert(Annotated().eval(), x)
    assert any(isinstance(n.type, str) for n in im.template.graph.nodes)  # what fx's own pickling fails on
    buf = io.BytesIO()
    torch.save(im, buf)
    back = torch.load(io.BytesIO(buf.getvalue()), weights_only=False)
    assert [(n.name, n.type) for n in back.template.graph.nodes] == [(n.name, n.type) for n in im.template.graph.nodes]
    assert torch.equal(back.resize(0.25)(x), im.resize(0.25)(x))
