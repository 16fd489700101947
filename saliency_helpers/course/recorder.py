"""Kernel side of grading: what a graded check cell calls instead of ``sh.check``.

When nbgrader autogrades a notebook, :class:`saliency_helpers.course.nbgrader_checks.RecordChecks`
rewrites each check cell so that it loads this file afresh from disk (not through ``import``:
a submission that replaced ``sh.check`` or a module attribute in its kernel does not reach
this copy) and calls :meth:`Recorder.check` / :meth:`Recorder.check_true`. Each call appends
the answer and the reference to a JSON-lines file named by the grader for this one run; the
grader then compares them with its own copy of ``saliency_helpers.checks``. Nothing here
decides a grade, and nothing raises on a wrong answer, so hooks that swallow exceptions or
print a fake verdict change nothing. When it starts, a recorder notes whether the kernel's
check functions still have the code of ``saliency_helpers/checks.py``.

Standalone on purpose (numpy and the standard library): it must load without the package.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import numbers
import sys
from typing import Any

import numpy as np

# The functions of saliency_helpers.checks whose replacement in the kernel is tampering.
WATCHED = ("check", "check_true", "_compare", "_compare_choice", "_compare_numeric", "_report")


def encode(value: Any, depth: int = 0) -> dict:
    """A JSON-safe description of an answer or reference (tensors and arrays as raw bytes)."""
    if depth > 20:
        return {"t": "other", "type": type(value).__name__}
    if value is None:
        return {"t": "none"}
    if value is Ellipsis:
        return {"t": "ellipsis"}
    if isinstance(value, (bool, np.bool_)):
        return {"t": "bool", "v": bool(value)}
    if isinstance(value, str):
        return {"t": "str", "v": value}
    kind = "array"
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    elif isinstance(value, np.generic):
        kind = "scalar"
    elif isinstance(value, numbers.Number) and not isinstance(value, np.ndarray):
        kind = "number"
    if kind != "array" or isinstance(value, np.ndarray):
        arr = np.asarray(value)
        if arr.dtype.kind in "biufc":
            return {
                "t": kind,
                "dtype": arr.dtype.str,
                "shape": list(arr.shape),
                "b64": base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode("ascii"),
            }
        return {"t": "other", "type": type(value).__name__}
    if isinstance(value, (list, tuple)):
        return {
            "t": "list" if isinstance(value, list) else "tuple",
            "v": [encode(item, depth + 1) for item in value],
        }
    if isinstance(value, dict):
        return {
            "t": "dict",
            "v": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()],
        }
    return {"t": "other", "type": type(value).__name__}


def _fresh(path: str, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _same_code(obj: Any, reference: Any) -> bool:
    code = getattr(obj, "__code__", None)
    return code is not None and code == reference.__code__


class Recorder:
    """Records one graded check cell's calls for the grader.

    Args:
        path: The JSON-lines file the grader reads (one per graded notebook).
        cell: The check cell's nbgrader grade id, e.g. ``"01.2-check"``.
        checks_path: Path of ``saliency_helpers/checks.py``, loaded afresh for the tampering
            probe (the grader shows the verdicts: it replaces the cell's outputs).
    """

    def __init__(self, path: str, cell: str, checks_path: str) -> None:
        self._path, self._cell = path, cell
        self._checks = _fresh(checks_path, "_saliency_grader_checks")
        self._write({"kind": "start", "tampered": self._tampered()})

    def _tampered(self) -> list[str]:
        found = []
        owners = {
            "saliency_helpers.checks": sys.modules.get("saliency_helpers.checks"),
            "saliency_helpers": sys.modules.get("saliency_helpers"),
        }
        for label, owner in owners.items():
            if owner is None:
                continue
            namespace = vars(owner)
            for name in WATCHED:
                if label == "saliency_helpers" and name.startswith("_"):
                    continue
                if name not in namespace:
                    if label == "saliency_helpers.checks":
                        found.append(f"{label}.{name} was deleted in the kernel")
                    continue  # the package resolves sh.check lazily until first use
                if not _same_code(namespace[name], getattr(self._checks, name)):
                    found.append(f"{label}.{name} was replaced in the kernel")
        return found

    def _write(self, row: dict) -> None:
        row["cell"] = self._cell
        with open(self._path, "a", encoding="utf-8") as fp:
            fp.write(json.dumps(row) + "\n")

    def check(
        self,
        exercise_id: Any,
        answer: Any,
        expected: Any,
        *,
        rtol: float = 1e-4,
        atol: float = 1e-6,
    ) -> None:
        """Record ``sh.check(exercise_id, answer, expected, rtol=, atol=)`` (same arguments)."""
        self._write(
            {
                "kind": "check",
                "exercise": str(exercise_id),
                "answer": encode(answer),
                "expected": encode(expected),
                "rtol": float(rtol),
                "atol": float(atol),
            }
        )

    def check_true(self, exercise_id: Any, condition: Any, hint: Any = "") -> None:
        """Record ``sh.check_true(exercise_id, condition, hint)`` (the hint is not needed)."""
        self._write(
            {"kind": "check_true", "exercise": str(exercise_id), "condition": encode(condition)}
        )

    def done(self) -> None:
        """Record that the check cell ran to its end."""
        self._write({"kind": "done"})
