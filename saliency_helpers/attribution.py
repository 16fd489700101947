"""One call for every attribution method: ``attribute(method, model, inputs, target)``.

Every method is Captum's; this module only picks the course's defaults, turns
friendly arguments (a class name, a named baseline, noise as a fraction of the
input range) into Captum's, and returns a tensor shaped like ``inputs``.
Adding a method is one entry in :data:`METHODS`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torchvision.transforms.functional as TF
from captum.attr import (
    GuidedBackprop,
    GuidedGradCam,
    InputXGradient,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from torch import nn

from ._batching import ChannelsLast, channels_last_weights, images_per_batch, uses_convolutions
from ._inference import FORWARD_BATCH, forward_only

#: IG's default number of steps: the smallest that keeps the completeness error
#: below the IG paper's 5% on both course photos, zero and black baselines
#: (Gauss-Legendre rule; see tests/test_attribution.py and notebook 03).
IG_STEPS = 128
#: The most images (interpolation steps or noisy samples, all inputs together) that
#: Integrated Gradients and SmoothGrad push through the network at once. For ImageNet-
#: sized images :data:`MEMORY_BUDGET` binds first (a few images); this caps it for tiny
#: inputs such as 28x28 digits (~0.1 MB of activations each), where it is the batch.
BATCH = 1024
#: Bytes that the activations kept for the backward pass may take; the batch is the
#: largest that fits. Measured (benchmarks/): ResNet18 keeps 21 MB per 224-px image, so
#: 8 images at once (~0.4 GB of extra RAM in all, and already the fastest per image on
#: 2 cores); EfficientNet-Lite0 keeps 78 MB, so 2 (~0.25 GB). One call of any method
#: thereby stays below 0.5 GB, whatever n_steps or nt_samples.
MEMORY_BUDGET = 170 * 2**20
#: Run the many-pass methods (Integrated Gradients, the SmoothGrad family) of a CNN
#: on channels-last inputs, unless its weights are stored channels-last already: the
#: same function, computed with fewer memory reorders (see ``_batching.ChannelsLast`` and
#: benchmarks/). Float sums are added in another order than in a channels-first loop,
#: so results differ from one at float32 rounding level (a unit within ~1e-6 of a ReLU
#: kink can switch side); set to False to match such a loop bit for bit.
CHANNELS_LAST = True
#: The six methods the course teaches, in teaching order (Guided Backprop last: the
#: negative control of the sanity checks).
COURSE_METHODS = (
    "gradient",
    "input_x_gradient",
    "integrated_gradients",
    "smoothgrad",
    "grad_cam",
    "guided_backprop",
)
#: The sanity checks' negative controls (notebooks 06-07): methods whose maps Adebayo et
#: al. 2018, "Sanity Checks for Saliency Maps" (https://arxiv.org/abs/1810.03292), found to
#: change little when the weights are randomized. Notebook 05 defines both; they are not
#: among the methods taught above.
CONTROL_METHODS = ("guided_backprop", "guided_grad_cam")
#: The completeness error above which IG warns (Sundararajan et al. 2017, section 3).
COMPLETENESS_TOLERANCE = 0.05


class CompletenessWarning(UserWarning):
    """Integrated Gradients' attributions do not add up to F(x) - F(x'): use more steps."""


@dataclass(frozen=True)
class Method:
    """One registry entry: everything :func:`attribute` needs to run a method.

    Adding a method is one entry in :data:`METHODS`: ``attribute`` looks up the entry and
    calls its ``run``; it never branches on a method's name.

    Attributes:
        build: ``build(net, layer) -> explainer``, a Captum object with ``.attribute``.
        defaults: keyword arguments of the method unless the caller overrides them.
        paper: where the method comes from.
        run: how to call it (default: by its kind, see ``_runner``): ``_plain`` (one
            explainer call), ``_integrated`` (baselines, step batching, the fast layout),
            ``_smooth`` (Captum's NoiseTunnel around a base method) or ``_at_layer``
            (Grad-CAM style); an entry may name its own, e.g. ``_occlusion`` (patch
            size in pixels turned into Captum's sliding windows).
        smoothing: Captum's ``nt_type`` for SmoothGrad-style entries.
        needs_layer: the explainer is built at an inner layer (``layer=``, by default
            the model's ``gradcam_layer``).
        completeness: the method obeys the completeness axiom, so ``attribute`` checks it
            (Integrated Gradients).
    """

    build: Callable[[nn.Module, nn.Module | None], Any]
    defaults: dict[str, Any] = field(default_factory=dict)
    paper: str = ""
    run: Callable[..., torch.Tensor] | None = None
    smoothing: str | None = None
    needs_layer: bool = False
    completeness: bool = False

    def __call__(self, run: _Run, kwargs: dict[str, Any]) -> torch.Tensor:
        """Run the method: its own ``run``, or the runner of its kind."""
        return (self.run or _runner(self))(run, kwargs)


#: SmoothGrad's defaults (Smilkov et al. 2017 recommend 10-20% noise and ~50 samples).
SMOOTHING_DEFAULTS = {"noise": 0.15, "nt_samples": 50, "base": "gradient", "seed": 0}
#: Occlusion's defaults: a 16-pixel square patch (for 224-px photos; a few pixels for
#: 28-px digits) moved by half its side (``stride=None``), replaced by the zero baseline.
#: A 224-px photo then takes 27 x 27 = 729 forward passes.
OCCLUSION_DEFAULTS = {"window": 16, "stride": None, "baselines": "zero", "engine": "auto"}


def _runner(spec: Method) -> Callable[..., torch.Tensor]:
    """The runner an entry gets unless it names one: by its kind."""
    if spec.smoothing is not None:
        return _smooth
    if spec.needs_layer:
        return _at_layer
    if spec.completeness:
        return _integrated
    return _plain


METHODS: dict[str, Method] = {
    "gradient": Method(
        lambda net, layer: Saliency(net),
        {"abs": False},
        "Simonyan et al. 2013, https://arxiv.org/abs/1312.6034",
    ),
    "input_x_gradient": Method(
        lambda net, layer: InputXGradient(net),
        {},
        "Shrikumar et al. 2016, https://arxiv.org/abs/1605.01713",
    ),
    "integrated_gradients": Method(
        lambda net, layer: IntegratedGradients(net),
        {"n_steps": IG_STEPS, "method": "gausslegendre", "baselines": "zero"},
        "Sundararajan et al. 2017, https://arxiv.org/abs/1703.01365",
        completeness=True,
    ),
    "smoothgrad": Method(
        lambda net, layer: Saliency(net),
        SMOOTHING_DEFAULTS,
        "Smilkov et al. 2017, https://arxiv.org/abs/1706.03825",
        smoothing="smoothgrad",
    ),
    "smoothgrad_sq": Method(
        lambda net, layer: Saliency(net),
        SMOOTHING_DEFAULTS,
        "Hooker et al. 2019, https://arxiv.org/abs/1806.10758",
        smoothing="smoothgrad_sq",
    ),
    "vargrad": Method(
        lambda net, layer: Saliency(net),
        SMOOTHING_DEFAULTS,
        "Adebayo et al. 2018, https://arxiv.org/abs/1810.03307",
        smoothing="vargrad",
    ),
    "grad_cam": Method(
        lambda net, layer: LayerGradCam(net, layer),
        {"relu_attributions": True},
        "Selvaraju et al. 2017, https://arxiv.org/abs/1610.02391",
        needs_layer=True,
    ),
    "guided_backprop": Method(
        lambda net, layer: GuidedBackprop(net),
        {},
        "Springenberg, Dosovitskiy, Brox & Riedmiller, Striving for Simplicity: The All "
        "Convolutional Net, ICLR 2015 workshop, https://arxiv.org/abs/1412.6806",
    ),
    # Guided Backprop times the upsampled Grad-CAM map (defined in the Grad-CAM paper).
    # Captum upsamples with "nearest" by default; the paper and our grad_cam use bilinear,
    # so that this method is attribute("guided_backprop") * attribute("grad_cam").
    "guided_grad_cam": Method(
        lambda net, layer: GuidedGradCam(net, layer),
        {"interpolate_mode": "bilinear"},
        "Selvaraju et al. 2017, https://arxiv.org/abs/1610.02391",
        needs_layer=True,
    ),
    # Perturbation, not gradients: the change of the target's logit when a patch is
    # replaced by the baseline (forward passes only). Not among COURSE_METHODS: notebook 08
    # uses it as a reference that is faithful by construction, at the patch's resolution.
    "occlusion": Method(
        lambda net, layer: Occlusion(net),
        OCCLUSION_DEFAULTS,
        "Zeiler & Fergus 2014, https://arxiv.org/abs/1311.2901",
        run=lambda run, kwargs: _occlusion(run, kwargs),  # (defined below)
    ),
}

_CAPTUM_NOTES = (
    "Input Tensor .* did not already require gradients",
    "Setting backward hooks on ReLU activations",
    # GuidedGradCam's note for a layer it cannot upsample: we raise a ValueError instead.
    "Couldn't appropriately interpolate GradCAM",
)

#: Named IG baselines (all in the model's input space; see :func:`make_baseline`).
BASELINES = ("zero", "black", "white", "blur", "noise", "mean")


def attribute(
    method: str,
    model: Any,
    inputs: torch.Tensor,
    /,
    target: int | str | list[int] | torch.Tensor | None = None,
    *,
    return_error: bool = False,
    channels_last: bool | None = None,
    **kwargs: Any,
) -> torch.Tensor | tuple[torch.Tensor, float]:
    """Explain a prediction: attributions of ``target``'s logit to every input value.

    Args:
        method: a name in :data:`METHODS`: ``"gradient"``, ``"input_x_gradient"``,
            ``"integrated_gradients"``, ``"smoothgrad"``, ``"smoothgrad_sq"``,
            ``"vargrad"``, ``"grad_cam"``, ``"guided_backprop"``,
            ``"guided_grad_cam"`` or ``"occlusion"``.
        model: the object from ``load_model`` or a bare ``nn.Module``. It is not
            modified (parameters, ``training`` flag, ``requires_grad``, hooks).
        inputs: tensor ``(N, C, H, W)`` (any ``(N, ...)`` for a bare module),
            already preprocessed.
        target: the class to explain: ``None`` (each input's predicted class),
            an int, a class name from ``model.categories``, or one per input.
        return_error: Integrated Gradients only: also return the completeness
            error (see :func:`completeness_error`).
        channels_last: run the many-pass methods (IG, the SmoothGrad family) on
            channels-last inputs; ``None`` means :data:`CHANNELS_LAST`. The same function,
            computed in another memory layout (the benchmark compares both).
        **kwargs: Captum's own arguments, by Captum's names:
            integrated_gradients: ``baselines`` (tensor, number, or one of
            :data:`BASELINES`; default ``"zero"``), ``n_steps`` (default 128),
            ``method`` (Captum's integration rule: ``"gausslegendre"``, or
            ``"riemann_left"`` / ``"riemann_right"`` / ``"riemann_middle"`` /
            ``"riemann_trapezoid"``), ``internal_batch_size`` (default: as many
            images as fit in :data:`MEMORY_BUDGET`, at most :data:`BATCH`, in equal
            chunks).
            smoothgrad / smoothgrad_sq / vargrad: ``noise`` (σ as a fraction of
            the input's value range, default 0.15), ``nt_samples`` (50),
            ``nt_samples_batch_size`` (samples per input at once; default as for
            IG's batch, divided by the number of inputs), ``base`` (the method
            under the noise, default ``"gradient"``), ``seed`` (0).
            grad_cam, guided_grad_cam: ``layer`` (a module or dotted name; default
            the model's ``gradcam_layer``; required for a bare ``nn.Module``).
            guided_grad_cam: ``interpolate_mode`` (how Grad-CAM's map is upsampled
            before it multiplies Guided Backprop; default ``"bilinear"``, Captum's
            own default is ``"nearest"``).
            occlusion: ``window`` (side in pixels of the square patch, default 16; for
            ``(N, D)`` inputs a run of ``window`` values), ``stride`` (pixels between
            patches, default ``window // 2``; at most ``window``), ``baselines`` (what
            the patch is replaced with, as for IG; default ``"zero"``),
            ``perturbations_per_eval`` (occluded copies per input in one forward pass;
            default :data:`~._inference.FORWARD_BATCH` images per pass in all, divided by
            the number of inputs), ``engine`` (what runs the forward passes: ``"auto"``,
            ONNX Runtime for photos when installed, about twice as fast on a CPU;
            ``"torch"`` or ``"onnx"``). A patch
            covers all channels of its pixels; a value's attribution is the mean
            change of the logit over the patches that cover it (Captum's rule).

    Returns:
        Attributions shaped like ``inputs`` (Grad-CAM's one map per image is
        upsampled bilinearly and repeated over the channels), detached.
        With ``return_error=True``: ``(attributions, completeness_error)``.

    Example:
        >>> b = sh.load_model()
        >>> x = b.preprocess(sh.course_photo())
        >>> sh.attribute("integrated_gradients", b, x, baselines="black").shape
        torch.Size([1, 3, 224, 224])
    """
    if not isinstance(method, str):
        raise TypeError(
            f"method must be a method's name such as 'gradient', got a {type(method).__name__}: "
            "the order is sh.attribute(method, model, inputs, target)."
        )
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of {sorted(METHODS)}.")
    net, bundle = _unpack(model)
    inputs = _check_inputs(inputs, bundle)
    spec = METHODS[method]
    if return_error and not spec.completeness:
        raise ValueError("return_error=True is only for 'integrated_gradients'.")
    fast = CHANNELS_LAST if channels_last is None else bool(channels_last)

    with _restored(net), warnings.catch_warnings():
        # Captum's notes on what it does internally are noise to a student; ours are not.
        for note in _CAPTUM_NOTES:
            warnings.filterwarnings("ignore", message=note)
        net.eval()  # also for the target's forward pass: BatchNorm statistics stay as they are
        targets = resolve_target(model, inputs, target)
        call = dict(kwargs)
        if spec.completeness:  # the baseline as a tensor once: the runner and the check share it
            named = call.get("baselines", spec.defaults["baselines"])
            call["baselines"] = make_baseline(named, inputs, bundle)
        result = spec(_Run(method, spec, net, bundle, inputs, targets, fast), call)
        if spec.completeness:
            errors, gaps = _completeness_per_input(
                net, inputs, result, targets, call["baselines"]
            )
            error = float(errors.max())
            call = {**spec.defaults, **call}
    if spec.completeness:
        if error > COMPLETENESS_TOLERANCE:
            warnings.warn(
                f"{method}: the completeness error is {error:.1%} (> 5%) with "
                f"n_steps={call['n_steps']}{_worst_input(errors, gaps)}: increase n_steps.",
                CompletenessWarning,
                stacklevel=2,
            )
        if return_error:
            return result, error
    return result


def completeness_error(
    model: Any,
    inputs: torch.Tensor,
    attributions: torch.Tensor,
    target: Any,
    baselines: Any = None,
) -> float:
    """IG's completeness gap, relative: |Σ attributions − (F(x) − F(x′))| / |F(x) − F(x′)|.

    Integrated Gradients' attributions add up to the change of the target's
    logit between the baseline x′ and the input x (the completeness axiom);
    a numerical integral only approximates that.

    Args:
        model: the object from ``load_model`` or a bare ``nn.Module``.
        inputs: ``(N, ...)`` the explained inputs.
        attributions: ``(N, ...)`` IG attributions for them.
        target: the explained class(es), as for :func:`attribute`.
        baselines: the baseline used (tensor, number or name; default zero).

    Returns:
        The largest relative error over the batch, as a float (0.03 = 3%).

    Example:
        >>> a = sh.attribute("integrated_gradients", b, x, target=89)
        >>> sh.completeness_error(b, x, a, 89)  # doctest: +SKIP
        0.014
    """
    net, bundle = _unpack(model)
    targets = resolve_target(model, inputs, target)
    base = make_baseline("zero" if baselines is None else baselines, inputs, bundle)
    return _completeness(net, inputs, attributions, targets, base)


def _completeness(
    net: nn.Module,
    inputs: torch.Tensor,
    attributions: torch.Tensor,
    targets: list[int],
    base: torch.Tensor,
) -> float:
    """The largest relative completeness error over the batch."""
    errors, _ = _completeness_per_input(net, inputs, attributions, targets, base)
    return float(errors.max())


def _completeness_per_input(
    net: nn.Module,
    inputs: torch.Tensor,
    attributions: torch.Tensor,
    targets: list[int],
    base: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N,)`` relative errors and ``(N,)`` |f(x) - f(x')| of each input."""
    n = inputs.shape[0]
    with torch.inference_mode():
        idx = torch.as_tensor(targets).reshape(-1, 1).expand(n, 1)
        f_x = net(inputs).gather(1, idx)[:, 0]
        f_b = net(base.expand_as(inputs)).gather(1, idx)[:, 0]
    total = attributions.reshape(n, -1).sum(dim=1)
    gap = (f_x - f_b).abs()
    return (total - (f_x - f_b)).abs() / gap.clamp_min(1e-12), gap


def _worst_input(errors: torch.Tensor, gaps: torch.Tensor) -> str:
    """For a batch: which input has the largest error, how many exceed 5%, and its logit change.

    A relative error of a tiny change (a digit the model barely tells from the baseline) can
    be large while the attributions are fine in absolute terms; the message says so.
    """
    if errors.numel() < 2:
        return ""
    worst = int(errors.argmax())
    over = int((errors > COMPLETENESS_TOLERANCE).sum())
    median_gap = float(gaps.median())
    note = (
        f" (input {worst} of {errors.numel()}; {over} of them over 5%; its target logit "
        f"changes by {float(gaps[worst]):.3g} from the baseline, the median input's by "
        f"{median_gap:.3g}"
    )
    if float(gaps[worst]) < 0.01 * median_gap:
        note += ": a relative error of a near-zero change"
    return note + ")"


def make_baseline(baseline: Any, inputs: torch.Tensor, model: Any = None) -> torch.Tensor:
    """Turn a baseline choice into a tensor in the model's input space.

    Args:
        baseline: a tensor broadcastable to ``inputs``, a number, or a name:
            ``"zero"`` (0 in model space: the dataset-mean colour for ResNet18,
            mid-grey for EfficientNet-Lite0), ``"black"``, ``"white"`` (pixel
            0 or 1 after normalisation), ``"blur"`` (the input under a strong
            Gaussian blur), ``"noise"`` (uniform pixel noise, seed 0) or
            ``"mean"`` (the image's own mean colour).
        inputs: ``(N, C, H, W)`` the preprocessed inputs.
        model: the ``load_model`` object: black, white and noise need its
            normalisation.

    Returns:
        A tensor shaped like ``inputs``.

    Example:
        >>> make_baseline("black", x, b).shape
        torch.Size([1, 3, 224, 224])
    """
    if isinstance(baseline, torch.Tensor):
        try:
            return baseline.to(inputs.dtype).expand_as(inputs)
        except RuntimeError:
            raise ValueError(
                f"baselines of shape {tuple(baseline.shape)} cannot be broadcast to the "
                f"inputs' shape {tuple(inputs.shape)}."
            ) from None
    if isinstance(baseline, (int, float)):
        return torch.full_like(inputs, float(baseline))
    if baseline not in BASELINES:
        raise ValueError(
            f"Unknown baseline {baseline!r}: pass a tensor, a number or one of {BASELINES}."
        )
    if baseline == "zero":
        return torch.zeros_like(inputs)
    if baseline == "blur":
        # A 51-px kernel with sigma 12 for photos; smaller images get the largest odd kernel
        # their reflect padding allows (half the kernel < the side), sigma scaled with it.
        side = min(inputs.shape[-2:])
        kernel = min(51, 2 * ((side - 1) // 2) + 1)
        sigma = 12.0 * kernel / 51
        return TF.gaussian_blur(inputs, kernel_size=[kernel, kernel], sigma=[sigma, sigma])
    if baseline == "mean":
        return inputs.mean(dim=tuple(range(2, inputs.dim())), keepdim=True).expand_as(inputs)
    _, bundle = _unpack(model) if model is not None else (None, None)
    if bundle is None:
        raise ValueError(
            f"The {baseline!r} baseline needs the model's normalisation: pass the object from "
            "load_model as `model`, or give the baseline as a tensor."
        )
    if baseline == "noise":
        gen = torch.Generator().manual_seed(0)
        pixels = torch.rand(inputs.shape, generator=gen, dtype=inputs.dtype)
    else:
        pixels = torch.full_like(inputs, 0.0 if baseline == "black" else 1.0)
    mean = torch.tensor(bundle.mean, dtype=inputs.dtype).view(1, -1, 1, 1)
    std = torch.tensor(bundle.std, dtype=inputs.dtype).view(1, -1, 1, 1)
    return (pixels - mean) / std


def resolve_target(model: Any, inputs: torch.Tensor, target: Any) -> list[int]:
    """Turn a target argument into one class index per input, checking its range.

    Args:
        model: the object from ``load_model`` or a bare ``nn.Module``.
        inputs: ``(N, ...)``.
        target: ``None`` (predicted class), int, class name, or a sequence/tensor
            with one of those per input.

    Returns:
        A list of ``N`` class indices.
    """
    net, bundle = _unpack(model)
    n = inputs.shape[0]
    if target is None:
        with torch.inference_mode():
            return net(inputs).argmax(dim=1).tolist()
    if isinstance(target, torch.Tensor):
        target = target.reshape(-1).tolist()
    items = list(target) if isinstance(target, (list, tuple)) else [target] * n
    if len(items) != n:
        raise ValueError(f"Got {len(items)} targets for {n} inputs: give one per input, or one.")
    if bundle is not None:
        indices = [bundle.class_index(t) for t in items]
        n_classes = len(bundle.categories)
    else:
        if any(isinstance(t, str) for t in items):
            raise ValueError("Class names need the object from load_model; give class indices.")
        indices = [int(t) for t in items]
        with torch.inference_mode():
            n_classes = net(inputs[:1]).shape[1]
    for t in indices:
        if not 0 <= t < n_classes:
            raise ValueError(
                f"target {t} is out of range: the model has {n_classes} classes "
                f"(0..{n_classes - 1})."
            )
    return indices


# ---------------------------------------------------------------------------


def _unpack(model: Any) -> tuple[nn.Module, Any]:
    if isinstance(model, nn.Module):
        return model, None
    if hasattr(model, "model") and isinstance(model.model, nn.Module):
        return model.model, model
    raise TypeError(
        "model must be the object returned by load_model or an nn.Module, "
        f"not {type(model).__name__}."
    )


def _check_inputs(inputs: Any, bundle: Any) -> torch.Tensor:
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(
            f"inputs must be a tensor, not {type(inputs).__name__}: use bundle.preprocess(photo)."
        )
    if not inputs.is_floating_point():
        raise TypeError(
            f"inputs must be a float tensor, got {inputs.dtype}: use bundle.preprocess."
        )
    if bundle is not None and (inputs.dim() != 4 or inputs.shape[1] != 3):
        hint = " Add the batch dimension: x.unsqueeze(0)." if inputs.dim() == 3 else ""
        raise ValueError(f"inputs must be shaped (N, 3, H, W), got {tuple(inputs.shape)}.{hint}")
    if inputs.dim() < 2:
        raise ValueError(f"inputs need a batch dimension first, got shape {tuple(inputs.shape)}.")
    if not torch.isfinite(inputs).all():
        raise ValueError("inputs contain NaN or inf.")
    return inputs.detach()


def _layer(net: nn.Module, bundle: Any, layer: Any, method: str = "grad_cam") -> nn.Module:
    if layer is None:
        if bundle is None:
            raise ValueError(
                f"{method} on a bare nn.Module needs layer=: the convolutional layer whose "
                "Grad-CAM map it uses, as a module of the model or its dotted name from "
                "net.named_modules()."
            )
        return bundle.gradcam_layer
    if isinstance(layer, str):
        try:
            return net.get_submodule(layer)
        except AttributeError:
            raise ValueError(f"The model has no layer named {layer!r}.") from None
    if isinstance(layer, nn.Module) and any(m is layer for m in net.modules()):
        return layer
    raise ValueError("layer must be a module of this model (or its dotted name).")


@dataclass(frozen=True)
class _Run:
    """What a runner needs besides the caller's keyword arguments (see :class:`Method`)."""

    method: str
    spec: Method
    net: nn.Module
    bundle: Any
    inputs: torch.Tensor
    targets: list[int]
    channels_last: bool

    def fast_net(self) -> nn.Module:
        return _fast(self.net, self.channels_last)


def _fast(net: nn.Module, channels_last: bool = True) -> nn.Module:
    """The network the many-pass methods run: channels-last inputs for a CNN whose
    weights are channels-first (one with channels-last weights runs that way anyway)."""
    if channels_last and uses_convolutions(net) and not channels_last_weights(net):
        return ChannelsLast(net)
    return net


def _plain(run: _Run, kwargs: dict[str, Any]) -> torch.Tensor:
    """One explainer call: gradient, input x gradient, guided backprop."""
    explainer = run.spec.build(run.net, None)
    call = {**run.spec.defaults, **kwargs}
    return explainer.attribute(run.inputs, target=run.targets, **call).detach().contiguous()


def _integrated(run: _Run, kwargs: dict[str, Any]) -> torch.Tensor:
    """Integrated Gradients: a named baseline made a tensor, the steps batched to memory."""
    call = {**run.spec.defaults, **kwargs}
    call["baselines"] = make_baseline(call["baselines"], run.inputs, run.bundle)
    call.setdefault("internal_batch_size", _ig_batch(run.net, run.inputs, call["n_steps"]))
    explainer = run.spec.build(run.fast_net(), None)
    return explainer.attribute(run.inputs, target=run.targets, **call).detach().contiguous()


def _at_layer(run: _Run, kwargs: dict[str, Any]) -> torch.Tensor:
    """grad_cam and guided_grad_cam: resolve ``layer``, build the explainer there."""
    inputs = run.inputs
    layer = _layer(run.net, run.bundle, kwargs.pop("layer", None), run.method)
    explainer = run.spec.build(run.net, layer)
    call = {**run.spec.defaults, **kwargs}
    out = explainer.attribute(inputs, target=run.targets, **call).detach()
    if out.dim() != 4 or inputs.dim() != 4:
        # (GuidedGradCam returns an empty tensor when it cannot upsample the map.)
        raise ValueError(
            f"{run.method} needs a convolutional layer and (N, C, H, W) inputs; {layer} gives "
            f"shape {tuple(out.shape)}."
        )
    if out.shape[1:] != inputs.shape[1:]:  # Grad-CAM: one map per image, (N, 1, h, w)
        out = LayerAttribution.interpolate(out, tuple(inputs.shape[2:]), "bilinear")
    return out.expand_as(inputs).contiguous()


def _smooth(run: _Run, kwargs: dict[str, Any]) -> torch.Tensor:
    """The SmoothGrad family: Captum's NoiseTunnel around a base method, seeded noise."""
    own = {**run.spec.defaults, **kwargs}
    noise, base, seed = float(own.pop("noise")), own.pop("base"), int(own.pop("seed"))
    if noise < 0:
        raise ValueError(f"noise is a fraction of the input range (e.g. 0.15), got {noise}.")
    base_spec = METHODS.get(base)
    if base_spec is None or base_spec.smoothing or base_spec.needs_layer:
        raise ValueError(
            f"base must be one of gradient, input_x_gradient, integrated_gradients, "
            f"guided_backprop; got {base!r}."
        )
    net, inputs = run.net, run.inputs
    base_kwargs = dict(base_spec.defaults)
    # NoiseTunnel's batch counts samples per input: N inputs make N times as many images.
    # (For images the seeded noise is the same whatever the batch: torch draws normal
    # numbers in blocks of 16 and an image's pixel count is a multiple of 16.)
    samples_at_once = max(1, images_at_once(net, inputs) // len(inputs))
    if base_spec.completeness:
        baselines = own.pop("baselines", base_kwargs["baselines"])
        base_kwargs["baselines"] = make_baseline(baselines, inputs, run.bundle)
        n_steps = int(own.get("n_steps", base_kwargs["n_steps"]))
        base_kwargs["internal_batch_size"] = _ig_batch(net, inputs, n_steps)
        samples_at_once = 1  # each noisy sample already runs n_steps images
    span = float(inputs.max() - inputs.min())
    call = {
        "nt_type": run.spec.smoothing,
        "nt_samples_batch_size": samples_at_once,
        "stdevs": noise * span,
        **base_kwargs,
        **own,
    }
    tunnel = NoiseTunnel(base_spec.build(run.fast_net(), None))
    with torch.random.fork_rng():  # seeded noise without touching the caller's RNG
        torch.manual_seed(seed)
        return tunnel.attribute(inputs, target=run.targets, **call).detach().contiguous()


def _occlusion(run: _Run, kwargs: dict[str, Any]) -> torch.Tensor:
    """Occlusion: a square patch of ``window`` pixels (all channels) every ``stride`` pixels,
    turned into Captum's sliding windows; forward passes only, so under inference mode."""

    def pixels(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"occlusion: {name} must be a positive int (pixels), got {value!r}.")
        return value

    own = {**run.spec.defaults, **kwargs}
    window = pixels("window", own.pop("window"))
    stride = own.pop("stride")
    stride = max(1, window // 2) if stride is None else pixels("stride", stride)
    inputs = run.inputs
    if stride > window:
        raise ValueError(
            f"occlusion: stride={stride} > window={window} would skip pixels; use a stride of "
            "at most the window."
        )
    if inputs.dim() == 4:
        channels, *size = inputs.shape[1:]
        shapes, strides = (channels, window, window), (channels, stride, stride)
    elif inputs.dim() == 2:
        size = [inputs.shape[1]]
        shapes, strides = (window,), (stride,)
    else:
        raise ValueError(
            f"occlusion needs inputs shaped (N, C, H, W) or (N, D), got {tuple(inputs.shape)}."
        )
    if window > min(size):
        raise ValueError(
            f"occlusion: window={window} is larger than the input ({' x '.join(map(str, size))}"
            "); use a smaller window."
        )
    own["baselines"] = make_baseline(own["baselines"], inputs, run.bundle)
    own.setdefault("perturbations_per_eval", max(1, FORWARD_BATCH // len(inputs)))
    # Forward passes only: the fastest engine computes them (the same logits to ~1e-5).
    forward = forward_only(run.net, inputs, own.pop("engine"))
    explainer = run.spec.build(forward, None)
    with torch.inference_mode():
        out = explainer.attribute(
            inputs, sliding_window_shapes=shapes, strides=strides, target=run.targets, **own
        )
    return out.clone()  # outside inference mode: an ordinary tensor the caller can reuse


def images_at_once(net: nn.Module, inputs: torch.Tensor) -> int:
    """How many images the many-pass methods push through ``net`` at once.

    The one batch policy of the course: as many as fit in :data:`MEMORY_BUDGET` (measured
    from one forward pass per input shape), at most :data:`BATCH`. ImageNet photos: a few;
    28x28 digits: :data:`BATCH`.

    Args:
        net: the network (eval mode).
        inputs: ``(N, C, H, W)`` inputs of the shape that will be run.

    Returns:
        The number of images (interpolation steps or noisy samples, all inputs together).

    Example:
        >>> images_at_once(b.model, x)  # doctest: +SKIP
        8
    """
    return images_per_batch(net, inputs, MEMORY_BUDGET, BATCH)


def _ig_batch(net: nn.Module, inputs: torch.Tensor, n_steps: int) -> int:
    """Captum's ``internal_batch_size`` for IG: the steps in near-equal chunks of at most
    :func:`images_at_once` images (50 steps, room for 16: 13+13+13+11, not 16+16+16+2)."""
    n = len(inputs)
    per_chunk = max(1, images_at_once(net, inputs) // n)
    chunks = -(-n_steps // per_chunk)
    return -(-n_steps // chunks) * n


class _restored:
    """Context manager: put back the model's training flag (Captum does not change parameters)."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net

    def __enter__(self) -> None:
        self.modes = [m.training for m in self.net.modules()]

    def __exit__(self, *exc: object) -> None:
        for m, mode in zip(self.net.modules(), self.modes, strict=True):
            m.training = mode


__all__ = [
    "BASELINES",
    "CONTROL_METHODS",
    "METHODS",
    "CompletenessWarning",
    "Method",
    "attribute",
    "completeness_error",
    "images_at_once",
    "make_baseline",
    "resolve_target",
]
