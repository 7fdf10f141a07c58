"""Importing timm on a machine whose torchvision wheel does not match the CPU torch (tests and tools only).

timm imports torchvision. The torchvision wheel on PyPI is a CUDA build whose Python half, at import,
attaches fake-tensor kernels to its compiled operators (``torchvision::nms``, ``torchvision::qnms``);
against the CPU torch those compiled operators were never registered, so ``import torchvision``
fails with ``operator torchvision::nms does not exist``. The zoo code paths never call those
operators (they are detection post-processing), so declaring the two schemas (no kernels) is
enough for the import to succeed. We do it only when the plain import fails, so a matching
torchvision is used untouched. This lives in tests/ and tools/ only, never in the library: a user
with a working torchvision does not need it, and the library must not patch other packages.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

import torch

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library: torch.library.Library | None = None  # kept alive: dropping it would unregister the schemas


def _declare_torchvision_ops() -> None:
    global _library
    if _library is None:
        _library = torch.library.Library("torchvision", "FRAGMENT")
        for schema in _SCHEMAS.values():
            try:
                _library.define(schema)
            except RuntimeError:
                pass  # already declared (a torchvision build that registered only some operators)
    for mod in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[mod]  # drop the half-imported package so the retry starts clean


def import_timm() -> ModuleType:
    """``import timm``, declaring torchvision's two missing operator schemas first if that is what fails."""
    try:
        return importlib.import_module("timm")
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
    _declare_torchvision_ops()
    for mod in [m for m in sys.modules if m == "timm" or m.startswith("timm.")]:
        del sys.modules[mod]
    return importlib.import_module("timm")
