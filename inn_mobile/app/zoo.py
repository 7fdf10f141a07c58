"""Models from the zoos people ship: ``timm:<name>`` and ``hf:<config or class>`` (random weights).

timm builds every family from its name (``timm.create_model(name, pretrained=False, **kwargs)``);
HuggingFace transformers builds a vision model from a config class (``hf:ResNetConfig``), a model
class (``hf:MobileNetV2ForImageClassification``) or a model type (``hf:convnext``), with
``kwargs`` as config fields. Nothing is downloaded. A HuggingFace model returns a ``ModelOutput``;
:class:`Logits` makes it return the logits tensor, which is what packing and fine-tuning need.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import nn

from inn_mobile.errors import InnError


class ZooError(InnError, ValueError):
    """A zoo model could not be built (missing package, unknown name, bad arguments)."""


class Logits(nn.Module):
    """A HuggingFace image model that takes ``pixel_values`` and returns only ``.logits``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values).logits


def _import(package: str) -> Any:
    try:
        return importlib.import_module(package)
    except Exception as e:  # noqa: BLE001 - a broken install raises anything (timm: torchvision's RuntimeError)
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ZooError(f"cannot import {package} ({first}); install it with pip install 'inn-mobile[zoo]'") from None


def timm_model(name: str, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, pretrained=False, **kwargs)``, in eval mode."""
    timm = _import("timm")
    try:
        return timm.create_model(name, pretrained=False, **kwargs).eval()
    except RuntimeError as e:  # timm's "Unknown model"
        raise ZooError(f"timm: {str(e).splitlines()[0]}") from None


def hf_model(name: str, **kwargs: Any) -> nn.Module:
    """A transformers image model built from a config, wrapped in :class:`Logits`, in eval mode."""
    transformers = _import("transformers")
    cls = getattr(transformers, name, None)
    try:
        if cls is not None and name.endswith("Config"):
            config = cls(**kwargs)
        elif cls is not None and hasattr(cls, "config_class"):
            return Logits(cls(cls.config_class(**kwargs))).eval()
        else:
            config = transformers.AutoConfig.for_model(name, **kwargs)
        model = transformers.AutoModelForImageClassification.from_config(config)
    except (ValueError, TypeError, KeyError) as e:
        raise ZooError(f"transformers: cannot build {name!r}: {str(e).splitlines()[0][:160]}") from None
    return Logits(model).eval()


def load(spec: str, **kwargs: Any) -> nn.Module | None:
    """The model for ``timm:<name>`` or ``hf:<name>``; ``None`` for any other spec."""
    zoo, _, name = spec.partition(":")
    if zoo == "timm" and name:
        return timm_model(name, **kwargs)
    if zoo == "hf" and name:
        return hf_model(name, **kwargs)
    return None
