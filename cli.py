"""deepaudit command line. Thin: parses arguments, calls the library, prints, maps outcomes to
exit codes.

Exit codes: 0 passed (warnings allowed); 1 a check missed a fail threshold, a fail threshold set in
the config could not be judged, or nothing was judged (the last two unless on_not_judged: warn);
2 bad input or usage (one line on stderr, no traceback); 3 internal error (a crash, or a check that
errored).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import typer

app = typer.Typer(
    name="deepaudit",
    help="Audit a trained deep learning model and write the evidence as reports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT, 128 + SIGTERM, as a shell reports them


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _input_errors() -> tuple[type[BaseException], ...]:
    from audit.errors import InputError
    from models.errors import ModelInputError

    return (InputError, ModelInputError)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so every cleanup runs (staging, browser, lock)."""


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn the first SIGTERM into :class:`_Terminated`; later ones wait for the cleanup to finish."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = []

    def handler(signum: int, frame: object) -> None:
        if not fired:
            fired.append(signum)
            raise _Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _translate_errors(skip_pdf: str | None = None) -> Iterator[None]:
    """Library raises, CLI translates: bad input → 2, anything unexpected → 3, SIGINT 130, SIGTERM 143.

    ``skip_pdf`` is how the command at hand does without the PDF, added to a failed PDF's message."""
    if not os.environ.get("DEEPAUDIT_DEBUG"):
        # Warnings of the underlying libraries (captum, shap, ART) are noise on a CI log.
        import logging
        import warnings

        warnings.filterwarnings("ignore")
        # torchao logs every optional CUDA kernel library it cannot load on a CPU machine, and torch's
        # pytree module logs deprecations: noise for a user, kept with DEEPAUDIT_DEBUG=1.
        for name in ("torchao", "torch.utils._pytree"):
            logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with _sigterm_raises():
            yield
    except typer.Exit:
        raise
    except KeyboardInterrupt as exc:
        how, code = ("terminated (SIGTERM)", EXIT_TERMINATED) if isinstance(exc, _Terminated) else \
            ("interrupted", EXIT_INTERRUPTED)
        _stderr(f"deepaudit: {how}; no partial report set was left behind.")
        raise typer.Exit(code) from None
    except Exception as exc:  # noqa: BLE001 - the one place exceptions become exit codes
        if isinstance(exc, _input_errors()):
            from reports.pdf import PdfError

            hint = f" To do without the PDF, {skip_pdf}." if skip_pdf and isinstance(exc, PdfError) else ""
            _stderr(f"deepaudit: error: {exc}{hint}")
            raise typer.Exit(EXIT_USAGE) from None
        if os.environ.get("DEEPAUDIT_DEBUG"):
            raise
        _stderr(f"deepaudit: internal error: {type(exc).__name__}: {exc} (set DEEPAUDIT_DEBUG=1 for the traceback)")
        raise typer.Exit(EXIT_INTERNAL) from None


def _quiet_hf_progress_bars() -> None:
    """--quiet: no Hugging Face progress bars (transformers draws "Loading weights: 100%|...|" for every model it
    loads, e.g. the MiniLM sentence encoder of the text attacks), here and in Ray workers (the environment)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # imported already: it read the variable then
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


class _Progress:
    """Progress on stderr; silent with --quiet. On a terminal, rich bars (the running check, long loops) and a
    line per finished check; in a log (not a TTY: CI), plain lines only, one as each check starts and one as it
    ends with its elapsed time and status, so a slow check never leaves the log silent for minutes."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._progress = None
        self._running: dict[str, tuple[str, float, Any]] = {}
        if quiet:
            _quiet_hf_progress_bars()

    def __enter__(self) -> _Progress:
        if not self.quiet:
            from rich.console import Console

            console = Console(stderr=True)
            if console.is_terminal:
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

                self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                          TimeElapsedColumn(), console=console, transient=True)
                self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def factory(self, description: str, total: int) -> Any:
        if self._progress is None:
            return lambda _done: None
        task = self._progress.add_task(description, total=total)
        return lambda done: self._progress.update(task, completed=done)

    def step(self, text: str) -> None:
        if not self.quiet:
            _stderr(text)

    def check_started(self, check_id: str, index: int, total: int) -> None:
        """``[3/13] adversarial …`` (a line in a log; a bar with the elapsed time on a terminal)."""
        import time

        label = f"[{index}/{total}] {check_id}"
        task = self._progress.add_task(label, total=None) if self._progress is not None else None
        self._running[check_id] = (label, time.monotonic(), task)
        if self._progress is None:
            self.step(f"{label} …")

    def check_done(self, result: Any) -> None:
        """``[3/13] adversarial … done in 12.3 s (WARN)``."""
        import time

        from reports._format import status_word

        label, start, task = self._running.pop(result.id, (result.id, None, None))
        if task is not None:
            self._progress.remove_task(task)
        elapsed = time.monotonic() - start if start is not None else result.duration_s
        self.step(f"{label} … done in {elapsed:.1f} s ({status_word(result.status)})")


CHECKS_HELP = ("Run only these checks, e.g. --checks adversarial,corruption (ids: 'deepaudit checks'); thresholds "
               "on the others are reported as not selected and do not block.")


def _selection(checks: str | None) -> list[str] | None:
    """``--checks ID[,ID...]`` as a list of known check ids (ConfigError, exit 2, for an unknown one)."""
    if checks is None:
        return None
    from audit.config import parse_check_selection

    return parse_check_selection(checks)


def _audit_inputs(cfg: Any, config: Path | None) -> dict[str, Path | None]:
    """Every input path of an audit config, by the key that names it (outputs must stay out of them)."""
    inputs: dict[str, Path | None] = {"model.path": cfg.model.path, "--config": config}
    if cfg.model.model_class and ":" in cfg.model.model_class:
        inputs["model.class"] = Path(cfg.model.model_class.rsplit(":", 1)[0])
    for role in ("eval", "reference", "ood"):
        spec = getattr(cfg.data, role)
        if spec is not None:
            inputs[f"data.{role}.path"] = spec.path
    return inputs


def _require_executor(cfg: Any, quiet: bool = False) -> None:
    """``executor: ray`` without Ray installed, or with no cluster at ``--ray-address``, exits 2 before any work.
    With --quiet, Ray's own log lines below ERROR (``ray.init``'s "Token authentication is enabled ...") are
    silenced; its errors still show. Ray sets its logger's level when imported, which ``check_executor`` has
    done by now, so the level set here is the one ``ray.init`` logs at."""
    if cfg.executor == "ray":
        from audit.executor import check_executor

        check_executor(cfg)
        if quiet:
            import logging

            logging.getLogger("ray").setLevel(logging.ERROR)


def _check_outputs(out_dir: Path, *, out_flag: str = "--out", junit: tuple[str, Path | None] = ("--junit", None),
                   markdown: tuple[str, Path | None] = ("--markdown", None), pdf: bool = False,
                   inputs: dict[str, Path | None] | None = None) -> None:
    """Every output path checked (and Chromium found, for a PDF) before any work: bad ones exit 2."""
    from reports.outputs import check_output_paths
    from reports.pdf import require_chromium

    check_output_paths(out_dir, dict([junit, markdown]), inputs or {}, out_flag=out_flag)
    if pdf:
        require_chromium()


@contextmanager
def _output_lock(folder: Path, command: str) -> Iterator[None]:
    """Hold the output folder's lock for the whole run; a second run into it exits 2 naming this one."""
    from reports.lock import OutputLock

    lock = OutputLock(folder, command=command).acquire()
    try:
        if lock.took_over is not None:
            _stderr(f"deepaudit: note: took over the stale lock of {lock.took_over.describe()}: that run is gone.")
        yield
    finally:
        lock.release()


def _print_summary(result: Any, written: dict[str, Path], quiet: bool) -> None:
    """The check table (what each check was judged against) on stdout; with a non-zero exit code,
    one line per reason on stderr — also with --quiet, so a CI log always says why; so are the model
    probe's findings (a non-deterministic model)."""
    from reports import _format as fmt

    gate = fmt.gate_lines(result) if result.summary.exit_code else []
    for line in gate:
        _stderr(f"deepaudit: {line}")
    for finding in result.probe.findings if result.probe is not None else []:
        _stderr(f"deepaudit: WARN model probe: {finding}")
    verdict = fmt.verdict(result)
    # the verdict last, as pytest's summary line; once: "nothing was judged" is a gate line already, with its fix
    if result.summary.exit_code and not any(verdict.split(" — ", 1)[-1] in line for line in gate):
        _stderr(f"deepaudit: {verdict}")
    if quiet:
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # Text cells: square brackets in metric groups or summaries are content, not rich markup.
    table = Table(title=Text(f"deepaudit: {fmt.verdict(result)}"), show_lines=False)
    for col in ("check", "status", "judged against", "summary"):
        table.add_column(col, overflow="fold")  # a long metric name folds onto the next line; it is never cut
    for c in result.checks:
        order = sorted(c.thresholds, key=lambda t: (t.passed, fmt.is_judged(t)))  # missed, not judged, then met
        judged = "\n".join(fmt.leveled_judgement(t) for t in order) or fmt.judged_against(c)
        table.add_row(Text(c.id), Text(fmt.status_word(c.status)), Text(judged), Text(c.summary))
    # A CI log is not a terminal: rich would assume 80 columns and squeeze every cell; give it room.
    console = Console() if sys.stdout.isatty() or os.environ.get("COLUMNS") else Console(width=160)
    console.print(table, highlight=False)
    missed = fmt.missed_lines(result)
    if missed:  # plain lines, whole, for a log where the table wraps its cells
        console.print("missed thresholds:\n" + "\n".join(f"  {line}" for line in missed), highlight=False,
                      soft_wrap=True, markup=False)
    for kind, path in written.items():
        console.print(f"{kind}: {path}", highlight=False, soft_wrap=True, markup=False)


def _audit_and_write(cfg: Any, quiet: bool, pdf: str = "config", done: list | None = None) -> int:
    """Run the audit and write its files; ``pdf="try"`` writes the PDF when Chromium is there (the demo).

    ``done`` collects ``(result, written files)`` for a caller that lists several audits.
    """
    from audit.runner import run_audit
    from reports import write_reports

    with _Progress(quiet) as progress:
        result = run_audit(cfg, progress=progress.factory, on_start=progress.check_started,
                           on_check=progress.check_done)
    from reports.pdf import ReportError, find_chromium

    kwargs = dict(html=cfg.output.html, junit=cfg.output.junit, markdown=cfg.output.markdown, card=cfg.output.card)
    try:
        written = write_reports(result, cfg.output.dir, pdf=cfg.output.pdf or (pdf == "try" and bool(find_chromium())),
                                **kwargs)
    except ReportError as exc:
        if pdf != "try" or exc.written is None:
            raise
        _stderr(f"deepaudit: skipped the PDF: {exc}")
        written = exc.written
    for note in (n for check in result.checks for n in check.notes):
        _stderr(f"deepaudit: note: {note}")
    _print_summary(result, written, quiet)
    if done is not None:
        done.append((result, written))
    return result.summary.exit_code


@app.command()
def audit(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config file (see 'deepaudit init')."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Model file or Hugging Face folder."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Evaluation data: .npz, .csv, .parquet, image folder, saved HF dataset."),
    model_class: Optional[str] = typer.Option(None, "--model-class", help="For weights-only files: path/to/file.py:ClassName."),
    model_args: Optional[str] = typer.Option(None, "--model-args", help="Constructor arguments of --model-class as JSON."),
    model_format: Optional[str] = typer.Option(None, "--model-format", help="Model format; default auto."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Allow unpickling the model file (runs code; trusted files only)."),
    input_kind: Optional[str] = typer.Option(None, "--input-kind", help="image, tabular, text or sequence."),
    target: Optional[str] = typer.Option(None, "--target", help="Label array/column (default 'y')."),
    sensitive: Optional[list[str]] = typer.Option(None, "--sensitive", help="Sensitive feature column; repeat for several."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Text column, for text models."),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", help="Audit a seeded random subset of this size."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Reference (training) data, same columns."),
    ood: Optional[Path] = typer.Option(None, "--ood", help="Out-of-distribution data."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for every random choice."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Rows of one model call (default: from the input size, 16 at 3x224x224)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch and BLAS (default: the cores available to the process)."),
    budget: Optional[str] = typer.Option(None, "--budget", help="Sample budget of the expensive checks: quick, standard (default) or thorough; a checks.<id> key wins (docs/config.md, Sample budget)."),
    executor: Optional[str] = typer.Option(None, "--executor", help="local (default) or ray: run independent checks as Ray tasks (pip install 'deepaudit[ray]')."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="With --executor ray: an existing cluster (auto, HOST:PORT, ray://HOST:10001); default: start a local one."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default deepaudit-out)."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Also write JUnit XML here."),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Also write a Markdown summary here."),
    no_html: bool = typer.Option(False, "--no-html", help="Do not write report.html."),
    pdf: Optional[bool] = typer.Option(None, "--pdf/--no-pdf", help="Also write report.pdf (needs headless Chromium)."),
    card: Optional[bool] = typer.Option(None, "--card/--no-card", help="Also write model_card.md and model_card.html."),
    checks: Optional[str] = typer.Option(None, "--checks", help=CHECKS_HELP),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override any config key: --set checks.performance.thresholds.accuracy.min=0.9"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Audit a model: write results.json, report.html and, if asked, JUnit and Markdown."""
    with _translate_errors(skip_pdf="pass --no-pdf"):
        from audit.config import load_config
        from audit.errors import ConfigError

        args: Any = None
        if model_args is not None:
            from audit.config import MAX_YAML_BYTES, check_value_limits

            if len(model_args) > MAX_YAML_BYTES:
                raise ConfigError(f"--model-args is {len(model_args):,} characters, over the limit of {MAX_YAML_BYTES:,}.")
            try:
                args = json.loads(model_args)
            except (ValueError, RecursionError) as exc:
                raise ConfigError(f"--model-args must be a JSON object, e.g. '{{\"n_classes\": 10}}' ({exc}).") from None
            if not isinstance(args, dict):
                raise ConfigError("--model-args must be a JSON object, e.g. '{\"n_classes\": 10}'.")
            check_value_limits(args, "--model-args")
        data_keys = {"target": target, "sensitive_features": sensitive or None, "text_column": text_column,
                     "max_samples": max_samples}
        overrides: dict[str, Any] = {
            "model.path": str(model) if model else None, "model.class": model_class, "model.init_args": args,
            "model.format": model_format, "model.allow_pickle": True if allow_pickle else None,
            "model.input_kind": input_kind, "data.eval.path": str(data) if data else None,
            "device": device, "seed": seed, "batch_size": batch_size, "threads": threads, "budget": budget,
            "executor": executor, "ray.address": ray_address, "output.dir": str(out) if out else None, "output.junit": str(junit) if junit else None,
            "output.markdown": str(markdown) if markdown else None, "output.html": False if no_html else None,
            "output.pdf": pdf, "output.card": card, "select": _selection(checks),
        }
        for key, value in data_keys.items():
            overrides[f"data.eval.{key}"] = value
        for role, path in (("reference", reference), ("ood", ood)):
            if path is not None:
                overrides[f"data.{role}.path"] = str(path)
                for key in ("target", "sensitive_features", "text_column"):
                    overrides[f"data.{role}.{key}"] = data_keys[key]
        cfg = load_config(config, overrides, set_)
        _require_executor(cfg, quiet)
        _check_outputs(cfg.output.dir, out_flag="--out" if out else "output.dir",
                       junit=("--junit" if junit else "output.junit", cfg.output.junit),
                       markdown=("--markdown" if markdown else "output.markdown", cfg.output.markdown),
                       pdf=cfg.output.pdf, inputs=_audit_inputs(cfg, config))
        with _output_lock(cfg.output.dir, "deepaudit audit"):
            code = _audit_and_write(cfg, quiet)
    raise typer.Exit(code)


@app.command()
def demo(
    out: Path = typer.Option(Path("deepaudit-demo"), "--out", "-o", help="Output folder."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    seed: int = typer.Option(0, "--seed", help="Seed for training and the audit."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch and BLAS (default: the cores available to the process)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Where trained demo models are kept (default ~/.cache/deepaudit)."),
    only: Optional[str] = typer.Option(None, "--only", help="Audit only these demo models: comma-separated digits, arrests, tweets."),
    checks: Optional[str] = typer.Option(None, "--checks", help=CHECKS_HELP),
    budget: Optional[str] = typer.Option(None, "--budget", help="Sample budget of every demo audit: quick, standard or thorough (the demo's own check settings win)."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a config key of every demo audit, e.g. --set energy.track=false"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Train small models on bundled real data (an image, a tabular and a text model), audit each and
    write its full report, plus index.html linking them. Exit code: the worst of the audits."""
    with _translate_errors():
        from audit.demo import demo_threads, parse_only

        names = parse_only(only)
        selection = _selection(checks)
        if budget is not None:
            from audit.config import validate_key

            validate_key("budget", budget, "--budget")
        sets = [*(set_ or []), *([f"threads={threads}"] if threads is not None else []),
                *([f"budget={budget}"] if budget is not None else []),
                *([f"select={json.dumps(selection)}"] if selection is not None else [])]
        demo_threads(sets)  # bad values exit 2 before any work; training runs with the audit's threads
        _check_outputs(out)
        with _output_lock(out, "deepaudit demo"):
            code, index = _demo_audits(names, out, device, seed, cache, sets, quiet)
        print(f"index: {index.resolve()}")
    raise typer.Exit(code)


def _demo_audits(names: list[str], out: Path, device: str, seed: int, cache: Path | None, set_: list[str] | None,
                 quiet: bool) -> tuple[int, Path]:
    """Train (or reuse) and audit each demo model, write its reports and the index; the worst exit code."""
    from audit.demo import DEMO_MODELS, demo_config
    from reports.html import render_index
    from reports.io import atomic_write_text

    progress = _Progress(quiet)
    code = EXIT_OK
    done: list = []
    entries = []
    for name in names:
        recipe, description = DEMO_MODELS[name]
        progress.step(f"deepaudit demo [{name}]: training (or reusing) {recipe}: {description} ...")
        cfg = demo_config(out_dir=out / name, name=name, device=device, seed=seed, cache_dir=cache, sets=set_)
        code = max(code, _audit_and_write(cfg, quiet, pdf="try", done=done))
        result, written = done[-1]
        files = [(label, f"{name}/{written[key].name}") for key, label in
                 (("html", "report"), ("pdf", "PDF"), ("card_html", "model card"), ("json", "results.json"))
                 if key in written]
        entries.append({"name": name, "description": description, "href": f"{name}/report.html",
                        "result": result, "files": files})
    index = out / "index.html"
    atomic_write_text(index, render_index("deepaudit demo", entries))
    return code, index


@app.command()
def init(
    path: Path = typer.Argument(Path("deepaudit.yaml"), help="Where to write the starter config."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a commented starter config."""
    with _translate_errors():
        from audit.config import starter_config
        from audit.errors import InputError
        from reports.io import atomic_write_text

        if path.exists() and not force:
            raise InputError(f"{path} exists; pass --force to overwrite it.")
        atomic_write_text(path, starter_config())
        print(f"wrote {path}; edit model.path and data.eval.path, then run: deepaudit audit --config {path}")


@app.command()
def report(
    results: Path = typer.Argument(..., help="A results.json written by 'deepaudit audit'."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: the folder of RESULTS)."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Also write JUnit XML here."),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Also write a Markdown summary here."),
    format_: Optional[list[str]] = typer.Option(
        None, "--format", "-f", help="What to render: html, pdf, md, junit or card; repeat for several. "
        "Default: html (plus --junit/--markdown where given)."),
) -> None:
    """Re-render reports from a results.json, without running any model.

    The files go next to RESULTS unless --out names another folder; a folder holding another
    report's files gets the new set whole (files of the other report that the new set does not
    write are removed), never a mix."""
    with _translate_errors(skip_pdf="drop pdf from --format"):
        from audit.errors import InputError
        from reports import write_reports

        result = _load_results(results)
        formats = set(format_ or ["html"])
        unknown = formats - {"html", "pdf", "md", "junit", "card"}
        if unknown:
            raise InputError(f"--format must be html, pdf, md, junit or card; got {', '.join(sorted(unknown))}.")
        out_flag = "--out" if out is not None else "the output folder (that of the results file; --out picks another)"
        out = out if out is not None else results.parent
        if "junit" in formats and junit is None:
            junit = out / "junit.xml"
        if "md" in formats and markdown is None:
            markdown = out / "summary.md"
        _check_outputs(out, out_flag=out_flag, junit=("--junit", junit), markdown=("--markdown", markdown),
                       pdf="pdf" in formats, inputs={"results": results})
        with _output_lock(out, "deepaudit report"):
            written = write_reports(result, out, html="html" in formats, junit=junit, markdown=markdown,
                                    pdf="pdf" in formats, card="card" in formats)
        for kind, p in written.items():
            print(f"{kind}: {p}")


@app.command()
def compare(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config of the base audit."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Base model (if not in the config)."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Evaluation data (if not in the config)."),
    variant: Optional[list[str]] = typer.Option(None, "--variant", help="Variant of the base to build and audit, e.g. int8_dynamic, pruned:0.5; repeat."),
    with_: Optional[list[Path]] = typer.Option(None, "--with", help="Another model file to audit beside the base; repeat."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch and BLAS (default: the cores available to the process)."),
    budget: Optional[str] = typer.Option(None, "--budget", help="Sample budget of the expensive checks: quick, standard (default) or thorough; a checks.<id> key wins (docs/config.md, Sample budget)."),
    executor: Optional[str] = typer.Option(None, "--executor", help="local (default) or ray: run independent checks as Ray tasks (pip install 'deepaudit[ray]')."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="With --executor ray: an existing cluster (auto, HOST:PORT, ray://HOST:10001); default: start a local one."),
    out: Path = typer.Option(Path("deepaudit-compare"), "--out", "-o", help="Output folder."),
    checks: Optional[str] = typer.Option(None, "--checks", help=CHECKS_HELP),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override any config key."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Audit a base model and its variants (or other model files) side by side."""
    with _translate_errors():
        from audit.compare import run_compare
        from audit.config import load_config
        from reports.compare import render_compare_table, write_comparison

        overrides = {"model.path": str(model) if model else None, "data.eval.path": str(data) if data else None,
                     "device": device, "threads": threads, "budget": budget, "executor": executor,
                     "ray.address": ray_address,
                     "select": _selection(checks)}
        cfg = load_config(config, overrides, set_)
        _require_executor(cfg, quiet)
        inputs = _audit_inputs(cfg, config)
        inputs.update({f"--with {p}": p for p in with_ or []})
        _check_outputs(out, inputs=inputs)
        with _output_lock(out, "deepaudit compare"), _Progress(quiet) as progress:
            comparison = run_compare(cfg, variants=variant or [], models=with_ or [], progress=progress.factory,
                                     on_model=lambda e: progress.step(f"  audited {e.label}: {e.result.summary.status.upper()}"),
                                     on_start=progress.check_started, on_check=progress.check_done)
            written = write_comparison(comparison, out)
        if not quiet:
            print(render_compare_table(comparison))
        for kind, path in written.items():
            print(f"{kind}: {path}")
        code = max(e.result.summary.exit_code for e in comparison.entries)
    raise typer.Exit(code)


@app.command("checks")
def checks_command(
    as_json: bool = typer.Option(False, "--json", help="Print the list as JSON."),
) -> None:
    """List the checks: id, title, what each needs, the input kinds it applies to and what it judges by default."""
    with _translate_errors():
        from audit.registry import describe_checks

        rows = describe_checks()
        if as_json:
            print(json.dumps(rows, indent=2))
            return
        from audit.registry import INPUT_KINDS, NEEDS

        def words(items: Any) -> str:
            return ", ".join(items) or "—"

        table = [("id", "title", "needs", "uses when there", "inputs", "judged by default")]
        for r in rows:
            kinds = "any" if set(r["input_kinds"]) == set(INPUT_KINDS) else words(r["input_kinds"])
            defaults = words(f"{t['metric']} {_bound_text(t)} ({t['level']})" for t in r["default_thresholds"])
            table.append((r["id"], r["title"], words(r["needs"]), words(r["uses"]), kinds,
                          defaults if r["default_thresholds"] else "nothing: measured, not judged"))
        widths = [max(len(row[i]) for row in table) for i in range(5)]
        for row in table:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[5])
        print("\nneeds: the check is skipped (with the reason) without it; uses: used when there, done without otherwise.")
        for key, text in NEEDS.items():
            print(f"  {key:<19} {text}")
        print("Run a few with --checks ID,ID (audit, compare, demo) or 'select: [ID, ...]' in the config; set "
              "checks.<id>.thresholds.<metric> to judge a metric (docs/config.md lists every metric).")


def _bound_text(threshold: dict[str, Any]) -> str:
    parts = [f"≥ {threshold['min']:g}" if threshold["min"] is not None else "",
             f"≤ {threshold['max']:g}" if threshold["max"] is not None else ""]
    return " and ".join(p for p in parts if p)


models_app = typer.Typer(
    help="The model zoo: list registered architectures, train recipes on bundled real data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@models_app.command("list")
def models_list(
    pattern: str = typer.Argument("*", help="Shell-style pattern on model names, e.g. 'res*'."),
) -> None:
    """List registered models (name, family, input kind, parameters) and the training recipes."""
    with _translate_errors():
        from models.architectures.catalog import describe_models
        from models.recipes import RECIPES

        rows = describe_models(pattern)
        if not rows:
            raise typer.Exit(EXIT_OK)
        print(f"{'name':<13} {'family':<19} {'input':<8} {'params':>11}  attention")
        for r in rows:
            print(f"{r.name:<13} {r.family:<19} {r.input_kind:<8} {r.n_params:>11,}  {'yes' if r.has_attention else 'no'}")
        names = {r.name for r in rows}
        recipes = [rc for rc in RECIPES.values() if rc.architecture in names]
        if recipes:
            print("\nrecipes (deepaudit models train NAME --out DIR):")
            for rc in sorted(recipes, key=lambda rc: rc.name):
                print(f"  {rc.name:<20} {rc.description}")
        from models.variants import VARIANTS

        print("\nvariants (deepaudit compare --variant SPEC; parameters as NAME:key=value,...):")
        for v in VARIANTS.values():
            params = ", ".join(f"{k}={val}" for k, val in v.defaults.items())
            where = "/".join(v.devices)
            print(f"  {v.name:<20} {v.description}{f' ({params})' if params else ''}; runs on {where}")


@models_app.command("train")
def models_train(
    recipe: str = typer.Argument(..., help="Recipe name; see 'deepaudit models list'."),
    out: Path = typer.Option(..., "--out", help="Folder for model.safetensors, model.json and the test split."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Training epochs (default: the recipe's)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split, the initialisation and the batch order."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto."),
    n_samples: Optional[int] = typer.Option(None, "--n-samples", min=1, help="Train/test on a stratified subsample."),
    force: bool = typer.Option(False, "--force", help="Train again even when a cached result matches."),
) -> None:
    """Train a recipe on real data shipped in a PyPI package and print the files written."""
    with _translate_errors():
        from models.recipes import train_recipe

        result = train_recipe(recipe, out, epochs=epochs, seed=seed, device=device, n_samples=n_samples, force=force)
        metrics = result.meta.get("metrics", {})
        state = "cached (same recipe parameters)" if result.cached else "trained"
        print(f"{recipe}: {state}; test accuracy {metrics.get('test_accuracy', float('nan')):.4f} "
              f"on {metrics.get('n_test', '?')} samples")
        print(f"weights: {result.weights}")
        print(f"metadata: {result.metadata}")
        print(f"test data: {result.test_data}")


app.add_typer(models_app, name="models")


def _load_results(path: Path) -> Any:
    from audit.results import load_results

    return load_results(path)


@app.command()
def diff(
    base: Path = typer.Argument(..., help="results.json of the reference audit (e.g. the last release)."),
    new: Path = typer.Argument(..., help="results.json of the candidate."),
    tolerance: float = typer.Option(0.01, "--tolerance", help="Largest change of a rate (accuracy, AUROC, a gap) in its bad direction that is not a regression (absolute)."),
    rel_tolerance: float = typer.Option(0.1, "--rel-tolerance", help="The same for sizes, parameters, FLOPs and timings, as a fraction of the base value."),
    include_timing: bool = typer.Option(False, "--include-timing", help="Also judge latency, throughput and energy per inference (this machine's load; off by default)."),
    strict: bool = typer.Option(False, "--strict", help="Count changes in metrics obtained on other samples or by another method as regressions."),
) -> None:
    """List regressions of NEW against BASE; exit 1 on any, 0 on none, 2 for bad files.

    Changes that are not comparable (other n, other method), within the values' noise, or in timing
    are listed below the regressions and do not fail the diff.
    """
    with _translate_errors():
        from audit.errors import InputError
        from reports.diff import diff_results, render_diff_table

        for flag, value in (("--tolerance", tolerance), ("--rel-tolerance", rel_tolerance)):
            if not value >= 0:
                raise InputError(f"{flag} must be a number >= 0; got {value}.")
        report = diff_results(_load_results(base), _load_results(new), tolerance, rel_tolerance=rel_tolerance,
                              include_timing=include_timing, strict=strict)
        print(render_diff_table(report))
        if report.regressions:
            print(f"{len(report.regressions)} regression(s) of {new} against {base}.")
    raise typer.Exit(EXIT_FAIL if report.regressions else EXIT_OK)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
