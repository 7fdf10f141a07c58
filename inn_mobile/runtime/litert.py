"""LiteRT host loader: open a bundle, let the native core write a bucket's ``.tflite``, run it.

The bundle stores each bucket's flatbuffer without its weights (see :mod:`inn_mobile.export.litert`);
:meth:`LiteRTModel.open` validates the bundle, has the C core fill the weight holes from the nodes and
hands the bytes to ``ai_edge_litert.interpreter.Interpreter(model_content=...)``: nothing is written to disk,
unless a :class:`~inn_mobile.runtime.width_cache.WidthCache` is given (later starts then map the kept file).
Static int8 graphs have int8 inputs and outputs; ``__call__`` quantizes and dequantizes with the
graph's own scales, so callers always pass and get float tensors.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import torch

from inn_mobile.format import bundle
from inn_mobile.format.vocab import TFLITE_FILE as FILE_NAME
from inn_mobile.format.vocab import runtime_name
from inn_mobile.runtime.reader import BundleReader, Startup, prepare, run_batched
from inn_mobile.runtime.width_cache import WidthCache


class LiteRTModel:
    """A bucket's LiteRT graph, weights filled from the nodes, ready to run on float inputs."""

    def __init__(self, model: bytes | Path, *, threads: int = 1, name: str = "", startup: Startup | None = None):
        """``model``: the ``.tflite`` bytes (the interpreter reads them in place) or a file's path (mapped)."""
        from ai_edge_litert.interpreter import Interpreter

        t = time.perf_counter()
        # the interpreter reads the bytes in place (no copy of its own): keep exactly one copy, this one
        self._model = model if isinstance(model, (bytes, Path)) else bytes(model)
        source = {"model_path": str(model)} if isinstance(model, Path) else {"model_content": self._model}
        try:
            self.interpreter = Interpreter(**source, num_threads=threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise bundle.BundleError(f"{name or 'graph'}: not a loadable .tflite ({e})") from e
        (self._in,), (self._out,) = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        self.name = name
        interp_ms = (time.perf_counter() - t) * 1e3
        self.startup = dataclasses.replace(startup or Startup(0.0, 0.0, 0.0), load_ms=interp_ms)

    @classmethod
    def open(cls, source: str | os.PathLike | bytes | BundleReader, *, bucket: int | str | float = -1,
             int8: bool = False, threads: int = 1, reference: bool = False,
             cache: WidthCache | None = None) -> LiteRTModel:
        """Load one bucket of a bundle (path or bytes).

        ``bucket``: index (negative counts from the widest), name (``"w0500"``) or width ratio (0.5).
        Raises :class:`~inn_mobile.format.bundle.BundleError` for a corrupted bundle or graph,
        :class:`~inn_mobile.runtime.reader.NotInBundleError` (a ``KeyError``) when the width or its
        graph is not in the bundle. ``reference=True`` fills with the Python reference, not the core.
        ``cache``: load the width's checked ``.tflite`` from there when it holds it, else fill and keep it.
        """
        runtime = runtime_name("litert", int8)
        got = prepare(source, bucket, runtime, reference=reference, cache=cache)
        model = got.paths.get(FILE_NAME) or got.files.get(FILE_NAME)
        if model is None:
            raise bundle.BundleError(f"{runtime!r} graph of {got.name!r} has no {FILE_NAME}: {list(got.files)}")
        return cls(model, threads=threads, name=f"{got.name} ({runtime})", startup=got.startup)

    @property
    def flatbuffer(self) -> bytes:
        """The loaded ``.tflite``'s bytes (read from the width cache's file when it came from there)."""
        return self._model.read_bytes() if isinstance(self._model, Path) else self._model

    def arena_bytes(self) -> int:
        """Bytes of every activation the graph produces (plus its input), read from the graph run
        without delegates: an upper bound of the interpreter's arena, which reuses memory."""
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        source = {"model_path": str(self._model)} if isinstance(self._model, Path) else {"model_content": self._model}
        plain = Interpreter(**source,
                            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        plain.allocate_tensors()
        produced = {self._in["index"]} | {i for op in plain._get_ops_details() for i in op["outputs"]}  # noqa: SLF001
        return sum(int(np.prod(t["shape"])) * np.dtype(t["dtype"]).itemsize for t in plain.get_tensor_details()
                   if t["index"] in produced)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self._in["shape"])

    def __call__(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Float outputs for float inputs ``[N, *input_shape[1:]]``, run in chunks of the graph's batch."""
        return run_batched(self._invoke, x, self.input_shape, self.name)

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        it = self.interpreter
        it.set_tensor(self._in["index"], quantize_input(x, self._in))
        try:
            it.invoke()
        except RuntimeError as e:  # a graph that loaded but cannot run (e.g. a constant without its data)
            raise bundle.BundleError(f"{self.name}: the graph does not run: {e}") from e
        return _dequantize(it.get_tensor(self._out["index"]), self._out)


def quantize_input(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float input as the tensor's dtype (int8 graphs: the calibrated per-tensor scale/zero point)."""
    if detail["dtype"] == np.float32:
        return x
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(detail["dtype"])


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return y.copy()
    scale, zero = detail["quantization"]
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)
