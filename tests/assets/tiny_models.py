"""Tiny models for tests, importable by path as 'tests/assets/tiny_models.py:ClassName'."""

from __future__ import annotations

import torch
from pathlib import Path

from torch import nn

TINY_CNN_CLASS = f"{Path(__file__).resolve()}:TinyCNN"
TINY_MLP_CLASS = f"{Path(__file__).resolve()}:TinyMLP"


class TinyCNN(nn.Module):
    def __init__(self, in_channels: int = 1, n_classes: int = 3, image_size: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc1 = nn.Linear(16, 8)
        self.fc2 = nn.Linear(8, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(torch.relu(self.conv(x))).flatten(1)
        return self.fc2(torch.relu(self.fc1(h)))


class TinyMLP(nn.Module):
    def __init__(self, n_features: int = 4, n_classes: int = 2) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_features, 8), nn.ReLU(), nn.Linear(8, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
