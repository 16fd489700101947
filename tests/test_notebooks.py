"""Notebook-level checks beyond nbval: nbgrader grades every untouched exercise to zero and
it fails only where a student must write code; the output budgets that conftest.py adds to
nbval really fail a notebook. (The solutions' full marks: tests/test_autograde.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from saliency_helpers.course import grade
from saliency_helpers.course.assignments import role

ROOT = Path(__file__).resolve().parent.parent
EXERCISES = sorted((ROOT / "exercises").glob("[0-9][0-9]_*.ipynb"))


def _exercise(cell) -> str | None:
    found = role(cell)
    return found[0] if found else None


def test_every_lecture_has_its_solution_and_exercise():
    lectures = {p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    assert lectures == {p.name for p in (ROOT / "solutions").glob("[0-9][0-9]_*.ipynb")}
    assert lectures == {p.name for p in EXERCISES}


LECTURES = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", LECTURES, ids=[p.stem for p in LECTURES])
def test_every_lecture_is_cut_into_slides(path):
    """Instructors present the lectures as slides: the title and every `## ` section start one."""
    nb = nbformat.read(path, as_version=4)
    kind = [c.metadata.get("slideshow", {}).get("slide_type") for c in nb.cells]
    assert kind[0] == "slide", f"{path.name}: the title cell should start a slide"
    for cell, k in zip(nb.cells, kind, strict=True):
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("## "):
            heading = cell.source.lstrip().splitlines()[0]
            assert k == "slide", f"{path.name}: {heading!r} should start a slide"


@pytest.mark.course
@pytest.mark.parametrize("path", EXERCISES, ids=[p.stem for p in EXERCISES])
def test_untouched_exercise_scores_zero_and_fails_only_with_not_implemented(path):
    """nbgrader autogrades the exercise as handed out: zero points, nothing flagged, and every
    error is an exercise's own (its stub first), never a bug of ours."""
    sub = grade.Submission("untouched", path.stem, path)
    (result,) = grade.grade_submissions([sub], ROOT / "solutions", quick=True, progress=False)
    auto = [r for r in result.exercises if r.points is not None]
    assert auto and all(r.points == 0 for r in auto), [(r.exercise, r.points) for r in auto]
    assert result.flags == [] and result.notes == []
    first_error: dict[str, str] = {}  # exercise -> the first error it raised
    stubbed: set[str] = set()
    for i, cell in enumerate(result.executed.cells):
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.outputs if o.output_type == "error"]
        exercise = _exercise(cell)
        if "raise NotImplementedError" in cell.source:
            stubbed.add(exercise)
        if errors:
            assert exercise is not None, (
                f"{path.name} cell {i} ({cell.source[:60]!r}) fails outside any exercise: "
                f"{errors[0].ename}: {errors[0].evalue}"
            )
            first_error.setdefault(exercise, errors[0].ename)
    assert stubbed, f"{path.name} has no stubbed exercise: it would pass untouched"
    # A stub may sit inside a function that a later cell calls: what matters is that each
    # stubbed exercise fails, and fails first with NotImplementedError, not with a bug of ours.
    for exercise in stubbed:
        assert first_error.get(exercise) == "NotImplementedError", (
            f"{path.name} {exercise}: first error {first_error.get(exercise)!r}"
        )
    assert set(first_error) <= stubbed, f"{path.name}: errors in exercises without a stub"


def test_output_budget_fails_a_notebook_that_prints_too_much():
    folder = ROOT / "build" / "budget-test"
    folder.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell("print('x' * 5000)"), nbformat.v4.new_code_cell("1 + 1")]
    path = folder / "toy.ipynb"
    nbformat.write(nb, path)

    def run(budget: int) -> subprocess.CompletedProcess:
        env = {**os.environ, "SALIENCY_CELL_BUDGET": str(budget)}
        return subprocess.run(
            [sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", str(path)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    over = run(2_000)
    assert over.returncode == 1 and "Output budget exceeded: cell 0" in over.stdout, over.stdout
    within = run(100_000)
    assert within.returncode == 0, within.stdout
