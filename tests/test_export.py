"""Offline export (saliency_helpers/export.py) without a browser: charts found with their exact
specs, nothing left that loads from the web, widgets handled, the rule itself, the CLI.

The notebooks here are built in-process from Altair's real output (no kernel), so the suite
stays fast; tests/test_browser.py opens exported pages in Chromium.
"""

from __future__ import annotations

import json
import re

import altair as alt
import nbformat
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from saliency_helpers.course import common
from saliency_helpers.course import export as ex
from saliency_helpers.display import vl_convert_version

WIDGET = "application/vnd.jupyter.widget-view+json"


def _bundle(chart: alt.Chart, renderer: str = "default") -> dict:
    with alt.renderers.enable(renderer):
        out = chart._repr_mimebundle_()
    return out[0] if isinstance(out, tuple) else out


def line_chart() -> alt.Chart:
    df = pd.DataFrame({"x": range(5), "y": [1, 3, 2, 5, 4]})
    return alt.Chart(df, title="toy line").mark_line().encode(x="x:Q", y="y:Q")


def bar_chart() -> alt.Chart:
    df = pd.DataFrame({"k": list("abc"), "v": [2, 1, 3]})
    return alt.Chart(df).mark_bar().encode(x="k:N", y="v:Q")


def toy_notebook(*, math: bool = True) -> nbformat.NotebookNode:
    """Markdown with math and slide metadata, two charts (Altair's default html renderer and
    its mimetype renderer), a widget, a pandas table and a printed line."""
    title = new_markdown_cell("# Toy\n\nA formula: $y = w^\\top x$." if math else "# Toy")
    title.metadata["slideshow"] = {"slide_type": "slide"}
    second = new_markdown_cell("## Second\n\nSee [the paper](https://arxiv.org/abs/1810.03292).")
    second.metadata["slideshow"] = {"slide_type": "slide"}
    html_chart = new_code_cell("line_chart()")
    html_chart.outputs = [
        new_output("execute_result", data=_bundle(line_chart()), execution_count=1)
    ]
    mime_chart = new_code_cell("bar_chart()")
    # from_dict, not new_output: Altair 6's mimetype ends in ".json", not "+json", so nbformat's
    # schema (which only allows dicts under "+json" keys) rejects what the kernel really sends.
    mime_data = _bundle(bar_chart(), "mimetype")
    mime_chart.outputs = [
        nbformat.from_dict({"output_type": "display_data", "metadata": {}, "data": mime_data})
    ]
    widget = new_code_cell("IntSlider(3)")
    widget.outputs = [
        new_output(
            "display_data",
            data={
                WIDGET: {"model_id": "abc", "version_major": 2, "version_minor": 0},
                "text/plain": "progress:   0%|          | 0/6",
            },
        )
    ]
    table = new_code_cell("pd.DataFrame({'a': [1]})")
    table.outputs = [
        new_output(
            "execute_result",
            data={"text/html": "<table><tr><td>1</td></tr></table>", "text/plain": "   a\n0  1"},
            execution_count=2,
        )
    ]
    printed = new_code_cell("print('hello')")
    printed.outputs = [new_output("stream", name="stdout", text="hello\n")]
    nb = new_notebook()  # cells assigned afterwards: new_notebook(cells=...) would validate
    nb.cells = [title, html_chart, second, mime_chart, widget, table, printed]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    return nb


def _spec_payloads(html: str) -> list[dict]:
    # nbconvert re-serialises the page with BeautifulSoup, which may reorder attributes
    found = re.findall(r'<script[^>]*id="saliency-chart-\d+-spec"[^>]*>(.*?)</script>', html, re.S)
    return [json.loads(text) for text in found]


# ----------------------------------------------------------------------------- finding charts


def test_spec_is_read_back_exactly_from_altairs_html_output():
    chart = line_chart()
    html = _bundle(chart)["text/html"]
    assert "cdn.jsdelivr.net" in html  # what makes the stock output need the network
    spec, options = common.spec_from_html(html)
    assert spec == chart.to_dict()
    assert options == {"mode": "vega-lite"}


def test_spec_from_html_ignores_html_without_a_chart():
    assert common.spec_from_html("<table><tr><td>1</td></tr></table>") is None
    # a vegaEmbed call whose spec is not vega JSON is not a chart we can rebuild
    assert common.spec_from_html('<script>vegaEmbed(el, {"a": 1})</script>') is None


def test_chart_outputs_finds_both_renderers_in_order():
    nb = toy_notebook()
    charts = common.chart_outputs(nb)
    places = [(c.cell, c.output, c.mode) for c in charts]
    assert places == [(1, 0, "vega-lite"), (3, 0, "vega-lite")]
    assert charts[0].spec == line_chart().to_dict()
    assert charts[1].spec == bar_chart().to_dict()


@pytest.mark.parametrize(
    "mime, mode",
    [
        ("application/vnd.vegalite.v5+json", "vega-lite"),  # Altair 5, JupyterLab's own renderer
        ("application/vnd.vegalite.v6.json", "vega-lite"),  # Altair 6
        ("application/vnd.vega.v5+json", "vega"),
    ],
)
def test_chart_mimetypes_are_recognised(mime, mode):
    spec = {"$schema": "https://vega.github.io/schema/vega/v5.json", "marks": []}
    cell = new_code_cell("chart")
    cell.outputs = [
        nbformat.from_dict(
            {
                "output_type": "display_data",
                "metadata": {},
                "data": {mime: json.dumps(spec), "text/plain": "chart"},
            }
        )
    ]
    nb = new_notebook()
    nb.cells = [cell]
    charts = common.chart_outputs(nb)
    assert [(c.mode, c.spec) for c in charts] == [(mode, spec)]


def test_a_chart_loader_without_a_readable_spec_is_refused():
    nb = toy_notebook()
    nb.cells[1].outputs[0]["data"] = {
        "text/html": '<script src="https://cdn.jsdelivr.net/npm/vega@6">'
        "</script><script>vegaEmbed(el, spec)</script>"
    }
    with pytest.raises(common.OfflineExportError, match="cell 1, output 0"):
        common.chart_outputs(nb)


def test_prepare_offline_leaves_the_input_alone_and_handles_widgets():
    nb = toy_notebook()
    before = json.dumps(nb, sort_keys=True)
    offline, charts = ex.prepare_offline(nb)
    assert json.dumps(nb, sort_keys=True) == before
    assert len(charts) == 2
    assert "widgets" not in offline.metadata
    widget_out = offline.cells[4].outputs
    assert widget_out[0]["data"] == {"text/html": ex.NOTE_HTML}
    dropped, _ = ex.prepare_offline(nb, widgets="drop")
    assert dropped.cells[4].outputs == []
    text, _ = ex.prepare_offline(nb, widgets="text")
    assert text.cells[4].outputs[0]["data"] == {"text/plain": "progress:   0%|          | 0/6"}
    assert offline.cells[5].outputs == nb.cells[5].outputs  # a plain table is untouched
    with pytest.raises(ValueError, match="widgets must be"):
        ex.prepare_offline(nb, widgets="keep")


def test_vegalite_version_follows_the_specs_schema():
    def version(schema_version):
        return vl_convert_version(f"https://vega.github.io/schema/vega-lite/{schema_version}.json")

    assert version("v5.20.1") == "5.20"
    assert version("v6.4.1") == "6.4"
    # an unknown minor falls back to the newest of the same major, an unknown major to the default
    assert version("v5.99.0").startswith("5.")
    assert version("v5") == version("v5.99.0")  # a bare major: the newest of it
    assert version("v1.0.0") is None
    assert vl_convert_version([]) is None
    # several charts: the highest version any of them needs
    urls = [f"https://vega.github.io/schema/vega-lite/{v}.json" for v in ("v5.20.1", "v6.4.1")]
    assert vl_convert_version(urls) == "6.4"


# ----------------------------------------------------------------------------- the rule


@pytest.mark.parametrize(
    "html, n",
    [
        ('<a href="https://arxiv.org/abs/1810.03292">paper</a>', 0),
        ('<img src="data:image/png;base64,AAAA">', 0),
        ('<script src="app.js"></script><link rel="stylesheet" href="local.css">', 0),
        ('<script src="https://cdn.jsdelivr.net/npm/vega@6"></script>', 1),
        ('<link rel="stylesheet" href="//unpkg.com/reveal.js/dist/reveal.css">', 1),
        ('<img src="HTTP://example.org/x.png">', 1),
        ("<style>@import url(https://fonts.googleapis.com/css?family=Lato);</style>", 1),
        ("<style>@import 'https://example.org/a.css';</style>", 1),
        ("<div style=\"background: url('https://example.org/bg.png')\"></div>", 1),
        ("<style>.a { background: url(data:image/png;base64,AAAA) }</style>", 0),
        ('<iframe src="https://example.org"></iframe><video poster="//x/p.png"></video>', 2),
        ("<p>https://example.org in plain text is fine</p>", 0),
    ],
)
def test_external_references_rule(html, n):
    assert len(ex.external_references(html)) == n


# ----------------------------------------------------------------------------- whole documents


@pytest.mark.parametrize("to", ["html", "slides"])
def test_exported_document_is_offline_and_carries_every_chart(to):
    nb = toy_notebook()
    html = ex.notebook_to_html(nb, to, name="toy")
    assert ex.external_references(html) == []
    assert "cdn.jsdelivr.net/npm/vega" not in html and "require.js" not in html
    payloads = _spec_payloads(html)
    assert [p["spec"] for p in payloads] == [line_chart().to_dict(), bar_chart().to_dict()]
    assert all(p["options"]["actions"]["editor"] is False for p in payloads)
    assert html.count('class="saliency-chart"') == 2
    assert "window.vegaEmbed=" in html  # vl-convert's bundle, inlined once
    assert html.count("window.vegaEmbed=") == 1
    # the formula is MathML, drawn by the browser: no MathJax, no TeX left for a script
    assert '<math display="inline"' in html and "<msup>" in html
    assert "MathJax" not in html and "y = w^\\top x" not in html
    assert WIDGET not in html and "jupyter-widgets" not in html and ex.NOTE_HTML in html
    assert 'href="https://arxiv.org/abs/1810.03292"' in html  # plain links stay
    if to == "slides":
        assert "reveal.js 5" in html and "Reveal.initialize(" in html and "<section" in html
        assert "<title>toy slides</title>" in html


def test_no_math_no_charts_no_vega():
    nb = new_notebook(cells=[new_markdown_cell("# Plain"), new_code_cell("1 + 1")])
    html = ex.notebook_to_html(nb, "html")
    assert "<math" not in html and "vegaEmbed" not in html
    assert len(html) < 1_000_000
    assert ex.external_references(html) == []


def test_display_math_environments_and_code_spans():
    text = (
        "Display: $$\\sum_i a_i = 1$$ and an environment:\n\n"
        "\\begin{align} x &= 1 \\\\ y &= 2 \\end{align}\n\n"
        "Code keeps its dollars: `price = $5`."
    )
    html = ex.notebook_to_html(new_notebook(cells=[new_markdown_cell(text)]), "html")
    assert html.count('<math display="block"') == 2
    assert "price = $5" in html  # not math


def test_a_formula_latex2mathml_cannot_read_is_a_clear_error():
    nb = new_notebook(cells=[new_markdown_cell("Broken: $\\frac{1}{$")])
    with pytest.raises(common.OfflineExportError, match="could not be turned into MathML"):
        ex.notebook_to_html(nb, "html")


#: The vendored reveal.js (saliency_helpers/course/vendor/reveal/README.md): unchanged npm files.
REVEAL_SHA256 = {
    "dist/reveal.js": "46538b52db48724192f59bf46f5e851a18e302777c46f4a34c32709d010d6a29",
    "dist/reveal.css": "68f915a11ebf7203c0446576b7e952ff61c5dd02134a8a226ffaf62ed42136d2",
    "plugin/notes/notes.js": "df1201d19d03241a2897d39c3d38768177df1cbd4bde06327b321cb83461ae89",
}


def test_the_vendored_reveal_js_is_the_documented_release():
    import hashlib

    for name, digest in REVEAL_SHA256.items():
        data = (ex.REVEAL_DIR / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, name
    assert "reveal.js 5.2" in (ex.REVEAL_DIR / "dist/reveal.js").read_text()[:200]
    assert (ex.REVEAL_DIR / "dist/theme/simple.css").is_file()  # nbconvert's default theme
    assert "MIT" in (ex.REVEAL_DIR / "LICENSE").read_text() or "Permission is hereby" in (
        ex.REVEAL_DIR / "LICENSE"
    ).read_text()


def test_a_web_image_in_markdown_cannot_be_exported_offline():
    nb = toy_notebook()
    nb.cells.append(new_markdown_cell("![a cockatoo](https://example.org/cockatoo.png)"))
    with pytest.raises(common.OfflineExportError, match="https://example.org/cockatoo.png"):
        ex.notebook_to_html(nb, "html")


def test_a_local_image_in_markdown_is_embedded(tmp_path):
    import base64

    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    )
    (tmp_path / "dot.png").write_bytes(png)
    nb = new_notebook(cells=[new_markdown_cell("![dot](dot.png)")])
    nbformat.write(nb, tmp_path / "img.ipynb")
    page = ex.export_notebook(tmp_path / "img.ipynb", "html", out=tmp_path / "out")
    assert 'src="data:image/png;base64,' in page.read_text()


def test_bad_arguments_say_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="to must be 'html' or 'slides'"):
        ex.notebook_to_html(toy_notebook(), "pdf")
    with pytest.raises(FileNotFoundError, match="no notebook"):
        ex.export_notebook(tmp_path / "missing.ipynb")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="not a notebook"):
        ex.export_notebook(tmp_path / "notes.txt")


def test_cli_writes_both_formats_and_reports_failures(tmp_path, capsys):
    src = tmp_path / "toy.ipynb"
    nbformat.write(toy_notebook(), src)
    assert ex.main([str(src), "--to", "both", "--out", str(tmp_path / "site")]) == 0
    assert sorted(p.name for p in (tmp_path / "site").iterdir()) == ["toy.html", "toy.slides.html"]
    assert "toy.slides.html" in capsys.readouterr().out

    assert ex.main([str(tmp_path / "nope.ipynb")]) == 1
    assert "no notebook" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        ex.main([str(src), "--to", "pdf"])
    assert stop.value.code == 2
