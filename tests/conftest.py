"""Shared fixtures: small real models (with non-trivial BatchNorm statistics) and real data."""

from __future__ import annotations

import pytest
import torch

from inn_mobile.app import datasets, models
from inn_mobile.train import supervised


def randomize_batchnorm(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BatchNorm non-trivial statistics so folding is really exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
    return model.eval()


ARCHS = {
    "resnet": (lambda: models.resnet(), (2, 1, 28, 28)),
    "mobilenet_v2": (lambda: models.mobilenet_v2(), (2, 3, 64, 64)),
    "branchnet": (lambda: models.BranchNet(), (2, 1, 28, 28)),
}


@pytest.fixture(params=sorted(ARCHS))
def arch(request):
    """(name, model with random BN stats, example input) for every test architecture."""
    torch.manual_seed(0)
    make, shape = ARCHS[request.param]
    return request.param, randomize_batchnorm(make()), torch.randn(*shape)


@pytest.fixture(scope="session")
def digits_data():
    return datasets.digits()


@pytest.fixture(scope="session")
def digits_model(digits_data):
    """A small ResNet trained on scikit-learn digits (real data, ~10 s on 2 cores)."""
    x, y, xt, yt = digits_data
    torch.manual_seed(0)
    model = models.resnet(widths=(16, 32), blocks=(1, 1))
    supervised.fit(model, x, y, epochs=12, batch=64, lr=0.05, augmentation=False)
    return model
