"""Model-parameter randomization: the sanity check of Adebayo et al. (2018).

If a saliency map is an explanation *of the model*, destroying the model's
weights must change it. The cascade re-initialises the network block by
block, from the logits down, and measures how similar each method's map stays
to the map of the trained model. A method whose map barely moves (Guided
Backprop) is explaining the image, not the model.

Paper: Adebayo, Gilmer, Muelly, Goodfellow, Hardt, Kim, "Sanity Checks for
Saliency Maps", NeurIPS 2018, https://arxiv.org/abs/1810.03292

What the cascade here does (and what it avoids):

* the SAME method is compared with itself, original vs randomized;
* the target class is fixed once, to the trained model's prediction;
* the first stage is the logit layer itself (the final fully connected layer);
* every module is re-initialised with its own ``reset_parameters()``, so a
  BatchNorm gets scale 1, shift 0 AND its running mean/variance reset, and a
  convolution its own Kaiming-uniform initialisation, never a blanket N(0, 0.1);
* the caller's model is never touched: every stage is a deep copy.

Public API: :func:`randomized_models`, :func:`cascade`, :class:`CascadeResult`,
:func:`similarity`, :func:`edge_map`, :func:`cascade_grid`, :func:`similarity_chart`.

Example:
    >>> b = sh.load_model()
    >>> x = b.preprocess(sh.course_photo())
    >>> res = cascade(b, x, ["gradient", "guided_backprop"])
    >>> similarity_chart(res)
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import torch
from skimage.filters import sobel
from skimage.metrics import structural_similarity
from torch import nn

from .attribution import CompletenessWarning, attribute, resolve_target
from .images import denormalize
from .maps import clip_percentile, normalize, pool, reduce_channels, spearman, to_2d
from .plots import heatmaps, similarity_lines

__all__ = [
    "METRICS",
    "ORDERS",
    "CascadeResult",
    "cascade",
    "cascade_grid",
    "edge_map",
    "randomized_models",
    "similarity",
    "similarity_chart",
]

#: Randomization orders: cumulative from the logits, one block at a time, cumulative from the input.
ORDERS = ("top_down", "independent", "bottom_up")
#: Similarity metrics reported by :func:`cascade` (see :func:`similarity`).
METRICS = ("spearman_signed", "spearman_abs", "ssim")
#: Name of the un-randomized model in the ``stage`` column.
ORIGINAL = "original"
#: Side in pixels of the pooled maps kept in ``CascadeResult.maps``.
FRAME_SIZE = 56


# ---------------------------------------------------------------------------
# The generator


def _resolve_model(
    model: Any, layers: Sequence[str] | None, blocks: Mapping[str, Sequence[str]] | None
) -> tuple[nn.Module, list[str], dict[str, list[str]]]:
    """The network, its stages (logits first) and the module names of each stage."""
    if isinstance(model, nn.Module):
        net = model
        if layers is None:
            raise ValueError(
                "A bare nn.Module needs layers=[...]: the dotted names of its blocks, "
                "logits first (e.g. ['fc', 'layer4.1', ..., 'conv1']). Or pass the "
                "object from sh.load_model, which knows them."
            )
    elif hasattr(model, "model") and isinstance(model.model, nn.Module):
        net = model.model
        layers = list(model.layers) if layers is None else layers
        blocks = dict(getattr(model, "blocks", {}) or {}) if blocks is None else blocks
    else:
        raise TypeError(
            "model must be the object returned by sh.load_model or an nn.Module, "
            f"not {type(model).__name__}."
        )
    layers = list(layers)
    if not layers:
        raise ValueError("layers is empty: give at least one block name.")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers has repeated names: {layers}.")
    blocks = {stage: list((blocks or {}).get(stage, [stage])) for stage in layers}
    names = dict(net.named_modules())
    for stage, modules in blocks.items():
        missing = [m for m in modules if m not in names]
        if missing:
            raise ValueError(
                f"Stage {stage!r} names module(s) {missing} that the model does not have; "
                "check layers=/blocks= against dict(model.named_modules())."
            )
    return net, layers, blocks


def _reinitialise(net: nn.Module, modules: Sequence[str], seed: int) -> int:
    """Re-initialise every submodule of ``modules`` that has ``reset_parameters``.

    Returns how many modules were reset (a stage that resets nothing is a bug).
    """
    count = 0
    # fork_rng: seeded weights without moving the caller's global random state.
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for name in modules:
            for sub in net.get_submodule(name).modules():
                reset = getattr(sub, "reset_parameters", None)
                if callable(reset):
                    reset()  # BatchNorm: scale 1, shift 0 AND running mean 0 / var 1
                    count += 1
    return count


def _prepare(net: nn.Module) -> nn.Module:
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _check_finite(net: nn.Module, inputs: torch.Tensor | None, stage: str) -> None:
    if inputs is None:
        return
    with torch.inference_mode():
        out = net(inputs)
    if not torch.isfinite(out).all():
        raise FloatingPointError(
            f"The model randomized up to stage {stage!r} gives NaN or inf outputs on the "
            "input: the re-initialisation broke the forward pass (check that BatchNorm "
            "statistics were reset together with the weights)."
        )


def randomized_models(
    model: Any,
    order: str = "top_down",
    seed: int = 0,
    stages: Sequence[str] | None = None,
    *,
    layers: Sequence[str] | None = None,
    blocks: Mapping[str, Sequence[str]] | None = None,
    inputs: torch.Tensor | None = None,
) -> Iterator[tuple[str, nn.Module]]:
    """Yield deep copies of a model with more and more of its weights re-initialised.

    Each block is re-initialised with its modules' own ``reset_parameters()``
    (convolutions and linear layers: their default Kaiming-uniform draw;
    BatchNorm: scale 1, shift 0 and running statistics reset), under
    ``torch.manual_seed(seed + i)`` where ``i`` is the block's index in
    ``layers`` (logits first). A block therefore gets the same random weights
    whatever the order or the ``stages`` subset, and the caller's global random
    state is left untouched.

    Args:
        model: the object from ``sh.load_model`` (its ``.layers`` and ``.blocks``
            are used) or a bare ``nn.Module`` together with ``layers=``.
        order: ``"top_down"`` (cumulative, from the logits down: stage k has
            blocks 0..k randomized; the paper's cascade), ``"independent"``
            (only block k randomized, the rest trained) or ``"bottom_up"``
            (cumulative from the input up).
        seed: base seed of the re-initialisation.
        stages: names of the stages to yield (default all). In cumulative
            orders the skipped blocks are still randomized on the way.
        layers: for a bare module: dotted names of its blocks, logits first.
        blocks: for a bare module: ``{stage: [module names]}`` when a stage
            spans several modules (default: each stage is one module).
        inputs: optional ``(N, C, H, W)`` input; each yielded model is run on it
            and ``FloatingPointError`` is raised on NaN or inf outputs.

    Yields:
        ``(stage_name, network)``: a fresh deep copy each time, in eval mode,
        parameters with ``requires_grad=False``.

    Example:
        >>> for stage, net in randomized_models(b, stages=b.layers[:3]):
        ...     print(stage, net(x).argmax().item())
    """
    if order not in ORDERS:
        raise ValueError(f"Unknown order {order!r}; choose one of {ORDERS}.")
    net, layers, blocks = _resolve_model(model, layers, blocks)
    wanted = list(layers) if stages is None else list(stages)
    unknown = [s for s in wanted if s not in layers]
    if unknown:
        raise ValueError(f"stages {unknown} are not in the model's layers {layers}.")
    index = {stage: i for i, stage in enumerate(layers)}
    walk = layers[::-1] if order == "bottom_up" else layers
    if inputs is not None:
        inputs = inputs.detach()

    def make(stage: str, base: nn.Module) -> nn.Module:
        if _reinitialise(base, blocks[stage], seed + index[stage]) == 0:
            raise ValueError(
                f"Stage {stage!r} has no module with reset_parameters(): nothing to randomize."
            )
        return base

    work = _prepare(copy.deepcopy(net)) if order != "independent" else None
    for stage in walk:
        if order == "independent":
            if stage not in wanted:
                continue
            out = make(stage, _prepare(copy.deepcopy(net)))
        else:
            make(stage, work)
            if stage not in wanted:
                continue
            out = copy.deepcopy(work)  # later stages must not change a model already yielded
        _check_finite(out, inputs, stage)
        yield stage, out


# ---------------------------------------------------------------------------
# Similarity


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho; for the cascade, 1.0 if both maps are equal and 0.0 (no shared
    ranking) when a randomized model's map is constant (``maps.spearman`` says NaN there)."""
    if np.array_equal(a, b):
        return 1.0
    rho = spearman(a, b)
    return 0.0 if np.isnan(rho) else rho


def _unit_abs(m: torch.Tensor) -> np.ndarray:
    """|map| clipped at its 99th percentile and scaled to [0, 1] (SSIM needs a fixed range)."""
    return normalize(clip_percentile(m.abs(), q=99.0, signed=False), signed=False).numpy()


def similarity(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """How alike two saliency maps are, by the three metrics of the paper.

    Args:
        a, b: maps ``(C, H, W)``, ``(1, C, H, W)`` or ``(H, W)``, same size.
            Channel maps are reduced: the signed metric sums the channels, the
            absolute ones average ``|.|`` over channels.

    Returns:
        ``{"spearman_signed": ..., "spearman_abs": ..., "ssim": ...}``:
        Spearman rank correlation of the signed maps, of the absolute maps,
        and SSIM (``skimage.metrics.structural_similarity``, ``data_range=1``)
        of the absolute maps clipped at their 99th percentile and scaled to [0, 1].
        A constant map shares no ranking with anything: its Spearman is 0.

    Example:
        >>> similarity(grad[0], grad[0])["spearman_abs"]
        1.0
    """
    a, b = to_2d(a), to_2d(b)
    if a.shape[-2:] != b.shape[-2:]:
        raise ValueError(f"maps differ in size: {tuple(a.shape)} vs {tuple(b.shape)}.")
    signed_a, signed_b = reduce_channels(a, "sum"), reduce_channels(b, "sum")
    abs_a = reduce_channels(a.abs(), "abs_mean")
    abs_b = reduce_channels(b.abs(), "abs_mean")
    return {
        "spearman_signed": _spearman(signed_a.numpy(), signed_b.numpy()),
        "spearman_abs": _spearman(abs_a.numpy(), abs_b.numpy()),
        "ssim": float(structural_similarity(_unit_abs(abs_a), _unit_abs(abs_b), data_range=1.0)),
    }


def edge_map(inputs: torch.Tensor, model: Any) -> torch.Tensor:
    """A model-free "saliency map": the Sobel edge magnitude of the photo.

    The baseline that makes the randomization test legible: a method whose map
    resembles this as much as it resembles itself under randomization is
    showing edges, not the model's reasoning.

    Args:
        inputs: preprocessed input ``(1, 3, H, W)``.
        model: the object from ``sh.load_model`` (its normalisation is undone)
            or a ``(mean, std)`` pair.

    Returns:
        Tensor ``(H, W)``, ``skimage.filters.sobel`` of the grayscale photo in [0, 1].

    Example:
        >>> edge_map(x, b).shape
        torch.Size([224, 224])
    """
    photo = denormalize(inputs, model)[0]
    gray = (0.299 * photo[0] + 0.587 * photo[1] + 0.114 * photo[2]).numpy()
    return torch.from_numpy(sobel(gray).astype(np.float32))


# ---------------------------------------------------------------------------
# The cascade


@dataclass
class CascadeResult:
    """What :func:`cascade` measured.

    Attributes:
        maps: tidy DataFrame ``method, stage, row, col, value``: signed
            channel-sum maps average-pooled to 56x56 (small enough to keep).
        tensors: ``{(method, stage): (H, W) tensor}`` full-resolution signed
            channel-sum maps, for plotting.
        similarity: DataFrame ``method, stage, metric, value``: each map vs the
            same method's map on the original model; ``stage`` runs
            ``"original"`` then the randomized stages in cascade order.
        edges: DataFrame ``method, metric, value``: each method's original map
            vs the Sobel edge map of the photo (:func:`edge_map`).
        stages: ``["original", *randomized stages]`` in cascade order.
        methods: the methods, in the order given.
        target: the explained class (the trained model's prediction by default).
        order: the randomization order.
        seconds: wall-clock time of the whole cascade.
    """

    maps: pd.DataFrame
    tensors: dict[tuple[str, str], torch.Tensor]
    similarity: pd.DataFrame
    edges: pd.DataFrame
    stages: list[str]
    methods: list[str]
    target: int
    order: str
    seconds: float = 0.0

    def table(self, metric: str = "spearman_abs") -> pd.DataFrame:
        """Similarity as a wide table: one row per stage, one column per method.

        Example:
            >>> res.table("spearman_signed").round(2)
        """
        if metric not in METRICS:
            raise ValueError(f"Unknown metric {metric!r}; choose one of {METRICS}.")
        sub = self.similarity[self.similarity.metric == metric]
        wide = sub.pivot(index="stage", columns="method", values="value")
        return wide.loc[self.stages, self.methods]


def cascade(
    model: Any,
    inputs: torch.Tensor,
    methods: Sequence[str],
    target: int | str | None = None,
    order: str = "top_down",
    seed: int = 0,
    stages: Sequence[str] | None = None,
    method_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = False,
    *,
    layers: Sequence[str] | None = None,
    blocks: Mapping[str, Sequence[str]] | None = None,
) -> CascadeResult:
    """Run the model-parameter randomization test for several methods.

    For every stage of :func:`randomized_models` and every method, the map of
    that same method on the randomized copy is compared with its map on the
    trained model, always for the same class: the trained model's prediction
    (or ``target``), resolved once on the trained model.

    Args:
        model: the object from ``sh.load_model``, or an ``nn.Module`` with
            ``layers=`` (and ``blocks=``); for ``grad_cam`` on a bare module pass
            ``method_kwargs={"grad_cam": {"layer": "<dotted name>"}}``.
        inputs: one preprocessed image ``(1, C, H, W)``.
        methods: names accepted by ``sh.attribute``, e.g. ``["gradient",
            "integrated_gradients", "smoothgrad", "grad_cam", "guided_backprop"]``.
        target: class to explain (index or name); default the trained model's
            predicted class.
        order: ``"top_down"``, ``"independent"`` or ``"bottom_up"``.
        seed: base seed of the re-initialisation.
        stages: subset of the stages to evaluate (cumulative orders still
            randomize the skipped blocks).
        method_kwargs: ``{method: {kwarg: value}}`` passed to ``sh.attribute``,
            e.g. ``{"integrated_gradients": {"n_steps": 64}}``.
        progress: show a tqdm progress bar.
        layers, blocks: for a bare ``nn.Module`` (see :func:`randomized_models`).

    Returns:
        A :class:`CascadeResult` (``.similarity``, ``.edges``, ``.maps``, ``.tensors``).
        Integrated Gradients' completeness warnings are silenced inside: on a
        randomized network they say nothing about the test.

    Example:
        >>> res = cascade(b, x, ["gradient", "guided_backprop"], stages=b.layers[::3])
        >>> res.table("spearman_abs").round(2)
    """
    start = time.perf_counter()
    methods = list(methods)
    if not methods:
        raise ValueError("methods is empty: give e.g. ['gradient', 'guided_backprop'].")
    if isinstance(inputs, torch.Tensor) and inputs.dim() == 4 and inputs.shape[0] != 1:
        raise ValueError(f"cascade explains one image: pass inputs[:1], not {inputs.shape[0]}.")
    net, layers, blocks = _resolve_model(model, layers, blocks)
    bundle = None if isinstance(model, nn.Module) else model
    kwargs = {m: dict((method_kwargs or {}).get(m, {})) for m in methods}
    unknown = set(method_kwargs or {}) - set(methods)
    if unknown:
        raise ValueError(f"method_kwargs names {sorted(unknown)}, which are not in methods.")
    if "grad_cam" in kwargs and "layer" not in kwargs["grad_cam"]:
        if bundle is None:
            raise ValueError(
                "grad_cam on a bare nn.Module: pass method_kwargs={'grad_cam': "
                "{'layer': '<dotted layer name>'}}."
            )
        kwargs["grad_cam"]["layer"] = bundle.gradcam_layer_name
    if isinstance(kwargs.get("grad_cam", {}).get("layer"), nn.Module):
        raise ValueError("grad_cam's layer must be a dotted NAME here: each copy has its own.")
    # One target for every stage: the trained model's answer (a randomized model's
    # own prediction would change the question being explained).
    cls = resolve_target(model, inputs, target)[0]

    stage_names = list(layers) if stages is None else list(stages)
    unknown_stages = [s for s in stage_names if s not in layers]
    if unknown_stages:
        raise ValueError(f"stages {unknown_stages} are not in the model's layers {layers}.")
    walk = [s for s in (layers[::-1] if order == "bottom_up" else layers) if s in stage_names]
    generator = randomized_models(
        net, order=order, seed=seed, stages=walk, layers=layers, blocks=blocks, inputs=inputs
    )
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=(len(walk) + 1) * len(methods), desc=f"cascade ({order})")

    def explain(stage: str, network: nn.Module) -> None:
        for method in methods:
            if bar is not None:
                bar.set_postfix_str(f"{stage}: {method}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CompletenessWarning)
                attr = attribute(method, network, inputs, target=cls, **kwargs[method])
            if not torch.isfinite(attr).all():
                raise FloatingPointError(f"{method} gives NaN/inf at stage {stage!r}.")
            full[(method, stage)] = attr[0]
            if bar is not None:
                bar.update(1)

    full: dict[tuple[str, str], torch.Tensor] = {}
    try:
        _check_finite(net, inputs, ORIGINAL)
        explain(ORIGINAL, net)
        for stage, network in generator:
            explain(stage, network)
    finally:
        if bar is not None:
            bar.close()

    all_stages = [ORIGINAL, *walk]
    sims, frames, tensors = [], [], {}
    for method in methods:
        reference = full[(method, ORIGINAL)]
        for stage in all_stages:
            attr = full[(method, stage)]
            for metric, value in similarity(attr, reference).items():
                sims.append({"method": method, "stage": stage, "metric": metric, "value": value})
            signed = reduce_channels(attr, "sum")
            tensors[(method, stage)] = signed
            small = pool(signed, FRAME_SIZE).numpy()
            rows, cols = np.divmod(np.arange(small.size), small.shape[1])
            frames.append(
                pd.DataFrame(
                    {"method": method, "stage": stage, "row": rows, "col": cols,
                     "value": small.ravel()}
                )
            )  # fmt: skip
    edges_ref = edge_map(inputs, bundle if bundle is not None else _no_bundle(inputs))
    edges = [
        {"method": method, "metric": metric, "value": value}
        for method in methods
        for metric, value in similarity(full[(method, ORIGINAL)], edges_ref).items()
    ]
    return CascadeResult(
        maps=pd.concat(frames, ignore_index=True),
        tensors=tensors,
        similarity=pd.DataFrame(sims),
        edges=pd.DataFrame(edges),
        stages=all_stages,
        methods=methods,
        target=cls,
        order=order,
        seconds=time.perf_counter() - start,
    )


def _no_bundle(inputs: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Without a bundle: a (mean, std) pair that rescales the image's own range to [0, 1]."""
    lo, hi = float(inputs.min()), float(inputs.max())
    span = hi - lo if hi > lo else 1.0
    return (-lo / span,) * 3, (1.0 / span,) * 3


# ---------------------------------------------------------------------------
# Charts


def cascade_grid(
    result: CascadeResult,
    stages: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    size: int = 96,
    resolution: int = 112,
    title: str | None = None,
) -> alt.VConcatChart:
    """The maps as a grid: one row per method, one column per randomization depth.

    Each panel shows ``|map|`` (channel sum), average-pooled to ``resolution``
    pixels and scaled to its own 99th percentile (so a faint map is still
    visible: compare structure, not brightness).

    Args:
        result: from :func:`cascade`.
        stages: columns (default: the original and up to six stages spread over the cascade).
        methods: rows (default all of ``result.methods``).
        size: panel side in px.
        resolution: side of the pooled maps (smaller keeps the chart under 1 MB).
        title: chart title.

    Returns:
        An Altair chart (check ``sh.chart_size_bytes(chart)`` < 1 MB).

    Example:
        >>> cascade_grid(res, methods=["gradient", "guided_backprop"])
    """
    methods = list(result.methods if methods is None else methods)
    if stages is None:
        randomized = result.stages[1:]
        pick = np.unique(np.linspace(0, len(randomized) - 1, min(6, len(randomized))).round())
        stages = [ORIGINAL, *[randomized[int(i)] for i in pick]]
    stages = list(stages)
    missing = [(m, s) for m in methods for s in stages if (m, s) not in result.tensors]
    if missing:
        raise ValueError(f"no map for (method, stage) {missing[:3]}; stages: {result.stages}.")
    panels = {
        f"{m} · {s}": pool(result.tensors[(m, s)].abs(), resolution)
        for m in methods
        for s in stages
    }
    return heatmaps(
        panels,
        signed=False,
        shared_scale=False,
        clip=99.0,
        columns=len(stages),
        size=size,
        title=title or f"|map| as more layers are randomized ({result.order}); left: trained",
    )


def similarity_chart(result: CascadeResult, title: str | None = None) -> alt.FacetChart:
    """Similarity to the trained model's map vs randomization depth, one panel per metric.

    Args:
        result: from :func:`cascade`.
        title: chart title.

    Returns:
        A faceted Altair line chart (``sh.similarity_lines``).

    Example:
        >>> similarity_chart(res)
    """
    return similarity_lines(
        result.similarity,
        x="stage",
        y="value",
        color="method",
        facet="metric",
        title=title or f"Similarity to the trained model's map ({result.order} randomization)",
    )
