"""The audit config: YAML, validated by pydantic, every key documented.

``load_config(path, overrides)`` is the one entry point. Errors name the key, the file and what
was expected, and suggest the nearest valid key for a typo. ``docs/config.md`` documents every
key; a test keeps it in step with these models.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Callable, ClassVar, Literal, Union

import yaml
from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, create_model, field_validator,
                      model_validator)

from audit.budget import BUDGETS, Budget, budget_table_markdown, deprecation_note, rename_deprecated, with_budget
from audit.errors import ConfigError

InputKind = Literal["image", "tabular", "text", "sequence"]
ModelFormat = Literal["auto", "torchscript", "export", "safetensors", "state_dict", "huggingface", "onnx", "pickle"]
DataFormat = Literal["auto", "npz", "npy", "csv", "parquet", "image_folder", "hf_dataset"]


#: The default memory budget of one data set (``data.<role>.max_bytes``).
DEFAULT_MAX_BYTES = 4 * 2**30
_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str) -> int:
    """``'8GiB'``, ``'500 MB'``, ``'1e9'`` → bytes; ValueError for anything else."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).lower() if match else None
    if unit not in _SIZE_UNITS:
        raise ValueError("must be a number of bytes or a size like 8GiB, 500MB")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def format_size(n: float) -> str:
    """Bytes as text in binary units: 2.4 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


class StrictModel(BaseModel):
    """Unknown keys are errors, so a typo never silently does nothing; every float is finite
    (``.nan`` and ``.inf`` are refused wherever a number is expected), and a boolean is refused where a
    number is expected (pydantic alone would read ``true`` as 1)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_number(cls, v: Any, info: Any) -> Any:
        """Refuse ``true``/``false`` where a number is expected (pydantic would take ``true`` as 1)."""
        field = cls.model_fields.get(info.field_name) if info.field_name else None
        if field is not None and _has_bool(v) and _wants_number_not_bool(field.annotation):
            raise ValueError("expected a number, not a boolean (true/false); write the number itself")
        return v


def _has_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return True
    if isinstance(v, (list, tuple)):
        return any(_has_bool(x) for x in v)
    return False


def _wants_number_not_bool(annotation: Any) -> bool:
    """Whether a field type takes numbers (int or float, in lists/unions/Annotated) and no booleans."""
    seen: set[str] = set()

    def walk(a: Any) -> None:
        if a is Any:
            seen.add("bool")
        elif a is bool:
            seen.add("bool")
        elif a in (int, float):
            seen.add("number")
        elif typing.get_origin(a) is Literal:
            seen.update("bool" if isinstance(x, bool) else "other" for x in typing.get_args(a))
        else:
            for arg in typing.get_args(a):
                walk(arg)

    walk(annotation)
    return "number" in seen and "bool" not in seen


#: Shared field types of the check configs (finiteness comes from :class:`StrictModel`).
PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]
#: A share strictly between 0 and 1 (a rate, a fraction of samples).
OpenUnitFloat = Annotated[float, Field(gt=0, lt=1)]


def check_names(values: list[str] | None, known: list[str] | tuple[str, ...], what: str) -> list[str] | None:
    """Validate a list of names against ``known``, with a did-you-mean for the first unknown one.

    For pydantic ``field_validator``s of the check configs: raises ``ValueError`` (pydantic turns it
    into the one-line config error that names the key and the file).
    """
    if values is None:
        return None
    if not values:
        raise ValueError(f"give at least one {what}, or leave the key out for the default; choose from {', '.join(known)}")
    unknown = [v for v in values if v not in known]
    if unknown:
        raise ValueError(f"unknown {what} {unknown[0]!r}.{_suggest(unknown[0], list(known))} Choose from {', '.join(known)}")
    return values


def split_check_ids(text: str) -> list[str]:
    """``"adversarial, corruption"`` → ``["adversarial", "corruption"]`` (``--checks`` and a ``select`` string)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_check_selection(text: str, flag: str = "--checks") -> list[str]:
    """Check ids from ``--checks ID[,ID...]``, each a registered check.

    Raises
    ------
    ConfigError
        No id, or an unknown one (with a did-you-mean and the known ids).
    """
    from audit.registry import list_checks

    try:
        return check_names(split_check_ids(text), list_checks(), "check") or []
    except ValueError as exc:
        raise ConfigError(f"{flag}: {exc}; 'deepaudit checks' lists them.") from None


class Preprocessing(StrictModel):
    """Preprocessing the adapter applies inside the model, so checks work in raw input space."""

    mean: list[float] | None = Field(default=None, description="Per-channel (or per-feature) mean subtracted from inputs.")
    std: list[PositiveFloat] | None = Field(default=None, description="Per-channel (or per-feature) standard deviation divided by.")
    input_range: tuple[float, float] | None = Field(
        default=None, description="Valid range of raw inputs, e.g. [0, 1] for images; attacks clip to it."
    )

    @field_validator("input_range")
    @classmethod
    def _range(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not v[0] < v[1]:
            raise ValueError(f"the low end must be below the high end, e.g. [0, 1]; got [{v[0]:g}, {v[1]:g}]")
        return v


class ModelSpec(StrictModel):
    """Which model to audit and how to load it."""

    path: Path = Field(description="Model file or Hugging Face model folder.")
    name: str | None = Field(default=None, min_length=1, max_length=200,
                             description="The model's name, heading the report, the model card and the JUnit suite; "
                                         "default: the file's name without its suffix (its folder's name for a generic "
                                         "file name such as model.safetensors, and for a Hugging Face folder).")
    version: str | None = Field(default=None, min_length=1, max_length=100,
                                description="The model's version, e.g. 2.1.0 or a git tag.")
    owner: str | None = Field(default=None, min_length=1, max_length=200,
                              description="Who is responsible for the model (person, team or organisation).")
    format: ModelFormat = Field(default="auto", description="Model file format; 'auto' detects it from the file.")

    @field_validator("name", "version", "owner", mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        """A YAML number where text is meant: an integer is its digits; a decimal is refused, since YAML has
        already turned 1.10 into 1.1."""
        if isinstance(v, bool):
            return v
        if isinstance(v, int):
            return str(v)
        if isinstance(v, float):
            raise ValueError(f"YAML read {v!r} as a number; put it in quotes, e.g. '{v!r}', so it stays as written")
        return v
    model_class: str | None = Field(
        default=None,
        alias="class",
        description="For safetensors and state dicts: the model class as 'path/to/file.py:ClassName'.",
    )
    init_args: dict[str, Any] = Field(default_factory=dict, description="Constructor arguments of model_class.")
    allow_pickle: bool = Field(
        default=False,
        description="Allow loading model files that unpickle or run code: pickles (torch.load without weights_only, "
        "joblib), .pt2 archives with pickled entries or code-like text, Hugging Face .bin weights the safe loader "
        "refuses. Pickles can run arbitrary code: enable only for files you trust (README, Security).",
    )
    allow_nonfinite: bool = Field(
        default=False,
        description="Exclude evaluation rows whose logits are NaN or infinite from every check (the results and the "
        "report say how many and which) instead of stopping with exit 2.",
    )
    input_kind: InputKind | None = Field(default=None, description="image, tabular, text or sequence; inferred when omitted.")
    class_names: list[str] | None = Field(default=None, description="Class names in logit order.")
    preprocessing: Preprocessing = Field(default_factory=Preprocessing, description="Normalisation applied inside the model (section `model.preprocessing`).")


class DataSpec(StrictModel):
    """One data set. The same keys serve the evaluation, reference and OOD sets."""

    path: Path = Field(description="Data file or folder: .npz, .npy (inputs only, unlabelled), .csv, .parquet, an image "
                                   "folder, or a saved HF dataset.")
    format: DataFormat = Field(default="auto", description="Data format; 'auto' detects it from the path.")
    features: str | list[str] | None = Field(
        default=None,
        description="npz: name of the input array (default 'x'). CSV/Parquet: feature columns "
        "(default: every column that is not the target, a sensitive feature or the text column). "
        "HF dataset: the input column (default 'image', 'x' or 'text', whichever exists).",
    )
    target: str | None = Field(default="y", description="Label array (npz) or column (tables, HF datasets); null for unlabelled data.")
    text_column: str | None = Field(default=None, description="Column (or .npz array) holding raw text, for text models.")
    sensitive_features: list[str] = Field(
        default_factory=list, description="Arrays (npz) or columns holding group membership, e.g. [sex, race]."
    )
    split: str | None = Field(default=None, description="Split of a saved HF DatasetDict (default: 'test' if present, else the only split).")
    image_size: tuple[PositiveInt, PositiveInt] | None = Field(default=None, description="Resize image-folder images to (height, width).")
    image_mode: Literal["auto", "RGB", "L"] = Field(default="auto", description="Colour mode for image folders.")
    max_samples: int | None = Field(
        default=None, gt=0,
        description="Use a random subset of at most this many samples (seeded); the other rows are never decoded.")
    max_bytes: int = Field(
        default=DEFAULT_MAX_BYTES, gt=0,
        description="Memory budget for loading this set: bytes, or a size like 8GiB or 500MB. What the set holds is "
        "estimated before any data is read, and a set over it is refused: one batch of model-ready inputs, plus what "
        "is held whole — labels and sensitive features, the kept rows of a compressed .npz in their stored dtype, "
        "a CSV's text, the label and text columns of Parquet and saved HF datasets (their tabular features too). "
        "Inputs of an uncompressed .npz/.npy, image folders, Parquet feature columns and HF image or array columns "
        "are read a batch at a time and not held. Raise it for a bigger set, or set max_samples.")

    @field_validator("max_bytes", mode="before")
    @classmethod
    def _size(cls, v: Any) -> Any:
        return parse_size(v) if isinstance(v, str) else v


class DataSets(StrictModel):
    """The data sets of an audit. Only ``eval`` is required."""

    eval: DataSpec = Field(description="Evaluation set: the data every check is judged on.")
    reference: DataSpec | None = Field(default=None, description="Reference (e.g. training) set, for drift and OOD fitting.")
    ood: DataSpec | None = Field(default=None, description="Out-of-distribution set.")


class OutputSpec(StrictModel):
    """Where and what to write."""

    dir: Path = Field(default=Path("deepaudit-out"), description="Output folder for results.json and report.html.")
    html: bool = Field(default=True, description="Write report.html.")
    junit: Path | None = Field(default=None, description="Also write JUnit XML to this path.")
    markdown: Path | None = Field(default=None, description="Also write a Markdown summary here.")
    pdf: bool = Field(default=False, description="Also write report.pdf from report.html (needs headless Chromium).")
    card: bool = Field(default=False, description="Also write model_card.md and model_card.html.")


class ThresholdSpec(StrictModel):
    """A threshold on one metric: the value must lie in [min, max]."""

    min: float | None = Field(default=None, description="Lowest acceptable value.")
    max: float | None = Field(default=None, description="Highest acceptable value.")
    level: Literal["fail", "warn"] = Field(default="fail", description="Status when the threshold is missed.")

    @model_validator(mode="after")
    def _ordered(self) -> ThresholdSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}: no value could pass")
        return self


class CheckConfig(StrictModel):
    """Keys every check accepts. Each check's own ``Config`` subclasses this."""

    enabled: bool = Field(default=True, description="Run this check.")
    thresholds: dict[str, ThresholdSpec] = Field(
        default_factory=dict, description="Thresholds by metric name; they decide pass, warn or fail."
    )

    #: Deprecated key -> its name now (docs/config.md, Sample budget); the old name still works.
    renamed: ClassVar[dict[str, str]] = {}
    _deprecated: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _deprecated_keys(cls, data: Any, handler: Any) -> Any:
        """Read a deprecated key as its name now, and remember it for the one-line note."""
        used: dict[str, str] = {}
        if isinstance(data, dict) and cls.renamed:
            data, used = rename_deprecated(cls.renamed, data)
        conf = handler(data)
        if used:
            conf._deprecated = used
        return conf

    def deprecation_notes(self, check_id: str) -> list[str]:
        """One line per deprecated key this config was given."""
        return [deprecation_note(check_id, old, new) for old, new in self._deprecated.items()]


class EnergySpec(StrictModel):
    """Energy and carbon accounting of the audit itself (CodeCarbon's offline tracker)."""

    track: bool = Field(default=True, description="Record the energy of every check and of the whole audit.")
    country_iso_code: str = Field(default="USA", min_length=3, max_length=3,
                                  description="ISO 3166 alpha-3 code of the grid whose carbon intensity applies.")


class RaySpec(StrictModel):
    """The Ray cluster that runs the checks with `executor: ray` (section `ray`)."""

    address: str | None = Field(
        default=None, min_length=1,
        description="An existing cluster: `auto`, `HOST:PORT` or `ray://HOST:10001` (--ray-address). Its nodes need "
                    "deepaudit installed and the config's model and data paths readable. Default: start a local "
                    "cluster for this audit and stop it at the end.")
    num_cpus: int | None = Field(
        default=None, gt=0,
        description="CPUs of the local cluster. Default: `threads` (the cores available to the process), so the "
                    "audit uses as many cores with Ray as without.")
    cpus_per_task: int = Field(
        default=1, gt=0,
        description="CPUs each worker reserves and computes with (its torch and BLAS threads); the local cluster "
                    "runs num_cpus / cpus_per_task workers at once.")
    gpus_per_task: float | None = Field(
        default=None, ge=0,
        description="GPUs each worker reserves. Default: 1 when `device` is cuda (each worker gets its own GPU), "
                    "otherwise 0.")


class Attestation(StrictModel):
    """A human statement the tool cannot evidence (section `attestations.<topic>`)."""

    statement: str = Field(min_length=1, description="What the responsible person states, in plain words.")
    owner: str | None = Field(default=None, description="Who makes the statement (name or role).")
    date: str | None = Field(default=None, description="When it was made or last reviewed, e.g. 2026-11-24.")
    status: Literal["stated", "approved", "open"] = Field(
        default="stated", description="stated, approved (signed off) or open (still to be settled; counted on page one)."
    )

    @field_validator("date", mode="before")
    @classmethod
    def _date(cls, v: Any) -> Any:
        # YAML reads 2026-11-24 as a date; keep it as the ISO text the person wrote.
        return v.isoformat() if hasattr(v, "isoformat") else v


#: Attestation topics the report always lists, missing or not; other keys are allowed.
ATTESTATION_TOPICS = ("intended_purpose", "human_oversight", "data_governance", "logging", "post_market_monitoring")


class Signatory(StrictModel):
    """A person who signs the report (section `report.signatories`)."""

    role: str = Field(min_length=1, description="e.g. 'Model owner', 'Compliance officer'.")
    name: str = Field(default="", description="Printed under the signature line; blank to fill in by hand.")


class ReportSpec(StrictModel):
    """Report settings (section `report`)."""

    signatories: list[Signatory] = Field(
        default_factory=list, description="People who sign and date the report; blank signature lines are printed."
    )


class AuditConfig(StrictModel):
    """The whole config file."""

    version: Literal[1] = Field(default=1, description="Config format version.")
    model: ModelSpec = Field(description="The model to audit (section `model`).")
    data: DataSets = Field(description="The data sets (section `data`); `data.eval` is required.")
    device: str = Field(default="auto", description="auto, cpu, cuda or cuda:N.")
    seed: int = Field(default=0, description="Seed for every random choice (subsets, bootstrap, attacks).")
    batch_size: int | None = Field(
        default=None, gt=0,
        description="Rows of one model call in every loop over data (--batch-size). Unset: derived from the input size, "
                    "the largest power of two up to 256 whose batch holds at most 2**22 input numbers (256 for tables, "
                    "text and images up to 3×64×64, 64 at 3×128×128, 16 at 3×224×224); results.json records the one "
                    "used (provenance.batch_size).")
    budget: Budget = Field(
        default="standard",
        description="Sample budget of the expensive checks: how many rows, resamples, steps and queries each uses "
                    "(`quick`, `standard` or `thorough`; --budget). Each is a fixed number, so a check's cost stops "
                    "growing with the data; a key set under `checks.<id>` wins. The numbers are in the table "
                    "'Sample budget' below; the report and results.json record each check's.")
    threads: int | None = Field(
        default=None, gt=0,
        description="CPU threads for torch's intra-op pool and the BLAS behind numpy (torch's inter-op pool gets 1). "
                    "Default: the cores available to the process (CPU affinity, capped by a cgroup quota), or "
                    "OMP_NUM_THREADS when smaller; a larger value is capped at the cores available.")
    executor: Literal["local", "ray"] = Field(
        default="local",
        description="`local`: the checks run one after the other in this process. `ray`: independent checks (and "
                    "in `compare`, the models) run as Ray tasks, each worker building the model from this config; "
                    "same results as local. Needs the optional extra: pip install 'deepaudit[ray]'.")
    ray: RaySpec = Field(default_factory=RaySpec, description="The Ray cluster, for `executor: ray` (section `ray`).")
    output: OutputSpec = Field(default_factory=OutputSpec, description="What to write, and where (section `output`).")
    energy: EnergySpec = Field(default_factory=EnergySpec, description="Energy tracking (section `energy`).")
    select: list[str] | None = Field(
        default=None,
        description="Run only these checks (ids, as `deepaudit checks` lists them; `--checks ID,ID` sets it). A "
                    "selected check runs even if `checks.<id>.enabled` is false; thresholds set on a check that is not "
                    "selected are listed as not judged (not selected) and never block the gate. Unset: every enabled "
                    "check runs.")
    checks: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per-check settings by check id; a check left out runs with its defaults if it is on by default.",
    )
    attestations: dict[str, Attestation] = Field(
        default_factory=dict,
        description="Human statements by topic (intended_purpose, human_oversight, data_governance, logging, "
                    "post_market_monitoring, or your own), each {statement, owner, date, status}; copied into "
                    "the report as not evidenced by the tool.",
    )
    report: ReportSpec = Field(default_factory=ReportSpec, description="Report settings (section `report`).")
    on_not_judged: Literal["fail", "warn"] = Field(
        default="fail",
        description="What a `fail` threshold set in this config that could not be judged (its check skipped or "
                    "disabled, its metric undefined or not reported) does, and an audit where no threshold was "
                    "judged at all: `fail` blocks the gate (exit 1, reported as not judged); `warn` reports it "
                    "and exits 0.")

    @field_validator("select", mode="before")
    @classmethod
    def _select(cls, v: Any) -> Any:
        return split_check_ids(v) if isinstance(v, str) else v

    @field_validator("select")
    @classmethod
    def _known_checks(cls, v: list[str] | None) -> list[str] | None:
        from audit.registry import list_checks

        return check_names(list(dict.fromkeys(v)), list_checks(), "check") if v is not None else None

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v in ("auto", "cpu", "cuda", "mps") or (v.startswith("cuda:") and v[5:].isdigit()):
            return v
        raise ValueError("must be auto, cpu, cuda, cuda:N or mps")


# --------------------------------------------------------------------------------------- loading


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Valid keys at the location of an unknown key, for suggestions."""
    current: Any = model
    for part in loc[:-1]:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(part) or next(
            (f for f in current.model_fields.values() if f.alias == part), None
        )
        if field is None:
            return []
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        current = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


MISSING_HINTS = {
    "model": " Pass --model PATH or set model.path in the config.",
    "model.path": " Pass --model PATH or set model.path in the config.",
    "data": " Pass --data PATH or set data.eval.path in the config.",
    "data.eval": " Pass --data PATH or set data.eval.path in the config.",
    "data.eval.path": " Pass --data PATH or set data.eval.path in the config.",
}


#: Parts of a pydantic error location that name a branch of a union type, not a key.
_UNION_TAG = re.compile(r"^(constrained-)?(int|float|str|bool|none|list\[.*\]|dict\[.*\]|literal\[.*\])$")


#: Where a config came from: one label, or a function of the key at fault (``load_config``: the file, or
#: the ``--set`` item that gave the key).
Source = Union[str, Callable[[str], str]]


def _where(source: Source, key: str) -> str:
    """The label of ``source`` for ``key``."""
    return source(key) if callable(source) else source


def format_validation_error(exc: ValidationError, model: type[BaseModel], source: Source, prefix: str = "") -> str:
    """One line naming the key, the file (or ``--set`` item) and what was expected."""
    errors = exc.errors()
    # A typo'd key usually also makes a required key "missing": report the typo first.
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and (p.startswith("function-") or _UNION_TAG.match(p))))
    key = prefix + ".".join(str(p) for p in loc)
    source = _where(source, key.rstrip("."))
    etype = err["type"]
    if etype == "extra_forbidden":
        options = _fields_at(model, loc)
        return f"{source}: unknown key '{key}'.{_suggest(str(loc[-1]), options)}"
    if etype == "missing":
        hint = MISSING_HINTS.get(key, "")
        return f"{source}: missing required key '{key}'.{hint}"
    key = key.rstrip(".")  # an error of a whole section (a model validator) names the section
    got = err.get("input")
    got_s = json.dumps(got, default=str) if not isinstance(got, (dict, list)) or len(str(got)) < 60 else type(got).__name__
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
    hint = ""
    if etype == "literal_error" and isinstance(got, str):
        hint = _suggest(got, re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", ""))))
    return f"{source}: key '{key}': {msg[0].lower() + msg[1:]}; got {got_s}.{hint}{more}"


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested dict, creating levels as needed.

    Check ids may contain dots (``fairness.group_metrics``): after ``checks.`` the longest
    registered check id that prefixes the rest is one level.
    """
    parts = dotted.split(".")
    if len(parts) > 2 and parts[0] == "checks":
        from audit.registry import list_checks

        rest = dotted[len("checks."):]
        ids = sorted((c for c in list_checks() if rest == c or rest.startswith(c + ".")), key=len, reverse=True)
        if ids:
            parts = ["checks", ids[0], *[p for p in rest[len(ids[0]) + 1:].split(".") if p]]
    cur = data
    for p in parts[:-1]:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[p] = nxt
        cur = nxt
    cur[parts[-1]] = value


#: Limits on YAML the audit reads (config files, ``--set`` values, terms files). A deepaudit config is a few
#: kB, nests fewer than 10 levels and has a few hundred values; these limits are far above that and far
#: below what a hostile file needs to exhaust memory or the stack (an alias bomb, deep nesting).
MAX_YAML_BYTES = 1 << 20
MAX_YAML_VALUES = 100_000
MAX_YAML_DEPTH = 64


class _LimitedLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader with a nesting limit while composing and an expansion limit before building.

    Aliases share nodes, so a billion-laughs file composes into a small graph; its size with every alias
    expanded is counted (once per node, memoised) before any Python object is built.
    """

    source = "YAML"

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _too_deep(self.source)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node: Any) -> Any:
        _expanded_size(node, 1, {}, set(), self.source)
        return super().construct_document(node)


def _too_deep(source: str) -> ConfigError:
    return ConfigError(f"{source}: the YAML nests deeper than {MAX_YAML_DEPTH} levels (aliases expanded); "
                       "a deepaudit config needs fewer than 10. Flatten it.")


def _expanded_size(node: Any, level: int, memo: dict[int, tuple[int, int]], open_: set[int], source: str) -> tuple[int, int]:
    """(values, depth) of ``node`` with every alias expanded; ConfigError past the limits or on a cycle."""
    key = id(node)
    if key in memo:
        size, depth = memo[key]
    else:
        if key in open_:
            raise ConfigError(f"{source}: a YAML alias refers to a node that contains it (a recursive structure); "
                              "write the values out instead.")
        if level > MAX_YAML_DEPTH:
            raise _too_deep(source)
        open_.add(key)
        size, depth = 1, 1
        children = node.value if isinstance(node, yaml.SequenceNode) else (
            [part for pair in node.value for part in pair] if isinstance(node, yaml.MappingNode) else [])
        for child in children:
            child_size, child_depth = _expanded_size(child, level + 1, memo, open_, source)
            size, depth = size + child_size, max(depth, child_depth + 1)
            if size > MAX_YAML_VALUES:
                raise ConfigError(
                    f"{source}: the YAML expands to more than {MAX_YAML_VALUES:,} values once its aliases (*name) "
                    "are expanded (an alias bomb?); no deepaudit config needs that many. Write the values out.")
        open_.discard(key)
        memo[key] = (size, depth)
    if level + depth - 1 > MAX_YAML_DEPTH:
        raise _too_deep(source)
    return size, depth


def safe_yaml(text: str, source: str) -> Any:
    """Parse YAML text safely: no Python objects, and at most ``MAX_YAML_BYTES`` characters,
    ``MAX_YAML_DEPTH`` levels and ``MAX_YAML_VALUES`` values with aliases expanded.

    Raises
    ------
    ConfigError
        Past a limit, with one line naming ``source``.
    yaml.YAMLError
        Invalid YAML.
    """
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(f"{source}: {len(text):,} characters of YAML, over the limit of {MAX_YAML_BYTES:,} (1 MiB); "
                          "a deepaudit config is a few kB. Is this the right file?")
    loader = _LimitedLoader(text)
    loader.source = source
    try:
        return loader.get_single_data()
    except (ValueError, OverflowError, TypeError) as exc:  # a scalar PyYAML cannot build: 2026-13-01, 5000 digits
        text = str(exc).strip().splitlines()
        raise ConfigError(f"{source}: a value cannot be read ({text[0][:200] if text else type(exc).__name__}).") from None
    finally:
        loader.dispose()


def check_value_limits(value: Any, source: str) -> None:
    """The YAML limits for a value parsed some other way (``--model-args`` JSON): depth and number of values."""
    stack, count = [(value, 1)], 0
    while stack:
        item, level = stack.pop()
        count += 1
        if level > MAX_YAML_DEPTH:
            raise ConfigError(f"{source}: nests deeper than {MAX_YAML_DEPTH} levels; flatten it.")
        if count > MAX_YAML_VALUES:
            raise ConfigError(f"{source}: holds more than {MAX_YAML_VALUES:,} values; no model needs that many arguments.")
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, level + 1) for child in children)


#: Keys whose value is free text, taken as typed: ``--set model.version=1.10`` is "1.10", not the number 1.1.
TEXT_KEYS = frozenset({"model.name", "model.version", "model.owner"})


def parse_override(item: str) -> tuple[str, Any]:
    """``key.path=value`` with the value parsed as YAML (numbers, booleans, lists), within the YAML limits;
    the value of a free-text key (``TEXT_KEYS``) is kept as typed."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set checks.performance.thresholds.accuracy.min=0.9")
    key, raw = item.split("=", 1)
    if key.strip() in TEXT_KEYS:
        return key.strip(), raw
    try:
        value = safe_yaml(raw, f"--set {key.strip()[:100]}") if raw else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML file into a dict, with one-line errors; at most ``MAX_YAML_BYTES`` are read."""
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist. Create one with 'deepaudit init {path}'.")
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_YAML_BYTES + 1)
        if len(raw) > MAX_YAML_BYTES:
            raise ConfigError(f"{path}: the config file is over the limit of {MAX_YAML_BYTES:,} bytes (1 MiB); "
                              "a deepaudit config is a few kB. Is this the right file?")
        data = safe_yaml(raw.decode("utf-8"), str(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} is not valid YAML ({getattr(exc, 'problem', exc)}).") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc}).") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of keys to values, got {type(data).__name__}.")
    return data


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    """Paths in a config file are relative to the file, not to the working directory."""
    model = data.get("model")
    if isinstance(model, dict):
        for key in ("path",):
            if isinstance(model.get(key), str):
                model[key] = str(base / model[key])
        cls = model.get("class")
        if isinstance(cls, str) and ":" in cls:
            file, name = cls.rsplit(":", 1)
            model["class"] = f"{base / file}:{name}"
    datas = data.get("data")
    if isinstance(datas, dict):
        for spec in datas.values():
            if isinstance(spec, dict) and isinstance(spec.get("path"), str):
                spec["path"] = str(base / spec["path"])
    out = data.get("output")
    if isinstance(out, dict):
        for key in ("dir", "junit", "markdown"):
            if isinstance(out.get(key), str):
                out[key] = str(base / out[key])


def load_config(
    path: Path | None = None,
    overrides: dict[str, Any] | None = None,
    sets: list[str] | None = None,
) -> AuditConfig:
    """Build a validated config from a YAML file, flag overrides and ``--set`` items.

    Flags win over the file. Relative paths in the file are relative to the file; relative
    paths from flags are relative to the working directory.
    """
    data: dict[str, Any] = {}
    if path is not None:
        data = read_config_file(path)
        _resolve_paths(data, path.parent)
    given = [(key, value, "command line") for key, value in (overrides or {}).items() if value is not None]
    given += [(*parse_override(item), f"--set {item[:200]}") for item in sets or []]
    source = _origin(copy.deepcopy(data), path, [(key, label) for key, _, label in given])
    for key, value, _ in given:  # in order: flags, then --set items, each over what came before
        set_dotted(data, key, value)
    return validate_config(data, source)


def _in_file(data: Any, key: str) -> bool:
    """Whether the file's ``data`` holds ``key`` (dotted; a check id may hold dots), or a part of it."""
    if not isinstance(data, dict):
        return True  # the file set a value at or above the key
    return any(key == k or (key.startswith(f"{k}.") and _in_file(v, key[len(k) + 1:])) for k, v in data.items()
               if isinstance(k, str))


def _origin(file_data: dict[str, Any], path: Path | None, given: list[tuple[str, str]]) -> Callable[[str], str]:
    """Name where a key at fault came from: the ``--set`` item (or flag) that last set it or the section above it,
    else the file; every source that set a part of the key, when several did; the file or the command line when
    none did (a missing key)."""
    def where(key: str) -> str:
        found = [str(path)] if path is not None and _in_file(file_data, key) else []
        for set_key, label in given:
            if key == set_key or key.startswith(f"{set_key}."):
                found = [label]  # replaces everything under it
            elif set_key.startswith(f"{key}.") and label not in found:
                found.append(label)
        return " and ".join(found) or (str(path) if path is not None else "command line")
    return where


def validate_config(data: dict[str, Any], source: Source = "config") -> AuditConfig:
    """Validate a dict, including each check's own config, with one-line errors."""
    try:
        cfg = AuditConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, AuditConfig, source)) from None
    # Each check validates its own section against its typed Config.
    from audit.registry import list_checks

    known = list_checks()
    for check_id, section in cfg.checks.items():
        if check_id not in known:
            raise ConfigError(f"{_where(source, f'checks.{check_id}')}: unknown check 'checks.{check_id}'.{_suggest(check_id, known)} Known checks: {', '.join(known)}.")
        validate_check_config(check_id, section or {}, source, cfg.budget)
    return cfg


def validate_key(key: str, value: Any, source: str = "config") -> Any:
    """Validate one top-level key alone, by the same rules as in a whole config (the demo checks
    ``--threads`` before it trains anything)."""
    field = AuditConfig.model_fields[key]
    one = create_model(f"_Only_{key}", __base__=StrictModel, **{key: (field.annotation, field)})
    try:
        return getattr(one.model_validate({key: value}), key)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, one, source)) from None


def validate_check_config(check_id: str, section: dict[str, Any], source: Source = "config",
                          budget: str = "standard") -> CheckConfig:
    """One check's config: its section over the preset of ``budget`` (audit.budget), validated."""
    from audit.registry import check_config_class, get_check

    config_cls = check_config_class(check_id)
    if budget not in BUDGETS:
        raise ConfigError(f"{_where(source, 'budget')}: key 'budget': must be one of {', '.join(BUDGETS)}; got {budget!r}.")
    try:
        conf = config_cls.model_validate(with_budget(check_id, section, budget, config_cls.renamed))
    except ValidationError as exc:
        message = format_validation_error(exc, config_cls, source, prefix=f"checks.{check_id}.")
        for old, new in config_cls.renamed.items():  # name the key as the config wrote it
            if old in section:
                message = message.replace(f"key 'checks.{check_id}.{new}'", f"key 'checks.{check_id}.{old}'")
        raise ConfigError(message) from None
    names = get_check(check_id).metric_names
    for metric, spec in conf.thresholds.items():
        if metric not in names:
            raise ConfigError(
                f"{_where(source, f'checks.{check_id}.thresholds.{metric}')}: key 'checks.{check_id}.thresholds.{metric}': "
                f"{check_id} has no metric {metric!r}."
                f"{_suggest(metric, list(names))} Metrics: {', '.join(names)}."
            )
        if spec.min is None and spec.max is None:
            raise ConfigError(f"{_where(source, f'checks.{check_id}.thresholds.{metric}')}: "
                              f"key 'checks.{check_id}.thresholds.{metric}': give 'min', 'max' or both.")
    return conf


STARTER_CONFIG = """\
# deepaudit config. Every key is documented in docs/config.md.
# Relative paths are relative to this file. Command-line flags override these values.
version: 1

model:
  path: model.pt                # TorchScript, torch.export (.pt2), safetensors, state dict, HF folder, ONNX
  # name: Fraud scorer          # heads the report, model card and JUnit suite (default: the file's name)
  # version: 1.4.0
  # owner: Risk ML team
  format: auto                  # auto | torchscript | export | safetensors | state_dict | huggingface | onnx | pickle
  # class: my_model.py:MyNet    # for safetensors / state dicts: the nn.Module class
  # init_args: {n_classes: 10}  # its constructor arguments
  allow_pickle: false           # pickles can run arbitrary code; enable only for files you trust
  # input_kind: image           # image | tabular | text | sequence (inferred from the data when omitted)
  # class_names: [cat, dog]     # names in logit order
  preprocessing: {}             # e.g. {mean: [0.5], std: [0.25], input_range: [0, 1]}: applied inside the model

data:
  eval:
    path: test.npz              # .npz | .csv | .parquet | image folder | saved HF dataset
    target: y                   # label array or column
    sensitive_features: []      # group columns, e.g. [sex, race]
    # text_column: text         # for text models
    # max_samples: 2000         # audit a seeded random subset
  # reference: {path: train.npz}
  # ood: {path: other.npz, target: null}

device: auto                    # auto | cpu | cuda | cuda:N
seed: 0
# batch_size: 256               # rows per model call (default: from the input size; 16 at 3×224×224)
budget: standard                # quick | standard | thorough: rows, resamples and steps of the expensive checks
# threads: 2                    # CPU threads (default: the cores available to the process)
# executor: ray                 # run independent checks as Ray tasks (pip install 'deepaudit[ray]')
# ray: {address: auto}          # an existing cluster; default: a local one with `threads` CPUs
on_not_judged: fail             # a fail threshold set here that could not be judged, or an audit that judged
                                #   nothing, exits 1 (fail) or only warns (warn)

output:
  dir: deepaudit-out            # results.json and report.html go here
  html: true
  # junit: deepaudit-out/junit.xml
  # markdown: deepaudit-out/summary.md
  # pdf: true                   # report.pdf (needs headless Chromium)
  # card: true                  # model_card.md and model_card.html

energy:
  track: true                   # CodeCarbon, offline: energy of every check and of the audit
  country_iso_code: USA         # the grid whose carbon intensity applies

checks:                         # every check runs with its defaults; `<id>: {enabled: false}` turns one off
  performance:
    n_resamples: 1000           # bootstrap resamples for 95% intervals
    n_bins: 15                  # ECE bins
    thresholds:
      accuracy: {min: 0.9}                 # fail below 0.9
      ece: {max: 0.1, level: warn}         # warn above 0.1
  # fairness.group_metrics:     # needs data.eval.sensitive_features (and data.reference for mitigations)
  #   thresholds: {demographic_parity_ratio: {min: 0.8}, equalized_odds_difference: {max: 0.1}}
  # adversarial:
  #   eps: [0.01, 0.03, 0.1]    # L-inf budgets (raw units; tabular: standard deviations per feature)
  #   thresholds: {robust_accuracy: {min: 0.5}}
  # efficiency: {inferences_per_year: 1.0e+6, training_watts: 300, training_hours: 2}

attestations: {}                # human statements, not evidenced by the tool; topics intended_purpose,
                                #   human_oversight, data_governance, logging, post_market_monitoring, e.g.
  # intended_purpose: {statement: "...", owner: "Jane Doe", date: 2026-01-31, status: approved}  # or stated | open

# report:
#   signatories: [{role: Model owner, name: Jane Doe}, {role: Compliance officer}]  # blank signature/date lines
"""


def starter_config() -> str:
    """The commented config ``deepaudit init`` writes; a test checks that it validates."""
    return STARTER_CONFIG


_BOUND_SIGNS = (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"))


def _range_text(metadata: list[Any]) -> str:
    """``[Gt(gt=0), Lt(lt=1)]`` → ``"> 0, < 1"``: the range pydantic enforces, for the reference."""
    parts = [f"{sign} {getattr(m, attr):g}" for m in metadata for attr, sign in _BOUND_SIGNS
             if isinstance(getattr(m, attr, None), (int, float))]
    return ", ".join(parts)


def _type_name(annotation: Any, metadata: list[Any] | None = None) -> str:
    def name(ann: Any) -> str:
        if typing.get_origin(ann) is Annotated:
            inner, *meta = typing.get_args(ann)
            rng = _range_text([m for info in meta for m in getattr(info, "metadata", [info])])
            return f"{name(inner)} ({rng})" if rng else name(inner)
        if getattr(ann, "__args__", None) is None:
            return getattr(ann, "__name__", None) or str(ann)
        if typing.get_origin(ann) in (typing.Union, types.UnionType):
            return " | ".join(name(a) for a in typing.get_args(ann))
        if typing.get_origin(ann) is Literal:
            return str(ann)
        origin = typing.get_origin(ann)
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(name(a) for a in typing.get_args(ann))}]"

    text = name(annotation)
    rng = _range_text(metadata or [])
    text = f"{text} ({rng})" if rng else text
    for noise in ("typing.", "pathlib.", "audit.config.", "<class '", "'>"):
        text = text.replace(noise, "")
    return text.replace("PosixPath", "Path").replace("WindowsPath", "Path").replace("NoneType", "None").replace("|", "\\|")


def _default_text(field: Any) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()
        return "`{}`" if value == {} else "`[]`" if value == [] else "see below"
    return f"`{json.dumps(field.default, default=str)}`"


def config_reference_markdown() -> str:
    """The key-by-key config reference (``docs/config.md``), generated from the models."""
    from audit.registry import INPUT_KINDS, NEEDS, get_check, list_checks

    sections: list[tuple[str, type[BaseModel], str]] = [
        ("Top level", AuditConfig, ""),
        ("`model`", ModelSpec, "model."),
        ("`model.preprocessing`", Preprocessing, "model.preprocessing."),
        ("`data`", DataSets, "data."),
        ("`data.eval`, `data.reference`, `data.ood`", DataSpec, "data.eval."),
        ("`output`", OutputSpec, "output."),
        ("`energy`", EnergySpec, "energy."),
        ("`ray`", RaySpec, "ray."),
        ("An attestation: `attestations.<topic>`", Attestation, "attestations.<topic>."),
        ("`report`", ReportSpec, "report."),
        ("A signatory: `report.signatories[]`", Signatory, "report.signatories[]."),
        ("Keys every check accepts: `checks.<id>`", CheckConfig, "checks.<id>."),
        ("A threshold: `checks.<id>.thresholds.<metric>`", ThresholdSpec, "checks.<id>.thresholds.<metric>."),
    ]
    lines = [
        "# Config reference",
        "",
        "<!-- Generated from audit/config.py and the check configs by "
        "`python -c \"from audit.config import config_reference_markdown as m; print(m(), end='')\" > docs/config.md`; "
        "a test fails while this file is out of date. -->",
        "",
        "A config is YAML. Relative paths in it are relative to the config file; command-line flags override it,",
        "and `--set key.path=value` overrides any key. `deepaudit init` writes a commented starter config.",
        "Unknown keys are errors (with a suggestion), so a typo never silently does nothing. Every number must be",
        "finite (`.nan` and `.inf` are refused), a number and not a boolean (`true` is refused, never read as 1), and",
        "inside the range its type shows (e.g. `float (> 0)`); names in",
        "lists (corruptions, attacks, scores, methods) must be known ones. A bad value exits 2 before anything runs.",
        f"A config file (and each `--set` value) is safe YAML within limits: at most {MAX_YAML_BYTES:,} bytes, "
        f"{MAX_YAML_DEPTH} levels of nesting",
        f"and {MAX_YAML_VALUES:,} values once aliases are expanded; past them it is refused with one line (exit 2).",
        "",
    ]

    def table(model: type[BaseModel], prefix: str) -> None:
        lines.extend(["| key | type | default | meaning |", "|---|---|---|---|"])
        for name, field in model.model_fields.items():
            key = field.alias or name
            if key in {"enabled", "thresholds"} and model is not CheckConfig and issubclass(model, CheckConfig):
                continue
            desc = (field.description or "").replace("|", "\\|")
            lines.append(f"| `{key}` | {_type_name(field.annotation, field.metadata)} | {_default_text(field)} | {desc} |")
        lines.append("")

    for title, model, prefix in sections:
        lines.extend([f"## {title}", ""])
        table(model, prefix)
    renamed = {cid: dict(get_check(cid).Config.renamed) for cid in list_checks() if get_check(cid).Config.renamed}
    lines.extend(["## Sample budget", "",
                  "`budget` (`--budget` on audit, compare and demo) sets, for every expensive check, how many rows, "
                  "resamples, steps, queries and epochs it uses. A key set under `checks.<id>` always wins over the "
                  "preset; `standard` (the default) is each check's own default. Every value is a fixed number, so a "
                  "check's cost stops growing with the evaluation set; only what must see every row grows with it "
                  "(the logits every check shares, performance, drift and the per-group metrics and bootstraps of "
                  "fairness). The rows a check draws from a data set are `max_samples` in every check "
                  "(`max_train_samples` / `max_fit_samples` for rows of `data.reference` it trains or fits on); "
                  "`batch_size` is always the rows of one model call. results.json records the budget "
                  "(`provenance.budget`) and each check's effective values (`checks[].sample_budget`, and the whole "
                  "`checks[].config`); the report prints them in each check's method and a Sample budget table.", "",
                  budget_table_markdown(renamed), ""])
    lines.extend(["## Checks", "",
                  "Each check's own keys, beside `enabled` and `thresholds`. Thresholds may name any metric listed; "
                  "on a metric reported per group (class, subgroup, attack, corruption) a threshold is judged on the "
                  "worst group in its direction, and the outcome names that group. *Judged by default* lists the "
                  "check's built-in conditions; a threshold in the config with the same metric name replaces one "
                  "(e.g. `checks.performance.thresholds.informative_p_value.max=0.05` relaxes it). A check without any "
                  "is *measured*, not judged, unless you set a threshold.", ""])

    def bound(spec: ThresholdSpec) -> str:
        parts = [f"≥ {spec.min:g}" if spec.min is not None else "", f"≤ {spec.max:g}" if spec.max is not None else ""]
        return " and ".join(p for p in parts if p) + f" ({spec.level})"

    for check_id in list_checks():
        cls = get_check(check_id)
        defaults = getattr(cls, "default_thresholds", {})
        judged = ("Judged by default: " + ", ".join(f"`{m}` {bound(s)}" for m, s in defaults.items()) + "."
                  if defaults else "Judged by default: nothing (measured, not judged, unless you set a threshold).")
        kinds = "any" if set(cls.input_kinds) == set(INPUT_KINDS) else ", ".join(cls.input_kinds)
        needs = (f"Needs: {', '.join(NEEDS[n] for n in cls.needs) or 'nothing beyond the model and data.eval'}"
                 + (f"; uses when there: {', '.join(NEEDS[n] for n in cls.uses)}" if cls.uses else "")
                 + f". Inputs: {kinds}.")
        lines.extend([f"### `checks.{check_id}` — {cls.title}", "", needs, "",
                      "Metrics: " + ", ".join(f"`{m}`" for m in cls.metric_names) + ".", "", judged, ""])
        table(cls.Config, f"checks.{check_id}.")
    return "\n".join(lines)
