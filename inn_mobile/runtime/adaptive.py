"""Switching width while serving: react to memory pressure or heat without dropping requests.

A phone's budget changes after app start (another app takes memory, the SoC throttles). The
:class:`AdaptiveModel` keeps serving with the current width while the next one is materialised on a
background thread (one at a time), then swaps it in with a single reference assignment: a request
already running finishes on the model it started with (it holds a reference), later requests use the
new one. Inference never waits for materialisation.
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
        name once requests use it (or raises what opening it raised; the old width keeps serving)."""
        return self._pool.submit(self._switch, bucket)

    def _switch(self, bucket: str) -> str:
        if bucket != self._current.bucket:
            self._current = _Loaded(bucket, self._open(bucket))
            self.switches += 1
        return bucket

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
