"""Importing timm (and transformers' vision models) where the torchvision wheel does not match the CPU torch.

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


def ensure_torchvision() -> None:
    """Make ``import torchvision`` work (timm imports it, and so does transformers when it is installed),
    declaring the two missing operator schemas only if the plain import fails for that reason."""
    try:
        importlib.import_module("torchvision")
        return
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
    _declare_torchvision_ops()
    importlib.import_module("torchvision")


def import_timm() -> ModuleType:
    """``import timm`` after :func:`ensure_torchvision`."""
    ensure_torchvision()
    return importlib.import_module("timm")
