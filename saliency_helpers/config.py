"""Course-wide settings read from the environment (never changed on import).

``SALIENCY_QUICK=1`` runs every notebook at CI size: fewer integration steps,
noise samples and training epochs. The full-size run is the same command
without the variable.
"""

from __future__ import annotations

import os

QUICK_ENV = "SALIENCY_QUICK"
MODEL_ENV = "SALIENCY_MODEL"  # which model load_model() gives (see models.MODEL_NAMES)


def quick() -> bool:
    """Whether the course runs at CI size (``SALIENCY_QUICK=1``).

    Returns:
        True when the environment variable ``SALIENCY_QUICK`` is ``"1"``.

    Example:
        >>> import saliency_helpers as sh
        >>> sh.quick() in (True, False)
        True
    """
    return os.environ.get(QUICK_ENV, "0").strip() == "1"


def scaled(full: int, quick_value: int) -> int:
    """Pick a size: ``full`` normally, ``quick_value`` under ``SALIENCY_QUICK=1``.

    Args:
        full: the size used in the full-size run (students, instructors).
        quick_value: the smaller size used on CI.

    Returns:
        One of the two values.

    Example:
        >>> n_samples = scaled(50, 10)
    """
    return quick_value if quick() else full
