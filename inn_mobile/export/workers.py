"""Lowering several buckets at once, each in a worker process: what ``pack(..., jobs=N)`` runs.

The converters (ExecuTorch's passes, LiteRT's) are Python-bound and single-threaded, so one process
lowers one graph at a time whatever the cores; N worker processes lower N (bucket, runtime family)
pairs at once. Workers are *spawned* (a fresh interpreter each: forking a process whose torch, OpenMP
or converter thread pools are running can hang the child), receive the model once (pickled:
``IntegralModel`` keeps its graph's node names, :mod:`inn_mobile.core.graph_state`), and log as the
parent is set up to (its logger levels, warning filters and environment; the standard error they
inherit is the parent's at the time the pool starts). Each worker gets an equal share of torch's
threads. The results come back in the order of the buckets, each bucket's runtimes in the order
``lower_runtimes`` gives them, so the bundle is the same byte for byte as one process writes.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

import torch

from inn_mobile.core.integral import IntegralModel
from inn_mobile.errors import LoweringError
from inn_mobile.export.lowering import families, lower_runtimes
from inn_mobile.format import bundle, runtime_file
from inn_mobile.progress import progress

_WORKER: dict = {}  # in a worker: the pickled (model, example input, calibration), then those unpickled


def _logging_setup() -> tuple[dict[str, int], list]:
    """The parent's explicitly set logger levels (the root's included) and its warning filters."""
    levels = {name: lg.level for name, lg in logging.Logger.manager.loggerDict.items()
              if isinstance(lg, logging.Logger) and lg.level != logging.NOTSET}
    levels[""] = logging.getLogger().level
    return levels, list(warnings.filters)


def _start(inputs: bytes, threads: int, levels: dict[str, int], filters: list) -> None:
    """Set up a worker. The inputs stay pickled until the first lowering, so that a model a worker cannot
    unpickle (a class it cannot import) fails that lowering with a message, not the pool without one."""
    torch.set_num_threads(threads)
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)
    warnings.filters[:] = filters
    _WORKER["inputs"] = inputs


def _lower(b: bundle.Bucket, runtime_names: list[str]) -> dict[str, list[runtime_file.Image]]:
    if "model" not in _WORKER:
        try:
            _WORKER["model"], _WORKER["example_input"], _WORKER["calibration"] = pickle.loads(_WORKER["inputs"])
        except (ImportError, AttributeError) as e:  # a class pickled by reference that this process cannot find
            raise LoweringError(f"a worker process cannot load the model ({type(e).__name__}: {e}): make its "
                                "module importable (on sys.path) or pack with jobs=1") from None
    return lower_runtimes(_WORKER["model"], b, _WORKER["example_input"], runtime_names,
                          calibration=_WORKER["calibration"])


def lower_all(model: IntegralModel, buckets: Sequence[bundle.Bucket], example_input: torch.Tensor,
              runtime_names: Sequence[str], *, calibration: torch.Tensor | None, jobs: int,
              ) -> list[dict[str, list[runtime_file.Image]]]:
    """Every bucket's files for every runtime (as ``lower_runtimes`` gives one bucket's), ``jobs`` at a time.

    The first lowering error stops the rest and is raised as the worker raised it (one line, naming the
    runtime and width); a worker that dies (out of memory, a converter's crash) is a ``LoweringError``."""
    tasks = [(k, [rt.name for rt in group]) for k in range(len(buckets)) for group in families(runtime_names)]
    workers = min(jobs, len(tasks))
    context = multiprocessing.get_context("spawn")
    try:
        inputs = pickle.dumps((model, example_input, calibration))
    except (pickle.PicklingError, AttributeError, TypeError) as e:  # e.g. a leaf module of a class made in a function
        raise LoweringError(f"the model cannot be sent to worker processes ({type(e).__name__}: {e}): "
                            "pack with jobs=1") from None
    start = (inputs, max(1, torch.get_num_threads() // workers), *_logging_setup())
    done: dict[tuple[int, str], dict[str, list[runtime_file.Image]]] = {}
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start, initargs=start) as pool:
        # the widest first (most MACs: the longest lowerings), so that no long one starts last, alone
        widest_first = sorted(tasks, key=lambda t: -(buckets[t[0]].macs or sum(buckets[t[0]].sizes.values())))
        futures = {pool.submit(_lower, buckets[k], names): (k, names[0]) for k, names in widest_first}
        try:
            for f in progress(as_completed(futures), desc="lowering", total=len(futures)):
                done[futures[f]] = f.result()
        except BrokenProcessPool:
            raise LoweringError("a lowering worker process died (out of memory, or the converter crashed): "
                                "pack with fewer jobs") from None
        finally:
            pool.shutdown(cancel_futures=True)  # after an error: the lowerings not started never start
    out: list[dict[str, list[runtime_file.Image]]] = [{} for _ in buckets]
    for k, names in tasks:  # bucket order, and within a bucket the families in lower_runtimes' order
        out[k].update(done[(k, names[0])])
    return out
