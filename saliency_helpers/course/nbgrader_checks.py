"""nbgrader preprocessors that make the course's check cells safe to autograde.

nbgrader scores an autograder-test cell by whether it raised. The course's check cells call
``sh.check``, which lives in the student's kernel: a submission could replace it, swallow its
exception or print a fake verdict. :func:`saliency_helpers.course.assignments.configure`
puts three preprocessors into nbgrader's ``autograde`` so that the grade never depends on
anything the submission can reach cheaply:

1. :class:`AuditSubmission` (before nbgrader's ``OverwriteCells``) compares the submitted
   check cells with the gradebook's copies (edited, deleted, turned into markdown, tagged) and
   reads the submission's code for tampering (replacing ``sh.check`` or a module attribute,
   swallowing exceptions, printing a fake verdict, ...). Findings are *flags* for the
   instructor: they never raise a score, and the grade comes from the answers alone.
2. :class:`RecordChecks` (after ``OverwriteCells`` restored the locked cells) rewrites each
   check cell so that its ``check``/``check_true`` calls go to a copy of
   :mod:`saliency_helpers.course.recorder` loaded afresh from disk, which records answer and
   reference in a file named for this run only.
3. :class:`ScoreChecks` (right after ``Execute``) compares the recorded answers with the
   recorded references using the grader's own ``saliency_helpers.checks``, writes the verdict
   into the check cell (an error output when it fails, which nbgrader scores 0), puts the
   flags at the top of the graded notebook and, if ``ScoreChecks.report_dir`` is set, writes
   a JSON report per notebook for ``saliency-course grade``.

What remains: code in the kernel can do anything the kernel's user can (read the run's
record file, patch ``importlib`` or numpy). Grade untrusted submissions in a container; see
the README's grading section.
"""

from __future__ import annotations

import ast
import base64
import json
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from nbformat import NotebookNode
from nbformat.v4 import new_markdown_cell, new_output
from nbgrader.api import Gradebook
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

from .assignments import error_text, grade_id, parse_grade_id

__all__ = ["AuditSubmission", "RecordChecks", "ScoreChecks", "decode", "scan", "score_records"]

FLAG_HEADING = "**Flagged by the grader for the instructor.**"
_RECORDER = Path(__file__).with_name("recorder.py")
_SKIP_TAGS = {"skip-execution", "raises-exception", "nbval-skip", "skip"}
_VERDICT = re.compile(r"Exercise\s+\S+\s*:\s*(exact match|close|correct|passed)")


@dataclass
class _Session:
    flags: list[str] = field(default_factory=list)
    folder: Path | None = None
    records: Path | None = None


# Sanitizing and autograding one notebook happen in one nbgrader process, one after the other.
_SESSIONS: dict[tuple[str, str, str], _Session] = {}


def _key(resources: dict) -> tuple[str, str, str]:
    info = resources.get("nbgrader", {})
    return (str(info.get("student")), str(info.get("assignment")), str(info.get("notebook")))


def _check_of(cell: NotebookNode) -> str | None:
    """The exercise whose check cell this is, or None."""
    parsed = parse_grade_id(grade_id(cell))
    return parsed[0] if parsed and parsed[1] == "check" else None


# --------------------------------------------------------------------------- static reading


_MODULE_ALIASES = {"saliency_helpers", "sh", "checks"}
_BAD_NAMES = {
    "__builtins__": "reaches into __builtins__",
    "builtins": "reaches into builtins",
    "__code__": "changes a function's code (__code__)",
    "__globals__": "reaches into a function's globals",
    "set_custom_exc": "installs a handler that swallows exceptions (set_custom_exc)",
    "excepthook": "replaces the exception hook",
    "showtraceback": "replaces IPython's traceback display",
    "settrace": "installs a trace function",
    "setprofile": "installs a profile function",
    "ctypes": "uses ctypes",
    "nbgrader": "refers to nbgrader",
    "_saliency_recorder": "refers to the grader's recorder",
    "_grader": "refers to the grader's recorder",
}
_BAD_CALLS = {
    "setattr": "calls setattr",
    "delattr": "calls delattr",
    "exec": "calls exec",
    "eval": "calls eval",
    "compile": "calls compile",
    "__import__": "calls __import__",
}


def _python(source: str) -> ast.AST | None:
    """The cell as Python (IPython magics turned into calls), or None if it does not parse."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        source = TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - without IPython, parse the source as it is
        pass
    try:
        return ast.parse(source)
    except SyntaxError:
        return None


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def scan(source: str, modules: dict[str, str] | None = None) -> list[str]:
    """What in one code cell looks like tampering with the checks (empty when nothing does).

    Flagged: assigning to anything under the course's package (``sh.check = ...``,
    ``sh.checks._compare = ...``) or to a function of another imported module
    (``np.allclose = ...``; settings such as ``pd.options.display.max_rows`` are not),
    rebinding ``sh``/``check``, ``setattr``/``exec``/``eval``, exception and trace hooks,
    ``sys.modules``, ``__code__``, and text that imitates a passed check.

    Args:
        source: The cell's source.
        modules: Names bound by the notebook's imports -> the module or object imported
            (``{"sh": "saliency_helpers", "np": "numpy"}``).

    Returns:
        Short findings, e.g. ``["assigns to sh.check"]``.
    """
    tree = _python(source)
    if tree is None:
        return []
    modules = {**dict.fromkeys(_MODULE_ALIASES, "saliency_helpers"), **(modules or {})}
    found: list[str] = []

    def target(node: ast.AST) -> None:
        if isinstance(node, (ast.Tuple, ast.List)):
            for item in node.elts:
                target(item)
        elif isinstance(node, ast.Attribute):
            name = _dotted(node)
            root = name.split(".")[0]
            ours = modules.get(root, "").startswith("saliency_helpers")
            if root in modules and (ours or name.count(".") == 1):
                found.append(f"assigns to {name}")
        elif isinstance(node, ast.Name) and node.id in _MODULE_ALIASES | {"check", "check_true"}:
            found.append(f"rebinds {node.id}")
        elif isinstance(node, ast.Subscript) and "modules" in _dotted(node.value):
            found.append(f"writes into {_dotted(node.value)}")

    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for item in targets:
                target(item)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in {
            "check",
            "check_true",
        }:
            found.append(f"defines its own {node.name}")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in _BAD_CALLS:
                found.append(_BAD_CALLS[name])
            elif name.endswith("events.register"):
                found.append("registers an IPython event callback")
        elif isinstance(node, (ast.Name, ast.Attribute)):
            name = node.id if isinstance(node, ast.Name) else node.attr
            if name in _BAD_NAMES:
                found.append(_BAD_NAMES[name])
            elif isinstance(node, ast.Attribute) and _dotted(node).endswith("sys.modules"):
                found.append("reaches into sys.modules")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _VERDICT.search(node.value):
                found.append("prints text that looks like a passed check")
    return list(dict.fromkeys(found))


def _imported_modules(nb: NotebookNode) -> dict[str, str]:
    """Each name the notebook's imports bind -> what it imports (``"sh": "saliency_helpers"``)."""
    names: dict[str, str] = {}
    for cell in nb.cells:
        tree = _python(cell.source) if cell.cell_type == "code" else None
        for node in ast.walk(tree) if tree is not None else ():
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        names[alias.asname] = alias.name
                    else:
                        root = alias.name.split(".")[0]
                        names[root] = root
            elif isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    names[alias.asname or alias.name] = f"{node.module or ''}.{alias.name}"
    return names


def audit(nb: NotebookNode, source_cells: dict[str, tuple[str, str]]) -> list[str]:
    """Flags for a submission as submitted: its check cells and its code.

    Args:
        nb: The submitted notebook, before nbgrader restores its locked cells.
        source_cells: grade id -> (cell type, source) of the assignment's own cells.

    Returns:
        Findings for the instructor, e.g. ``"check cell 01.2-check was edited"``.
    """
    flags: list[str] = []
    by_id: dict[str, list[NotebookNode]] = {}
    for cell in nb.cells:
        if grade_id(cell):
            by_id.setdefault(grade_id(cell), []).append(cell)
    for check_id, (cell_type, source) in source_cells.items():
        parsed = parse_grade_id(check_id)
        if not parsed or parsed[1] != "check":
            continue
        cells = by_id.get(check_id, [])
        if not cells:
            flags.append(f"check cell {check_id} was deleted (the grader put it back)")
            continue
        if len(cells) > 1:
            flags.append(f"check cell {check_id} appears {len(cells)} times")
        cell = cells[0]
        if cell.cell_type != cell_type:
            flags.append(f"check cell {check_id} was turned into {cell.cell_type}")
        elif cell.source != source:
            flags.append(f"check cell {check_id} was edited (the grader restored it)")
        tags = set(cell.get("metadata", {}).get("tags", [])) & _SKIP_TAGS
        if tags:
            flags.append(f"check cell {check_id} was tagged {', '.join(sorted(tags))}")
    modules = _imported_modules(nb)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or _check_of(cell):
            continue
        flags += [f"cell {index}: {finding}" for finding in scan(cell.source, modules)]
    return list(dict.fromkeys(flags))


class AuditSubmission(NbGraderPreprocessor):
    """Flag what a submission did to its check cells, before nbgrader restores them."""

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gradebook:
            source = gradebook.find_notebook(info["notebook"], info["assignment"]).source_cells
            cells = {c.name: (c.cell_type, c.source) for c in source}
        _SESSIONS[_key(resources)] = _Session(flags=audit(nb, cells))
        return nb, resources


# --------------------------------------------------------------------------- rewriting


class _ToRecorder(ast.NodeTransformer):
    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in {"check", "check_true"}:
            node.func = ast.Attribute(ast.Name("_grader", ast.Load()), name, ast.Load())
        return node


def graded_source(source: str, records: Path, check_id: str) -> str:
    """The check cell as the grader runs it: checks recorded, not asserted.

    Args:
        source: The check cell's source (the assignment's own copy).
        records: The JSON-lines file the calls append to.
        check_id: The check cell's grade id.

    Returns:
        Python source.
    """
    import saliency_helpers.checks as checks

    tree = _python(source)
    if tree is None:
        raise ValueError(f"check cell {check_id} does not parse as Python")
    body = ast.unparse(ast.fix_missing_locations(_ToRecorder().visit(tree)))
    return "\n".join(
        [
            "# The grader's version of this check cell: each check is recorded for the grader,",
            "# which compares answer and reference with its own copy of saliency_helpers.checks.",
            "import importlib.util as _grader_util",
            f"_grader_spec = _grader_util.spec_from_file_location('_saliency_recorder', "
            f"{str(_RECORDER)!r})",
            "_grader = _grader_util.module_from_spec(_grader_spec)",
            "_grader_spec.loader.exec_module(_grader)",
            f"_grader = _grader.Recorder({str(records)!r}, {check_id!r}, {checks.__file__!r})",
            body,
            "_grader.done()",
        ]
    )


class RecordChecks(NbGraderPreprocessor):
    """Rewrite the (restored) check cells so that their checks are recorded for the grader."""

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        session = _SESSIONS.setdefault(_key(resources), _Session())
        session.folder = Path(tempfile.mkdtemp(prefix="saliency-grading-"))
        session.records = session.folder / f"{secrets.token_hex(16)}.jsonl"
        for cell in nb.cells:
            if cell.cell_type == "code" and _check_of(cell):
                cell.source = graded_source(cell.source, session.records, grade_id(cell))
        return nb, resources


# --------------------------------------------------------------------------- scoring


class _Unrecorded:
    """An answer the recorder could not serialise (compared as a wrong type)."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<{self.type_name}>"


def decode(item: dict) -> Any:
    """The value :func:`saliency_helpers.course.recorder.encode` described (arrays as numpy)."""
    kind = item.get("t")
    if kind == "none":
        return None
    if kind == "ellipsis":
        return Ellipsis
    if kind in {"bool", "str"}:
        return item["v"]
    if kind in {"array", "scalar", "number"}:
        raw = base64.b64decode(item["b64"])
        arr = np.frombuffer(raw, dtype=np.dtype(item["dtype"])).reshape(item["shape"]).copy()
        if kind == "array":
            return arr
        value = arr[()]
        return value if kind == "scalar" else value.item()
    if kind in {"list", "tuple"}:
        values = [decode(v) for v in item["v"]]
        return values if kind == "list" else tuple(values)
    if kind == "dict":
        return {_hashable(decode(k)): decode(v) for k, v in item["v"]}
    return _Unrecorded(str(item.get("type", "object")))


def _hashable(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value


def score_records(rows: list[dict]) -> tuple[bool, list[str]]:
    """Grade one check cell from its records with the grader's own comparison.

    Args:
        rows: The cell's records, in order (``start``, ``check``/``check_true``..., ``done``).

    Returns:
        ``(passed, lines)``: every check passed and the cell ran to its end; one verdict
        line per check (plus the reason when the cell did not finish).
    """
    from saliency_helpers import checks

    lines: list[str] = []
    passed = True
    for row in rows:
        if row.get("kind") == "check":
            try:
                ok, verdict = checks._compare(
                    decode(row["answer"]),
                    decode(row["expected"]),
                    rtol=float(row["rtol"]),
                    atol=float(row["atol"]),
                )
            except (TypeError, ValueError) as err:
                ok, verdict = False, f"not comparable: {err}"
        elif row.get("kind") == "check_true":
            ok, verdict = _truth(decode(row["condition"]))
        else:
            continue
        passed &= ok
        lines.append(f"Exercise {row.get('exercise')}: {verdict}")
    if not lines:
        return False, ["the check cell recorded no check"]
    if not any(row.get("kind") == "done" for row in rows):
        return False, [*lines, "the check cell did not run to its end"]
    return passed, lines


def _truth(condition: Any) -> tuple[bool, str]:
    if condition is None or condition is Ellipsis:
        return False, "not answered yet ✗"
    arr = np.asarray(condition) if not isinstance(condition, _Unrecorded) else None
    if arr is None or arr.dtype.kind not in "biuf" or arr.size != 1:
        return False, "not yet ✗: the condition is not a single True/False"
    return (True, "passed ✓") if bool(arr.reshape(()).item()) else (False, "not yet ✗")


def _read_records(path: Path | None) -> dict[str, list[dict]]:
    by_cell: dict[str, list[dict]] = {}
    if path is None or not path.is_file():
        return by_cell
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        by_cell.setdefault(str(row.get("cell")), []).append(row)
    return by_cell


def _error_reason(cell: NotebookNode) -> str | None:
    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    return error_text(errors[0]) if errors else None


class ScoreChecks(NbGraderPreprocessor):
    """Score each check cell from its records; flag tampering; optionally write a report."""

    report_dir = Unicode(
        "",
        help="If set, write <report_dir>/<student>/<assignment>/<notebook>.json per notebook.",
    ).tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        session = _SESSIONS.pop(_key(resources), _Session())
        records = _read_records(session.records)
        flags = list(session.flags)
        for rows in records.values():
            for row in rows:
                if row.get("kind") == "start":
                    flags += [f"during the run: {t}" for t in row.get("tampered", [])]
        flags = list(dict.fromkeys(flags))
        verdicts: dict[str, dict] = {}
        for cell in nb.cells:
            exercise = _check_of(cell)
            if cell.cell_type != "code" or exercise is None:
                continue
            check_id = grade_id(cell)
            error = _error_reason(cell)
            passed, lines = score_records(records.get(check_id, []))
            if error:
                passed, reason = False, error
            else:
                reason = "" if passed else next((x for x in lines if "✓" not in x), lines[-1])
            errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            text = "\n".join(["Graded by the grader's own comparison:", *lines]) + "\n"
            cell.outputs = [new_output("stream", name="stdout", text=text), *errors]
            if not passed and not errors:
                cell.outputs.append(
                    new_output("error", ename="CheckFailed", evalue=reason, traceback=[reason])
                )
            verdicts[check_id] = {
                "exercise": exercise,
                "passed": passed,
                "reason": reason,
            }
        if flags:
            text = "\n".join([FLAG_HEADING, "", *[f"- {flag}" for flag in flags]])
            nb.cells.insert(0, new_markdown_cell(text))
        if self.report_dir:
            student, assignment, notebook = _key(resources)
            path = Path(self.report_dir) / student / assignment / f"{notebook}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"flags": flags, "checks": verdicts}, indent=1))
        if session.folder is not None:
            shutil.rmtree(session.folder, ignore_errors=True)
        return nb, resources
