"""A tiny Vision Transformer for small images."""

from __future__ import annotations

import torch
from torch import nn

from models.architectures.transformer import EncoderBlock
from models.zoo import register_model


@register_model("vit")
class VisionTransformer(nn.Module):
    """Tiny ViT: non-overlapping patch embedding (a strided conv), a [CLS] token, learned
    positions, ``depth`` pre-norm encoder blocks and a linear head on the [CLS] token.

    Defaults suit 8×8 digits (2×2 patches → 16 tokens + [CLS]). :meth:`attention_maps` returns one
    ``(B, heads, 1 + n_patches, 1 + n_patches)`` tensor per layer.

    References
    ----------
    Dosovitskiy et al., "An image is worth 16x16 words: Transformers for image recognition at
    scale", ICLR 2021.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 10, image_size: int = 8, patch_size: int = 2,
                 dim: int = 32, heads: int = 2, depth: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        if image_size % patch_size:
            raise TypeError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        n_patches = (image_size // patch_size) ** 2
        self.patch = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, n_patches + 1, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        nn.init.trunc_normal_(self.cls, std=0.02)
        self.blocks = nn.ModuleList(EncoderBlock(dim, heads, dropout=dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        h = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], 1) + self.pos
        maps = []
        for block in self.blocks:
            h, w = block(h)
            maps.append(w)
        return self.norm(h[:, 0]), maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self._encode(x)[0])

    def attention_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Attention weights of every layer, each ``(B, heads, tokens, tokens)``."""
        return self._encode(x)[1]
