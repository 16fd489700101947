"""saliency_helpers: the thin helper library of the saliency-maps course.

Use it as ``import saliency_helpers as sh``. Importing it changes no global
state (no seeds, no thread counts, no plotting themes).
"""

from . import comparison, data, sanity, summary, training, widgets
from .attribution import (
    BASELINES,
    CONTROL_METHODS,
    METHODS,
    CompletenessWarning,
    attribute,
    completeness_error,
    make_baseline,
    resolve_target,
)
from .comparison import compare_explanations, summarize
from .config import quick, scaled
from .display import offline_charts
from .grading import check, check_true
from .images import PHOTO_SET, ImageError, course_photo, course_photos, denormalize, load_image
from .maps import clip_percentile, normalize, pool, reduce_channels, spearman, to_frame
from .models import ModelBundle, ModelUnavailableError, load_model
from .plots import chart_size_bytes, heatmaps, save_png, similarity_lines
from .sanity import CascadeResult, cascade, cascade_grid, randomized_models, similarity_chart

__version__ = "0.1.0"

__all__ = [
    "BASELINES",
    "CONTROL_METHODS",
    "CascadeResult",
    "METHODS",
    "CompletenessWarning",
    "ImageError",
    "ModelBundle",
    "ModelUnavailableError",
    "attribute",
    "cascade",
    "cascade_grid",
    "chart_size_bytes",
    "compare_explanations",
    "comparison",
    "data",
    "check",
    "check_true",
    "clip_percentile",
    "completeness_error",
    "course_photo",
    "course_photos",
    "PHOTO_SET",
    "denormalize",
    "heatmaps",
    "load_image",
    "load_model",
    "make_baseline",
    "normalize",
    "offline_charts",
    "pool",
    "quick",
    "randomized_models",
    "reduce_channels",
    "resolve_target",
    "sanity",
    "save_png",
    "scaled",
    "similarity_chart",
    "similarity_lines",
    "spearman",
    "summarize",
    "summary",
    "to_frame",
    "training",
    "widgets",
]
