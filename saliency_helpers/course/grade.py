"""Grade submitted exercise notebooks by running them.

Usage::

    saliency-course grade SUBMISSIONS [--solutions solutions/] [--out results/]
                                     [--timeout 600] [--notebook-timeout 1800] [--quick]

``SUBMISSIONS`` is one of

* a folder with one sub-folder per student: ``SUBMISSIONS/<student>/<NN_name>.ipynb``
  (the documented layout);
* a flat folder of ``<student>__<NN_name>.ipynb`` files (also accepted, e.g. LMS exports);
* a single ``.ipynb`` file (the student is the name of its folder).

Every notebook runs in a fresh ``python3`` kernel of the interpreter that runs the grader
(jupyter_client substitutes ``sys.executable`` for the kernelspec's ``python``), with the
notebook's folder as working directory. Errors do not stop the run: every cell runs.
An exercise (cells tagged ``exercise:<id>``, see ``saliency_helpers.course.exercises``) passes
when all its code cells ran without error. Limits: ``--timeout`` seconds per cell (the cell
is interrupted, the exercise scores 0, the next cells still run) and ``--notebook-timeout``
seconds for the whole notebook (cells not reached score 0, reason "timeout").

``--solutions DIR`` (recommended for real grading) takes the list of exercises from the
reference ``DIR/<NN_name>.ipynb`` and puts its check cells (tag ``check``) back in place of
the submitted ones, so deleting or editing a check cell does not pass an exercise.

``--quick`` sets ``SALIENCY_QUICK=1`` in the kernel (the CI-sized run); without it the
variable is removed from the kernel's environment so grades never depend on the shell.

Writes ``OUT/scores.csv`` (one row per student, notebook, exercise), ``OUT/scores.md``
(the same plus per-notebook and per-student totals; also printed), ``OUT/answers.md``
(written answers for the instructor) and ``OUT/executed/<student>/<NN_name>.ipynb``.
Points: 1 per passed exercise; written (markdown) answers are "manual" and not counted.
The exit code is 0 whenever grading ran, whatever the scores.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbclient.exceptions import DeadKernelError
from nbformat import NotebookNode

from .common import kernel_env
from .exercises import ANSWER_TAG, CHECK_TAG, ExerciseError, exercise_id
from .kernels import notebook_client

__all__ = [
    "ExerciseResult",
    "NotebookResult",
    "Submission",
    "find_submissions",
    "grade_notebook",
    "grade_submissions",
    "main",
    "write_reports",
]

PASSED, FAILED, MANUAL = "passed", "failed", "manual"
_TIMEOUT_ENAME = "GraderTimeout"
# nbclient skips cells tagged "skip-execution"; a student must not be able to skip a check.
_NEVER_SKIP_TAG = "saliency-grader-never-skips-a-cell"


@dataclass(frozen=True)
class Submission:
    """One submitted notebook: ``student``, ``notebook`` (stem, e.g. ``03_ig``), ``path``."""

    student: str
    notebook: str
    path: Path


@dataclass
class ExerciseResult:
    """Grade of one exercise: ``status`` is ``passed``, ``failed`` or ``manual``."""

    student: str
    notebook: str
    exercise: str
    status: str
    points: int | None
    reason: str = ""


@dataclass
class NotebookResult:
    """Grades of one notebook, its run time in seconds, notes, and the executed notebook."""

    submission: Submission
    exercises: list[ExerciseResult]
    seconds: float
    notes: list[str] = field(default_factory=list)
    executed: NotebookNode | None = None
    answers: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- discovery


def find_submissions(path: str | Path) -> list[Submission]:
    """List the notebooks to grade, sorted by student then notebook.

    Args:
        path: A folder ``<student>/<NN_name>.ipynb``, a flat folder of
            ``<student>__<NN_name>.ipynb``, or one ``.ipynb`` file.

    Returns:
        The submissions (checkpoint folders and hidden files are ignored).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: A top-level notebook in a folder is not named ``<student>__<NN_name>``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"submissions not found: {path}")
    if path.is_file():
        if path.suffix != ".ipynb":
            raise ValueError(f"expected a .ipynb file or a folder, got {path}")
        return [Submission(path.resolve().parent.name, path.stem, path)]
    found: list[Submission] = []
    for item in sorted(path.iterdir()):
        if item.name.startswith("."):
            continue
        if item.is_dir():
            found += [
                Submission(item.name, nb.stem, nb)
                for nb in sorted(item.glob("*.ipynb"))
                if not nb.name.startswith(".")
            ]
        elif item.suffix == ".ipynb":
            student, sep, notebook = item.stem.partition("__")
            if not sep or not student or not notebook:
                raise ValueError(
                    f"{item}: a notebook directly in {path} must be named "
                    "<student>__<NN_name>.ipynb; or put it in a folder <student>/"
                )
            found.append(Submission(student, notebook, item))
    return sorted(found, key=lambda s: (s.student, s.notebook))


# --------------------------------------------------------------------------- grading


def _exercise_cells(nb: NotebookNode, name: str) -> dict[str, list[int]]:
    """Exercise id -> indices of its cells, in notebook order."""
    cells: dict[str, list[int]] = {}
    for index, cell in enumerate(nb.cells):
        ex_id = exercise_id(cell, where=f"{name}, cell {index}")
        if ex_id is not None:
            cells.setdefault(ex_id, []).append(index)
    return cells


def _is_code(cell: NotebookNode) -> bool:
    return cell.cell_type == "code"


def _is_check(cell: NotebookNode) -> bool:
    return _is_code(cell) and CHECK_TAG in cell.get("metadata", {}).get("tags", [])


def _restore_checks(
    nb: NotebookNode, reference: NotebookNode, name: str
) -> tuple[list[str], dict[str, str]]:
    """Put the reference check cells back; return the reference exercise order and problems."""
    problems: dict[str, str] = {}
    ref_cells = _exercise_cells(reference, f"reference {name}")
    sub_cells = _exercise_cells(nb, name)
    for ex_id, ref_idx in ref_cells.items():
        sub_idx = sub_cells.get(ex_id, [])
        ref_checks = [i for i in ref_idx if _is_check(reference.cells[i])]
        # A check cell turned into markdown is missing: count code cells only.
        sub_checks = [i for i in sub_idx if _is_check(nb.cells[i])]
        ref_code = [i for i in ref_idx if _is_code(reference.cells[i])]
        sub_code = [i for i in sub_idx if _is_code(nb.cells[i])]
        if ref_code and not sub_code:
            problems[ex_id] = "exercise cells missing (exercise tag removed?)"
        elif len(ref_checks) != len(sub_checks):
            problems[ex_id] = (
                f"{len(sub_checks)} check cell(s) found, expected {len(ref_checks)}; "
                "start again from the exercise notebook"
            )
        else:
            for r, s in zip(ref_checks, sub_checks, strict=True):
                nb.cells[s].source = reference.cells[r].source
    return list(ref_cells), problems


def _reason(reply: dict | None) -> str:
    content = (reply or {}).get("content", {})
    ename, evalue = content.get("ename", "Error"), str(content.get("evalue", ""))
    first = evalue.strip().splitlines()[0] if evalue.strip() else ""
    text = f"{ename}: {first}" if first else ename
    return text if len(text) <= 200 else text[:197] + "..."


def grade_notebook(
    submission: Submission,
    *,
    timeout: int = 600,
    notebook_timeout: int = 1800,
    quick: bool = False,
    reference: NotebookNode | None = None,
    kernel_name: str = "python3",
) -> NotebookResult:
    """Run one submitted notebook and grade each of its exercises.

    Args:
        submission: The notebook to grade.
        timeout: Seconds allowed per cell; a slower cell is interrupted and fails.
        notebook_timeout: Seconds allowed for the whole notebook; cells not reached fail.
        quick: Set ``SALIENCY_QUICK=1`` in the kernel (else the variable is removed).
        reference: The solution notebook; if given, it defines the exercises and its check
            cells replace the submitted ones.
        kernel_name: Jupyter kernel to use.

    Returns:
        A :class:`NotebookResult` with one :class:`ExerciseResult` per exercise.
    """
    sub = submission
    start = time.monotonic()
    notes: list[str] = []
    try:
        nb = nbformat.read(sub.path, as_version=4)
        problems: dict[str, str] = {}
        order = list(_exercise_cells(nb, str(sub.path)))
        if reference is not None:
            order, problems = _restore_checks(nb, reference, str(sub.path))
    except (ExerciseError, ValueError, OSError) as err:  # nbformat raises ValueError subclasses
        reason = f"unreadable notebook: {type(err).__name__}: {str(err).splitlines()[0][:150]}"
        ids = list(_exercise_cells(reference, "reference")) if reference is not None else ["*"]
        rows = [ExerciseResult(sub.student, sub.notebook, i, FAILED, 0, reason) for i in ids]
        return NotebookResult(sub, rows, time.monotonic() - start, [reason])

    env = kernel_env(quick)
    replies: dict[int, dict | None] = {}
    client = notebook_client(
        nb,
        timeout=timeout,
        kernel_name=kernel_name,
        allow_errors=True,
        interrupt_on_timeout=True,
        error_on_timeout={"ename": _TIMEOUT_ENAME, "evalue": "cell ran over the time limit"},
        skip_cells_with_tag=_NEVER_SKIP_TAG,
        record_timing=False,
        shutdown_kernel="immediate",  # nothing to save; a graceful shutdown costs seconds
        resources={"metadata": {"path": str(sub.path.resolve().parent)}},
    )
    client.on_cell_executed = lambda cell, cell_index, execute_reply: replies.__setitem__(
        cell_index, execute_reply
    )
    not_run_reason: str | None = None
    limit_of: dict[int, int] = {}
    try:
        with client.setup_kernel(env=env):
            for index, cell in enumerate(nb.cells):
                if not _is_code(cell):
                    continue
                remaining = notebook_timeout - (time.monotonic() - start)
                if remaining <= 0:
                    not_run_reason = f"timeout: notebook stopped at its {notebook_timeout} s limit"
                    notes.append(not_run_reason)
                    break
                client.timeout = max(1, min(timeout, int(remaining)))
                limit_of[index] = client.timeout
                client.execute_cell(cell, index)
    except DeadKernelError:
        not_run_reason = "kernel died (out of memory?); later cells did not run"
        notes.append(not_run_reason)
    except Exception as err:  # kernel failed to start: every exercise fails, grading goes on
        not_run_reason = f"could not run the notebook: {type(err).__name__}: {err}"
        notes.append(not_run_reason)

    rows: list[ExerciseResult] = []
    answers: dict[str, str] = {}
    cells_of = _exercise_cells(nb, str(sub.path))
    for ex_id in order:
        indices = cells_of.get(ex_id, [])
        code = [i for i in indices if _is_code(nb.cells[i]) and nb.cells[i].source.strip()]
        for i in indices:
            if nb.cells[i].cell_type == "markdown" and ANSWER_TAG in nb.cells[i].metadata.get(
                "tags", []
            ):
                answers[ex_id] = nb.cells[i].source
        if ex_id in problems:
            rows.append(
                ExerciseResult(sub.student, sub.notebook, ex_id, FAILED, 0, problems[ex_id])
            )
            continue
        if not code:
            if any(nb.cells[i].cell_type == "code" for i in indices):
                reason = "exercise cells are empty"
                rows.append(ExerciseResult(sub.student, sub.notebook, ex_id, FAILED, 0, reason))
            else:
                reason = "written answer, graded by the instructor"
                rows.append(ExerciseResult(sub.student, sub.notebook, ex_id, MANUAL, None, reason))
            continue
        reason = ""
        for i in code:
            if i not in replies:
                reason = not_run_reason or "cell did not run"
                break
            reply = replies[i]
            content = (reply or {}).get("content", {})
            if content.get("status") == "ok":
                continue
            if content.get("ename") == _TIMEOUT_ENAME:
                reason = f"timeout: cell {i} ran over {limit_of.get(i, timeout)} s"
                notes.append(f"cell {i} interrupted after {limit_of.get(i, timeout)} s")
            else:
                reason = _reason(reply)
            break
        status = FAILED if reason else PASSED
        rows.append(
            ExerciseResult(sub.student, sub.notebook, ex_id, status, int(not reason), reason)
        )
    return NotebookResult(sub, rows, time.monotonic() - start, notes, nb, answers)


def grade_submissions(
    submissions: Sequence[Submission],
    *,
    solutions_dir: str | Path | None = None,
    progress: bool = True,
    **kwargs,
) -> list[NotebookResult]:
    """Grade several submissions in turn; ``kwargs`` go to :func:`grade_notebook`."""
    references: dict[str, NotebookNode | None] = {}
    results = []
    for sub in submissions:
        if solutions_dir is not None and sub.notebook not in references:
            ref_path = Path(solutions_dir) / f"{sub.notebook}.ipynb"
            references[sub.notebook] = (
                nbformat.read(ref_path, as_version=4) if ref_path.is_file() else None
            )
        reference = references.get(sub.notebook)
        if progress:
            print(f"grading {sub.student} / {sub.notebook} ...", file=sys.stderr, flush=True)
        result = grade_notebook(sub, reference=reference, **kwargs)
        if solutions_dir is not None and reference is None:
            result.notes.append(f"no reference {sub.notebook}.ipynb in {solutions_dir}")
        results.append(result)
    return results


# --------------------------------------------------------------------------- reports


def _md(text: object) -> str:
    return str(text).replace("\n", " ").replace("|", "\\|")


def write_reports(results: Sequence[NotebookResult], out_dir: str | Path) -> str:
    """Write ``scores.csv``, ``scores.md``, ``answers.md`` and ``executed/`` under ``out_dir``.

    Returns:
        The Markdown text of ``scores.md``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [row for res in results for row in res.exercises]

    with open(out / "scores.csv", "w", encoding="utf-8", newline="") as fp:
        writer = csv.writer(fp)
        writer.writerow(["student", "notebook", "exercise", "status", "points", "reason"])
        for r in rows:
            points = "" if r.points is None else r.points
            writer.writerow([r.student, r.notebook, r.exercise, r.status, points, r.reason])

    totals: dict[str, list[int]] = {}
    for r in rows:
        passed_total = totals.setdefault(r.student, [0, 0])
        if r.points is not None:
            passed_total[0] += r.points
            passed_total[1] += 1
    lines = ["# Scores", "", "## Per student", ""]
    lines += ["| student | points | out of | score |", "|---|---:|---:|---:|"]
    for student, (passed, total) in sorted(totals.items()):
        score = f"{100 * passed / total:.0f}%" if total else "-"
        lines.append(f"| {_md(student)} | {passed} | {total} | {score} |")
    lines += ["", "## Per notebook", ""]
    lines += [
        "| student | notebook | points | out of | seconds | notes |",
        "|---|---|---:|---:|---:|---|",
    ]
    for res in results:
        auto = [r for r in res.exercises if r.points is not None]
        notes = "; ".join(dict.fromkeys(res.notes))
        lines.append(
            f"| {_md(res.submission.student)} | {_md(res.submission.notebook)} | "
            f"{sum(r.points or 0 for r in auto)} | {len(auto)} | {res.seconds:.1f} | {_md(notes)} |"
        )
    lines += ["", "## Per exercise", ""]
    lines += [
        "| student | notebook | exercise | status | points | reason |",
        "|---|---|---|---|---:|---|",
    ]
    for r in rows:
        points = "" if r.points is None else r.points
        lines.append(
            f"| {_md(r.student)} | {_md(r.notebook)} | {_md(r.exercise)} | {r.status} | "
            f"{points} | {_md(r.reason)} |"
        )
    markdown = "\n".join(lines) + "\n"
    (out / "scores.md").write_text(markdown, encoding="utf-8")

    answer_lines = ["# Written answers (graded by the instructor)", ""]
    for res in results:
        for ex_id, text in res.answers.items():
            answer_lines += [
                f"## {res.submission.student} / {res.submission.notebook} / {ex_id}",
                "",
                text.strip() or "*(empty)*",
                "",
            ]
        if res.executed is not None:
            target = out / "executed" / res.submission.student / f"{res.submission.notebook}.ipynb"
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(res.executed, target)
    (out / "answers.md").write_text("\n".join(answer_lines), encoding="utf-8")
    return markdown


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: ``saliency-course grade SUBMISSIONS [options]``."""
    parser = argparse.ArgumentParser(
        prog="saliency-course grade",
        description="Run submitted exercise notebooks and score their exercises.",
    )
    parser.add_argument(
        "submissions",
        type=Path,
        help="folder <student>/<NN_name>.ipynb, flat folder <student>__<NN_name>.ipynb, "
        "or one .ipynb",
    )
    parser.add_argument("--out", type=Path, default=Path("results"), help="default: results/")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell (600)")
    parser.add_argument(
        "--notebook-timeout", type=int, default=1800, help="seconds per notebook (1800)"
    )
    parser.add_argument(
        "--solutions",
        type=Path,
        default=None,
        help="reference notebooks: exercise list and original check cells (recommended)",
    )
    parser.add_argument("--quick", action="store_true", help="set SALIENCY_QUICK=1 in kernels")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel name (python3)")
    args = parser.parse_args(argv)
    if args.timeout < 1 or args.notebook_timeout < 1:
        parser.error("--timeout and --notebook-timeout must be at least 1 second")
    try:
        submissions = find_submissions(args.submissions)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))
    if not submissions:
        parser.error(f"no notebooks found in {args.submissions}")
    if args.solutions is not None and not args.solutions.is_dir():
        parser.error(f"--solutions folder not found: {args.solutions}")

    results = grade_submissions(
        submissions,
        solutions_dir=args.solutions,
        timeout=args.timeout,
        notebook_timeout=args.notebook_timeout,
        quick=args.quick,
        kernel_name=args.kernel,
    )
    print(write_reports(results, args.out))
    print(f"Results written to {args.out}/scores.csv and {args.out}/scores.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
