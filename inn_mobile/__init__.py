"""inn-mobile: Integral Neural Networks on phones and boards.

The pipeline, one verb per stage::

    im = inn_mobile.convert(model, example_input)            # torch.nn.Module -> IntegralModel
    inn_mobile.fit(im, train_data, inn_mobile.FinetuneConfig())  # optional: every width good
    b = inn_mobile.pack(im, example_input, ["litert"], path="m.innb")  # -> Bundle on disk
    net = inn_mobile.open_model("m.innb", "litert", 0.5)       # on the host, as on a device

Stage packages: ``core`` (kernel, channel tracing, IntegralModel, convert), ``train`` (fine-tuning,
per-width norms, partitions, pruning baseline), ``format`` (the ``.innb`` contract and the Python twin
of the C core), ``export`` (lowering and packing), ``runtime`` (loading, width policy), ``app`` (CLI,
demo, datasets). Names are imported on first use, so ``import inn_mobile`` stays cheap.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("inn-mobile")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

# public name -> module that defines it
_EXPORTS = {
    "convert": "inn_mobile.core.convert",
    "IntegralModel": "inn_mobile.core.integral",
    "Bundle": "inn_mobile.format.bundle",
    "make_buckets": "inn_mobile.format.bundle",
    "load": "inn_mobile.format.bundle",
    "save": "inn_mobile.format.bundle",
    "pack": "inn_mobile.export.pack",
    "open_model": "inn_mobile.runtime",
    "choose": "inn_mobile.runtime.policy",
    "fit": "inn_mobile.train.finetune",
    "FinetuneConfig": "inn_mobile.train.finetune",
    "InnError": "inn_mobile.errors",
    "BundleError": "inn_mobile.errors",
    "UnsupportedGraphError": "inn_mobile.errors",
    "LoweringError": "inn_mobile.errors",
    "BudgetError": "inn_mobile.errors",
    "NotInBundleError": "inn_mobile.errors",
}
__all__ = [
    "convert", "IntegralModel", "Bundle", "make_buckets", "load", "save", "pack", "open_model", "choose", "fit",
    "FinetuneConfig", "InnError", "BundleError", "UnsupportedGraphError", "LoweringError", "BudgetError",
    "NotInBundleError", "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'inn_mobile' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from inn_mobile.core.convert import convert
    from inn_mobile.core.integral import IntegralModel
    from inn_mobile.errors import (
        BudgetError,
        BundleError,
        InnError,
        LoweringError,
        NotInBundleError,
        UnsupportedGraphError,
    )
    from inn_mobile.export.pack import pack
    from inn_mobile.format.bundle import Bundle, load, make_buckets, save
    from inn_mobile.runtime import open_model
    from inn_mobile.runtime.policy import choose
    from inn_mobile.train.finetune import FinetuneConfig, fit
