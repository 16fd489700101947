"""Run the whole course headlessly: execute every lecture notebook, export figures, summarise.

Usage::

    python -m saliency_helpers run [--quick] [--only 03 ...] [--model NAME] [--timeout S]
                                   [--out DIR] [--figures DIR | --no-figures] [--fail-fast]
                                   [--notebooks DIR] [--kernel NAME]

(also installed as ``saliency-course run``). Each lecture notebook ``notebooks/NN_name.ipynb``
runs top to bottom in a fresh kernel, with the notebook's folder as working directory and a
progress bar that advances per code cell. Then:

* the executed copy goes to ``OUT/NN_name.ipynb`` (default ``build/notebooks/``), also when
  a cell fails, so the full traceback can be read there;
* every code cell tagged ``figure:<stem>`` (``<stem>`` starts with the notebook's ``NN_``)
  must show an Altair chart; it is rendered offline with vl-convert to
  ``FIGURES/<stem>.png`` (default the repository's ``figures/``);
* values the notebooks show with :func:`saliency_helpers.summary.record` are collected into
  a one-screen summary: the model and why, the corella's top-1 class, IG's completeness
  error, the cascade's similarity table, the data-randomization accuracies, wall times.

Sizes: the default is the full-size run (what an instructor runs before class);
``--quick`` sets ``SALIENCY_QUICK=1`` in the kernels (the CI size). Without ``--quick`` the
variable is removed from the kernels' environment, so the size never depends on the shell.
``--model`` sets ``SALIENCY_MODEL`` in the kernels.

A failing cell stops its notebook; the other notebooks still run (``--fail-fast`` stops
everything). The report names the notebook, the code cell's number (its ``In [N]`` in the
executed copy), its first line and the last lines of the error. Exit code: 0 when every
notebook ran and every figure was written, 1 otherwise, 2 for bad options.

Example:
    >>> result = run_course(only=["00", "01"], quick=True, figures=None, progress=False)
    >>> print(format_summary(result))
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import textwrap
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import vl_convert
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from tqdm.auto import tqdm

from ..display import vl_convert_version
from ..models import MODEL_NAMES
from .common import chart_spec, collect, course_folder, kernel_env
from .kernels import notebook_client

__all__ = [
    "CellFailure",
    "CourseResult",
    "NotebookRun",
    "default_notebooks_dir",
    "figure_tags",
    "find_notebooks",
    "format_failures",
    "format_summary",
    "main",
    "run_course",
    "run_notebook",
    "select_notebooks",
]

FIGURE_TAG = "figure:"
PNG_SCALE = 2  # pixel density of exported figures: sharp on slides
ERROR_LINES = 6  # how much of a traceback's end the report shows
_NOTEBOOK = re.compile(r"^(\d\d)_\w+$")
_STEM = re.compile(r"^\d\d_[a-z0-9_]+$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class CellFailure:
    """Why a notebook stopped.

    Attributes:
        notebook: Notebook stem, e.g. ``"03_integrated_gradients"``.
        cell: 1-based number of the code cell (its ``In [N]``), or None if no cell was to blame
            (the kernel did not start).
        first_line: First non-empty source line of that cell.
        error: The last lines of the error, ANSI colours removed.
    """

    notebook: str
    cell: int | None
    first_line: str
    error: str

    def __str__(self) -> str:
        where = f"cell {self.cell}: {self.first_line}" if self.cell else "before the first cell"
        body = textwrap.indent(self.error, "    ")
        return f"{self.notebook}, {where}\n{body}"


@dataclass
class NotebookRun:
    """One executed notebook.

    Attributes:
        name: Notebook stem, e.g. ``"00_setup"``.
        source: The lecture notebook that was run.
        executed: Where its executed copy was written.
        seconds: Wall time from kernel start to shutdown.
        cells_run: Code cells that finished without error.
        cells_total: Code cells in the notebook.
        failure: Why it stopped early, or None.
        figures: ``{stem: png_path}`` of the figures written.
        figure_problems: One line per tagged figure that could not be written although
            its cell ran.
        figures_not_reached: Tagged figures whose cells did not run (the notebook stopped).
        summary: ``{key: value}`` recorded by the notebook (see :mod:`saliency_helpers.summary`).
    """

    name: str
    source: Path
    executed: Path
    seconds: float
    cells_run: int
    cells_total: int
    failure: CellFailure | None = None
    figures: dict[str, Path] = field(default_factory=dict)
    figure_problems: list[str] = field(default_factory=list)
    figures_not_reached: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every cell ran and every tagged figure was written."""
        return self.failure is None and not self.figure_problems


@dataclass
class CourseResult:
    """The outcome of :func:`run_course`.

    Attributes:
        runs: One :class:`NotebookRun` per notebook executed, in order.
        seconds: Total wall time.
        quick: Whether the kernels ran with ``SALIENCY_QUICK=1``.
        model: The ``SALIENCY_MODEL`` given to the kernels (None: inherited or automatic).
        not_run: Selected notebooks skipped after a failure under ``fail_fast``.
    """

    runs: list[NotebookRun]
    seconds: float
    quick: bool
    model: str | None = None
    not_run: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every notebook ran to the end and every figure was written."""
        return all(run.ok for run in self.runs) and not self.not_run

    @property
    def summary(self) -> dict[str, Any]:
        """All recorded values, ``{key: value}``, in notebook order."""
        return {k: v for run in self.runs for k, v in run.summary.items()}

    @property
    def figures(self) -> dict[str, Path]:
        """All figures written, ``{stem: png_path}``."""
        return {k: v for run in self.runs for k, v in run.figures.items()}

    @property
    def times(self) -> dict[str, float]:
        """Wall time per notebook in seconds, ``{name: seconds}``."""
        return {run.name: run.seconds for run in self.runs}


# --------------------------------------------------------------------------- discovery


def default_notebooks_dir() -> Path | None:
    """The course's ``notebooks/`` folder: next to the package (editable install) or in cwd."""
    return course_folder("notebooks")


def find_notebooks(folder: str | Path | None = None) -> list[Path]:
    """List the lecture notebooks ``NN_name.ipynb`` of a folder, in order.

    Args:
        folder: Where to look; default :func:`default_notebooks_dir`.

    Returns:
        The notebook paths, sorted by name.

    Raises:
        FileNotFoundError: No folder, or no ``NN_name.ipynb`` in it; the message says what
            to pass instead.
    """
    if folder is None:
        found = default_notebooks_dir()
        if found is None:
            raise FileNotFoundError(
                "no lecture notebooks found (looked for notebooks/NN_name.ipynb next to the "
                "saliency_helpers package and in the current folder); run from the course "
                "repository or pass --notebooks DIR"
            )
        folder = found
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"notebooks folder not found: {folder}")
    paths = sorted(p for p in folder.glob("*.ipynb") if _NOTEBOOK.match(p.stem))
    if not paths:
        raise FileNotFoundError(f"no notebooks named NN_name.ipynb in {folder}")
    return paths


def select_notebooks(paths: Sequence[Path], only: Sequence[str] = ()) -> list[Path]:
    """Keep the notebooks named in ``only`` (all of them when ``only`` is empty).

    Args:
        paths: Candidate notebooks, as from :func:`find_notebooks`.
        only: Names such as ``"03"``, ``"3"``, ``"03_integrated_gradients"`` or
            ``"03_integrated_gradients.ipynb"``; each item may be a comma-separated list.

    Returns:
        The selected paths, in course order.

    Raises:
        ValueError: A name matches no notebook; the message lists the available ones.

    Example:
        >>> select_notebooks(find_notebooks(), ["00,01", "3"])
    """
    wanted = [w.strip() for item in only for w in item.split(",") if w.strip()]
    if not wanted:
        return list(paths)
    chosen: set[Path] = set()
    for name in wanted:
        stem = name.removesuffix(".ipynb")
        if stem.isdigit():
            stem = f"{int(stem):02d}"
        matches = [p for p in paths if stem in (p.stem, p.stem.split("_", 1)[0])]
        if not matches:
            available = ", ".join(p.stem for p in paths)
            raise ValueError(f"no notebook {name!r}; available: {available}")
        chosen.update(matches)
    return [p for p in paths if p in chosen]


def figure_tags(nb: NotebookNode, name: str) -> dict[int, str]:
    """Read the ``figure:<stem>`` tags of a notebook's code cells.

    Args:
        nb: The notebook.
        name: Its stem, e.g. ``"01_gradients"``; every figure stem must start with its
            ``NN_`` prefix (``01_`` here).

    Returns:
        ``{cell_index: stem}`` (index into ``nb.cells``).

    Raises:
        ValueError: A tag is on a markdown cell, a stem is malformed or has another
            notebook's prefix, or two cells use the same stem.
    """
    prefix = name.split("_", 1)[0] + "_"
    found: dict[int, str] = {}
    for index, cell in enumerate(nb.cells):
        for tag in cell.get("metadata", {}).get("tags", []):
            if not tag.startswith(FIGURE_TAG):
                continue
            stem = tag[len(FIGURE_TAG) :]
            where = f"{name}, cell {index} (tag {tag!r})"
            if cell.cell_type != "code":
                raise ValueError(f"{where}: only code cells that show a chart can be figures")
            if not _STEM.match(stem) or not stem.startswith(prefix):
                raise ValueError(f"{where}: the figure name must look like {prefix}lower_case_name")
            if stem in found.values() or index in found:
                raise ValueError(f"{where}: one figure per cell, and each name only once")
            found[index] = stem
    return found


# --------------------------------------------------------------------------- figures


def _save_png(spec: Mapping[str, Any], path: Path) -> Path:
    """Render a Vega-Lite spec to PNG offline with the Vega-Lite version it was written for."""
    version = vl_convert_version(str(spec.get("$schema", "")))
    png = vl_convert.vegalite_to_png(json.dumps(spec), vl_version=version, scale=PNG_SCALE)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return path


# --------------------------------------------------------------------------- running


def _first_line(source: str) -> str:
    lines = [line.strip() for line in source.splitlines() if line.strip()]
    return lines[0][:90] if lines else "(empty cell)"


def _error_tail(cell: NotebookNode, fallback: str) -> str:
    """The last lines of the cell's error output, or of ``fallback`` if it has none."""
    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    if errors:
        text = "\n".join(errors[-1].get("traceback", [])) or (
            f"{errors[-1].get('ename')}: {errors[-1].get('evalue')}"
        )
    else:
        text = fallback
    lines = [line.rstrip() for line in _ANSI.sub("", text).splitlines() if line.strip()]
    return "\n".join(lines[-ERROR_LINES:])


def run_notebook(
    path: str | Path,
    *,
    out_dir: str | Path,
    figures_dir: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: int | None = 1800,
    kernel_name: str = "python3",
    progress: bool = True,
) -> NotebookRun:
    """Execute one notebook top to bottom in a fresh kernel; write its copy and figures.

    Args:
        path: The notebook ``NN_name.ipynb``.
        out_dir: Folder for the executed copy (created if needed).
        figures_dir: Folder for ``<stem>.png`` of cells tagged ``figure:<stem>``;
            None exports nothing.
        env: The kernel's environment (default: this process's).
        timeout: Seconds allowed per cell (None: no limit).
        kernel_name: Jupyter kernel to start.
        progress: Show a progress bar (on stderr) advancing per code cell.

    Returns:
        A :class:`NotebookRun`; errors in the notebook are reported there, not raised.

    Raises:
        ValueError: The notebook's ``figure:`` tags are malformed (see :func:`figure_tags`).
    """
    path = Path(path)
    name = path.stem
    nb = nbformat.read(path, as_version=4)
    tagged = figure_tags(nb, name)
    code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    client = notebook_client(
        nb,
        timeout=timeout,
        kernel_name=kernel_name,
        allow_errors=False,  # a failing cell stops the notebook, as in "Run All"
        record_timing=False,
        shutdown_kernel="immediate",  # nothing to save in the kernel; a graceful stop costs time
        resources={"metadata": {"path": str(path.resolve().parent)}},
    )
    bar = tqdm(total=len(code), desc=name, unit="cell", disable=not progress, leave=True)
    failure: CellFailure | None = None
    done = 0
    number = 0
    start = time.monotonic()
    # The kernel process's own stderr (start-up warnings, a crash message) goes to a file,
    # read back only if the kernel dies; cell output reaches the notebook either way.
    with tempfile.TemporaryFile(mode="w+") as kernel_log:
        try:
            with client.setup_kernel(
                env=dict(env if env is not None else os.environ), stderr=kernel_log
            ):
                for number, index in enumerate(code, start=1):
                    bar.set_postfix_str(f"cell {number}")
                    cell = nb.cells[index]
                    try:
                        client.execute_cell(cell, index)
                    except CellTimeoutError:
                        failure = CellFailure(
                            name,
                            number,
                            _first_line(cell.source),
                            f"timeout: the cell ran longer than {timeout} s (--timeout)",
                        )
                    except CellExecutionError as err:
                        tail = _error_tail(cell, str(err))
                        failure = CellFailure(name, number, _first_line(cell.source), tail)
                    if failure is not None:
                        break
                    done += 1
                    bar.update(1)
        except DeadKernelError:
            kernel_log.seek(0)
            log = "\n".join(kernel_log.read().strip().splitlines()[-3:])
            cell_source = nb.cells[code[number - 1]].source if number else ""
            failure = CellFailure(
                name,
                number or None,
                _first_line(cell_source),
                "the kernel died (out of memory?)" + (f"\n{log}" if log else ""),
            )
        except Exception as err:  # e.g. no such kernel: report it and go on with the others
            what = f"nbclient failed at cell {number}" if number else "could not start a kernel"
            failure = CellFailure(name, None, "", f"{what}: {type(err).__name__}: {err}")
    seconds = time.monotonic() - start
    bar.set_postfix_str(f"cell {number} FAILED" if failure else f"{seconds:.0f} s")
    bar.close()

    out = Path(out_dir) / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    run = NotebookRun(
        name,
        path,
        out,
        seconds,
        done,
        len(code),
        failure,
        summary=collect(nb.cells),
    )
    if figures_dir is None:
        return run
    for index, stem in tagged.items():
        spec = chart_spec(nb.cells[index].get("outputs", []))
        if spec is None and code.index(index) >= done:
            run.figures_not_reached.append(stem)
            continue
        if spec is None:
            run.figure_problems.append(
                f"figure {stem}: cell {code.index(index) + 1} of {name} is tagged but shows "
                "no Altair chart (leave the chart as the cell's last expression)"
            )
            continue
        try:
            run.figures[stem] = _save_png(spec, Path(figures_dir) / f"{stem}.png")
        except Exception as err:  # vl-convert raises plain exceptions
            run.figure_problems.append(f"figure {stem}: vl-convert could not render it: {err}")
    return run


def run_course(
    notebooks: str | Path | Sequence[str | Path] | None = None,
    *,
    only: Sequence[str] = (),
    quick: bool = False,
    model: str | None = None,
    out: str | Path | None = None,
    figures: str | Path | None = "default",
    timeout: int | None = 1800,
    fail_fast: bool = False,
    kernel_name: str = "python3",
    progress: bool = True,
) -> CourseResult:
    """Execute the lecture notebooks in order, each in a fresh kernel.

    Args:
        notebooks: A folder of ``NN_name.ipynb`` or a list of notebook paths; default the
            course's ``notebooks/`` (see :func:`default_notebooks_dir`).
        only: Restrict to these notebooks (see :func:`select_notebooks`).
        quick: Run at CI size (``SALIENCY_QUICK=1`` in the kernels); else full size.
        model: ``"resnet18"``, ``"efficientnet_lite0"``, ``"efficientnet_lite2"`` (see
            ``models.MODEL_NAMES``) or ``"auto"`` for ``SALIENCY_MODEL`` in the kernels; None
            keeps this process's setting.
        out: Folder for executed copies; default ``build/notebooks`` next to the notebooks'
            folder.
        figures: Folder for the PNG figures; ``"default"`` is ``figures/`` next to the
            notebooks' folder; None exports none.
        timeout: Seconds allowed per cell.
        fail_fast: Stop after the first notebook that fails.
        kernel_name: Jupyter kernel to start.
        progress: Show a progress bar per notebook.

    Returns:
        A :class:`CourseResult` with per-notebook paths, times, figures and summary values.

    Raises:
        FileNotFoundError: No notebooks found.
        ValueError: ``only`` names an unknown notebook, ``model`` is unknown, or a
            ``figure:`` tag is malformed (checked before anything runs).

    Example:
        >>> result = run_course(only=["03"], quick=True)
        >>> result.summary["ig_completeness_error"]
    """
    if model is not None and model not in ("auto", *MODEL_NAMES):
        raise ValueError(f"unknown model {model!r}; choose auto, {', '.join(MODEL_NAMES)}")
    if notebooks is None or isinstance(notebooks, (str, Path)):
        paths = find_notebooks(notebooks)
    else:
        paths = [Path(p) for p in notebooks]
    paths = select_notebooks(paths, only)
    root = paths[0].resolve().parent.parent
    out_dir = Path(out) if out is not None else root / "build" / "notebooks"
    figures_dir = root / "figures" if figures == "default" else figures
    for path in paths:  # bad figure tags: fail in a second, not after an hour of running
        figure_tags(nbformat.read(path, as_version=4), path.stem)

    env = kernel_env(quick, model)
    start = time.monotonic()
    runs: list[NotebookRun] = []
    for i, path in enumerate(paths):
        run = run_notebook(
            path,
            out_dir=out_dir,
            figures_dir=figures_dir,
            env=env,
            timeout=timeout,
            kernel_name=kernel_name,
            progress=progress,
        )
        runs.append(run)
        if progress and run.failure is not None:
            tqdm.write(
                f"  {run.name} stopped at cell {run.failure.cell}; the report follows the summary",
                file=sys.stderr,
            )
        if fail_fast and not run.ok:
            return CourseResult(
                runs, time.monotonic() - start, quick, model, [p.stem for p in paths[i + 1 :]]
            )
    return CourseResult(runs, time.monotonic() - start, quick, model)


# --------------------------------------------------------------------------- reports

_SOURCES = {
    "model": "00",
    "top1": "00",
    "ig_completeness_error": "03",
    "cascade_spearman_abs": "06",
    "data_randomization": "07",
    "faithfulness": "08",
    "shortcut": "09",
}
_LABEL = 24


def _row(label: str, text: str, width: int = 100) -> list[str]:
    first = f"{label:<{_LABEL - 1}} "  # a label too long for the column still ends in a space
    return textwrap.wrap(
        text, width=width, initial_indent=first, subsequent_indent=" " * _LABEL
    ) or [label]


#: Recorded keys shown with a readable label; other keys are shown under their own name.
_OTHER_LABELS = {
    "cascade_verdicts": "cascade verdicts",
    "data_randomization_verdicts": "permuted-label verdicts",
}


def _by_verdict(verdicts: dict) -> str:
    """'passes: a, b; fails: c' from {method: verdict}, verdicts in their first-seen order."""
    groups: dict[str, list[str]] = {}
    for method, verdict in verdicts.items():
        groups.setdefault(str(verdict), []).append(str(method))
    return "; ".join(f"{verdict}: {', '.join(methods)}" for verdict, methods in groups.items())


def _pct(value: Any) -> str:
    return f"{value:.2%}" if isinstance(value, (int, float)) else "?"


def _acc(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "?"


def _describe(key: str, value: Any) -> str:
    """One line for a recorded value; unexpected shapes are shown as they are."""
    if key == "model" and isinstance(value, dict):
        return f"{value.get('name')}: {value.get('reason')}"
    if key == "top1" and isinstance(value, dict):
        p = value.get("probability")
        p_text = f"{p:.4f}" if isinstance(p, (int, float)) else "?"
        return f"class {value.get('index')} {value.get('name')!r}, p = {p_text}"
    if key == "ig_completeness_error" and isinstance(value, dict):
        return (
            f"{_pct(value.get('error'))} ({value.get('baseline')} baseline, "
            f"{value.get('n_steps')} steps, {value.get('method', 'gausslegendre')})"
        )
    if key == "data_randomization" and isinstance(value, dict):
        return (
            f"true labels: test accuracy {_acc(value.get('true_test_accuracy'))}; "
            f"permuted labels: train {_acc(value.get('permuted_train_accuracy'))}, "
            f"test {_acc(value.get('permuted_test_accuracy'))}"
        )
    if key == "faithfulness" and isinstance(value, dict):
        parts = []
        for test, verdicts in value.items():
            if isinstance(verdicts, dict):
                counts = pd.Series(list(verdicts.values()), dtype=object).value_counts()
                parts.append(f"{test}: " + ", ".join(f"{n} {v}" for v, n in counts.items()))
        return "; ".join(parts) if parts else str(value)
    if key == "shortcut" and isinstance(value, dict):
        reliance = value.get("reliance", {})
        flips = ", ".join(f"{k.split(' (')[0]} {_pct(v)}" for k, v in reliance.items())
        localises = list(value.get("localises", {}).values())
        clean = list(value.get("clean_sevens", {}).values())
        return (
            f"others -> 7 with the mark: {flips}; localise the mark: "
            f"{localises.count('localises')} of {len(localises)}; differ on clean sevens: "
            f"{clean.count('differs')} of {len(clean)}"
        )
    if key in _OTHER_LABELS and isinstance(value, dict):
        return _by_verdict(value)
    return str(value)


def format_summary(result: CourseResult) -> str:
    """The one-screen summary of a course run: recorded numbers, then wall times.

    Args:
        result: As returned by :func:`run_course`.

    Returns:
        Plain text, about 30 lines at full size.
    """
    size = "quick (SALIENCY_QUICK=1)" if result.quick else "full size"
    failed = sum(not run.ok for run in result.runs)
    status = f"{failed} with problems" if failed else "all passed"
    count = f"{len(result.runs)} notebook{'s' * (len(result.runs) != 1)}"
    lines = [f"Course summary: {count}, {size}, {status}", ""]
    values = result.summary
    ran = {run.name.split("_", 1)[0]: run.name for run in result.runs}
    labels = {
        "model": "model",
        "top1": "corella top-1",
        "ig_completeness_error": "IG completeness error",
        "data_randomization": "data randomization",
        "faithfulness": "faithfulness vs random",
        "shortcut": "planted shortcut",
    }
    for key, label in labels.items():
        if key in values:
            lines += _row(label, _describe(key, values[key]))
        elif _SOURCES[key] in ran:
            lines += _row(label, f"(not recorded by {ran[_SOURCES[key]]})")
        else:
            lines += _row(label, f"(from notebook {_SOURCES[key]}, not run)")
    table = values.get("cascade_spearman_abs")
    lines.append("")
    if isinstance(table, pd.DataFrame):
        lines.append(
            "model randomization: Spearman of |map| with the trained model's |map| "
            "(rows: randomized down to this stage)"
        )
        with pd.option_context("display.width", 120, "display.max_columns", 20):
            lines += ["  " + row for row in table.round(2).to_string().splitlines()]
    else:
        where = "not recorded" if "06" in ran else "notebook 06 not run"
        lines.append(f"model randomization table: ({where})")
    others = {k: v for k, v in values.items() if k not in _SOURCES}
    for key, value in others.items():
        lines += _row(_OTHER_LABELS.get(key, key), _describe(key, value))
    lines += ["", "wall time"]
    for run in result.runs:
        state = "" if run.ok else ("  FAILED" if run.failure else "  figure problems")
        lines.append(f"  {run.name:<{_LABEL}}{run.seconds:7.1f} s{state}")
    for name in result.not_run:
        lines.append(f"  {name:<{_LABEL}}      - (not run: --fail-fast)")
    lines.append(f"  {'total':<{_LABEL}}{result.seconds:7.1f} s")
    if result.figures:
        folder = next(iter(result.figures.values())).parent
        lines.append(f"figures: {len(result.figures)} PNG in {folder}")
    return "\n".join(lines)


def format_failures(result: CourseResult) -> str:
    """What went wrong, one block per problem ('' when nothing did).

    Args:
        result: As returned by :func:`run_course`.

    Returns:
        Plain text naming notebook, cell number and first line, and the error's last lines.
    """
    blocks = []
    for run in result.runs:
        if run.failure is not None:
            block = f"FAILED {run.failure}\n    (full traceback in {run.executed})"
            if run.figures_not_reached:
                block += f"\n    figures not made: {', '.join(run.figures_not_reached)}"
            blocks.append(block)
        blocks += [f"FAILED {problem}" for problem in run.figure_problems]
    if not blocks:
        return ""
    return f"{len(blocks)} problem(s):\n" + "\n".join(blocks)


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the options of ``run`` to ``parser``."""
    parser.add_argument(
        "--quick",
        action="store_true",
        help="CI size: SALIENCY_QUICK=1 in the kernels (default: full size, what an "
        "instructor runs before class)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NN",
        help="run only these notebooks: 03 or 03_integrated_gradients; "
        "repeat or give a comma list (03,05)",
    )
    parser.add_argument(
        "--model",
        choices=("auto", *MODEL_NAMES),
        default=None,
        help="SALIENCY_MODEL for the kernels (default: as in this shell)",
    )
    parser.add_argument(
        "--timeout", type=int, default=1800, help="seconds allowed per cell (default 1800)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for executed copies (default: build/notebooks/)",
    )
    figures = parser.add_mutually_exclusive_group()
    figures.add_argument(
        "--figures",
        type=Path,
        default=None,
        help="folder for the PNG figures (default: the repository's figures/)",
    )
    figures.add_argument("--no-figures", action="store_true", help="export no figures")
    parser.add_argument(
        "--fail-fast",
        action="store_true",
        help="stop at the first failing notebook (default: run all, then report)",
    )
    parser.add_argument(
        "--notebooks",
        type=Path,
        default=None,
        help="folder of the lecture notebooks NN_name.ipynb (default: the course's notebooks/)",
    )
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel name (python3)")
    return parser


def run_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run the course for parsed options; bad options end in ``parser.error`` (exit 2)."""
    if args.timeout < 1:
        parser.error("--timeout must be at least 1 second")
    try:
        paths = select_notebooks(find_notebooks(args.notebooks), args.only)
        for path in paths:
            figure_tags(nbformat.read(path, as_version=4), path.stem)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))
    figures = None if args.no_figures else (args.figures or "default")
    result = run_course(
        paths,
        quick=args.quick,
        model=args.model,
        out=args.out,
        figures=figures,
        timeout=args.timeout,
        fail_fast=args.fail_fast,
        kernel_name=args.kernel,
    )
    print(format_summary(result))
    failures = format_failures(result)
    if failures:
        print("\n" + failures)
    out = result.runs[0].executed.parent if result.runs else None
    print(f"\nexecuted notebooks in {out}", file=sys.stderr)
    return 0 if result.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: ``saliency-course run [options]``."""
    parser = add_arguments(
        argparse.ArgumentParser(
            prog="saliency-course run",
            description="Execute every lecture notebook, export its figures, print a summary.",
        )
    )
    return run_from_args(parser.parse_args(argv), parser)

