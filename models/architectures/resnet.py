"""Residual networks for small images."""

from __future__ import annotations

import torch
from torch import nn

from models.zoo import register_model


class _BasicBlock(nn.Module):
    """Two 3×3 convolutions with batch norm and an identity (or 1×1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


@register_model("resnet8")
class ResNet8(nn.Module):
    """ResNet-8: a 3×3 stem and three basic blocks (widths w, 2w, 4w), global pooling, a linear head.

    The CIFAR-style ResNet of He et al. with one block per stage (1 + 3·2 + 1 = 8 weighted layers).
    Works on any image size ≥ 4 (8×8 digits up to 32×32). The final ``nn.Linear`` is the
    classifier; its input (the pooled 4w-dimensional vector) is the penultimate feature.

    References
    ----------
    He, Zhang, Ren, Sun, "Deep residual learning for image recognition", CVPR 2016.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 10, width: int = 16, image_size: int | None = None) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.layers = nn.Sequential(
            _BasicBlock(width, width, 1),
            _BasicBlock(width, 2 * width, 2),
            _BasicBlock(2 * width, 4 * width, 2),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.layers(self.stem(x))).flatten(1))


@register_model("resnet18")
class ResNet18(nn.Module):
    """ResNet-18, CIFAR-style: a 3×3 stem (no max-pool) and four stages of two basic blocks (widths
    w, 2w, 4w, 8w; strides 1, 2, 2, 2), global pooling, a linear head. With ``width=64`` it is the
    11.2M-parameter network of He et al. used on 32×32 images; smaller widths make test-size copies.
    The final ``nn.Linear``'s input (the pooled 8w vector) is the penultimate feature.

    References
    ----------
    He, Zhang, Ren, Sun, "Deep residual learning for image recognition", CVPR 2016.
    """

    def __init__(self, in_channels: int = 3, n_classes: int = 10, width: int = 64, image_size: int | None = None) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        stages, c_in = [], width
        for i, stride in enumerate((1, 2, 2, 2)):
            c_out = width * 2**i
            stages += [_BasicBlock(c_in, c_out, stride), _BasicBlock(c_out, c_out, 1)]
            c_in = c_out
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.layers(self.stem(x))).flatten(1))
