"""Tests of the exercise tooling: self-checks, exercises made by nbgrader, grading, nbval.

The fixture notebook tests/data/solutions/90_toy.ipynb has three exercises:
90.1 (array answer + check cell), 90.2 (True/False answer + check cell) and
90.3 (written markdown answer); its cells carry nbgrader's metadata. Its generated twin is
tests/data/exercises/90_toy.ipynb. Grading tests start real Jupyter kernels (loopback only):
one class of submissions, honest and cheating, is graded once by `saliency-course grade`.
"""

from __future__ import annotations

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
from saliency_helpers.course import assignments, cli, grade, nbgrader_checks

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SOLUTION = DATA / "solutions" / "90_toy.ipynb"
EXERCISE = DATA / "exercises" / "90_toy.ipynb"
GOOD_LINE = "row_normalised = x / x.sum(axis=1, keepdims=True)"
WRONG_LINE = "row_normalised = x / x.sum()"


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


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


def _role_cell(nb, grade_id: str) -> tuple[int, nbformat.NotebookNode]:
    for index, cell in enumerate(nb.cells):
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            return index, cell
    raise AssertionError(f"no cell {grade_id}")


def test_roles_come_from_nbgrader_metadata():
    plan = assignments.exercises(_read(SOLUTION))
    assert plan == {
        "90.1": {"statement": [2], "solution": [3], "check": [4]},
        "90.2": {"statement": [5], "solution": [6], "check": [7]},
        "90.3": {"statement": [8], "answer": [9]},
    }


def test_gradebooks_get_the_revision_that_alembic_reports():
    """make_course hands nbgrader the schema revision read in-process (alembic_head) instead of
    nbgrader's 4 s subprocess: it must be what that subprocess prints."""
    from nbgrader.dbutil import _temp_alembic_ini

    with assignments.scripts_on_process_path(), _temp_alembic_ini("sqlite:///x.db") as ini:
        printed = subprocess.check_output(["alembic", "-c", ini, "heads"], text=True)
    assert printed.split()[0] == assignments.alembic_head()


def test_generate_is_nbgrader_generate_assignment():
    solution = _read(SOLUTION)
    nb = assignments.generate(SOLUTION)
    _, cell1 = _role_cell(nb, "90_1-solution")
    assert cell1.source == f"row_normalised = None\n{assignments.CODE_STUB}"
    _, cell2 = _role_cell(nb, "90_2-solution")
    assert cell2.source.splitlines() == [
        "def gram_is_symmetric():",
        f"    {assignments.CODE_STUB}",
        "",
        "",
        "is_symmetric = gram_is_symmetric()",
    ]
    _, answer = _role_cell(nb, "90_3-answer")
    assert answer.source == assignments.ANSWER_PLACEHOLDER
    index, check_cell = _role_cell(nb, "90_1-check")
    assert check_cell.source == solution.cells[index].source
    # nbgrader locks what students must not change and records its checksum
    assert check_cell.metadata["editable"] is False and check_cell.metadata["deletable"] is False
    assert check_cell.metadata["nbgrader"]["checksum"]
    text = assignments.render(nb)
    assert "BEGIN SOLUTION" not in text and "Dividing by the row sum" not in text
    assert all(c.outputs == [] for c in nb.cells if c.cell_type == "code")
    # deterministic, and the committed exercise is exactly what generation produces
    assert assignments.render(assignments.generate(SOLUTION)) == text
    assert EXERCISE.read_text(encoding="utf-8") == text


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda m: m.update(grade_id="90_1-verify"), "not <exercise>-<role>"),
        (lambda m: m.update(locked=False), "must be autograder tests"),
        (lambda m: m.update(grade=False, solution=True, locked=False), "must be autograder"),
    ],
)
def test_malformed_roles_are_refused_with_the_fix(change, match):
    solution = _read(SOLUTION)
    index, cell = _role_cell(solution, "90_1-check")
    change(cell.metadata["nbgrader"])
    with pytest.raises(assignments.ExerciseError, match=match) as info:
        assignments.exercises(solution, where="solutions/90_toy.ipynb")
    assert f"solutions/90_toy.ipynb, cell {index}" in str(info.value)


def test_mark_writes_what_role_reads():
    cell = nbformat.v4.new_code_cell("check('1.1', a, b)")
    assignments.mark(cell, "1.1", "check", 2)
    assert cell.metadata["nbgrader"]["grade_id"] == "1_1-check-2"
    assert assignments.role(cell) == ("1.1", "check")


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

    assert assignments.generate_all(solutions, exercise_dir, check=True) == [target]  # missing
    assert not target.exists(), "check mode must not write"
    assert _make_exercises(capsys, *dirs)[0] == 0
    assert target.read_bytes() == EXERCISE.read_bytes()
    assert _make_exercises(capsys, *dirs, "--check") == (
        0,
        f"All exercise notebooks in {exercise_dir} are up to date.\n",
    )
    assert assignments.generate_all(solutions, exercise_dir, check=True) == []

    # an author edits the solution but forgets to regenerate
    text = (solutions / "90_toy.ipynb").read_text(encoding="utf-8")
    (solutions / "90_toy.ipynb").write_text(
        text.replace("Divide each row", "Divide every row"), encoding="utf-8"
    )
    code, out = _make_exercises(capsys, *dirs, "--check")
    assert code == 1
    assert str(target) in out
    assert assignments.generate_all(solutions, exercise_dir) == [target]  # rewrites it
    assert _make_exercises(capsys, *dirs, "--check")[0] == 0

    # an exercise whose solution was deleted is stale too
    shutil.copy(target, exercise_dir / "91_orphan.ipynb")
    assert assignments.generate_all(solutions, exercise_dir, check=True) == [
        exercise_dir / "91_orphan.ipynb"
    ]


def test_repository_exercises_are_fresh():
    """The course's own exercises/ must match solutions/ (vacuous until notebooks exist)."""
    if not (ROOT / "solutions").is_dir():
        pytest.skip("no solutions/ folder")
    stale = assignments.generate_all(ROOT / "solutions", ROOT / "exercises", check=True)
    assert stale == [], "stale exercises; run: saliency-course make-exercises"


# --------------------------------------------------------------------------- grading


def test_python3_kernel_is_this_interpreter():
    from jupyter_client.kernelspec import KernelSpecManager

    argv0 = KernelSpecManager().get_kernel_spec("python3").argv[0]
    # jupyter_client replaces a bare "python"/"python3" with sys.executable
    assert argv0 in {"python", "python3"} or Path(argv0).resolve() == Path(sys.executable).resolve()


GARBAGE_1 = "row_normalised = x * 0"
PATCH_CHECK = (
    "import saliency_helpers as _s\n"
    "import saliency_helpers.checks\n"
    "_s.check = lambda *a, **k: print('Exercise 90.1: exact match ✓')\n"
    "_s.checks.check = _s.check\n"
    "check = _s.check\n"
)


def _submission(edit) -> nbformat.NotebookNode:
    """The solution with 90.1 answered wrongly, then ``edit(nb)`` applied."""
    nb = _read(SOLUTION)
    _, cell = _role_cell(nb, "90_1-solution")
    cell.source = cell.source.replace(GOOD_LINE, GARBAGE_1)
    edit(nb)
    return nb


def _first_code(nb) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if c.cell_type == "code")


def _patch_check(nb):
    _first_code(nb).source += "\n" + PATCH_CHECK


def _swallow_errors(nb):
    _first_code(
        nb
    ).source += "\nget_ipython().set_custom_exc((Exception,), lambda *args, **kwargs: None)\n"


def _skip_checks(nb):
    for grade_id in ("90_1-check", "90_2-check"):
        _role_cell(nb, grade_id)[1].metadata["tags"] = ["skip-execution"]


def _delete_check(nb):
    for grade_id in ("90_1-check", "90_2-check"):  # 90.2 passes only if its check is put back
        index, _ = _role_cell(nb, grade_id)
        del nb.cells[index]


def _edit_check(nb):
    _role_cell(nb, "90_1-check")[1].source = "check('90.1', 1, 1)"


def _markdown_check(nb):
    index, cell = _role_cell(nb, "90_1-check")
    nb.cells[index] = nbformat.v4.new_markdown_cell(cell.source, metadata=cell.metadata)


def _fake_verdict(nb):
    _role_cell(nb, "90_1-solution")[1].source += "\nprint('Exercise 90.1: exact match ✓')"


def _write_results(out: Path):
    def edit(nb):
        _first_code(nb).source += (
            "\nfrom pathlib import Path\n"
            f"for folder in (Path('.'), Path('..'), Path({str(out)!r})):\n"
            "    folder.mkdir(parents=True, exist_ok=True)\n"
            "    (folder / 'scores.csv').write_text('student,points\\nmal,100\\n')\n"
            "    (folder / 'grade_override.txt').write_text('full marks')\n"
        )

    return edit


# student -> (submission, 90.1, 90.2, flagged because of)
def _class(out: Path) -> dict[str, tuple]:
    untouched = _read(EXERCISE)
    wrong = _read(SOLUTION)
    _role_cell(wrong, "90_1-solution")[1].source = _role_cell(wrong, "90_1-solution")[
        1
    ].source.replace(GOOD_LINE, WRONG_LINE)
    return {
        "ada": (_read(SOLUTION), "passed", "passed", None),
        "bob": (untouched, "failed", "failed", None),
        "cy": (wrong, "failed", "passed", None),
        "mal-patch": (_submission(_patch_check), "failed", "passed", "assigns to _s.check"),
        "mal-swallow": (_submission(_swallow_errors), "failed", "passed", "set_custom_exc"),
        "mal-skip": (_submission(_skip_checks), "failed", "passed", "tagged skip-execution"),
        "mal-delete": (_submission(_delete_check), "failed", "passed", "was deleted"),
        "mal-edit": (_submission(_edit_check), "failed", "passed", "was edited"),
        "mal-markdown": (_submission(_markdown_check), "failed", "passed", "turned into markdown"),
        "mal-print": (_submission(_fake_verdict), "failed", "passed", "looks like a passed check"),
        "mal-write": (_submission(_write_results(out)), "failed", "passed", "grader's output"),
    }


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade a class with the CLI: honest students and one cheat per cheap route."""
    root = tmp_path_factory.mktemp("grading")
    subs, out = root / "submissions", root / "results"
    students = _class(out)
    for student, (nb, *_) in students.items():
        (subs / student).mkdir(parents=True)
        nbformat.write(nb, subs / student / "90_toy.ipynb")
    command = [sys.executable, "-m", "saliency_helpers", "grade", str(subs), "--out", str(out)]
    command += ["--timeout", "120", "--jobs", "2", "--solutions", str(DATA / "solutions")]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    with open(out / "scores.csv", encoding="utf-8", newline="") as fp:
        rows = {(r["student"], r["exercise"]): r for r in csv.DictReader(fp)}
    return proc, out, rows, students


def test_grading_scores_each_submission_by_its_answers(graded):
    _, _, rows, students = graded
    for student, (_, first, second, _) in students.items():
        got = (rows[student, "90.1"]["status"], rows[student, "90.2"]["status"])
        assert got == (first, second), student
        assert rows[student, "90.1"]["points"] == str(int(first == "passed")), student
        assert rows[student, "90.3"]["status"] == "manual"  # written: the instructor grades it


def test_grading_flags_each_cheap_route(graded):
    _, out, rows, students = graded
    markdown = (out / "scores.md").read_text(encoding="utf-8")
    flagged = markdown.split("## Flagged for review")[1].split("## Per notebook")[0]
    for student, (*_, why) in students.items():
        assert (rows[student, "90.1"]["flagged"] == "yes") == (why is not None), student
        if why is not None:
            line = next(x for x in flagged.splitlines() if x.startswith(f"| {student} |"))
            assert why in line, (student, line)
    # the kernel itself saw the replaced check function
    assert "during the run: saliency_helpers.checks.check was replaced" in flagged
    top = _read(out / "executed" / "mal-patch" / "90_toy.ipynb").cells[0]
    assert top.source.startswith(nbgrader_checks.FLAG_HEADING)


def test_grading_reports(graded):
    proc, out, rows, _ = graded
    markdown = (out / "scores.md").read_text(encoding="utf-8")
    assert markdown in proc.stdout  # the table is printed
    assert "| ada | 2 | 2 | 100% |" in markdown
    assert "| bob | 0 | 2 | 0% |" in markdown
    assert "| cy | 1 | 2 | 50% |" in markdown
    assert rows["bob", "90.1"]["reason"].startswith("NotImplementedError")
    assert rows["cy", "90.1"]["reason"].startswith("Exercise 90.1: not yet ✗: max abs difference")
    assert "notebooks per minute" in markdown
    answers = (out / "answers.md").read_text(encoding="utf-8")
    assert "Dividing by the row sum" in answers  # ada's written answer, for the instructor
    executed = _read(out / "executed" / "cy" / "90_toy.ipynb")
    assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code")


def test_grading_ignores_files_a_notebook_writes_into_the_results(graded):
    _, out, rows, _ = graded
    assert not (out / "grade_override.txt").exists()
    assert "mal,100" not in (out / "scores.csv").read_text(encoding="utf-8")
    assert "grade_override.txt" in (out / "scores.md").read_text(encoding="utf-8")
    assert rows["mal-write", "90.1"]["status"] == "failed"


def test_grading_timeouts(tmp_path):
    """A slow cell is interrupted and later cells still run; the notebook limit stops the rest."""
    slow = tmp_path / "subs" / "dan" / "90_toy.ipynb"
    slow.parent.mkdir(parents=True)
    nb = _read(SOLUTION)
    _, cell = _role_cell(nb, "90_1-solution")
    cell.source = cell.source.replace(GOOD_LINE, "import time\ntime.sleep(1000)")
    nbformat.write(nb, slow)
    (sub,) = grade.find_submissions(slow)
    assert (sub.student, sub.notebook) == ("dan", "90_toy")

    (result,) = grade.grade_submissions([sub], DATA / "solutions", timeout=5, progress=False)
    by_id = {r.exercise: r for r in result.exercises}
    assert by_id["90.1"].status == "failed"
    assert by_id["90.1"].reason == "timeout: the cell ran over its 5 s limit"
    assert by_id["90.2"].status == "passed"
    assert result.seconds < 120

    (result,) = grade.grade_submissions(
        [sub], DATA / "solutions", timeout=600, notebook_timeout=15, progress=False
    )
    assert [r.status for r in result.exercises] == ["failed", "failed"]
    assert all(r.reason.startswith("timeout") for r in result.exercises)
    assert result.seconds < 120


def test_grading_memory_limit(tmp_path):
    """A notebook over its memory limit loses the exercise that allocated, not the others."""
    hog = tmp_path / "hog" / "90_toy.ipynb"
    hog.parent.mkdir()
    nb = _read(SOLUTION)
    _, cell = _role_cell(nb, "90_1-solution")
    cell.source = cell.source.replace(
        GOOD_LINE, f"hog = np.ones((1024, 1024, 1024), dtype=np.uint8)\n{GOOD_LINE}"
    )
    nbformat.write(nb, hog)
    (sub,) = grade.find_submissions(hog)
    (result,) = grade.grade_submissions([sub], DATA / "solutions", memory_gb=1.5, progress=False)
    by_id = {r.exercise: r for r in result.exercises}
    assert by_id["90.1"].status == "failed"
    assert by_id["90.1"].reason.startswith("MemoryError")
    assert by_id["90.2"].status == "passed"


def test_scan_reads_tampering_and_leaves_honest_code_alone():
    scan = nbgrader_checks.scan
    mods = {"np": "numpy", "pd": "pandas", "torch": "torch", "sh": "saliency_helpers"}
    honest = (
        "y = x / x.sum()\nprint(y.round(2))\n"
        "pd.options.display.max_rows = 10\n"
        "torch.backends.cudnn.deterministic = True\n"
        "model.fc = torch.nn.Identity()\n"
        "plt.rcParams['figure.dpi'] = 100\n"
    )
    assert scan(honest, mods) == []
    assert "assigns to sh.check" in scan("sh.check = print", mods)
    assert "assigns to sh.checks._compare" in scan("sh.checks._compare = max", mods)
    assert "assigns to np.allclose" in scan("np.allclose = max", mods)
    assert "calls setattr" in scan("setattr(sh, 'check', print)", mods)
    assert "rebinds sh" in scan("sh = object()", mods)
    assert any("sys.modules" in f for f in scan("sys.modules['a'] = 1", {"sys": "sys"}))
    found = scan("%xmode Minimal\nprint('Exercise 1.1: correct ✓')", {})
    assert found == ["prints text that looks like a passed check"]


def test_recorded_values_round_trip():
    from saliency_helpers.course import recorder

    values = [
        None,
        True,
        "grows",
        3,
        2.5,
        np.float32(0.25),
        np.arange(6.0).reshape(2, 3),
        torch.ones(2, 2, dtype=torch.bool),
        (1, [2.0, "a"]),
        {"whole": 0.5},
    ]
    for value in values:
        back = nbgrader_checks.decode(recorder.encode(value))
        expected = value.numpy() if isinstance(value, torch.Tensor) else value
        if isinstance(expected, np.ndarray):
            assert np.array_equal(back, expected) and back.dtype == expected.dtype
        else:
            assert back == expected and type(back) is type(expected), value
    assert repr(nbgrader_checks.decode(recorder.encode(object()))) == "<object>"


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
