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


class BandClassifier(nn.Module):
    """A perfect classifier by construction: class c is the horizontal band of the image (rows split into
    n_classes bands) with the highest mean intensity. ``band_images`` makes data it gets exactly right."""

    def __init__(self, n_classes: int = 3, scale: float = 20.0) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.mean(dim=(1, 3))  # (batch, height)
        bands = torch.tensor_split(rows, self.n_classes, dim=1)
        return self.scale * torch.stack([b.mean(dim=1) for b in bands], dim=1)


def band_images(n: int, n_classes: int = 3, size: int = 9, seed: int = 0) -> tuple:
    """``n`` images (1×size×size, in [0, 1]) whose label is the band made bright, and the labels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    rng.shuffle(y)
    x = 0.3 * rng.random((n, 1, size, size), dtype=np.float32)
    edges = np.array_split(np.arange(size), n_classes)
    for i, c in enumerate(y):
        x[i, 0, edges[c], :] += 0.6
    return x, y


def band_cnn(n_classes: int = 5, size: int = 8, steps: int = 60) -> TinyCNN:
    """A ``TinyCNN`` trained for a moment on ``band_images`` (seeded), so its predictions vary and attacks
    succeed; in eval mode."""
    torch.manual_seed(0)
    model = TinyCNN(n_classes=n_classes)
    x, y = band_images(200, n_classes=n_classes, size=size, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        opt.step()
    return model.eval()


class StridedCNN(nn.Module):
    """A small CNN for large images (3×224×224 in the tests): an 8×8 stride-8 convolution, a stride-2 one, global
    average pooling and a linear layer — about 3,000 parameters and 1 million multiply-adds per 224² image."""

    def __init__(self, in_channels: int = 3, n_classes: int = 5, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_channels, width, 8, stride=8), nn.ReLU(),
                                      nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(2 * width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


STRIDED_CNN_CLASS = f"{Path(__file__).resolve()}:StridedCNN"
