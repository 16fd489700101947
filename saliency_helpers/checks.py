"""Self-check helpers for the course exercises.

Each exercise in a notebook ends with a *check cell* that compares the student's answer
with a reference computed by the helpers and prints one friendly line, in the spirit of
Karpathy's ``cmp()`` in *nn-zero-to-hero*::

    Exercise 01.2: exact match ✓
    Exercise 01.2: close ✓ (max abs difference 3.2e-07)
    Exercise 01.2: not yet ✗: max abs difference 0.41 (largest at index (0, 2, 17, 40)); ...

On failure the check raises ``AssertionError`` with the same message, so that
``pytest --nbval-lax`` and the grading command (``saliency-course grade``)
both see the failure. For True/False, text and multiple-choice answers the message never
shows the expected value: the notebook must not give the answer away.

Public API: :func:`check`, :func:`check_true`.
"""

from __future__ import annotations

import math
from numbers import Number
from typing import Any

import numpy as np

__all__ = ["check", "check_true"]

_PASS = "✓"
_FAIL = "✗"
_NOT_ANSWERED = f"not answered yet {_FAIL}"


def check(
    exercise_id: str,
    answer: Any,
    expected: Any,
    *,
    rtol: float = 1e-4,
    atol: float = 1e-6,
) -> None:
    """Compare a student's answer with the reference and print one line about it.

    Numbers, arrays and tensors are compared element-wise with
    ``|answer - expected| <= atol + rtol * |expected|`` (as ``numpy.allclose``); shapes must
    match exactly. Booleans, strings (compared ignoring case and surrounding spaces) and
    lists/tuples of them must match exactly, and the message does not reveal the expected
    value.

    Args:
        exercise_id: The exercise's id, e.g. ``"03.2"`` (its cells' grade ids: ``03_2-...``).
        answer: The student's answer: ``torch.Tensor`` (any device, may require grad),
            ``numpy.ndarray``, Python/NumPy number, ``bool``, ``str``, or a tuple/list of these.
            ``None`` or ``...`` means "not answered yet".
        expected: The reference, of the same kind. For arrays, any shape, e.g. ``(N, C, H, W)``.
        rtol: Relative tolerance for numeric answers. Default ``1e-4``.
        atol: Absolute tolerance for numeric answers. Default ``1e-6``.

    Returns:
        None. Prints the verdict.

    Raises:
        AssertionError: The answer is missing or does not match (same text as printed).
        TypeError: ``exercise_id`` is not a string, or ``expected`` is of an unsupported type.
        ValueError: A tolerance is negative.

    Example:
        >>> check("01.2", np.ones(3), np.ones(3))
        Exercise 01.2: exact match ✓
    """
    if not isinstance(exercise_id, str):
        raise TypeError(
            f"exercise_id must be a string such as '01.2', got {type(exercise_id).__name__}"
        )
    if rtol < 0 or atol < 0:
        raise ValueError(f"rtol and atol must be non-negative, got rtol={rtol}, atol={atol}")
    if expected is None or expected is Ellipsis:
        raise TypeError(f"Exercise {exercise_id}: the reference value is None; fix the check cell")

    ok, verdict = _compare(answer, expected, rtol=rtol, atol=atol)
    _report(exercise_id, ok, verdict)


def check_true(exercise_id: str, condition: Any, hint: str) -> None:
    """Free-form self-check: pass when ``condition`` is true, else show ``hint``.

    Use it when the answer is not a single value, e.g. "your ``n_steps`` gives a
    completeness error below 5%".

    Args:
        exercise_id: The exercise's id, as in the notebook, e.g. ``"03.4"``.
        condition: A bool, or a one-element array/tensor holding one. ``None`` or ``...``
            means "not answered yet".
        hint: What to try when the condition is false. Shown to the student, so it must
            not give the answer away.

    Returns:
        None. Prints ``Exercise <id>: passed ✓`` or ``Exercise <id>: not yet ✗: <hint>``.

    Raises:
        AssertionError: The condition is false (same text as printed).
        TypeError: ``condition`` has more than one element.

    Example:
        >>> check_true("03.4", 0.03 < 0.05, "increase n_steps until the error is below 5%")
        Exercise 03.4: passed ✓
    """
    if not isinstance(exercise_id, str):
        raise TypeError(
            f"exercise_id must be a string such as '03.4', got {type(exercise_id).__name__}"
        )
    if condition is None or condition is Ellipsis:
        _report(exercise_id, False, _NOT_ANSWERED)
        return
    value = _to_array(condition)
    if value is not None and value.size != 1:
        raise TypeError(
            f"Exercise {exercise_id}: condition must be a single True/False, got an array of "
            f"shape {_fmt_tuple(value.shape)}; use .all() or .any()"
        )
    truth = bool(value.reshape(()).item()) if value is not None else bool(condition)
    _report(exercise_id, truth, f"passed {_PASS}" if truth else f"not yet {_FAIL}: {hint}")


# --------------------------------------------------------------------------- internals


def _report(exercise_id: str, ok: bool, verdict: str) -> None:
    message = f"Exercise {exercise_id}: {verdict}"
    print(message)
    if not ok:
        # The printed line is what students read; the exception is for nbval and the grader.
        raise AssertionError(message)


def _is_tensor(x: Any) -> bool:
    # Duck-typed so importing this module never imports torch.
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def _to_array(x: Any) -> np.ndarray | None:
    """Numeric/bool array for tensors, arrays and numbers; None for anything else."""
    if _is_tensor(x):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (bool, np.bool_, Number, np.generic)):
        return np.asarray(x)
    return None


def _is_choice(x: Any) -> bool:
    """True for answers whose expected value must not be shown: bools, text, lists of them."""
    if isinstance(x, (bool, np.bool_, str)):
        return True
    if isinstance(x, (tuple, list)):
        try:
            kind = np.asarray(x).dtype.kind
        except ValueError:  # ragged: compare item by item, exactly
            return True
        return kind not in "iufc"
    arr = _to_array(x)
    return arr is not None and arr.dtype == np.bool_


def _normalise_choice(x: Any) -> Any:
    if isinstance(x, str):
        return x.strip().casefold()
    if isinstance(x, (tuple, list)):
        return [_normalise_choice(i) for i in x]
    arr = _to_array(x)
    if arr is not None:
        return arr.tolist()
    return x


def _compare(answer: Any, expected: Any, *, rtol: float, atol: float) -> tuple[bool, str]:
    if answer is None or answer is Ellipsis:
        return False, _NOT_ANSWERED
    if _is_choice(expected):
        return _compare_choice(answer, expected)
    exp = _to_array(expected)
    if exp is None and isinstance(expected, (tuple, list)):
        exp = np.asarray(expected)
    if exp is None or exp.dtype.kind not in "biufc":
        raise TypeError(
            "check() compares tensors, arrays, numbers, bools, strings and lists of them; "
            f"the reference is a {type(expected).__name__}"
        )
    return _compare_numeric(answer, exp, rtol=rtol, atol=atol)


def _compare_choice(answer: Any, expected: Any) -> tuple[bool, str]:
    if isinstance(expected, (bool, np.bool_)):
        ans = _to_array(answer)
        if ans is None or ans.dtype != np.bool_ or ans.size != 1:
            return False, f"not yet {_FAIL}: the answer should be True or False"
        correct = bool(ans.reshape(()).item()) == bool(expected)
    elif isinstance(expected, str):
        if not isinstance(answer, str):
            return False, f"not yet {_FAIL}: the answer should be text (a str)"
        correct = _normalise_choice(answer) == _normalise_choice(expected)
    else:
        if isinstance(expected, (tuple, list)) and not isinstance(answer, (tuple, list)):
            ans = _to_array(answer)
            if ans is None:
                return False, f"not yet {_FAIL}: the answer should be a list"
        correct = _normalise_choice(answer) == _normalise_choice(expected)
    if correct:
        return True, f"correct {_PASS}"
    return False, f"not yet {_FAIL}: that is not the answer"


def _compare_numeric(answer: Any, exp: np.ndarray, *, rtol: float, atol: float) -> tuple[bool, str]:
    ans = _to_array(answer)
    if ans is None and isinstance(answer, (tuple, list)):
        try:
            ans = np.asarray(answer)
        except ValueError:  # ragged lists
            ans = None
    if ans is None or ans.dtype.kind not in "biufc":
        kind = type(answer).__name__
        return False, (
            f"not yet {_FAIL}: the answer is a {kind}, expected a number or array of shape "
            f"{_fmt_tuple(exp.shape)}"
        )
    if ans.shape != exp.shape:
        return False, (
            f"not yet {_FAIL}: shape {_fmt_tuple(ans.shape)} but expected {_fmt_tuple(exp.shape)}"
        )
    if ans.size == 0:
        return True, f"exact match {_PASS}"
    a = ans.astype(np.complex128 if ans.dtype.kind == "c" else np.float64)
    e = exp.astype(np.complex128 if exp.dtype.kind == "c" else np.float64)

    nan_mismatch = np.isnan(a) != np.isnan(e)
    if nan_mismatch.any():
        where = _fmt_index(np.unravel_index(int(np.argmax(nan_mismatch)), a.shape))
        return False, (
            f"not yet {_FAIL}: {int(nan_mismatch.sum())} value(s) are NaN in only one of answer "
            f"and reference (first at index {where}); shape {_fmt_tuple(a.shape)}"
        )
    if np.array_equal(a, e, equal_nan=True):
        return True, f"exact match {_PASS}"
    diff = np.abs(a - e)
    diff = np.where(np.isnan(diff), 0.0, diff)  # NaN in both places counts as equal
    # inf - inf is NaN above, so matching infinities count as equal; a lone inf gives inf here
    max_diff = float(diff.max())
    if np.allclose(a, e, rtol=rtol, atol=atol, equal_nan=True):
        return True, f"close {_PASS} (max abs difference {_fmt_num(max_diff)})"
    where = _fmt_index(np.unravel_index(int(np.argmax(diff)), a.shape))
    return False, (
        f"not yet {_FAIL}: max abs difference {_fmt_num(max_diff)} (largest at index {where}); "
        f"shapes {_fmt_tuple(a.shape)} vs {_fmt_tuple(e.shape)}"
    )


def _fmt_num(x: float) -> str:
    if math.isinf(x):
        return "inf"
    return f"{x:.2g}"


def _fmt_tuple(shape: tuple[int, ...]) -> str:
    # Like repr(tuple) but robust to numpy integer types: (1, 3, 224, 224), (5,), ().
    return repr(tuple(int(s) for s in shape))


def _fmt_index(index: tuple[Any, ...]) -> str:
    return _fmt_tuple(tuple(int(i) for i in index))
