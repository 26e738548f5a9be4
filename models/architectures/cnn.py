"""Convolutional image classifiers."""

from __future__ import annotations

import torch
from torch import nn

from models.zoo import register_model


@register_model("lenet5")
class LeNet5(nn.Module):
    """A LeNet-5 style CNN: two conv–pool blocks and a two-layer head.

    Sized for small images (8×8 digits up to 32×32). The last ``nn.Linear`` is the classifier,
    so its input is the penultimate feature vector the adapter exposes.

    References
    ----------
    LeCun et al., "Gradient-based learning applied to document recognition", Proc. IEEE 1998.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 10, image_size: int = 8, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        side = image_size // 4
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * side * side, 64),
            nn.ReLU(),
            nn.Linear(64, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
