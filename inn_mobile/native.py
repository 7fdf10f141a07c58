"""ctypes binding to the native core (``csrc/``), built by ``pip install`` as ``inn_mobile/_inn_core*.so``.

The core has no Python C-API code: the very same library serves Android (JNI) and iOS. Here it
materialises weights for a Python host and for parity tests against the torch reference.
"""

from __future__ import annotations

import ctypes as C
import importlib.machinery
import mmap
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from inn_mobile.errors import BundleError
from inn_mobile.format import vocab
from inn_mobile.format.tables import Cascade, Cost, check_meta

LAYOUTS = vocab.LAYOUTS
DTYPES = vocab.OUTPUT_DTYPES
KIND_NAMES = {code: name for name, code in vocab.KINDS.items()}
_MISSING = vocab.STATUS["MISSING"]


class NativeError(BundleError, RuntimeError):
    """A non-zero ``inn_status`` from the core; ``.code`` and ``.status`` (also ``.name``) say which."""

    def __init__(self, code: int, what: str) -> None:
        self.code = code
        self.status = self.name = lib().inn_status_name(code).decode()
        super().__init__(f"{what}: {lib().inn_status_str(code).decode()} (INN_ERR_{self.name})")


class _Axis(C.Structure):
    _fields_ = [("idx", C.POINTER(C.c_int32)), ("w", C.POINTER(C.c_double)), ("q", C.POINTER(C.c_double)),
                ("n", C.c_uint32)]


class _Bundle(C.Structure):
    _fields_ = [("data", C.c_void_p), ("size", C.c_size_t), ("quadrature", C.c_uint32),
                ("group_count", C.c_uint32), ("layer_count", C.c_uint32), ("bucket_count", C.c_uint32),
                ("piece_count", C.c_uint32), ("node_dtype", C.c_uint32)] + [
        (n, C.c_void_p) for n in ("groups", "layers", "pieces", "nodes", "buckets", "partitions", "names")] + [
        ("nodes_size", C.c_size_t), ("partitions_count", C.c_size_t), ("names_size", C.c_size_t),
        ("node_scales", C.c_void_p), ("node_scales_count", C.c_size_t), ("norms", C.c_void_p),
        ("norm_count", C.c_uint32), ("norm_values", C.c_void_p), ("norm_values_count", C.c_size_t),
        ("bucket_infos", C.c_void_p), ("costs", C.c_void_p), ("cost_count", C.c_uint32),
        ("macs", C.c_void_p), ("cascades", C.c_void_p), ("cascade_count", C.c_uint32),
        ("cascade_step_count", C.c_uint32), ("nodes_crc", C.c_uint32), ("nodes_pending", C.c_uint32)]


class _BucketInfo(C.Structure):
    _fields_ = [("name", C.c_void_p), ("name_len", C.c_uint32), ("has_ratio", C.c_uint32), ("ratio", C.c_double)]


class _Cost(C.Structure):
    _fields_ = [("bucket", C.c_uint32), ("known", C.c_uint32), ("runtime", C.c_char * (vocab.RUNTIME_NAME + 1)),
                ("weights_bytes", C.c_uint64), ("file_bytes", C.c_uint64), ("arena_bytes", C.c_uint64),
                ("accuracy", C.c_double)]


class _Cascade(C.Structure):
    _fields_ = [("name", C.c_void_p), ("name_len", C.c_uint32)] + [
        (n, C.c_uint32) for n in ("score", "target", "step_count", "known")] + [
        (n, C.c_double) for n in ("target_value", "accuracy", "mean_macs")]


class _LayerInfo(C.Structure):
    _fields_ = [(n, C.c_uint32) for n in ("kind", "blocks", "taps", "has_bias", "n_out", "n_in", "m_out", "m_in")] + [
        ("weight_count", C.c_size_t), ("name", C.c_void_p), ("name_len", C.c_uint32)]


class _Graph(C.Structure):
    _fields_ = [("record", C.c_void_p), ("size", C.c_size_t), ("bucket", C.c_uint32), ("image_count", C.c_uint32)]


class _ImageInfo(C.Structure):
    _fields_ = [("name", C.c_void_p), ("name_len", C.c_uint32), ("span_count", C.c_uint32),
                ("hole_count", C.c_uint32), ("size", C.c_uint64)]


# inn_read_done: (ctx, first, end) of each stretch inn_bundle_open_ex has verified
_READ_DONE = C.CFUNCTYPE(None, C.c_void_p, C.c_size_t, C.c_size_t)


def library_path() -> Path:
    """Where the compiled core lives (``INN_NATIVE_LIB`` overrides, e.g. for a sanitizer build)."""
    env = os.environ.get("INN_NATIVE_LIB")
    if env:
        return Path(env)
    here = Path(__file__).parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        p = here / f"_inn_core{suffix}"
        if p.exists():
            return p
    raise ImportError("native core not built: reinstall with `pip install -e .` (it compiles inn_mobile/csrc)")


@lru_cache(maxsize=1)
def lib() -> C.CDLL:
    L = C.CDLL(str(library_path()))
    P = C.POINTER
    sig = {
        "inn_status_str": (C.c_char_p, [C.c_int]),
        "inn_status_name": (C.c_char_p, [C.c_int]),
        "inn_cubic": (C.c_double, [C.c_double]),
        "inn_taps": (C.c_int, [P(C.c_float), C.c_uint32, C.c_uint32, P(C.c_int32), P(C.c_double)]),
        "inn_quadrature_weights": (C.c_int, [P(C.c_float), C.c_uint32, C.c_int, P(C.c_double)]),
        "inn_check_partition": (C.c_int, [P(C.c_float), C.c_uint32]),
        "inn_dense_scratch": (C.c_size_t, [C.c_uint32, C.c_uint32, C.c_uint32]),
        "inn_resample_dense": (C.c_int, [P(C.c_float), C.c_uint32, C.c_uint32, C.c_uint32, C.c_uint32, P(_Axis),
                                         P(_Axis), C.c_int, P(C.c_float), C.c_size_t, P(C.c_double), C.c_size_t]),
        "inn_resample_rows": (C.c_int, [P(C.c_float), C.c_uint32, C.c_uint32, P(_Axis), C.c_int, P(C.c_float),
                                        C.c_size_t]),
        "inn_quantize": (C.c_int, [P(C.c_float), C.c_uint32, C.c_uint32, C.c_int, P(C.c_int8), P(C.c_float)]),
        "inn_bundle_sizeof": (C.c_size_t, []),
        "inn_bundle_open": (C.c_int, [P(_Bundle), C.c_void_p, C.c_size_t]),
        "inn_bundle_open_ex": (C.c_int, [P(_Bundle), C.c_void_p, C.c_size_t, _READ_DONE, C.c_void_p]),
        "inn_bundle_open_deferred": (C.c_int, [P(_Bundle), C.c_void_p, C.c_size_t, _READ_DONE, C.c_void_p]),
        "inn_bundle_check_nodes": (C.c_int, [P(_Bundle), C.c_uint32, C.c_uint32, P(C.c_uint32)]),
        "inn_bundle_nodes_verified": (C.c_int, [P(_Bundle), P(C.c_uint32), C.c_uint32]),
        "inn_bucket_info_get": (C.c_int, [P(_Bundle), C.c_uint32, P(_BucketInfo)]),
        "inn_cost_count": (C.c_int, [P(_Bundle), P(C.c_uint32)]),
        "inn_cost_list": (C.c_int, [P(_Bundle), C.c_uint32, P(_Cost)]),
        "inn_cost_find": (C.c_int, [P(_Bundle), C.c_uint32, C.c_char_p, P(_Cost)]),
        "inn_bucket_macs": (C.c_int, [P(_Bundle), C.c_uint32, P(C.c_uint64)]),
        "inn_cascade_count": (C.c_int, [P(_Bundle), P(C.c_uint32)]),
        "inn_cascade_get": (C.c_int, [P(_Bundle), C.c_uint32, P(_Cascade)]),
        "inn_cascade_step": (C.c_int, [P(_Bundle), C.c_uint32, C.c_uint32, P(C.c_uint32), P(C.c_float)]),
        "inn_bundle_group_size": (C.c_int, [P(_Bundle), C.c_uint32, C.c_uint32, P(C.c_uint32)]),
        "inn_layer_info_get": (C.c_int, [P(_Bundle), C.c_uint32, C.c_uint32, P(_LayerInfo)]),
        "inn_bundle_scratch_size": (C.c_int, [P(_Bundle), C.c_uint32, P(C.c_size_t)]),
        "inn_materialize": (C.c_int, [P(_Bundle), C.c_uint32, C.c_uint32, C.c_int, C.c_int, C.c_void_p, C.c_size_t,
                                      P(C.c_float), C.c_size_t, P(C.c_float), C.c_size_t, C.c_void_p, C.c_size_t]),
        "inn_layer_norm": (C.c_int, [P(_Bundle), C.c_uint32, C.c_uint32, P(P(C.c_float)), P(P(C.c_float)),
                                     P(C.c_uint32)]),
        "inn_crc32": (C.c_uint32, [C.c_void_p, C.c_size_t]),
        "inn_crc32c": (C.c_uint32, [C.c_void_p, C.c_size_t]),
        "inn_bundle_section": (C.c_int, [P(_Bundle), C.c_char_p, P(C.c_void_p), P(C.c_size_t)]),
        "inn_graph_count": (C.c_int, [P(_Bundle), P(C.c_uint32)]),
        "inn_graph_list": (C.c_int, [P(_Bundle), C.c_uint32, P(C.c_uint32), C.c_char_p]),
        "inn_graph_find": (C.c_int, [P(_Bundle), C.c_uint32, C.c_char_p, P(_Graph)]),
        "inn_graph_image": (C.c_int, [P(_Graph), C.c_uint32, P(_ImageInfo)]),
        "inn_graph_scratch_size": (C.c_int, [P(_Bundle), P(_Graph), P(C.c_size_t)]),
        "inn_graph_fill_spans": (C.c_int, [P(_Bundle), P(_Graph), P(C.c_void_p), P(C.c_size_t)]),
        "inn_graph_fill_part": (C.c_int, [P(_Bundle), P(_Graph), P(C.c_void_p), P(C.c_size_t), C.c_uint32, C.c_uint32,
                                          C.c_void_p, C.c_size_t]),
        "inn_graph_fill_part_verify": (C.c_int, [P(_Bundle), P(_Graph), P(C.c_void_p), P(C.c_size_t), C.c_uint32,
                                                 C.c_uint32, C.c_void_p, C.c_size_t, P(C.c_uint32)]),
        "inn_graph_part_nodes": (C.c_int, [P(_Bundle), P(_Graph), C.c_uint32, C.c_uint32, P(C.c_size_t),
                                           P(C.c_size_t)]),
        "inn_cache_entry": (C.c_int, [P(_Bundle), P(_Graph), C.c_char_p, C.c_char_p]),
        "inn_cache_stamp_size": (C.c_size_t, [P(_Graph)]),
        "inn_cache_stamp": (C.c_int, [P(_Bundle), P(_Graph), C.c_char_p, P(C.c_void_p), P(C.c_size_t), C.c_void_p,
                                      C.c_size_t]),
        "inn_cache_check": (C.c_int, [P(_Bundle), P(_Graph), C.c_char_p, C.c_void_p, C.c_size_t, P(C.c_void_p),
                                      P(C.c_size_t)]),
    }
    for name, (res, args) in sig.items():
        fn = getattr(L, name)
        fn.restype, fn.argtypes = res, args
    # inn_bundle_open writes the whole struct: a mirror smaller than the core's would be overrun
    if L.inn_bundle_sizeof() != C.sizeof(_Bundle):
        raise ImportError(f"{library_path()} has an inn_bundle of {L.inn_bundle_sizeof()} bytes, native.py mirrors "
                          f"{C.sizeof(_Bundle)}: rebuild the core (`pip install -e .`) or update _Bundle from inn.h")
    return L


def _ptr(a: np.ndarray, ctype):
    return a.ctypes.data_as(C.POINTER(ctype))


def _check(status: int, what: str) -> None:
    if status != 0:
        raise NativeError(status, what)


# ---------------------------------------------------------------------------- low-level math
def taps(points: np.ndarray | None, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """C tap table (``idx[n, 4] int32``, ``w[n, 4] f64``); ``points=None`` means uniform."""
    idx = np.zeros((n, 4), np.int32)
    w = np.zeros((n, 4), np.float64)
    p = None if points is None else np.ascontiguousarray(points, np.float32)
    _check(lib().inn_taps(None if p is None else _ptr(p, C.c_float), n, m, _ptr(idx, C.c_int32), _ptr(w, C.c_double)),
           "inn_taps")
    return idx, w


def quadrature(points: np.ndarray | None, n: int, rule: int) -> np.ndarray:
    q = np.zeros(n, np.float64)
    p = None if points is None else np.ascontiguousarray(points, np.float32)
    _check(lib().inn_quadrature_weights(None if p is None else _ptr(p, C.c_float), n, rule, _ptr(q, C.c_double)),
           "inn_quadrature_weights")
    return q


def quantize(w: np.ndarray, layout: str = "oit") -> tuple[np.ndarray, np.ndarray]:
    """C int8 per-output-channel quantisation of a float32 weight ``[O, ...]`` (layout ``oit``/``oti``)
    or ``[..., O]`` (``ito``); returns ``(q int8 same shape, scales[O])``."""
    w = np.ascontiguousarray(w, np.float32)
    n_out = w.shape[-1] if layout == "ito" else w.shape[0]
    q = np.zeros(w.shape, np.int8)
    scales = np.zeros(n_out, np.float32)
    _check(lib().inn_quantize(_ptr(w, C.c_float), n_out, w.size // n_out, LAYOUTS[layout], _ptr(q, C.c_int8),
                              _ptr(scales, C.c_float)), "inn_quantize")
    return q, scales


# ---------------------------------------------------------------------------- bundles
@dataclass(frozen=True)
class LayerInfo:
    name: str
    kind: str
    blocks: int
    taps: int
    has_bias: bool
    n_out: int
    n_in: int
    weight_count: int


@dataclass(frozen=True)
class BucketInfo:
    name: str
    ratio: float | None  # the global width the bucket was made for


class NativeBundle:
    """A bundle opened by the C core (validated once; weights materialised on demand)."""

    def __init__(self, data: bytes | bytearray | memoryview | mmap.mmap, *, defer_nodes: bool = False) -> None:
        """Open ``data`` in place: the core reads the caller's buffer (kept alive here), no copy is made
        unless the buffer is not 8-byte aligned. ``data`` must not change while the bundle is open.

        ``defer_nodes`` (what :meth:`from_file` does) leaves the node section's checksum and finite-values
        check to the first fill, which reads the nodes anyway, on its threads (``inn_bundle_open_deferred``):
        a corrupt node then fails that fill, with the same error the open would have raised, and nothing
        made from it is returned. Anything else that reads nodes verifies them first."""
        buf = np.frombuffer(data, np.uint8)
        if buf.ctypes.data % 8:
            buf = buf.copy()  # numpy allocations are aligned
        self._buf = buf
        self._map = data if isinstance(data, mmap.mmap) and buf.base is not None else None  # read in place
        self._b = _Bundle()
        # a mapped file: each stretch the open has verified is dropped from memory at once (the fill reads the
        # nodes back from the page cache), so that checking the whole file never holds it all
        done = _READ_DONE(lambda _ctx, first, end: self._release(first, end)) if self._map is not None else _READ_DONE()
        # guards the one write of the struct after the open (nodes_pending, cleared by a join): threads that read
        # node values take it first, so that they see the join's write and never race with it
        self._nodes_lock = threading.Lock()
        opener = lib().inn_bundle_open_deferred if defer_nodes else lib().inn_bundle_open_ex
        _check(opener(C.byref(self._b), C.c_void_p(buf.ctypes.data), buf.nbytes, done, None), "opening bundle")

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> NativeBundle:
        """Open a bundle file through a read-only memory map: pages are read as the core touches them
        and shared with the page cache, so the process holds no second copy of the file."""
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return cls(b"")  # mmap cannot map an empty file; the core reports it as truncated
            return cls(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), defer_nodes=True)

    def verify_nodes(self) -> None:
        """Check the nodes now if the open left them to the first fill (``defer_nodes``); a no-op after."""
        with self._nodes_lock:
            if not self._b.nodes_pending:
                return
            state = C.c_uint32()
            _check(lib().inn_bundle_check_nodes(C.byref(self._b), 0, 1, C.byref(state)), "checking the nodes")
            _check(lib().inn_bundle_nodes_verified(C.byref(self._b), C.byref(state), 1), "checking the nodes")
        self.release_pages()

    def _nodes_pending(self) -> bool:
        with self._nodes_lock:
            return bool(self._b.nodes_pending)

    def release_pages(self) -> None:
        """Drop this process's resident pages of a memory-mapped bundle (``from_file``); the page cache
        keeps the file, and the core's next read faults the pages back in, unchanged. After a fill the
        nodes are not read again until the next fill, while the runtime now allocates its own copy of
        the weights: without this, peak memory would hold the nodes, the filled files and the runtime's
        weights at once. A bundle opened from bytes keeps them (they are the caller's)."""
        if self._map is not None and hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED)

    def _release_part(self, g: _Graph, part: int, parts: int) -> None:
        """Drop the mapped pages of part ``part``'s nodes, once the part is written."""
        first, end = C.c_size_t(), C.c_size_t()
        if not lib().inn_graph_part_nodes(C.byref(self._b), C.byref(g), part, parts, C.byref(first), C.byref(end)):
            self._release(first.value, end.value)  # on an error nothing is dropped: the fill reports it

    def _release(self, first: int, end: int) -> None:
        """Drop the mapped pages wholly inside bytes ``[first, end)`` (pages shared with a neighbour stay until
        :meth:`release_pages`); a page dropped early is read back from the page cache, unchanged."""
        start = -(-first // mmap.PAGESIZE) * mmap.PAGESIZE
        stop = end // mmap.PAGESIZE * mmap.PAGESIZE
        if stop > start and hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED, start, stop - start)

    @property
    def layer_count(self) -> int:
        return self._b.layer_count

    @property
    def bucket_count(self) -> int:
        return self._b.bucket_count

    def layer_info(self, bucket: int, layer: int) -> LayerInfo:
        li = _LayerInfo()
        status = lib().inn_layer_info_get(C.byref(self._b), bucket, layer, C.byref(li))
        _check(status, f"layer {layer} of bucket {bucket}")
        name = C.string_at(li.name, li.name_len).decode() if li.name else f"layer{layer}"
        return LayerInfo(name, KIND_NAMES[li.kind], li.blocks, li.taps, bool(li.has_bias), li.n_out, li.n_in,
                         li.weight_count)

    def scratch_size(self, bucket: int) -> int:
        n = C.c_size_t()
        _check(lib().inn_bundle_scratch_size(C.byref(self._b), bucket, C.byref(n)), f"scratch of bucket {bucket}")
        return n.value

    def materialize(self, bucket: int, layer: int, *, layout: str = "oit", dtype: str = "f32",
                    scratch: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """``(weight flat array, int8 scales or None, bias/shift or None)`` for one layer of one bucket."""
        info = self.layer_info(bucket, layer)
        self.verify_nodes()
        w = np.zeros(info.weight_count, np.int8 if dtype == "i8" else np.float32)
        scales = np.zeros(info.n_out, np.float32) if dtype == "i8" else None
        has_vec = info.has_bias or info.kind == "affine"
        bias = np.zeros(info.n_out, np.float32) if has_vec else None
        if scratch is None:
            scratch = np.zeros(self.scratch_size(bucket), np.uint8)
        _check(lib().inn_materialize(
            C.byref(self._b), bucket, layer, LAYOUTS[layout], DTYPES[dtype], w.ctypes.data, w.nbytes,
            None if scales is None else _ptr(scales, C.c_float), 0 if scales is None else scales.nbytes,
            None if bias is None else _ptr(bias, C.c_float), 0 if bias is None else bias.nbytes,
            scratch.ctypes.data, scratch.nbytes), f"materialising layer {info.name!r} of bucket {bucket}")
        return w, scales, bias

    def norm(self, bucket: int, layer: int) -> tuple[np.ndarray, np.ndarray] | None:
        """``(a, c)`` of the layer's per-width normalisation at ``bucket`` (copies), or None if it has none."""
        a, c, n = C.POINTER(C.c_float)(), C.POINTER(C.c_float)(), C.c_uint32()
        status = lib().inn_layer_norm(C.byref(self._b), bucket, layer, C.byref(a), C.byref(c), C.byref(n))
        if status == _MISSING:
            return None
        _check(status, f"normalisation of layer {layer} at bucket {bucket}")
        return np.ctypeslib.as_array(a, (n.value,)).copy(), np.ctypeslib.as_array(c, (n.value,)).copy()

    def section(self, tag: bytes) -> bytes | None:
        """The payload of section ``tag`` (a copy), or None when the bundle has none."""
        if tag == b"NODE":
            self.verify_nodes()
        data, size = C.c_void_p(), C.c_size_t()
        status = lib().inn_bundle_section(C.byref(self._b), tag, C.byref(data), C.byref(size))
        if status == _MISSING:
            return None
        _check(status, f"{tag.decode()} section")
        return C.string_at(data, size.value)

    def meta(self) -> dict:
        """The bundle's informational ``META`` (input shape, rebuild info for torch), checked as the Python
        decoder checks it (:func:`inn_mobile.format.tables.check_meta`: ``BundleError`` when malformed)."""
        raw = self.section(b"META")
        return {} if raw is None else check_meta(raw)

    def bucket_info(self, bucket: int) -> BucketInfo:
        """Name and ratio of a bucket from the binary BKIN table; bundles before 1.3 have none, and take
        them from META as :func:`inn_mobile.format.bundle.decode` does."""
        info = _BucketInfo()
        _check(lib().inn_bucket_info_get(C.byref(self._b), bucket, C.byref(info)), f"bucket {bucket}")
        if self._b.bucket_infos is None:
            rows = self.meta().get("buckets", [])
            row = rows[bucket] if bucket < len(rows) else {}
            return BucketInfo(row.get("name") or f"b{bucket}", row.get("ratio"))
        name = C.string_at(info.name, info.name_len).decode() if info.name_len else ""
        return BucketInfo(name or f"b{bucket}", info.ratio if info.has_ratio else None)

    def bucket_names(self) -> list[str]:
        return [self.bucket_info(k).name for k in range(self.bucket_count)]

    def costs(self) -> dict[tuple[int, str], Cost]:
        """``{(bucket, runtime): Cost}`` from the binary COST table (empty before 1.3)."""
        count, row, out = C.c_uint32(), _Cost(), {}
        _check(lib().inn_cost_count(C.byref(self._b), C.byref(count)), "COST rows")
        for i in range(count.value):
            _check(lib().inn_cost_list(C.byref(self._b), i, C.byref(row)), f"COST row {i}")
            out[(row.bucket, row.runtime.decode())] = _cost(row)
        return out

    def cost(self, bucket: int, runtime: str) -> Cost | None:
        """The pack-time measurements of one bucket on one runtime (``inn_cost_find``), or None."""
        row = _Cost()
        status = lib().inn_cost_find(C.byref(self._b), bucket, runtime.encode(), C.byref(row))
        if status == _MISSING:
            return None
        _check(status, f"cost of bucket {bucket} on {runtime!r}")
        return _cost(row)

    def macs(self, bucket: int) -> int | None:
        """Multiply-accumulates of one input at ``bucket`` from the binary MACS table (None without it)."""
        value = C.c_uint64()
        status = lib().inn_bucket_macs(C.byref(self._b), bucket, C.byref(value))
        if status == _MISSING and bucket < self.bucket_count:
            return None
        _check(status, f"MACs of bucket {bucket}")
        return value.value

    def cascades(self) -> list[Cascade]:
        """The confidence cascades of the binary CSCD table (``inn_cascade_*``; empty before 1.4)."""
        count, row, out = C.c_uint32(), _Cascade(), []
        bucket, threshold = C.c_uint32(), C.c_float()
        scores = {v: k for k, v in vocab.CASCADE_SCORES.items()}
        targets = {v: k for k, v in vocab.CASCADE_TARGETS.items()}
        _check(lib().inn_cascade_count(C.byref(self._b), C.byref(count)), "CSCD table")
        for i in range(count.value):
            _check(lib().inn_cascade_get(C.byref(self._b), i, C.byref(row)), f"cascade {i}")
            steps = []
            for j in range(row.step_count):
                _check(lib().inn_cascade_step(C.byref(self._b), i, j, C.byref(bucket), C.byref(threshold)),
                       f"step {j} of cascade {i}")
                steps.append((bucket.value, threshold.value))
            out.append(Cascade(C.string_at(row.name, row.name_len).decode(), tuple(k for k, _ in steps),
                               tuple(t for _, t in steps), scores[row.score], targets[row.target], row.target_value,
                               row.accuracy if row.known & vocab.CASCADE_FIELDS["accuracy"] else None,
                               row.mean_macs if row.known & vocab.CASCADE_FIELDS["macs"] else None))
        return out

    def graphs(self) -> list[tuple[int, str]]:
        """``(bucket, runtime)`` of every graph record in the bundle."""
        out, count, bucket, name = [], C.c_uint32(), C.c_uint32(), C.create_string_buffer(vocab.RUNTIME_NAME + 1)
        _check(lib().inn_graph_count(C.byref(self._b), C.byref(count)), "graph table")
        for i in range(count.value):
            _check(lib().inn_graph_list(C.byref(self._b), i, C.byref(bucket), name), f"graph {i}")
            out.append((bucket.value, name.value.decode()))
        return out

    def fill(self, bucket: int, runtime: str, threads: int | None = None) -> dict[str, bytes]:
        """Rebuild the runtime files of one bucket with their weights written by the core
        (``{file name: bytes}``; the same result as :func:`inn_mobile.format.reference.fill`). The core
        writes straight into the ``bytes`` objects the runtimes' bindings take, so no file is copied.

        The layers are written by ``threads`` threads at once (``inn_graph_fill_part``; ctypes releases the
        GIL during each call), by default :func:`fill_threads`: the fill is most of a bundle's startup
        cost over a plain file, and it splits across cores. Any number of parts writes the same bytes. A
        bundle mapped from a file (:meth:`from_file`) is written in finer parts, each part's node pages
        dropped as soon as it is written (``inn_graph_part_nodes``), so that peak memory holds the filled
        files and a few parts' nodes, not all the nodes besides. Nodes the open left unchecked
        (``defer_nodes``) are checked here, each part its share first (``inn_graph_fill_part_verify``), and
        the parts' checksums joined before anything is returned."""
        g, images = self._graph(bucket, runtime)
        names, outs = [name for name, _ in images], [_new_bytes(size) for _, size in images]
        ptrs = (C.c_void_p * max(1, len(outs)))(*[address for _, address in outs])
        sizes = (C.c_size_t * max(1, len(outs)))(*[len(o) for o, _ in outs])
        need = C.c_size_t()
        _check(lib().inn_graph_scratch_size(C.byref(self._b), C.byref(g), C.byref(need)), "graph scratch size")
        _check(lib().inn_graph_fill_spans(C.byref(self._b), C.byref(g), ptrs, sizes),
               f"filling the {runtime!r} graph of bucket {bucket}")
        # a run of parts per thread, at most one part per layer (more would be empty parts). A mapped bundle is
        # filled in finer parts, each one's node pages dropped once it is written (release_pages, part by part):
        # memory then never holds every node and every filled weight at once
        threads = max(1, min(fill_threads() if threads is None else threads, self.layer_count))
        parts = min(self.layer_count, threads * _PARTS_PER_THREAD) if self._map is not None else threads
        status: list[int | None] = [None] * parts  # None: the part never ran (its thread stopped before it)
        verify = self._nodes_pending()  # True: the parts check the nodes (fill_part_verify reads no flag)
        states = [C.c_uint32() for _ in range(parts)]

        def run(t: int) -> None:
            scratch = np.zeros(max(1, need.value), np.uint8)
            for p in range(t * parts // threads, (t + 1) * parts // threads):
                if verify:
                    status[p] = lib().inn_graph_fill_part_verify(
                        C.byref(self._b), C.byref(g), ptrs, sizes, p, parts, scratch.ctypes.data, scratch.nbytes,
                        C.byref(states[p]))
                else:
                    status[p] = lib().inn_graph_fill_part(C.byref(self._b), C.byref(g), ptrs, sizes, p, parts,
                                                          scratch.ctypes.data, scratch.nbytes)
                if status[p]:
                    return
                if self._map is not None:
                    self._release_part(g, p, parts)

        workers = [threading.Thread(target=run, args=(t,), name=f"inn-fill-{t}") for t in range(1, threads)]
        for w in workers:
            w.start()
        run(0)
        for w in workers:
            w.join()
        for p, st in enumerate(status):
            if st is None:
                raise NativeError(vocab.STATUS["ARG"], f"filling the {runtime!r} graph of bucket {bucket}: part {p} "
                                  f"of {parts} did not run")
            _check(st, f"filling the {runtime!r} graph of bucket {bucket} (part {p} of {parts})")
        if verify:
            joined = (C.c_uint32 * parts)(*(v.value for v in states))
            with self._nodes_lock:  # another fill may have verified the same bytes meanwhile: then nothing to do
                if self._b.nodes_pending:
                    _check(lib().inn_bundle_nodes_verified(C.byref(self._b), joined, parts),
                           f"filling the {runtime!r} graph of bucket {bucket}")
        return dict(zip(names, (o for o, _ in outs)))

    def _graph(self, bucket: int, runtime: str) -> tuple[_Graph, list[tuple[str, int]]]:
        """Graph (bucket, runtime), validated by the core, and its images' ``(file name, size)``."""
        g = _Graph()
        _check(lib().inn_graph_find(C.byref(self._b), bucket, runtime.encode(), C.byref(g)),
               f"{runtime!r} graph of bucket {bucket}")
        images = []
        for i in range(g.image_count):
            info = _ImageInfo()
            _check(lib().inn_graph_image(C.byref(g), i, C.byref(info)), f"image {i} of the {runtime!r} graph")
            images.append((C.string_at(info.name, info.name_len).decode("utf-8", "replace"), info.size))
        return g, images

    def image_names(self, bucket: int, runtime: str) -> list[str]:
        """The file names of graph (bucket, runtime), in the order :meth:`fill` and the cache stamps use."""
        return [name for name, _ in self._graph(bucket, runtime)[1]]

    def cache_entry(self, bucket: int, runtime: str) -> str:
        """The name of graph (bucket, runtime)'s width cache entry (``inn_cache_entry``); a ``FORMAT`` error
        when the graph names a file that is not a plain file name (such a graph is not kept)."""
        g, _ = self._graph(bucket, runtime)
        name = C.create_string_buffer(vocab.CACHE_NAME)
        _check(lib().inn_cache_entry(C.byref(self._b), C.byref(g), runtime.encode(), name),
               f"the width cache entry of the {runtime!r} graph of bucket {bucket}")
        return name.value.decode()

    def cache_stamp(self, bucket: int, runtime: str, files: dict[str, bytes]) -> bytes:
        """The width cache stamp (``inn_cache_stamp``) of graph (bucket, runtime)'s filled ``files``."""
        g, images = self._graph(bucket, runtime)
        ptrs, sizes, _keep = _image_pointers(images, files)
        stamp = bytearray(lib().inn_cache_stamp_size(C.byref(g)))
        out = (C.c_char * len(stamp)).from_buffer(stamp)
        _check(lib().inn_cache_stamp(C.byref(self._b), C.byref(g), runtime.encode(), ptrs, sizes, out, len(stamp)),
               f"stamping the {runtime!r} files of bucket {bucket}")
        return bytes(stamp)

    def cache_check(self, bucket: int, runtime: str, stamp: bytes, files: dict[str, object]) -> None:
        """Raise :class:`NativeError` unless ``stamp`` is graph (bucket, runtime)'s and ``files`` (any buffers:
        memory maps of the cached files) are byte for byte what it stamped (``inn_cache_check``): ``STALE``
        for a stamp of another bundle, width, runtime or core, ``CHECKSUM`` for damaged files."""
        g, images = self._graph(bucket, runtime)
        ptrs, sizes, views = _image_pointers(images, files)
        status = lib().inn_cache_check(C.byref(self._b), C.byref(g), runtime.encode(), stamp, len(stamp), ptrs, sizes)
        del ptrs, views  # no view of the caller's maps may outlive this call (an error's frame would keep them)
        _check(status, f"the cached {runtime!r} files of bucket {bucket}")


def _image_pointers(images: list[tuple[str, int]], files: dict[str, object]) -> tuple:
    """C arrays of the addresses and sizes of ``files`` in the order of ``images`` (a missing file is a
    ``BUFFER`` error), and the numpy views that keep them valid."""
    missing = [name for name, _ in images if name not in files]
    if missing:
        raise NativeError(vocab.STATUS["BUFFER"], f"no {missing[0]} among {sorted(files)}")
    views = [np.frombuffer(files[name], np.uint8) if len(files[name]) else np.zeros(0, np.uint8) for name, _ in images]
    n = max(1, len(views))
    ptrs = (C.c_void_p * n)(*[v.ctypes.data for v in views])
    sizes = (C.c_size_t * n)(*[v.nbytes for v in views])
    return ptrs, sizes, views


_PARTS_PER_THREAD = 8  # a mapped bundle's fill parts per thread: the nodes resident at once are ~1/8 of a thread's


def fill_threads() -> int:
    """Threads a fill uses by default: the CPUs this process may run on, at most 4 (past that the largest
    layer, which one thread writes alone, bounds the gain on real networks)."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, available))


@lru_cache(maxsize=1)
def _bytes_api() -> tuple:
    """CPython's ``PyBytes_FromStringAndSize`` and ``PyBytes_AsString``, typed for ctypes."""
    make, contents = C.pythonapi.PyBytes_FromStringAndSize, C.pythonapi.PyBytes_AsString
    make.restype, make.argtypes = C.py_object, [C.c_void_p, C.c_ssize_t]
    contents.restype, contents.argtypes = C.c_void_p, [C.py_object]
    return make, contents


def _new_bytes(size: int) -> tuple[bytes, int]:
    """A new ``bytes`` of ``size`` bytes, not yet initialised, and the address of its contents, for the core
    to fill before anything else sees it: ``PyBytes_FromStringAndSize(NULL, size)``, the C API's way to build
    a bytes object in place (``inn_graph_fill_spans`` and the parts write every byte of an image: spans,
    holes, zero gaps)."""
    make, contents = _bytes_api()
    out = make(None, size) if size else b""
    address = contents(out)
    if address % 4:  # CPython's bytes contents follow a 32-byte (64-bit) / 16-byte header: never
        raise NativeError(vocab.STATUS["ARG"], "a bytes object whose contents are not 4-byte aligned")
    return out, address


def _cost(row: _Cost) -> Cost:
    known = {f: bool(row.known & bit) for f, bit in vocab.COST_FIELDS.items()}
    return Cost(**{f: getattr(row, f) for f in vocab.COST_FIELDS if known[f]})
