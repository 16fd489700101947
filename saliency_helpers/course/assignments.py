"""The exercises as nbgrader assignments: cell roles, the course's nbgrader settings, exercises/.

The single source is ``solutions/NN_name.ipynb``. Its exercise cells carry nbgrader's own cell
metadata (what the "Create Assignment" panel of nbgrader's JupyterLab extension writes) with
the grade id ``<exercise>-<role>``, the exercise's dots written as ``_`` (nbgrader allows
letters, digits, ``_`` and ``-``): ``03_2-check`` is the check cell of exercise 03.2.

=========  =====================  ==========================================================
role       nbgrader cell type     what it is
=========  =====================  ==========================================================
statement  read-only              the exercise's text, or code students run as it is
solution   autograded answer      code; the lines between ``# BEGIN SOLUTION`` and
                                  ``# END SOLUTION`` become a ``NotImplementedError`` stub
check      autograder tests       locked, 1 point; calls ``sh.check`` / ``sh.check_true``
answer     manually graded answer a written answer (markdown), 1 point, for the instructor
=========  =====================  ==========================================================

A second cell of the same role adds ``-2``, ``-3`` (``03_2-statement-2``). Nothing else marks
an exercise: the grader, the exercise generator and the tests read these roles (:func:`role`,
:func:`exercises`).

``exercises/NN_name.ipynb`` is what ``nbgrader generate_assignment`` makes of the solution
(:func:`generate_all`, ``saliency-course make-exercises``); ``--check`` reports stale files.
The course's nbgrader settings (:func:`configure`) are the same for generating, for
``saliency-course grade`` and for an instructor's own ``nbgrader_config.py``.

Public API: :data:`ROLES`, :func:`role`, :func:`exercises`, :func:`mark`, :func:`configure`,
:func:`generate`, :func:`generate_all`, :func:`render`, :class:`ExerciseError`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import re
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

from .common import SHUTDOWN, course_folder

__all__ = [
    "ANSWER_PLACEHOLDER",
    "CODE_STUB",
    "ExerciseError",
    "ROLES",
    "configure",
    "error_text",
    "exercises",
    "generate",
    "generate_all",
    "grade_id",
    "make_course",
    "mark",
    "parse_grade_id",
    "render",
    "role",
    "scripts_on_path",
]

ROLES = ("statement", "solution", "check", "answer")
CODE_STUB = 'raise NotImplementedError("write your solution here, then run the check below")'
ANSWER_PLACEHOLDER = "*Your answer here (graded by the instructor).*"
COURSE_ID = "saliency-course"
# nbclient skips cells tagged "skip-execution"; a submission must not be able to skip a check.
NEVER_SKIP_TAG = "saliency-grader-never-skips-a-cell"

# nbgrader's flags for each role: (solution, grade, locked); grade cells carry 1 point.
_FLAGS = {
    "statement": (False, False, True),
    "solution": (True, False, False),
    "check": (False, True, True),
    "answer": (True, True, False),
}
# nbgrader's grade ids allow letters, digits, "_" and "-": exercise 03.2 is written 03_2.
_GRADE_ID = re.compile(
    r"^(?P<exercise>[0-9A-Za-z]+(?:_[0-9A-Za-z]+)*)-(?P<role>[a-z]+)(?:-(?P<n>[0-9]+))?$"
)
_EXERCISE_ID = re.compile(r"^[0-9A-Za-z]+(?:\.[0-9A-Za-z]+)*$")


class ExerciseError(ValueError):
    """A solution notebook breaks the exercise conventions; the message says where and how."""


def grade_id(cell: NotebookNode) -> str | None:
    """A cell's nbgrader grade id, or None."""
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def parse_grade_id(value: str | None) -> tuple[str, str] | None:
    """``"03_2-check"`` -> ``("03.2", "check")``; None for anything else (flags unchecked).

    For reading graded or submitted notebooks, whose metadata a student may have changed;
    :func:`role` is the strict reading of the course's own notebooks.
    """
    match = _GRADE_ID.match(value or "")
    if not match or match["role"] not in ROLES:
        return None
    return match["exercise"].replace("_", "."), match["role"]


def error_text(output: Any, timeout: int | None = None) -> str:
    """One line for an error output: ``"NameError: name 'x' is not defined"``, at most 200
    characters; an interrupted cell (nbgrader's time limit) reads as a timeout."""
    if output.get("ename") in {"KeyboardInterrupt", "CellTimeoutError"}:
        limit = f"its {timeout} s limit" if timeout else "its time limit"
        return f"timeout: the cell ran over {limit}"
    lines = str(output.get("evalue", "")).strip().splitlines()
    text = f"{output.get('ename', 'Error')}: {lines[0]}" if lines else str(output.get("ename"))
    return text if len(text) <= 200 else text[:197] + "..."


def role(cell: NotebookNode, *, where: str = "") -> tuple[str, str] | None:
    """The exercise and role of a cell, from its nbgrader metadata.

    Args:
        cell: A notebook cell.
        where: Location for error messages, e.g. ``"solutions/03_ig.ipynb, cell 7"``.

    Returns:
        ``(exercise, role)``, e.g. ``("03.2", "check")``, or None for a cell outside the
        exercises (no nbgrader metadata, or nbgrader's "no flags" entry).

    Raises:
        ExerciseError: The grade id is not ``<exercise>-<role>``, or the nbgrader flags
            do not match the role (e.g. a check cell that is not locked).

    Example:
        >>> role(nb.cells[4])
        ('01.1', 'check')
    """
    meta = cell.get("metadata", {}).get("nbgrader")
    if not meta or not any(meta.get(k) for k in ("solution", "grade", "locked", "task")):
        return None
    grade_id = str(meta.get("grade_id", ""))
    parsed = parse_grade_id(grade_id)
    if parsed is None:
        raise ExerciseError(
            f"{where}: nbgrader grade id {grade_id!r} is not <exercise>-<role> with a role in "
            f"{ROLES}, e.g. '03_2-check' (exercise 03.2); fix it in the Create Assignment panel"
        )
    exercise, kind = parsed
    flags = tuple(bool(meta.get(k)) for k in ("solution", "grade", "locked"))
    if flags != _FLAGS[kind] or meta.get("task"):
        raise ExerciseError(
            f"{where}: cell {grade_id!r} is marked as nbgrader {_describe(flags)}, but a "
            f"{kind} cell must be {_describe(_FLAGS[kind])}; use saliency_helpers.course."
            "assignments.mark() or the Create Assignment panel"
        )
    want = {"statement": None, "solution": "code", "check": "code", "answer": "markdown"}[kind]
    if want and cell.cell_type != want:
        raise ExerciseError(f"{where}: a {kind} cell must be a {want} cell")
    return exercise, kind


def grade_id_prefix(exercise: str) -> str:
    """How an exercise id is written in nbgrader grade ids: ``"03.2"`` -> ``"03_2"``."""
    if not _EXERCISE_ID.match(exercise):
        raise ValueError(
            f"exercise id {exercise!r}: use letters and digits separated by dots, e.g. '03.2'"
        )
    return exercise.replace(".", "_")


def _describe(flags: tuple[bool, ...]) -> str:
    names = {
        (False, False, True): "read-only",
        (True, False, False): "autograded answer",
        (False, True, True): "autograder tests",
        (True, True, False): "manually graded answer",
    }
    return names.get(flags, f"solution={flags[0]}, grade={flags[1]}, locked={flags[2]}")


def exercises(nb: NotebookNode, *, where: str = "notebook") -> dict[str, dict[str, list[int]]]:
    """The exercises of a notebook: exercise id -> role -> cell indices, in notebook order.

    Args:
        nb: A solution, exercise or submitted notebook.
        where: Name for error messages.

    Returns:
        E.g. ``{"01.1": {"statement": [3], "solution": [4], "check": [5]}, ...}``.

    Raises:
        ExerciseError: A malformed nbgrader cell, or a grade id used twice.
    """
    found: dict[str, dict[str, list[int]]] = {}
    seen: set[str] = set()
    for index, cell in enumerate(nb.cells):
        got = role(cell, where=f"{where}, cell {index}")
        if got is None:
            continue
        grade_id = cell.metadata.nbgrader["grade_id"]
        if grade_id in seen:
            raise ExerciseError(f"{where}, cell {index}: grade id {grade_id!r} is used twice")
        seen.add(grade_id)
        exercise, kind = got
        found.setdefault(exercise, {}).setdefault(kind, []).append(index)
    return found


def mark(cell: NotebookNode, exercise: str, kind: str, n: int = 1) -> NotebookNode:
    """Give a cell its nbgrader metadata for an exercise role (in place; returns the cell).

    Args:
        cell: The cell to mark.
        exercise: The exercise id, e.g. ``"03.2"``.
        kind: One of :data:`ROLES`.
        n: 1 for the first cell of this role in the exercise, 2 for the second, ...

    Returns:
        The same cell.

    Example:
        >>> mark(nb.cells[5], "03.2", "check").metadata.nbgrader["grade_id"]
        '03_2-check'
    """
    if kind not in ROLES:
        raise ValueError(f"kind must be one of {ROLES}, got {kind!r}")
    solution, grade, locked = _FLAGS[kind]
    meta = {
        "grade": grade,
        "grade_id": f"{grade_id_prefix(exercise)}-{kind}" + (f"-{n}" if n > 1 else ""),
        "locked": locked,
        "schema_version": 3,
        "solution": solution,
        "task": False,
    }
    if grade:
        meta["points"] = 1
    cell.metadata["nbgrader"] = meta
    return cell


def configure(config: Any, *, timeout: int = 600) -> Any:
    """Apply the course's nbgrader settings to a traitlets config (in place; returns it).

    Use it in an instructor's ``nbgrader_config.py``::

        from saliency_helpers.course.assignments import configure
        configure(get_config())

    It sets the solution stub and the written-answer placeholder, the per-cell time limit,
    that no tag can make nbgrader skip a cell, that a deleted check cell is put back, and
    the two preprocessors of :mod:`saliency_helpers.course.nbgrader_checks` that record
    every ``sh.check`` in the grader's own code and flag tampering.

    Args:
        config: A ``traitlets.config.Config`` (``get_config()`` in a config file).
        timeout: Seconds allowed per cell while autograding.

    Returns:
        The same config.
    """
    from nbgrader.converters.autograde import Autograde

    config.CourseDirectory.course_id = COURSE_ID
    config.ClearSolutions.code_stub = {"python": CODE_STUB}
    config.ClearSolutions.text_stub = ANSWER_PLACEHOLDER
    config.Execute.timeout = timeout
    config.Execute.shutdown_kernel = SHUTDOWN  # no wait for the kernel's teardown (common.py)
    config.Execute.skip_cells_with_tag = NEVER_SKIP_TAG
    config.OverwriteCells.add_missing_cells = True
    checks = "saliency_helpers.course.nbgrader_checks"
    sanitize = list(Autograde.class_traits()["sanitize_preprocessors"].default())
    autograde = list(Autograde.class_traits()["autograde_preprocessors"].default())
    names = [p.__name__ for p in sanitize]
    # Audit the submission as submitted (before nbgrader restores locked cells), then
    # rewrite the restored check cells so that they record instead of asserting.
    sanitize.insert(names.index("OverwriteCells"), f"{checks}.AuditSubmission")
    sanitize.insert(names.index("OverwriteCells") + 2, f"{checks}.RecordChecks")
    autograde.insert(1, f"{checks}.ScoreChecks")  # right after Execute
    config.Autograde.sanitize_preprocessors = sanitize
    config.Autograde.autograde_preprocessors = autograde
    return config


def scripts_on_path(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with this interpreter's scripts folder first on PATH.

    nbgrader runs the ``alembic`` command by name; in a venv that is not activated (e.g.
    ``.venv/bin/saliency-course``) it is not on PATH otherwise.
    """
    env = dict(os.environ if env is None else env)
    scripts = sysconfig.get_path("scripts")
    env["PATH"] = os.pathsep.join([scripts, env.get("PATH", "")])
    return env


@contextlib.contextmanager
def scripts_on_process_path() -> Iterator[None]:
    """Within the block, this process's PATH has the interpreter's scripts first (nbgrader)."""
    saved = os.environ.get("PATH")
    os.environ["PATH"] = scripts_on_path()["PATH"]
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = saved


@functools.cache
def alembic_head() -> str:
    """The revision of nbgrader's gradebook schema, read in this process and remembered.

    nbgrader writes it into every gradebook it creates, and asks for it by running the
    ``alembic heads`` command each time, a subprocess that takes about 4 s on 2 cores. The
    answer is a constant of the installed nbgrader: :func:`make_course` makes nbgrader read
    it from here (``tests/test_grading.py`` checks that both give the same revision).

    Returns:
        The head revision of nbgrader's alembic migrations (nbgrader 0.9: ``"e43177bfe90b"``).
    """
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory
    from nbgrader import dbutil

    config = AlembicConfig()
    config.set_main_option("script_location", dbutil.ALEMBIC_DIR)
    return ScriptDirectory.from_config(config).get_current_head()


def make_course(root: Path, solutions: Sequence[Path], timeout: int = 600) -> None:
    """An nbgrader course in ``root``: one assignment per solution, generated by nbgrader.

    Args:
        root: An empty folder; gets ``source/``, ``release/`` and ``gradebook.db``.
        solutions: Paths of solution notebooks ``NN_name.ipynb``.
        timeout: Seconds per cell when this course autogrades.

    Raises:
        ExerciseError: A notebook breaks the conventions, or nbgrader refused it (its log).
    """
    import nbgrader.api
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    nbgrader.api.get_alembic_version = alembic_head  # the same answer, without a subprocess

    for path in solutions:
        exercises(nbformat.read(path, as_version=4), where=str(path))  # clear errors first
        folder = root / "source" / path.stem
        folder.mkdir(parents=True)
        shutil.copy(path, folder / path.name)
    config = configure(Config(), timeout=timeout)
    config.CourseDirectory.root = str(root)
    config.Exchange.root = str(root / "exchange")  # nbgrader's default is a system folder
    api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
    for path in solutions:
        with scripts_on_process_path():
            result = api.generate_assignment(path.stem)
        if not result["success"]:
            log = (result.get("error") or "") + (result.get("log") or "")
            raise ExerciseError(f"nbgrader could not generate {path}:\n{log.strip()[-2000:]}")


def generate_notebooks(solutions: Sequence[Path]) -> dict[str, NotebookNode]:
    """Run ``nbgrader generate_assignment`` on solution notebooks (one assignment each).

    Args:
        solutions: Paths of solution notebooks ``NN_name.ipynb``.

    Returns:
        ``{"NN_name": student notebook}`` (nbgrader clears outputs; nbclient's timing
        records go too).

    Raises:
        ExerciseError: A notebook breaks the conventions, or nbgrader refused it (its log).
    """
    generated: dict[str, NotebookNode] = {}
    with tempfile.TemporaryDirectory(prefix="saliency-generate-") as tmp:
        root = Path(tmp)
        make_course(root, solutions)
        for path in solutions:
            nb = nbformat.read(root / "release" / path.stem / path.name, as_version=4)
            for cell in nb.cells:
                cell.get("metadata", {}).pop("execution", None)
            generated[path.stem] = nb
    return generated


def generate(solution: str | Path) -> NotebookNode:
    """The student version of one solution notebook, as ``nbgrader generate_assignment`` makes it.

    Args:
        solution: Path of a solution notebook.

    Returns:
        The exercise notebook (solution blocks stubbed, answers blanked, outputs removed).

    Example:
        >>> nb = generate("solutions/03_integrated_gradients.ipynb")
    """
    path = Path(solution)
    return generate_notebooks([path])[path.stem]


def render(nb: NotebookNode) -> str:
    """Serialise a notebook exactly as :func:`generate_all` writes it (with a final newline)."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def _notebooks(folder: Path) -> Iterable[Path]:
    return sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))


def generate_all(
    solutions_dir: str | Path, exercises_dir: str | Path, check: bool = False
) -> list[Path]:
    """Regenerate every ``exercises/NN_name.ipynb`` from ``solutions/NN_name.ipynb``.

    Args:
        solutions_dir: Folder with the solution notebooks (the source).
        exercises_dir: Folder for the generated exercise notebooks (created if missing).
        check: If True, write nothing and only report stale files.

    Returns:
        The stale exercise paths, sorted: missing or different from what would be
        generated, plus (in check mode) exercises that have no solution any more.
        Without ``check`` these are the files (re)written; unchanged files are not touched.

    Raises:
        FileNotFoundError: ``solutions_dir`` does not exist.
        ExerciseError: A solution notebook breaks the conventions.

    Example:
        >>> stale = generate_all("solutions", "exercises", check=True)
    """
    solutions_dir, exercises_dir = Path(solutions_dir), Path(exercises_dir)
    if not solutions_dir.is_dir():
        raise FileNotFoundError(f"solutions folder not found: {solutions_dir}")
    solutions = list(_notebooks(solutions_dir))
    generated = generate_notebooks(solutions)
    stale: list[Path] = []
    for solution in solutions:
        target = exercises_dir / solution.name
        text = render(generated[solution.stem])
        current = target.read_text(encoding="utf-8") if target.is_file() else None
        if current == text:
            continue
        stale.append(target)
        if not check:
            exercises_dir.mkdir(parents=True, exist_ok=True)
            # newline="\n": identical bytes on every OS, so the staleness check is portable.
            with open(target, "w", encoding="utf-8", newline="\n") as fp:
                fp.write(text)
    if check and exercises_dir.is_dir():
        names = {p.name for p in solutions}
        stale += [p for p in _notebooks(exercises_dir) if p.name not in names]
    return sorted(stale)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: ``saliency-course make-exercises [--check]``.

    Regenerates ``exercises/NN_name.ipynb`` from ``solutions/NN_name.ipynb`` with nbgrader;
    with ``--check`` it writes nothing and exits 1 if an exercise notebook is stale.

    Args:
        argv: the arguments (default ``sys.argv[1:]``).

    Returns:
        0 when done (or up to date), 1 when ``--check`` found stale notebooks, 2 on errors.
    """
    parser = argparse.ArgumentParser(
        prog="saliency-course make-exercises",
        description="Generate exercises/NN_name.ipynb from solutions/NN_name.ipynb (nbgrader).",
    )
    parser.add_argument("--solutions", type=Path, default=None, help="default: solutions/")
    parser.add_argument("--exercises", type=Path, default=None, help="default: exercises/")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if an exercise is stale"
    )
    args = parser.parse_args(argv)
    solutions = args.solutions or course_folder("solutions")
    if solutions is None:
        parser.error("no solutions/ folder here; name it with --solutions")
    target = args.exercises or solutions.parent / "exercises"
    try:
        stale = generate_all(solutions, target, check=args.check)
    except (ExerciseError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.check:
        if stale:
            print("Stale exercise notebooks (run: saliency-course make-exercises):")
            for path in stale:
                print(f"  {path}")
            return 1
        print(f"All exercise notebooks in {target} are up to date.")
        return 0
    for path in stale:
        print(f"wrote {path}")
    print(f"{len(stale)} exercise notebook(s) written, the others were up to date.")
    return 0
