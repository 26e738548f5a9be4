"""Recurrent classifiers (LSTM, GRU) for token-id text and float sequences."""

from __future__ import annotations

import torch
from torch import nn

from models.zoo import register_model


class _RecurrentClassifier(nn.Module):
    """Embedding (or a float sequence) → recurrent layers → masked mean pooling → linear head.

    Give ``vocab_size`` for int64 token ids ``(N, T)`` (id 0 is padding and is masked out of the
    pooling), or ``n_features`` for float sequences ``(N, T, F)``; not both. With neither, token
    ids with a 1,000-word vocabulary.
    """

    cell: type[nn.RNNBase] = nn.LSTM

    def __init__(self, vocab_size: int | None = None, n_features: int | None = None, n_classes: int = 2,
                 embed_dim: int = 32, hidden: int = 64, num_layers: int = 1, bidirectional: bool = True,
                 padding_idx: int = 0) -> None:
        super().__init__()
        if vocab_size is not None and n_features is not None:
            raise TypeError("give one of vocab_size (token ids) or n_features (float sequences), not both")
        if vocab_size is None and n_features is None:
            vocab_size = 1000
        self.embedding: nn.Embedding | None = None
        if vocab_size is not None:
            self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=padding_idx)
            d_in = embed_dim
        else:
            d_in = int(n_features)  # type: ignore[arg-type]
        self.padding_idx = padding_idx
        self.rnn = self.cell(d_in, hidden, num_layers=num_layers, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embedding is not None:
            mask = (x != self.padding_idx).unsqueeze(-1).float()
            h = self.embedding(x)
        else:
            mask = torch.ones(*x.shape[:2], 1, device=x.device, dtype=x.dtype)
            h = x
        out, _ = self.rnn(h)
        pooled = (out * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return self.head(pooled)


@register_model("lstm")
class LSTMClassifier(_RecurrentClassifier):
    """Bidirectional LSTM classifier over token ids or float sequences, mean-pooled.

    References
    ----------
    Hochreiter, Schmidhuber, "Long short-term memory", Neural Computation 1997.
    """

    cell = nn.LSTM


@register_model("gru")
class GRUClassifier(_RecurrentClassifier):
    """Bidirectional GRU classifier over token ids or float sequences, mean-pooled.

    References
    ----------
    Cho et al., "Learning phrase representations using RNN encoder-decoder for statistical
    machine translation", EMNLP 2014.
    """

    cell = nn.GRU
