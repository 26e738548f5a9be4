"""Figures: every kind draws a deterministic inline PNG with alt text; bad data becomes a note."""

from __future__ import annotations

import base64
import re
import struct

import pytest

from audit.results import AuditResult, Figure
from reports import figures as figures_module
from reports.figures import DRAWERS, render_figure

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
    assert set(figures) == set(DRAWERS) == set(Figure.model_fields["kind"].annotation.__args__)


@pytest.mark.parametrize("kind", sorted(DRAWERS))
def test_each_kind_draws_a_deterministic_png(figures: dict[str, Figure], rendered: dict[str, str], kind: str) -> None:
    html = rendered[kind]
    png = _png(html)
    assert render_figure(figures[kind]) == html
    assert not any(b"Software" in c or b"matplotlib" in c or c.startswith(b"tIME") for c in _text_chunks(png))


def test_alt_text_describes_the_data(rendered: dict[str, str]) -> None:
    alt = {k: IMG.match(html).group(2) for k, html in rendered.items()}
    assert "3 classes over 500 samples" in alt["confusion_matrix"]
    assert "485 (97.0%)" in alt["confusion_matrix"]
    assert "4 bins" in alt["reliability_diagram"] and "500 samples" in alt["reliability_diagram"]
    assert "a 0.9000 [0.8600, 0.9300]" in alt["bar"]
    assert "pgd from 0.9100 to 0.4100" in alt["line"]
    assert "2 images" in alt["image_grid"] and "adversarial" in alt["image_grid"]


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
