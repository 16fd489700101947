"""Tests of the course runner (``saliency-course run``) and of summary recording.

Toy notebooks written to tmp folders run in real Jupyter kernels (loopback only): one records
summary values and shows a tagged Altair chart, one fails in its third code cell, one checks
the environment the runner gives its kernel. The integration test at the end (marked
``course``) runs the real lecture notebooks 00 and 01 at quick size.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import altair as alt
import nbformat
import numpy as np
import pandas as pd
import pytest
import torch

from saliency_helpers import summary
from saliency_helpers.course import common, run
from saliency_helpers.course.cli import main

ROOT = Path(__file__).resolve().parent.parent
LECTURES = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PNG_HEADER = b"\x89PNG\r\n\x1a\n"


def _write(path: Path, cells: list[tuple[str, str] | tuple[str, str, list[str]]]) -> Path:
    """Write a notebook of (kind, source[, tags]) cells, kind "md" or "code"."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    for kind, source, *tags in cells:
        new = nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell
        cell = new(source)
        if tags:
            cell.metadata["tags"] = tags[0]
        nb.cells.append(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


CHART = """import altair as alt
import pandas as pd
alt.Chart(pd.DataFrame({"a": [1, 2, 3]})).mark_bar().encode(x="a:Q")"""
RECORD = """import pandas as pd
from saliency_helpers import summary
summary.record("top1", {"index": 89, "name": "toy cockatoo", "probability": 0.4352})
summary.record("cascade_spearman_abs", pd.DataFrame({"gradient": [0.91234, 0.1]},
                                                    index=["fc", "conv1"]))"""
FAILS = """def divide(a, b, depth=8):
    # Eight nested frames: a full traceback would run to dozens of lines.
    return divide(a, b, depth - 1) if depth else a / b

divide(1, 0)  # the toy failure"""

ENV_CHECK = """import os
print(os.environ.get("SALIENCY_QUICK"), os.environ.get("SALIENCY_MODEL"))
assert str(os.environ.get("SALIENCY_QUICK")) == os.environ["EXPECT_QUICK"]
assert str(os.environ.get("SALIENCY_MODEL")) == os.environ["EXPECT_MODEL"]"""


def _toy_course(folder: Path) -> Path:
    notebooks = folder / "notebooks"
    _write(
        notebooks / "10_ok.ipynb",
        [("md", "# ok"), ("code", RECORD), ("code", CHART, ["figure:10_bars"])],
    )
    _write(
        notebooks / "11_fails.ipynb",
        [
            ("md", "# fails in code cell 3"),
            ("code", "x = 1"),
            ("code", "y = 2"),
            ("code", FAILS),
            ("code", "open('cell_four_ran', 'w').close()", ["figure:11_never"]),
        ],
    )
    _write(notebooks / "12_env.ipynb", [("code", ENV_CHECK)])
    return notebooks


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """The toy course run once through the command line, without --quick."""
    folder = tmp_path_factory.mktemp("toy")
    notebooks = _toy_course(folder)
    # SALIENCY_QUICK=1 in the shell must not reach the kernels without --quick.
    env = {**os.environ, "SALIENCY_QUICK": "1", "EXPECT_QUICK": "None"}
    env.update(SALIENCY_MODEL="x", EXPECT_MODEL="x")  # without --model the shell's choice holds
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "saliency_helpers",
            "run",
            "--notebooks",
            str(notebooks),
            "--out",
            str(folder / "executed"),
            "--figures",
            str(folder / "figs"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    return folder, proc


def test_failing_notebook_gives_exit_code_1_and_a_short_report(cli_run):
    folder, proc = cli_run
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout
    assert "FAILED 11_fails, cell 3: def divide(a, b, depth=8):" in out
    assert "ZeroDivisionError: division by zero" in out
    report = out[out.index("FAILED 11_fails") :]
    assert len(report.splitlines()) < 15  # the tail of the error, not a page of nbclient
    assert "nbclient" not in report
    assert not (folder / "notebooks" / "cell_four_ran").exists()  # the notebook stopped
    assert "figures not made: 11_never" in report


def test_other_notebooks_still_run_after_a_failure(cli_run):
    folder, proc = cli_run
    assert "12_env" in proc.stdout and "12_env" not in proc.stdout.split("problem(s):")[1]
    for name in ("10_ok", "11_fails", "12_env"):
        executed = nbformat.read(folder / "executed" / f"{name}.ipynb", as_version=4)
        assert executed.cells  # written even for the failing one, with its error output
    failed = nbformat.read(folder / "executed" / "11_fails.ipynb", as_version=4)
    assert failed.cells[3].outputs[-1].ename == "ZeroDivisionError"


def test_summary_and_figure_from_a_toy_notebook(cli_run):
    folder, proc = cli_run
    assert "class 89 'toy cockatoo', p = 0.4352" in proc.stdout
    assert "0.91" in proc.stdout and "0.9123" not in proc.stdout  # the table, rounded
    assert "(from notebook 03, not run)" in proc.stdout
    png = folder / "figs" / "10_bars.png"
    assert png.read_bytes()[:8] == PNG_HEADER
    assert "WARNING" not in proc.stderr  # kernel start-up noise stays out of the console


def test_fail_fast_stops_after_the_first_failure(tmp_path):
    notebooks = _toy_course(tmp_path)
    result = run.run_course(
        notebooks,
        only=["11", "12"],
        fail_fast=True,
        out=tmp_path / "out",
        figures=None,
        progress=False,
    )
    assert [r.name for r in result.runs] == ["11_fails"] and result.not_run == ["12_env"]
    assert not result.ok and result.runs[0].failure.cell == 3
    assert "not run: --fail-fast" in run.format_summary(result)


def test_quick_and_model_reach_the_kernel(tmp_path, monkeypatch):
    notebooks = _toy_course(tmp_path)
    monkeypatch.setenv("EXPECT_QUICK", "1")
    monkeypatch.setenv("EXPECT_MODEL", "efficientnet_lite0")
    result = run.run_course(
        notebooks,
        only=["12_env"],
        quick=True,
        model="efficientnet_lite0",
        out=tmp_path / "out",
        figures=None,
        progress=False,
    )
    assert result.ok, run.format_failures(result)


def test_a_cell_over_the_time_limit_is_reported(tmp_path):
    path = _write(tmp_path / "20_slow.ipynb", [("code", "import time\ntime.sleep(60)")])
    res = run.run_notebook(path, out_dir=tmp_path / "out", timeout=2, progress=False)
    assert res.failure is not None and res.failure.cell == 1
    assert "timeout" in res.failure.error and res.seconds < 50


WIDGET = """import ipywidgets as widgets
out = widgets.Output()
with out:
    print("inside the output widget")
widgets.VBox([widgets.IntSlider(3), out])"""


def test_runs_from_inside_a_running_event_loop(tmp_path):
    """As in JupyterLab or beside Playwright's sync API: the caller's thread runs a loop.
    Several notebooks with widget cells in a row (such a cell's reply once arrived only at
    the cell time limit: see saliency_helpers/course/kernels.py)."""
    paths = [
        _write(tmp_path / f"3{i}_widgets.ipynb", [("code", "x = 1"), ("code", WIDGET)])
        for i in range(3)
    ]

    async def inside_a_loop():
        return run.run_course(paths, out=tmp_path / "out", figures=None, timeout=60, progress=False)

    start = time.monotonic()
    result = asyncio.run(inside_a_loop())
    assert result.ok, run.format_failures(result)
    assert time.monotonic() - start < 150
    executed = nbformat.read(tmp_path / "out" / "32_widgets.ipynb", as_version=4)
    assert "application/vnd.jupyter.widget-view+json" in executed.cells[1].outputs[0].data


def test_a_tagged_cell_without_a_chart_is_a_problem(tmp_path):
    path = _write(tmp_path / "21_nochart.ipynb", [("code", "1 + 1", ["figure:21_none"])])
    res = run.run_notebook(path, out_dir=tmp_path / "out", figures_dir=tmp_path, progress=False)
    assert res.failure is None and not res.ok and not res.figures
    assert (
        "figure 21_none: cell 1 of 21_nochart is tagged but shows no Altair chart"
        in (res.figure_problems[0])
    )


# --------------------------------------------------------------------------- no kernels


def test_select_notebooks_accepts_numbers_and_names():
    paths = [Path(f"{n}.ipynb") for n in ("00_setup", "01_gradients", "03_integrated_gradients")]
    pick = run.select_notebooks
    assert pick(paths, []) == paths
    assert pick(paths, ["03"]) == pick(paths, ["3"]) == [paths[2]]
    assert pick(paths, ["03_integrated_gradients.ipynb", "00"]) == [paths[0], paths[2]]
    assert pick(paths, ["01,00"]) == paths[:2]
    with pytest.raises(ValueError, match="no notebook '42'; available: 00_setup, 01_gradients"):
        pick(paths, ["42"])


def test_find_notebooks(tmp_path):
    assert [p.name for p in run.find_notebooks()] == [p.name for p in LECTURES]
    with pytest.raises(FileNotFoundError, match="no notebooks named NN_name.ipynb"):
        run.find_notebooks(tmp_path)
    with pytest.raises(FileNotFoundError, match="not found"):
        run.find_notebooks(tmp_path / "missing")


@pytest.mark.parametrize(
    ("tag", "kind", "message"),
    [
        ("figure:02_maps", "code", "must look like 01_"),
        ("figure:01 maps", "code", "must look"),
        ("figure:01_maps", "md", "only code cells"),
    ],
)
def test_bad_figure_tags_are_refused(tmp_path, tag, kind, message):
    nb = nbformat.read(_write(tmp_path / "01_x.ipynb", [(kind, "1", [tag])]), as_version=4)
    with pytest.raises(ValueError, match=message):
        run.figure_tags(nb, "01_x")


def test_a_figure_name_is_used_once(tmp_path):
    cells = [("code", "1", ["figure:01_a"]), ("code", "2", ["figure:01_a"])]
    nb = nbformat.read(_write(tmp_path / "01_x.ipynb", cells), as_version=4)
    with pytest.raises(ValueError, match="only once"):
        run.figure_tags(nb, "01_x")


def test_chart_spec_reads_altair_html_and_vegalite_outputs():
    chart = alt.Chart(pd.DataFrame({"a": [1, 2]})).mark_bar().encode(x="a:Q")
    bundle = chart._repr_mimebundle_()
    bundle = bundle[0] if isinstance(bundle, tuple) else bundle
    spec = common.chart_spec([{"output_type": "execute_result", "data": bundle}])
    assert spec is not None and spec["mark"] == {"type": "bar"}
    as_mime = {"application/vnd.vegalite.v5+json": {"$schema": "x", "mark": "point"}}
    assert common.chart_spec([{"data": as_mime}])["mark"] == "point"
    assert common.chart_spec([{"output_type": "stream", "text": "hi"}]) is None
    assert common.chart_spec([{"data": {"text/html": "<b>not a chart</b>"}}]) is None


def test_summary_values_round_trip_through_json():
    table = pd.DataFrame({"gradient": [0.5, np.nan]}, index=["fc", "conv1"])
    value = {"p": np.float32(0.25), "k": np.int64(89), "t": torch.tensor(1.5), "tab": table}
    encoded = summary.to_json(value)
    json.dumps(encoded)  # plain JSON
    assert encoded["p"] == 0.25 and encoded["k"] == 89 and encoded["t"] == 1.5
    back = common.from_json(encoded)
    pd.testing.assert_frame_equal(back["tab"], table)
    cell = {
        "outputs": [
            {
                "output_type": "display_data",
                "data": {summary.MIMETYPE: {"key": "x", "value": encoded}},
            }
        ]
    }
    assert common.collect([cell])["x"]["k"] == 89


def test_record_outside_a_notebook_prints_and_checks_its_input(capsys):
    summary.record("ig_completeness_error", {"error": 0.0029})
    assert capsys.readouterr().out == "course summary <- ig_completeness_error: {'error': 0.0029}\n"
    with pytest.raises(ValueError, match="lower-case"):
        summary.record("Top 1", 1)
    with pytest.raises(TypeError, match="cannot record a value of type object"):
        summary.record("x", object())


def test_format_summary_of_a_partial_run(tmp_path):
    toy = run.NotebookRun(
        "03_ig",
        tmp_path,
        tmp_path,
        12.5,
        3,
        3,
        summary={
            "ig_completeness_error": {"error": 0.0123, "n_steps": 128, "baseline": "black"},
            "cascade_verdicts": {"gradient": "passes", "grad_cam": "inconclusive", "ixg": "passes"},
            "a_recorded_key_longer_than_the_label_column": 7,
        },
    )
    text = run.format_summary(run.CourseResult([toy], 13.0, quick=True))
    assert "cascade verdicts        passes: gradient, ixg; inconclusive: grad_cam" in text
    assert "a_recorded_key_longer_than_the_label_column 7" in text  # never glued to its value
    assert "IG completeness error   1.23% (black baseline, 128 steps" in text
    assert "(from notebook 00, not run)" in text and "quick" in text
    assert "03_ig" in text and "12.5 s" in text and "13.0 s" in text
    assert len(text.splitlines()) < 40


def test_cli_errors_are_short_and_name_the_fix(capsys, tmp_path):
    for argv, message in [
        (["run", "--only", "42"], "available: 00_setup, 01_gradients"),
        (["run", "--model", "vgg"], "invalid choice: 'vgg'"),
        (["run", "--timeout", "0"], "--timeout must be at least 1 second"),
        (["run", "--notebooks", str(tmp_path)], "no notebooks named NN_name.ipynb"),
        (["run", "--no-figures", "--figures", "x"], "not allowed with argument"),
        (["run", "--full"], "unrecognized arguments: --full"),  # full size is the default
        (["walk"], "unknown command 'walk'; choose one of: run, grade, export, make-exercises"),
    ]:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for command in ("run", "grade", "export", "make-exercises"):
        assert f"  {command} " in out


@pytest.mark.parametrize(
    "command, text",
    [
        ("grade", "Autograde submitted exercise notebooks with nbgrader"),
        ("export", "offline HTML pages and reveal.js slides"),
        ("make-exercises", "Generate exercises/NN_name.ipynb"),
        ("run", "Execute every lecture notebook"),
    ],
)
def test_each_subcommand_has_its_help(capsys, command, text):
    assert main([command, "--help"]) == 0
    assert text in capsys.readouterr().out


def test_the_grade_command_loads_no_ml_stack():
    """``saliency-course grade`` imports the grader only: no torch, no Captum, no Altair."""
    code = (
        "import sys; from saliency_helpers.course import cli, grade; "
        "print(sorted(m for m in ('torch', 'captum', 'altair') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


# --------------------------------------------------------------------------- the lectures


@pytest.mark.parametrize("path", LECTURES, ids=[p.stem for p in LECTURES])
def test_each_lecture_tags_one_to_four_figures(path):
    nb = nbformat.read(path, as_version=4)
    figures = run.figure_tags(nb, path.stem)  # raises on a malformed tag
    assert 1 <= len(figures) <= 4, figures


def test_figures_folder_holds_exactly_the_tagged_figures():
    """figures/ is what instructors build slides from: one committed PNG per figure tag."""
    tagged = {
        stem
        for path in LECTURES
        for stem in run.figure_tags(nbformat.read(path, as_version=4), path.stem).values()
    }
    committed = {p.stem for p in (ROOT / "figures").glob("[0-9][0-9]_*.png")}
    assert committed == tagged, "re-render with: saliency-course run"
    for stem in committed:
        assert (ROOT / "figures" / f"{stem}.png").read_bytes()[:8] == PNG_HEADER


def test_lectures_record_the_summary_values():
    sources = {p.stem[:2]: nbformat.read(p, as_version=4) for p in LECTURES}
    expected = {
        "00": ["model", "top1"],
        "03": ["ig_completeness_error"],
        "06": ["cascade_spearman_abs"],
        "07": ["data_randomization"],
        "08": ["faithfulness"],
        "09": ["shortcut"],
    }
    for prefix, keys in expected.items():
        code = "\n".join(c.source for c in sources[prefix].cells if c.cell_type == "code")
        for key in keys:
            assert f'sh.summary.record("{key}"' in code, (prefix, key)
