"""Transformer encoders whose attention weights are kept: a text classifier on token ids.

The encoder layer is written out (pre-norm, ``nn.MultiheadAttention`` with ``need_weights=True``,
``average_attn_weights=False``) rather than ``nn.TransformerEncoderLayer``, whose fast path
discards the attention weights the audit's explanation checks need.
"""

from __future__ import annotations

import torch
from torch import nn

from models.zoo import register_model


class EncoderBlock(nn.Module):
    """Pre-norm Transformer encoder block that records its last attention weights.

    References
    ----------
    Vaswani et al., "Attention is all you need", NeurIPS 2017; Xiong et al., "On layer
    normalization in the Transformer architecture", ICML 2020 (pre-norm).
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the block output and the attention weights ``(B, heads, T, T)``."""
        h = self.norm1(x)
        out, weights = self.attn(h, h, h, key_padding_mask=pad_mask, need_weights=True, average_attn_weights=False)
        x = x + out
        x = x + self.mlp(self.norm2(x))
        return x, weights


@register_model("transformer")
class TransformerClassifier(nn.Module):
    """Transformer encoder text classifier trained from scratch on int64 token ids ``(N, T)``.

    Token embedding + learned positions → ``depth`` encoder blocks → masked mean pooling →
    LayerNorm → linear head (the last ``nn.Linear``). Id ``padding_idx`` (0) is padding: masked
    as a key in attention and out of the pooling. :meth:`attention_maps` returns one
    ``(B, heads, T, T)`` tensor per layer.

    References
    ----------
    Vaswani et al., "Attention is all you need", NeurIPS 2017.
    """

    def __init__(self, vocab_size: int = 1000, n_classes: int = 2, max_len: int = 64, dim: int = 32,
                 heads: int = 2, depth: int = 2, dropout: float = 0.1, padding_idx: int = 0) -> None:
        super().__init__()
        self.padding_idx = padding_idx
        self.max_len = max_len
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=padding_idx)
        self.pos = nn.Parameter(torch.zeros(1, max_len, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(EncoderBlock(dim, heads, dropout=dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = x[:, : self.max_len].long()
        pad = x == self.padding_idx
        all_pad = pad.all(1, keepdim=True)
        pad = pad & ~all_pad  # an all-padding row attends everywhere rather than producing NaN
        h = self.drop(self.embed(x) + self.pos[:, : x.shape[1]])
        maps = []
        for block in self.blocks:
            h, w = block(h, pad)
            maps.append(w)
        keep = (~pad).unsqueeze(-1).to(h.dtype)
        pooled = (h * keep).sum(1) / keep.sum(1).clamp_min(1.0)
        return self.norm(pooled), maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self._encode(x)[0])

    def attention_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Attention weights of every layer, each ``(B, heads, T, T)``."""
        return self._encode(x)[1]
