"""Switching width while serving: react to memory pressure or heat without dropping requests.

A phone's budget changes after app start (another app takes memory, the SoC throttles). The
:class:`AdaptiveModel` keeps serving with the current width while the next one is materialised on a
background thread (one at a time, only the latest request), then swaps it in with a single reference
assignment: a request already running finishes on the model it started with (it holds a reference),
later requests use the new one. Inference never waits for materialisation.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from inn_mobile.runtime import policy


@dataclass
class _Loaded:
    bucket: str
    model: Callable[[Any], Any]
    lock: threading.Lock = field(default_factory=threading.Lock)  # runtimes' interpreters are not re-entrant


class AdaptiveModel:
    """Serve ``open_bucket(name)`` models, switching between buckets at run time.

    ``open_bucket`` materialises one bucket and returns a callable model (e.g. a bound
    ``LiteRTModel.open`` / ``ExecutorchModel.open``); ``candidates`` (from
    :func:`inn_mobile.runtime.policy.candidates`) lets :meth:`adapt` re-run the width policy on a new budget.
    """

    def __init__(self, open_bucket: Callable[[str], Callable[[Any], Any]], bucket: str,
                 candidates: list[policy.Candidate] | None = None) -> None:
        self._open = open_bucket
        self._candidates = candidates
        self._current = _Loaded(bucket, open_bucket(bucket))
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inn-materialise")
        self._lock = threading.Lock()
        self._wanted: tuple[str, Future] | None = None  # the latest request not yet started
        self._draining = False  # a worker is (or is about to be) serving requests
        self.switches = 0

    @property
    def bucket(self) -> str:
        return self._current.bucket

    def __call__(self, x: Any) -> Any:
        loaded = self._current  # one reference read: the request stays on this model to the end
        with loaded.lock:
            return loaded.model(x)

    def switch(self, bucket: str) -> Future:
        """Materialise ``bucket`` in the background and swap it in; the future resolves to the bucket
        name once requests use it (or raises what opening it raised; the old width keeps serving).

        Only the latest request counts: one that has not started when a newer one arrives is cancelled
        (its future raises ``CancelledError``). Budget signals come in bursts, and materialising every
        width of a burst in turn would serve the one that matters last (101 queued switches took 101
        materialisations before)."""
        future: Future = Future()
        with self._lock:
            stale, self._wanted = self._wanted, (bucket, future)
            start, self._draining = not self._draining, True
        if stale is not None:
            stale[1].cancel()
        if start:
            self._pool.submit(self._drain)
        return future

    def _drain(self) -> None:
        """Serve the latest request until none is waiting (on the pool's one thread)."""
        while True:
            with self._lock:
                if self._wanted is None:
                    self._draining = False
                    return
                (bucket, future), self._wanted = self._wanted, None
            if not future.set_running_or_notify_cancel():
                continue
            try:
                if bucket != self._current.bucket:
                    self._current = _Loaded(bucket, self._open(bucket))
                    self.switches += 1
            except BaseException as e:  # the caller's to handle, through the future
                future.set_exception(e)
            else:
                future.set_result(bucket)

    def adapt(self, memory_budget: int, latency_budget_ms: float | None = None) -> tuple[policy.Choice, Future]:
        """Re-choose the width for a new budget (e.g. on ``onTrimMemory`` or a thermal signal)."""
        if self._candidates is None:
            raise ValueError("adapt() needs the candidates the width policy chooses from")
        choice = policy.choose(self._candidates, memory_budget, latency_budget_ms)
        return choice, self.switch(choice.bucket)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __enter__(self) -> AdaptiveModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
