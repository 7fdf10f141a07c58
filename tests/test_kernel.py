"""The interpolation kernel, partitions and quadrature (DESIGN.md section 1)."""

import pytest
import torch

from inn_mobile.core import kernel


def test_cubic_kernel_values():
    s = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, -0.5, -1.5], dtype=torch.float64)
    expected = [1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0, 0.5625, -0.0625]
    assert kernel.cubic(s).tolist() == pytest.approx(expected, abs=1e-15)


def test_taps_partition_of_unity_and_node_reproduction():
    idx, w = kernel.taps(kernel.uniform_partition(37), 13)
    assert torch.allclose(w.sum(1), torch.ones(37, dtype=torch.float64), atol=1e-12)
    assert int(idx.min()) >= 0 and int(idx.max()) <= 12
    nodes = torch.randn(13, 5, dtype=torch.float64)
    idx, w = kernel.taps(kernel.uniform_partition(13), 13)  # samples exactly at the nodes
    assert torch.allclose(kernel.resample(nodes, 0, idx, w), nodes, atol=1e-12)


def test_sampling_at_the_nodes_reads_each_node_alone_with_weight_one():
    """k / (n-1) * (n-1) is not always k in float64 (13 / 95 * 95 is 13.000000000000002): the snap makes
    full width, and every width whose points fall on nodes (n - 1 dividing m - 1), one-hot taps, so a
    full-width layer is exactly its nodes and the core's identity path runs."""
    for n, m in [(k, m) for k in range(2, 400) for m in (k, 2 * k - 1)]:
        idx, w = kernel.taps(kernel.uniform_partition(n), m)
        step = (m - 1) // (n - 1)
        on_node = w.eq(1.0).sum(1).eq(1) & w.eq(0.0).sum(1).eq(kernel.TAPS - 1)
        assert bool(on_node.all()), f"n={n} m={m}: rows {torch.nonzero(~on_node).flatten().tolist()[:5]}"
        assert torch.equal(idx[w == 1.0], torch.arange(n) * step)


def test_the_snap_keeps_gradients_of_trained_points():
    """A trained point that lands on a node still gets the kernel's gradient (the snap is a constant shift):
    for f(k) = k^2, d/dp of the interpolant at node k is (m - 1) (f(k+1) - f(k-1)) / 2 = 8 k (m = 5)."""
    p = kernel.uniform_partition(5).clone().requires_grad_()
    idx, w = kernel.taps(p, 5)
    kernel.resample(torch.arange(5, dtype=torch.float64) ** 2, 0, idx, w, signed_zeros=False).sum().backward()
    assert p.grad[1:-1].tolist() == [8.0, 16.0, 24.0]


def test_interpolation_reproduces_quadratics_in_the_interior():
    m = 21
    t = torch.linspace(0, 1, m, dtype=torch.float64)
    f = 3 * t**2 - t + 0.5
    pts = torch.linspace(0.15, 0.85, 50, dtype=torch.float64)
    idx, w = kernel.taps(pts, m)
    assert torch.allclose(kernel.resample(f, 0, idx, w), 3 * pts**2 - pts + 0.5, atol=1e-12)


@pytest.mark.parametrize("rule", kernel.QUADRATURES)
@pytest.mark.parametrize("n", [3, 4, 9, 10, 64])
def test_quadrature_sums_to_one(rule, n):
    q = kernel.quadrature(kernel.uniform_partition(n), rule)
    assert float(q.sum()) == pytest.approx(1.0, abs=1e-12)
    assert bool((q > 0).all())


def test_quadrature_exactness():
    p = kernel.uniform_partition(11)
    assert float((kernel.quadrature(p, "trapezoid") * (2 * p + 1)).sum()) == pytest.approx(2.0, abs=1e-12)
    for n in (9, 10):  # odd: Simpson; even: Simpson + 3/8 rule, both exact for cubics
        p = kernel.uniform_partition(n)
        assert float((kernel.quadrature(p, "simpson") * p**3).sum()) == pytest.approx(0.25, abs=1e-12)
    with pytest.raises(ValueError, match="unknown quadrature"):
        kernel.quadrature(p, "gauss")


def test_trainable_partition_stays_valid_under_gradient_steps():
    delta = torch.nn.Parameter(torch.rand(15) + 0.1)
    opt = torch.optim.SGD([delta], lr=0.5)
    for _ in range(20):
        p = kernel.partition_from_deltas(delta)
        kernel.check_partition(p)
        idx, w = kernel.taps(p, 16)
        loss = (kernel.resample(torch.randn(16, dtype=torch.float64), 0, idx, w) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        assert delta.grad is not None and torch.isfinite(delta.grad).all()
        opt.step()
    p = kernel.partition_from_deltas(delta)
    assert p[0] == 0.0 and p[-1] == 1.0 and bool((torch.diff(p) >= 0).all())


@pytest.mark.parametrize("bad, match", [
    (torch.tensor([0.1, 0.5, 1.0]), "start at 0"),
    (torch.tensor([0.0, 0.7, 0.5, 1.0]), "non-decreasing"),
    (torch.tensor([0.0, float("nan"), 1.0]), "non-finite"),
])
def test_check_partition_rejects_invalid(bad, match):
    with pytest.raises(ValueError, match=match):
        kernel.check_partition(bad)


def test_resample_without_signed_zeros_gives_the_same_values_and_gradients():
    """``signed_zeros=False`` (training) skips the masks: every non-zero output is bit-identical, zeros stay
    zeros (only their sign may differ), and the gradients reaching the nodes are the same values."""
    gen = torch.Generator().manual_seed(0)
    nodes = torch.randn(9, 5, 3, generator=gen)
    nodes[2] = 0.0
    nodes[4, 1] = -0.0
    idx, w = kernel.taps(kernel.uniform_partition(6), 9)
    idx, w = torch.cat([idx, idx[:1]]), torch.cat([w.float(), torch.zeros(1, w.shape[1])])  # a row of zero taps
    for dim, x in ((0, nodes), (1, nodes.transpose(0, 1).contiguous())):
        exact_in, fast_in = x.clone().requires_grad_(), x.clone().requires_grad_()
        exact = kernel.resample(exact_in, dim, idx, w)
        fast = kernel.resample(fast_in, dim, idx, w, signed_zeros=False)
        nonzero = exact != 0
        assert bool(((fast != 0) == nonzero).all())
        assert torch.equal(exact[nonzero].view(torch.int32), fast[nonzero].view(torch.int32))
        upstream = torch.randn(exact.shape, generator=gen)
        exact.backward(upstream)
        fast.backward(upstream)
        assert torch.equal(exact_in.grad, fast_in.grad)
