"""Multi-layer perceptrons for tabular data."""

from __future__ import annotations

import torch
from torch import nn

from models.zoo import register_model


@register_model("mlp")
class MLP(nn.Module):
    """A tabular classifier: ``depth`` blocks of Linear → ReLU → Dropout, then a linear head.

    Inputs are float features ``(N, n_features)``; standardisation lives in the adapter
    (``preprocessing.mean``/``std`` in the sidecar), one-hot encoding in the recipe.

    References
    ----------
    Rumelhart, Hinton, Williams, "Learning representations by back-propagating errors", Nature 1986.
    """

    def __init__(self, n_features: int = 10, n_classes: int = 2, hidden: int = 64, depth: int = 2,
                 dropout: float = 0.1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
