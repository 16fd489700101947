"""Hand a notebook's key numbers to the course runner, through the notebook's own outputs.

A lecture notebook calls :func:`record` where a number is already computed, e.g. right after
notebook 03 prints Integrated Gradients' completeness error. :func:`record` *displays* the
value: once as JSON under the custom MIME type :data:`MIMETYPE`, which Jupyter front ends do
not render, and once as a readable line of plain text, which they do. ``saliency-course run``
executes the notebooks and reads the values back from the executed outputs
(``saliency_helpers.course.common.collect``). No global state, no files: what the runner
reports is exactly what the notebook showed.

Example:
    >>> import saliency_helpers as sh
    >>> sh.summary.record("ig_completeness_error", {"error": 0.0029, "n_steps": 128})
    course summary <- ig_completeness_error: {'error': 0.0029, 'n_steps': 128}
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

__all__ = ["MIMETYPE", "record", "to_json"]

MIMETYPE = "application/vnd.saliency-summary+json"
_KEY = re.compile(r"^[a-z][a-z0-9_]*$")
TABLE = "table"  # marker of a DataFrame encoded by to_json


def to_json(value: Any) -> Any:
    """Turn a summary value into plain JSON types (``float``, ``int``, ``str``, lists, dicts).

    Args:
        value: A number (Python, numpy or a one-element torch tensor), a string, ``None``,
            a list/tuple or dict of those, or a ``pandas.DataFrame`` (encoded as
            ``{"kind": "table", "index": [...], "columns": [...], "data": [[...], ...]}``).

    Returns:
        The same value built from JSON types only; non-finite floats become ``None``.

    Raises:
        TypeError: ``value`` (or something inside it) is of another type.

    Example:
        >>> to_json({"p": numpy.float32(0.5), "k": 89})
        {'p': 0.5, 'k': 89}
    """
    if isinstance(value, pd.DataFrame):
        return {
            "kind": TABLE,
            "index": [to_json(i) for i in value.index.tolist()],
            "columns": [to_json(c) for c in value.columns.tolist()],
            "data": [[to_json(v) for v in row] for row in value.to_numpy().tolist()],
        }
    if value is None or isinstance(value, (bool, str)):
        return value
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:  # numpy / torch scalars
        value = value.item()
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    raise TypeError(
        f"cannot record a value of type {type(value).__name__}; record numbers, strings, "
        "lists or dicts of them, or a pandas DataFrame (convert tensors with .item()/.tolist())"
    )


def _text(key: str, value: Any) -> str:
    if isinstance(value, pd.DataFrame):
        rows, cols = value.shape
        shown = f"table of {rows} rows x {cols} columns ({', '.join(map(str, value.columns))})"
    else:
        shown = repr(to_json(value))
    return f"course summary <- {key}: {shown}"


def record(key: str, value: Any) -> None:
    """Show one number (or small table) for the course summary printed by the runner.

    Call it in a notebook cell where the value is already computed; it displays a line
    ``course summary <- key: value`` and carries the value as JSON for ``python -m
    saliency_helpers run``. Outside a notebook it just prints that line.

    Args:
        key: A lower-case name such as ``"top1"`` or ``"ig_completeness_error"``.
        value: Numbers, strings, lists/dicts of them, or a ``pandas.DataFrame``
            (see :func:`to_json`).

    Raises:
        ValueError: ``key`` is not lower-case letters, digits and underscores.
        TypeError: ``value`` cannot be stored as JSON.

    Example:
        >>> record("top1", {"index": 89, "name": "sulphur-crested cockatoo", "probability": 0.44})
        course summary <- top1: {'index': 89, 'name': 'sulphur-crested cockatoo', ...}
    """
    if not isinstance(key, str) or not _KEY.match(key):
        raise ValueError(
            f"summary key {key!r} must be lower-case letters, digits and underscores, "
            "starting with a letter, e.g. 'ig_completeness_error'"
        )
    payload = {"key": key, "value": to_json(value)}
    text = _text(key, value)
    try:  # IPython ships with Jupyter; imported only when a value is recorded
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        print(text)
        return
    if get_ipython() is None:  # a plain Python script: the text line is all there is
        print(text)
        return
    display({MIMETYPE: payload, "text/plain": text}, raw=True)
