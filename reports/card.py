"""The model card, in Markdown (with Hugging Face YAML front matter) and in HTML.

Sections follow Mitchell et al. (2019) and the Hugging Face model card template; every value comes
from the audit result (its checks, provenance and the config's attestations). Nothing is invented:
a section the audit has no material for says so. ``co2_eq_emissions`` metadata is written only
when an energy check reports training emissions.

References
----------
Mitchell, M. et al. (2019). Model Cards for Model Reporting. FAT* '19, 220-229.
Hugging Face, "Model Cards" (huggingface.co/docs/hub/model-cards), annotated template ``modelcard_template.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from audit.results import AuditResult, Metric

from . import _format as fmt
from .attestations import attestation_rows
from .markdown import escape_md
from .traceability import requirements_for

NOT_MEASURED = "Not measured by this audit."


@dataclass
class CardSection:
    """One section: a title, paragraphs and optional tables (header row, then rows)."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[tuple[list[str], list[list[str]]]] = field(default_factory=list)


def _attested(result: AuditResult, key: str) -> str:
    row = next((r for r in attestation_rows(result) if r.key == key), None)
    if row is None or not row.statement:
        return "Not stated in the config (attestations." + key + ")."
    who = f" — {row.owner}" if row.owner else ""
    when = f", {row.date}" if row.date else ""
    return f"{row.statement} ({row.status}{who}{when}; a human statement, not evidenced by the tool)"


def _training_co2(result: AuditResult) -> Metric | None:
    for check in result.checks:
        if check.category != "energy":
            continue
        for m in check.metrics:
            if m.name in ("training_co2_kg", "training_co2_g") and m.value is not None and m.group is None:
                return m
    return None


def co2_metadata(result: AuditResult) -> dict[str, Any] | None:
    """Hugging Face ``co2_eq_emissions`` (grams) from an energy check's training emissions, else ``None``."""
    m = _training_co2(result)
    if m is None:
        return None
    grams = m.value * 1000 if m.name == "training_co2_kg" else m.value
    return {"emissions": round(float(grams), 6), "source": f"deepaudit: {m.method} ({m.provenance})",
            "training_type": "pre-training"}


def front_matter(result: AuditResult) -> dict[str, Any]:
    """The YAML metadata block of the Markdown card."""
    meta: dict[str, Any] = {"library_name": "deepaudit-audited",
                            "tags": ["deepaudit", f"audit-{result.summary.status}"]}
    co2 = co2_metadata(result)
    if co2 is not None:
        meta["co2_eq_emissions"] = co2
    meta["model-index"] = [{
        "name": " ".join(fmt.clean_text(fmt.model_title(result)).split()),
        "results": [
            {"task": {"type": "classification"}, "metrics": [
                {"type": m.name, "value": m.value, "name": f"{c.id}: {m.name}"}
                for c in result.checks for m in fmt.key_metrics(c) if m.value is not None and m.group is None
            ]}
        ],
    }]
    return meta


def card_sections(result: AuditResult) -> list[CardSection]:
    """The card's content, format-neutral; every string is plain text without control characters
    (escaped by the renderers)."""
    prov = result.provenance
    sections = [
        CardSection("Model details", [
            f"Audited by deepaudit {prov.tool_version} on {prov.finished_at} "
            f"(report {prov.report_id}, overall status {fmt.status_word(result.summary.status)}).",
        ], [(["Detail", "Value"], [[label, text] for label, text in fmt.model_details(result)])]),
        CardSection("Intended use", [
            "Intended purpose: " + _attested(result, "intended_purpose"),
            "Human oversight: " + _attested(result, "human_oversight"),
        ]),
    ]
    groups = sorted({f"{m.group}" for c in result.checks if c.category == "fairness" for m in c.metrics if m.group})
    sections.append(CardSection("Factors", [
        "Groups evaluated by the fairness checks: " + ", ".join(groups) + "." if groups
        else "No sensitive groups were evaluated in this audit."]))
    metric_rows = [[c.id, m.name + (f" ({m.group})" if m.group else ""), fmt.fmt_value(m), fmt.fmt_ci(m), str(m.n),
                    m.provenance] for c in result.checks for m in c.metrics]
    sections.append(CardSection("Metrics", [
        "Each metric with its 95% interval (where computed), sample size and whether it was measured or estimated."],
        [(["Check", "Metric", "Value", "95% CI", "n", "Measured or estimated"], metric_rows)] if metric_rows else []))
    data_rows = [[f.role, f.path, f.sha256, fmt.fmt_num(f.n_samples)] for f in prov.files if f.role.startswith("data")]
    sections.append(CardSection("Evaluation data", [] if data_rows else ["No data files recorded."],
                                [(["Role", "Path", "SHA-256", "n"], data_rows)] if data_rows else []))
    sections.append(CardSection("Training data", [
        "Data governance: " + _attested(result, "data_governance"),
        "The audit did not inspect the training data unless a reference set is listed under Evaluation data."]))
    check_rows = [[c.title, c.id, fmt.status_word(c.status), c.summary,
                   "; ".join(r.id for r in requirements_for(c)) or "not mapped"] for c in result.checks]
    sections.append(CardSection("Quantitative analyses", [fmt.verdict(result)],
                                [(["Check", "Id", "Status", "Result", "Requirements evidenced"], check_rows)]))
    co2 = _training_co2(result)
    inference = next((m for c in result.checks if c.category == "energy" for m in c.metrics
                      if m.name == "co2_per_1000_g" and m.value is not None), None)
    env = [f"Training emissions: {fmt.fmt_value(co2)} ({co2.provenance}; {co2.method})." if co2
           else "Training emissions: not measured (no energy check reported them)."]
    env.append(f"Inference emissions: {fmt.fmt_value(inference)} ({inference.provenance})." if inference
               else "Inference emissions: not measured.")
    sections.append(CardSection("Environmental impact", env))
    sections.append(CardSection("Ethical considerations", [
        "Logging: " + _attested(result, "logging"),
        "Post-market monitoring: " + _attested(result, "post_market_monitoring"),
    ] + [f"{r.title}: {r.statement} ({r.status})" for r in attestation_rows(result)
         if r.key not in ("intended_purpose", "human_oversight", "data_governance", "logging", "post_market_monitoring")
         and r.statement]))
    caveats = [f"{c.id}: {item}" for c in result.checks for item in c.limitations]
    caveats += [f"{c.id} did not run: {c.skip_reason or c.error or 'no reason given'}"
                for c in result.checks if c.status in ("skipped", "error")]
    sections.append(CardSection("Caveats and recommendations", caveats or ["No limitations were stated by the checks."]))
    return [_cleaned(section) for section in sections]


def _cleaned(section: CardSection) -> CardSection:
    """The section without control characters in any string (data and exception text can carry them)."""
    clean = fmt.clean_text
    return CardSection(clean(section.title), [clean(p) for p in section.paragraphs],
                       [([clean(h) for h in header], [[clean(cell) for cell in row] for row in rows])
                        for header, rows in section.tables])


def render_card_markdown(result: AuditResult) -> str:
    """The model card as Markdown with Hugging Face YAML front matter."""
    lines = ["---", yaml.safe_dump(front_matter(result), sort_keys=False, allow_unicode=True).rstrip(), "---", "",
             f"# Model card: {escape_md(fmt.model_title(result))}", ""]
    for section in card_sections(result):
        lines += [f"## {section.title}", ""]
        for p in section.paragraphs:
            lines += [escape_md(p), ""]
        for header, rows in section.tables:
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(escape_md(cell) for cell in row) + " |" for row in rows]
            lines.append("")
    lines.append(f"Generated by deepaudit {escape_md(result.provenance.tool_version)} from results.json "
                 f"(report {escape_md(result.provenance.report_id)}).")
    return "\n".join(lines) + "\n"


def render_card_html(result: AuditResult) -> str:
    """The model card as one self-contained HTML page (same content, autoescaped)."""
    from .html import environment

    return environment().get_template("model_card.html.j2").render(
        result=result, prov=result.provenance, model_path=fmt.clean_text(fmt.model_path(result)),
        model_title=fmt.clean_text(fmt.model_title(result)),
        sections=card_sections(result),
        metadata=yaml.safe_dump(front_matter(result), sort_keys=False, allow_unicode=True))
