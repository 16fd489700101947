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
:func:`similarity`, :func:`edge_map`, :func:`decide`; its charts are
``plots.cascade_grid`` and ``plots.similarity_chart``.

Example:
    >>> b = sh.load_model()
    >>> x = b.preprocess(sh.course_photo())
    >>> res = cascade(b, x, ["gradient", "guided_backprop"])
    >>> sh.similarity_chart(res)
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata
from skimage.filters import sobel
from skimage.metrics import structural_similarity
from torch import nn

from .attribution import (
    COMPLETENESS_TOLERANCE,
    METHODS,
    CompletenessWarning,
    _unpack,
    attribute,
    completeness_error,
    make_baseline,
    resolve_target,
)
from .images import denormalize
from .maps import SIMILARITY_REDUCTION, clip_percentile, normalize, reduce_channels, to_2d, to_frame
from .models import frozen

__all__ = [
    "METRICS",
    "ORDERS",
    "CascadeResult",
    "cascade",
    "cascade_walk",
    "edge_map",
    "load_verdicts",
    "randomized_models",
    "save_verdicts",
    "similarity",
]

#: Randomization orders: cumulative from the logits, one block at a time, cumulative from the input.
ORDERS = ("top_down", "independent", "bottom_up")
#: Similarity metrics reported by :func:`cascade` (see :func:`similarity`).
METRICS = ("spearman_signed", "spearman_abs", "ssim")
#: Name of the un-randomized model in the ``stage`` column.
ORIGINAL = "original"
#: Side in pixels of the pooled maps kept in ``CascadeResult.maps``.
FRAME_SIZE = 56
#: Integrated Gradients' step counts tried, in order, by the completeness rule. A fine ladder:
#: Gauss-Legendre's error is not monotonic in the number of steps on a ReLU network (notebook 03
#: shows it), so a count between two powers of two can pass where the larger power fails.
IG_STEP_LADDER = (32, 48, 64, 96, 128, 192, 256)
#: How a block is re-initialised (see :func:`randomized_models`).
INITS = ("auto", "training", "default")


# ---------------------------------------------------------------------------
# The generator


def _resolve_model(
    model: Any, layers: Sequence[str] | None, blocks: Mapping[str, Sequence[str]] | None
) -> tuple[nn.Module, list[str], dict[str, list[str]]]:
    """The network, its stages (logits first) and the module names of each stage."""
    net, bundle = _unpack(model)
    if bundle is None and layers is None:
        raise ValueError(
            "A bare nn.Module needs layers=[...]: the dotted names of its blocks, "
            "logits first (e.g. ['fc', 'layer4.1', ..., 'conv1']). Or pass the "
            "object from sh.load_model, which knows them."
        )
    if bundle is not None:
        layers = list(bundle.layers) if layers is None else layers
        blocks = dict(getattr(bundle, "blocks", {}) or {}) if blocks is None else blocks
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


def cascade_walk(
    layers: Sequence[str], stages: Sequence[str] | None = None, order: str = "top_down"
) -> list[str]:
    """The stages a cascade visits, in the order it visits them.

    Args:
        layers: every stage of the model, logits first (``bundle.layers``).
        stages: the stages wanted (default all of ``layers``); each must be in ``layers``.
        order: one of :data:`ORDERS`; ``"bottom_up"`` starts at the input.

    Returns:
        The wanted stages in cascade order (``layers``' order, reversed for bottom-up).

    Raises:
        ValueError: an unknown order, or a stage that is not in ``layers``.

    Example:
        >>> cascade_walk(["fc", "layer4", "conv1"], ["conv1", "fc"])
        ['fc', 'conv1']
    """
    if order not in ORDERS:
        raise ValueError(f"Unknown order {order!r}; choose one of {ORDERS}.")
    wanted = list(layers) if stages is None else list(stages)
    unknown = [s for s in wanted if s not in layers]
    if unknown:
        raise ValueError(f"stages {unknown} are not in the model's layers {list(layers)}.")
    ordered = list(layers)[::-1] if order == "bottom_up" else list(layers)
    return [s for s in ordered if s in wanted]


def _reset(module: nn.Module) -> bool:
    """The layer default: the module's own ``reset_parameters()`` (BatchNorm: stats too)."""
    reset = getattr(module, "reset_parameters", None)
    if callable(reset):
        reset()
        return True
    return False


def _init_fn(model: Any, init: str | Callable[[nn.Module], bool]) -> Callable[[nn.Module], bool]:
    """The per-module re-initialiser that ``init`` names (see :func:`randomized_models`)."""
    if callable(init):
        return init
    if init not in INITS:
        raise ValueError(f"Unknown init {init!r}; choose one of {INITS} or pass a function.")
    own = getattr(model, "training_init", None)
    if init == "training" and own is None:
        raise ValueError(
            "init='training' needs the architecture's training-time initialiser: pass the "
            "object from sh.load_model (it carries .training_init), or init='default' for "
            "each layer's reset_parameters(), or a function init(module) -> bool."
        )
    if init == "default" or own is None:
        return _reset
    return own


def _init_name(model: Any, init: str | Callable[[nn.Module], bool]) -> str:
    if callable(init):
        return getattr(init, "__name__", "custom")
    if init == "auto":
        return "training" if getattr(model, "training_init", None) is not None else "default"
    return init


def _reinitialise(
    net: nn.Module, modules: Sequence[str], seed: int, init: Callable[[nn.Module], bool] = _reset
) -> int:
    """Re-initialise every submodule of ``modules`` with ``init``, under a fixed seed.

    Returns how many modules were reset (a stage that resets nothing is a bug).
    """
    count = 0
    # fork_rng: seeded weights without moving the caller's global random state.
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for name in modules:
            for sub in net.get_submodule(name).modules():
                count += bool(init(sub))
    return count


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
    init: str | Callable[[nn.Module], bool] = "auto",
) -> Iterator[tuple[str, nn.Module]]:
    """Yield deep copies of a model with more and more of its weights re-initialised.

    Each block is re-initialised module by module, under
    ``torch.manual_seed(seed + i)`` where ``i`` is the block's index in
    ``layers`` (logits first). A block therefore gets the same random weights
    whatever the order or the ``stages`` subset, and the caller's global random
    state is left untouched.

    Two re-initialisations (``init``):

    * ``"training"``: the architecture's own training-time initialiser
      (``bundle.training_init``; e.g. torchvision's ResNet: Kaiming-normal with fan-out
      for convolutions), i.e. the weights the network started from before it learned;
    * ``"default"``: each layer's ``reset_parameters()``, PyTorch's layer default
      (Kaiming-uniform with a = √5 for convolutions and linear layers: a sixth of the
      variance of ResNet's draw for a 3x3 convolution with as many inputs as outputs). On a
      residual network a smaller scale leaves the skip connections dominant, so more of the
      trained signal survives.

    BatchNorm gets scale 1, shift 0 and its running statistics reset in both.

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
        init: ``"auto"`` (``"training"`` when the model carries ``training_init``, else
            ``"default"``), ``"training"``, ``"default"``, or a function
            ``init(module) -> bool`` that re-initialises one module in place.

    Yields:
        ``(stage_name, network)``: a fresh deep copy each time, in eval mode,
        parameters with ``requires_grad=False``.

    Example:
        >>> for stage, net in randomized_models(b, stages=b.layers[:3]):
        ...     print(stage, net(x).argmax().item())
    """
    cascade_walk([], [], order)  # an unknown order fails before any work
    init_fn = _init_fn(model, init)
    net, layers, blocks = _resolve_model(model, layers, blocks)
    wanted = cascade_walk(layers, stages, order)
    index = {stage: i for i, stage in enumerate(layers)}
    # top-down and bottom-up randomize every layer on the way, yielding the wanted ones
    walk = cascade_walk(layers, None, order)
    if inputs is not None:
        inputs = inputs.detach()

    def make(stage: str, base: nn.Module) -> nn.Module:
        if _reinitialise(base, blocks[stage], seed + index[stage], init_fn) == 0:
            raise ValueError(
                f"Stage {stage!r} has no module with reset_parameters(): nothing to randomize."
            )
        return base

    work = frozen(copy.deepcopy(net)) if order != "independent" else None
    for stage in walk:
        if order == "independent":
            if stage not in wanted:
                continue
            out = make(stage, frozen(copy.deepcopy(net)))
        else:
            make(stage, work)
            if stage not in wanted:
                continue
            out = copy.deepcopy(work)  # later stages must not change a model already yielded
        _check_finite(out, inputs, stage)
        yield stage, out


# ---------------------------------------------------------------------------
# Similarity


class _Map:
    """One map reduced once for every similarity it enters (ranks are computed once).

    ``signed``: channel sum; ``magnitude``: mean of ``|.|`` over channels; ``unit``: the
    magnitude clipped at its 99th percentile and scaled to [0, 1] (SSIM needs a range).
    """

    def __init__(self, m: torch.Tensor) -> None:
        m = to_2d(m)
        self.signed_tensor = reduce_channels(m, SIMILARITY_REDUCTION["signed"])
        self.shape = tuple(self.signed_tensor.shape)
        self.signed = self.signed_tensor.double().numpy().ravel()
        magnitude = reduce_channels(m, SIMILARITY_REDUCTION["magnitude"])
        self.magnitude = magnitude.double().numpy().ravel()
        self._ranks: dict[str, np.ndarray | None] = {}
        self._unit: np.ndarray | None = None

    def ranks(self, kind: str) -> np.ndarray | None:
        """Centred, unit-norm average ranks (None for a constant map: it has no ranking)."""
        if kind not in self._ranks:
            values = self.signed if kind == "signed" else self.magnitude
            if np.ptp(values) == 0:
                self._ranks[kind] = None
            else:
                r = rankdata(values)
                r -= r.mean()
                self._ranks[kind] = r / np.linalg.norm(r)
        return self._ranks[kind]

    def unit(self) -> np.ndarray:
        if self._unit is None:
            m = torch.from_numpy(self.magnitude.reshape(self.shape)).float()
            self._unit = normalize(clip_percentile(m, q=99.0, signed=False), signed=False).numpy()
        return self._unit

    def similarity(self, other: _Map) -> dict[str, float]:
        if self.shape != other.shape:
            raise ValueError(f"maps differ in size: {self.shape} vs {other.shape}.")
        out = {}
        for metric, kind in (("spearman_signed", "signed"), ("spearman_abs", "magnitude")):
            a, b = self.ranks(kind), other.ranks(kind)
            # Spearman's rho is Pearson's r of the (average) ranks; NaN without a ranking.
            out[metric] = float("nan") if a is None or b is None else float(np.clip(a @ b, -1, 1))
        out["ssim"] = float(structural_similarity(self.unit(), other.unit(), data_range=1.0))
        return out


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
        A constant map has no ranking: its Spearman correlations are NaN (never 0 or 1),
        in the cascade and in the data-randomization test alike.

    Example:
        >>> similarity(grad[0], grad[0])["spearman_abs"]
        1.0
    """
    return _Map(a).similarity(_Map(b))


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
# The verdict rule


#: What each outcome of :func:`decide` means for the method under test.
VERDICT = {"changed": "passes", "unchanged": "fails", "undecided": "inconclusive"}


def _mean_se(values: Any) -> tuple[float, float, float, int, int]:
    """Mean, sd, standard error, count of defined values, count of NaN (undefined)."""
    v = np.asarray(values, dtype=float).ravel()
    defined = v[np.isfinite(v)]
    n = int(defined.size)
    if n == 0:
        return float("nan"), float("nan"), float("nan"), 0, int(v.size)
    sd = float(defined.std(ddof=1)) if n > 1 else 0.0
    return float(defined.mean()), sd, sd / np.sqrt(n), n, int(v.size - n)


def decide(tested: Any, ceiling: Any, floor: Any, z: float = 2.0) -> dict[str, Any]:
    """Did the map change? Compare a tested similarity with its two references.

    The rule (the same for both sanity checks):

    * the **ceiling** is how alike the method's map is to itself when nothing that
      matters changed (1 for a deterministic method; two noise seeds for SmoothGrad;
      two models trained on the same data for data randomization);
    * the **floor** is how alike two maps are that share only the input and the
      architecture (two independently randomized networks);
    * the **threshold** is halfway between their means: a tested similarity below it is
      closer to "unrelated networks" than to "the same map";
    * the **margin** is ``z`` standard errors of that comparison,
      ``z * sqrt(se_tested² + (se_ceiling² + se_floor²) / 4)``;
    * the references **resolve** the question only if the ceiling exceeds the floor by
      more than the tested values' own standard deviation (else one map could not be told
      apart from either reference, however many samples are averaged).

    ``"changed"`` if resolved and ``mean(tested) + margin < threshold``, ``"unchanged"``
    if resolved and ``mean(tested) - margin > threshold``, ``"undecided"`` otherwise (or
    when fewer than two tested values are defined). NaN values (a constant map has no
    ranking) are left out and counted in ``n_undefined``.

    Args:
        tested: per-sample similarities under test, e.g. trained vs randomized ``(n,)``.
        ceiling: per-sample similarities of the map with itself ``(m,)`` (or a number).
        floor: per-sample similarities of unrelated networks' maps ``(k,)`` (or a number).
        z: how many standard errors the difference must exceed (2: about 95%).

    Returns:
        ``{"outcome", "tested_mean", "tested_sd", "ceiling_mean", "ceiling_sd",
        "floor_mean", "floor_sd", "threshold", "margin", "resolved", "n", "n_undefined"}``.

    Example:
        >>> decide([0.2, 0.25, 0.3], ceiling=1.0, floor=[0.1, 0.2, 0.15])["outcome"]
        'changed'
    """
    t_mean, t_sd, t_se, n, n_nan = _mean_se(tested)
    c_mean, c_sd, c_se, _, _ = _mean_se(ceiling)
    f_mean, f_sd, f_se, _, _ = _mean_se(floor)
    threshold = (c_mean + f_mean) / 2
    margin = z * float(np.sqrt(t_se**2 + (c_se**2 + f_se**2) / 4))
    resolved = bool(np.isfinite(threshold) and c_mean - f_mean > t_sd)
    if n < 2 or not resolved:
        outcome = "undecided"
    elif t_mean + margin < threshold:
        outcome = "changed"
    elif t_mean - margin > threshold:
        outcome = "unchanged"
    else:
        outcome = "undecided"
    return {
        "outcome": outcome,
        "tested_mean": t_mean,
        "tested_sd": t_sd,
        "ceiling_mean": c_mean,
        "ceiling_sd": c_sd,
        "floor_mean": f_mean,
        "floor_sd": f_sd,
        "threshold": threshold,
        "margin": margin,
        "resolved": resolved,
        "n": n,
        "n_undefined": n_nan,
    }


# ---------------------------------------------------------------------------
# The cascade


@dataclass
class CascadeResult:
    """What :func:`cascade` measured.

    Attributes:
        maps: tidy DataFrame ``method, stage, row, col, value``: signed channel-sum maps of
            the first image and the first seed, average-pooled to 56x56.
        tensors: ``{(method, stage): (H, W) tensor}`` full-resolution signed channel-sum
            maps of the first image and the first seed, for plotting.
        similarity: DataFrame ``method, stage, image, seed, metric, value``: each map vs
            the same method's map on the trained model, for the same image and class;
            ``stage`` runs ``"original"`` then the randomized stages in cascade order.
            ``value`` is NaN where a map is constant (no ranking).
        edges: DataFrame ``method, image, metric, value``: each method's trained map vs
            the Sobel edge map of the photo (:func:`edge_map`).
        stages: ``["original", *randomized stages]`` in cascade order.
        methods: the methods, in the order given.
        target: the class explained for the first image.
        order: the randomization order.
        seconds: wall-clock time of the whole cascade.
        references: DataFrame ``method, reference, stage, image, metric, value``:
            ``"floor"`` rows compare two independently seeded randomizations of the same
            stage (one row per pair of seeds), ``"ceiling"`` rows the trained model's map
            with itself under another noise seed (1.0 for a deterministic method).
        completeness: Integrated Gradients' completeness error on the trained model, one
            value per image (empty without IG).
        images: the image names (the ``image`` column).
        seeds: the re-initialisation seeds.
        targets: the class explained for each image.
        init: ``"training"`` or ``"default"``: how blocks were re-initialised.
        ig_steps: the IG step count used (None without IG).
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
    references: pd.DataFrame = field(default_factory=pd.DataFrame)
    completeness: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    images: list[str] = field(default_factory=lambda: ["0"])
    seeds: list[int] = field(default_factory=lambda: [0])
    targets: list[int] = field(default_factory=list)
    init: str = "default"
    ig_steps: int | None = None

    def table(self, metric: str = "spearman_abs") -> pd.DataFrame:
        """Similarity as a wide table: one row per stage, one column per method.

        Each cell is the mean over images and seeds (NaN values left out).

        Example:
            >>> res.table("spearman_signed").round(2)
        """
        _check_metric(metric)
        sub = self.similarity[self.similarity.metric == metric]
        wide = sub.pivot_table(index="stage", columns="method", values="value", aggfunc="mean")
        return wide.reindex(index=self.stages, columns=self.methods)

    def summary(self, metric: str = "spearman_abs") -> pd.DataFrame:
        """Mean ± sd per method and stage, tested and references side by side.

        Returns:
            DataFrame ``method, stage, kind, mean, sd, n, n_undefined`` where ``kind`` is
            ``"trained vs randomized"``, ``"floor"`` (two randomizations of the stage) or
            ``"ceiling"`` (stage ``"original"``).

        Example:
            >>> res.summary().query("stage == 'stem'")
        """
        _check_metric(metric)
        tested = self.similarity[self.similarity.metric == metric].assign(
            kind="trained vs randomized"
        )
        refs = self.references
        parts = [tested]
        if len(refs):
            parts.append(refs[refs.metric == metric].rename(columns={"reference": "kind"}))
        frame = pd.concat(parts, ignore_index=True)
        out = (
            frame.groupby(["method", "kind", "stage"], sort=False)["value"]
            .agg(mean="mean", sd="std", n="count", n_undefined=lambda v: int(v.isna().sum()))
            .reset_index()
        )
        return out

    def verdicts(self, metric: str = "spearman_abs", z: float = 2.0) -> pd.DataFrame:
        """One verdict per method, decided by a stated rule from the numbers measured.

        The rule (:func:`decide` at each randomized stage, then over the cascade):

        1. At every randomized stage, the tested similarities (trained vs randomized, all
           images and seeds) are compared with the **threshold** halfway between the
           **ceiling** (the method's map vs itself: 1 for a deterministic method, two noise
           seeds for SmoothGrad) and the **floor** (two independently randomized networks
           with no trained weight left, i.e. the last stage of a cumulative cascade: what
           the input and the architecture alone make alike). The stage's map has
           ``"changed"`` if the mean is below the threshold by more than ``z`` standard
           errors, ``"unchanged"`` if above by more than that, else ``"undecided"``; also
           ``"undecided"`` when ceiling and floor are closer than the tested values' sd
           (the references cannot resolve the question).
        2. The method **fails** if its map is unchanged after the first stage (the logit
           layer randomized: the class score is then a different function of the same
           features); it **passes** if its map has changed at every evaluated stage;
           otherwise it is **inconclusive**.

        Args:
            metric: one of :data:`METRICS`.
            z: standard errors required (2: about 95%).

        Returns:
            DataFrame, one row per method: ``method, verdict, first_stage, first_mean,
            first_sd, ceiling, floor, threshold, margin, changed, unchanged, undecided,
            n_stages, n, n_undefined`` (``changed`` etc. count stages).

        Example:
            >>> res.verdicts("spearman_abs")[["method", "verdict"]]
        """
        outcomes = self.stage_outcomes(metric, z)
        rows = []
        for method, per_stage in outcomes.groupby("method", sort=False):
            first = per_stage.iloc[0]
            counts = per_stage["outcome"].value_counts()
            if first["outcome"] == "unchanged":
                verdict = "fails"
            elif counts.get("changed", 0) == len(per_stage):
                verdict = "passes"
            else:
                verdict = "inconclusive"
            rows.append(
                {
                    "method": method,
                    "verdict": verdict,
                    "first_stage": first["stage"],
                    "first_mean": first["tested_mean"],
                    "first_sd": first["tested_sd"],
                    "ceiling": first["ceiling_mean"],
                    "floor": first["floor_mean"],
                    "threshold": first["threshold"],
                    "margin": first["margin"],
                    "changed": int(counts.get("changed", 0)),
                    "unchanged": int(counts.get("unchanged", 0)),
                    "undecided": int(counts.get("undecided", 0)),
                    "n_stages": len(per_stage),
                    "n": int(first["n"]),
                    "n_undefined": int(per_stage["n_undefined"].sum()),
                }
            )
        return pd.DataFrame(rows)

    def stage_outcomes(self, metric: str = "spearman_abs", z: float = 2.0) -> pd.DataFrame:
        """The per-stage decisions behind :meth:`verdicts`: one row per method and stage.

        Columns: ``method, stage`` and the keys of :func:`decide` (``outcome``,
        ``tested_mean``, ``threshold``, ...).

        Example:
            >>> res.stage_outcomes().pivot(index="stage", columns="method", values="outcome")
        """
        _check_metric(metric)
        if self.order == "independent":
            raise ValueError(
                "verdicts need a cumulative cascade (order='top_down' or 'bottom_up'): "
                "its last stage has no trained weight left, which gives the floor."
            )
        if self.references.empty:
            raise ValueError(
                "This result has no references: run sh.cascade(..., seeds=(0, 1, 2))."
            )
        sims = self.similarity[self.similarity.metric == metric]
        refs = self.references[self.references.metric == metric]
        rows = []
        for method in self.methods:
            mine = refs[refs.method == method]
            ceiling = mine[mine.reference == "ceiling"]["value"]
            floor = mine[(mine.reference == "floor") & (mine.stage == self.stages[-1])]["value"]
            tested = sims[sims.method == method]
            for stage in self.stages[1:]:
                d = decide(tested[tested.stage == stage]["value"], ceiling, floor, z=z)
                rows.append({"method": method, "stage": stage, **d})
        return pd.DataFrame(rows)


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r}; choose one of {METRICS}.")


def _as_batch(inputs: Any) -> torch.Tensor:
    """One ``(N, C, H, W)`` tensor from a tensor or a list of ``(1, C, H, W)`` tensors."""
    if isinstance(inputs, (list, tuple)):
        if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
            raise ValueError("inputs must be a tensor (N, C, H, W) or a non-empty list of them.")
        shapes = {tuple(t.shape[-3:]) for t in inputs}
        if len(shapes) != 1:
            raise ValueError(
                f"the images differ in size {sorted(shapes)}: preprocess them with the same "
                "model (b.preprocess) so they share one size."
            )
        inputs = torch.cat([t if t.dim() == 4 else t.unsqueeze(0) for t in inputs])
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4:
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise ValueError(f"inputs must be (N, C, H, W) images, got {shape}.")
    return inputs.detach()


def _stochastic(method: str) -> bool:
    return METHODS[method].smoothing is not None


def _ig_steps(
    net: nn.Module, bundle: Any, inputs: torch.Tensor, targets: list[int], kwargs: dict
) -> tuple[int, list[float]]:
    """IG's steps by the completeness rule, and the per-image error on the trained model.

    With ``n_steps`` given: that count, and a ValueError if any image's error is above
    5%. Without: the first of :data:`IG_STEP_LADDER` whose error is at most 5% on every
    image (notebook 03's rule), or a ValueError naming the errors.
    """
    model = bundle if bundle is not None else net
    ladder = [int(kwargs["n_steps"])] if "n_steps" in kwargs else list(IG_STEP_LADDER)
    if min(ladder) < 2:
        raise ValueError(f"IG's n_steps must be at least 2, got {min(ladder)}.")
    for steps in ladder:
        call = {**kwargs, "n_steps": steps}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CompletenessWarning)
            attr = attribute("integrated_gradients", model, inputs, target=targets, **call)
        base = make_baseline(call.get("baselines", "zero"), inputs, model)
        errors = [
            completeness_error(
                model, inputs[i : i + 1], attr[i : i + 1], targets[i], base[i : i + 1]
            )
            for i in range(len(inputs))
        ]
        if max(errors) <= COMPLETENESS_TOLERANCE:
            return steps, errors
    raise ValueError(
        f"Integrated Gradients does not converge on the trained model: completeness errors "
        f"{[f'{e:.1%}' for e in errors]} with n_steps={steps} (the rule asks for <= 5% on "
        "every image). Pass more steps with method_kwargs={'integrated_gradients': "
        "{'n_steps': ...}} or another baseline."
    )


def stage_attributions(
    network: nn.Module,
    inputs: torch.Tensor,
    targets: Any,
    method_kwargs: Mapping[str, Mapping[str, Any]],
    stage: str,
    *,
    noise_seed: int | None = None,
    bar: Any = None,
) -> dict[str, torch.Tensor]:
    """Every method's attributions on one network of the cascade: one step of its loop.

    On a randomized network (``stage != "original"``) Integrated Gradients' completeness
    warning is silenced: the steps were chosen on the trained model, and completeness on a
    random network says nothing about the test.

    Args:
        network: the trained network or a randomized copy.
        inputs: ``(N, C, H, W)`` images.
        targets: the class explained for each image (the trained model's).
        method_kwargs: ``{method: keyword arguments of sh.attribute}``, in the order to run.
        stage: ``"original"`` or the randomized stage's name (for messages).
        noise_seed: the seed of SmoothGrad's noise, unless its kwargs fix one.
        bar: an optional tqdm bar, advanced once per method.

    Returns:
        ``{method: (N, C, H, W) attributions}``.

    Raises:
        FloatingPointError: a method gives NaN or inf.
    """
    out = {}
    for method, kwargs in method_kwargs.items():
        if bar is not None:
            bar.set_postfix_str(f"{stage}: {method}")
        kw = dict(kwargs)
        if noise_seed is not None and _stochastic(method):
            kw.setdefault("seed", noise_seed)
        with warnings.catch_warnings():
            if stage != ORIGINAL:
                warnings.simplefilter("ignore", CompletenessWarning)
            attr = attribute(method, network, inputs, target=targets, **kw)
        if not torch.isfinite(attr).all():
            raise FloatingPointError(f"{method} gives NaN/inf at stage {stage!r}.")
        out[method] = attr
        if bar is not None:
            bar.update(1)
    return out


def _pairwise_seeds(seeds: Sequence[int]) -> list[tuple[int, int]]:
    return [(a, b) for i, a in enumerate(seeds) for b in seeds[i + 1 :]]


def cascade(
    model: Any,
    inputs: torch.Tensor | Sequence[torch.Tensor],
    methods: Sequence[str],
    target: int | str | Sequence[int | str] | None = None,
    order: str = "top_down",
    seeds: Sequence[int] = (0,),
    stages: Sequence[str] | None = None,
    method_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = False,
    *,
    init: str = "auto",
    images: Sequence[str] | None = None,
    layers: Sequence[str] | None = None,
    blocks: Mapping[str, Sequence[str]] | None = None,
    seed: int | None = None,
) -> CascadeResult:
    """Run the model-parameter randomization test for several methods, images and seeds.

    For every stage of :func:`randomized_models`, every seed and every method, the map of
    that same method on the randomized copy is compared with its map on the trained model,
    image by image, always for the same class: each image's class predicted by the trained
    model (or ``target``). With two or more seeds the references are measured too (see
    :class:`CascadeResult` ``.references``) and :meth:`CascadeResult.verdicts` decides.

    Integrated Gradients uses the completeness rule: its steps are the first of
    :data:`IG_STEP_LADDER` whose completeness error on the trained model is at most 5% on
    every image (``result.completeness``; a ValueError if none is), with a black baseline
    unless ``method_kwargs`` names another. Its warnings are silenced on the randomized
    copies only (there, completeness says nothing about the test). SmoothGrad-type methods
    draw their noise with a different seed for every network (the trained reference
    included), so that shared noise never counts as similarity.

    Args:
        model: the object from ``sh.load_model``, or an ``nn.Module`` with ``layers=``
            (and ``blocks=``); for ``grad_cam`` on a bare module pass
            ``method_kwargs={"grad_cam": {"layer": "<dotted name>"}}``.
        inputs: preprocessed images ``(N, C, H, W)``, or a list of ``(1, C, H, W)``.
        methods: names accepted by ``sh.attribute``.
        target: class to explain (index or name), one per image, or None (each image's
            prediction by the trained model).
        order: ``"top_down"``, ``"independent"`` or ``"bottom_up"``.
        seeds: re-initialisation seeds; two or more also measure the floor.
        stages: subset of the stages to evaluate (cumulative orders still randomize the
            skipped blocks).
        method_kwargs: ``{method: {kwarg: value}}`` passed to ``sh.attribute``.
        progress: show a tqdm progress bar.
        init: how a block is re-initialised: ``"training"`` (the architecture's own
            training-time initialiser, ``bundle.training_init``), ``"default"`` (each
            layer's ``reset_parameters()``) or ``"auto"`` (``"training"`` when the model
            knows its initialiser, else ``"default"``). See :func:`randomized_models`.
        images: names of the images (default ``"0"``, ``"1"``, ...).
        layers, blocks: for a bare ``nn.Module`` (see :func:`randomized_models`).
        seed: a single seed (the same as ``seeds=(seed,)``).

    Returns:
        A :class:`CascadeResult`.

    Example:
        >>> xs = [b.preprocess(p) for p in sh.course_photos().values()]
        >>> res = cascade(b, xs, ["gradient", "guided_backprop"], seeds=(0, 1, 2))
        >>> res.verdicts()
    """
    start = time.perf_counter()
    methods = list(methods)
    if not methods:
        raise ValueError("methods is empty: give e.g. ['gradient', 'guided_backprop'].")
    unknown_methods = [m for m in methods if m not in METHODS]
    if unknown_methods:
        raise ValueError(f"Unknown method(s) {unknown_methods}; choose from {sorted(METHODS)}.")
    seeds = [int(seed)] if seed is not None else [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct integers, e.g. (0, 1, 2); got {seeds}.")
    inputs = _as_batch(inputs)
    n = len(inputs)
    names = [str(i) for i in range(n)] if images is None else [str(i) for i in images]
    if len(names) != n:
        raise ValueError(f"images names {len(names)} images but inputs holds {n}.")
    net, layers, blocks = _resolve_model(model, layers, blocks)
    bundle = None if isinstance(model, nn.Module) else model
    kwargs = {m: dict((method_kwargs or {}).get(m, {})) for m in methods}
    unknown = set(method_kwargs or {}) - set(methods)
    if unknown:
        raise ValueError(f"method_kwargs names {sorted(unknown)}, which are not in methods.")
    for m in ("grad_cam", "guided_grad_cam"):
        if m in kwargs and "layer" not in kwargs[m]:
            if bundle is None:
                raise ValueError(
                    f"{m} on a bare nn.Module: pass method_kwargs={{'{m}': "
                    "{'layer': '<dotted layer name>'}}."
                )
            kwargs[m]["layer"] = bundle.gradcam_layer_name
        if isinstance(kwargs.get(m, {}).get("layer"), nn.Module):
            raise ValueError(f"{m}'s layer must be a dotted NAME here: each copy has its own.")
    # One target per image for every stage: the trained model's answer (a randomized
    # model's own prediction would change the question being explained).
    targets = resolve_target(model, inputs, target)

    walk = cascade_walk(layers, stages, order)
    _check_finite(net, inputs, ORIGINAL)

    completeness = pd.Series(dtype=float)
    ig_steps = None
    if "integrated_gradients" in kwargs:
        ig = kwargs["integrated_gradients"]
        ig.setdefault("baselines", "black" if bundle else "zero")
        # A tensor once: the randomized copies are bare modules without the normalisation.
        ig["baselines"] = make_baseline(ig["baselines"], inputs, model)
        ig_steps, errors = _ig_steps(
            net, bundle, inputs, targets, kwargs["integrated_gradients"]
        )
        kwargs["integrated_gradients"]["n_steps"] = ig_steps
        completeness = pd.Series(errors, index=names, name="completeness_error")

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=(len(walk) * len(seeds) + 1) * len(methods), desc=f"cascade ({order})")

    def explain(
        network: nn.Module, noise_seed: int, label: str, which: Sequence[str] = methods
    ) -> dict[str, list[_Map]]:
        attrs = stage_attributions(
            network, inputs, targets, {m: kwargs[m] for m in which}, label,
            noise_seed=noise_seed, bar=bar,
        )  # fmt: skip
        return {method: [_Map(a) for a in attr] for method, attr in attrs.items()}

    sims: list[dict[str, Any]] = []
    refs: list[dict[str, Any]] = []
    tensors: dict[tuple[str, str], torch.Tensor] = {}

    def record(rows: list, maps_a: dict, maps_b: dict, **labels: Any) -> None:
        for method in methods:
            for i, image in enumerate(names):
                values = maps_a[method][i].similarity(maps_b[method][i])
                for metric, value in values.items():
                    rows.append(
                        {"method": method, **labels, "image": image, "metric": metric,
                         "value": value}
                    )  # fmt: skip

    try:
        trained = explain(net, 0, ORIGINAL)
        for method in methods:
            tensors[(method, ORIGINAL)] = trained[method][0].signed_tensor
        record(sims, trained, trained, stage=ORIGINAL, seed=seeds[0])
        # Ceiling: deterministic methods repeat exactly (1.0); noisy ones under another seed.
        noisy = [m for m in methods if _stochastic(m)]
        again = explain(net, 1, ORIGINAL, noisy) if noisy else {}
        for method in methods:
            for i, image in enumerate(names):
                values = (
                    trained[method][i].similarity(again[method][i])
                    if method in again
                    else dict.fromkeys(METRICS, 1.0)
                )
                for metric, value in values.items():
                    refs.append(
                        {"method": method, "reference": "ceiling", "stage": ORIGINAL,
                         "image": image, "metric": metric, "value": value}
                    )  # fmt: skip
        generators = {
            s: randomized_models(
                net, order=order, seed=s, stages=walk, layers=layers, blocks=blocks,
                inputs=inputs, init=_init_fn(model, init),
            )
            for s in seeds
        }  # fmt: skip
        for stage in walk:
            at_stage = {}
            for k, s in enumerate(seeds):
                got_stage, network = next(generators[s])
                assert got_stage == stage
                at_stage[s] = explain(network, 2 + k, stage)
                del network
                record(sims, at_stage[s], trained, stage=stage, seed=s)
            for method in methods:
                tensors[(method, stage)] = at_stage[seeds[0]][method][0].signed_tensor
            for a, b in _pairwise_seeds(seeds):
                record(refs, at_stage[a], at_stage[b], reference="floor", stage=stage)
    finally:
        if bar is not None:
            bar.close()

    edge_rows = []
    for i, image in enumerate(names):
        norm = bundle if bundle is not None else _no_bundle(inputs)
        ref = _Map(edge_map(inputs[i : i + 1], norm))
        for method in methods:
            for metric, value in trained[method][i].similarity(ref).items():
                edge_rows.append({"method": method, "image": image, "metric": metric,
                                  "value": value})  # fmt: skip
    all_stages = [ORIGINAL, *walk]
    frames = [
        to_frame({method: tensors[(method, stage)]}, size=FRAME_SIZE, stage=stage)
        for method in methods
        for stage in all_stages
    ]
    similarity_frame = pd.DataFrame(sims)[["method", "stage", "image", "seed", "metric", "value"]]
    references = (
        pd.DataFrame(refs)[["method", "reference", "stage", "image", "metric", "value"]]
        if len(seeds) > 1
        else pd.DataFrame(columns=["method", "reference", "stage", "image", "metric", "value"])
    )
    return CascadeResult(
        maps=pd.concat(frames, ignore_index=True),
        tensors=tensors,
        similarity=similarity_frame,
        edges=pd.DataFrame(edge_rows),
        stages=all_stages,
        methods=methods,
        target=targets[0],
        order=order,
        seconds=time.perf_counter() - start,
        references=references,
        completeness=completeness,
        images=names,
        seeds=seeds,
        targets=list(targets),
        init=_init_name(model, init),
        ig_steps=ig_steps,
    )


def _no_bundle(inputs: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Without a bundle: a (mean, std) pair that rescales the image's own range to [0, 1]."""
    lo, hi = float(inputs.min()), float(inputs.max())
    span = hi - lo if hi > lo else 1.0
    return (-lo / span,) * 3, (1.0 / span,) * 3


# ---------------------------------------------------------------------------
# Verdicts kept for later notebooks


def _verdicts_path(model_name: str, quick: bool) -> Path:
    from .training import cache_dir

    if not isinstance(model_name, str) or not model_name.replace("_", "").isalnum():
        raise ValueError(f"model_name must be a model's name, e.g. b.name, got {model_name!r}.")
    return cache_dir() / f"cascade-verdicts-{model_name}{'-quick' if quick else ''}.json"


def save_verdicts(model_name: str, verdicts: Mapping[str, str], quick: bool = False) -> Path:
    """Keep the cascade's verdicts per method, for a later notebook's summary table.

    Notebook 06 saves them; notebook 08's closing table shows them beside the faithfulness
    results, so that a student who ran 06 sees both tests of each method in one place. The
    file lives in the training cache (:func:`~.training.cache_dir`, ``SALIENCY_CACHE``).

    Args:
        model_name: the model the verdicts are about (``b.name``).
        verdicts: ``{method: verdict}``, e.g. ``res.verdicts("spearman_abs")`` as a dict.
        quick: whether they come from a quick-size run (kept apart from full-size ones).

    Returns:
        The path written.

    Example:
        >>> save_verdicts(b.name, {"gradient": "passes"})  # doctest: +SKIP
    """
    path = _verdicts_path(model_name, quick)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"model": model_name, "verdicts": {str(k): str(v) for k, v in verdicts.items()},
              "quick": bool(quick), "saved": dt.datetime.now().isoformat(timespec="seconds")}
    path.write_text(json.dumps(record, indent=1))
    return path


def load_verdicts(model_name: str, quick: bool = False) -> dict[str, Any] | None:
    """The verdicts :func:`save_verdicts` kept for ``model_name``, or None if there are none.

    Args:
        model_name: the model (``b.name``).
        quick: the quick-size verdicts (``sh.quick()``) instead of the full-size ones.

    Returns:
        ``{"model", "verdicts": {method: verdict}, "quick", "saved"}``, or ``None`` when
        notebook 06 has not been run for this model (or the file is unreadable).

    Example:
        >>> load_verdicts(b.name)["verdicts"]["guided_backprop"]  # doctest: +SKIP
        'fails'
    """
    path = _verdicts_path(model_name, quick)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(record, dict) and isinstance(record.get("verdicts"), dict)
    return record if ok and record.get("model") == model_name else None
