"""Export executed notebooks to standalone HTML pages and reveal.js slide decks that work offline.

Usage::

    saliency-course export build/notebooks/01_gradients.ipynb [MORE.ipynb ...]
                                      [--to html|slides|both] [--out DIR]

Each notebook becomes one self-contained file, ``DIR/<name>.html`` (the notebook as a page,
nbconvert's ``lab`` look) or ``DIR/<name>.slides.html`` (a reveal.js deck built from the
cells' ``slideshow`` metadata, as RISE shows it in JupyterLab). ``DIR`` defaults to the
notebook's folder. The file opens from disk with no network: nbconvert's own templates load
require.js, jQuery, MathJax, reveal.js and the widget manager from CDNs, and Altair's charts
load vega, vega-lite and vega-embed from a CDN; here everything is inlined once per file:

* **charts**: Altair's outputs (the ``text/html`` of its default renderer, or the vega-lite /
  vega mimetypes, ``application/vnd.vegalite.v5+json`` or Altair 6's ``...v6.json``) become a
  ``<div class="saliency-chart">`` plus the spec as JSON; one script (vega-embed with vega and
  vega-lite, bundled by ``vl_convert.javascript_bundle()`` for the specs' Vega-Lite version)
  renders them all. Each container gets ``data-status="rendered"`` or ``"error"``; an error is
  also written into the container and to the console. Vega-embed's "Open in Vega Editor"
  action (an online editor) is switched off.
* **math**: every formula in markdown (``$...$``, ``$$...$$``, ``\\begin{...}``) is turned
  into MathML by ``latex2mathml`` when the page is written; browsers draw MathML themselves, so
  no MathJax and no web fonts are needed.
* **slides**: reveal.js 5 and its notes plugin (press ``s`` for the speaker view) from the
  copy in ``saliency_helpers/course/vendor/reveal/``; nbconvert's settings
  (``SlidesExporter.reveal_theme``, default
  ``simple``, transition, size) apply. The theme's web fonts (``@import`` of Google Fonts or of
  font files) are left out, so slides use the notebook's fonts. Every slide fits the deck's
  size (see the README's lecture-mode section): :func:`for_slides` folds long code cells and
  cuts long printouts when the file is written (the rule for code on slides, with the cell
  tags ``slides:hide-code`` and ``slides:show-code``), wrapped facets get fewer columns, and
  ``slides_fit.js`` lays the deck out in the browser once reveal.js and the charts are ready:
  a slide too tall continues on a new vertical slide, a chart too big is scaled down, never
  cropped (``slides.css`` has the projector-sized code and wrapped lines).
* **widgets**: ipywidgets need a live kernel; their saved view would load the widget manager
  from a CDN and their ``text/plain`` fallback is a stale snapshot (a progress bar at 0 %), so
  each widget output becomes a one-line note (``widgets="note"``, default), disappears
  (``"drop"``) or keeps its text fallback (``"text"``).
* **images** referenced from markdown by a relative path are embedded as data URIs.

The rule every exported file obeys (checked before writing, see :func:`external_references`):
nothing the browser loads by itself points off the machine, i.e. no ``src`` of any element,
no ``href`` of a ``<link>`` and no ``url(...)``/``@import`` in CSS starts with ``http://``,
``https://`` or ``//``. Plain ``<a href>`` links in the notebook's text stay (they load only
when clicked). A notebook whose markdown shows a web image cannot obey the rule and raises
:class:`OfflineExportError` naming the address.

Example:
    >>> from saliency_helpers.course.export import export_notebook
    >>> page = export_notebook("build/notebooks/05_grad_cam.ipynb", to="html", out="build/html")
    >>> page.name
    '05_grad_cam.html'
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import json
import re
import sys
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal

import nbformat

from ..display import vl_convert_version
from .common import Chart, OfflineExportError, chart_outputs

Format = Literal["html", "slides"]
WidgetPolicy = Literal["note", "drop", "text"]
FORMATS: tuple[str, ...] = ("html", "slides")
SUFFIX = {"html": ".html", "slides": ".slides.html"}

_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
_OFFSITE = re.compile(r"^\s*(?:https?:)?//", re.IGNORECASE)
_CSS_URL = re.compile(r"""url\(\s*['"]?([^'")\s]+)|@import\s+['"]([^'"]+)""", re.IGNORECASE)

NOTE_HTML = (
    '<div class="saliency-widget-note"><em>An interactive widget was here: '
    "run the notebook in JupyterLab to use it.</em></div>"
)


# ----------------------------------------------------------------------------- making it offline


def _script_json(value: Any) -> str:
    # "<" only occurs inside JSON strings, where \u003c means the same: nothing can close the
    # <script> element early.
    return json.dumps(value, separators=(",", ":")).replace("<", "\\u003c")


def _embed_options(options: dict[str, Any], mode: str) -> dict[str, Any]:
    merged = {key: value for key, value in options.items() if key != "mode"}
    merged["mode"] = mode
    actions = merged.get("actions", True)
    if actions is True:  # export/source/compiled work offline; the Vega Editor is a website
        merged["actions"] = {"export": True, "source": True, "compiled": True, "editor": False}
    elif isinstance(actions, dict):
        merged["actions"] = {**actions, "editor": False}
    return merged


def _chart_html(index: int, chart: Chart) -> str:
    payload = {"spec": chart.spec, "options": _embed_options(chart.options, chart.mode)}
    return (
        f'<div class="saliency-chart" id="saliency-chart-{index}"></div>\n'
        f'<script type="application/json" id="saliency-chart-{index}-spec">'
        f"{_script_json(payload)}</script>"
    )


def prepare_offline(
    nb: nbformat.NotebookNode, widgets: WidgetPolicy = "note", *, chart_width: int | None = None
) -> tuple[nbformat.NotebookNode, list[Chart]]:
    """A copy of ``nb`` whose outputs need no network, and the charts it shows.

    Charts become a container plus their spec (rendered by the page's one vega-embed script),
    widget outputs follow ``widgets``, and the saved widget state is removed.

    Args:
        nb: a notebook, usually executed; it is not modified.
        widgets: ``"note"`` (default) replaces each widget output by a one-line note,
            ``"drop"`` removes it, ``"text"`` keeps its ``text/plain`` fallback.
        chart_width: for slides, the width in px a row of faceted panels may take: wrapped
            facets get fewer columns (more rows) to fit (default: charts as saved).

    Returns:
        ``(offline_copy, charts)``.

    Raises:
        ValueError: ``widgets`` is not one of the three policies.

    Example:
        >>> offline, charts = prepare_offline(nbformat.read("executed.ipynb", as_version=4))
    """
    if widgets not in ("note", "drop", "text"):
        raise ValueError(f"widgets must be 'note', 'drop' or 'text', not {widgets!r}")
    nb = copy.deepcopy(nb)
    charts = chart_outputs(nb)
    if chart_width is not None:
        charts = [dataclasses.replace(c, spec=_fit_columns(c.spec, chart_width)) for c in charts]
    by_place = {(c.cell, c.output): (i, c) for i, c in enumerate(charts)}
    for ci, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        kept = []
        for oi, out in enumerate(cell.get("outputs", [])):
            data = out.get("data")
            if (ci, oi) in by_place:
                index, chart = by_place[(ci, oi)]
                out["data"] = {"text/html": _chart_html(index, chart)}
                out["metadata"] = {}
            elif data is not None and _WIDGET_MIME in data:
                if widgets == "drop":
                    continue
                if widgets == "note":
                    out["data"] = {"text/html": NOTE_HTML}
                else:
                    out["data"] = {k: v for k, v in data.items() if k != _WIDGET_MIME}
                    if not out["data"]:
                        continue
            kept.append(out)
        cell["outputs"] = kept
    nb.metadata.pop("widgets", None)
    return nb, charts


# ----------------------------------------------------------------------------- bundled assets


#: The copy of reveal.js inlined into slide decks (see its README for why a copy).
REVEAL_DIR = Path(__file__).resolve().parent / "vendor" / "reveal"


def _inline_script(code: str) -> str:
    # A literal "</script" would end the element early; "<\/" means "</" in JS strings and
    # regular expressions alike.
    code = re.sub(r"</(script)", r"<\\/\1", code, flags=re.IGNORECASE)
    return f"<script>\n{code}\n</script>"


@functools.lru_cache(maxsize=4)
def _vega_bundle(vl_version: str | None) -> str:
    import vl_convert

    return vl_convert.javascript_bundle(vl_version=vl_version)


CHARTS_JS = """
(function () {
  const drawn = [];
  for (const div of document.querySelectorAll("div.saliency-chart")) {
    let payload;
    try {
      payload = JSON.parse(document.getElementById(div.id + "-spec").textContent);
    } catch (err) {
      div.dataset.status = "error";
      console.error("saliency chart " + div.id + ": unreadable spec: " + err);
      continue;
    }
    drawn.push(vegaEmbed(div, payload.spec, payload.options)
      .then(function () { div.dataset.status = "rendered"; })
      .catch(function (err) {
        div.dataset.status = "error";
        div.textContent = "This chart could not be drawn: " + err.message;
        div.style.color = "#b00";
        console.error("saliency chart " + div.id + ": " + err.message);
      }));
  }
  // Slides lay themselves out once every chart has its size (see SLIDES_JS).
  window.saliencyChartsDrawn = Promise.allSettled(drawn);
})();
"""

#: The deck's layout rules, applied in the browser once reveal.js and every chart are ready
#: (see ``slides_fit.js`` for the rules).
SLIDES_FIT_JS = Path(__file__).resolve().parent / "slides_fit.js"
SLIDES_CSS = Path(__file__).resolve().parent / "slides.css"

SLIDES_JS = """
document.documentElement.dataset.saliencyFit = "pending";
Promise.all([
  Reveal.initialize({
    controls: true,
    progress: true,
    history: true,
    transition: %(transition)s,
    slideNumber: %(number)s,
    width: %(width)s,
    height: %(height)s,
    plugins: [RevealNotes]
  }),
  // the charts' script comes after this one: wait until the page is parsed, then for it
  new Promise(function (parsed) {
    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", parsed);
    } else {
      parsed();
    }
  }).then(function () { return window.saliencyChartsDrawn; })
]).then(function () { saliencyFitSlides(Reveal); });
"""


def _css(text: str) -> str:
    # The reveal theme @imports its web font from files next to it: left out (see module doc).
    text = re.sub(r"@import\s+url\([^)]*\)\s*;?", "", text)
    return f'<style type="text/css">\n{text}\n</style>'


def _mathml(tex: str, display: str) -> str:
    """A TeX formula as MathML, which browsers draw themselves: no MathJax on the page."""
    from latex2mathml.converter import convert

    try:
        return convert(tex, display=display)
    except Exception as err:  # latex2mathml raises its own exception types per construct
        raise OfflineExportError(
            f"the formula {tex.strip()[:80]!r} could not be turned into MathML "
            f"({type(err).__name__}: {err}); rewrite it with standard LaTeX commands"
        ) from None


def _mathml_renderer(base: type) -> type:
    """nbconvert's markdown renderer, with every formula drawn as MathML."""

    class MathMLRenderer(base):
        def block_math(self, body: str) -> str:
            return _mathml(body, "block")

        def inline_math(self, body: str) -> str:
            return _mathml(body, "inline")

        def latex_environment(self, name: str, body: str) -> str:
            return _mathml(f"\\begin{{{name}}}{body}\\end{{{name}}}", "block")

    return MathMLRenderer


# ----------------------------------------------------------------------------- slides that fit

#: A code cell with more lines than this is folded on slides (one line, opened by a click).
CODE_LINES = 10
#: Printed text keeps this many lines on slides, a printed (HTML) table this many rows.
OUTPUT_LINES = 12
TABLE_ROWS = 10
#: Cell tags for slides: the code of a ``hide`` cell is left out of the deck (its output stays),
#: the code of a ``show`` cell is shown in full however long it is. The notebook keeps both.
HIDE_CODE_TAG = "slides:hide-code"
SHOW_CODE_TAG = "slides:show-code"
#: Width in px a chart may take on a slide of the default 960 px (before it is scaled down).
SLIDE_CHART_WIDTH = 900

_ROW = re.compile(r"<tr[\s>]", re.IGNORECASE)


def _more(n: int, what: str) -> str:
    return f"… {n} more {what}: see the notebook"


def _truncate_text(text: str, lines: int = OUTPUT_LINES) -> str:
    kept = text.splitlines()
    if len(kept) <= lines + 1:  # no "1 more line" note instead of that line
        return text
    return "\n".join(kept[:lines]) + "\n" + _more(len(kept) - lines, "lines") + "\n"


def _truncate_table(html: str, rows: int = TABLE_ROWS) -> str:
    start = html.lower().find("<tbody")
    end = html.lower().find("</tbody>", start)
    if start < 0 or end < 0:
        return html
    body = html[start:end]
    starts = [m.start() for m in _ROW.finditer(body)]
    if len(starts) <= rows + 1:
        return html
    more = _more(len(starts) - rows, "rows")
    note = f'<tr><td class="saliency-more" colspan="99">{more}</td></tr>'
    return html[:start] + body[: starts[rows]] + note + html[end:]


def _fit_columns(spec: Any, width: int = SLIDE_CHART_WIDTH) -> Any:
    """A copy of a Vega-Lite spec whose wrapped facets (``facet`` + ``columns``, as
    ``sh.heatmaps`` draws a row of maps) have no more panels in a row than fit ``width``."""
    if isinstance(spec, list):
        return [_fit_columns(item, width) for item in spec]
    if not isinstance(spec, dict):
        return spec
    spec = {key: _fit_columns(value, width) for key, value in spec.items()}
    inner = spec.get("spec")
    panel = inner.get("width") if isinstance(inner, dict) else None
    if "facet" in spec and isinstance(spec.get("columns"), int) and isinstance(panel, (int, float)):
        spacing = spec.get("spacing", 20)
        spacing = spacing if isinstance(spacing, (int, float)) else 20
        fit = max(1, int((width + spacing) // (panel + spacing)))
        spec["columns"] = min(spec["columns"], fit)
    return spec


def for_slides(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` made for slides: long code folded, long printouts cut.

    The rule for code on slides: a code cell of up to :data:`CODE_LINES` lines is shown in
    full (wrapped, projector-sized, see ``slides.css``); a longer one is folded to one line
    that opens it on a click, unless tagged :data:`SHOW_CODE_TAG`; a cell tagged
    :data:`HIDE_CODE_TAG` shows only its output (nbconvert's ``TagRemovePreprocessor`` drops
    the code when the deck is written). Printed text keeps its first :data:`OUTPUT_LINES`
    lines and an HTML table its first :data:`TABLE_ROWS` rows, with a note of how many more
    the notebook has. The notebook itself is not changed.

    Args:
        nb: a notebook (usually the offline copy of an executed one).

    Returns:
        The copy; folded cells carry ``metadata.saliency_fold`` (their number of lines).

    Example:
        >>> deck_nb = for_slides(nbformat.read("executed.ipynb", as_version=4))
    """
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.get("tags", [])
        lines = len(cell.source.splitlines())
        if lines > CODE_LINES and HIDE_CODE_TAG not in tags and SHOW_CODE_TAG not in tags:
            cell.metadata["saliency_fold"] = lines
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                out["text"] = _truncate_text(out.get("text", ""))
            elif out.get("output_type") == "error":
                out["traceback"] = _truncate_text("\n".join(out.get("traceback", []))).split("\n")
            elif "data" in out:
                data = out["data"]
                if "text/html" in data and "saliency-chart" not in data["text/html"]:
                    data["text/html"] = _truncate_table(data["text/html"])
                elif "text/plain" in data:
                    data["text/plain"] = _truncate_text(data["text/plain"])
    return nb


# ----------------------------------------------------------------------------- templates

_LAB_TEMPLATE = """
{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block data_widget_view -%}{%- endblock data_widget_view -%}
{%- block footer_js -%}{{ resources.saliency.charts }}{%- endblock footer_js -%}
"""

# reveal's own header links reveal.js' CSS from a CDN outside any smaller block, so the whole
# header is restated here with the CSS inlined (nbconvert's notebook CSS kept via super()).
_REVEAL_TEMPLATE = """
{%- extends 'index.html.j2' -%}
{%- block header -%}
<!DOCTYPE html>
<html lang="{{ resources.language_code }}">
<head>
{%- block html_head -%}
<meta charset="utf-8" />
<meta name="viewport" content="width=device-width, initial-scale=1.0">
{% set nb_title = nb.metadata.get('title', resources['metadata']['name']) %}
<title>{{ nb_title | escape_html_keep_quotes }} slides</title>
{{ resources.saliency.reveal_css }}
{% for css in resources.inlining.css -%}
<style type="text/css">
{{ css }}
</style>
{% endfor %}
{%- block notebook_css -%}{{ super() }}{%- endblock notebook_css -%}
{%- endblock html_head -%}
{{ resources.saliency.reveal_theme }}
</head>
{%- endblock header -%}
{%- block data_widget_view -%}{%- endblock data_widget_view -%}
{%- block input_group -%}
{%- set lines = cell.metadata.get('saliency_fold') -%}
{%- if lines -%}
<details class="saliency-code"><summary>code: {{ lines }} lines (click to show; all of it in the
notebook)</summary>
{{ super() }}
</details>
{%- else -%}
{{ super() }}
{%- endif -%}
{%- endblock input_group -%}
{%- block footer_js -%}
{{ resources.saliency.reveal_js }}
{{ resources.saliency.charts }}
{%- endblock footer_js -%}
"""


def _exporter(to: Format) -> Any:
    from jinja2 import DictLoader, pass_context
    from nbconvert import HTMLExporter, SlidesExporter
    from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
    from nbconvert.preprocessors import TagRemovePreprocessor

    renderer_class = _mathml_renderer(IPythonRenderer)

    def markdown2html(self: Any, context: Any, source: str) -> str:
        # nbconvert's own markdown filter (HTMLExporter.markdown2html), with MathML math.
        cell = context.get("cell", {})
        renderer = renderer_class(
            escape=False,
            attachments=cell.get("attachments", {}),
            embed_images=self.embed_images,
            path=context.get("resources", {}).get("metadata", {}).get("path", ""),
            anchor_link_text=self.anchor_link_text,
            exclude_anchor_links=self.exclude_anchor_links,
            **getattr(self, "lexer_options", {}),
        )
        return MarkdownWithMath(renderer=renderer).render(source)

    base = HTMLExporter if to == "html" else SlidesExporter
    offline = type("OfflineExporter", (base,), {"markdown2html": pass_context(markdown2html)})
    if to == "html":
        exporter = offline(template_name="lab", embed_images=True)
        template = _LAB_TEMPLATE
    else:
        exporter = offline(template_name="reveal", embed_images=True)
        template = _REVEAL_TEMPLATE
        exporter.register_preprocessor(
            TagRemovePreprocessor(remove_input_tags={HIDE_CODE_TAG}, enabled=True), enabled=True
        )
    exporter.extra_loaders = [DictLoader({"saliency_offline.html.j2": template})]
    exporter.template_file = "saliency_offline.html.j2"
    return exporter


# ----------------------------------------------------------------------------- the rule


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            loads = name in ("src", "srcset", "poster", "data", "background") or (
                name == "href" and tag in ("link", "image", "use", "base")
            )
            if loads and _OFFSITE.match(value):
                self.found.append(f"<{tag} {name}={value!r}>")
            if name == "style":
                self._css(value, f"<{tag} style>")
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self._css(data, "<style>")

    def _css(self, text: str, where: str) -> None:
        for match in _CSS_URL.finditer(text):
            target = match.group(1) or match.group(2)
            if _OFFSITE.match(target):
                self.found.append(f"{where} {target}")


def external_references(html: str) -> list[str]:
    """Everything in ``html`` that the browser would load from off the machine by itself.

    The rule: no element's ``src`` (also ``srcset``, ``poster``, ``data``), no ``href`` of a
    ``<link>`` (or SVG ``<image>``/``<use>``, ``<base>``), no CSS ``url(...)`` or ``@import``
    starting with ``http://``, ``https://`` or ``//``. ``<a href>`` links are allowed: they
    load only when clicked.

    Args:
        html: a whole HTML document.

    Returns:
        One description per offending reference, e.g. ``"<script src='https://...'>"``;
        empty when the page is offline-clean.

    Example:
        >>> external_references('<a href="https://arxiv.org">paper</a>')
        []
        >>> external_references('<script src="https://cdn.example/x.js"></script>')
        ["<script src='https://cdn.example/x.js'>"]
    """
    parser = _References()
    parser.feed(html)
    parser.close()
    return parser.found


# ----------------------------------------------------------------------------- export


def notebook_to_html(
    nb: nbformat.NotebookNode,
    to: Format = "html",
    *,
    name: str = "notebook",
    path: str | Path | None = None,
    widgets: WidgetPolicy = "note",
) -> str:
    """Render a notebook as one offline HTML document (a page or a reveal.js deck).

    Args:
        nb: the notebook, usually executed (``nbformat.read(path, as_version=4)``).
        to: ``"html"`` for the notebook as a page, ``"slides"`` for a reveal.js deck.
        name: the document's title when the notebook's metadata has none.
        path: the notebook's folder, for images its markdown references by a relative path.
        widgets: what becomes of widget outputs, see :func:`prepare_offline`.

    Returns:
        The HTML text; it obeys the rule of :func:`external_references`.

    Raises:
        ValueError: ``to`` is not ``"html"`` or ``"slides"``.
        OfflineExportError: the page would still load something from the web.

    Example:
        >>> html = notebook_to_html(nbformat.read("executed.ipynb", as_version=4), "slides")
    """
    if to not in FORMATS:
        raise ValueError(f"to must be 'html' or 'slides', not {to!r}")
    slides = to == "slides"
    offline, charts = prepare_offline(
        nb, widgets=widgets, chart_width=SLIDE_CHART_WIDTH if slides else None
    )
    if slides:
        offline = for_slides(offline)
    saliency: dict[str, str] = {"charts": ""}
    if charts:
        bundle = _vega_bundle(
            vl_convert_version(c.spec.get("$schema", "") for c in charts if c.mode == "vega-lite")
        )
        saliency["charts"] = _inline_script(bundle) + "\n" + _inline_script(CHARTS_JS)

    exporter = _exporter(to)
    if to == "slides":
        reveal = REVEAL_DIR
        theme = reveal / "dist" / "theme" / f"{exporter.reveal_theme}.css"
        if not theme.is_file():
            raise ValueError(f"no reveal.js theme {exporter.reveal_theme!r} in {theme.parent}")
        saliency["reveal_css"] = _css((reveal / "dist/reveal.css").read_text(encoding="utf-8"))
        saliency["reveal_theme"] = _css(
            theme.read_text(encoding="utf-8") + SLIDES_CSS.read_text(encoding="utf-8")
        )
        settings = {
            "transition": json.dumps(exporter.reveal_transition),
            "number": json.dumps(exporter.reveal_number or False),
            "width": int(exporter.reveal_width or 960),  # nbconvert's template defaults
            "height": int(exporter.reveal_height or 700),
        }
        saliency["reveal_js"] = (
            "\n".join(
                _inline_script((reveal / part).read_text(encoding="utf-8"))
                for part in ("dist/reveal.js", "plugin/notes/notes.js")
            )
            + "\n"
            + _inline_script(SLIDES_FIT_JS.read_text(encoding="utf-8"))
            + "\n"
            + _inline_script(SLIDES_JS % settings)
        )

    from markupsafe import Markup

    resources = {
        "metadata": {"name": name, "path": str(path) if path is not None else ""},
        "saliency": {key: Markup(value) for key, value in saliency.items()},
    }
    html, _ = exporter.from_notebook_node(offline, resources=resources)
    problems = external_references(html)
    if problems:
        listed = "\n  ".join(problems[:10])
        raise OfflineExportError(
            f"the exported page would load {len(problems)} thing(s) from the web:\n  {listed}\n"
            "Put images next to the notebook and reference them by a relative path."
        )
    return html


def export_notebook(
    notebook: str | Path,
    to: Format = "html",
    out: str | Path | None = None,
    *,
    widgets: WidgetPolicy = "note",
) -> Path:
    """Export one notebook file to an offline ``.html`` page or ``.slides.html`` deck.

    Args:
        notebook: path of an ``.ipynb`` (executed, so its charts show).
        to: ``"html"`` or ``"slides"``.
        out: the folder to write into (created if needed); default the notebook's folder.
        widgets: what becomes of widget outputs, see :func:`prepare_offline`.

    Returns:
        The written file, ``out/<name>.html`` or ``out/<name>.slides.html``.

    Raises:
        FileNotFoundError: no such notebook.
        ValueError: not a notebook, or a bad ``to``/``widgets``.
        OfflineExportError: the page would still load something from the web.

    Example:
        >>> export_notebook("build/notebooks/01_gradients.ipynb", "slides", out="build/slides")
        PosixPath('build/slides/01_gradients.slides.html')
    """
    src = Path(notebook)
    if not src.is_file():
        raise FileNotFoundError(f"no notebook at {src}")
    if src.suffix != ".ipynb":
        raise ValueError(f"{src} is not a notebook (.ipynb)")
    if to not in FORMATS:
        raise ValueError(f"to must be 'html' or 'slides', not {to!r}")
    nb = nbformat.read(src, as_version=4)
    html = notebook_to_html(nb, to, name=src.stem, path=src.parent, widgets=widgets)
    target_dir = Path(out) if out is not None else src.parent
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"{src.stem}{SUFFIX[to]}"
    target.write_text(html, encoding="utf-8")
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: ``saliency-course export NOTEBOOK... [--to] [--out]``.

    Args:
        argv: the arguments (default ``sys.argv[1:]``).

    Returns:
        0 when every notebook was written, 1 when one failed (its reason is printed).
    """
    parser = argparse.ArgumentParser(
        prog="saliency-course export",
        description="Export executed notebooks to offline HTML pages and reveal.js slides.",
    )
    parser.add_argument("notebooks", nargs="+", type=Path, help="executed .ipynb files")
    parser.add_argument(
        "--to", choices=["html", "slides", "both"], default="html", help="default: html"
    )
    parser.add_argument("--out", type=Path, default=None, help="default: each notebook's folder")
    parser.add_argument(
        "--widgets",
        choices=["note", "drop", "text"],
        default="note",
        help="widget outputs become a note (default), disappear, or keep their text",
    )
    args = parser.parse_args(argv)
    formats: list[Format] = ["html", "slides"] if args.to == "both" else [args.to]
    failed = 0
    for path in args.notebooks:
        for to in formats:
            try:
                written = export_notebook(path, to, args.out, widgets=args.widgets)
            except (OSError, ValueError, ImportError) as err:
                failed += 1
                print(f"{path}: {err}", file=sys.stderr)
                continue
            print(f"{written}  ({written.stat().st_size / 1e6:.1f} MB)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
