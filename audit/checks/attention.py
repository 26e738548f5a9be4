"""Attention maps of Transformers, per layer and head, and attention rollout — with a check of how
far the rollout can be trusted as an explanation (deletion and insertion, as for attributions).

Works with the Hugging Face text models (``HFTextAdapter.attention``) and the zoo's ViT and
Transformer (``TorchAdapter`` over a module with ``attention_maps``). A model without attention
maps is skipped with the reason.

References
----------
Abnar, Zuidema. "Quantifying Attention Flow in Transformers", ACL 2020.
Jain, Wallace. "Attention is not Explanation", NAACL 2019.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from audit import explain as E
from audit import explain_text as T
from audit.config import CheckConfig
from audit.context import AuditContext
from audit.errors import SkipCheck
from audit.images import downsampled_note, figure_heatmap, figure_image
from audit.registry import Check, CheckOutput, register_check
from audit.results import Figure, Metric, Table
from models.adapter import HFTextAdapter


def attention_rollout(maps: list[torch.Tensor], head_fusion: Literal["mean", "max", "min"] = "mean") -> torch.Tensor:
    """Attention rollout: ``(B, T, T)`` flow of attention from the inputs to every output token.

    Each layer's heads are fused (mean by default, as in the paper), the residual connection is
    modelled as ``0.5 A + 0.5 I`` with rows renormalised, and the layers are multiplied from the
    first to the last: ``R = Â_L ⋯ Â_1``. Row ``i`` of ``R`` says how much output token ``i``
    draws on each input token.

    References
    ----------
    Abnar, Zuidema. "Quantifying Attention Flow in Transformers", ACL 2020, Eq. 1.
    """
    result = None
    for a in maps:
        a = a.detach().double()
        fused = {"mean": a.mean(1), "max": a.amax(1), "min": a.amin(1)}[head_fusion]
        eye = torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
        aug = 0.5 * fused + 0.5 * eye
        aug = aug / aug.sum(-1, keepdim=True)
        result = aug if result is None else aug @ result
    if result is None:
        raise ValueError("attention_rollout needs at least one layer of attention maps")
    return result


def attention_entropy(maps: torch.Tensor, query_mask: torch.Tensor) -> torch.Tensor:
    """Mean normalised entropy of the attention rows of each head: ``(heads,)`` in [0, 1].

    1 is uniform attention over the keys the row can see; 0 attends to one token only. Rows of
    padding queries (``query_mask`` False) are left out.
    """
    a = maps.detach().double().clamp_min(1e-12)
    keys = (maps.detach() > 0).sum(-1).clamp_min(2).double()
    ent = -(a * a.log()).sum(-1) / keys.log()  # (B, heads, T)
    w = query_mask[:, None, :].double()
    return (ent * w).sum((0, 2)) / w.sum((0, 2)).clamp_min(1)


class AttentionConfig(CheckConfig):
    """Settings of the ``explanations.attention`` check."""

    renamed: ClassVar[dict[str, str]] = {"n_explain": "max_samples"}

    max_samples: int = Field(default=8, ge=1, description="Samples whose attention is read: confident errors, least confident predictions, then random (was n_explain).")
    head_fusion: Literal["mean", "max", "min"] = Field(default="mean", description="How rollout fuses a layer's heads (the paper uses the mean).")
    query: Literal["auto", "first", "mean"] = Field(
        default="auto", description="Whose attention flow explains the prediction: the first ([CLS]) token, the mean over tokens, "
                                    "or auto (first for the ViT and Hugging Face models, mean otherwise).")
    curve_steps: int = Field(default=16, ge=4, description="Steps of the deletion and insertion curves of the rollout.")
    batch_size: int | None = Field(default=None, gt=0, description="Batch size of the model calls (default: the audit's).")


@register_check("explanations.attention")
class Attention(Check):
    """Per-layer, per-head attention and attention rollout, with the rollout's faithfulness.

    References
    ----------
    Abnar & Zuidema 2020 (rollout); Petsiuk et al. 2018 (deletion / insertion).
    """

    category = "explainability"
    title = "Attention maps and attention rollout"
    needs = ("attention",)
    Config = AttentionConfig
    metric_names = ("attention_entropy", "rollout_deletion_auc", "rollout_insertion_auc", "rollout_faithfulness_gap")

    def run(self, ctx: AuditContext) -> CheckOutput:
        cfg: AttentionConfig = self.config  # type: ignore[assignment]
        adapter, ev = ctx.adapter, ctx.dataset("eval")
        if not adapter.has_attention:
            raise SkipCheck(f"attention applies to Transformers; this model ({type(adapter).__name__}, {adapter.format}) "
                            "has no attention layers that report their weights.")
        is_text = isinstance(ev.inputs, list)
        idx, reasons = E.pick_samples(ctx.probs(), ev.target, min(cfg.max_samples, len(ev)), ctx.rng(self.id))
        target = ctx.y_pred()[idx]
        bs = cfg.batch_size or ctx.batch_size
        inputs: Any = [str(ev.inputs[i]) for i in idx] if is_text else ev.take(idx)
        maps: list[list[torch.Tensor]] = []
        try:
            for start in range(0, len(idx), bs):
                with torch.no_grad():
                    batch = adapter.to_batch(inputs[start : start + bs])
                    maps.append([m.detach().cpu() for m in adapter.attention(batch)])
        except NotImplementedError as exc:
            raise SkipCheck(f"the model returned no attention maps: {exc}") from None
        layers = [torch.cat([b[layer] for b in maps]) for layer in range(len(maps[0]))]
        n, n_tok = layers[0].shape[0], layers[0].shape[-1]
        encoded = adapter.encode(inputs) if is_text and adapter.capabilities.tokenizer else None
        pad_id = getattr(adapter.tokenizer, "pad_token_id", None)
        pad_id = pad_id if isinstance(pad_id, int) else 0  # the zoo's word vocabularies pad with 0
        if encoded is not None and "attention_mask" in encoded:
            query_mask = encoded["attention_mask"].detach().cpu().bool()
        elif encoded is not None:
            query_mask = encoded["input_ids"].detach().cpu()[:, :n_tok] != pad_id
        elif not is_text and np.issubdtype(np.asarray(inputs).dtype, np.integer) and inputs.ndim == 2:
            query_mask = torch.from_numpy(inputs[:, :n_tok] != 0)
        else:
            query_mask = torch.ones(n, n_tok, dtype=torch.bool)
        rollout = attention_rollout(layers, cfg.head_fusion)
        if cfg.query == "auto":
            first = isinstance(adapter, HFTextAdapter) or _has_cls(adapter, n_tok)
        else:
            first = cfg.query == "first"
        if first:
            scores = rollout[:, 0]
            query_text = "the first ([CLS]) token"
        else:
            w = query_mask.double()
            scores = (rollout * w[:, :, None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1)
            query_text = "the mean over (non-padding) tokens"
        scores = scores * query_mask.double()

        metrics: list[Metric] = []
        head_rows = []
        for li, layer in enumerate(layers):
            ent = attention_entropy(layer, query_mask)
            for h in range(layer.shape[1]):
                group = f"layer {li + 1} head {h + 1}"
                metrics.append(Metric(name="attention_entropy", group=group, value=float(ent[h]), n=n,
                                      method="mean entropy of the attention rows, divided by log(number of keys); "
                                             "1 = uniform, 0 = one token"))
                head_rows.append([li + 1, h + 1, round(float(ent[h]), 4),
                                  round(float(layer[:, h, :, 0][query_mask].double().mean()), 4),
                                  round(float(layer[:, h].amax(-1)[query_mask].double().mean()), 4)])
        evidence: list[Any] = [Table(
            title="Attention per layer and head", columns=["layer", "head", "entropy", "attention to token 0", "max weight"],
            rows=head_rows, caption="Entropy near 1: the head spreads attention evenly; near 0: it looks at one token. "
                                    "Averaged over the non-padding query tokens of the explained samples.")]
        limitations = ["Attention weights say where a layer looks, not what drives the prediction (Jain & Wallace 2019); "
                       "the rollout's deletion and insertion curves below test how far it can be trusted for this model.",
                       "Rollout assumes the residual stream weighs as much as attention (0.5 A + 0.5 I) and ignores the "
                       "MLP blocks and value vectors."]
        m0 = [lay[0].double() for lay in layers]
        images = [(a[h] / a[h].max().clamp_min(1e-12)).numpy().round(4).tolist() for a in m0 for h in range(a.shape[0])]
        titles = [f"L{li + 1} H{h + 1}" for li, a in enumerate(m0) for h in range(a.shape[0])]
        images.append((rollout[0] / rollout[0].max().clamp_min(1e-12)).numpy().round(4).tolist())
        titles.append("rollout")
        evidence.append(Figure(kind="image_grid", title=f"Attention maps of row {int(idx[0])}, per layer and head",
                               data={"images": images, "titles": titles},
                               caption="Row = query token, column = key token; brighter = more attention. The last map "
                                       "is the attention rollout over all layers."))

        curves = self._faithfulness(ctx, cfg, adapter, inputs, idx, target, scores, is_text, encoded, bs, evidence,
                                    reasons, limitations)
        if curves is not None:
            dele, ins, what = curves
            d_auc, i_auc = float(dele.mean()), float(ins.mean())
            base = f"{n} samples; {what}"
            metrics = [
                Metric(name="rollout_faithfulness_gap", value=i_auc - d_auc, n=n, higher_is_better=True,
                       method=f"insertion AUC minus deletion AUC of the attention rollout; {base}"),
                Metric(name="rollout_deletion_auc", value=d_auc, n=n, higher_is_better=False,
                       method=f"mean target probability as the features the rollout ranks highest are removed first "
                              f"({cfg.curve_steps} steps); {base}"),
                Metric(name="rollout_insertion_auc", value=i_auc, n=n, higher_is_better=True,
                       method=f"mean target probability as those features are restored first; {base}"),
            ] + metrics
            verdict = ("what it points at drives the prediction" if i_auc - d_auc > 0.05 else
                       "it is not a faithful explanation of this model's predictions")
            summary = (f"Attention rollout over {len(layers)} layers × {layers[0].shape[1]} heads: insertion − deletion "
                       f"AUC {i_auc - d_auc:.3f}, so {verdict}.")
        else:  # not measured is null with the reason, never left to look like nothing was asked
            why = next((t for t in reversed(limitations) if "faithfulness" in t), "not measured")
            metrics = [Metric(name=name, value=None, n=n, higher_is_better=hib, method=f"not measured: {why}")
                       for name, hib in (("rollout_faithfulness_gap", True), ("rollout_deletion_auc", False),
                                         ("rollout_insertion_auc", True))] + metrics
            summary = (f"Attention maps of {len(layers)} layers × {layers[0].shape[1]} heads and their rollout; the "
                       "rollout's faithfulness could not be measured for this input kind.")
        return CheckOutput(summary=summary, metrics=metrics, evidence=evidence, dataset="eval", n_samples=n,
                           limitations=limitations,
                           method=(f"Attention weights of every layer and head for {n} samples; rollout (Abnar & Zuidema "
                                   f"2020) with {cfg.head_fusion} head fusion, read from {query_text}."))

    def _faithfulness(self, ctx: AuditContext, cfg: AttentionConfig, adapter: Any, inputs: Any, idx: np.ndarray,
                      target: np.ndarray, scores: torch.Tensor, is_text: bool, encoded: Any, bs: int,
                      evidence: list[Any], reasons: list[str],
                      limitations: list[str]) -> tuple[np.ndarray, np.ndarray, str] | None:
        n_tok = scores.shape[1]
        if is_text:
            words = T.token_words(adapter, inputs, encoded) if encoded is not None else None
            if words is None:
                limitations.append("The rollout's faithfulness was not measured: the tokenizer gives no character "
                                   "offsets, so token scores cannot be mapped to words.")
                return None
            per_word = []
            rows = []
            for i, text in enumerate(inputs):
                w = np.zeros(len(T.word_spans(text)))
                keep = words[i] >= 0
                np.add.at(w, words[i][keep], scores[i].numpy()[keep])
                per_word.append(w)
                if i < 6:
                    spans = T.word_spans(text)[:40]
                    rows.append({"label": f"row {int(idx[i])}", "row": int(idx[i]),
                                 "words": [text[a:b] for a, b in spans], "scores": [float(s) for s in w[:len(spans)]]})
            evidence.append(Figure(kind="text_highlights", title="Token highlights: attention rollout",
                                   data={"rows": rows, "score": "attention rollout", "signed": False},
                                   caption="Each word shaded by the attention flow into it (summed over its tokens), "
                                           "with the value after it; at most 40 words are shown."))
            mask = T.mask_token_of(adapter)
            dele, ins = T.deletion_insertion(adapter, inputs, target, per_word, mask, cfg.curve_steps, bs)
            return dele, ins, f"words replaced by {mask!r}"
        x = torch.from_numpy(np.asarray(inputs, dtype=np.float32))
        if adapter.input_kind != "image" or x.dim() != 4:
            limitations.append("The rollout's faithfulness is measured for text and image models only.")
            return None
        side = int(round((n_tok - 1) ** 0.5))
        if side * side != n_tok - 1:
            limitations.append(f"The rollout's faithfulness was not measured: {n_tok} tokens are not a [CLS] token and a "
                               "square grid of patches.")
            return None
        grid = scores[:, 1:].float().reshape(-1, 1, side, side)
        heat = torch.nn.functional.interpolate(grid, size=tuple(x.shape[2:]), mode="nearest")
        attr = heat.expand(-1, x.shape[1], -1, -1).contiguous()
        lo = float(adapter.input_range[0]) if adapter.input_range is not None else float(x.mean())
        baseline = torch.full_like(x[:1], lo)
        fwd = adapter.as_module() if adapter.capabilities.module else adapter.logits
        dev = adapter.device
        dele, ins = E.deletion_insertion(fwd, x.to(dev), torch.from_numpy(target).to(dev), attr.to(dev), baseline.to(dev),
                                         cfg.curve_steps, bs)
        hi = float(adapter.input_range[1]) if adapter.input_range is not None else float(x.max())
        images, titles = [], []
        for i in range(min(3, len(x))):
            images.append(figure_image(((x[i] - lo) / max(hi - lo, 1e-12)).clamp(0, 1)))
            titles.append(f"input ({reasons[i]})")
            images.append(figure_heatmap(heat[i, 0]))
            titles.append("rollout")
        evidence.append(Figure(kind="image_grid", title="Attention rollout over the image", data={"images": images, "titles": titles},
                               caption="Each input, then the attention flow from [CLS] to each patch (brighter = more)."
                                       + downsampled_note(tuple(x.shape))))
        return dele, ins, f"patches set to {lo:g}"


def _has_cls(adapter: Any, n_tok: int) -> bool:
    """An image model with one token more than a square grid of patches has a [CLS] token."""
    if adapter.input_kind != "image":
        return False
    side = int(round((n_tok - 1) ** 0.5))
    return side * side == n_tok - 1
