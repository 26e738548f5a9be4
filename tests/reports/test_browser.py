"""The report in a real browser: headless Chromium opens it offline.

Checks: no console errors (``--enable-logging=stderr`` prints every console message as a
``CONSOLE`` line, CSP violations included); no network request from the page (Chromium's own
net log, ``--log-net-log``, lists every URL request; only the browser's own background calls to
Google hosts are ignored); every ``<img>`` in the DOM Chromium built decodes as a PNG of the size
it claims (CSP forbids script, so ``naturalWidth`` cannot be read in the page; decoding the same
data URIs with Pillow is the equivalent proof); and hostile strings placed in class names, feature
names, group values, attestations, signatories and config text come back as text — the parsed DOM
has exactly the elements and attributes of the same report with harmless strings.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from audit.results import AuditResult, CheckResult, Figure, Metric, Table, summarise
from reports import render_html
from reports.pdf import chromium_command

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run does)")

HOSTILE = [
    "<script>alert(1)</script>",
    '" onerror="alert(1)',
    "' onmouseover='alert(1)",
    "<img src=x onerror=alert(1)>",
    "</td></table></section><h1>injected</h1>",
    "{{ 7*7 }} {% raw %}",
    "\u202eevil\u202c \u2066rtl\u2069",
    "<svg/onload=alert(1)>",
    "javascript:alert(1)",
    "<!-- comment --> ]]> &amp; &lt;",
]
#: Hosts Chromium's own background services call even with the background-networking flags.
BROWSER_HOSTS = re.compile(r"^https?://([a-z0-9-]+\.)*(google\.com|googleapis\.com|gstatic\.com|gvt1\.com)(/|:|$)")


def _hostile_result(base: AuditResult, words: list[str]) -> AuditResult:
    """``base`` with ``words`` in class names, feature names, group values, attestations and config."""
    w = list(words)  # ten strings; every one lands in at least one place below
    labels = w[:3]
    perf = CheckResult(
        id="performance", category="performance", title="Predictive performance", status="pass", summary=w[0],
        n_samples=30, dataset="eval",
        metrics=[Metric(name="recall", value=0.5, n=10, method="m", group=label) for label in labels],
        evidence=[Figure(kind="confusion_matrix", title=w[1], caption=w[2],
                         data={"labels": labels, "matrix": [[5, 3, 2], [1, 8, 1], [0, 2, 8]]}),
                  Figure(kind="bar", title=w[3], data={"labels": w[4:7], "values": [0.3, 0.2, 0.1],
                                                      "xlabel": w[7], "ylabel": w[0]}),
                  Table(title=w[5], columns=["feature", w[6]], rows=[[x, x] for x in w])],
        limitations=[w[3]], method=w[4], config={w[5]: w[6]})
    fair = CheckResult(
        id="fairness.group_metrics", category="fairness", title=w[2], status="warn", summary=w[3],
        metrics=[Metric(name="tpr", value=0.7, n=20, method=w[5], group=g) for g in w[:4]])
    checks = [perf, fair]
    prov = base.provenance
    config = {"model": {"path": w[0]}, w[1]: {w[2]: w[3]},
              "report": {"signatories": [{"role": w[4], "name": w[5]}]}}
    prov = prov.model_copy(update={"config": config, "model": {w[6]: w[7]}})
    return base.model_copy(update={
        "provenance": prov, "checks": checks, "summary": summarise(checks),
        "attestations": {"intended_purpose": {"statement": w[0], "owner": w[1], "date": w[2], "status": "stated"},
                         "logging": w[3], w[4]: {"statement": w[5], "status": "open"}},
    })


def _chromium(tmp_path: Path, page: Path, *extra: str) -> tuple[str, str, list[str]]:
    """Open ``page``; return the DOM after load, the browser's stderr and every URL it requested."""
    profile = tmp_path / f"profile-{page.stem}"
    profile.mkdir()
    net_log = tmp_path / f"net-{page.stem}.json"
    cmd = chromium_command(CHROMIUM, profile, "--enable-logging=stderr", "--v=0", f"--log-net-log={net_log}",
                           *extra, "--dump-dom", page.as_uri())
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    urls = re.findall(r'"url":"([^"]*)"', net_log.read_text(encoding="utf-8", errors="replace"))
    return proc.stdout, proc.stderr, sorted(set(urls))


def _page_requests(urls: list[str]) -> list[str]:
    return [u for u in urls if not BROWSER_HOSTS.match(u) and not u.startswith(("file:", "data:", "chrome"))]


def _console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Content Security Policy" in line]


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str]] = []  # (tag, attribute name)
        self.imgs: list[dict[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [(tag, name) for name, _ in attrs]
        if tag == "img":
            self.imgs.append(dict(attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _dom(text: str) -> _Dom:
    parser = _Dom()
    parser.feed(text)
    return parser


@pytest.fixture(scope="module")
def opened(tmp_path_factory: pytest.TempPathFactory, audit_result: AuditResult) -> dict[str, tuple[str, str, list[str]]]:
    """The full report, the hostile report and its harmless twin, each opened once."""
    tmp = tmp_path_factory.mktemp("browser")
    pages = {"full": render_html(audit_result),
             "hostile": render_html(_hostile_result(audit_result, HOSTILE)),
             "benign": render_html(_hostile_result(audit_result, [f"word{i}" for i in range(len(HOSTILE))]))}
    out = {}
    for name, html in pages.items():
        path = tmp / f"{name}.html"
        path.write_text(html, encoding="utf-8")
        out[name] = _chromium(tmp, path)
    return out


def test_detectors_work_on_a_bad_page(tmp_path: Path) -> None:
    """The console and network detectors do fire: a page with a script error and a remote image."""
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><img src="http://example.invalid/x.png"><script>console.error("boom")</script></body></html>')
    _, stderr, urls = _chromium(tmp_path, bad)
    assert any("boom" in line for line in _console(stderr))
    assert "http://example.invalid/x.png" in _page_requests(urls)


@pytest.mark.parametrize("name", ["full", "hostile"])
def test_no_console_errors_and_no_network(opened: dict, name: str) -> None:
    dom, stderr, urls = opened[name]
    assert _console(stderr) == []
    assert _page_requests(urls) == []
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", dom, re.I)


def test_every_figure_is_shown(opened: dict, audit_result: AuditResult) -> None:
    dom = _dom(opened["full"][0])
    n_figures = sum(isinstance(e, Figure) for c in audit_result.checks for e in c.evidence)
    assert 1 <= len(dom.imgs) <= n_figures  # the undrawable figure of the fixture shows a note instead
    for img in dom.imgs:
        assert img.get("alt"), "every figure has alt text"
        src = img["src"] or ""
        assert src.startswith("data:image/png;base64,")
        picture = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        picture.load()  # decodes every pixel; a truncated PNG raises here
        assert picture.width > 50 and picture.height > 50


def test_hostile_strings_render_as_text(opened: dict) -> None:
    hostile, benign = _dom(opened["hostile"][0]), _dom(opened["benign"][0])
    assert "script" not in hostile.tags and "svg" not in hostile.tags
    assert not [a for a in hostile.attrs if a[1].startswith("on")]
    # Same elements and attributes as the harmless twin: nothing was injected, nothing broke out. The
    # renderer's own line-break opportunities (<wbr> after "_ / | = ,", attribute-free) follow the text.
    assert ("wbr" in hostile.tags) and not [a for a in hostile.attrs if a[0] == "wbr"]
    assert [t for t in hostile.tags if t != "wbr"] == [t for t in benign.tags if t != "wbr"]
    assert hostile.attrs == benign.attrs
    text = "".join(hostile.text)
    from reports._format import clean_text

    for word in HOSTILE:  # as text, less the control characters (bidi overrides, NUL, ESC) the report strips
        assert clean_text(word).strip() in text, word
