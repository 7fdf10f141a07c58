"""Ordering channels so that weights vary smoothly along each continuous axis.

Interpolating between neighbouring channels only makes sense if neighbours are alike. We order the
channels of a group by solving a travelling-salesman *path* over their feature vectors (the slices
of every tensor in the group): greedy nearest-neighbour start, then 2-opt restricted to each
channel's ``k`` nearest neighbours (the classic neighbour-list 2-opt: an improving 2-opt move almost
always creates an edge to a near neighbour, so only those ``n·k`` moves are evaluated per round,
all at once in numpy, instead of all ``n²/2``). Each round applies every improving, non-overlapping
reversal it found, best first. An open path is a cycle through one extra "free" city at distance
zero from all others; that city is every channel's candidate, so moves that change the path's ends
are found too.

Cost: one ``n x n`` distance matrix (a float32 Gram product) and ``O(n·k)`` per round, so a
2048-channel group takes about a second where the full 2-opt took 100 s.
"""

from __future__ import annotations

import numpy as np
import torch


def path_length(dist: np.ndarray, order: np.ndarray) -> float:
    """Sum of distances between consecutive cities of ``order``."""
    return float(dist[order[:-1], order[1:]].sum())


def distances(features: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``features`` (float64 result, float32 Gram product:
    ordering needs ranks, not the last digits, and the product dominates the cost). The product
    runs in torch, which follows ``torch.set_num_threads`` (numpy's BLAS keeps its own threads)."""
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    sq = x.double().square().sum(1)
    gram = (x @ x.T).double()
    dist = (sq[:, None] + sq[None, :] - 2.0 * gram).clamp_min_(0.0).sqrt_().numpy()
    np.fill_diagonal(dist, 0.0)
    return dist


def smooth_order(features: np.ndarray, *, neighbours: int = 24, max_rounds: int = 1000) -> np.ndarray:
    """A permutation of the rows of ``features`` (``N x D``) with short total neighbour distance.

    Returns ``order`` such that ``features[order]`` is smooth. Deterministic.
    """
    n = features.shape[0]
    if n < 3:
        return np.arange(n)
    dist = distances(features)
    order = _greedy(dist)
    full = np.zeros((n + 1, n + 1))
    full[:n, :n] = dist
    tour = _two_opt(full, np.concatenate([order, [n]]), _candidates(dist, neighbours), max_rounds)
    k = int(np.flatnonzero(tour == n)[0])
    path = np.concatenate([tour[k + 1:], tour[:k]])
    return path if path_length(dist, path) <= path_length(dist, order) else order


def _greedy(dist: np.ndarray) -> np.ndarray:
    n = dist.shape[0]
    start = int(np.argmax(dist.sum(1)))  # an extreme channel makes a natural path end
    d = dist.copy()
    d[:, start] = np.inf
    order = np.empty(n, dtype=np.int64)
    order[0] = start
    for t in range(1, n):
        nxt = int(np.argmin(d[order[t - 1]]))
        order[t] = nxt
        d[:, nxt] = np.inf
    return order


def _candidates(dist: np.ndarray, k: int) -> np.ndarray:
    """Each city's ``k`` nearest others, plus the free city ``n`` (index of the path's open end)."""
    n = dist.shape[0]
    k = min(k, n - 1)
    d = dist + np.diag(np.full(n, np.inf))
    near = np.argpartition(d, k - 1, axis=1)[:, :k] if k < n - 1 else np.argsort(d, axis=1)[:, :k]
    return np.concatenate([near, np.full((n, 1), n)], 1)


def _two_opt(dist: np.ndarray, tour: np.ndarray, cand: np.ndarray, max_rounds: int) -> np.ndarray:
    """Neighbour-list 2-opt on a cycle of ``N = n + 1`` cities (the last one free).

    For city ``a`` and candidate ``c``, the *successor* move adds edges (a, c) and (succ a, succ c)
    by reversing the tour from succ a to c; the *predecessor* move adds (a, c) and (pred a, pred c)
    by reversing it from a to pred c. Each round scores every candidate move of the looked-at cities
    at once, then applies them best first, re-scoring each against the current tour (earlier moves
    of the round may have changed it). Next round looks only at cities whose edges changed and the
    cities that list them as candidates ("don't-look bits"); when they offer nothing, one round over
    every city confirms the local optimum.
    """
    big_n = tour.size
    n = cand.shape[0]
    pos = np.empty(big_n, dtype=np.int64)
    pos[tour] = np.arange(big_n)
    active = np.arange(n)
    for _ in range(max_rounds):
        a = np.repeat(active, cand.shape[1])
        c = cand[active].ravel()
        pa, pc = pos[a], pos[c]
        d_ac = dist[a, c]
        gains, moves = [], []
        for step in (1, -1):
            na, nc = tour[(pa + step) % big_n], tour[(pc + step) % big_n]
            gain = d_ac + dist[na, nc] - dist[a, na] - dist[c, nc]
            ok = (gain < -1e-12) & (na != c) & (nc != a)  # adjacent pairs have no 2-opt move
            gains.append(gain[ok])
            moves.append(np.stack([a[ok], c[ok], np.full(int(ok.sum()), step)], 1))
        gain = np.concatenate(gains)
        if gain.size == 0:
            if active.size == n:
                break
            active = np.arange(n)
            continue
        touched = []
        for a_, c_, step in np.concatenate(moves)[np.argsort(gain, kind="stable")].tolist():
            i, j = int(pos[a_]), int(pos[c_])
            na, nc = int(tour[(i + step) % big_n]), int(tour[(j + step) % big_n])
            if na == c_ or nc == a_ or dist[a_, c_] + dist[na, nc] - dist[a_, na] - dist[c_, nc] >= -1e-12:
                continue
            _reverse(tour, pos, (i + 1, j) if step == 1 else (i, j - 1))
            touched += (a_, c_, na, nc)
        if not touched and active.size == n:
            break
        changed = np.zeros(big_n, dtype=bool)
        changed[touched] = True
        changed[n] = False  # the free city is everyone's candidate
        active = np.flatnonzero(changed[:n] | changed[cand].any(1))  # changed cities and those that list them
    return tour


def _reverse(tour: np.ndarray, pos: np.ndarray, span: tuple[int, int]) -> None:
    """Reverse the cyclic run of positions ``span[0] .. span[1]`` (or, equivalently for a cycle, the
    shorter complement) and update ``pos``."""
    big_n = tour.size
    s, e = span[0] % big_n, span[1] % big_n
    length = (e - s) % big_n + 1
    if 2 * length > big_n:
        s, length = (e + 1) % big_n, big_n - length
    idx = (s + np.arange(length)) % big_n
    tour[idx] = tour[idx[::-1]]
    pos[tour[idx]] = idx
