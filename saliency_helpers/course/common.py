"""What the course tools share: kernels' environment, finding charts in outputs, summaries.

``run`` (execute the lectures), ``export`` (offline pages and slides) and ``grade`` (mark
submissions) all need the same few things; each lives here once:

* :func:`kernel_env`: the environment a notebook's kernel gets (course size, model);
* :func:`chart_outputs` / :func:`chart_spec`: the Altair charts among executed outputs,
  whichever renderer drew them (Vega-Lite mimetype or vega-embed HTML);
* :func:`collect`: the values a notebook showed with ``sh.summary.record``.

The Vega-Lite version used to draw a chart offline is chosen by
:func:`saliency_helpers.display.vl_convert_version`, which the students' ``save_png`` uses too.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd

from ..config import MODEL_ENV, QUICK_ENV
from ..summary import MIMETYPE, TABLE

__all__ = [
    "Chart",
    "course_folder",
    "OfflineExportError",
    "chart_outputs",
    "chart_spec",
    "collect",
    "from_json",
    "kernel_env",
    "spec_from_html",
    "SHUTDOWN",
]

#: How a headless run ends its kernel once every cell has run. nbclient's default,
#: ``"graceful"``, asks the kernel to exit and waits while the interpreter tears down torch and
#: the rest (measured: 2.6 s per notebook after ``sh.load_model()``, 0.3 s after ``print(1)``).
#: Nothing is left to run by then (the course registers no ``atexit`` work), so the kernel is
#: stopped at once; ``kernels.notebook_client`` and the grader's nbgrader
#: (``assignments.configure``) use it.
SHUTDOWN = "immediate"
VEGA_MIME = re.compile(r"^application/vnd\.(vega|vegalite)\.v(\d+)[.+]json$")  # Altair 6: ".json"
_SCHEMA_VERSION = re.compile(r"/schema/(vega|vega-lite)/v(\d+)(?:\.(\d+))?")
# Where a vega-embed loader script (Altair's renderers and similar) has the spec as JSON.
_SPEC_STARTS = re.compile(r"(?:\}\)\(|(?:var|let|const)\s+spec\s*=\s*)(?=\{)")
_OPT_START = re.compile(r"(?:var|let|const)\s+embedOpt\s*=\s*(?=\{)")


def course_folder(name: str) -> Path | None:
    """One of the course's top-level folders (``notebooks``, ``solutions``, ``exercises``).

    Args:
        name: the folder's name.

    Returns:
        The first of ``<repo>/<name>`` (the package's checkout, an editable install) and
        ``./<name>`` that holds ``NN_*.ipynb`` notebooks, or None.

    Example:
        >>> course_folder("notebooks").name
        'notebooks'
    """
    repo = Path(__file__).resolve().parents[2]
    for folder in (repo / name, Path.cwd() / name):
        if folder.is_dir() and any(folder.glob("[0-9][0-9]_*.ipynb")):
            return folder
    return None


def kernel_env(quick: bool, model: str | None = None) -> dict[str, str]:
    """The environment for a notebook kernel: this process's, with the course size and model.

    Args:
        quick: True sets ``SALIENCY_QUICK=1`` (the CI size); False removes it, so the size
            never depends on the calling shell.
        model: a model name for ``SALIENCY_MODEL``, or None to leave it as it is.

    Returns:
        A new dict for the kernel manager's ``env``.

    Example:
        >>> kernel_env(True)["SALIENCY_QUICK"]
        '1'
    """
    env = dict(os.environ)
    env.pop(QUICK_ENV, None)
    if quick:
        env[QUICK_ENV] = "1"
    if model is not None:
        env[MODEL_ENV] = model
    return env


# ----------------------------------------------------------------------------- charts


class OfflineExportError(ValueError):
    """An exported page would need the network (a web image, an unrecognised chart loader)."""


@dataclass(frozen=True)
class Chart:
    """One chart output found in a notebook.

    Attributes:
        cell: index of the cell in ``nb.cells``.
        output: index of the output in that cell's ``outputs``.
        mode: ``"vega-lite"`` or ``"vega"``.
        spec: the chart's specification (a JSON-able dict).
        options: vega-embed options saved with the chart (may be empty).
    """

    cell: int
    output: int
    mode: str
    spec: dict[str, Any]
    options: dict[str, Any]




def _json_at(text: str, pos: int) -> tuple[Any, int] | None:
    try:
        return json.JSONDecoder().raw_decode(text, pos)
    except json.JSONDecodeError:
        return None


def _spec_mode(spec: dict[str, Any], default: str = "vega-lite") -> str:
    match = _SCHEMA_VERSION.search(str(spec.get("$schema", "")))
    return match.group(1) if match else default


def spec_from_html(html: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Find the chart spec and embed options in a vega-embed loader's ``text/html``.

    Altair's renderers (default ``html``, ``colab``, ``kaggle``, ...) write the spec as JSON
    into a script that loads vega from a CDN; this reads it back.

    Args:
        html: one output's ``text/html``.

    Returns:
        ``(spec, embed_options)``, or None when the HTML holds no vega-embed chart.

    Example:
        >>> import altair as alt
        >>> chart = alt.Chart(alt.Data(values=[{"a": 1}])).mark_point().encode(x="a:Q")
        >>> spec, options = spec_from_html(chart._repr_mimebundle_()[0]["text/html"])
        >>> spec["mark"]["type"], options["mode"]
        ('point', 'vega-lite')
    """
    if "vegaEmbed" not in html:
        return None
    for start in _SPEC_STARTS.finditer(html):
        found = _json_at(html, start.end())
        if found is None or not isinstance(found[0], dict):
            continue
        spec, end = found
        if "vega" not in str(spec.get("$schema", "")):
            continue
        options: dict[str, Any] = {}
        rest = re.match(r"\s*,\s*(?=\{)", html[end:])  # the `})(spec, options)` form
        opt_pos = end + rest.end() if rest else None
        if opt_pos is None:
            named = _OPT_START.search(html, end)
            opt_pos = named.end() if named else None
        if opt_pos is not None:
            decoded = _json_at(html, opt_pos)
            if decoded is not None and isinstance(decoded[0], dict):
                options = decoded[0]
        return spec, options
    return None


def _looks_like_chart_loader(html: str) -> bool:
    return "vegaEmbed" in html or "npm/vega" in html


def chart_outputs(nb: nbformat.NotebookNode) -> list[Chart]:
    """Every chart output of a notebook, in order.

    A chart is an output with a vega or vega-lite mimetype, or a ``text/html`` output written
    by Altair's (or any) vega-embed loader.

    Args:
        nb: a notebook (``nbformat.read(path, as_version=4)``), usually executed.

    Returns:
        One :class:`Chart` per chart output; ``len(...)`` is the number of charts a page of
        this notebook must show.

    Raises:
        OfflineExportError: an output loads vega but its spec cannot be found.

    Example:
        >>> nb = nbformat.read("build/notebooks/05_grad_cam.ipynb", as_version=4)
        >>> [c.mode for c in chart_outputs(nb)][:1]
        ['vega-lite']
    """
    charts = []
    for ci, cell in enumerate(nb.cells):
        for oi, out in enumerate(cell.get("outputs", [])):
            data = out.get("data", {})
            mime = next((k for k in data if VEGA_MIME.match(k)), None)
            if mime is not None:
                spec = data[mime]
                spec = json.loads(spec) if isinstance(spec, str) else dict(spec)
                kind = VEGA_MIME.match(mime).group(1)  # type: ignore[union-attr]
                mode = "vega-lite" if kind == "vegalite" else "vega"
                options = dict(out.get("metadata", {}).get(mime, {}).get("embed_options", {}))
                charts.append(Chart(ci, oi, mode, spec, options))
                continue
            html = data.get("text/html")
            if isinstance(html, list):
                html = "".join(html)
            if not html or not _looks_like_chart_loader(html):
                continue
            found = spec_from_html(html)
            if found is None:
                raise OfflineExportError(
                    f"cell {ci}, output {oi}: this text/html loads vega from the web but its "
                    "chart spec could not be found, so it cannot be made to work offline. "
                    "Show the chart with Altair's default or 'mimetype' renderer."
                )
            spec, options = found
            mode = str(options.get("mode") or _spec_mode(spec))
            charts.append(Chart(ci, oi, mode, dict(spec), dict(options)))
    return charts


def chart_spec(outputs: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The Vega-Lite spec of the last Altair chart among one cell's outputs.

    Args:
        outputs: the cell's outputs (``display_data`` / ``execute_result`` dicts).

    Returns:
        The spec as a dict, or None if no output holds a Vega-Lite chart.

    Example:
        >>> chart_spec(nb.cells[12].outputs)["mark"]
        {'type': 'image', ...}
    """
    cell = nbformat.from_dict({"cell_type": "code", "outputs": list(outputs)})
    charts = chart_outputs(nbformat.from_dict({"cells": [cell]}))
    found = [c for c in charts if c.mode == "vega-lite"]
    return found[-1].spec if found else None


# ----------------------------------------------------------------------------- summaries


def from_json(value: Any) -> Any:
    """Undo :func:`saliency_helpers.summary.to_json` for tables: they become DataFrames again.

    Args:
        value: A value as stored by ``sh.summary.record``.

    Returns:
        The value, with every encoded table turned back into a ``pandas.DataFrame``.
    """
    if isinstance(value, dict) and value.get("kind") == TABLE:
        return pd.DataFrame(value["data"], index=value["index"], columns=value["columns"])
    if isinstance(value, dict):
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def collect(cells: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Read the values that ``sh.summary.record`` displayed in executed notebook cells.

    Args:
        cells: The cells of an executed notebook (``nbformat`` cells or plain dicts).

    Returns:
        ``{key: value}`` in the order recorded (a later record of the same key wins);
        tables come back as ``pandas.DataFrame``.

    Example:
        >>> collect(nbformat.read("build/notebooks/03_integrated_gradients.ipynb", 4).cells)
        {'ig_completeness_error': {'error': 0.0029, ...}}
    """
    found: dict[str, Any] = {}
    for cell in cells:
        for output in cell.get("outputs", []):
            payload = output.get("data", {}).get(MIMETYPE)
            if isinstance(payload, Mapping) and "key" in payload:
                found[str(payload["key"])] = from_json(payload.get("value"))
    return found
