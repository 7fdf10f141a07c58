"""Channel ordering for smoothness (2-opt travelling-salesman path)."""

import numpy as np

from inn_mobile.core.permute import path_length, smooth_order


def test_recovers_the_order_of_a_shuffled_smooth_curve():
    t = np.linspace(0, 1, 60)
    curve = np.stack([np.sin(3 * t), np.cos(2 * t), t**2], 1)
    rng = np.random.default_rng(0)
    shuffle = rng.permutation(60)
    order = smooth_order(curve[shuffle])
    recovered = shuffle[order]
    assert sorted(recovered.tolist()) == list(range(60))
    assert recovered.tolist() in (list(range(60)), list(range(59, -1, -1)))


def test_never_longer_than_the_greedy_start_and_deterministic():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 16))
    order = smooth_order(x)
    assert sorted(order.tolist()) == list(range(120))
    dist = np.linalg.norm(x[:, None] - x[None], axis=-1)
    assert path_length(dist, order) < path_length(dist, np.arange(120))
    assert np.array_equal(order, smooth_order(x))


def test_tiny_inputs():
    assert smooth_order(np.zeros((2, 3))).tolist() == [0, 1]
    assert smooth_order(np.zeros((0, 3))).tolist() == []
