"""Exported pages in a real browser: headless Chromium (Debian's package, driven by Playwright
with ``executable_path``; nothing is downloaded) opens each offline page from disk.

For every page: each chart's container holds a drawn Vega canvas/SVG, the number of
containers equals the notebook's chart outputs, every MathML formula is laid out without
error, the page logged no JavaScript error, and it asked for nothing beyond the machine
(every http(s) request is recorded and refused). For slides, reveal.js is initialised too.
The checks are shown to fail on a broken chart and on a stock nbconvert page (CDN scripts).

Chromium missing: the tests fail when ``CI`` is set (``.ci/run`` installs it) and are
skipped otherwise. ``SALIENCY_CHROMIUM`` points to another Chromium binary;
``SALIENCY_SCREENSHOTS=DIR`` saves a screenshot of each page checked.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from saliency_helpers.course import common
from saliency_helpers.course import export as ex

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ("file:", "data:", "blob:", "about:")



# ----------------------------------------------------------------------------- notebooks


TOY_CELLS = [
    ("markdown", "# Toy deck\n\nA formula: $\\alpha_k^c = \\frac{1}{Z}\\sum_{i,j} x_{ij}$."),
    ("code", "import altair as alt\nimport pandas as pd\nimport ipywidgets as widgets\n"
             "df = pd.DataFrame({'x': range(5), 'y': [1, 3, 2, 5, 4]})"),
    ("code", "alt.Chart(df, title='line').mark_line(point=True).encode(x='x:Q', y='y:Q')"),
    ("markdown", "## Second slide\n\n$$\\sum_i a_i = F(x) - F(x')$$"),
    # JupyterLab's own vega-lite mimetype (Altair 5's "mimetype" renderer). Altair 6's renderer
    # names it "...v6.json", which nbformat rejects, so nbclient cannot store it.
    ("code", "display({'application/vnd.vegalite.v5+json': alt.Chart(df).mark_bar()"
             ".encode(x='x:O', y='y:Q').to_dict()}, raw=True)"),
    ("code", "widgets.IntSlider(3)"),
]  # fmt: skip


def make_toy(out_dir: Path) -> Path:
    """A tiny notebook executed by a real kernel: two charts (Altair's default html renderer
    and the vega-lite mimetype), math, a widget, slide metadata on the markdown cells."""
    from saliency_helpers.course.kernels import notebook_client

    nb = new_notebook()
    for kind, source in TOY_CELLS:
        cell = new_markdown_cell(source) if kind == "markdown" else new_code_cell(source)
        if kind == "markdown":
            cell.metadata["slideshow"] = {"slide_type": "slide"}
        nb.cells.append(cell)
    notebook_client(nb, timeout=120, kernel_name="python3").execute()
    out = out_dir / "toy.ipynb"
    nbformat.write(nb, out)
    return out


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    return make_toy(tmp_path_factory.mktemp("toy"))


# ----------------------------------------------------------------------------- the browser


@dataclass
class Page:
    """What a browser saw on one page."""

    charts: list[dict] = field(default_factory=list)  # id, status, marks (drawn canvas/svg)
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions
    requests: list[str] = field(default_factory=list)  # anything beyond the machine
    math: int = 0  # typeset formulas
    math_errors: int = 0
    reveal: dict | None = None  # slides: ready, number of sections


CHARTS_STATE = """() => [...document.querySelectorAll("div.saliency-chart")].map(d => ({
    id: d.id,
    status: d.dataset.status || null,
    marks: [...d.querySelectorAll("canvas.marks, svg.marks")]
        .filter(m => (m.width && (m.width.baseVal ? m.width.baseVal.value : m.width)) > 0).length
}))"""

# Formulas are MathML (written at export): count them, and count the ones the browser could
# not lay out (zero size) or that latex2mathml marked as errors (<merror>).
MATH_STATE = """() => {
    const all = [...document.querySelectorAll("math")];
    const shown = m => m.getClientRects().length > 0;  // a hidden slide's math has no box
    const bad = all.filter(m => (shown(m) && m.getBoundingClientRect().width === 0)
                             || m.querySelector("merror"));
    return [all.length, bad.length];
}"""


def open_page(context, path: Path, *, slides: bool = False, wait_s: float = 30) -> Page:
    """Open ``path`` from disk, let its scripts finish, and report what happened."""
    seen = Page()
    page = context.new_page()
    page.on("console", lambda m: seen.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: seen.errors.append(f"uncaught: {e}"))
    page.on("request", lambda r: None if r.url.startswith(LOCAL) else seen.requests.append(r.url))
    page.route(re.compile(r"^(https?|wss?|ftp)://"), lambda route: route.abort())
    try:
        page.goto(path.as_uri(), wait_until="load")
        try:
            page.wait_for_function(
                "() => [...document.querySelectorAll('div.saliency-chart')]"
                ".every(d => d.dataset.status)",
                timeout=wait_s * 1000,
            )
        except Exception as err:  # the report below says which chart never finished
            seen.errors.append(f"charts still pending after {wait_s} s: {type(err).__name__}")
        seen.charts = page.evaluate(CHARTS_STATE)
        seen.math, seen.math_errors = page.evaluate(MATH_STATE)
        if slides:
            seen.reveal = page.evaluate(
                """() => ({defined: typeof Reveal !== "undefined",
                           ready: typeof Reveal !== "undefined" && Reveal.isReady(),
                           sections: document.querySelectorAll(".reveal .slides section").length,
                           total: typeof Reveal !== "undefined" ? Reveal.getTotalSlides() : 0})"""
            )
        shots = os.environ.get("SALIENCY_SCREENSHOTS")
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(shots) / f"{path.name}.png"))
    finally:
        page.close()
    return seen


def assert_renders(seen: Page, n_charts: int, *, math: bool = True, slides: bool = False):
    """The page is complete and offline: every chart drawn, no error, no request."""
    assert seen.errors == [], f"JavaScript errors: {seen.errors}"
    assert seen.requests == [], f"the page asked the network for: {seen.requests}"
    assert len(seen.charts) == n_charts, f"{len(seen.charts)} chart containers, {n_charts} charts"
    not_drawn = [c for c in seen.charts if c["status"] != "rendered" or c["marks"] < 1]
    assert not not_drawn, f"charts not drawn: {not_drawn}"
    if math:
        assert seen.math > 0 and seen.math_errors == 0, (seen.math, seen.math_errors)
    if slides:
        assert seen.reveal and seen.reveal["ready"], f"reveal.js not initialised: {seen.reveal}"
        assert seen.reveal["sections"] > 1 and seen.reveal["total"] > 1, seen.reveal


# ----------------------------------------------------------------------------- toy notebook


@pytest.mark.parametrize("to", ["html", "slides"])
def test_toy_notebook_renders_offline(browser, toy, tmp_path, to):
    nb = nbformat.read(toy, as_version=4)
    n_charts = len(common.chart_outputs(nb))
    assert n_charts == 2
    path = ex.export_notebook(toy, to, out=tmp_path)
    seen = open_page(browser, path, slides=to == "slides")
    assert_renders(seen, n_charts, slides=to == "slides")
    if to == "slides":
        assert seen.reveal["total"] == 2  # two markdown cells start a slide each


def _broken_chart_notebook() -> nbformat.NotebookNode:
    cell = new_code_cell("chart")
    spec = {
        "$schema": "https://vega.github.io/schema/vega-lite/v6.4.1.json",
        "data": {"values": [{"a": 1}]},
        "mark": "no-such-mark",
        "encoding": {"x": {"field": "a", "type": "quantitative"}},
    }
    cell.outputs = [
        nbformat.from_dict(
            {
                "output_type": "display_data",
                "metadata": {},
                "data": {"application/vnd.vegalite.v6.json": spec, "text/plain": "chart"},
            }
        )
    ]
    nb = new_notebook()
    nb.cells = [cell]
    return nb


def test_a_broken_chart_fails_the_check(browser, tmp_path):
    path = tmp_path / "broken.html"
    path.write_text(ex.notebook_to_html(_broken_chart_notebook(), "html"))
    seen = open_page(browser, path)
    assert [c["status"] for c in seen.charts] == ["error"]
    assert any("saliency-chart-0" in e for e in seen.errors), seen.errors
    with pytest.raises(AssertionError, match="JavaScript errors"):
        assert_renders(seen, 1, math=False)


@pytest.mark.filterwarnings("ignore:Your element with mimetype")  # stock nbconvert drops it
def test_a_stock_nbconvert_page_fails_the_check(browser, toy, tmp_path):
    """nbconvert's own HTML export leaves Altair's CDN loader in place (and drops the vega-lite
    mimetype chart): the check sees the CDN requests and finds no chart drawn."""
    from nbconvert import HTMLExporter

    html, _ = HTMLExporter(template_name="lab").from_filename(str(toy))
    path = tmp_path / "stock.html"
    path.write_text(html)
    seen = open_page(browser, path, wait_s=5)
    assert any("cdn.jsdelivr.net" in url for url in seen.requests), seen.requests
    with pytest.raises(AssertionError):
        assert_renders(seen, 2)
