"""nbgrader grades the course's own solutions to full marks (this is their CI run: each
solution notebook executes once, inside ``nbgrader autograde``), with nothing flagged and no
error in any cell. The untouched exercises' zero: tests/test_notebooks.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from saliency_helpers.course import grade

ROOT = Path(__file__).resolve().parent.parent
# The same output budgets as conftest.py gives nbval (charts pooled, tables short).
CELL_BUDGET, NOTEBOOK_BUDGET = 1_000_000, 3_000_000
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.course
@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_solution_gets_full_marks(path):
    sub = grade.Submission("solution", path.stem, path)
    (result,) = grade.grade_submissions([sub], ROOT / "solutions", quick=True, progress=False)
    auto = [r for r in result.exercises if r.points is not None]
    failed = [(r.exercise, r.reason) for r in auto if r.status != "passed"]
    assert auto and not failed, failed
    assert result.flags == [] and result.notes == []
    errors = [
        (index, output.ename, output.evalue)
        for index, cell in enumerate(result.executed.cells)
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert errors == []
    sizes = [len(json.dumps(c.get("outputs", []))) for c in result.executed.cells]
    assert max(sizes) <= CELL_BUDGET and sum(sizes) <= NOTEBOOK_BUDGET, (max(sizes), sum(sizes))
