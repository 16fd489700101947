"""saliency_helpers: the thin helper library of the saliency-maps course.

Use it as ``import saliency_helpers as sh``. Importing it changes no global state (no seeds,
no thread counts, no plotting themes) and loads nothing heavy: each name below is imported
from its module the first time a notebook uses it, so ``import saliency_helpers`` takes
milliseconds and the first ``sh.attribute(...)`` loads torch and Captum.

The modules, by role: ``models`` and ``images`` (what is explained), ``attribution`` (every
method, through Captum), ``maps`` (reducing, pooling, comparing maps), ``plots`` and
``display`` (Altair charts, offline), ``sanity`` (the model-randomization cascade and the
verdict rule), ``data``, ``training`` and ``comparison`` (data randomization on MNIST),
``faithfulness`` (deletion and insertion curves, ROAR, infidelity and sensitivity),
``widgets`` (sliders), ``checks`` (the exercises' self-checks), ``summary`` (numbers for
the course runner), ``config`` (course size). Instructor tooling lives in
``saliency_helpers.course`` and is never imported from here.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: The short names ``sh.<name>`` and the module each comes from.
_NAMES: dict[str, str] = {
    **dict.fromkeys(
        [
            "BASELINES",
            "CONTROL_METHODS",
            "METHODS",
            "CompletenessWarning",
            "attribute",
            "completeness_error",
            "make_baseline",
            "resolve_target",
        ],
        "attribution",
    ),
    **dict.fromkeys(["check", "check_true"], "checks"),
    **dict.fromkeys(["compare_explanations", "summarize"], "comparison"),
    **dict.fromkeys(["quick", "scaled"], "config"),
    "offline_charts": "display",
    **dict.fromkeys(["auc", "deletion_curve", "insertion_curve"], "faithfulness"),
    **dict.fromkeys(
        ["PHOTO_SET", "ImageError", "course_photo", "course_photos", "denormalize", "load_image"],
        "images",
    ),
    **dict.fromkeys(
        [
            "attribution_mass",
            "clip_percentile",
            "normalize",
            "pointing_game",
            "pool",
            "reduce_channels",
            "spearman",
            "to_frame",
        ],
        "maps",
    ),
    **dict.fromkeys(["ModelBundle", "ModelUnavailableError", "load_model"], "models"),
    **dict.fromkeys(
        [
            "cascade_grid",
            "chart_size_bytes",
            "heatmaps",
            "save_png",
            "similarity_chart",
            "similarity_lines",
        ],
        "plots",
    ),
    **dict.fromkeys(["CascadeResult", "cascade", "randomized_models"], "sanity"),
}

#: The modules, reachable as ``sh.<module>`` (e.g. ``sh.sanity.decide``).
_MODULES = (
    "attribution",
    "checks",
    "comparison",
    "config",
    "data",
    "display",
    "faithfulness",
    "images",
    "maps",
    "models",
    "plots",
    "sanity",
    "summary",
    "training",
    "widgets",
)

__all__ = sorted([*_NAMES, *_MODULES])


def __getattr__(name: str) -> Any:
    """Load ``sh.<name>`` from its module on first use (PEP 562)."""
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
