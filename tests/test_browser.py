"""Exported pages in a real browser: headless Chromium (Debian's package, driven by Playwright
with ``executable_path``; nothing is downloaded) opens each offline page from disk.

For every page: each chart's container holds a drawn Vega canvas/SVG, the number of
containers equals the notebook's chart outputs, every MathML formula is laid out without
error, the page logged no JavaScript error, and it asked for nothing beyond the machine
(every http(s) request is recorded and refused). For slides, reveal.js is initialised too.
The checks are shown to fail on a broken chart and on a stock nbconvert page (CDN scripts).

Slides must fit the screen a room sees: ``measure_slides`` steps through every slide of a deck
at 1280×720 (``Reveal.getSlides()``, every fragment shown) and ``misfits`` names each slide
whose content is taller than the deck's slide or that has a block scrolling or sticking out
sideways; ``contact_sheet`` puts a thumbnail of every slide on one PNG. The check is shown to
fail on a deck whose layout step is switched off, and to pass once the exporter's rules
(``saliency_helpers/course/slides_fit.js``, ``export.for_slides``) have laid it out.

Chromium missing: the tests fail when ``CI`` is set (``.ci/run`` installs it) and are
skipped otherwise. ``SALIENCY_CHROMIUM`` points to another Chromium binary;
``SALIENCY_SCREENSHOTS=DIR`` saves a screenshot of each page checked.
"""

from __future__ import annotations

import copy
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
                           total: typeof Reveal !== "undefined" ? Reveal.getTotalSlides() : 0,
                           horizontal: typeof Reveal !== "undefined"
                               ? Reveal.getHorizontalSlides().length : 0})"""
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


# ----------------------------------------------------------------------------- slides that fit

#: The screen the fit check uses: a 720p projector.
SCREEN = {"width": 1280, "height": 720}

# Every slide of the deck in order (reveal's own list, vertical slides included), each shown
# with all its fragments, measured in the slide's own coordinates (reveal scales the whole
# slide to the screen): the content's height against the deck's configured height, and every
# block that scrolls or is cut off sideways (content wider than its box, overflow not visible)
# or sticks out of the slide's width.
SLIDE_STATE = r"""(index) => {
    const slide = Reveal.getSlides()[index];
    const at = Reveal.getIndices(slide);
    Reveal.slide(at.h, at.v);
    for (const f of slide.querySelectorAll(".fragment")) { f.classList.add("visible"); }
    const config = Reveal.getConfig();
    const wide = [];
    const right = slide.getBoundingClientRect().right;
    const scale = Reveal.getScale();
    for (const el of slide.querySelectorAll("*")) {
        if (el.closest("aside.notes") || el.getClientRects().length === 0) { continue; }
        const style = getComputedStyle(el);
        const scrolls = el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0
            && style.overflowX !== "visible";
        // what sticks out of a block that scrolls or clips counts once, as that block
        let clipped = false;
        for (let a = el.parentElement; a && a !== slide; a = a.parentElement) {
            clipped = clipped || getComputedStyle(a).overflowX !== "visible";
        }
        const sticksOut = !clipped && el.getBoundingClientRect().right > right + 2 * scale;
        if (scrolls || sticksOut) {
            wide.push(el.tagName.toLowerCase() + (el.className && el.className.baseVal === undefined
                ? "." + String(el.className).trim().split(/\s+/).join(".") : "")
                + (scrolls ? ` scrolls ${el.scrollWidth}>${el.clientWidth}` : " sticks out"));
        }
    }
    const heading = slide.querySelector("h1, h2, h3, h4");
    return {index: index, h: at.h, v: at.v, height: slide.scrollHeight, limit: config.height,
            width: config.width, wide: wide.slice(0, 5),
            title: heading ? heading.textContent.replace(/\s+/g, " ").trim().slice(0, 60) : ""};
}"""


def measure_slides(context, path: Path, *, shots: bool = False, wait_s: float = 60) -> list[dict]:
    """Step through every slide of the deck at ``path`` on a 1280×720 screen.

    Returns one dict per slide (``index``, ``h``, ``v``, ``height`` of its content, ``limit``
    the deck's slide height, ``wide`` the blocks that scroll or stick out sideways, ``title``)
    and, with ``shots``, ``png``: a screenshot of the slide as the room sees it.
    """
    page = context.new_page()
    page.set_viewport_size(SCREEN)
    page.route(re.compile(r"^(https?|wss?|ftp)://"), lambda route: route.abort())
    try:
        page.goto(path.resolve().as_uri(), wait_until="load")
        page.wait_for_function(
            "() => typeof Reveal !== 'undefined' && Reveal.isReady()"
            " && [...document.querySelectorAll('div.saliency-chart')].every(d => d.dataset.status)"
            " && document.documentElement.dataset.saliencyFit !== 'pending'",
            timeout=wait_s * 1000,
        )
        page.evaluate("() => Reveal.configure({transition: 'none', backgroundTransition: 'none'})")
        page.add_style_tag(content="*, *::before { transition: none !important; }")  # no fades
        n = page.evaluate("() => Reveal.getSlides().length")
        slides = []
        for index in range(n):
            slide = page.evaluate(SLIDE_STATE, index)
            if shots:
                slide["png"] = page.screenshot()
            slides.append(slide)
    finally:
        page.close()
    return slides


def misfits(slides: list[dict]) -> list[str]:
    """The slides that do not fit: taller than the deck's slide, or with a block that scrolls
    or sticks out sideways, one line each (empty when every slide fits)."""
    bad = []
    for s in slides:
        problems = []
        if s["height"] > s["limit"]:
            problems.append(f"{s['height']} px tall for a {s['limit']} px slide")
        if s["wide"]:
            problems.append("too wide: " + ", ".join(s["wide"]))
        if problems:
            bad.append(f"slide {s['index'] + 1} ({s['h']}.{s['v']} {s['title']!r}): "
                       + "; ".join(problems))  # fmt: skip
    return bad


def contact_sheet(slides: list[dict], target: Path, *, columns: int = 6, thumb: int = 256) -> Path:
    """One PNG with a small screenshot of every slide (from ``measure_slides(shots=True)``),
    numbered, a misfit framed in red, for reviewing a deck at a glance."""
    import io

    from PIL import Image, ImageDraw

    size = (thumb, thumb * SCREEN["height"] // SCREEN["width"])
    label, pad = 16, 6
    rows = -(-len(slides) // columns)
    sheet = Image.new(
        "RGB", (columns * (size[0] + pad) + pad, rows * (size[1] + label + pad) + pad), "#eee"
    )
    draw = ImageDraw.Draw(sheet)
    for i, s in enumerate(slides):
        x = pad + (i % columns) * (size[0] + pad)
        y = pad + (i // columns) * (size[1] + label + pad)
        image = Image.open(io.BytesIO(s["png"])).convert("RGB").resize(size, Image.LANCZOS)
        sheet.paste(image, (x, y + label))
        bad = s["height"] > s["limit"] or s["wide"]
        draw.text((x, y + 2), f"{i + 1}  ({s['h']}.{s['v']})  {s['height']} px",
                  fill="#b00" if bad else "#333")  # fmt: skip
        if bad:
            draw.rectangle((x - 2, y + label - 2, x + size[0] + 1, y + label + size[1] + 1),
                           outline="#d00", width=3)  # fmt: skip
    target.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(target, optimize=True)
    return target


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
        assert seen.reveal["horizontal"] == 2  # two markdown cells start a slide each


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


# ----------------------------------------------------------------------------- slides that fit


def _chart_output(spec: dict) -> nbformat.NotebookNode:
    spec = {"$schema": "https://vega.github.io/schema/vega-lite/v5.20.1.json", **spec}
    return nbformat.from_dict(
        {
            "output_type": "display_data",
            "metadata": {},
            "data": {"application/vnd.vegalite.v5+json": spec, "text/plain": "chart"},
        }
    )


LONG_WORD = "x" * 300  # nothing to wrap at: the block scrolls or sticks out sideways
PROSE = "\n\n".join(
    f"Paragraph {i}: the gradient of the class score says how the score would change if one "
    "pixel changed a little, which is not the same as saying what the model looked at."
    for i in range(1, 25)
)


def overflowing_notebook() -> nbformat.NotebookNode:
    """Slides that cannot fit as they are: a page of prose (too tall), a code fence with a
    300-character word (scrolls sideways), a long code cell with a long printout, a chart
    1,600 px wide and a row of 12 map panels (too wide)."""
    nb = new_notebook()
    nb.cells.append(new_markdown_cell("# Too much for one slide\n\n" + PROSE))
    nb.cells.append(new_markdown_cell(f"## A wide block\n\n```\n{LONG_WORD}\n```"))
    code = new_code_cell("\n".join(f"value_{i} = {i} * 2  # {LONG_WORD[:60]}" for i in range(30)))
    code.outputs = [
        nbformat.from_dict(
            {"output_type": "stream", "name": "stdout",
             "text": "\n".join(f"row {i}: {LONG_WORD[:150]}" for i in range(40))}
        )
    ]  # fmt: skip
    nb.cells.append(code)
    wide = new_code_cell("chart")
    rows = [{"x": i, "y": i % 7} for i in range(50)]
    wide.outputs = [
        _chart_output({"data": {"values": rows}, "mark": "bar", "width": 1600,
                       "encoding": {"x": {"field": "x", "type": "ordinal"},
                                    "y": {"field": "y", "type": "quantitative"}}}),
        _chart_output({"data": {"values": [{"p": f"map {i}", "v": i} for i in range(12)]},
                       "facet": {"field": "p", "type": "nominal"}, "columns": 12,
                       "spec": {"width": 180, "height": 180, "mark": "rect",
                                "encoding": {"color": {"field": "v", "type": "quantitative"}}}}),
    ]  # fmt: skip
    nb.cells.append(wide)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.metadata["slideshow"] = {"slide_type": "slide"}
    return nb


def assert_slides_fit(slides: list[dict]) -> None:
    """Every slide fits: no content taller than the slide, no block scrolling sideways."""
    bad = misfits(slides)
    assert not bad, f"{len(bad)} of {len(slides)} slides do not fit:\n" + "\n".join(bad)


def test_the_fit_check_fails_on_slides_that_do_not_fit(browser, tmp_path):
    """The same deck with its layout step switched off: the check names the too-tall slide
    and the blocks that scroll or stick out sideways."""
    html = ex.notebook_to_html(overflowing_notebook(), "slides", name="bad")
    assert "saliencyFitSlides(Reveal);" in html
    unfitted = html.replace(
        "saliencyFitSlides(Reveal);", 'document.documentElement.dataset.saliencyFit = "off";'
    )
    path = tmp_path / "bad.slides.html"
    path.write_text(unfitted)
    slides = measure_slides(browser, path)
    bad = misfits(slides)
    assert len(slides) == 2, slides
    assert "px tall for a 700 px slide" in bad[0], bad
    assert "too wide" in bad[1] and "scrolls" in bad[1], bad
    with pytest.raises(AssertionError, match="2 of 2 slides do not fit"):
        assert_slides_fit(slides)


def test_exported_slides_fit_the_screen(browser, tmp_path):
    """The exporter's rules make the same deck fit: prose continues on further slides (all of
    it shown), long code is folded, the printout cut, wide blocks and charts scaled down, the
    row of 12 panels wrapped; a contact sheet shows every slide."""
    nb = overflowing_notebook()
    path = tmp_path / "good.slides.html"
    path.write_text(ex.notebook_to_html(nb, "slides", name="good"))
    slides = measure_slides(browser, path, shots=True)
    assert_slides_fit(slides)
    assert len(slides) > 3, [s["title"] for s in slides]
    sheet = contact_sheet(slides, tmp_path / "good.png")
    from PIL import Image

    assert Image.open(sheet).size[0] > 6 * 200

    page = browser.new_page()
    page.set_viewport_size(SCREEN)
    try:
        page.goto(path.as_uri())
        page.wait_for_function("() => document.documentElement.dataset.saliencyFit === 'done'")
        text = page.evaluate("() => document.querySelector('.reveal .slides').textContent")
        folded = page.evaluate("() => document.querySelectorAll('details.saliency-code').length")
        continued = page.evaluate("() => document.querySelectorAll('.saliency-continued').length")
    finally:
        page.close()
    assert all(f"Paragraph {i}:" in text for i in range(1, 25))  # nothing lost
    assert folded == 1 and continued >= 1
    assert "28 more lines: see the notebook" in text


def test_the_code_on_slides_rule():
    """Short code in full, long code folded unless tagged ``slides:show-code``, code tagged
    ``slides:hide-code`` left out; printouts and tables cut with a note; the notebook intact."""
    nb = new_notebook()
    short, long_, shown, hidden = (
        new_code_cell("\n".join(["a = 1"] * n)) for n in (ex.CODE_LINES, 30, 30, 30)
    )
    shown.metadata["tags"] = [ex.SHOW_CODE_TAG]
    hidden.metadata["tags"] = [ex.HIDE_CODE_TAG]
    short.outputs = [nbformat.from_dict(
        {"output_type": "stream", "name": "stdout", "text": "\n".join(map(str, range(40)))}
    )]  # fmt: skip
    table = "<table><thead><tr><th>a</th></tr></thead><tbody>"
    table += "".join(f"<tr><td>{i}</td></tr>" for i in range(30)) + "</tbody></table>"
    long_.outputs = [nbformat.from_dict(
        {"output_type": "execute_result", "execution_count": 1, "metadata": {},
         "data": {"text/html": table, "text/plain": "table"}}
    )]  # fmt: skip
    nb.cells = [short, long_, shown, hidden]
    original = copy.deepcopy(nb)

    deck = ex.for_slides(nb)
    assert nb == original
    assert [c.metadata.get("saliency_fold") for c in deck.cells] == [None, 30, None, None]
    printed = deck.cells[0].outputs[0].text.splitlines()
    assert printed[: ex.OUTPUT_LINES] == [str(i) for i in range(ex.OUTPUT_LINES)]
    assert printed[-1] == f"… {40 - ex.OUTPUT_LINES} more lines: see the notebook"
    rows = deck.cells[1].outputs[0].data["text/html"]
    assert rows.count("<tr>") == 1 + ex.TABLE_ROWS + 1 and "20 more rows" in rows

    html = ex.notebook_to_html(nb, "slides")
    assert html.count('<details class="saliency-code">') == 1
    assert html.count("a = 1") < 3 * 30 + ex.CODE_LINES  # the hidden cell's code is gone


def test_wrapped_facets_get_fewer_columns_on_slides():
    spec = {"vconcat": [{"facet": {"field": "p"}, "columns": 8, "spec": {"width": 180}}]}
    fitted = ex._fit_columns(spec, 900)
    assert fitted["vconcat"][0]["columns"] == 4  # 4 × 180 + 3 × 20 spacing ≤ 900
    assert spec["vconcat"][0]["columns"] == 8  # the notebook's chart is unchanged
    grid = {"facet": {"row": {"field": "a"}, "column": {"field": "b"}}, "spec": {"width": 90}}
    assert ex._fit_columns(grid, 900) == grid  # a row × column grid is scaled, not re-wrapped
