"""The ``.innb`` vocabulary in Python: every code the file format and the C core agree on, once.

The C side of the same vocabulary is ``csrc/inn.h``; ``tests/test_vocab.py`` parses that header and
fails if a name or a number here differs from it. Everything else in the package (the bundle codec,
the runtime files with holes, the Python reference, the ctypes binding, the exporters and loaders)
takes its codes from here, so a new layout or runtime is added in one place per language.
"""

from __future__ import annotations

from dataclasses import dataclass

MAGIC = b"INNB"
VERSION = (1, 4)  # INN_VERSION_MAJOR, INN_VERSION_MINOR
FLAG_NORM = 1  # INN_FLAG_NORM: per-width normalisation (NORM + NRMV) that a reader must apply
FLAG_CRC32C = 2  # INN_FLAG_CRC32C (1.4): the section table and the sections are checked by CRC-32C
TAPS = 4  # INN_TAPS: non-zeros per row of a resampling matrix (cubic convolution)
UNIFORM = 0xFFFFFFFF  # INN_UNIFORM: partition reference meaning "uniform points"
MAX_DIM = 1 << 24  # INN_MAX_DIM: largest channel / node count a reader accepts
RUNTIME_NAME = 16  # INN_RUNTIME_NAME: bytes of a runtime name in a GIDX or COST row (NUL-padded)
BUCKET_RATIO = 1  # INN_BUCKET_RATIO: BKIN record flag, the bucket's width ratio is set
# Reader limits (FORMAT.md "Reader limits", inn_internal.h): what a small file may ask a reader to build
MAX_UPSAMPLE = 16  # INN_MAX_UPSAMPLE: points per node a bucket may sample a resizable group at
HOLE_REUSE = 8  # INN_HOLE_REUSE: a record's hole bytes / the bucket's tensor bytes
GAP_RATIO = 4  # INN_GAP_RATIO: a record's zero bytes / (its stored + hole bytes) ...
GAP_FLOOR = 1 << 20  # INN_GAP_FLOOR: ... plus this many

# inn_status: the core's result codes, by their short name (INN_ERR_<NAME>; 0 is INN_OK)
STATUS = {
    "OK": 0, "ARG": 1, "TRUNCATED": 2, "MAGIC": 3, "VERSION": 4, "CHECKSUM": 5, "FORMAT": 6, "RANGE": 7,
    "OVERFLOW": 8, "BUFFER": 9, "MISSING": 10, "PARTITION": 11, "UNVERIFIED": 12, "STALE": 13,
}
CACHE_NAME = 64  # INN_CACHE_NAME: bytes of a width cache entry's name, its NUL included
CACHE_STAMP_FILE = "stamp.innc"  # INN_CACHE_STAMP_FILE: the stamp's file name in a width cache entry
QUADRATURES = {"trapezoid": 0, "simpson": 1, "rectangle": 2}  # inn_quadrature (INN_QUAD_*)
KINDS = {"dense": 1, "depthwise": 2, "affine": 3}  # inn_kind (INN_KIND_*): a layer record's kind
LAYOUTS = {"oit": 0, "oti": 1, "ito": 2}  # inn_layout (INN_LAYOUT_*): OIHW, OHWI, 1HWO / IO
OUTPUT_DTYPES = {"f32": 0, "i8": 1}  # inn_dtype (INN_F32, INN_I8): what inn_materialize writes
# section element types (FORMAT.md "Section table"); NODE uses f32, f16 or i8 (inn_node_dtype)
ELEMENTS = {"bytes": 0, "f32": 1, "f16": 2, "i8": 3}
NODE_DTYPES = ("f32", "f16", "i8")
# graph records (FORMAT.md "Graph records"): what a hole holds and how its bytes are encoded
HOLE_TENSORS = {"weight": 1, "bias": 2, "scale": 3, "bias_i32": 4, "bias_scale": 5}  # inn_hole_tensor
HOLE_DTYPES = {"f32": 0, "i8": 1, "i32": 2}  # inn_hole_dtype
# COST rows (FORMAT.md "Bucket costs"): the flag of each measurement a row holds (INN_COST_*)
COST_FIELDS = {"weights_bytes": 1, "file_bytes": 2, "arena_bytes": 4, "accuracy": 8}
# cascades (FORMAT.md "Cascade table", 1.4): the confidence a step's threshold applies to (INN_SCORE_*),
# and the target its thresholds were calibrated to (INN_TARGET_*; none: set by hand)
CASCADE_SCORES = {"max_prob": 1, "margin": 2}
CASCADE_TARGETS = {"none": 0, "accuracy_drop": 1, "mean_macs": 2}
CASCADE_FIELDS = {"accuracy": 1, "macs": 2}  # INN_CASCADE_*: a CSCD record's calibration results that were measured
CASCADE_NAME = 255  # INN_CASCADE_NAME: bytes of a cascade's name, at most


def name_of(table: dict[str, int], code: int, what: str) -> str:
    """The name of ``code`` in one of the tables above, or a ``ValueError`` naming ``what`` it was."""
    for name, c in table.items():
        if c == code:
            return name
    raise ValueError(f"unknown {what} code {code}")


@dataclass(frozen=True)
class Runtime:
    """A runtime a bundle can carry graphs for: the family (which exporter and loader), int8 or not,
    the Python packages that family needs, and the file names of one bucket's graph."""

    name: str
    family: str
    int8: bool
    packages: tuple[str, ...]
    files: tuple[str, ...]


TFLITE_FILE = "model.tflite"
PTE_FILE = "model.pte"
PTD_FILE = "weights.ptd"
_LITERT = {"family": "litert", "packages": ("ai_edge_litert", "litert_torch"), "files": (TFLITE_FILE,)}
_EXECUTORCH = {"family": "executorch", "packages": ("executorch",), "files": (PTE_FILE, PTD_FILE)}
RUNTIMES: dict[str, Runtime] = {
    "litert": Runtime("litert", int8=False, **_LITERT),
    "litert-i8": Runtime("litert-i8", int8=True, **_LITERT),
    "executorch": Runtime("executorch", int8=False, **_EXECUTORCH),
    "executorch-i8": Runtime("executorch-i8", int8=True, **_EXECUTORCH),
}


def runtime_name(family: str, int8: bool) -> str:
    """The bundle's name for ``family``'s fp32 or int8 graphs."""
    return next(r.name for r in RUNTIMES.values() if (r.family, r.int8) == (family, int8))
