"""Shared fixtures: small real models (with non-trivial BatchNorm statistics) and real data.

Tests skip where a tool they need is missing (a JDK, cmake, a runtime package, the Fashion-MNIST
package) so that a partial install still runs the rest. With ``INN_REQUIRE_ALL=1`` (set by
``.ci/run``) every such skip is a failure instead: CI installs everything, so a skip there means a
broken install step, never a silently untested feature.
"""

from __future__ import annotations

import os

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


REQUIRE_ALL = os.environ.get("INN_REQUIRE_ALL") == "1"


def _fail_skip(report) -> None:
    if REQUIRE_ALL and report.skipped and not hasattr(report, "wasxfail"):  # an expected failure is no missing tool
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, but INN_REQUIRE_ALL=1 requires every tool: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_skip(outcome.get_result())


@pytest.fixture
def one_thread():
    """One torch thread for the duration of a test: on a shared 2-core machine extra threads only spin
    (small tensors run several-fold, zoo models ~10x, slower with two). Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
