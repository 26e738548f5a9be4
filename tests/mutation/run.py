"""Mutation testing of deepaudit's validity-critical modules with mutmut; prints the mutation score per
module and every surviving mutant with its explanation.

    pip install -e '.[dev,mutation]'
    OMP_NUM_THREADS=1 nice -n 10 python tests/mutation/run.py                 # every target
    OMP_NUM_THREADS=1 nice -n 10 python tests/mutation/run.py attacks masking  # some of them
    python tests/mutation/run.py --out tests/mutation/RESULTS.md               # also write the Markdown
    python tests/mutation/run.py --workdir W --report --out RESULTS.md         # report on earlier runs in W

Each target is one module (optionally only some of its functions) and the fast, targeted tests
that pin it. The tree is copied to a scratch directory per target, where mutmut writes its
mutants and its cache, so the checkout is never touched; pass ``--workdir`` to keep the scratch
directories (mutants are always generated and tested afresh).

A mutant is *detected* when the tests fail on it (killed) or hang (timeout). The score is
detected / generated. A survivor is either killed by a new test, or listed in
``tests/mutation/survivors.toml`` with the reason it cannot be (an equivalent mutant: the program
behaves the same). An unexplained survivor is printed as such and makes the exit code 1.

This file is not collected by pytest (its name does not start with ``test_``): mutation testing
is for developers, not for CI.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COPY = ["audit", "models", "reports", "tests", "cli.py", "pyproject.toml"]
DETECTED = {"killed", "timeout", "segfault", "caught by type check"}


@dataclass
class Target:
    path: str
    tests: list[str]
    functions: list[str] = field(default_factory=list)  # empty: every function in the module
    what: str = ""

    @property
    def module(self) -> str:
        return self.path.removesuffix(".py").replace("/", ".")

    def globs(self) -> list[str]:
        if not self.functions:
            return [f"{self.module}.*"]
        out = []
        for f in self.functions:
            if "." in f:  # Class.method
                cls, meth = f.split(".")
                out.append(f"{self.module}.xǁ{cls}ǁ{meth}__mutmut_*")
            else:
                out.append(f"{self.module}.x_{f}__mutmut_*")
        return out


ADV = "tests/audit/checks/test_adversarial.py"
SAFEGUARDS = "tests/audit/checks/test_masking_safeguards.py"
MEMORY = "tests/audit/checks/test_explanations_memory.py"  # explanations.batch_size bounds every model call
TARGETS: dict[str, Target] = {
    "attacks": Target("audit/attacks.py", ["tests/audit/test_attacks.py", ADV, SAFEGUARDS],
                      what="FGSM, PGD (L∞, L2, restarts), projection, random starts, the text character-edit attack"),
    "masking": Target("audit/masking.py", [SAFEGUARDS],
                      what="the five gradient-masking safeguards of the adversarial check"),
    "explain": Target("audit/explain.py",
                      ["tests/audit/checks/test_explanation_sanity.py", "tests/audit/checks/test_explanations.py",
                       f"{MEMORY}::test_chunked_integrated_gradients_and_saliency_equal_one_pass",
                       f"{MEMORY}::test_chunked_integrated_gradients_take_each_inputs_own_baseline",
                       f"{MEMORY}::test_sensitivity_and_infidelity_never_pass_more_than_the_batch",
                       f"{MEMORY}::test_the_check_never_calls_the_model_on_more_than_its_batch_size"],
                      functions=["infidelity", "rank_agreement", "randomized_copy", "integrated_gradients",
                                 "deletion_insertion", "_order"],
                      what="the randomisation sanity check, infidelity, IG and the deletion/insertion curves"),
    "stats": Target("audit/stats.py", ["tests/audit/test_stats_known.py", "tests/audit/test_stats_resampling.py"],
                    what="bootstrap and permutation helpers behind every interval and noise floor"),
    "fairness": Target("audit/fairness/gaps.py",
                       ["tests/audit/test_fairness_gaps.py", "tests/audit/test_stats_resampling.py"],
                       what="the fairness gaps from group counts, their bootstrap and permutation null"),
    "judge": Target("audit/runner.py", ["tests/audit/test_judge.py", "tests/audit/test_judge_known.py"],
                    functions=["judge", "judge_threshold", "_within", "_undefined"],
                    what="threshold judging: a check's status from its thresholds, worst group, not judged"),
    "changes": Target("reports/changes.py",
                      [*(f"tests/reports/test_diff.py::test_{t}" for t in (
                          "metric_kinds", "rates_absolute_costs_relative", "timing_not_judged_unless_asked",
                          "not_comparable_when_the_check_ran_differently",
                          "n_or_method_that_follow_the_models_answers_do_not_excuse_a_regression",
                          "within_noise_judged_from_intervals", "status_worse_only_through_incomparable_metrics_is_a_note",
                          "diff_cli_flags", "diff_rejects_bad_tolerances", "within_noise_reads_each_intervals_own_level",
                          "worse_by_is_absolute_for_rates_and_relative_for_costs",
                          "setup_differs_says_what_ran_differently",
                          "where_two_method_texts_differ_is_shown_from_just_before_the_difference")),
                       "tests/reports/test_exports.py::test_diff_finds_each_kind_of_regression",
                       "tests/reports/test_exports.py::test_diff_cli_exit_codes",
                       "tests/audit/test_compare.py::test_tradeoffs_never_imply_a_saving_that_was_not_measured",
                       "tests/audit/test_compare.py::test_better_is_never_inferred_from_a_method_that_did_not_run"],
                      what="how a metric's change is judged in diff and compare: comparable or not, its kind and "
                           "tolerance, within noise"),
    "summarise": Target("audit/results.py", ["tests/audit/test_judge.py", "tests/audit/test_judge_known.py"],
                        functions=["summarise", "is_judged", "effective_level", "within_noise"],
                        what="the audit's verdict and exit code from the check results"),
}


def mutmut_config(target: Target) -> str:
    tests = ", ".join(f'"{t}"' for t in target.tests)
    top = target.path.split("/")[0]
    also = ", ".join(f'"{p}"' for p in COPY if p not in (top, "tests", "pyproject.toml"))
    return (f'\n\n[tool.mutmut]\nsource_paths = ["{top}"]\nonly_mutate = ["{target.path}"]\n'
            f"also_copy = [{also}]\npytest_add_cli_args_test_selection = [{tests}]\n"
            'pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "no:warnings", "-x", "-q"]\n'
            "use_git_change_detection = false\n")


def prepare(target: Target, workdir: Path) -> Path:
    here = workdir / target.module
    shutil.rmtree(here / "mutants", ignore_errors=True)  # results of other tests or source must not be reused
    here.mkdir(parents=True, exist_ok=True)
    for name in COPY:
        src, dst = ROOT / name, here / name
        if dst.is_dir():
            shutil.rmtree(dst)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, dst)
    (here / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text() + mutmut_config(target))
    return here


def mutmut(here: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONHASHSEED": "0"}
    return subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=here, env=env, capture_output=True, text=True)


_DIFFS = """
import json, sys
from mutmut.__main__ import find_mutant
from mutmut.mutation.diff_apply import get_diff_for_mutant
print(json.dumps({n: get_diff_for_mutant(n, path=find_mutant(n).path) for n in sys.argv[1:]}))
"""


def diffs(here: Path, names: list[str]) -> dict[str, str]:
    """The diff of each mutant, from one process (``mutmut show`` takes one process per mutant)."""
    if not names:
        return {}
    proc = subprocess.run([sys.executable, "-c", _DIFFS, *names], cwd=here, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def function_of(name: str, module: str) -> str:
    rest = name.removeprefix(module + ".").rsplit("__mutmut_", 1)[0]
    return rest.removeprefix("x_") if rest.startswith("x_") else rest.removeprefix("x").strip("ǁ").replace("ǁ", ".")


def load_explanations() -> list[dict]:
    path = Path(__file__).with_name("survivors.toml")
    return tomllib.loads(path.read_text())["survivor"] if path.exists() else []


def explain(target: Target, function: str, diff: str, known: list[dict]) -> str | None:
    added = "\n".join(line[1:] for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++"))
    squashed = re.sub(r"\s+", " ", added)
    for k in known:
        if k["module"] == target.path and k["function"] == function and re.sub(r"\s+", " ", k["mutation"]) in squashed:
            return k["why"]
    return None


def run_target(key: str, target: Target, workdir: Path, children: int, known: list[dict]) -> dict:
    here = prepare(target, workdir)
    start = time.time()
    proc = mutmut(here, "run", "--max-children", str(children), *target.globs())
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise SystemExit(f"mutmut failed on {target.path}:\n{tail}")
    listing = mutmut(here, "results", "--all", "true").stdout
    statuses: dict[str, str] = {}
    for line in listing.splitlines():
        if ":" not in line:
            continue
        name, status = (s.strip() for s in line.rsplit(":", 1))
        if any(fnmatch.fnmatchcase(name, g) for g in target.globs()):
            statuses[name] = status
    survivors = []
    order = sorted(statuses, key=lambda n: (n.rsplit("__mutmut_", 1)[0], int(n.rsplit("_", 1)[1])))
    survived = [n for n in order if statuses[n] not in DETECTED]
    diff_of = diffs(here, survived)
    for name in survived:
        status, diff = statuses[name], diff_of[name].strip()
        function = function_of(name, target.module)
        survivors.append({"name": name, "status": status, "function": function, "diff": diff,
                          "why": explain(target, function, diff, known)})
    total = len(statuses)
    detected = sum(s in DETECTED for s in statuses.values())
    result = {"key": key, "total": total, "detected": detected,
              "killed": sum(s == "killed" for s in statuses.values()),
              "timeout": sum(s == "timeout" for s in statuses.values()),
              "score": detected / total if total else None, "survivors": survivors, "seconds": time.time() - start,
              "blob": blob_of(target.path), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    (workdir / f"{key}.json").write_text(json.dumps(result, indent=1))
    return {**result, "target": target}


def blob_of(path: str) -> str:
    """The git blob id of a file as it is in the checkout (stable across rebases, unlike a commit id)."""
    out = subprocess.run(["git", "hash-object", path], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return out[:10] or "unknown"


def load_saved(key: str, workdir: Path, known: list[dict]) -> dict:
    """A target's last result saved in ``workdir``, its survivors explained again from survivors.toml."""
    path = workdir / f"{key}.json"
    if not path.exists():
        raise SystemExit(f"no saved result for {key!r} in {workdir}: run it first")
    result = json.loads(path.read_text())
    target = TARGETS[key]
    for s in result["survivors"]:
        s["why"] = explain(target, s["function"], s["diff"], known)
    if result["blob"] != blob_of(target.path):
        print(f"warning: {target.path} changed since its mutation run; run {key!r} again", file=sys.stderr)
        result["blob"] += " (the file has changed since: stale)"
    return {**result, "target": target}


def markdown(results: list[dict], command: str) -> str:
    lines = ["# Mutation testing results", "",
             f"Generated by `{command}` with mutmut, one row per target ('run on': the git blob id of the "
             "mutated file, `git hash-object FILE`, and when). A mutant is detected when the target's tests fail (killed) or "
             "hang (timeout) on it; score = detected / generated. Every survivor is listed with why it "
             "survives; the explanations live in `tests/mutation/survivors.toml`.", "",
             "| module | what | functions | tests | mutants | killed | timeout | survived | score | run on |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in results:
        t = r["target"]
        lines.append(f"| `{t.path}` | {t.what} | {', '.join(t.functions) or 'all'} | "
                     f"{'<br>'.join(f'`{x}`' for x in t.tests)} | {r['total']} | {r['killed']} | {r['timeout']} | "
                     f"{len(r['survivors'])} | {r['score']:.1%} | blob {r['blob']}, {r['date']} |")
    total = sum(r["total"] for r in results)
    detected = sum(r["detected"] for r in results)
    lines += ["", f"Overall: {detected} of {total} mutants detected ({detected / max(total, 1):.1%}).", ""]
    for r in results:
        if not r["survivors"]:
            continue
        lines += [f"## Survivors in `{r['target'].path}`", ""]
        for s in r["survivors"]:
            lines += [f"### `{s['name']}` ({s['status']})", "", f"**Why:** {s['why'] or 'UNEXPLAINED'}", "",
                      "```diff", s["diff"], "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", help=f"targets to run, of {', '.join(TARGETS)} (default: all)")
    parser.add_argument("--out", type=Path, help="also write the results as Markdown to this file")
    parser.add_argument("--workdir", type=Path, help="scratch directory kept between runs (default: a temporary one)")
    parser.add_argument("--max-children", type=int, default=1, help="mutants tested in parallel (default 1)")
    parser.add_argument("--report", action="store_true",
                        help="run nothing: write the report from the results saved in --workdir by earlier runs")
    args = parser.parse_args(argv)
    try:
        import mutmut  # noqa: F401
    except ImportError:
        print("mutmut is not installed: pip install -e '.[mutation]'", file=sys.stderr)
        return 2
    keys = args.targets or list(TARGETS)
    unknown = [k for k in keys if k not in TARGETS]
    if unknown:
        print(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    known = load_explanations()
    if args.report and not args.workdir:
        print("--report reads the results saved in --workdir: give it", file=sys.stderr)
        return 2
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="deepaudit-mutation-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    for key in keys:
        r = (load_saved(key, workdir.resolve(), known) if args.report
             else run_target(key, TARGETS[key], workdir.resolve(), args.max_children, known))
        results.append(r)
        print(f"{r['target'].path}: {r['detected']}/{r['total']} detected ({r['score']:.1%}), "
              f"{len(r['survivors'])} survived, {r['seconds']:.0f} s", flush=True)
        for s in r["survivors"]:
            print(f"  {s['name']} ({s['status']}): {s['why'] or 'UNEXPLAINED'}")
    command = "python tests/mutation/run.py" + (" " + " ".join(args.targets) if args.targets else "")
    if args.report:
        command = "python tests/mutation/run.py TARGET... --workdir W` runs, then `run.py --workdir W --report"
    if args.out:
        args.out.write_text(markdown(results, command))
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if any(s["why"] is None for r in results for s in r["survivors"]) else 0


if __name__ == "__main__":
    sys.exit(main())
