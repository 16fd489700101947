"""Compare the explanations of two models on the same inputs (the data-randomization test).

Adebayo et al. (2018), "Sanity Checks for Saliency Maps", https://arxiv.org/abs/1810.03292,
section 4: train one architecture on the true labels and once more on randomly permuted
labels. The second model can only memorise, so an explanation that describes what a model
learned must differ between the two. Here every method explains the SAME class in both
models, image by image, and the two maps are compared by Spearman's rank correlation:

* ``spearman_signed``: of the channel-summed signed maps;
* ``spearman_abs``: of the maps' magnitudes (``|.|`` averaged over channels);
* ``spearman_signed_ink``, ``spearman_abs_ink``: the same, over the digit's ink pixels only
  (:func:`saliency_helpers.data.ink_mask`: input above the background value 0). Methods
  that multiply by the input are exactly 0 on the background in every model; those tied
  zeros alone make two maps look alike on the whole image.

A constant map (an all-zero Grad-CAM after its ReLU, say) has no ranking, so its rank
correlation with anything is undefined: it is reported as ``NaN`` and counted (column
``n_undefined``), never silently turned into 0 (that would pass the test for free) or 1.

How alike is "alike"? :func:`data_randomization` measures two references with the same
metrics, and :func:`data_randomization_verdicts` decides with the course's rule
(:func:`saliency_helpers.sanity.decide`):

* **ceiling**: two true-label models trained with different seeds (same digits, same
  labels): how alike the same explanation gets across training runs;
* **floor**: two untrained networks of different seeds: maps that share only the input and
  the architecture;
* **tested**: the true-label vs the permuted-label model of the same seed.

Example:
    >>> df = compare_explanations(true_model, permuted_model, x[:50], ["gradient"],
    ...                           targets=y[:50])                       # doctest: +SKIP
    >>> summarize(df)                                                   # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata
from torch import nn

from . import attribution
from .attribution import COURSE_METHODS, CompletenessWarning, attribute, resolve_target
from .attribution import METHODS as _REGISTRY
from .data import BACKGROUND, ink_mask
from .maps import SIMILARITY_REDUCTION, reduce_channels, spearman
from .sanity import VERDICT, _mean_se, decide

__all__ = [
    "KINDS",
    "METHODS",
    "METRICS",
    "DataRandomizationResult",
    "compare_explanations",
    "compare_maps",
    "data_randomization",
    "data_randomization_verdicts",
    "explain",
    "paired_rule",
    "reference_chart",
    "spearman",
    "summarize",
]

#: The negative controls of the sanity checks (Guided Backprop and Guided Grad-CAM).
CONTROL_METHODS: tuple[str, ...] = getattr(
    attribution, "CONTROL_METHODS", ("guided_backprop", "guided_grad_cam")
)
#: The methods of the data-randomization notebook, in the order they are shown: the six
#: course methods, then the controls that are not among them.
METHODS: tuple[str, ...] = tuple(dict.fromkeys(COURSE_METHODS + CONTROL_METHODS))
#: The metrics of :func:`compare_maps`, one row each per method and image (the ``_ink``
#: ones only when the inputs are given).
METRICS = ("spearman_signed", "spearman_abs", "spearman_signed_ink", "spearman_abs_ink")
#: The three comparisons of :func:`data_randomization`, in the order they are shown.
KINDS = ("ceiling", "tested", "floor")


def explain(
    model: nn.Module | Any,
    inputs: torch.Tensor,
    methods: Sequence[str] = METHODS,
    targets: int | Sequence[int] | torch.Tensor | None = None,
    method_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, torch.Tensor]:
    """Maps of several methods for one model, every method explaining the same targets.

    Defaults for small images: Grad-CAM and Guided Grad-CAM use ``model.gradcam_layer_name``
    (a bare ``nn.Module`` has no bundle to ask), and Integrated Gradients / SmoothGrad push
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
    kwargs = _method_kwargs(model, methods, method_kwargs)
    targets = resolve_target(model, inputs, targets)
    maps = {}
    for method in methods:
        maps[method] = attribute(method, model, inputs, target=targets, **kwargs[method])
    return maps


def compare_maps(
    maps_a: Mapping[str, torch.Tensor],
    maps_b: Mapping[str, torch.Tensor],
    inputs: torch.Tensor | None = None,
    background: float = BACKGROUND,
) -> pd.DataFrame:
    """Per-image Spearman correlations between two sets of maps (see the module docstring).

    Args:
        maps_a, maps_b: ``{method: (N, C, H, W)}`` with the same methods and shapes,
            e.g. from :func:`explain` for two models.
        inputs: the ``(N, C, H, W)`` images explained, or None. When given, the metrics
            are also computed over each image's ink pixels (``inputs > background`` in any
            channel): ``spearman_signed_ink`` and ``spearman_abs_ink``.
        background: the value of an empty pixel. Default 0.0, MNIST's
            (:data:`saliency_helpers.data.BACKGROUND`).

    Returns:
        Long DataFrame with columns ``method, index, metric, value``: one row per method,
        image (``index`` 0..N-1) and metric in :data:`METRICS`; ``value`` is NaN where a
        map is constant (over the pixels compared: no ranking).

    Example:
        >>> compare_maps({"gradient": g}, {"gradient": g})["value"].unique()
        array([1.])
    """
    if set(maps_a) != set(maps_b):
        raise ValueError(
            f"maps_a and maps_b hold different methods: {sorted(maps_a)} vs {sorted(maps_b)}."
        )
    ink = None
    rows = []
    for method, a in maps_a.items():
        b = maps_b[method]
        if a.shape != b.shape or a.dim() != 4:
            raise ValueError(
                f"{method}: maps must both be (N, C, H, W) of one shape, got "
                f"{tuple(a.shape)} and {tuple(b.shape)}."
            )
        if inputs is not None and ink is None:
            if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4 or (
                inputs.shape[0] != a.shape[0] or inputs.shape[-2:] != a.shape[-2:]
            ):
                shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else inputs
                raise ValueError(
                    f"inputs must be the (N, C, H, W) images the maps explain, shape "
                    f"{(a.shape[0], '*', *a.shape[-2:])}; got {shape}."
                )
            ink = ink_mask(inputs, background).flatten(1).cpu().numpy()
        # The channel reductions of the cascade's similarity (maps.SIMILARITY_REDUCTION).
        signed, magnitude = SIMILARITY_REDUCTION["signed"], SIMILARITY_REDUCTION["magnitude"]
        reduced = {
            "spearman_signed": (reduce_channels(a, signed), reduce_channels(b, signed)),
            "spearman_abs": (reduce_channels(a, magnitude), reduce_channels(b, magnitude)),
        }
        reduced = {k: (x.flatten(1).detach().double().cpu().numpy(),
                       y.flatten(1).detach().double().cpu().numpy())
                   for k, (x, y) in reduced.items()}
        for metric, (x, y) in reduced.items():
            found = {metric: _spearman_rows(x, y)}
            if ink is not None:
                found[f"{metric}_ink"] = _spearman_rows(x, y, keep=ink)
            for name, values in found.items():
                rows.extend((method, i, name, float(v)) for i, v in enumerate(values))
    df = pd.DataFrame(rows, columns=["method", "index", "metric", "value"])
    df["value"] = df["value"].astype(float)
    return df


def _spearman_rows(a: np.ndarray, b: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """Spearman's rho of each row of ``a`` with the same row of ``b``, all rows at once.

    The same number as :func:`saliency_helpers.maps.spearman` (Pearson's correlation of
    the average ranks, as ``scipy.stats.spearmanr``), without a Python loop over images.

    Args:
        a, b: ``(N, P)`` float arrays, one flattened map per row.
        keep: ``(N, P)`` bool, the entries to compare in each row (None: all).

    Returns:
        ``(N,)`` float array; NaN where a row is constant over the kept entries (or fewer
        than two are kept): a constant map has no ranking.
    """
    if keep is not None:
        a, b = np.where(keep, a, np.nan), np.where(keep, b, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows with nothing kept
        ranks = [rankdata(m, axis=1, nan_policy="omit") if keep is not None
                 else rankdata(m, axis=1) for m in (a, b)]
        ra, rb = (r - np.nanmean(r, axis=1, keepdims=True) for r in ranks)
        num = np.nansum(ra * rb, axis=1)
        den = np.sqrt(np.nansum(ra * ra, axis=1) * np.nansum(rb * rb, axis=1))
        rho = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return np.clip(rho, -1.0, 1.0)


def compare_explanations(
    model_a: nn.Module | Any,
    model_b: nn.Module | Any,
    inputs: torch.Tensor,
    methods: Sequence[str] = METHODS,
    targets: int | Sequence[int] | torch.Tensor | None = None,
    method_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = False,
    background: float | None = BACKGROUND,
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
        background: the value of an empty input pixel, for the ``_ink`` metrics (default
            0.0, MNIST's); None leaves those metrics out (e.g. for photos).

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
    kwargs_a = _method_kwargs(model_a, methods, method_kwargs)
    kwargs_b = _method_kwargs(model_b, methods, method_kwargs)
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
        frames.append(compare_maps({method: maps[0]}, {method: maps[1]},
                                   inputs=None if background is None else inputs,
                                   background=0.0 if background is None else background))
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
) -> dict[str, dict[str, Any]]:
    method_kwargs = dict(method_kwargs or {})
    unknown = set(method_kwargs) - set(methods)
    if unknown:
        raise ValueError(f"method_kwargs names {sorted(unknown)}, which are not in methods.")
    out: dict[str, dict[str, Any]] = {}
    for method in methods:
        kw: dict[str, Any] = {}
        at_layer = _needs_layer(method)
        if at_layer and isinstance(model, nn.Module):
            name = getattr(model, "gradcam_layer_name", None)
            if name is not None:
                kw["layer"] = name
        kw.update(method_kwargs.get(method, {}))
        if at_layer and "layer" not in kw and isinstance(model, nn.Module):
            raise ValueError(
                f"{method} on a bare nn.Module needs a layer: give the model a "
                f"`gradcam_layer_name` attribute or pass method_kwargs={{'{method}': "
                "{'layer': '<dotted name>'}}."
            )
        out[method] = kw
    return out


def _needs_layer(method: str) -> bool:
    """Whether the method is built at an inner layer (Grad-CAM and Guided Grad-CAM)."""
    return _REGISTRY[method].needs_layer


# ---------------------------------------------------------------------------
# The data-randomization test with its references


def _as_models(models: Any, what: str) -> dict[int, Any]:
    """``{seed: model}`` from a mapping or a sequence (seeds 0, 1, ... for a sequence)."""
    if isinstance(models, Mapping):
        out = dict(models)
    elif isinstance(models, Sequence) and not isinstance(models, (str, bytes)):
        out = dict(enumerate(models))
    else:
        raise TypeError(
            f"{what} must be a dict {{seed: model}} or a list of models, "
            f"got {type(models).__name__}."
        )
    if not out:
        raise ValueError(f"{what} is empty.")
    for seed, model in out.items():
        if not isinstance(model, nn.Module) and not hasattr(model, "model"):
            raise TypeError(f"{what}[{seed!r}] is a {type(model).__name__}, not a model.")
    return out


@dataclass
class DataRandomizationResult:
    """What :func:`data_randomization` measured.

    Every frame is long: ``kind, method, metric, seed_a, seed_b, index, value``, one row per
    pair of models compared, method, metric and test image (``index`` into the inputs).

    Attributes:
        similarity: all comparisons; ``kind`` is ``"tested"`` (true- vs permuted-label
            model of seed ``seed_a`` = ``seed_b``), ``"ceiling"`` (true-label models of
            seeds ``seed_a`` < ``seed_b``) or ``"floor"`` (untrained models of seeds
            ``seed_a`` < ``seed_b``). ``value`` is NaN where a map is constant.
        methods: the methods, in the order given.
        seeds: the seeds of the trained pairs (``tested``).
        targets: the class explained for each input (the same in every model).
        seconds: ``{(kind of model, seed, method): wall-clock seconds}`` of the maps.

    Example:
        >>> res = data_randomization(true_models, permuted_models, untrained, x, targets=y)
        >>> res.verdicts("spearman_signed")                            # doctest: +SKIP
    """

    similarity: pd.DataFrame
    methods: list[str]
    seeds: list[int]
    targets: list[int] = field(default_factory=list)
    seconds: dict[tuple[str, int, str], float] = field(default_factory=dict)

    def values(self, kind: str, method: str, metric: str = "spearman_signed") -> pd.Series:
        """The per-image similarities of one comparison, all pairs of seeds pooled.

        Args:
            kind: one of :data:`KINDS`: ``"ceiling"``, ``"tested"`` or ``"floor"``.
            method: a method of :attr:`methods`.
            metric: one of :data:`METRICS`.

        Returns:
            Series of floats (NaN where a map is constant), what :meth:`verdicts` decides from.

        Example:
            >>> res.values("tested", "gradient").mean()                 # doctest: +SKIP
        """
        _check_metric(metric)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
        s = self.similarity
        return s[(s.kind == kind) & (s.method == method) & (s.metric == metric)]["value"]

    def summary(self, metrics: str | Sequence[str] | None = None) -> pd.DataFrame:
        """Mean ± sd per comparison, method and metric, over images and pairs of seeds.

        Args:
            metrics: one metric, several, or None (all measured).

        Returns:
            DataFrame ``kind, method, metric, mean, sd, n, n_undefined`` (``n`` counts the
            defined values, ``n_undefined`` the NaN ones), in the order of :data:`KINDS`,
            ``methods`` and :data:`METRICS`.

        Example:
            >>> res.summary("spearman_abs").round(3)                   # doctest: +SKIP
        """
        frame = self.similarity[self.similarity.metric.isin(_metric_list(metrics, self))]
        out = (
            frame.groupby(["kind", "method", "metric"], sort=False)["value"]
            .agg(mean="mean", sd="std", n="count", n_undefined=lambda v: int(v.isna().sum()))
            .reset_index()
        )
        return _ordered(out, self.methods)

    def verdicts(
        self, metrics: str | Sequence[str] | None = "spearman_signed", z: float = 2.0
    ) -> pd.DataFrame:
        """One verdict per method (and metric); see :func:`data_randomization_verdicts`.

        Example:
            >>> res.verdicts(["spearman_signed", "spearman_abs"])     # doctest: +SKIP
        """
        frames = {kind: self.similarity[self.similarity.kind == kind] for kind in KINDS}
        return data_randomization_verdicts(
            frames["tested"], frames["ceiling"], frames["floor"],
            metrics=_metric_list(metrics, self), z=z, methods=self.methods,
        )


def _metric_list(metrics: str | Sequence[str] | None, result: Any = None) -> list[str]:
    if metrics is None:
        present = set(result.similarity.metric) if result is not None else set(METRICS)
        return [m for m in METRICS if m in present]
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    for metric in metrics:
        _check_metric(metric)
    return metrics


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r}; choose one of {METRICS}.")


def _ordered(frame: pd.DataFrame, methods: Sequence[str]) -> pd.DataFrame:
    order = {"kind": list(KINDS), "method": list(methods), "metric": list(METRICS)}
    keys = [k for k in order if k in frame.columns]
    rank = {k: frame[k].map({v: i for i, v in enumerate(order[k])}) for k in keys}
    frame = frame.assign(**{f"_{k}": r for k, r in rank.items()})
    frame = frame.sort_values([f"_{k}" for k in keys], kind="stable")
    return frame.drop(columns=[f"_{k}" for k in keys]).reset_index(drop=True)


def data_randomization(
    true_models: Mapping[int, Any] | Sequence[Any],
    permuted_models: Mapping[int, Any] | Sequence[Any],
    untrained_models: Mapping[int, Any] | Sequence[Any],
    inputs: torch.Tensor,
    methods: Sequence[str] = METHODS,
    targets: int | Sequence[int] | torch.Tensor | None = None,
    method_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    background: float | None = BACKGROUND,
    progress: bool = False,
) -> DataRandomizationResult:
    """The data-randomization test with its two references, over several training seeds.

    Adebayo et al. (2018), https://arxiv.org/abs/1810.03292, section 4, compare the maps of a
    model trained on true labels with those of the same architecture trained on permuted
    labels. A similarity means little without knowing how alike maps get anyway, so the
    same metrics are measured for two references:

    * ``tested``: true-label vs permuted-label model of the same seed;
    * ``ceiling``: true-label models of two different seeds (every pair): same digits, same
      labels, only the training run differs;
    * ``floor``: untrained models of two different seeds (every pair): only the input
      and the architecture are shared.

    Every model explains the same class for an image (pass the TRUE labels as
    ``targets``), and each model's maps are computed once and reused in every comparison.
    IG's completeness warning is silenced except for the true-label models (a permuted or
    untrained model is far from smooth along the path; the warning says nothing about the
    test there).

    Args:
        true_models: ``{seed: model}`` (or a list: seeds 0, 1, ...) trained on true labels;
            at least two for a ceiling.
        permuted_models: ``{seed: model}`` trained on permuted labels, the same seeds.
        untrained_models: ``{seed: model}`` freshly initialised (``training.fresh_model``);
            at least two for a floor.
        inputs: ``(N, C, H, W)`` test images.
        methods: names accepted by ``sh.attribute``; default :data:`METHODS`.
        targets: int or ``(N,)`` classes explained by every model; default the first
            true-label model's predictions.
        method_kwargs: ``{method: {kwarg: value}}`` for ``sh.attribute``.
        background: the empty-pixel value for the ``_ink`` metrics; None leaves them out.
        progress: show a tqdm bar over models.

    Returns:
        DataRandomizationResult; ``.verdicts()`` decides, ``.summary()`` for charts.

    Example:
        >>> pairs = training.train_pairs(split, seeds=(0, 1, 2))           # doctest: +SKIP
        >>> res = data_randomization(
        ...     {s: t.model for s, (t, p) in pairs.items()},
        ...     {s: p.model for s, (t, p) in pairs.items()},
        ...     {s: training.fresh_model(s) for s in pairs},
        ...     split.x_test[:100], targets=split.y_test[:100])            # doctest: +SKIP
        >>> res.verdicts()                                                  # doctest: +SKIP
    """
    methods = _check_methods(methods)
    trained = _as_models(true_models, "true_models")
    permuted = _as_models(permuted_models, "permuted_models")
    untrained = _as_models(untrained_models, "untrained_models")
    if set(trained) != set(permuted):
        raise ValueError(
            f"true_models and permuted_models must have the same seeds, got "
            f"{sorted(trained)} and {sorted(permuted)}."
        )
    for what, models in (("true_models", trained), ("untrained_models", untrained)):
        if len(models) < 2:
            raise ValueError(
                f"{what} needs at least two seeds: its reference compares two models "
                f"of different seeds (got {sorted(models)})."
            )
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4:
        raise ValueError("inputs must be a tensor (N, C, H, W), e.g. split.x_test[:100].")
    first = next(iter(trained.values()))
    targets = resolve_target(first, inputs, targets)

    jobs = [("true", s, m) for s, m in trained.items()]
    jobs += [("permuted", s, m) for s, m in permuted.items()]
    jobs += [("untrained", s, m) for s, m in untrained.items()]
    bar = None
    if progress:
        from tqdm.auto import tqdm  # imported lazily: tqdm.auto probes for Jupyter

        bar = tqdm(total=len(jobs), desc="explaining", unit="model")
    maps: dict[tuple[str, int], dict[str, torch.Tensor]] = {}
    seconds: dict[tuple[str, int, str], float] = {}
    for label, seed, model in jobs:
        if bar is not None:
            bar.set_postfix_str(f"{label} labels, seed {seed}" if label != "untrained"
                                else f"untrained, seed {seed}")
        kwargs = _method_kwargs(model, methods, method_kwargs)
        maps[(label, seed)] = {}
        for method in methods:
            start = time.perf_counter()
            with warnings.catch_warnings():
                if label != "true":
                    warnings.simplefilter("ignore", CompletenessWarning)
                maps[(label, seed)][method] = attribute(
                    method, model, inputs, target=targets, **kwargs[method]
                )
            seconds[(label, seed, method)] = time.perf_counter() - start
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()

    pairs = [("tested", ("true", s), ("permuted", s)) for s in trained]
    pairs += [("ceiling", ("true", a), ("true", b)) for a, b in itertools.combinations(trained, 2)]
    pairs += [("floor", ("untrained", a), ("untrained", b))
              for a, b in itertools.combinations(untrained, 2)]
    frames = []
    for kind, key_a, key_b in pairs:
        df = compare_maps(maps[key_a], maps[key_b],
                          inputs=None if background is None else inputs,
                          background=0.0 if background is None else background)
        frames.append(df.assign(kind=kind, seed_a=key_a[1], seed_b=key_b[1]))
    similarity = pd.concat(frames, ignore_index=True)[
        ["kind", "method", "metric", "seed_a", "seed_b", "index", "value"]
    ]
    return DataRandomizationResult(
        similarity=_ordered(similarity, methods),
        methods=methods,
        seeds=list(trained),
        targets=list(targets),
        seconds=seconds,
    )


def data_randomization_verdicts(
    tested: pd.DataFrame,
    ceiling: pd.DataFrame,
    floor: pd.DataFrame,
    metrics: str | Sequence[str] = "spearman_signed",
    z: float = 2.0,
    methods: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Did each method's map change when the labels were permuted? One row per method.

    The rule is :func:`saliency_helpers.sanity.decide`, the same for both sanity checks:
    the **threshold** is halfway between the means of the ceiling and the floor,
    ``(mean(ceiling) + mean(floor)) / 2``; the **margin** is
    ``z * sqrt(se_tested² + (se_ceiling² + se_floor²) / 4)`` (``se`` = sd / sqrt(n)).
    The map has ``"changed"`` (the method **passes**) if ``mean(tested) + margin <
    threshold``, ``"unchanged"`` (it **fails**) if ``mean(tested) - margin > threshold``,
    and the test is **inconclusive** otherwise. Undefined similarities (NaN: a constant
    map has no ranking) are left out and counted.

    Args:
        tested: frame with columns ``method, metric, value`` (e.g. from
            :func:`compare_maps` or ``DataRandomizationResult.similarity``): true- vs
            permuted-label model, one row per image (and seed).
        ceiling: the same for two true-label models of different seeds.
        floor: the same for two untrained models of different seeds.
        metrics: one metric of :data:`METRICS` or several (one row per method and metric).
        z: standard errors the difference must exceed (2: about 95%).
        methods: the methods and their order; default those in ``tested``.

    Returns:
        DataFrame with columns ``method, metric, verdict, outcome, tested_mean, tested_sd,
        ceiling_mean, ceiling_sd, floor_mean, floor_sd, threshold, margin, n, n_undefined,
        ceiling_n_undefined, floor_n_undefined``: ``verdict`` is ``"passes"``, ``"fails"``
        or ``"inconclusive"`` (``sanity.VERDICT[outcome]``), ``n`` / ``n_undefined`` count
        the tested values that are defined / NaN.

    Example:
        >>> data_randomization_verdicts(tested, ceiling, floor)[["method", "verdict"]]
        ...                                                               # doctest: +SKIP
    """
    for name, frame in (("tested", tested), ("ceiling", ceiling), ("floor", floor)):
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"{name} must be a DataFrame, got {type(frame).__name__}.")
        missing = {"method", "metric", "value"} - set(frame.columns)
        if missing:
            raise ValueError(f"{name} lacks column(s) {sorted(missing)}.")
    metrics = _metric_list(metrics)
    if methods is None:
        methods = list(dict.fromkeys(tested["method"]))
    rows = []
    for metric in metrics:
        for method in methods:
            values = {}
            for name, frame in (("tested", tested), ("ceiling", ceiling), ("floor", floor)):
                v = frame[(frame.method == method) & (frame.metric == metric)]["value"]
                if v.empty:
                    raise ValueError(f"{name} has no rows for method {method!r}, {metric}.")
                values[name] = v.to_numpy(dtype=float)
            d = decide(values["tested"], values["ceiling"], values["floor"], z=z)
            rows.append({
                "method": method,
                "metric": metric,
                "verdict": VERDICT[d["outcome"]],
                "outcome": d["outcome"],
                **{k: d[k] for k in ("tested_mean", "tested_sd", "ceiling_mean", "ceiling_sd",
                                     "floor_mean", "floor_sd", "threshold", "margin")},
                "n": int(d["n"]),
                "n_undefined": int(d["n_undefined"]),
                "ceiling_n_undefined": int(np.isnan(values["ceiling"]).sum()),
                "floor_n_undefined": int(np.isnan(values["floor"]).sum()),
            })
    return pd.DataFrame(rows)


def reference_chart(
    result: DataRandomizationResult,
    metrics: str | Sequence[str] = ("spearman_signed", "spearman_abs"),
    title: str | None = None,
) -> alt.FacetChart:
    """Mean ± sd of the tested similarity next to its ceiling and floor, with the threshold.

    One row per method, one panel per metric (two panels a row): a point at the mean and a
    bar of ± 1 sd for each comparison (ceiling, tested, floor), and a tick at the verdict
    threshold halfway between ceiling and floor.

    Args:
        result: from :func:`data_randomization`.
        metrics: the metrics to draw, one panel each.
        title: chart title.

    Returns:
        A faceted Altair chart (a few kB of JSON).

    Example:
        >>> reference_chart(res, ["spearman_signed", "spearman_abs_ink"])   # doctest: +SKIP
    """
    metrics = _metric_list(metrics)
    summary = result.summary(metrics)
    summary["sd"] = summary["sd"].fillna(0.0)
    summary["lo"], summary["hi"] = summary["mean"] - summary["sd"], summary["mean"] + summary["sd"]
    verdicts = result.verdicts(metrics)[["method", "metric", "threshold", "verdict"]]
    summary = summary.merge(verdicts, on=["method", "metric"], how="left")
    colors = {"ceiling": "#2ca02c", "tested": "#1f77b4", "floor": "#7f7f7f"}
    y = alt.Y("method:N", sort=result.methods, title=None)
    color = alt.Color("kind:N", title=None, sort=list(KINDS),
                      scale=alt.Scale(domain=list(KINDS), range=list(colors.values())),
                      legend=alt.Legend(orient="bottom"))
    offset = alt.YOffset("kind:N", sort=list(KINDS))
    x_scale = alt.Scale(domain=[-0.6, 1.0], clamp=True)
    base = alt.Chart().encode(y=y)
    bars = base.mark_rule(strokeWidth=2).encode(
        x=alt.X("lo:Q", scale=x_scale, title="Spearman ρ (mean ± 1 sd)"), x2="hi:Q",
        color=color, yOffset=offset,
    )
    points = base.mark_point(filled=True, size=50).encode(
        x=alt.X("mean:Q", scale=x_scale), color=color, yOffset=offset,
        tooltip=["method", "metric", "kind", alt.Tooltip("mean:Q", format=".3f"),
                 alt.Tooltip("sd:Q", format=".3f"), "n", "n_undefined",
                 alt.Tooltip("threshold:Q", format=".3f"), "verdict"],
    )
    threshold = base.mark_tick(color="#d62728", thickness=2, size=22).encode(
        x=alt.X("threshold:Q", scale=x_scale),
        tooltip=["method", "metric", alt.Tooltip("threshold:Q", format=".3f"), "verdict"],
    ).transform_filter("datum.kind == 'tested'")
    n_pairs = result.similarity.query("kind == 'tested'").groupby("seed_a").ngroups
    n_images = result.similarity["index"].nunique()
    return alt.layer(bars, points, threshold, data=summary).properties(
        width=260, height=alt.Step(12)
    ).facet(
        facet=alt.Facet("metric:N", sort=metrics, title=None), columns=min(2, len(metrics)),
    ).properties(
        title=title or (f"True vs permuted labels on {n_images} test digits x {n_pairs} seeds, "
                        "with ceiling and floor (red tick: threshold)")
    )


def paired_rule(gain: Any, z: float = 2.0) -> dict[str, Any]:
    """The course's rule for paired differences: is the mean gain beyond ``z`` standard errors?

    Each value of ``gain`` is one pair's difference (a method minus its reference on the
    same image, digit or training seed). Notebooks 08 and 09 decide with it: **higher**
    when the mean exceeds ``z`` standard errors (``sd / sqrt(n)``), **lower** when it is
    below ``-z`` of them, **not distinguishable** otherwise, and always with a single pair
    (no spread is known). NaN pairs are left out and counted.

    Args:
        gain: the paired differences (tensor, array, list or Series).
        z: standard errors required; default 2, as the sanity checks' rule.

    Returns:
        ``{"mean", "se", "n", "n_undefined", "outcome"}`` with ``outcome`` one of
        ``"higher"``, ``"lower"``, ``"not distinguishable"``.

    Example:
        >>> paired_rule([0.3, 0.25, 0.35])["outcome"]
        'higher'
    """
    values = gain.detach().cpu().numpy() if isinstance(gain, torch.Tensor) else gain
    mean, _, se, n, undefined = _mean_se(values)
    if n > 1 and mean > z * se:
        outcome = "higher"
    elif n > 1 and mean < -z * se:
        outcome = "lower"
    else:
        outcome = "not distinguishable"
    return {"mean": mean, "se": se, "n": n, "n_undefined": undefined, "outcome": outcome}
