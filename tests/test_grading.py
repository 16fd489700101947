"""Tests of the exercise tooling: self-checks, exercise generation, grading, nbval.

The fixture notebook tests/data/solutions/90_toy.ipynb has three exercises:
90.1 (array answer + check cell), 90.2 (True/False answer + check cell) and
90.3 (written markdown answer). Its generated twin is tests/data/exercises/90_toy.ipynb.
Grading tests start real Jupyter kernels (loopback only).
"""

from __future__ import annotations

import copy
import csv
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from saliency_helpers.checks import check, check_true
from saliency_helpers.course import cli, exercises, grade

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SOLUTION = DATA / "solutions" / "90_toy.ipynb"
EXERCISE = DATA / "exercises" / "90_toy.ipynb"
STUB_1 = 'raise NotImplementedError("Exercise 90.1: write your solution here")'
STUB_2 = '    raise NotImplementedError("Exercise 90.2: write your solution here")'
GOOD_LINE = "row_normalised = x / x.sum(axis=1, keepdims=True)"
WRONG_LINE = "row_normalised = x / x.sum()"


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _cell(nb: nbformat.NotebookNode, tag: str, *, check_cell: bool = False):
    """The first cell with ``tag`` that is (or is not) a check cell."""
    for index, cell in enumerate(nb.cells):
        tags = cell.metadata.get("tags", [])
        if tag in tags and ("check" in tags) == check_cell:
            return index, cell
    raise LookupError(tag)


# --------------------------------------------------------------------------- check()


def test_check_exact_and_close(capsys):
    check("01.2", np.arange(6.0).reshape(2, 3), np.arange(6.0).reshape(2, 3))
    assert capsys.readouterr().out == "Exercise 01.2: exact match ✓\n"

    answer = torch.ones(1, 3, 4, 4, requires_grad=True) * 1.0  # non-leaf, needs detach
    check("01.2", answer + 3e-7, torch.ones(1, 3, 4, 4).numpy())
    out = capsys.readouterr().out
    assert out.startswith("Exercise 01.2: close ✓ (max abs difference ")
    assert "e-07" in out

    check("01.3", 3, 3.0)
    assert "exact match ✓" in capsys.readouterr().out


def test_check_wrong_tensor_reports_difference_and_index(capsys):
    expected = torch.zeros(1, 3, 8, 8)
    answer = expected.clone()
    answer[0, 2, 1, 5] = 0.41
    with pytest.raises(AssertionError, match="max abs difference 0.41") as info:
        check("01.2", answer, expected)
    assert "largest at index (0, 2, 1, 5)" in str(info.value)
    assert "shapes (1, 3, 8, 8) vs (1, 3, 8, 8)" in str(info.value)
    assert capsys.readouterr().out.strip() == str(info.value)


def test_check_tolerances_are_used():
    check("01.2", np.array([1.0005]), np.array([1.0]), rtol=1e-3)
    with pytest.raises(AssertionError, match="not yet"):
        check("01.2", np.array([1.0005]), np.array([1.0]))


def test_check_wrong_shape():
    with pytest.raises(AssertionError) as info:
        check("01.2", torch.zeros(224, 224), torch.zeros(1, 3, 224, 224))
    assert str(info.value) == (
        "Exercise 01.2: not yet ✗: shape (224, 224) but expected (1, 3, 224, 224)"
    )


def test_check_bool_and_text_never_reveal_the_answer(capsys):
    with pytest.raises(AssertionError) as info:
        check("02.1", False, True)
    message = str(info.value)
    assert message == "Exercise 02.1: not yet ✗: that is not the answer"
    assert "True" not in message and "True" not in capsys.readouterr().out

    with pytest.raises(AssertionError) as info:
        check("02.2", "layer3", "layer4")
    assert "layer4" not in str(info.value)
    with pytest.raises(AssertionError) as info:
        check("02.3", 1, True)  # an int is not a True/False answer
    assert "True or False" in str(info.value)

    check("02.2", "  Layer4 ", "layer4")
    check("02.4", ["a", "B"], ("a", "b"))
    assert capsys.readouterr().out.count("correct ✓") == 2


@pytest.mark.parametrize("missing", [None, ...])
def test_check_not_answered(missing, capsys):
    with pytest.raises(AssertionError, match="not answered yet"):
        check("01.2", missing, np.zeros(3))
    assert "not answered yet" in capsys.readouterr().out


def test_check_bad_reference_and_id():
    with pytest.raises(TypeError, match="exercise_id"):
        check(12, 1.0, 1.0)
    with pytest.raises(TypeError, match="reference"):
        check("01.2", 1.0, {"a": 1})


def test_check_true(capsys):
    check_true("03.4", np.float64(0.03) < 0.05, "increase n_steps")
    assert capsys.readouterr().out == "Exercise 03.4: passed ✓\n"
    with pytest.raises(AssertionError, match="increase n_steps"):
        check_true("03.4", torch.tensor(0.3) < 0.05, "increase n_steps")
    with pytest.raises(TypeError, match="single True/False"):
        check_true("03.4", np.array([True, False]), "hint")


# --------------------------------------------------------------------------- generate()


def test_generate_replaces_marked_code_and_keeps_the_rest():
    solution = _read(SOLUTION)
    before = copy.deepcopy(solution)
    nb = exercises.generate(solution, name="90_toy")
    assert solution == before, "generate() must not modify its input"

    i1, cell1 = _cell(nb, "exercise:90.1")
    assert cell1.source == f"row_normalised = None\n{STUB_1}"
    i2, cell2 = _cell(nb, "exercise:90.2")
    assert cell2.source.splitlines() == [
        "def gram_is_symmetric():",
        STUB_2,
        "",
        "",
        "is_symmetric = gram_is_symmetric()",
    ]
    # unmarked cells, check cells and questions are untouched
    for index in range(len(nb.cells)):
        if index not in (i1, i2) and "answer" not in nb.cells[index].metadata.get("tags", []):
            assert nb.cells[index].source == solution.cells[index].source
    _, answer = _cell(nb, "exercise:90.3")
    assert answer.cell_type == "markdown"
    assert answer.source == exercises.ANSWER_PLACEHOLDER
    assert "BEGIN SOLUTION" not in exercises.render(nb)


def test_generate_clears_outputs_and_is_deterministic():
    solution = _read(SOLUTION)
    _, cell = _cell(solution, "exercise:90.1", check_cell=True)
    cell.execution_count = 7
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="exact match ✓\n")]
    cell.metadata["execution"] = {"iopub.status.busy": "2025-01-01T00:00:00Z"}
    nb = exercises.generate(solution)
    for c in nb.cells:
        if c.cell_type == "code":
            assert c.outputs == [] and c.execution_count is None
            assert "execution" not in c.metadata
    first = exercises.render(exercises.generate(SOLUTION))
    second = exercises.render(exercises.generate(SOLUTION))
    assert first == second and first.endswith("}\n")
    # the committed exercise is exactly what generation produces (the sync test)
    assert EXERCISE.read_text(encoding="utf-8") == first


def test_generate_gives_cells_without_ids_stable_ids():
    solution = _read(SOLUTION)
    for cell in solution.cells:
        del cell["id"]
    texts = {exercises.render(exercises.generate(solution)) for _ in range(2)}
    assert len(texts) == 1
    assert '"id": "cell-0"' in texts.pop()


def test_generate_rejects_marker_without_tag():
    solution = _read(SOLUTION)
    index, cell = _cell(solution, "exercise:90.1")
    cell.metadata["tags"] = []
    with pytest.raises(exercises.ExerciseError) as info:
        exercises.generate(solution, name="solutions/90_toy.ipynb")
    message = str(info.value)
    assert f"solutions/90_toy.ipynb, cell {index}" in message
    assert "exercise:<id>" in message


@pytest.mark.parametrize(
    ("source", "match"),
    [
        ("# BEGIN SOLUTION\nx = 1", "never closed"),
        ("x = 1\n# END SOLUTION", "without a"),
        ("# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION", "inside another"),
    ],
)
def test_generate_rejects_unbalanced_markers(source, match):
    solution = _read(SOLUTION)
    _, cell = _cell(solution, "exercise:90.1")
    cell.source = source
    with pytest.raises(exercises.ExerciseError, match=match):
        exercises.generate(solution)


def test_generate_rejects_answer_cell_without_exercise_tag():
    solution = _read(SOLUTION)
    _, cell = _cell(solution, "exercise:90.3")
    cell.metadata["tags"] = ["answer"]
    with pytest.raises(exercises.ExerciseError, match="needs an 'exercise:<id>' tag"):
        exercises.generate(solution)


# --------------------------------------------------------------------------- --check


def _make_exercises(capsys, *args: str) -> tuple[int, str]:
    """Run ``saliency-course make-exercises`` in-process (a subprocess costs seconds)."""
    code = cli.main(["make-exercises", *args])
    return code, capsys.readouterr().out


def test_check_mode_detects_stale_and_passes_when_fresh(tmp_path, capsys):
    solutions, exercise_dir = tmp_path / "solutions", tmp_path / "exercises"
    solutions.mkdir()
    shutil.copy(SOLUTION, solutions)
    dirs = ["--solutions", str(solutions), "--exercises", str(exercise_dir)]
    target = exercise_dir / "90_toy.ipynb"

    assert exercises.generate_all(solutions, exercise_dir, check=True) == [target]  # missing
    assert not target.exists(), "check mode must not write"
    assert _make_exercises(capsys, *dirs)[0] == 0
    assert target.read_bytes() == EXERCISE.read_bytes()
    assert _make_exercises(capsys, *dirs, "--check") == (
        0,
        f"All exercise notebooks in {exercise_dir} are up to date.\n",
    )
    assert exercises.generate_all(solutions, exercise_dir, check=True) == []

    # an author edits the solution but forgets to regenerate
    text = (solutions / "90_toy.ipynb").read_text(encoding="utf-8")
    (solutions / "90_toy.ipynb").write_text(
        text.replace("Divide each row", "Divide every row"), encoding="utf-8"
    )
    code, out = _make_exercises(capsys, *dirs, "--check")
    assert code == 1
    assert str(target) in out
    assert exercises.generate_all(solutions, exercise_dir) == [target]  # rewrites it
    assert _make_exercises(capsys, *dirs, "--check")[0] == 0

    # an exercise whose solution was deleted is stale too
    shutil.copy(target, exercise_dir / "91_orphan.ipynb")
    assert exercises.generate_all(solutions, exercise_dir, check=True) == [
        exercise_dir / "91_orphan.ipynb"
    ]


def test_repository_exercises_are_fresh():
    """The course's own exercises/ must match solutions/ (vacuous until notebooks exist)."""
    if not (ROOT / "solutions").is_dir():
        pytest.skip("no solutions/ folder")
    stale = exercises.generate_all(ROOT / "solutions", ROOT / "exercises", check=True)
    assert stale == [], "stale exercises; run: saliency-course make-exercises"


# --------------------------------------------------------------------------- grading


def test_python3_kernel_is_this_interpreter():
    from jupyter_client.kernelspec import KernelSpecManager

    argv0 = KernelSpecManager().get_kernel_spec("python3").argv[0]
    # jupyter_client replaces a bare "python"/"python3" with sys.executable
    assert argv0 in {"python", "python3"} or Path(argv0).resolve() == Path(sys.executable).resolve()


def _wrong_copy(path: Path) -> None:
    text = SOLUTION.read_text(encoding="utf-8")
    assert GOOD_LINE in text
    path.write_text(text.replace(GOOD_LINE, WRONG_LINE), encoding="utf-8")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade four students with the CLI: solution, untouched exercise, one wrong, a cheat."""
    root = tmp_path_factory.mktemp("grading")
    subs = root / "submissions"
    for student in ("ada", "bob", "cy", "eve"):
        (subs / student).mkdir(parents=True)
    shutil.copy(SOLUTION, subs / "ada")
    shutil.copy(EXERCISE, subs / "bob")
    _wrong_copy(subs / "cy" / "90_toy.ipynb")
    # eve answers 90.1 wrongly and empties the check cell; the reference check comes back
    cheat = _read(subs / "ada" / "90_toy.ipynb")
    cheat.cells[_cell(cheat, "exercise:90.1")[0]].source = "row_normalised = 0"
    cheat.cells[_cell(cheat, "exercise:90.1", check_cell=True)[0]].source = "pass"
    nbformat.write(cheat, subs / "eve" / "90_toy.ipynb")

    out = root / "results"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "saliency_helpers",
            "grade",
            str(subs),
            "--out",
            str(out),
            "--timeout",
            "120",
            "--solutions",
            str(DATA / "solutions"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    with open(out / "scores.csv", encoding="utf-8", newline="") as fp:
        rows = {(r["student"], r["exercise"]): r for r in csv.DictReader(fp)}
    return proc, out, rows


def test_grading_solution_gets_full_marks(graded):
    _, _, rows = graded
    assert rows["ada", "90.1"]["status"] == "passed"
    assert rows["ada", "90.2"]["status"] == "passed"
    assert rows["ada", "90.1"]["points"] == "1"
    assert rows["ada", "90.3"]["status"] == "manual"  # written answer, not auto-graded


def test_grading_untouched_exercise_gets_zero(graded):
    _, _, rows = graded
    for ex in ("90.1", "90.2"):
        assert rows["bob", ex]["status"] == "failed"
        assert rows["bob", ex]["points"] == "0"
        assert rows["bob", ex]["reason"].startswith("NotImplementedError")


def test_grading_one_wrong_answer_loses_only_that_exercise(graded):
    _, _, rows = graded
    assert rows["cy", "90.1"]["status"] == "failed"
    assert rows["cy", "90.1"]["reason"].startswith("AssertionError: Exercise 90.1: not yet ✗")
    assert "max abs difference" in rows["cy", "90.1"]["reason"]
    assert rows["cy", "90.2"]["status"] == "passed"


def test_grading_restores_check_cells(graded):
    _, _, rows = graded
    assert rows["eve", "90.1"]["status"] == "failed"
    assert rows["eve", "90.2"]["status"] == "passed"


def test_grading_reports(graded):
    proc, out, _ = graded
    markdown = (out / "scores.md").read_text(encoding="utf-8")
    assert markdown in proc.stdout  # the table is printed
    assert "| ada | 2 | 2 | 100% |" in markdown
    assert "| bob | 0 | 2 | 0% |" in markdown
    assert "| cy | 1 | 2 | 50% |" in markdown
    answers = (out / "answers.md").read_text(encoding="utf-8")
    assert "Dividing by the row sum" in answers  # ada's written answer, for the instructor
    executed = _read(out / "executed" / "cy" / "90_toy.ipynb")
    assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code")


def test_grading_timeouts(tmp_path):
    """A slow cell is interrupted and later cells still run; the notebook limit stops the rest."""
    slow = tmp_path / "dan" / "90_toy.ipynb"
    slow.parent.mkdir()
    nb = _read(SOLUTION)
    index, cell = _cell(nb, "exercise:90.1")
    assert index == 3
    cell.source = cell.source.replace(GOOD_LINE, "import time\ntime.sleep(1000)")
    nbformat.write(nb, slow)
    (sub,) = grade.find_submissions(slow)
    assert (sub.student, sub.notebook) == ("dan", "90_toy")

    result = grade.grade_notebook(sub, timeout=25, notebook_timeout=600)
    by_id = {r.exercise: r for r in result.exercises}
    assert by_id["90.1"].status == "failed"
    assert by_id["90.1"].reason.startswith("timeout: cell 3 ran over 25 s")
    assert by_id["90.2"].status == "passed"
    assert result.seconds < 120

    result = grade.grade_notebook(sub, timeout=600, notebook_timeout=1)
    assert [r.status for r in result.exercises] == ["failed", "failed", "manual"]
    assert all(r.reason.startswith("timeout") for r in result.exercises[:2])
    assert result.seconds < 120


def test_find_submissions_layouts(tmp_path):
    (tmp_path / "nested" / "ann").mkdir(parents=True)
    shutil.copy(SOLUTION, tmp_path / "nested" / "ann")
    (tmp_path / "nested" / "ann" / ".ipynb_checkpoints").mkdir()
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(SOLUTION, flat / "ben__90_toy.ipynb")
    assert [(s.student, s.notebook) for s in grade.find_submissions(tmp_path / "nested")] == [
        ("ann", "90_toy")
    ]
    assert [(s.student, s.notebook) for s in grade.find_submissions(flat)] == [("ben", "90_toy")]
    shutil.copy(SOLUTION, flat / "no_student.ipynb")
    with pytest.raises(ValueError, match="<student>__<NN_name>"):
        grade.find_submissions(flat)


# --------------------------------------------------------------------------- nbval


def _nbval(notebook: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", str(notebook), "-p", "no:cacheprovider"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_nbval_fails_on_exercise_and_passes_on_solution(tmp_path):
    for kind, path, expected_rc in (("exercise", EXERCISE, 1), ("solution", SOLUTION, 0)):
        folder = tmp_path / kind
        folder.mkdir()
        notebook = Path(shutil.copy(path, folder))
        proc = _nbval(notebook, folder)
        assert proc.returncode == expected_rc, f"{kind}:\n{proc.stdout[-3000:]}"
        if kind == "exercise":
            assert "NotImplementedError" in proc.stdout
