"""Figures: every kind draws a deterministic inline PNG with alt text; bad data becomes a note."""

from __future__ import annotations

import base64
import re
import struct

import pytest

from audit.results import AuditResult, Figure
from reports import figures as figures_module
from reports.figures import DRAWERS, HTML_FIGURES, render_figure

IMG = re.compile(r'^<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]+)">$')


def _png(html: str) -> bytes:
    match = IMG.match(html)
    assert match, html[:200]
    data = base64.b64decode(match.group(1))
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return data


def _text_chunks(png: bytes) -> list[bytes]:
    chunks, pos = [], 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        kind = png[pos + 4:pos + 8]
        if kind in (b"tEXt", b"iTXt", b"zTXt", b"tIME"):
            chunks.append(kind + b":" + png[pos + 8:pos + 8 + length])
        pos += 12 + length
    return chunks


@pytest.fixture(scope="module")
def figures(audit_result: AuditResult) -> dict[str, Figure]:
    found = {}
    for check in audit_result.checks:
        for item in check.evidence:
            if item.type == "figure" and item.title != "Broken figure":
                found[item.kind] = item
    return found


@pytest.fixture(scope="module")
def rendered(figures: dict[str, Figure]) -> dict[str, str]:
    return {kind: render_figure(fig) for kind, fig in figures.items()}


def test_fixture_covers_every_kind(figures: dict[str, Figure]) -> None:
    kinds = set(Figure.model_fields["kind"].annotation.__args__)
    assert set(figures) == set(DRAWERS) | set(HTML_FIGURES) == kinds and not set(DRAWERS) & set(HTML_FIGURES)


@pytest.mark.parametrize("kind", sorted(DRAWERS))
def test_each_kind_draws_a_deterministic_png(figures: dict[str, Figure], rendered: dict[str, str], kind: str) -> None:
    html = rendered[kind]
    png = _png(html)
    assert render_figure(figures[kind]) == html
    assert not any(b"Software" in c or b"matplotlib" in c or c.startswith(b"tIME") for c in _text_chunks(png))


def test_alt_text_describes_the_data(rendered: dict[str, str]) -> None:
    alt = {k: IMG.match(html).group(2) for k, html in rendered.items() if k in DRAWERS}
    assert "3 classes over 500 samples" in alt["confusion_matrix"]
    assert "485 (97.0%)" in alt["confusion_matrix"]
    assert "4 bins" in alt["reliability_diagram"] and "500 samples" in alt["reliability_diagram"]
    assert "a 0.9000 [0.8600, 0.9300]" in alt["bar"]
    assert "pgd from 0.9100 to 0.4100" in alt["line"]
    assert "2 images" in alt["image_grid"] and "adversarial" in alt["image_grid"]
    assert "3 points, not joined: original model (0.2100, 0.9100); threshold_optimizer (0.0500, 0.8800)" in alt["scatter"]


@pytest.mark.parametrize("kind, data", [
    ("bar", {"labels": ["a", "b"], "values": [1.0]}),
    ("bar", {"values": [1.0]}),
    ("line", {"x": [0, 1], "series": {"s": [1, 2, 3]}}),
    ("line", {"x": [0, 1], "series": []}),
    ("confusion_matrix", {"labels": ["a", "b"], "matrix": [[1, 2]]}),
    ("reliability_diagram", {"bin_edges": [0, 1], "accuracy": [0.5, 0.5], "confidence": [0.5], "count": [1]}),
    ("reliability_diagram", {"bin_edges": [1, 0], "accuracy": [0.5], "confidence": [0.5], "count": [1]}),
    ("image_grid", {"images": []}),
    ("image_grid", {"images": [[1, 2, 3]]}),
    ("image_grid", {"images": [[[0.0]]], "titles": ["a", "b"]}),
])
def test_invalid_data_becomes_an_escaped_note(kind: str, data: dict) -> None:
    html = render_figure(Figure(kind=kind, title="<b>t</b>", data=data))
    assert html.startswith('<p class="figure-error">figure could not be drawn: ')
    assert "<b>" not in html


def test_unknown_kind_and_hostile_text_are_escaped() -> None:
    unknown = Figure.model_construct(type="figure", kind="<pie>", title="t", data={}, caption=None)
    assert render_figure(unknown) == ('<p class="figure-error">figure could not be drawn: '
                                      "ValueError: unknown figure kind &#x27;&lt;pie&gt;&#x27;</p>")
    hostile = Figure(kind="bar", title='"><script>', data={"labels": ['"><img src=x>'], "values": [0.5]})
    html = render_figure(hostile)
    assert IMG.match(html)
    assert "<script>" not in html and "<img src=x>" not in html


def test_image_grid_accepts_channels_first_and_caps_the_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(figures_module, "MAX_GRID_IMAGES", 2)
    chw = [[[0.0, 1.0], [1.0, 0.0]]] * 3  # 3×2×2, channels first
    html = render_figure(Figure(kind="image_grid", title="", data={"images": [chw] * 5}))
    alt = IMG.match(html).group(2)
    assert "5 images (2×2 pixels, colour, the first 2 drawn)" in alt


def test_scatter_draws_points_without_a_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15: the accuracy–disparity plot joined separate mitigation methods with a line; each is a point."""
    drawn = []
    real = figures_module._draw_scatter

    def spy(mpl, data, title):  # noqa: ANN001, ANN202
        alt = real(mpl, data, title)
        drawn.extend(line for ax in mpl.axes for line in ax.get_lines())
        drawn.extend(("text", t.get_text()) for ax in mpl.axes for t in ax.texts)
        return alt

    monkeypatch.setitem(figures_module.DRAWERS, "scatter", spy)
    render_figure(Figure(kind="scatter", title="t", data={"x": [0.1, 0.2, 0.3], "y": [0.9, 0.8, 0.85],
                                                         "labels": ["a", "b", "c"]}))
    lines = [d for d in drawn if not isinstance(d, tuple)]
    assert len(lines) == 3 and all(len(line.get_xdata()) == 1 and line.get_linestyle() == "None" for line in lines)
    assert [d[1] for d in drawn if isinstance(d, tuple)] == ["a", "b", "c"]  # each point labelled


def test_text_highlights_are_escaped_coloured_spans_with_their_numbers() -> None:
    """Issue 15: word highlights were plain `word[+0.888]` text; now shaded spans, the number printed after each
    word (and in its title), hostile words escaped."""
    html = render_figure(Figure(kind="text_highlights", title='"><script>', data={
        "rows": [{"label": "row 1 <i>", "words": ["good", "<script>alert(1)</script>", 'x" onmouseover="y', "bad"],
                  "scores": [0.888, 0.1, 0.0, -0.5]}], "score": "attribution", "signed": True}))
    assert "<script" not in html and "<i>" not in html and 'onmouseover="y' not in html
    assert re.findall(r"<(\w+)", html) == ["div", "p", "span"] + ["span", "sup"] * 4 + ["p"]
    assert '>good<sup>+0.888</sup>' in html and 'title="+0.888"' in html and "<sup>-0.5</sup>" in html
    assert "rgba(27, 110, 32, 0.72)" in html  # the largest |score| darkest, green: supports the prediction
    assert "rgba(179, 38, 30, 0.46)" in html  # -0.5: red, shaded by |score| / 0.888
    assert "green supports the predicted class" in html
    unsigned = render_figure(Figure(kind="text_highlights", title="t", data={
        "rows": [{"label": "r", "words": ["a"], "scores": [0.3]}], "signed": False}))
    assert "rgba(31, 78, 121, 0.72)" in unsigned and "<sup>0.3</sup>" in unsigned and "green" not in unsigned
    broken = render_figure(Figure(kind="text_highlights", title="t", data={
        "rows": [{"label": "r", "words": ["a", "b"], "scores": [0.3]}]}))
    assert broken.startswith('<p class="figure-error">') and "2 words and 1 scores" in broken
