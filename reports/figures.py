"""Figures: draw a :class:`~audit.results.Figure`'s data as an inline PNG.

A figure carries data, never pixels; this module turns it into an ``<img>`` with a ``data:`` URI
and an alt text that states what the figure shows, so the HTML report stays one self-contained
file that works offline and is readable with a screen reader. Drawing uses matplotlib's Agg
canvas directly (no pyplot, no global state) with the default style, and PNGs carry no
software or time metadata, so the same data always gives the same bytes.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Sequence
from html import escape
from typing import Any

import numpy as np
from matplotlib import rc_context
from matplotlib import style as mpl_style
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure

from audit.results import Figure

from ._format import fmt_num

#: Most images an ``image_grid`` draws; the alt text says when more were given.
MAX_GRID_IMAGES = 36
#: Confusion matrices with at most this many classes get their counts written in the cells.
MAX_ANNOTATED_CLASSES = 25
#: Items listed by name in an alt text before it summarises the rest.
_ALT_ITEMS = 12
#: Drawn at 5 x 3.125 inches and 128 dpi: 640 x 400 pixels on screen, and text that stays legible when the
#: printed report sets two figures side by side (9 cm wide each).
_DPI = 128
_SIZE = (5.0, 3.125)
_RC = {"font.size": 9.0, "axes.titlesize": 10.0, "axes.labelsize": 9.0, "figure.dpi": _DPI,
       "savefig.dpi": _DPI, "font.family": "DejaVu Sans"}

_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
_DASHES = ("-", "--", ":", "-.")

Drawer = Callable[[MplFigure, dict[str, Any], str], str]


def render_figure(fig: Figure) -> str:
    """Render a figure as an ``<img>`` tag with an inline PNG and a descriptive alt text.

    Parameters
    ----------
    fig : Figure
        The figure evidence; ``fig.kind`` picks the drawer, ``fig.data`` holds what it draws
        (see the module ``DRAWERS`` table and each ``_draw_*`` function for the expected keys).

    Returns
    -------
    str
        ``<img src="data:image/png;base64,..." alt="...">``, or, when the kind is unknown or the
        data cannot be drawn, ``<p class="figure-error">figure could not be drawn: ...</p>``.
        Every text taken from the figure is HTML-escaped.
    """
    try:
        if fig.kind in HTML_FIGURES:  # drawn as text, not pixels
            if not isinstance(fig.data, dict):
                raise TypeError("figure data must be a mapping")
            return HTML_FIGURES[fig.kind](fig.data, str(fig.title))
        drawer = DRAWERS.get(fig.kind)
        if drawer is None:
            raise ValueError(f"unknown figure kind {fig.kind!r}")
        if not isinstance(fig.data, dict):
            raise TypeError("figure data must be a mapping")
        png, alt = _draw(drawer, fig.data, str(fig.title))
    except Exception as exc:  # noqa: BLE001 - any bad figure data must become a note, not a crash
        message = f"{type(exc).__name__}: {exc}"
        if len(message) > 300:
            message = message[:299] + "…"
        return f'<p class="figure-error">figure could not be drawn: {escape(message)}</p>'
    b64 = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{b64}" alt="{escape(alt, quote=True)}">'


def _draw(drawer: Drawer, data: dict[str, Any], title: str) -> tuple[bytes, str]:
    """Run ``drawer`` on a fresh Agg figure under a fixed style; return the PNG bytes and alt text."""
    with mpl_style.context("default"), rc_context(_RC):
        mpl = MplFigure(figsize=_SIZE, layout="constrained")
        FigureCanvasAgg(mpl)
        alt = drawer(mpl, data, title)
        buf = io.BytesIO()
        mpl.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue(), alt


# --- data validation -------------------------------------------------------------------------


def _floats(data: dict[str, Any], key: str, length: int | None = None) -> np.ndarray:
    """``data[key]`` as a 1-D float array (``None`` becomes NaN), of ``length`` items if given."""
    if key not in data:
        raise KeyError(f"missing {key!r}")
    arr = np.asarray(data[key], dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{key!r} must be a flat list of numbers")
    if length is not None and arr.size != length:
        raise ValueError(f"{key!r} has {arr.size} items, expected {length}")
    return arr


def _labels(data: dict[str, Any], key: str) -> list[str]:
    value = data.get(key)
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise ValueError(f"{key!r} must be a list")
    return [str(v) for v in value]


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    return "" if value is None else str(value)


def _listing(items: Sequence[str]) -> str:
    shown = "; ".join(items[:_ALT_ITEMS])
    return shown + (f"; and {len(items) - _ALT_ITEMS} more" if len(items) > _ALT_ITEMS else "")


def _titled(kind: str, title: str) -> str:
    return f"{kind} “{title}”" if title else kind


# --- drawers -------------------------------------------------------------------------------


def _draw_reliability(mpl: MplFigure, data: dict[str, Any], title: str) -> str:
    """Accuracy per confidence bin against the diagonal, with a count histogram beneath.

    Keys: ``bin_edges`` (n + 1 floats), ``accuracy``, ``confidence`` (n floats, ``None`` for empty
    bins) and ``count`` (n ints).
    """
    edges = _floats(data, "bin_edges")
    if edges.size < 2 or not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
        raise ValueError("'bin_edges' must be at least two increasing finite numbers")
    n = edges.size - 1
    acc = _floats(data, "accuracy", n)
    conf = _floats(data, "confidence", n)
    count = _floats(data, "count", n)
    centres, widths = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    mpl.set_size_inches(_SIZE[0], _SIZE[0] * 0.8)
    top, bottom = mpl.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    filled = np.isfinite(acc)
    top.bar(centres[filled], acc[filled], width=widths[filled], color="#4c72b0", edgecolor="#1f3b63",
            label="accuracy in bin")
    ok = np.isfinite(conf)
    top.plot(centres[ok], conf[ok], "o", color="#dd8452", markersize=4, label="mean confidence in bin")
    top.plot([edges[0], edges[-1]], [edges[0], edges[-1]], "--", color="#333333", linewidth=1,
             label="perfect calibration")
    top.set_ylabel("accuracy")
    top.set_ylim(0, max(1.0, float(np.nanmax(acc, initial=0.0))))
    top.legend(loc="upper left", fontsize=8)
    if title:
        top.set_title(title)
    bottom.bar(centres, np.nan_to_num(count), width=widths, color="#8c8c8c", edgecolor="#444444")
    bottom.set_ylabel("samples")
    bottom.set_xlabel("confidence")
    bottom.set_xlim(edges[0], edges[-1])
    total = int(np.nansum(count))
    both = filled & ok
    alt = (f"{_titled('Reliability diagram', title)}: bars of accuracy per confidence bin against the "
           f"diagonal of perfect calibration, {n} bins from {fmt_num(float(edges[0]))} to "
           f"{fmt_num(float(edges[-1]))}, {int(filled.sum())} of them non-empty, {total} samples in all")
    if both.any():
        gaps = np.abs(acc - conf)
        gaps[~both] = -1
        i = int(np.argmax(gaps))
        alt += (f"; the largest gap is in bin {fmt_num(float(edges[i]))}–{fmt_num(float(edges[i + 1]))}: "
                f"accuracy {fmt_num(float(acc[i]))} at mean confidence {fmt_num(float(conf[i]))}")
    return alt + ". A histogram of samples per bin is drawn beneath."


def _draw_confusion(mpl: MplFigure, data: dict[str, Any], title: str) -> str:
    """Heatmap of counts, rows the true class and columns the predicted one.

    Keys: ``labels`` (K names) and ``matrix`` (K × K ints).
    """
    labels = _labels(data, "labels")
    k = len(labels)
    matrix = np.asarray(data.get("matrix"), dtype=float)
    if k == 0 or matrix.shape != (k, k):
        raise ValueError(f"'matrix' must be {k} × {k} to match 'labels', got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise ValueError("'matrix' must hold finite counts")
    side = float(min(max(3.5, 0.35 * k + 2.0), 9.5))
    mpl.set_size_inches(side + 1.0, side)
    ax = mpl.subplots()
    image = ax.imshow(matrix, cmap="Blues", interpolation="nearest", aspect="equal")
    mpl.colorbar(image, ax=ax, label="samples", shrink=0.8)
    ax.set_xticks(range(k), labels, rotation=45 if k > 3 else 0, ha="right" if k > 3 else "center",
                  fontsize=8 if k <= 20 else 6)
    ax.set_yticks(range(k), labels, fontsize=8 if k <= 20 else 6)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if title:
        ax.set_title(title)
    peak = float(matrix.max()) if matrix.size else 0.0
    if k <= MAX_ANNOTATED_CLASSES:
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, fmt_num(int(value)) if float(value).is_integer() else fmt_num(float(value)),
                    ha="center", va="center", fontsize=8 if k <= 12 else 6,
                    color="white" if peak and value > peak / 2 else "black")
    total = float(matrix.sum())
    diag = float(np.trace(matrix))
    share = f" ({diag / total:.1%})" if total else ""
    alt = (f"{_titled('Confusion matrix', title)} of {k} classes over {fmt_num(int(total))} samples, rows the "
           f"true class and columns the predicted class: {fmt_num(int(diag))}{share} lie on the diagonal")
    off = matrix.copy()
    np.fill_diagonal(off, -1)
    if k > 1 and off.max() > 0:
        i, j = np.unravel_index(int(np.argmax(off)), off.shape)
        alt += (f"; the largest confusion is {fmt_num(int(off[i, j]))} samples of true class {labels[i]} "
                f"predicted as {labels[j]}")
    return alt + "."


def _draw_bar(mpl: MplFigure, data: dict[str, Any], title: str) -> str:
    """Bars with optional interval whiskers.

    Keys: ``labels``, ``values``; optional ``ci_low``, ``ci_high``, ``xlabel``, ``ylabel``.
    """
    labels = _labels(data, "labels")
    values = _floats(data, "values", len(labels))
    if not labels:
        raise ValueError("'labels' is empty")
    has_ci = data.get("ci_low") is not None and data.get("ci_high") is not None
    ax = mpl.subplots()
    x = np.arange(len(labels))
    yerr = None
    if has_ci:
        low, high = _floats(data, "ci_low", len(labels)), _floats(data, "ci_high", len(labels))
        yerr = np.nan_to_num(np.vstack([values - low, high - values]).clip(min=0))
    ax.bar(x, np.nan_to_num(values), yerr=yerr, capsize=3 if has_ci else 0, color="#4c72b0",
           edgecolor="#1f3b63", error_kw={"ecolor": "#222222", "linewidth": 1})
    rotate = len(labels) > 6 or max(len(s) for s in labels) > 10
    ax.set_xticks(x, labels, rotation=45 if rotate else 0, ha="right" if rotate else "center", fontsize=8)
    xlabel, ylabel = _text(data, "xlabel"), _text(data, "ylabel")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    items = []
    for i, label in enumerate(labels):
        item = f"{label} {fmt_num(float(values[i]))}"
        if has_ci:
            item += f" [{fmt_num(float(low[i]))}, {fmt_num(float(high[i]))}]"
        items.append(item)
    what = f" of {ylabel}" if ylabel else ""
    ci = " with interval whiskers" if has_ci else ""
    return f"{_titled('Bar chart', title)}{what} for {len(labels)} bars{ci}: {_listing(items)}."


def _draw_line(mpl: MplFigure, data: dict[str, Any], title: str) -> str:
    """One line per series over a shared x.

    Keys: ``x``, ``series`` (name → list of y, one per x), ``xlabel``, ``ylabel``.
    """
    x = _floats(data, "x")
    series = data.get("series")
    if not isinstance(series, dict) or not series:
        raise ValueError("'series' must be a non-empty mapping of name to values")
    ax = mpl.subplots()
    items = []
    for i, (name, ys) in enumerate(series.items()):
        y = np.asarray(ys, dtype=float)
        if y.shape != x.shape:
            raise ValueError(f"series {str(name)!r} has {y.size} values for {x.size} x values")
        # Marker and dash differ per series too, so the lines stay apart without colour.
        ax.plot(x, y, marker=_MARKERS[i % len(_MARKERS)], linestyle=_DASHES[i % len(_DASHES)], markersize=4,
                linewidth=1.5, label=str(name))
        finite = y[np.isfinite(y)]
        span = (f"from {fmt_num(float(finite[0]))} to {fmt_num(float(finite[-1]))}" if finite.size
                else "no finite values")
        items.append(f"{name} {span}")
    xlabel, ylabel = _text(data, "xlabel"), _text(data, "ylabel")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, linewidth=0.5, alpha=0.5)
    if len(series) > 1 or str(next(iter(series))):
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    against = f" of {ylabel or 'y'} against {xlabel or 'x'}"
    span = f"x from {fmt_num(float(x[0]))} to {fmt_num(float(x[-1]))}" if x.size else "no points"
    return f"{_titled('Line chart', title)}{against}, {len(series)} series, {span}: {_listing(items)}."


def _draw_scatter(mpl: MplFigure, data: dict[str, Any], title: str) -> str:
    """One labelled point per item, no line between them (the items are separate models or methods, not
    samples of a curve).

    Keys: ``x``, ``y``, ``labels`` (one name per point); optional ``xlabel``, ``ylabel``.
    """
    labels = _labels(data, "labels")
    if not labels:
        raise ValueError("'labels' is empty")
    x, y = _floats(data, "x", len(labels)), _floats(data, "y", len(labels))
    ax = mpl.subplots()
    items = []
    for i, label in enumerate(labels):
        ax.plot(x[i], y[i], marker=_MARKERS[i % len(_MARKERS)], linestyle="none", markersize=7, label=label)
        if np.isfinite(x[i]) and np.isfinite(y[i]):
            ax.annotate(label, (x[i], y[i]), textcoords="offset points", xytext=(5, 4), fontsize=7)
        items.append(f"{label} ({fmt_num(float(x[i]))}, {fmt_num(float(y[i]))})")
    xlabel, ylabel = _text(data, "xlabel"), _text(data, "ylabel")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, linewidth=0.5, alpha=0.5)
    ax.margins(0.15)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title)
    axes = f" of {ylabel or 'y'} against {xlabel or 'x'}"
    return f"{_titled('Scatter plot', title)}{axes}, {len(labels)} points, not joined: {_listing(items)}."


def _as_image(raw: Any, index: int) -> np.ndarray:
    img = np.asarray(raw, dtype=float)
    if img.ndim == 3 and img.shape[-1] not in (1, 3, 4) and img.shape[0] in (1, 3, 4):
        img = np.moveaxis(img, 0, -1)  # channels-first, as tensors come
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[-1] not in (3, 4)) or 0 in img.shape:
        raise ValueError(f"image {index} has shape {img.shape}; expected H×W or H×W×C with C in 1, 3, 4")
    return np.clip(np.nan_to_num(img), 0.0, 1.0)


def _draw_image_grid(mpl: MplFigure, data: dict[str, Any], title: str) -> str:
    """A grid of images in [0, 1] with optional titles.

    Keys: ``images`` (list of H×W or H×W×C arrays), optional ``titles`` (one per image).
    """
    raw = data.get("images")
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)) or not raw:
        raise ValueError("'images' must be a non-empty list")
    given = len(raw)
    images = [_as_image(r, i) for i, r in enumerate(raw[:MAX_GRID_IMAGES])]
    titles = _labels(data, "titles") if data.get("titles") is not None else []
    if titles and len(titles) != given:
        raise ValueError(f"{len(titles)} titles for {given} images")
    cols = min(len(images), 6)
    rows = -(-len(images) // cols)
    mpl.set_size_inches(1.6 * cols + 0.4, 1.75 * rows + (0.4 if title else 0.1))
    axes = np.atleast_1d(mpl.subplots(rows, cols, squeeze=False)).ravel()
    for i, ax in enumerate(axes):
        if i >= len(images):
            ax.set_axis_off()
        else:
            img = images[i]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
            if titles:
                ax.set_title(titles[i], fontsize=7)
    if title:
        mpl.suptitle(title)
    shape = "×".join(str(s) for s in images[0].shape[:2])
    facts = [f"{shape} pixels", "greyscale" if images[0].ndim == 2 else "colour"]
    if given > len(images):
        facts.append(f"the first {len(images)} drawn")
    alt = f"{_titled('Image grid', title)} of {given} images ({', '.join(facts)})"
    if titles:
        alt += f": {_listing(titles)}"
    return alt + "."


#: Figure kind → drawer. Each drawer draws on the given matplotlib figure and returns the alt text.
DRAWERS: dict[str, Drawer] = {
    "reliability_diagram": _draw_reliability,
    "confusion_matrix": _draw_confusion,
    "bar": _draw_bar,
    "line": _draw_line,
    "scatter": _draw_scatter,
    "image_grid": _draw_image_grid,
}


# --- figures drawn as HTML text ---------------------------------------------------------------

#: Shades of the word highlights: supports the prediction, opposes it, and unsigned scores (attention).
_HL_COLOURS = {"pos": (27, 110, 32), "neg": (179, 38, 30), "any": (31, 78, 121)}
#: Most words of one text shown.
MAX_HIGHLIGHT_WORDS = 60


def _highlights_html(data: dict[str, Any], title: str) -> str:
    """Words shaded by a score, each followed by the score itself, so the numbers print and read aloud too.

    Keys: ``rows`` (each ``{"label", "words": [...], "scores": [...]}``), ``score`` (what the score is, for the
    legend), ``signed`` (``True``: green supports the prediction, red opposes it; ``False``: one hue).
    Every word and label is HTML-escaped; the only attribute values built here are numbers.
    """
    rows = data.get("rows")
    if not isinstance(rows, list) or not rows:
        raise ValueError("'rows' must be a non-empty list")
    signed = bool(data.get("signed", True))
    what = escape(_text(data, "score") or "score")
    parts = []
    for r, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"row {r} must be a mapping")
        words = _labels(row, "words")[:MAX_HIGHLIGHT_WORDS]
        scores = _floats(row, "scores")[:len(words)]
        if scores.size != len(words):
            raise ValueError(f"row {r} has {len(words)} words and {scores.size} scores")
        finite = np.abs(scores[np.isfinite(scores)])
        peak = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        spans = []
        for word, score in zip(words, scores):
            if not np.isfinite(score):
                spans.append(f'<span class="hl">{escape(word)}<sup>n/a</sup></span>')
                continue
            shade = _HL_COLOURS["any" if not signed else "pos" if score >= 0 else "neg"]
            alpha = 0.12 + 0.6 * min(abs(float(score)) / peak, 1.0)
            number = f"{score:+.3g}" if signed else f"{score:.3g}"
            spans.append(f'<span class="hl" style="background-color: rgba({shade[0]}, {shade[1]}, {shade[2]}, '
                         f'{alpha:.2f})" title="{escape(number)}">{escape(word)}<sup>{escape(number)}</sup></span>')
        label = escape(_text(row, "label"))
        parts.append(f'<p class="hl-row"><span class="hl-label">{label}</span> {" ".join(spans)}</p>')
    legend = (f"Shading: {what}; green supports the predicted class, red opposes it, darker is larger; the number "
              f"after each word is its {what}." if signed else
              f"Shading: {what}, darker is larger; the number after each word is its {what}.")
    return (f'<div class="highlights" aria-label="{escape(title or "word highlights", quote=True)}">'
            f'{"".join(parts)}<p class="note hl-legend">{legend}</p></div>')


#: Figure kind → function that renders it as HTML (text that prints and reads aloud, not an image).
HTML_FIGURES: dict[str, Callable[[dict[str, Any], str], str]] = {"text_highlights": _highlights_html}
