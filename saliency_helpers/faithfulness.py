"""Faithfulness by intervention: remove what a map calls important and watch the prediction.

A saliency map claims that some pixels matter more to the model than others. The claim can
be tested by *intervening* on the input: replace the pixels the map ranks highest and the
model's confidence in its class should fall fast; put them back first into an empty canvas
and it should rise fast. How fast is the area under the curve (:func:`auc`), compared with
the area for a random ranking of the same pixels. Such tests measure the map against the
model, not against a human's idea of the object (notebook 08).

* **Deletion** (pixel flipping, "most relevant first"): Samek, Binder, Montavon, Lapuschkin
  & Müller 2017, "Evaluating the visualization of what a deep neural network has learned",
  https://arxiv.org/abs/1509.06321; as deletion/insertion curves in RISE, Petsiuk, Das &
  Saenko 2018, https://arxiv.org/abs/1806.07421. :func:`deletion_curve`,
  :func:`insertion_curve`, :func:`curves`.
* **Remove and retrain** (ROAR): Hooker, Erhan, Kindermans & Kim 2019, "A Benchmark for
  Interpretability Methods in Deep Neural Networks", https://arxiv.org/abs/1806.10758.
  Deleted pixels make images the model never saw, so part of a drop in the deletion curve
  may be the model's surprise, not lost evidence; ROAR retrains on images with the same
  pixels removed, so only the information removed counts. :func:`roar`, :func:`roar_drop`.
* **ROAD**: Rong, Leemann, Borisov, Kasneci & Kasneci 2022, "A Consistent and Efficient
  Evaluation Strategy for Attribution Methods", https://arxiv.org/abs/2202.00449, find
  that such results are strongly affected by information that leaks through the *shape* of
  the removed pixels rather than their values (a hole shaped like the object still says
  where the object is), one reason why different removal strategies (most- or
  least-relevant first, another replacement) can rank the same methods differently.
* **Infidelity and sensitivity**: Yeh, Hsieh, Suggala, Inouye & Ravikumar 2019, "On the
  (In)fidelity and Sensitivity of Explanations", https://arxiv.org/abs/1901.09392, through
  Captum's ``captum.metrics``. :func:`robustness`.

Every function returns tidy data frames; the charts (:func:`curves_chart`,
:func:`roar_chart`) are built from them in a separate step. The curves' forward passes run
through :func:`forward_only` (ONNX Runtime for photos when installed; ``engine="torch"``
keeps them in PyTorch).

Example:
    >>> b = sh.load_model()
    >>> x = b.preprocess(sh.course_photo())
    >>> maps = {m: sh.attribute(m, b, x) for m in ("gradient", "grad_cam")}
    >>> maps["random"] = "random"
    >>> frame = sh.faithfulness.curves(b, x, maps, kind="deletion")
    >>> sh.auc(frame)          # one area per method and image: lower is better
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import torch

from . import training
from ._inference import ENGINES, FORWARD_BATCH, forward_only
from .attribution import (
    METHODS,
    _check_inputs,
    _restored,
    _unpack,
    attribute,
    images_at_once,
    make_baseline,
    resolve_target,
)
from .data import MnistSplit
from .training import TrainConfig

__all__ = [
    "DELETION_BASELINE",
    "EARLY_FRACTIONS",
    "ENGINES",
    "FORWARD_BATCH",
    "INSERTION_BASELINE",
    "KINDS",
    "ORDERS",
    "ROAR_CONFIG",
    "ROAR_FRACTIONS",
    "ROAR_VERDICTS",
    "STEPS",
    "VERDICTS",
    "auc",
    "curves",
    "curves_chart",
    "deletion_curve",
    "edge_map",
    "forward_only",
    "insertion_curve",
    "random_ranking",
    "roar",
    "roar_chart",
    "roar_drop",
    "roar_verdicts",
    "robustness",
    "versus_reference",
]

#: Points on a deletion or insertion curve, after the start: 100 steps of 1% of the pixels.
STEPS = 100
#: Fractions dense where deletion and insertion curves of a photo classifier change most (the
#: first 20% of the pixels), for ``steps=``: 12 points instead of 101.
EARLY_FRACTIONS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0)
#: What deleted pixels become (Samek et al. flip them; RISE's deletion uses black).
DELETION_BASELINE = "black"
#: What insertion starts from: RISE inserts into a blurred copy of the image, so the
#: canvas holds no sharp edges of its own but keeps the image's colours.
INSERTION_BASELINE = "blur"
#: The two curves of :func:`curves`.
KINDS = ("deletion", "insertion")
#: Which pixels go first: the map's highest (MoRF, the usual curve) or its lowest (LeRF).
ORDERS = ("most_relevant_first", "least_relevant_first")
#: ROAR's fractions of pixels removed per image (Hooker et al. use 0.1 ... 0.9).
ROAR_FRACTIONS = (0.0, 0.1, 0.3, 0.5, 0.7)
#: ROAR's recipe: the course's MNIST recipe for a FIXED number of epochs (a target of 1.0 is
#: never reached), so every fraction gets the same training budget; early stopping at 95%
#: would stop the easy k = 0 run first and train the degraded runs longer.
ROAR_CONFIG = TrainConfig(epochs=5, target_accuracy=1.0)


# ---------------------------------------------------------------------------
# Deletion and insertion


def deletion_curve(
    model: Any,
    inputs: torch.Tensor,
    attributions: torch.Tensor | str,
    target: int | str | Sequence[int] | torch.Tensor | None = None,
    steps: int | Sequence[float] = STEPS,
    baseline: Any = DELETION_BASELINE,
    *,
    order: str = "most_relevant_first",
    batch: int | None = None,
    seed: int = 0,
    engine: str = "auto",
) -> pd.DataFrame:
    """The deletion curve: the target's probability as the most relevant pixels are removed.

    Pixels are ranked by the map summed over channels, highest first (ties keep pixel
    order: a stable sort). At step ``i`` (``i = 0 .. steps``) the first
    ``round(i / steps · H · W)`` pixels of that ranking, all channels of each together,
    show the ``baseline`` canvas instead of the image; the model scores every such image.
    A faithful map makes the probability fall fast: a LOW area (:func:`auc`) is good.

    Args:
        model: the object from ``load_model`` or a bare ``nn.Module``; not modified (its
            ``training`` flags are restored).
        inputs: ``(N, C, H, W)`` preprocessed images.
        attributions: maps shaped like ``inputs``, or one map per image ``(N, H, W)`` /
            ``(N, 1, H, W)``; or ``"random"``: a random ranking (seeded by ``seed``), the
            reference curve every map should beat.
        target: the class whose probability is tracked, as for :func:`~.attribute`:
            ``None`` (each image's predicted class, fixed once on the ORIGINAL images), an
            int, a class name, or one per image.
        steps: points after the start; default :data:`STEPS` (100, 1% of pixels each).
            Or the fractions themselves, increasing from 0 to 1, e.g.
            :data:`EARLY_FRACTIONS` (dense where most curves fall: the first 20%).
        baseline: what removed pixels become: a name of :data:`~.attribution.BASELINES`
            (``"zero"``, ``"black"``, ``"white"``, ``"blur"``, ``"noise"``, ``"mean"``),
            a number or a tensor (see :func:`~.make_baseline`). Default ``"black"``. Black,
            white and noise need the ``load_model`` object (its normalisation).
        order: ``"most_relevant_first"`` (default) or ``"least_relevant_first"`` (the
            least relevant pixels go first: a faithful map keeps the score up).
        batch: images per forward pass; default :data:`FORWARD_BATCH`. Only the speed
            depends on it.
        seed: the random ranking's seed when ``attributions="random"``. Default 0.
        engine: what runs the forward passes: ``"auto"`` (default: ONNX Runtime when
            installed, about twice as fast on a CPU, else PyTorch), ``"torch"`` or
            ``"onnx"``. The scores agree to about 1e-6 (see ``saliency_helpers._inference``).

    Returns:
        A tidy frame, one row per image and step, columns ``image`` (0..N-1),
        ``fraction`` (``i / steps``, or the fractions given; 0 to 1), ``score``
        (softmax probability of the target class) and ``target``.

    Example:
        >>> a = sh.attribute("integrated_gradients", b, x)
        >>> frame = deletion_curve(b, x, a)
        >>> sh.auc(frame)  # doctest: +SKIP
        0.04
    """
    return _curve(
        "deletion", model, inputs, attributions, target, steps, baseline, order, batch, seed,
        engine,
    )


def insertion_curve(
    model: Any,
    inputs: torch.Tensor,
    attributions: torch.Tensor | str,
    target: int | str | Sequence[int] | torch.Tensor | None = None,
    steps: int | Sequence[float] = STEPS,
    baseline: Any = INSERTION_BASELINE,
    *,
    order: str = "most_relevant_first",
    batch: int | None = None,
    seed: int = 0,
    engine: str = "auto",
) -> pd.DataFrame:
    """The insertion curve: the target's probability as the most relevant pixels come back.

    The mirror of :func:`deletion_curve` (Petsiuk et al. 2018, RISE,
    https://arxiv.org/abs/1806.07421): step 0 is the ``baseline`` canvas alone, and at
    step ``i`` the first ``round(i / steps · H · W)`` pixels of the ranking show the real
    image. A faithful map makes the probability rise fast: a HIGH area (:func:`auc`) is
    good.

    Args:
        model, inputs, attributions, target, steps, order, batch, seed, engine: as for
            :func:`deletion_curve`.
        baseline: the canvas the pixels are inserted into; default ``"blur"``
            (:data:`INSERTION_BASELINE`, as in RISE).

    Returns:
        A tidy frame with columns ``image``, ``fraction``, ``score``, ``target``.

    Example:
        >>> frame = insertion_curve(b, x, sh.attribute("grad_cam", b, x))
        >>> sh.auc(frame)  # doctest: +SKIP
        0.61
    """
    return _curve(
        "insertion", model, inputs, attributions, target, steps, baseline, order, batch, seed,
        engine,
    )


def _curve(
    kind: str,
    model: Any,
    inputs: torch.Tensor,
    attributions: torch.Tensor | str,
    target: Any,
    steps: int | Sequence[float],
    baseline: Any,
    order: str,
    batch: int | None,
    seed: int,
    engine: str,
) -> pd.DataFrame:
    net, bundle = _unpack(model)
    inputs = _check_images(inputs, bundle)
    n, _, h, w = inputs.shape
    fractions = _fractions(steps)
    steps = len(fractions) - 1
    if batch is not None:
        batch = _positive_int("batch", batch, "images per forward pass, e.g. 16")
    ranks = _ranks(_pixel_scores(attributions, inputs, seed), order)
    canvas = make_baseline(baseline, inputs, bundle)
    # Deletion shows the canvas where a pixel's rank is below the count; insertion the image.
    below, above = (canvas, inputs) if kind == "deletion" else (inputs, canvas)
    counts = torch.tensor([_count(f, h * w) for f in fractions])
    total = (steps + 1) * n
    chunks = []
    with _restored(net):
        net.eval()
        targets = resolve_target(model, inputs, target)
        size = batch or FORWARD_BATCH
        index = torch.as_tensor(targets)
        forward = forward_only(net, inputs, engine)  # ONNX Runtime when installed
        with torch.inference_mode():
            x = torch.empty(min(size, total), *inputs.shape[1:])  # one buffer for every pass
            for start in range(0, total, size):
                # Rows start.. of the (image, step) grid: one perturbed image each. A pass
                # holds consecutive steps of one or two images, written straight into x.
                j = torch.arange(start, min(start + size, total))
                image, step = j // (steps + 1), j % (steps + 1)
                for i in image.unique().tolist():
                    rows = (image == i).nonzero()[:, 0]
                    first, last = int(rows[0]), int(rows[-1]) + 1
                    shown = ranks[i] < counts[step[first:last], None]  # (rows, H*W)
                    cond = shown.view(-1, 1, h, w)
                    torch.where(cond, below[i], above[i], out=x[first:last])
                probs = forward(x[: len(j)]).softmax(dim=1)
                chunks.append(probs.gather(1, index[image, None])[:, 0])
    scores = torch.cat(chunks)  # in (image, step) order, as the frame's rows
    return pd.DataFrame(
        {
            "image": np.repeat(np.arange(n), steps + 1),
            "fraction": np.tile(np.asarray(fractions), n),
            "score": scores.double().numpy(),
            "target": np.repeat(np.asarray(targets), steps + 1),
        }
    )


def _check_images(inputs: Any, bundle: Any) -> torch.Tensor:
    inputs = _check_inputs(inputs, bundle)
    if inputs.dim() != 4:
        raise ValueError(f"inputs must be images shaped (N, C, H, W), got {tuple(inputs.shape)}.")
    return inputs


def _positive_int(name: str, value: Any, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int ({hint}), got {value!r}.")
    return int(value)


def _pixel_scores(attributions: Any, inputs: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """``(N, H * W)``: one relevance per pixel, the map summed over channels."""
    n, c, h, w = inputs.shape
    if isinstance(attributions, str):
        if attributions != "random":
            raise ValueError(f'attributions must be a tensor or "random", got {attributions!r}.')
        generator = torch.Generator().manual_seed(int(seed))
        return torch.rand((n, h * w), generator=generator)
    if isinstance(attributions, np.ndarray):
        attributions = torch.from_numpy(attributions)
    if not isinstance(attributions, torch.Tensor):
        raise TypeError(
            f'attributions must be a tensor (or "random"), not {type(attributions).__name__}.'
        )
    a = attributions.detach().float().cpu()
    if a.dim() == 3:
        a = a.unsqueeze(1)
    if a.dim() != 4 or a.shape[0] != n or a.shape[2:] != (h, w) or a.shape[1] not in (1, c):
        raise ValueError(
            f"attributions of shape {tuple(attributions.shape)} do not fit inputs of shape "
            f"{tuple(inputs.shape)}: pass maps shaped like the inputs, or one map per image "
            f"({n}, {h}, {w}) or ({n}, 1, {h}, {w})."
        )
    if not torch.isfinite(a).all():
        raise ValueError(
            "attributions contain NaN or inf: fix the map first (e.g. torch.nan_to_num), "
            "a pixel without a value cannot be ranked."
        )
    return a.sum(dim=1).reshape(n, h * w)


def _ranks(scores: torch.Tensor, order: str = "most_relevant_first") -> torch.Tensor:
    """``(N, P)``: each pixel's place in the removal order (0 goes first); stable for ties."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}.")
    sequence = torch.argsort(scores, dim=1, descending=order == ORDERS[0], stable=True)
    places = torch.arange(scores.shape[1]).expand_as(sequence)
    return torch.empty_like(sequence).scatter_(1, sequence, places)


def _count(fraction: float, pixels: int) -> int:
    """How many pixels a fraction of them is: ``round(fraction · pixels)``, halves up."""
    return int(np.floor(fraction * pixels + 0.5))


def _fractions(steps: Any) -> list[float]:
    """The fractions of a curve: ``i / steps`` for an int, else the sequence, checked."""
    if isinstance(steps, (int, np.integer)) and not isinstance(steps, bool):
        steps = _positive_int("steps", steps, "e.g. 100")
        return [i / steps for i in range(steps + 1)]
    try:
        fractions = [float(f) for f in steps]
    except (TypeError, ValueError):
        raise TypeError(
            f"steps must be an int (e.g. 100) or fractions from 0 to 1 (e.g. (0, 0.1, 0.5, 1)), "
            f"got {steps!r}."
        ) from None
    increasing = all(a < b for a, b in zip(fractions[:-1], fractions[1:], strict=True))
    if len(fractions) < 2 or fractions[0] != 0 or fractions[-1] != 1 or not increasing:
        raise ValueError(
            f"steps as fractions must increase from 0 to 1 (e.g. (0, 0.1, 0.5, 1)), "
            f"got {steps!r}."
        )
    return fractions


_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy >= 2.0 renamed trapz


def auc(frame: pd.DataFrame) -> float | pd.Series:
    """The area under a deletion or insertion curve: ``score`` over ``fraction``, trapezoids.

    Deletion: LOWER is better (the score falls as soon as the relevant pixels go).
    Insertion: HIGHER is better (it rises as soon as they come back). Compare with the
    area of a random ranking (``attributions="random"``) of the same images.

    Args:
        frame: from :func:`deletion_curve`, :func:`insertion_curve` or :func:`curves`:
            columns ``fraction`` and ``score``; every other column except ``target``
            (e.g. ``image``, ``method``, ``photo``, ``baseline``) names a curve.

    Returns:
        A float when the frame holds one curve (e.g. one image's); for several, a Series
        named ``auc`` indexed by those columns (``auc(frame).groupby("method").mean()``
        averages over images).

    Example:
        >>> line = pd.DataFrame({"fraction": [0.0, 1.0], "score": [1.0, 0.0]})
        >>> auc(line)
        0.5
    """
    missing = {"fraction", "score"} - set(frame.columns)
    if missing:
        raise ValueError(f"frame needs the columns fraction and score; missing {sorted(missing)}.")
    keys = [c for c in frame.columns if c not in ("fraction", "score", "target")]

    def area(curve: pd.DataFrame) -> float:
        curve = curve.sort_values("fraction", kind="stable")
        return float(_trapezoid(curve["score"].to_numpy(), curve["fraction"].to_numpy()))

    groups = list(frame.groupby(keys, sort=False)) if keys else []
    if len(groups) <= 1:
        return area(frame)
    labels = [key if len(keys) > 1 else key[0] for key, _ in groups]
    index = (
        pd.MultiIndex.from_tuples(labels, names=keys)
        if len(keys) > 1
        else pd.Index(labels, name=keys[0])
    )
    return pd.Series([area(g) for _, g in groups], index=index, name="auc")


#: What :func:`versus_reference` calls a method that beats / loses to / ties the reference.
VERDICTS = ("better than random", "worse than random", "not distinguishable")


def versus_reference(
    areas: pd.Series, kind: str = "deletion", reference: str = "random", z: float = 2.0
) -> pd.DataFrame:
    """Is each method's curve better than the reference's? The rule, applied per method.

    For every image the **gain** is how much better the method's area is than the
    reference's on that same image (deletion: ``auc_reference - auc_method``, lower areas
    are better; insertion: ``auc_method - auc_reference``). Over the images:

    * **better** when the mean gain exceeds ``z`` standard errors (``sd / sqrt(n)``);
    * **worse** when it is below ``-z`` standard errors;
    * **not distinguishable** otherwise (also with a single image, where no spread is known).

    A paired comparison, so photos that are easy for every method do not count as wins.

    Args:
        areas: from :func:`auc` of a :func:`curves` frame: a Series indexed by ``method``
            and one or more image columns (``image``, ``photo``).
        kind: ``"deletion"`` or ``"insertion"``: which direction is better.
        reference: the method name of the reference curve (default ``"random"``).
        z: standard errors required (default 2, as the sanity checks' rule).

    Returns:
        One row per method (the reference excluded): ``auc`` and ``auc_sd`` (mean and sd
        over images), ``gain`` and ``gain_se``, ``images``, ``verdict`` (one of
        :data:`VERDICTS`).

    Example:
        >>> versus_reference(auc(curves(b, xs, maps, kind="deletion")))  # doctest: +SKIP
    """
    from .sanity import _mean_se

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    if not isinstance(areas, pd.Series) or "method" not in (areas.index.names or []):
        raise ValueError("areas must be auc(frame) of a curves() frame: indexed by method.")
    wide = areas.unstack("method")
    if reference not in wide.columns:
        raise ValueError(f"no {reference!r} curve in areas: add maps[{reference!r}] = 'random'.")
    sign = 1.0 if kind == "insertion" else -1.0
    rows = []
    order = dict.fromkeys(areas.index.get_level_values("method"))  # the caller's order
    for method in [m for m in order if m != reference]:
        mean, se, n, outcome = _paired_rule(sign * (wide[method] - wide[reference]), z)
        auc_mean, auc_sd, _, _, _ = _mean_se(wide[method])
        verdict = VERDICTS[outcome]
        rows.append({"method": method, "auc": auc_mean, "auc_sd": auc_sd, "gain": mean,
                     "gain_se": se, "images": n, "verdict": verdict})
    return pd.DataFrame(rows).set_index("method")


def _paired_rule(gain: Any, z: float) -> tuple[float, float, int, int]:
    """:func:`~.comparison.paired_rule` as (mean, se, n, 0 better / 1 worse / 2 neither)."""
    from .comparison import paired_rule

    r = paired_rule(gain, z)
    outcome = {"higher": 0, "lower": 1, "not distinguishable": 2}[r["outcome"]]
    return r["mean"], r["se"], r["n"], outcome


def curves(
    model: Any,
    inputs: torch.Tensor,
    maps: Mapping[str, torch.Tensor | str],
    kind: str = "deletion",
    steps: int | Sequence[float] = STEPS,
    baseline: Any = None,
    images: Sequence[str] | None = None,
    *,
    target: Any = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """Deletion or insertion curves of several methods' maps of the same images.

    Args:
        model: the object from ``load_model`` or a bare ``nn.Module``.
        inputs: ``(N, C, H, W)`` preprocessed images.
        maps: ``{method: attributions}``, each as for :func:`deletion_curve` (a tensor
            or ``"random"``).
        kind: ``"deletion"`` (default) or ``"insertion"``.
        steps: points after the start (default 100), or the fractions, as for
            :func:`deletion_curve`.
        baseline: the replacement (deletion) or canvas (insertion); default the kind's
            own (:data:`DELETION_BASELINE`, :data:`INSERTION_BASELINE`).
        images: ``N`` names of the photos, added as a ``photo`` column.
        target: fixed once on the original images for every method (as for
            :func:`deletion_curve`).
        **kwargs: ``order``, ``batch``, ``seed``, ``engine`` of :func:`deletion_curve`.

    Returns:
        A tidy frame: ``method``, (``photo``), ``image``, ``fraction``, ``score``,
        ``target``.

    Example:
        >>> frame = curves(b, x, {"gradient": g, "random": "random"}, images=["corella"])
        >>> auc(frame)  # doctest: +SKIP
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    if not maps:
        raise ValueError("maps is empty: give {method name: attributions}.")
    net, bundle = _unpack(model)
    inputs = _check_images(inputs, bundle)
    names = None if images is None else [str(i) for i in images]
    if names is not None and len(names) != len(inputs):
        raise ValueError(f"Got {len(names)} image names for {len(inputs)} images.")
    with _restored(net):
        net.eval()
        targets = resolve_target(model, inputs, target)
    run = deletion_curve if kind == "deletion" else insertion_curve
    if baseline is None:
        baseline = DELETION_BASELINE if kind == "deletion" else INSERTION_BASELINE
    baseline = make_baseline(baseline, inputs, bundle)  # once for every method (blur is costly)
    frames = [
        run(model, inputs, a, targets, steps, baseline, **kwargs).assign(method=method)
        for method, a in maps.items()
    ]
    frame = pd.concat(frames, ignore_index=True)
    columns = ["method", "image", "fraction", "score", "target"]
    if names is not None:
        frame["photo"] = [names[i] for i in frame["image"]]
        columns.insert(1, "photo")
    return frame[columns]


def edge_map(inputs: torch.Tensor, model: Any = None) -> torch.Tensor:
    """A model-free map: the Sobel edge magnitude of each image, shaped like ``inputs``.

    The reference a saliency map should beat in a faithfulness test: an edge detector
    knows nothing about the model, so a method doing no better than it is not showing
    what the model uses. Reuses notebook 06's :func:`saliency_helpers.sanity.edge_map`
    (``skimage.filters.sobel`` of the grayscale photo in ``[0, 1]``).

    Args:
        inputs: ``(N, 3, H, W)`` or ``(N, 1, H, W)`` images.
        model: the ``load_model`` object (or a ``(mean, std)`` pair) whose normalisation
            is undone first; ``None`` (default) takes ``inputs`` as pixels in ``[0, 1]``
            already (MNIST digits).

    Returns:
        ``(N, C, H, W)``: each image's edge map, repeated over its channels.

    Example:
        >>> edge_map(x, b).shape
        torch.Size([1, 3, 224, 224])
    """
    from .sanity import edge_map as sobel_edges  # skimage: loaded only when used

    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4 or inputs.shape[1] not in (1, 3):
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs)
        raise ValueError(f"inputs must be images shaped (N, 3, H, W) or (N, 1, H, W), got {shape}.")
    n, c, h, w = inputs.shape
    if model is None:
        model = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    # A grey image as three equal channels: the grayscale weights add up to 1.
    rgb = inputs.detach().cpu().float().expand(n, 3, h, w)
    edges = torch.stack([sobel_edges(rgb[i : i + 1], model) for i in range(n)])
    return edges[:, None].expand(n, c, h, w).contiguous()


def random_ranking(inputs: torch.Tensor, block: int = 1, seed: int = 0) -> torch.Tensor:
    """A random ranking of squares of ``block`` × ``block`` pixels: a reference of a given grain.

    ``"random"`` ranks single pixels, so its deletion curve removes scattered pixels. A map
    whose values come in squares (occlusion's window steps, Grad-CAM's feature cells)
    removes whole regions at a time instead, and the curves depend on that grain as well as
    on which regions come first. A random ranking of squares of the same size is the
    reference that differs from such a map only in *which* squares it ranks highest. Pixels
    inside a square follow each other in a random order; edge squares are cut to the image.

    Args:
        inputs: ``(N, C, H, W)`` images (only the shape is used).
        block: the side of a square in pixels (1: single pixels, like ``"random"``).
        seed: seeds the ranking, so the same call gives the same ranking.

    Returns:
        ``(N, 1, H, W)``: a map to pass wherever a method's map goes (``curves``,
        ``deletion_curve``); higher values are removed first.

    Example:
        >>> maps["random 32 px"] = random_ranking(xs, block=32)
    """
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4:
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs)
        raise ValueError(f"inputs must be images shaped (N, C, H, W), got {shape}.")
    n, _, h, w = inputs.shape
    if isinstance(block, bool) or not isinstance(block, int) or not 1 <= block <= max(h, w):
        raise ValueError(
            f"block must be a whole number of pixels from 1 to {max(h, w)}, got {block!r}."
        )
    generator = torch.Generator().manual_seed(int(seed))
    rows, cols = -(-h // block), -(-w // block)
    squares = torch.rand((n, 1, rows * cols), generator=generator).argsort(dim=-1).argsort(dim=-1)
    place = squares.view(n, 1, rows, cols).float()  # each square's place: 0 ... rows*cols - 1
    place = place.repeat_interleave(block, dim=2).repeat_interleave(block, dim=3)[..., :h, :w]
    return place + torch.rand((n, 1, h, w), generator=generator)  # random order inside a square


# ---------------------------------------------------------------------------
# ROAR: remove and retrain


def roar(
    data: MnistSplit,
    rankings: Mapping[str, Mapping[str, torch.Tensor] | Callable[[torch.Tensor], Any] | str],
    fractions: Sequence[float] = ROAR_FRACTIONS,
    replacement: str | float = "mean",
    config: TrainConfig | None = None,
    progress: bool = False,
    cache: bool = True,
    seeds: Sequence[int] | None = None,
) -> pd.DataFrame:
    """ROAR on MNIST: remove each map's top pixels from every digit, retrain, test.

    Hooker et al. 2019, https://arxiv.org/abs/1806.10758. For each ranking and fraction
    ``k``, the ``round(k · 784)`` pixels that the map ranks highest in each digit (summed
    over channels; stable sort) are replaced by ``replacement`` in the training,
    validation AND test digits; a fresh :class:`~.training.SmallCNN` is trained on the
    result with ``training.train(config, data=...)`` (cached by recipe and data
    fingerprint) and its test accuracy recorded. A faithful method removes the
    information the task needs: its accuracy falls faster than a random ranking's.
    ``k = 0`` (the unmodified data) is trained once and shared by every ranking.

    Caveat (Rong et al. 2022, ROAD, https://arxiv.org/abs/2202.00449): the removed
    pixels' positions can themselves give the class away (a digit-shaped hole), so a
    method may look worse than random for the wrong reason.

    Args:
        data: a :class:`~.data.MnistSplit` (``load_mnist()``).
        rankings: ``{name: ranking}``; each ranking is one of
            a dict ``{"train": (N_train, 1, 28, 28), "val": (N_val, ...), "test":
            (N_test, ...)}`` of maps for ALL of ``data``'s digits (``(N, 28, 28)`` also
            works); a callable ``f(images) -> maps`` called once per split, e.g.
            ``lambda x: sh.attribute("gradient", model, x)``; or ``"random"`` (a seeded
            random ranking, the reference).
        fractions: fractions of pixels removed; default :data:`ROAR_FRACTIONS`. Include
            0 for :func:`roar_drop`.
        replacement: ``"mean"`` (default: the training digits' per-channel mean, as in
            ROAR) or a number (e.g. 0.0, the background).
        config: the recipe; default :data:`ROAR_CONFIG` (5 epochs, no early stopping).
            With ``n_train`` set only the first ``n_train`` training digits are ranked
            and used. Shrink ``epochs`` and ``n_train`` to fit a time budget.
        progress: tqdm bars while training.
        cache: the training cache (see :func:`~.training.train`).
        seeds: training seeds (``config.seed`` replaced by each): one retrained network
            per ranking, fraction and seed, so :func:`roar_verdicts` can compare a method
            with the random ranking against the run-to-run noise of training. Default:
            ``(config.seed,)``. The rankings are computed once for every seed.

    Returns:
        A tidy frame, one row per ranking, fraction and seed: ``method``, ``fraction``,
        ``seed``, ``test_accuracy``, ``seconds`` (training time of the run, shared by
        k = 0's rows), ``from_cache``.

    Example:
        >>> data = sh.data.load_mnist()
        >>> net = sh.training.train().model
        >>> frame = roar(data, {"gradient": lambda x: sh.attribute("gradient", net, x),
        ...                     "random": "random"})            # doctest: +SKIP
        >>> roar_drop(frame)                                     # doctest: +SKIP
    """
    config = ROAR_CONFIG if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}.")
    if not isinstance(data, MnistSplit):
        raise TypeError(f"data must be a MnistSplit (load_mnist()), got {type(data).__name__}.")
    if not rankings:
        raise ValueError('rankings is empty: give e.g. {"random": "random"}.')
    ks = sorted({_fraction(k) for k in fractions})
    if not ks:
        raise ValueError("fractions is empty: give e.g. (0.0, 0.5).")
    used = data
    if config.n_train is not None:
        n = config.n_train
        used = _split(data, data.x_train[:n], data.x_val, data.x_test, data.y_train[:n])
    splits = {"train": used.x_train, "val": used.x_val, "test": used.x_test}
    value = _replacement(replacement, used.x_train)
    ranks = {name: _roar_ranks(name, r, splits) for name, r in rankings.items()}

    seeds = [config.seed] if seeds is None else [int(seed) for seed in seeds]
    if not seeds:
        raise ValueError("seeds is empty: give e.g. (0, 1), or leave it out for config.seed.")
    results: dict[tuple[str, float, int], Any] = {}
    with warnings.catch_warnings():
        # A fixed epoch budget is ROAR's recipe, not a failure to report.
        warnings.filterwarnings("ignore", message="Training on .* without reaching")
        for seed in seeds:
            recipe = replace(config, seed=seed)
            for k in ks:
                if k == 0:
                    shared = training.train(recipe, data=used, cache=cache, progress=progress)
                    results.update({(name, k, seed): shared for name in rankings})
                    continue
                for name in rankings:
                    removed = {s: _remove(x, ranks[name][s], k, value) for s, x in splits.items()}
                    modified = _split(used, removed["train"], removed["val"], removed["test"])
                    results[name, k, seed] = training.train(
                        recipe, data=modified, cache=cache, progress=progress
                    )
    rows = [
        {
            "method": name,
            "fraction": k,
            "seed": seed,
            "test_accuracy": float(results[name, k, seed].test_accuracy),
            "seconds": float(results[name, k, seed].seconds),
            "from_cache": bool(results[name, k, seed].from_cache),
        }
        for name in rankings
        for k in ks
        for seed in seeds
    ]
    return pd.DataFrame(rows)


def roar_drop(frame: pd.DataFrame) -> pd.Series:
    """ROAR's summary: test accuracy at k = 0 minus the mean test accuracy over k > 0.

    The mean over every fraction removed (not only the largest) is less noisy than one
    retrained model; larger is better, and a method should beat ``"random"``. With
    several seeds, the drop is taken per seed and then averaged.

    Args:
        frame: from :func:`roar`, with ``fraction`` 0 among its rows.

    Returns:
        A Series named ``roar_drop``, indexed by ``method`` (in the frame's order).

    Example:
        >>> roar_drop(frame)  # doctest: +SKIP
        method
        gradient    0.21
        random      0.08
        Name: roar_drop, dtype: float64
    """
    per_seed = _drops_per_seed(frame)
    return per_seed.mean().rename("roar_drop").rename_axis("method")


def roar_verdicts(frame: pd.DataFrame, reference: str = "random", z: float = 2.0) -> pd.DataFrame:
    """Does removing a method's top pixels cost more accuracy than removing random ones?

    The rule, per method, paired by training seed: the **gain** is the method's
    :func:`roar_drop` minus the reference's, on the same seed. **More than random** when the
    mean gain over seeds exceeds ``z`` standard errors, **less than random** when it is below
    ``-z`` standard errors, **not distinguishable** otherwise (always with a single seed:
    one retrained network per point says nothing about training noise).

    Args:
        frame: from :func:`roar` with ``fraction`` 0 among its rows (``seeds=`` for spread).
        reference: the ranking compared with (default ``"random"``).
        z: standard errors required (default 2, as :func:`versus_reference`).

    Returns:
        One row per method (reference excluded): ``drop`` and ``drop_sd`` over seeds,
        ``gain`` and ``gain_se``, ``seeds``, ``verdict`` (one of :data:`ROAR_VERDICTS`).

    Example:
        >>> roar_verdicts(roar(data, rankings, seeds=(0, 1, 2)))  # doctest: +SKIP
    """
    from .sanity import _mean_se

    per_seed = _drops_per_seed(frame)
    if reference not in per_seed.columns:
        raise ValueError(f"no {reference!r} ranking in the frame: add rankings[{reference!r}].")
    rows = []
    for method in [m for m in per_seed.columns if m != reference]:
        mean, se, n, outcome = _paired_rule(per_seed[method] - per_seed[reference], z)
        drop, drop_sd, _, _, _ = _mean_se(per_seed[method])
        verdict = ROAR_VERDICTS[outcome]
        rows.append({"method": method, "drop": drop, "drop_sd": drop_sd, "gain": mean,
                     "gain_se": se, "seeds": n, "verdict": verdict})
    return pd.DataFrame(rows).set_index("method")


#: The outcomes of :func:`roar_verdicts`.
ROAR_VERDICTS = ("more than random", "less than random", "not distinguishable")


def _drops_per_seed(frame: pd.DataFrame) -> pd.DataFrame:
    """``(seeds x methods)`` drops: accuracy at k = 0 minus the mean over k > 0, per seed."""
    if not (frame["fraction"] == 0).any() or not (frame["fraction"] > 0).any():
        raise ValueError("roar_drop needs rows at fraction 0 and at some fraction above 0.")
    data = frame if "seed" in frame.columns else frame.assign(seed=0)
    methods = list(dict.fromkeys(data["method"]))
    start = data[data["fraction"] == 0].groupby(["seed", "method"])["test_accuracy"].mean()
    rest = data[data["fraction"] > 0].groupby(["seed", "method"])["test_accuracy"].mean()
    return (start - rest).unstack("method")[methods]


def _fraction(k: Any) -> float:
    if isinstance(k, bool) or not isinstance(k, (int, float, np.floating)) or not 0 <= k <= 1:
        raise ValueError(f"fractions must be numbers in [0, 1] (e.g. 0.3), got {k!r}.")
    return float(k)


def _split(data: MnistSplit, x_train, x_val, x_test, y_train=None) -> MnistSplit:
    """``data`` with new digits (and, for ``n_train``, the matching training labels)."""
    y_train = data.y_train if y_train is None else y_train
    return replace(data, x_train=x_train.contiguous(), y_train=y_train,
                   x_val=x_val.contiguous(), x_test=x_test.contiguous())  # fmt: skip


def _replacement(replacement: Any, x_train: torch.Tensor) -> torch.Tensor:
    """``(1, C, 1, 1)``: the value removed pixels get."""
    if isinstance(replacement, str):
        if replacement != "mean":
            raise ValueError(f'replacement must be "mean" or a number, got {replacement!r}.')
        return x_train.mean(dim=(0, 2, 3)).view(1, -1, 1, 1)
    if isinstance(replacement, bool) or not isinstance(replacement, (int, float)):
        raise ValueError(f'replacement must be "mean" or a number, got {replacement!r}.')
    return torch.full((1, x_train.shape[1], 1, 1), float(replacement))


def _roar_ranks(name: str, ranking: Any, splits: dict[str, torch.Tensor]) -> dict:
    """``{split: (N, P) ranks}`` of one ranking, computed once for every fraction."""
    out = {}
    for i, (split, x) in enumerate(splits.items()):
        if isinstance(ranking, str) or callable(ranking):
            maps = ranking if isinstance(ranking, str) else ranking(x)
            seed = i  # "random": another draw per split
        elif isinstance(ranking, Mapping):
            if split not in ranking:
                raise ValueError(
                    f"rankings[{name!r}] needs maps for train, val and test; {split!r} is missing."
                )
            maps = ranking[split]
            if isinstance(maps, torch.Tensor) and split == "train":
                maps = maps[: len(x)]  # config.n_train: the digits trained on
            seed = 0
        else:
            raise TypeError(
                f'rankings[{name!r}] must be a dict of maps, a function or "random", '
                f"not {type(ranking).__name__}."
            )
        try:
            out[split] = _ranks(_pixel_scores(maps, x, seed))
        except ValueError as err:
            raise ValueError(f"rankings[{name!r}][{split!r}]: {err}") from None
    return out


def _remove(x: torch.Tensor, ranks: torch.Tensor, k: float, value: torch.Tensor) -> torch.Tensor:
    """``x`` with its top ``round(k · H · W)`` pixels per image set to ``value``."""
    n, _, h, w = x.shape
    removed = (ranks < _count(k, h * w)).view(n, 1, h, w)
    return torch.where(removed, value.to(x.dtype), x)


# ---------------------------------------------------------------------------
# Infidelity and sensitivity (Captum's metrics)


def robustness(
    method: str,
    model: Any,
    inputs: torch.Tensor,
    target: int | str | Sequence[int] | torch.Tensor | None = None,
    *,
    n_perturb: int = 10,
    perturb_radius: float = 0.02,
    noise_sd: float = 0.1,
    normalize: bool = True,
    seed: int = 0,
    **method_kwargs: Any,
) -> dict[str, float]:
    """Infidelity and max-sensitivity of a method (Yeh et al. 2019), by Captum's metrics.

    * ``infidelity`` (``captum.metrics.infidelity``): the mean squared gap between
      ``Iᵀ · attributions`` and the change of the target's logit ``f(x) − f(x − I)`` for
      random Gaussian perturbations ``I``. Lower is better. With ``normalize=True``
      (default, as in the paper's code) the map is first scaled by its best factor, so
      maps of different units compare. Small Gaussian noise asks "is the map the
      gradient?": it favours local methods (gradient), less so Input×Gradient, IG or
      Grad-CAM, whose maps answer another question.
    * ``sensitivity_max`` (``captum.metrics.sensitivity_max``): the largest relative
      change of the map, ``‖Φ(x + δ) − Φ(x)‖ / ‖Φ(x)‖``, over ``n_perturb`` uniform
      perturbations ``δ`` with ``|δ| ≤ perturb_radius``. Lower is more stable.

    Args:
        method: a name of :data:`~.attribution.METHODS`.
        model: the object from ``load_model`` or a bare ``nn.Module``; not modified.
        inputs: ``(N, ...)`` preprocessed inputs.
        target: as for :func:`~.attribute`; fixed once on the original inputs.
        n_perturb: perturbations per input for each metric. Default 10.
        perturb_radius: sensitivity's L∞ radius, in the model's input units (a
            preprocessed photo spans about 4.5 of them, an MNIST digit 1). Default 0.02
            (Captum's).
        noise_sd: standard deviation of infidelity's Gaussian perturbations, in input
            units. Default 0.1.
        normalize: scale-invariant infidelity (Captum's ``normalize``). Default True.
        seed: seeds both metrics' noise; the caller's global RNG is restored.
        **method_kwargs: the method's own arguments, as for :func:`~.attribute`. A named
            ``baselines`` is made a tensor from the original inputs once, and the
            perturbed copies share it.

    Returns:
        ``{"infidelity": ..., "sensitivity_max": ...}``, each the mean over the inputs.

    Example:
        >>> robustness("gradient", b, x)  # doctest: +SKIP
        {'infidelity': 0.8, 'sensitivity_max': 0.3}
    """
    from captum.metrics import infidelity, sensitivity_max  # loaded only when used

    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of {sorted(METHODS)}.")
    n_perturb = _positive_int("n_perturb", n_perturb, "e.g. 10")
    for name, value in (("perturb_radius", perturb_radius), ("noise_sd", noise_sd)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{name} must be a number >= 0 (input units), got {value!r}.")
    net, bundle = _unpack(model)
    inputs = _check_inputs(inputs, bundle)
    n = len(inputs)

    def explain(x: torch.Tensor | tuple[torch.Tensor, ...], target: Any, **kwargs: Any) -> Any:
        # Captum's convention: a tuple of inputs in, a tuple of maps out (and the
        # baselines it repeats for the perturbed copies come as a tuple too).
        if isinstance(kwargs.get("baselines"), tuple):
            kwargs["baselines"] = kwargs["baselines"][0]
        with torch.enable_grad():  # sensitivity_max runs under no_grad
            if isinstance(x, tuple):
                return (attribute(method, model, x[0], target, **kwargs),)
            return attribute(method, model, x, target, **kwargs)

    generator = torch.Generator().manual_seed(int(seed))

    def gaussian(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype) * noise_sd
        return noise, x - noise

    with _restored(net), torch.random.fork_rng(devices=[]):
        net.eval()
        torch.manual_seed(int(seed))  # sensitivity's default perturbation draws from it
        targets = resolve_target(model, inputs, target)
        if "baselines" in method_kwargs:  # a tensor, which Captum repeats per perturbed copy
            method_kwargs["baselines"] = make_baseline(method_kwargs["baselines"], inputs, bundle)
        # Between one batch of the inputs and all their perturbed copies at once.
        at_once = min(n * n_perturb, max(n, images_at_once(net, inputs)))
        attributions = explain(inputs, targets, **method_kwargs)
        infid = infidelity(
            net,
            gaussian,
            inputs,
            attributions,
            target=targets,
            n_perturb_samples=n_perturb,
            max_examples_per_batch=at_once,
            normalize=normalize,
        )
        sens = sensitivity_max(
            explain,
            inputs,
            perturb_radius=float(perturb_radius),
            n_perturb_samples=n_perturb,
            max_examples_per_batch=at_once,
            target=targets,
            **method_kwargs,
        )
    return {"infidelity": float(infid.mean()), "sensitivity_max": float(sens.mean())}


# ---------------------------------------------------------------------------
# Charts (Altair, from the tidy frames above)


def curves_chart(
    frame: pd.DataFrame, kind: str = "deletion", columns: int = 4, title: str | None = None
) -> alt.FacetChart:
    """Deletion or insertion curves, one panel per method: the mean over images and a band.

    The frame is summarised before charting (mean, min and max per method and step), so
    the chart holds ``methods x (steps + 1)`` rows whatever the number of images.

    Args:
        frame: from :func:`curves` (or one :func:`deletion_curve`, drawn as ``"map"``).
        kind: ``"deletion"`` or ``"insertion"``: the axis title and which AUC is better.
        columns: panels per row.
        title: chart title; default names the kind, the images and what is better.

    Returns:
        A faceted Altair chart; each panel's title gives the mean AUC over images.

    Example:
        >>> curves_chart(curves(b, x, maps, kind="insertion"), kind="insertion")
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    data = frame if "method" in frame.columns else frame.assign(method="map")
    methods = list(dict.fromkeys(data["method"]))
    areas = {  # the mean over images of each image's area
        m: float(np.mean(auc(g[["image", "fraction", "score"]])))
        for m, g in data.groupby("method", sort=False)
    }
    labels = {m: f"{m} (AUC {areas[m]:.3f})" for m in methods}
    summary = (
        data.groupby(["method", "fraction"], sort=False)["score"]
        .agg(mean="mean", lo="min", hi="max")
        .reset_index()
    )
    summary["panel"] = summary["method"].map(labels)
    verb = "removed" if kind == "deletion" else "inserted"
    x = alt.X("fraction:Q", title=f"fraction of pixels {verb}", scale=alt.Scale(domain=[0, 1]))
    base = alt.Chart().encode(x=x)
    band = base.mark_area(opacity=0.25).encode(
        y=alt.Y("lo:Q", title="probability of the class"), y2="hi:Q"
    )
    line = base.mark_line().encode(
        y="mean:Q",
        tooltip=[
            "method",
            alt.Tooltip("fraction:Q", format=".2f"),
            alt.Tooltip("mean:Q", format=".3f"),
        ],
    )
    n = data["image"].nunique()
    better = "lower" if kind == "deletion" else "higher"
    default = (
        f"{kind.capitalize()}: mean over {n} image(s), band min to max; {better} AUC is better"
    )
    return (
        alt.layer(band, line, data=summary)
        .properties(width=170, height=130)
        .facet(
            facet=alt.Facet("panel:N", sort=[labels[m] for m in methods], title=None),
            columns=columns,
        )
        .properties(title=title or default)
    )


def roar_chart(frame: pd.DataFrame, title: str | None = None) -> alt.Chart:
    """ROAR: test accuracy against the fraction of pixels removed, one line per method.

    The ``"random"`` ranking, the reference, is drawn grey and dashed: a faithful
    method's line falls below it.

    Args:
        frame: from :func:`roar` (several seeds: their mean is drawn).
        title: chart title.

    Returns:
        An Altair chart.

    Example:
        >>> roar_chart(roar(data, rankings))  # doctest: +SKIP
    """
    methods = list(dict.fromkeys(frame["method"]))
    palette = iter(
        ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
         "#bcbd22", "#17becf"]
    )  # fmt: skip
    colors = [("#7f7f7f" if m == "random" else next(palette, "#000000")) for m in methods]
    data = (  # the mean over seeds: one line per method
        frame.groupby(["method", "fraction"], sort=False)["test_accuracy"].mean().reset_index()
    )
    data = data.assign(reference=data["method"] == "random")
    return (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X("fraction:Q", title="fraction of pixels removed (and retrained)"),
            y=alt.Y("test_accuracy:Q", title="test accuracy", scale=alt.Scale(zero=False)),
            color=alt.Color(
                "method:N", sort=methods, scale=alt.Scale(domain=methods, range=colors)
            ),
            strokeDash=alt.StrokeDash(
                "reference:N",
                legend=None,
                scale=alt.Scale(domain=[False, True], range=[[1, 0], [5, 3]]),
            ),
            tooltip=["method", "fraction", alt.Tooltip("test_accuracy:Q", format=".3f")],
        )
        .properties(
            width=320,
            height=220,
            title=title or "ROAR: remove the top pixels, retrain, test (lower is more faithful)",
        )
    )
