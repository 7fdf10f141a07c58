"""Run a bundle's ExecuTorch graph on the host: pick a width, let the native core write the weights, run.

``ExecutorchModel.open(path, bucket=...)`` does what an app does at start-up:

1. *open*: validate the bundle (header, section checksums, tables) with the native core;
2. *materialise*: the core rebuilds the bucket's ``model.pte`` and ``weights.ptd`` from the graph
   record, writing each hole straight from the nodes at the bucket's width (int8 graphs: quantised
   after discretisation, scales and int32 biases included), one layer at a time: no full-width float
   weights are ever built;
3. *load*: ExecuTorch loads the program and its external data from the two in-memory buffers
   (``_load_for_executorch_from_buffer(pte, data_map_buffer=ptd)``: no temporary file) and its
   ``forward`` method (XNNPACK packs the weights here).

With a :class:`~inn_mobile.runtime.width_cache.WidthCache`, step 2 happens on the width's first start only: the
filled files are kept there, and later starts check them against their stamp and let ExecuTorch map them from
their paths, as it loads a plain program.

The two files are checked before ExecuTorch sees them, because an XNNPACK ``.pte`` whose ``.ptd`` is
missing crashes the process instead of returning an error. A corrupted bundle or an incomplete graph
raises :class:`~inn_mobile.format.bundle.BundleError`; a width, or a graph for the runtime, that is not in
the bundle raises :class:`~inn_mobile.runtime.reader.NotInBundleError` (a ``KeyError``) listing
what is there.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from inn_mobile.format import bundle
from inn_mobile.format.vocab import PTD_FILE as PTD
from inn_mobile.format.vocab import PTE_FILE as PTE
from inn_mobile.format.vocab import runtime_name
from inn_mobile.runtime.reader import BundleReader, Startup, prepare, run_batched
from inn_mobile.runtime.width_cache import WidthCache

# FlatBuffers file identifiers at bytes 4..8: ExecuTorch program, FlatTensor data file.
_MAGIC = {PTE: b"ET", PTD: b"FT"}


@dataclass
class ExecutorchModel:
    """One bucket of a bundle, loaded into ExecuTorch; call it like a module."""

    bucket: int
    bucket_name: str
    runtime: str
    input_shape: tuple[int, ...]
    startup: Startup = Startup(0.0, 0.0, 0.0)
    _program: object = field(default=None, repr=False)  # the module and its buffers: must outlive the method
    _method: object = field(default=None, repr=False)

    @classmethod
    def open(
        cls, source: str | os.PathLike | bytes | BundleReader, *, bucket: int | str | float = -1,
        int8: bool = False, threads: int | None = None, reference: bool = False, cache: WidthCache | None = None,
    ) -> ExecutorchModel:
        """Load ``bucket`` (index, name such as ``"w0750"``, or width ratio) of a bundle file or bytes.

        ``threads`` resets ExecuTorch's process-wide thread pool first (see :func:`set_threads`: only
        while no other program is loaded). ``reference=True`` fills with the Python reference. ``cache``:
        load the width's checked ``.pte`` and ``.ptd`` from there when it holds them, else fill and keep them.
        """
        if threads is not None:
            set_threads(threads)
        runtime = runtime_name("executorch", int8)
        got = prepare(source, bucket, runtime, reference=reference, cache=cache)
        _check_files(got.paths or got.files, runtime, got.name)
        t2 = time.perf_counter()
        program, method = _load_files(got.paths) if got.paths else _load(got.files)
        t3 = time.perf_counter()
        shape = tuple(method.metadata.input_tensor_meta(0).sizes())
        startup = dataclasses.replace(got.startup, load_ms=(t3 - t2) * 1e3)
        return cls(got.bucket, got.name, runtime, shape, startup, program, method)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Float outputs for inputs ``[N, *input_shape[1:]]``, run in chunks of the lowered batch."""
        return run_batched(self._invoke, x, self.input_shape, f"{self.bucket_name} ({self.runtime})")

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        try:
            return self._method.execute((torch.from_numpy(x),))[0].numpy()
        except RuntimeError as e:  # a program that loaded but cannot run
            raise bundle.BundleError(f"{self.name}: the program does not run: {e}") from e

    __call__ = forward

    @property
    def name(self) -> str:
        return f"{self.bucket_name} ({self.runtime})"

    @property
    def method(self):
        """The loaded ``forward`` method (``executorch.runtime``), for callers that batch themselves."""
        return self._method


def set_threads(n: int) -> None:
    """Size ExecuTorch's process-wide thread pool.

    Call it before loading programs and never while one is alive: each XNNPACK delegate keeps a pointer
    to the pool it was loaded with, and a reset frees that pool (a later run crashes the process).
    """
    from executorch.extension.pybindings.portable_lib import _threadpool_get_thread_count, _unsafe_reset_threadpool

    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    if _threadpool_get_thread_count() != n:
        _unsafe_reset_threadpool(n)


class _Forward:
    """``forward`` of a module loaded from memory, with the ``execute`` / ``metadata`` of
    ``executorch.runtime.Method`` (what callers that batch themselves use)."""

    def __init__(self, module) -> None:
        self._module = module
        self.metadata = module.method_meta("forward")

    def execute(self, inputs):
        return self._module.run_method("forward", tuple(inputs))


def _load(files: dict[str, bytearray | bytes]):
    """The module (with the buffers it reads, kept alive beside it) and its ``forward``.

    Both files go to ExecuTorch from memory (``data_map_buffer``): no ``.ptd`` is written anywhere.
    The binding takes ``bytes``, which is what the core fills (:meth:`NativeBundle.fill`): no file is copied
    (the reference's ``bytearray`` files are, once).
    """
    from executorch.extension.pybindings.portable_lib import _load_for_executorch_from_buffer

    pte = bytes(files.pop(PTE))
    ptd = bytes(files.pop(PTD))
    module = _load_for_executorch_from_buffer(pte, data_map_buffer=ptd)
    forward = _Forward(module)
    return (module, pte, ptd), forward


def _load_files(paths: dict[str, Path]):
    """:func:`_load` for a width cache's files: ExecuTorch maps them from their paths, as a plain program."""
    from executorch.extension.pybindings.portable_lib import _load_for_executorch

    module = _load_for_executorch(str(paths[PTE]), data_path=str(paths[PTD]))
    return (module,), _Forward(module)


def _check_files(files: dict[str, bytes] | dict[str, Path], runtime: str, bucket_name: str) -> None:
    """Refuse files ExecuTorch would crash on (XNNPACK segfaults on a missing or foreign ``.ptd``)."""
    for name, magic in _MAGIC.items():
        data = files.get(name)
        if isinstance(data, Path):
            with open(data, "rb") as f:
                data = f.read(8)
        if data is None:
            raise bundle.BundleError(f"the {runtime!r} graph of width {bucket_name!r} has no {name} "
                                     f"(it has {sorted(files)}): the bundle is incomplete")
        if data[4:4 + len(magic)] != magic:
            raise bundle.BundleError(f"{name} of width {bucket_name!r} is not an ExecuTorch "
                                     f"{'program' if name == PTE else 'data file'} (bad identifier)")
