"""Grade a class's exercise notebooks with nbgrader, in parallel, in one command.

Usage::

    saliency-course grade SUBMISSIONS [--solutions solutions/] [--out results/] [--jobs N]
                          [--timeout 600] [--notebook-timeout 1800] [--memory-gb 8] [--quick]

A thin wrapper for an instructor without a JupyterHub: it sets up a temporary nbgrader course
(``source/NN_name/`` from the solutions, ``nbgrader generate_assignment``, the course's
settings from :func:`saliency_helpers.course.assignments.configure`), then runs
``nbgrader autograde`` once per submitted notebook, ``--jobs`` at a time, each in its own copy
of the course folder and its own process with a memory limit (``--memory-gb``) and a time
limit (``--notebook-timeout``; ``--timeout`` per cell). Scores come from nbgrader's gradebook.

``SUBMISSIONS`` is one of

* a folder with one sub-folder per student: ``SUBMISSIONS/<student>/<NN_name>.ipynb``;
* a flat folder of ``<student>__<NN_name>.ipynb`` files (e.g. LMS exports);
* a single ``.ipynb`` file (the student is the name of its folder).

Writes ``OUT/scores.csv`` (one row per student, notebook, exercise), ``OUT/scores.md`` (the
same with totals and the notebooks flagged for tampering; also printed), ``OUT/answers.md``
(written answers for the instructor) and ``OUT/executed/<student>/<NN_name>.ipynb`` (nbgrader's
autograded notebooks). A file a graded notebook wrote into ``OUT`` is removed and reported.
The exit code is 0 whenever grading ran, whatever the scores.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from .assignments import (
    ExerciseError,
    error_text,
    exercises,
    grade_id,
    make_course,
    parse_grade_id,
    scripts_on_path,
    scripts_on_process_path,
)
from .common import course_folder, kernel_env

__all__ = [
    "ExerciseResult",
    "NotebookResult",
    "Submission",
    "find_submissions",
    "grade_submissions",
    "main",
    "write_reports",
]

PASSED, FAILED, MANUAL = "passed", "failed", "manual"
_CONFIG = """\
# Written by saliency-course grade: the course's nbgrader settings.
from saliency_helpers.course.assignments import configure

c = get_config()  # noqa: F821
configure(c, timeout={timeout})
c.ScoreChecks.report_dir = "reports"
"""
# Set the memory limit, then become nbgrader (exec: no thread-unsafe preexec_fn needed).
_LAUNCH = (
    "import os, resource, sys\n"
    "limit = int(sys.argv[1])\n"
    "if limit > 0:\n"
    "    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'nbgrader', *sys.argv[2:]])\n"
)


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
    """Grades of one notebook, its run time in seconds, notes, flags and the graded notebook."""

    submission: Submission
    exercises: list[ExerciseResult]
    seconds: float
    notes: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
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


def _course(root: Path, solutions: dict[str, Path], timeout: int) -> None:
    """The template nbgrader course: generated assignments and the course's config file."""
    make_course(root, list(solutions.values()), timeout)
    (root / "nbgrader_config.py").write_text(_CONFIG.format(timeout=int(timeout)))


def _failed(sub: Submission, ids: list[str], reason: str, seconds: float) -> NotebookResult:
    rows = [ExerciseResult(sub.student, sub.notebook, i, FAILED, 0, reason) for i in ids]
    return NotebookResult(sub, rows, seconds, [reason])


def _grade_one(
    sub: Submission,
    template: Path,
    work: Path,
    reference: NotebookNode,
    *,
    quick: bool,
    notebook_timeout: int,
    memory_gb: float,
    timeout: int,
    threads: int | None = None,
) -> NotebookResult:
    """Autograde one submission in its own copy of the course folder."""
    from nbgrader.api import Gradebook, MissingEntry

    start = time.monotonic()
    plan = exercises(reference, where=f"solution {sub.notebook}")
    auto = [ex for ex, roles in plan.items() if "check" in roles]
    try:
        nb = nbformat.read(sub.path, as_version=4)
    except Exception as err:  # noqa: BLE001 - any unreadable file scores 0 with its reason
        reason = f"unreadable notebook: {type(err).__name__}: {str(err).splitlines()[0][:150]}"
        return _failed(sub, auto, reason, time.monotonic() - start)
    shutil.copytree(template, work)
    target = work / "submitted" / sub.student / sub.notebook / f"{sub.notebook}.ipynb"
    target.parent.mkdir(parents=True)
    nbformat.write(nb, target)
    limit = int(memory_gb * 2**30) if memory_gb > 0 else 0
    command = [sys.executable, "-c", _LAUNCH, str(limit), "autograde", sub.notebook]
    command += ["--student", sub.student, "--force", "--log-level=ERROR"]
    notes: list[str] = []
    proc = subprocess.Popen(
        command,
        cwd=work,
        env=_kernel_env(quick, threads),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # one process group: nbgrader, and what it starts with it
    )
    try:
        _, stderr = proc.communicate(timeout=notebook_timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the kernel exits when its parent is gone
        proc.communicate()
        reason = f"timeout: notebook stopped at its {notebook_timeout} s limit"
        return _failed(sub, auto, reason, time.monotonic() - start)
    if proc.returncode != 0:
        notes.append(f"nbgrader exited with {proc.returncode}: {stderr.strip()[-300:]}")

    report_path = work / "reports" / sub.student / sub.notebook / f"{sub.notebook}.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    scores: dict[str, float] = {}
    try:
        with scripts_on_process_path(), Gradebook(f"sqlite:///{work / 'gradebook.db'}") as book:
            graded = book.find_submission_notebook(sub.notebook, sub.notebook, sub.student)
            scores = {grade.name: grade.auto_score or 0.0 for grade in graded.grades}
    except MissingEntry:
        notes.append("nbgrader recorded no grades (the notebook could not be run)")
    checks = report.get("checks", {})
    graded_path = work / "autograded" / sub.student / sub.notebook / f"{sub.notebook}.ipynb"
    executed = nbformat.read(graded_path, as_version=4) if graded_path.is_file() else None
    errors = _solution_errors(executed, timeout)
    rows = []
    for ex, roles in plan.items():
        if "check" not in roles:
            rows.append(
                ExerciseResult(sub.student, sub.notebook, ex, MANUAL, None, "written answer")
            )
            continue
        ids = [grade_id(reference.cells[i]) for i in roles["check"]]
        points = sum(scores.get(i, 0.0) for i in ids)
        reasons = [checks.get(i, {}).get("reason", "") for i in ids]
        reason = next((r for r in reasons if r), "" if points else "not graded")
        if reason and errors.get(ex):  # the answer's own error says more than the check's
            reason = errors[ex]
        status = PASSED if points >= len(ids) and not reason else FAILED
        rows.append(ExerciseResult(sub.student, sub.notebook, ex, status, int(points), reason))
    answers = {}
    for ex, roles in plan.items():
        for index in roles.get("answer", []):
            answer_id = grade_id(reference.cells[index])
            cell = next((c for c in nb.cells if grade_id(c) == answer_id), None)
            answers[ex] = cell.source if cell is not None else ""
    return NotebookResult(
        sub,
        rows,
        time.monotonic() - start,
        notes,
        list(report.get("flags", [])),
        executed,
        answers,
    )


def _kernel_env(quick: bool, threads: int | None) -> dict[str, str]:
    """The grading process's environment: course size, scripts on PATH, a share of the cores."""
    env = scripts_on_path(kernel_env(quick))
    if threads is not None and "OMP_NUM_THREADS" not in os.environ:
        # Two kernels with all cores' threads each run several times slower than one after
        # the other (measured: notebook 03 in 113 s instead of 25 s with 2 jobs on 2 cores).
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def _solution_errors(nb: NotebookNode | None, timeout: int) -> dict[str, str]:
    """Exercise -> the first error its solution cells raised, in the graded notebook."""
    found: dict[str, str] = {}
    for cell in nb.cells if nb is not None else []:
        parsed = parse_grade_id(grade_id(cell))
        if cell.cell_type != "code" or parsed is None or parsed[1] != "solution":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error" and parsed[0] not in found:
                found[parsed[0]] = error_text(output, timeout)
    return found


def grade_submissions(
    submissions: Sequence[Submission],
    solutions_dir: str | Path,
    *,
    jobs: int = 1,
    timeout: int = 600,
    notebook_timeout: int = 1800,
    memory_gb: float = 8.0,
    quick: bool = False,
    progress: bool = True,
) -> list[NotebookResult]:
    """Autograde submissions with nbgrader, ``jobs`` notebooks at a time.

    Args:
        submissions: From :func:`find_submissions`.
        solutions_dir: The solution notebooks (nbgrader's source: exercises, checks, points).
        jobs: Notebooks graded at once, each in its own process and kernel, with an equal
            share of the cores (``OMP_NUM_THREADS``, unless set already).
        timeout: Seconds per cell.
        notebook_timeout: Seconds per notebook; a notebook over it scores 0.
        memory_gb: Address-space limit of each grading process and its kernel (0: none).
        quick: Set ``SALIENCY_QUICK=1`` in the kernels (else the variable is removed).
        progress: Print one line per graded notebook to stderr.

    Returns:
        One :class:`NotebookResult` per submission, in the order given.
    """
    solutions_dir = Path(solutions_dir)
    names = sorted({s.notebook for s in submissions})
    known = {
        n: solutions_dir / f"{n}.ipynb" for n in names if (solutions_dir / f"{n}.ipynb").is_file()
    }
    references = {n: nbformat.read(p, as_version=4) for n, p in known.items()}
    results: list[NotebookResult | None] = [None] * len(submissions)
    jobs = max(1, min(jobs, len(submissions)))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max(1, (cores or 1) // jobs) if jobs > 1 else None
    with tempfile.TemporaryDirectory(prefix="saliency-grade-") as tmp:
        template = Path(tmp) / "course"
        template.mkdir()
        if known:
            _course(template, known, timeout)

        def one(index: int) -> None:
            sub = submissions[index]
            if sub.notebook not in known:
                reason = f"no solution {sub.notebook}.ipynb in {solutions_dir}"
                results[index] = _failed(sub, ["*"], reason, 0.0)
            else:
                results[index] = _grade_one(
                    sub,
                    template,
                    Path(tmp) / f"task-{index}",
                    references[sub.notebook],
                    quick=quick,
                    notebook_timeout=notebook_timeout,
                    memory_gb=memory_gb,
                    timeout=timeout,
                    threads=threads,
                )
                shutil.rmtree(Path(tmp) / f"task-{index}", ignore_errors=True)
            if progress:
                res = results[index]
                got = sum(r.points or 0 for r in res.exercises)
                total = sum(1 for r in res.exercises if r.points is not None)
                flag = "  FLAGGED" if res.flags else ""
                print(
                    f"graded {sub.student} / {sub.notebook}: {got}/{total} in "
                    f"{res.seconds:.0f} s{flag}",
                    file=sys.stderr,
                    flush=True,
                )

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(one, range(len(submissions))))
    return [r for r in results if r is not None]


# --------------------------------------------------------------------------- reports


def _md(text: object) -> str:
    return str(text).replace("\n", " ").replace("|", "\\|")


def write_reports(
    results: Sequence[NotebookResult], out_dir: str | Path, footer: Sequence[str] = ()
) -> str:
    """Write ``scores.csv``, ``scores.md``, ``answers.md`` and ``executed/`` under ``out_dir``.

    Args:
        results: From :func:`grade_submissions`.
        out_dir: The output folder (created if missing).
        footer: Extra lines for the end of ``scores.md`` (e.g. the throughput).

    Returns:
        The Markdown text of ``scores.md``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [row for res in results for row in res.exercises]
    flagged = {(r.submission.student, r.submission.notebook): r.flags for r in results}

    with open(out / "scores.csv", "w", encoding="utf-8", newline="") as fp:
        writer = csv.writer(fp)
        writer.writerow(
            ["student", "notebook", "exercise", "status", "points", "reason", "flagged"]
        )
        for r in rows:
            flags = flagged.get((r.student, r.notebook)) or []
            points = "" if r.points is None else r.points
            writer.writerow(
                [
                    r.student,
                    r.notebook,
                    r.exercise,
                    r.status,
                    points,
                    r.reason,
                    "yes" if flags else "",
                ]
            )

    totals: dict[str, list[int]] = {}
    for r in rows:
        if r.points is not None:
            total = totals.setdefault(r.student, [0, 0])
            total[0] += r.points
            total[1] += 1
    lines = ["# Scores", "", "## Per student", ""]
    lines += ["| student | points | out of | score |", "|---|---:|---:|---:|"]
    for student, (passed, total) in sorted(totals.items()):
        score = f"{100 * passed / total:.0f}%" if total else "-"
        lines.append(f"| {_md(student)} | {passed} | {total} | {score} |")
    flagged_rows = [(key, flags) for key, flags in flagged.items() if flags]
    lines += ["", "## Flagged for review", ""]
    if flagged_rows:
        lines += [
            "Scores above come from the answers alone; these notebooks also did something "
            "to the checks (see the top cell of each graded notebook in `executed/`).",
            "",
            "| student | notebook | what the grader saw |",
            "|---|---|---|",
        ]
        lines += [f"| {_md(s)} | {_md(n)} | {_md('; '.join(f))} |" for (s, n), f in flagged_rows]
    else:
        lines.append("Nothing flagged.")
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
    if footer:
        lines += ["", *footer]
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


def _listing(folder: Path) -> dict[str, tuple[float, int]]:
    if not folder.is_dir():
        return {}
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime, p.stat().st_size)
        for p in folder.rglob("*")
        if p.is_file()
    }


REPORT_FILES = ("scores.csv", "scores.md", "answers.md")


def _mentions_output(path: Path, out: Path) -> list[str]:
    """Flags for a submission whose code names the grader's output folder or report files.

    The folder is protected anyway (files that appear in it during grading are removed);
    this says which notebook tried.
    """
    import ast

    from .nbgrader_checks import _python  # IPython-aware parsing, as for the other flags

    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:  # noqa: BLE001 - an unreadable notebook was reported already
        return []
    needles = {str(out.resolve()), f"{out.name}/", *REPORT_FILES}
    found = []
    for index, cell in enumerate(nb.cells):
        tree = _python(cell.source) if cell.cell_type == "code" else None
        strings = [
            node.value
            for node in (ast.walk(tree) if tree is not None else ())
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
        ]
        hits = sorted({n for n in needles for text in strings if n in text})
        if hits:
            found.append(f"cell {index}: names the grader's output ({', '.join(hits)})")
    return found


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: ``saliency-course grade SUBMISSIONS [options]``."""
    parser = argparse.ArgumentParser(
        prog="saliency-course grade",
        description="Autograde submitted exercise notebooks with nbgrader and score them.",
    )
    parser.add_argument(
        "submissions",
        type=Path,
        help="folder <student>/<NN_name>.ipynb, flat folder <student>__<NN_name>.ipynb, "
        "or one .ipynb",
    )
    parser.add_argument("--out", type=Path, default=Path("results"), help="default: results/")
    parser.add_argument(
        "--solutions", type=Path, default=None, help="the solution notebooks (default: solutions/)"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="notebooks graded at once (default: the number of cores)",
    )
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell (600)")
    parser.add_argument(
        "--notebook-timeout", type=int, default=1800, help="seconds per notebook (1800)"
    )
    parser.add_argument(
        "--memory-gb",
        type=float,
        default=8.0,
        help="memory limit of each grading process and its kernel, GiB (8; 0: none)",
    )
    parser.add_argument("--quick", action="store_true", help="set SALIENCY_QUICK=1 in kernels")
    args = parser.parse_args(argv)
    if args.timeout < 1 or args.notebook_timeout < 1:
        parser.error("--timeout and --notebook-timeout must be at least 1 second")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    try:
        submissions = find_submissions(args.submissions)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))
    if not submissions:
        parser.error(f"no notebooks found in {args.submissions}")
    solutions = args.solutions or course_folder("solutions")
    if solutions is None or not Path(solutions).is_dir():
        parser.error(f"solutions folder not found: {solutions}; name it with --solutions")

    before = _listing(args.out)
    start = time.monotonic()
    try:
        results = grade_submissions(
            submissions,
            solutions,
            jobs=args.jobs,
            timeout=args.timeout,
            notebook_timeout=args.notebook_timeout,
            memory_gb=args.memory_gb,
            quick=args.quick,
        )
    except ExerciseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    seconds = time.monotonic() - start
    footer = [
        f"Graded {len(results)} notebook(s) in {seconds:.0f} s with --jobs {args.jobs}: "
        f"{60 * len(results) / max(seconds, 1e-9):.1f} notebooks per minute."
    ]
    for res in results:
        res.flags += _mentions_output(res.submission.path, args.out)
    intruders = sorted(set(_listing(args.out).items()) - set(before.items()))
    if intruders:
        for name, _ in intruders:
            (args.out / name).unlink(missing_ok=True)
        names = ", ".join(name for name, _ in intruders)
        footer.append(f"Removed files that a graded notebook wrote into {args.out}: {names}.")
    print(write_reports(results, args.out, footer))
    print(f"Results written to {args.out}/scores.csv and {args.out}/scores.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
