"""Compare the explanations of two models on the same inputs (the data-randomization test).

Adebayo et al. (2018), "Sanity Checks for Saliency Maps", https://arxiv.org/abs/1810.03292,
Section 5: train one architecture on the true labels and once more on randomly permuted
labels. The second model can only memorise, so an explanation that describes what a model
learned must differ between the two. Here every method explains the SAME class in both
models, image by image, and the two maps are compared by Spearman's rank correlation:

* ``spearman_signed``: of the channel-summed signed maps;
* ``spearman_abs``: of the maps' magnitudes (``|.|`` averaged over channels).

A constant map (an all-zero Grad-CAM after its ReLU, say) has no ranking, so its rank
correlation with anything is undefined: it is reported as ``NaN`` and counted by
:func:`summarize` (column ``n_undefined``), never silently turned into 0 (that would pass
the test for free) or 1.

Example:
    >>> df = compare_explanations(true_model, permuted_model, x[:50], ["gradient"],
    ...                           targets=y[:50])                       # doctest: +SKIP
    >>> summarize(df)                                                   # doctest: +SKIP
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from .attribution import COURSE_METHODS, CompletenessWarning, attribute, resolve_target
from .attribution import METHODS as _REGISTRY
from .maps import spearman

__all__ = [
    "METHODS",
    "METRICS",
    "compare_explanations",
    "compare_maps",
    "explain",
    "spearman",
    "summarize",
]

#: The methods of the data-randomization notebook, in the order they are shown.
METHODS = COURSE_METHODS
#: The metrics of :func:`compare_maps`, one row each per method and image.
METRICS = ("spearman_signed", "spearman_abs")
#: Images per forward pass inside IG and SmoothGrad: far more than attribute()'s ImageNet
#: default of 16, because 28x28 digits are tiny (about 0.1 MB of activations each).
_SMALL_IMAGE_BATCH = 1024


def explain(
    model: nn.Module | Any,
    inputs: torch.Tensor,
    methods: Sequence[str] = METHODS,
    targets: int | Sequence[int] | torch.Tensor | None = None,
    method_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, torch.Tensor]:
    """Maps of several methods for one model, every method explaining the same targets.

    Defaults for small images: Grad-CAM uses ``model.gradcam_layer_name`` (a bare
    ``nn.Module`` has no bundle to ask), and Integrated Gradients / SmoothGrad push
    about 1,000 images through the network at once. ``method_kwargs`` overrides any of it.

    Args:
        model: an ``nn.Module`` (e.g. ``training.SmallCNN``) or the object from
            ``sh.load_model``.
        inputs: ``(N, C, H, W)`` images.
        methods: names accepted by ``sh.attribute``.
        targets: the class to explain, one int or one per input; default each input's
            class predicted by THIS model.
        method_kwargs: ``{method: {kwarg: value}}`` for ``sh.attribute``, e.g.
            ``{"integrated_gradients": {"n_steps": 32}, "smoothgrad": {"nt_samples": 20}}``.

    Returns:
        ``{method: attributions}``, each ``(N, C, H, W)`` like ``inputs``.

    Example:
        >>> maps = explain(model, x[:4], ["gradient", "grad_cam"], targets=y[:4])
        >>> maps["grad_cam"].shape
        torch.Size([4, 1, 28, 28])
    """
    methods = _check_methods(methods)
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4:
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise ValueError(f"inputs must be a tensor (N, C, H, W), got {shape}.")
    kwargs = _method_kwargs(model, methods, method_kwargs, len(inputs))
    targets = resolve_target(model, inputs, targets)
    maps = {}
    for method in methods:
        maps[method] = attribute(method, model, inputs, target=targets, **kwargs[method])
    return maps


def compare_maps(
    maps_a: Mapping[str, torch.Tensor], maps_b: Mapping[str, torch.Tensor]
) -> pd.DataFrame:
    """Per-image Spearman correlations between two sets of maps (see the module docstring).

    Args:
        maps_a, maps_b: ``{method: (N, C, H, W)}`` with the same methods and shapes,
            e.g. from :func:`explain` for two models.

    Returns:
        Long DataFrame with columns ``method, index, metric, value``: one row per method,
        image (``index`` 0..N-1) and metric in :data:`METRICS`; ``value`` is NaN where a
        map is constant.

    Example:
        >>> compare_maps({"gradient": g}, {"gradient": g})["value"].unique()
        array([1.])
    """
    if set(maps_a) != set(maps_b):
        raise ValueError(
            f"maps_a and maps_b hold different methods: {sorted(maps_a)} vs {sorted(maps_b)}."
        )
    rows = []
    for method, a in maps_a.items():
        b = maps_b[method]
        if a.shape != b.shape or a.dim() != 4:
            raise ValueError(
                f"{method}: maps must both be (N, C, H, W) of one shape, got "
                f"{tuple(a.shape)} and {tuple(b.shape)}."
            )
        # Signed: sum over channels (colour channels add up to the pixel's effect).
        # Magnitude: mean |.| over channels, as sanity.similarity does for the cascade.
        signed_a, signed_b = a.sum(dim=1), b.sum(dim=1)
        abs_a, abs_b = a.abs().mean(dim=1), b.abs().mean(dim=1)
        for i in range(a.shape[0]):
            rows.append((method, i, "spearman_signed", spearman(signed_a[i], signed_b[i])))
            rows.append((method, i, "spearman_abs", spearman(abs_a[i], abs_b[i])))
    return pd.DataFrame(rows, columns=["method", "index", "metric", "value"])


def compare_explanations(
    model_a: nn.Module | Any,
    model_b: nn.Module | Any,
    inputs: torch.Tensor,
    methods: Sequence[str] = METHODS,
    targets: int | Sequence[int] | torch.Tensor | None = None,
    method_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Explain the same class with two models, image by image, and rank-correlate the maps.

    The data-randomization test of Adebayo et al. (2018), https://arxiv.org/abs/1810.03292:
    ``model_a`` trained on the true labels, ``model_b`` on permuted labels. Both models
    explain the SAME class for an image. Pass the digits' TRUE labels as ``targets``: the
    permuted-label model's own prediction is an arbitrary class (it is right only 10% of
    the time on new digits), so explaining it would compare answers to different questions.
    Default ``targets=None``: ``model_a``'s predicted class, used for both models.

    Args:
        model_a, model_b: two models with the same input and output shapes (bare
            ``nn.Module`` or ``sh.load_model`` objects).
        inputs: ``(N, C, H, W)`` images.
        methods: names accepted by ``sh.attribute``; default :data:`METHODS`.
        targets: int or ``(N,)`` class indices explained in both models.
        method_kwargs: ``{method: {kwarg: value}}`` for ``sh.attribute`` (see :func:`explain`).
        progress: show a tqdm bar over methods.

    Returns:
        DataFrame with columns ``method, index, metric, value`` (see :func:`compare_maps`);
        ``df.attrs["seconds"]`` holds the wall-clock seconds per method and model,
        ``df.attrs["targets"]`` the explained classes.

    Example:
        >>> df = compare_explanations(a, b, x[:50], ["gradient", "grad_cam"], targets=y[:50])
        >>> summarize(df)[["method", "metric", "mean"]]              # doctest: +SKIP
    """
    methods = _check_methods(methods)
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4:
        raise ValueError("inputs must be a tensor (N, C, H, W), e.g. data.x_test[:50].")
    targets = resolve_target(model_a, inputs, targets)
    kwargs_a = _method_kwargs(model_a, methods, method_kwargs, len(inputs))
    kwargs_b = _method_kwargs(model_b, methods, method_kwargs, len(inputs))
    bar = None
    if progress:
        from tqdm.auto import tqdm  # imported lazily: tqdm.auto probes for Jupyter

        bar = tqdm(methods, desc="explaining", unit="method")
    frames, seconds = [], {}
    for method in methods:
        if bar is not None:
            bar.set_postfix_str(method)
        maps = []
        for name, model, kw in (("a", model_a, kwargs_a), ("b", model_b, kwargs_b)):
            start = time.perf_counter()
            with warnings.catch_warnings():
                # The permuted-label model is a jagged function: IG's completeness error
                # there says nothing about the test (report it with attribute() if needed).
                if name == "b":
                    warnings.simplefilter("ignore", CompletenessWarning)
                maps.append(attribute(method, model, inputs, target=targets, **kw[method]))
            seconds[(method, name)] = time.perf_counter() - start
        frames.append(compare_maps({method: maps[0]}, {method: maps[1]}))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    df = pd.concat(frames, ignore_index=True)
    df.attrs["seconds"] = seconds
    df.attrs["targets"] = list(targets)
    return df


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread of the correlations per method and metric, counting undefined ones.

    Args:
        df: the frame from :func:`compare_explanations` or :func:`compare_maps`.

    Returns:
        DataFrame with columns ``method, metric, mean, std, n, n_undefined``: ``mean`` and
        ``std`` over the images with a defined value, ``n`` how many those are and
        ``n_undefined`` how many were NaN (a constant map). Methods keep their order of
        appearance in ``df``.

    Example:
        >>> summarize(df).round(2)                                       # doctest: +SKIP
    """
    missing = {"method", "metric", "value"} - set(df.columns)
    if missing:
        raise ValueError(f"df lacks column(s) {sorted(missing)}: pass compare_explanations' frame.")
    order = list(dict.fromkeys(df["method"]))
    grouped = df.groupby(["method", "metric"], sort=False)["value"]
    out = grouped.agg(
        mean="mean", std="std", n="count", n_undefined=lambda v: int(v.isna().sum())
    ).reset_index()
    out["method"] = pd.Categorical(out["method"], categories=order, ordered=True)
    metric_order = [m for m in METRICS if m in set(out["metric"])]
    out["metric"] = pd.Categorical(
        out["metric"], categories=metric_order + sorted(set(out["metric"]) - set(metric_order))
    )
    out = out.sort_values(["method", "metric"]).reset_index(drop=True)
    out["method"] = out["method"].astype(str)
    out["metric"] = out["metric"].astype(str)
    return out


def _check_methods(methods: Sequence[str]) -> list[str]:
    if isinstance(methods, str):
        methods = [methods]
    methods = list(methods)
    if not methods:
        raise ValueError(f"methods is empty: give some of {list(METHODS)}.")
    unknown = [m for m in methods if m not in _REGISTRY]
    if unknown:
        raise ValueError(f"Unknown method(s) {unknown}; choose from {sorted(_REGISTRY)}.")
    if len(set(methods)) != len(methods):
        raise ValueError(f"methods has repeats: {methods}.")
    return methods


def _method_kwargs(
    model: Any,
    methods: list[str],
    method_kwargs: Mapping[str, Mapping[str, Any]] | None,
    n_inputs: int,
) -> dict[str, dict[str, Any]]:
    method_kwargs = dict(method_kwargs or {})
    unknown = set(method_kwargs) - set(methods)
    if unknown:
        raise ValueError(f"method_kwargs names {sorted(unknown)}, which are not in methods.")
    out: dict[str, dict[str, Any]] = {}
    for method in methods:
        kw: dict[str, Any] = {}
        if method == "grad_cam" and isinstance(model, nn.Module):
            name = getattr(model, "gradcam_layer_name", None)
            if name is not None:
                kw["layer"] = name
        if method == "integrated_gradients":
            kw["internal_batch_size"] = _SMALL_IMAGE_BATCH
        if _REGISTRY[method].smoothing is not None:
            # Captum's batch here counts noisy copies of EACH input.
            kw["nt_samples_batch_size"] = max(1, _SMALL_IMAGE_BATCH // max(1, n_inputs))
        kw.update(method_kwargs.get(method, {}))
        if method == "grad_cam" and "layer" not in kw and isinstance(model, nn.Module):
            raise ValueError(
                "grad_cam on a bare nn.Module needs a layer: give the model a "
                "`gradcam_layer_name` attribute or pass method_kwargs={'grad_cam': "
                "{'layer': '<dotted name>'}}."
            )
        out[method] = kw
    return out
