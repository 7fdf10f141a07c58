"""Ordering channels so that weights vary smoothly along each continuous axis.

Interpolating between neighbouring channels only makes sense if neighbours are alike. We order the
channels of a group by solving a travelling-salesman *path* over their feature vectors (the slices
of every tensor in the group): greedy nearest-neighbour start, then vectorised 2-opt. An open path is
a cycle through one extra "free" city at distance zero from all others, so 2-opt on the cycle with
that city removed afterwards gives the open path.
"""

from __future__ import annotations

import numpy as np


def path_length(dist: np.ndarray, order: np.ndarray) -> float:
    """Sum of distances between consecutive cities of ``order``."""
    return float(dist[order[:-1], order[1:]].sum())


def smooth_order(features: np.ndarray, *, max_rounds: int = 200) -> np.ndarray:
    """A permutation of the rows of ``features`` (``N x D``) with short total neighbour distance.

    Returns ``order`` such that ``features[order]`` is smooth. Deterministic.
    """
    n = features.shape[0]
    if n < 3:
        return np.arange(n)
    x = features.astype(np.float64)
    sq = (x * x).sum(1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0))
    np.fill_diagonal(dist, 0.0)
    order = _greedy(dist)
    full = np.zeros((n + 1, n + 1))
    full[:n, :n] = dist
    tour = np.concatenate([order, [n]])
    tour = _two_opt(full, tour, max_rounds)
    k = int(np.flatnonzero(tour == n)[0])
    path = np.concatenate([tour[k + 1:], tour[:k]])
    return path if path_length(dist, path) <= path_length(dist, order) else order


def _greedy(dist: np.ndarray) -> np.ndarray:
    n = dist.shape[0]
    start = int(np.argmax(dist.sum(1)))  # an extreme channel makes a natural path end
    visited = np.zeros(n, dtype=bool)
    order = [start]
    visited[start] = True
    for _ in range(n - 1):
        d = np.where(visited, np.inf, dist[order[-1]])
        nxt = int(np.argmin(d))
        order.append(nxt)
        visited[nxt] = True
    return np.asarray(order)


def _two_opt(dist: np.ndarray, tour: np.ndarray, max_rounds: int) -> np.ndarray:
    """2-opt on a cycle; each round applies every improving, non-overlapping reversal it finds."""
    n = tour.size
    iu = np.triu_indices(n, 2)
    for _ in range(max_rounds):
        d = dist[tour][:, tour]
        nxt = np.roll(np.arange(n), -1)
        edge = d[np.arange(n), nxt]
        gain = d + d[nxt][:, nxt] - edge[:, None] - edge[None, :]
        cand = gain[iu]
        good = np.flatnonzero(cand < -1e-12)
        if good.size == 0:
            break
        good = good[np.argsort(cand[good], kind="stable")]
        taken = np.zeros(n + 1, dtype=bool)
        moved = False
        for k in good:
            i, j = int(iu[0][k]), int(iu[1][k])
            if j == n - 1 and i == 0:
                continue  # reversing everything but one city is the same cycle
            if taken[i:j + 2].any():
                continue
            taken[i:j + 2] = True
            tour[i + 1:j + 1] = tour[i + 1:j + 1][::-1].copy()
            moved = True
        if not moved:
            break
    return tour
