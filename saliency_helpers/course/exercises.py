"""Generate the student exercise notebooks from the solution notebooks.

Conventions for notebook authors (the single source is ``solutions/NN_name.ipynb``;
``exercises/NN_name.ipynb`` is GENERATED, never edit it by hand):

1. Tag every cell of an exercise with ``exercise:<id>``, e.g. ``exercise:03.2``
   (``<id>`` = notebook number, dot, exercise number; letters, digits, ``.``, ``_``, ``-``).
   In Jupyter: View > Right Sidebar > Property Inspector > Cell tags.
2. In the solution code cell, surround the solution lines with comment lines::

       answer = None            # kept: the student fills this in
       # BEGIN SOLUTION
       answer = x.grad.abs()
       # END SOLUTION

   The markers (any indentation, several blocks per cell allowed, no nesting) and the
   lines between them become one line at the marker's indentation::

       raise NotImplementedError("Exercise 03.2: write your solution here")

   Everything outside the markers (imports, ``answer = None``, comments) is kept.
   A cell with markers but no ``exercise:<id>`` tag is an error.
3. The self-check cell carries the tags ``check`` and ``exercise:<id>`` and calls
   ``saliency_helpers.checks.check(...)`` / ``check_true(...)``. It is copied unchanged.
4. A markdown cell tagged ``answer`` and ``exercise:<id>`` holds the model answer to a
   written question; it becomes "*Your answer here (graded by the instructor).*".
5. Grading: an exercise passes when every code cell tagged with its ``exercise:<id>``
   runs without error (solution cell and check cell). Markdown-only exercises are
   listed as "manual" for the instructor.
6. Exercise notebooks are written without outputs and execution counts, byte for byte
   deterministic, so ``saliency-course make-exercises --check`` (run by the tests)
   fails when a committed exercise is stale. Regenerate with
   ``saliency-course make-exercises``.

Public API: :func:`generate`, :func:`generate_all`, :func:`exercise_id`,
:func:`render`, :class:`ExerciseError`, and the marker/tag constants.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from .common import course_folder

__all__ = [
    "ANSWER_PLACEHOLDER",
    "ANSWER_TAG",
    "BEGIN_MARKER",
    "CHECK_TAG",
    "END_MARKER",
    "EXERCISE_TAG_PREFIX",
    "ExerciseError",
    "exercise_id",
    "generate",
    "generate_all",
    "render",
    "stub_line",
]

BEGIN_MARKER = "# BEGIN SOLUTION"
END_MARKER = "# END SOLUTION"
EXERCISE_TAG_PREFIX = "exercise:"
CHECK_TAG = "check"
ANSWER_TAG = "answer"
ANSWER_PLACEHOLDER = "*Your answer here (graded by the instructor).*"

# Tolerate "#BEGIN SOLUTION" and trailing blanks: authors' editors differ, the meaning doesn't.
_BEGIN_RE = re.compile(r"^(?P<indent>[ \t]*)#[ \t]*BEGIN SOLUTION[ \t]*$")
_END_RE = re.compile(r"^[ \t]*#[ \t]*END SOLUTION[ \t]*$")
_ID_RE = re.compile(r"^[A-Za-z0-9._-]+$")


class ExerciseError(ValueError):
    """A solution notebook breaks the exercise conventions (message names notebook and cell)."""


def stub_line(ex_id: str, indent: str = "") -> str:
    """The line that replaces a solution block.

    Args:
        ex_id: Exercise id, e.g. ``"03.2"``.
        indent: Leading whitespace of the ``# BEGIN SOLUTION`` line.

    Returns:
        ``'<indent>raise NotImplementedError("Exercise 03.2: write your solution here")'``.
    """
    return f'{indent}raise NotImplementedError("Exercise {ex_id}: write your solution here")'


def exercise_id(cell: NotebookNode, *, where: str = "") -> str | None:
    """The ``<id>`` of a cell's ``exercise:<id>`` tag, or None if it has none.

    Args:
        cell: A notebook cell.
        where: Location for error messages, e.g. ``"solutions/03_ig.ipynb, cell 7"``.

    Returns:
        The id string, e.g. ``"03.2"``, or None.

    Raises:
        ExerciseError: Several ``exercise:`` tags, or an empty/malformed id.
    """
    ids = [
        t[len(EXERCISE_TAG_PREFIX) :]
        for t in cell.get("metadata", {}).get("tags", [])
        if isinstance(t, str) and t.startswith(EXERCISE_TAG_PREFIX)
    ]
    if not ids:
        return None
    if len(ids) > 1:
        raise ExerciseError(f"{where}: a cell may carry one exercise tag, found {ids}")
    if not _ID_RE.match(ids[0]):
        raise ExerciseError(
            f"{where}: bad exercise tag {EXERCISE_TAG_PREFIX}{ids[0]!r}; "
            "use letters, digits, '.', '_' or '-', e.g. 'exercise:03.2'"
        )
    return ids[0]


def _tags(cell: NotebookNode) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _strip_solution(source: str, ex_id: str | None, where: str) -> str:
    lines = source.split("\n")
    out: list[str] = []
    inside = False
    begin_line = 0
    for number, line in enumerate(lines, start=1):
        begin = _BEGIN_RE.match(line)
        if begin:
            if inside:
                raise ExerciseError(
                    f"{where}, line {number}: '{BEGIN_MARKER}' inside another solution block "
                    f"(opened on line {begin_line}); close it with '{END_MARKER}' first"
                )
            if ex_id is None:
                raise ExerciseError(
                    f"{where}: the cell has '{BEGIN_MARKER}' but no 'exercise:<id>' tag; "
                    "add a tag such as 'exercise:03.2' to the cell"
                )
            inside, begin_line = True, number
            out.append(stub_line(ex_id, begin.group("indent")))
        elif _END_RE.match(line):
            if not inside:
                raise ExerciseError(
                    f"{where}, line {number}: '{END_MARKER}' without a '{BEGIN_MARKER}' before it"
                )
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ExerciseError(
            f"{where}: '{BEGIN_MARKER}' on line {begin_line} is never closed; add '{END_MARKER}'"
        )
    return "\n".join(out)


def generate(solution_nb: NotebookNode | str | Path, *, name: str | None = None) -> NotebookNode:
    """Build the student version of a solution notebook.

    Solution blocks become a ``NotImplementedError`` stub, markdown answer cells are
    blanked, outputs, execution counts and execution timings are removed. The input is
    not modified.

    Args:
        solution_nb: A notebook (``nbformat.NotebookNode``, v4) or the path of one.
        name: Name used in error messages (defaults to the path, or "notebook").

    Returns:
        The exercise notebook (a new ``NotebookNode``).

    Raises:
        ExerciseError: Markers without an exercise tag, unbalanced markers, an ``answer``
            tag on a code cell or without an exercise tag. The message names the notebook
            and the cell index (0-based, as in ``nb.cells[i]``).

    Example:
        >>> nb = generate("solutions/03_integrated_gradients.ipynb")
    """
    if isinstance(solution_nb, (str, Path)):
        name = name or str(solution_nb)
        solution_nb = nbformat.read(solution_nb, as_version=4)
    if not isinstance(solution_nb, NotebookNode):
        raise TypeError(
            f"generate() takes a NotebookNode or a path, got {type(solution_nb).__name__}"
        )
    name = name or "notebook"
    nb = copy.deepcopy(solution_nb)
    needs_ids = False
    for index, cell in enumerate(nb.cells):
        where = f"{name}, cell {index}"
        ex_id = exercise_id(cell, where=where)
        tags = _tags(cell)
        if "id" not in cell:
            # nbformat would otherwise invent a random id on write, breaking determinism.
            cell["id"] = f"cell-{index}"
            needs_ids = True
        cell.get("metadata", {}).pop("execution", None)  # nbclient timing records
        if cell.cell_type == "code":
            if ANSWER_TAG in tags:
                raise ExerciseError(
                    f"{where}: the '{ANSWER_TAG}' tag is for markdown cells; in code cells "
                    f"mark the solution with '{BEGIN_MARKER}' / '{END_MARKER}'"
                )
            source = cell.source if isinstance(cell.source, str) else "".join(cell.source)
            cell.source = _strip_solution(source, ex_id, where)
            cell.outputs = []
            cell.execution_count = None
        elif cell.cell_type == "markdown" and ANSWER_TAG in tags:
            if ex_id is None:
                raise ExerciseError(
                    f"{where}: a markdown cell tagged '{ANSWER_TAG}' needs an 'exercise:<id>' tag "
                    "too, e.g. 'exercise:03.3'"
                )
            cell.source = ANSWER_PLACEHOLDER
            cell.pop("attachments", None)
    if needs_ids and nb.nbformat_minor < 5:
        nb.nbformat_minor = 5  # cell ids exist from nbformat 4.5 on
    return nb


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
    stale: list[Path] = []
    expected_names = set()
    for solution in _notebooks(solutions_dir):
        expected_names.add(solution.name)
        target = exercises_dir / solution.name
        text = render(generate(solution))
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
        stale += [p for p in _notebooks(exercises_dir) if p.name not in expected_names]
    return sorted(stale)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: ``saliency-course make-exercises [--check]``.

    Regenerates ``exercises/NN_name.ipynb`` from ``solutions/NN_name.ipynb``; with ``--check``
    it writes nothing and exits 1 if an exercise notebook is stale.

    Args:
        argv: the arguments (default ``sys.argv[1:]``).

    Returns:
        0 when done (or up to date), 1 when ``--check`` found stale notebooks, 2 on errors.
    """
    parser = argparse.ArgumentParser(
        prog="saliency-course make-exercises",
        description="Generate exercises/NN_name.ipynb from solutions/NN_name.ipynb.",
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
    exercises = args.exercises or solutions.parent / "exercises"
    try:
        stale = generate_all(solutions, exercises, check=args.check)
    except (ExerciseError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.check:
        if stale:
            print("Stale exercise notebooks (run: saliency-course make-exercises):")
            for path in stale:
                print(f"  {path}")
            return 1
        print(f"All exercise notebooks in {exercises} are up to date.")
        return 0
    for path in stale:
        print(f"wrote {path}")
    print(f"{len(stale)} exercise notebook(s) written, the others were up to date.")
    return 0
