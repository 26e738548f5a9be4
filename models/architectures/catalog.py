"""What ``deepaudit models list`` shows: family, input kind and size of each registered model."""

from __future__ import annotations

from dataclasses import dataclass

from models.zoo import create_model, list_models

#: name → (family, adapter input kind of the default configuration, the inputs it takes). Token-id
#: models are "sequence" in the adapter's vocabulary ("text" is raw strings, for HFTextAdapter).
FAMILIES: dict[str, tuple[str, str, str]] = {
    "lenet5": ("cnn", "image", "(N, C, H, W) float"),
    "resnet8": ("resnet", "image", "(N, C, H, W) float"),
    "resnet18": ("resnet", "image", "(N, C, H, W) float"),
    "vit": ("vision-transformer", "image", "(N, C, H, W) float"),
    "mlp": ("mlp", "tabular", "(N, F) float"),
    "lstm": ("rnn", "sequence", "(N, T) int64 ids; (N, T, F) float with n_features"),
    "gru": ("rnn", "sequence", "(N, T) int64 ids; (N, T, F) float with n_features"),
    "transformer": ("transformer", "sequence", "(N, T) int64 ids"),
    "hf_encoder": ("huggingface", "sequence", "(N, T) int64 MiniLM WordPiece ids"),
}


@dataclass(frozen=True)
class ModelInfo:
    """One row of ``deepaudit models list``; ``n_params`` is for the default constructor arguments."""

    name: str
    family: str
    input_kind: str
    inputs: str
    n_params: int
    has_attention: bool


def describe_models(pattern: str = "*") -> list[ModelInfo]:
    """Registered models matching ``pattern``, each built once with its defaults to count parameters."""
    rows = []
    for name in list_models(pattern):
        model = create_model(name)
        family, kind, inputs = FAMILIES.get(name, ("other", "unknown", ""))
        rows.append(ModelInfo(name, family, kind, inputs, sum(p.numel() for p in model.parameters()),
                              callable(getattr(model, "attention_maps", None))))
    return rows
