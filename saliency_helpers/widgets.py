"""Interactive explorers: turn a knob, see the saliency map change.

Each explorer is a small class holding ipywidgets controls, a status line and an
``ipywidgets.Output`` that shows an Altair chart from :func:`~saliency_helpers.plots.heatmaps`
or :func:`~saliency_helpers.plots.cascade_grid`. It recomputes at most what changed:
attributions are kept in a dict on the explorer, keyed by the settings that produced them,
so going back to an earlier setting costs nothing (``.computations`` counts the attribution
runs actually made). Nothing is cached at module level and importing this module changes no
global state.

* :class:`MethodExplorer`: method and target class, on one photo.
* :class:`IGExplorer`: Integrated Gradients' ``n_steps``, baseline and integration rule, with
  the completeness error.
* :class:`SmoothGradExplorer`: SmoothGrad's noise level σ and number of samples.
* :class:`CascadeExplorer`: a slider down the model-randomization cascade.

Every explorer has ``.widget`` (the container to display; the explorer itself also displays
as it when it is the last expression of a cell), ``.controls`` (name -> widget), ``.update(**
settings)``, ``.chart`` (the last chart, ``None`` after bad input), ``.attributions`` (the
tensor behind it, ``(1, C, H, W)``), ``.message`` (the status line as text) and
``.computations``.

Bad input typed into a control (an unknown class name, say) shows a message in the status
line instead of a traceback; a genuine bug still shows its traceback, inside the output.

Example:
    >>> b = sh.load_model()
    >>> x = b.preprocess(sh.course_photo())
    >>> sh.widgets.method_explorer(b, x)      # last expression of a notebook cell
"""

from __future__ import annotations

import html
import math
import time
import warnings
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import altair as alt
import ipywidgets
import pandas as pd
import torch
from IPython import get_ipython
from IPython.display import display

from .attribution import (
    BASELINES,
    COMPLETENESS_TOLERANCE,
    COURSE_METHODS,
    CompletenessWarning,
    attribute,
    resolve_target,
)
from .config import scaled
from .images import denormalize
from .maps import reduce_channels, to_frame
from .models import ModelBundle
from .plots import cascade_grid, heatmaps, similarity_lines
from .sanity import (
    FRAME_SIZE,
    METRICS,
    ORIGINAL,
    CascadeResult,
    cascade_walk,
    edge_map,
    randomized_models,
    similarity,
    stage_attributions,
)

__all__ = [
    "CASCADE_METHODS",
    "EXPLORER_METHODS",
    "IG_STEPS_OPTIONS",
    "SAMPLES_OPTIONS",
    "CascadeExplorer",
    "IGExplorer",
    "MethodExplorer",
    "SmoothGradExplorer",
    "cascade_explorer",
    "ig_explorer",
    "method_explorer",
    "smoothgrad_explorer",
]

#: Methods offered by :class:`MethodExplorer` by default.
EXPLORER_METHODS = COURSE_METHODS
#: Choices of :class:`IGExplorer`'s ``n_steps`` slider (doubling: the error shrinks visibly).
IG_STEPS_OPTIONS = (8, 16, 32, 64, 128, 256)
#: Integration rules offered by :class:`IGExplorer` (Captum's ``method=``).
IG_RULES = ("gausslegendre", "riemann_trapezoid", "riemann_middle", "riemann_left")
#: Choices of :class:`SmoothGradExplorer`'s samples slider.
SAMPLES_OPTIONS = (1, 2, 4, 8, 16, 32, 64)
#: Methods of :class:`CascadeExplorer` by default: one that passes, one that fails.
CASCADE_METHODS = ("gradient", "guided_backprop")
#: Panel side in px of the explorers' heatmaps (two or three panels stay well under 1 MB).
PANEL = 200


def _heavy_defaults() -> dict[str, dict[str, Any]]:
    """Sizes of the slow methods inside the explorers: a click should answer in seconds."""
    return {
        "integrated_gradients": {"n_steps": scaled(32, 8)},
        "smoothgrad": {"nt_samples": scaled(16, 4)},
    }


def _in_ipython() -> bool:
    return get_ipython() is not None


class _Explorer:
    """Shared machinery: controls, status line, output, per-settings cache, redraw.

    Subclasses fill ``self.controls`` and implement ``_draw(settings) -> (chart, note)``.
    """

    def __init__(self, bundle: ModelBundle, x: torch.Tensor) -> None:
        if not isinstance(bundle, ModelBundle):
            raise TypeError(
                f"bundle must be the object from sh.load_model(), not {type(bundle).__name__}."
            )
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[0] != 1:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"x must be ONE preprocessed image shaped (1, 3, H, W), got {shape}: "
                "use x = bundle.preprocess(photo)."
            )
        self.bundle = bundle
        self.x = x.detach()
        self.photo = denormalize(self.x, bundle)[0]
        self.computations = 0
        self.chart: alt.TopLevelMixin | None = None
        self.attributions: torch.Tensor | None = None
        self.message = ""
        self.controls: dict[str, ipywidgets.Widget] = {}
        self.status = ipywidgets.HTML()
        self.output = ipywidgets.Output()
        self._cache: dict[Hashable, Any] = {}
        self._quiet = False  # True while update() sets several controls: draw once at the end

    # -- building ---------------------------------------------------------------

    def _finish(self) -> None:
        """Wire the controls, assemble ``.widget`` and draw the first chart."""
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self.widget = ipywidgets.VBox(
            [ipywidgets.HBox(list(self.controls.values())), self.status, self.output]
        )
        self.refresh()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict | None:
        return self.widget._repr_mimebundle_(**kwargs)

    # -- settings ---------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """The current value of every control, by control name."""
        return {name: control.value for name, control in self.controls.items()}

    def update(self, **settings: Any) -> alt.TopLevelMixin | None:
        """Set several controls at once and redraw once.

        Args:
            **settings: control name -> value, e.g. ``n_steps=64, baseline="black"``.

        Returns:
            The new chart (``None`` if the settings were rejected; see ``.message``).
        """
        unknown = sorted(set(settings) - set(self.controls))
        if unknown:
            raise ValueError(
                f"Unknown setting(s) {unknown}; this explorer has {list(self.controls)}."
            )
        for name, value in settings.items():
            options = getattr(self.controls[name], "options", None)
            if options is not None and value not in _option_values(options):
                raise ValueError(
                    f"{name}={value!r} is not offered; choose one of {_option_values(options)}."
                )
        self._quiet = True
        try:
            for name, value in settings.items():
                self.controls[name].value = value
        finally:
            self._quiet = False
        return self.refresh()

    def _on_change(self, change: dict) -> None:
        if not self._quiet:
            self.refresh()

    # -- drawing ----------------------------------------------------------------

    def _draw(self, settings: dict[str, Any]) -> tuple[alt.TopLevelMixin, str]:
        raise NotImplementedError

    def _cached(self, key: Hashable, compute: Callable[[], Any], runs: int = 1) -> Any:
        """``compute()`` once per ``key``; ``runs`` attribution runs are counted the first time."""
        if key not in self._cache:
            self._cache[key] = compute()
            self.computations += runs
        return self._cache[key]

    def _say(self, text: str, error: bool = False) -> None:
        self.message = text
        style = "color:#b2182b;font-weight:bold" if error else "color:#333"
        lines = "<br>".join(html.escape(line) for line in text.splitlines())
        self.status.value = f'<span style="{style}">{lines}</span>'

    def refresh(self) -> alt.TopLevelMixin | None:
        """Recompute what the current settings need (cached) and show the chart.

        Returns:
            The chart, or ``None`` when the settings are invalid (the reason is in ``.message``).
        """
        self._say("computing …")
        self.chart = self.attributions = None
        shell = _in_ipython()
        # Inside the output, an unexpected error shows its traceback there (in a notebook)
        # instead of vanishing into the kernel log, as errors in widget callbacks do.
        with self.output:
            if shell:
                self.output.clear_output(wait=True)
            start = time.perf_counter()
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", CompletenessWarning)
                    chart, note = self._draw(self.settings())
            except (ValueError, TypeError) as err:  # bad input: a message, not a traceback
                self.attributions = None
                self._say(str(err), error=True)
                if shell:
                    self.output.clear_output()  # no stale chart under the message
                return None
            except Exception:
                self.attributions = None
                self._say("unexpected error: see the traceback below", error=True)
                raise
            notes = [note] + [str(w.message) for w in caught if w.category is CompletenessWarning]
            seconds = time.perf_counter() - start
            notes.append(f"({seconds:.1f} s; {self.computations} attribution runs so far)")
            self.chart = chart
            self._say("\n".join(n for n in notes if n))
            if shell:
                display(chart)
        return self.chart


def _option_values(options: Sequence[Any]) -> list[Any]:
    """Values of a selection widget's options, which may be plain values or (label, value)."""
    return [o[1] if isinstance(o, tuple) else o for o in options]


# ---------------------------------------------------------------------------
# 1. Method and target class


class MethodExplorer(_Explorer):
    """Pick an attribution method and the class to explain; see the map next to the photo.

    Controls: ``method`` (Dropdown), ``target`` (Dropdown of the model's top-5 classes, labelled
    like ``"89 sulphur-crested cockatoo (0.44)"``) and ``class_text`` (Text: any class index or
    exact ImageNet name; when not empty it overrides ``target``; cleared when ``target`` is
    picked). A name that is not a class gives a message with close matches.

    Args:
        bundle: the object from ``sh.load_model()``.
        x: the preprocessed image ``(1, 3, H, W)``.
        methods: names offered (default :data:`EXPLORER_METHODS`).
        method: the method shown first.
        top_k: how many predicted classes the ``target`` dropdown lists.
        method_kwargs: ``{method: {kwarg: value}}`` for ``sh.attribute``; by default IG runs
            ``n_steps=sh.scaled(32, 8)`` and SmoothGrad ``nt_samples=sh.scaled(16, 4)`` so
            that a click answers in seconds (IG's completeness warning then shows in the
            status line).

    Attributes:
        chart: the last chart: the photo and the map (signed channel sum), ``(H, W)`` each.
        attributions: the map shown, ``(1, C, H, W)`` as from ``sh.attribute``.
        computations: attribution runs made so far; one per (method, class) ever shown.

    Example:
        >>> ex = MethodExplorer(b, x)
        >>> ex.update(method="grad_cam", target=21)     # or move the dropdowns
        >>> ex                                          # shows the widget
    """

    def __init__(
        self,
        bundle: ModelBundle,
        x: torch.Tensor,
        methods: Sequence[str] = EXPLORER_METHODS,
        method: str | None = None,
        top_k: int = 5,
        method_kwargs: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(bundle, x)
        methods = list(methods)
        if not methods:
            raise ValueError("methods is empty: give e.g. ['gradient', 'grad_cam'].")
        method = methods[0] if method is None else method
        if method not in methods:
            raise ValueError(f"method {method!r} is not in methods {methods}.")
        self.method_kwargs = {**_heavy_defaults(), **(method_kwargs or {})}
        with torch.inference_mode():
            self.probabilities = torch.softmax(bundle.model(self.x), dim=1)[0]
        top = bundle.predict(self.x, k=top_k)
        self._top = int(top.class_index[0])
        classes = [
            (f"{i} {name} ({p:.2f})", int(i))
            for i, name, p in zip(top.class_index, top.class_name, top.probability, strict=True)
        ]
        self.controls = {
            "method": ipywidgets.Dropdown(options=methods, value=method, description="method"),
            "target": ipywidgets.Dropdown(
                options=classes, value=classes[0][1], description="class"
            ),
            "class_text": ipywidgets.Text(
                value="",
                placeholder="or type a class index or name, then Enter",
                description="any class",
                continuous_update=False,  # one computation per Enter, not per keystroke
            ),
        }
        self._finish()

    def _on_change(self, change: dict) -> None:
        target, text = self.controls["target"], self.controls["class_text"]
        quiet, self._quiet = self._quiet, True  # keep the two in step, then draw once
        try:
            if change["owner"] is target and change["new"] is not None:
                text.value = ""  # a pick from the list replaces a typed class
            elif change["owner"] is text:
                # A typed class leaves the list unselected, so that picking any entry of it
                # (even the one shown before) is a change that fires.
                if change["new"].strip():
                    target.value = None
                elif target.value is None:
                    target.value = self._top
        finally:
            self._quiet = quiet
        super()._on_change(change)

    def update(self, **settings: Any) -> alt.TopLevelMixin | None:
        """Set ``method``, ``target`` (any index or class name) and/or ``class_text``; redraw once.

        A ``target`` outside the top-k dropdown goes to the ``class_text`` box.

        Example:
            >>> ex.update(method="gradient", target="tabby")
        """
        target = settings.pop("target", None)
        if target is not None:
            if target in _option_values(self.controls["target"].options):
                settings["target"] = target  # and the typed class is cleared
            else:
                settings["class_text"] = str(target)
        return super().update(**settings)

    def _resolve(self, settings: dict[str, Any]) -> int:
        text = settings["class_text"].strip()
        if not text:
            return self._top if settings["target"] is None else int(settings["target"])
        try:
            target: int | str = int(text)
        except ValueError:
            target = text
        # Clear ValueErrors: unknown name (with close matches) or index out of range.
        return resolve_target(self.bundle, self.x, target)[0]

    def _draw(self, settings: dict[str, Any]) -> tuple[alt.TopLevelMixin, str]:
        method = settings["method"]
        cls = self._resolve(settings)
        kwargs = self.method_kwargs.get(method, {})
        attr = self._cached(
            (method, cls), lambda: attribute(method, self.bundle, self.x, target=cls, **kwargs)
        )
        self.attributions = attr
        name = self.bundle.categories[cls]
        prob = float(self.probabilities[cls])
        title = f"{method} · class {cls} {name} (p = {prob:.2f})"
        chart = heatmaps({method: attr[0]}, photo=self.photo, size=PANEL, title=title)
        note = f"{method} for class {cls} {name!r} (probability {prob:.2f})"
        if kwargs:
            note += f"; settings {kwargs}"
        return chart, note


# ---------------------------------------------------------------------------
# 2. Integrated Gradients


class IGExplorer(_Explorer):
    """Integrated Gradients: number of steps, baseline and rule, with the completeness error.

    The completeness error, ``|Σ attributions − (F(x) − F(x′))| / |F(x) − F(x′)|``, is shown in
    the status line and the title; above 5% the status line says so.
    Sundararajan et al. 2017, https://arxiv.org/abs/1703.01365

    Controls: ``n_steps`` (SelectionSlider over :data:`IG_STEPS_OPTIONS`), ``baseline``
    (Dropdown over ``sh.BASELINES``), ``rule`` (Dropdown: Captum's ``method=``).

    Args:
        bundle: the object from ``sh.load_model()``.
        x: the preprocessed image ``(1, 3, H, W)``.
        target: the class to explain (index or name); default the predicted class.
        n_steps: the first number of steps (default ``sh.scaled(32, 8)``).
        baseline: the first baseline.

    Attributes:
        attributions: the IG map shown, ``(1, C, H, W)``.
        error: the completeness error of the map shown (a float, 0.03 = 3%).
        computations: IG runs made so far; one per (n_steps, baseline, rule) ever shown.

    Example:
        >>> ex = IGExplorer(b, x)
        >>> ex.update(n_steps=128, baseline="black")
        >>> print(f"{ex.error:.1%}")
    """

    def __init__(
        self,
        bundle: ModelBundle,
        x: torch.Tensor,
        target: int | str | None = None,
        n_steps: int | None = None,
        baseline: str = "zero",
    ) -> None:
        super().__init__(bundle, x)
        self.target = resolve_target(bundle, self.x, target)[0]
        n_steps = scaled(32, 8) if n_steps is None else n_steps
        if n_steps not in IG_STEPS_OPTIONS:
            raise ValueError(f"n_steps={n_steps} is not offered; choose one of {IG_STEPS_OPTIONS}.")
        if baseline not in BASELINES:
            raise ValueError(f"baseline {baseline!r} is not one of {BASELINES}.")
        self.error = float("nan")
        self.controls = {
            "n_steps": ipywidgets.SelectionSlider(
                options=IG_STEPS_OPTIONS, value=n_steps, description="n_steps",
                continuous_update=False,
            ),
            "baseline": ipywidgets.Dropdown(
                options=BASELINES, value=baseline, description="baseline"
            ),
            "rule": ipywidgets.Dropdown(options=IG_RULES, value=IG_RULES[0], description="rule"),
        }  # fmt: skip
        self._finish()

    def _draw(self, settings: dict[str, Any]) -> tuple[alt.TopLevelMixin, str]:
        n, baseline, rule = settings["n_steps"], settings["baseline"], settings["rule"]

        def run() -> tuple[torch.Tensor, float]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CompletenessWarning)  # the status line says it
                return attribute(
                    "integrated_gradients", self.bundle, self.x, target=self.target,
                    baselines=baseline, n_steps=n, method=rule, return_error=True,
                )  # fmt: skip

        attr, self.error = self._cached((n, baseline, rule), run)
        self.attributions = attr
        name = self.bundle.categories[self.target]
        label = f"IG · {baseline} baseline · {n} steps"
        verdict = (
            "within the 5% tolerance"
            if self.error <= COMPLETENESS_TOLERANCE
            else "above 5%: increase n_steps"
        )
        note = (
            f"completeness error {self.error:.2%} ({verdict}); class {self.target} {name!r}, "
            f"rule {rule}"
        )
        title = (
            f"Integrated Gradients, {n} steps, {baseline} baseline: "
            f"completeness error {self.error:.1%}"
        )
        return heatmaps({label: attr[0]}, photo=self.photo, size=PANEL, title=title), note


# ---------------------------------------------------------------------------
# 3. SmoothGrad


class SmoothGradExplorer(_Explorer):
    """SmoothGrad: noise level σ (a fraction of the input range) and number of samples.

    Shows the photo, the plain gradient (computed once) and the smoothed map, each as the
    channel mean of ``|map|`` scaled to its own range (compare structure, not brightness).
    Smilkov et al. 2017, https://arxiv.org/abs/1706.03825

    Controls: ``noise`` (FloatSlider 0 to 0.5), ``nt_samples`` (SelectionSlider over
    :data:`SAMPLES_OPTIONS`), ``method`` (``smoothgrad``, ``smoothgrad_sq``, ``vargrad``).

    Args:
        bundle: the object from ``sh.load_model()``.
        x: the preprocessed image ``(1, 3, H, W)``.
        target: the class to explain (index or name); default the predicted class.
        noise: the first σ, as a fraction of the input's value range.
        nt_samples: the first number of noisy samples (default ``sh.scaled(16, 4)``).

    Attributes:
        attributions: the smoothed map shown, ``(1, C, H, W)``.
        computations: attribution runs made so far (the plain gradient counts once).

    Example:
        >>> ex = SmoothGradExplorer(b, x)
        >>> ex.update(noise=0.3, nt_samples=32)
    """

    def __init__(
        self,
        bundle: ModelBundle,
        x: torch.Tensor,
        target: int | str | None = None,
        noise: float = 0.15,
        nt_samples: int | None = None,
    ) -> None:
        super().__init__(bundle, x)
        self.target = resolve_target(bundle, self.x, target)[0]
        nt_samples = scaled(16, 4) if nt_samples is None else nt_samples
        if nt_samples not in SAMPLES_OPTIONS:
            raise ValueError(
                f"nt_samples={nt_samples} is not offered; choose one of {SAMPLES_OPTIONS}."
            )
        if not 0.0 <= noise <= 0.5:
            raise ValueError(f"noise is a fraction of the input range in [0, 0.5], got {noise}.")
        self.controls = {
            "noise": ipywidgets.FloatSlider(
                value=noise, min=0.0, max=0.5, step=0.05, readout_format=".2f",
                description="σ / range", continuous_update=False,
            ),
            "nt_samples": ipywidgets.SelectionSlider(
                options=SAMPLES_OPTIONS, value=nt_samples, description="samples",
                continuous_update=False,
            ),
            "method": ipywidgets.Dropdown(
                options=("smoothgrad", "smoothgrad_sq", "vargrad"), value="smoothgrad",
                description="method",
            ),
        }  # fmt: skip
        self._finish()

    def _draw(self, settings: dict[str, Any]) -> tuple[alt.TopLevelMixin, str]:
        # Rounded: a float slider's 0.15 and 0.15000000000000002 are the same setting.
        noise = round(float(settings["noise"]), 4)
        n, method = settings["nt_samples"], settings["method"]
        b, x, cls = self.bundle, self.x, self.target
        grad = self._cached("gradient", lambda: attribute("gradient", b, x, target=cls))
        smooth = self._cached(
            (method, noise, n),
            lambda: attribute(method, b, x, target=cls, noise=noise, nt_samples=n),
        )
        self.attributions = smooth
        span = float(x.max() - x.min())  # the range sh.attribute scales the noise by
        label = f"{method}, σ = {noise:.2f}, {n} samples"
        chart = heatmaps(
            {"gradient (no noise)": grad[0], label: smooth[0]},
            photo=self.photo, reduce="abs_mean", signed=False, shared_scale=False, size=PANEL,
            title=f"{method} · σ = {noise:.2f} of the input range · {n} samples · class {cls}",
        )  # fmt: skip
        note = (
            f"σ = {noise:.2f} × input range ({span:.2f}) = {noise * span:.3f}; {n} noisy "
            f"copies; class {cls} {b.categories[cls]!r}"
        )
        return chart, note


# ---------------------------------------------------------------------------
# 4. Model-randomization cascade


class CascadeExplorer(_Explorer):
    """A slider down the model-randomization cascade (Adebayo et al. 2018).

    The slider picks a stage; the chart shows each method's map on the trained model next to
    its map at that stage (``sh.cascade_grid``), above the similarity to the trained map for
    the stages up to that one. Stages are computed lazily, in cascade order, by ONE walk of
    ``sh.randomized_models`` (the same seeds as ``sh.cascade``, so the same numbers); each
    stage is computed once. Give ``result=`` (from ``sh.cascade``) to browse a finished
    cascade without computing anything.
    Paper: https://arxiv.org/abs/1810.03292

    Controls: ``stage`` (SelectionSlider, labelled ``"k: name"``) and ``metric`` (Dropdown
    over ``sh.sanity.METRICS``; changing it recomputes nothing).

    Args:
        bundle: the object from ``sh.load_model()``.
        x: the preprocessed image ``(1, 3, H, W)``.
        methods: methods to compare (default :data:`CASCADE_METHODS`).
        stages: stages offered (default all of ``bundle.layers``); cumulative orders still
            randomize the skipped blocks.
        order: ``"top_down"``, ``"independent"`` or ``"bottom_up"``.
        seed: base seed of the re-initialisation (as in ``sh.cascade``).
        target: the class (index or name); default the trained model's prediction.
        method_kwargs: ``{method: {kwarg: value}}``; IG and SmoothGrad default to
            ``n_steps=sh.scaled(32, 8)`` and ``nt_samples=sh.scaled(16, 4)``.
        result: a finished ``sh.cascade`` result to browse instead (its methods, stages,
            target and order are used; the other arguments must stay at their defaults).

    Attributes:
        result: a ``CascadeResult`` of the stages computed so far (``.table(metric)`` works);
            the maps are in ``result.tensors`` (``.attributions`` stays ``None`` here).
        computations: attribution runs made so far (methods × stages computed).

    Example:
        >>> ex = CascadeExplorer(b, x, stages=b.layers[::3])
        >>> ex.update(stage=b.layers[6], metric="spearman_signed")
    """

    def __init__(
        self,
        bundle: ModelBundle,
        x: torch.Tensor,
        methods: Sequence[str] = CASCADE_METHODS,
        stages: Sequence[str] | None = None,
        order: str = "top_down",
        seed: int = 0,
        target: int | str | None = None,
        method_kwargs: dict[str, dict[str, Any]] | None = None,
        result: CascadeResult | None = None,
    ) -> None:
        super().__init__(bundle, x)
        cascade_walk([], [], order)  # an unknown order fails first
        self._maps: dict[tuple[str, str], torch.Tensor] = {}
        self._sims: dict[str, list[dict[str, Any]]] = {}
        self._generator = None
        if result is not None:
            self.methods, self.order = list(result.methods), result.order
            self.target = result.target
            self.walk = list(result.stages[1:])
            self._maps = dict(result.tensors)
            # The maps kept are the first image's under the first seed: show their numbers.
            sims = result.similarity
            if "image" in sims.columns:
                sims = sims[(sims.image == result.images[0]) & (sims.seed == result.seeds[0])]
                sims = sims.drop(columns=["image", "seed"])
            for stage in result.stages:
                self._sims[stage] = sims[sims.stage == stage].to_dict("records")
            self._edges = result.edges
        else:
            self.methods, self.order = list(methods), order
            if not self.methods:
                raise ValueError("methods is empty: give e.g. ['gradient', 'guided_backprop'].")
            self.target = resolve_target(bundle, self.x, target)[0]
            self.walk = cascade_walk(bundle.layers, stages, order)
            self.kwargs = {m: dict(_heavy_defaults().get(m, {})) for m in self.methods}
            for m, kw in (method_kwargs or {}).items():
                self.kwargs.setdefault(m, {}).update(kw)
            if "grad_cam" in self.kwargs:
                # A name, not the module: each randomized copy has its own layer object.
                self.kwargs["grad_cam"].setdefault("layer", bundle.gradcam_layer_name)
            self._generator = randomized_models(
                bundle, order=order, seed=seed, stages=self.walk, inputs=self.x
            )
            self._explain(ORIGINAL, bundle.model)
            edges = edge_map(self.x, bundle)
            self._edges = pd.DataFrame(
                [
                    {"method": m, "metric": k, "value": v}
                    for m in self.methods
                    for k, v in similarity(self._full[m], edges).items()
                ]
            )
        if not self.walk:
            raise ValueError("No stages to show: give stages=[...] from bundle.layers.")
        options = [(f"{i}: {s}", s) for i, s in enumerate(self.walk, start=1)]
        self.controls = {
            "stage": ipywidgets.SelectionSlider(
                options=options, value=self.walk[0], description="randomized",
                continuous_update=False, layout=ipywidgets.Layout(width="480px"),
            ),
            "metric": ipywidgets.Dropdown(
                options=METRICS, value="spearman_abs", description="metric"
            ),
        }  # fmt: skip
        self._finish()

    def _explain(self, stage: str, network: torch.nn.Module) -> None:
        """Every method's map on one network; similarity to the trained maps."""
        kwargs = {m: self.kwargs[m] for m in self.methods}
        attrs = stage_attributions(network, self.x, self.target, kwargs, stage)
        self.computations += len(attrs)
        full = {method: attr[0] for method, attr in attrs.items()}
        for method, attr in full.items():
            self._maps[(method, stage)] = reduce_channels(attr, "sum")
        if stage == ORIGINAL:
            self._full = full  # full-channel trained maps: the reference of every similarity
        self._sims[stage] = [
            {"method": m, "stage": stage, "metric": k, "value": v}
            for m in self.methods
            for k, v in similarity(full[m], self._full[m]).items()
        ]

    def _advance_to(self, stage: str) -> None:
        """Walk the cascade (once, in order) until ``stage`` has been computed."""
        while stage not in self._sims:
            name, network = next(self._generator)
            self._explain(name, network)

    @property
    def result(self) -> CascadeResult:
        """The stages computed so far, as a ``CascadeResult`` (``.table()``, ``cascade_grid``)."""
        stages = [ORIGINAL, *[s for s in self.walk if s in self._sims]]
        frames = [
            to_frame({method: m}, size=FRAME_SIZE, stage=stage)
            for (method, stage), m in self._maps.items()
        ]
        return CascadeResult(
            maps=pd.concat(frames, ignore_index=True),
            tensors=dict(self._maps),
            similarity=pd.DataFrame([row for s in stages for row in self._sims[s]]),
            edges=self._edges,
            stages=stages,
            methods=list(self.methods),
            target=self.target,
            order=self.order,
        )

    def _draw(self, settings: dict[str, Any]) -> tuple[alt.TopLevelMixin, str]:
        stage, metric = settings["stage"], settings["metric"]
        if self._generator is not None:
            self._advance_to(stage)
        k = self.walk.index(stage) + 1
        so_far = [ORIGINAL, *self.walk[:k]]
        sims = pd.DataFrame([r for s in so_far for r in self._sims[s] if r["metric"] == metric])
        what = "from the input up" if self.order == "bottom_up" else "from the logits down"
        if self.order == "independent":
            what = "only this block"
        title = f"Randomized: {stage} (stage {k} of {len(self.walk)}, {self.order}, {what})"
        grid = cascade_grid(self.result, stages=[ORIGINAL, stage], size=150, title=title)
        # A y axis that stays put while the slider moves (and still shows negative values).
        low = min([-0.2] + [r["value"] for rows in self._sims.values() for r in rows])
        low = math.floor(low * 5) / 5
        lines = similarity_lines(
            sims, x="stage", y="value", color="method", facet=None,
            title=f"{metric} with the trained map, stages 0 to {k}",
        ).encode(
            # A fixed axis over every stage: the curve visibly walks down the network.
            x=alt.X("stage:N", sort=[ORIGINAL, *self.walk],
                    scale=alt.Scale(domain=[ORIGINAL, *self.walk]),
                    axis=alt.Axis(labelAngle=-45)),
            y=alt.Y("value:Q", title=metric, scale=alt.Scale(domain=[low, 1.0])),
        ).properties(width=max(300, 22 * len(self.walk)))  # fmt: skip
        now = {r["method"]: r["value"] for r in self._sims[stage] if r["metric"] == metric}
        name = self.bundle.categories[self.target]
        values = ", ".join(f"{m} {v:.2f}" for m, v in now.items())
        note = f"class {self.target} {name!r}; {metric} at {stage}: {values}"
        return alt.vconcat(grid, lines), note


# ---------------------------------------------------------------------------
# Factories: one call, as the last expression of a notebook cell


def method_explorer(bundle: ModelBundle, x: torch.Tensor, **kwargs: Any) -> MethodExplorer:
    """A :class:`MethodExplorer` (method and class pickers). Example: ``method_explorer(b, x)``."""
    return MethodExplorer(bundle, x, **kwargs)


def ig_explorer(bundle: ModelBundle, x: torch.Tensor, **kwargs: Any) -> IGExplorer:
    """An :class:`IGExplorer` (n_steps, baseline, rule). Example: ``ig_explorer(b, x)``."""
    return IGExplorer(bundle, x, **kwargs)


def smoothgrad_explorer(bundle: ModelBundle, x: torch.Tensor, **kwargs: Any) -> SmoothGradExplorer:
    """A :class:`SmoothGradExplorer` (σ, samples). Example: ``smoothgrad_explorer(b, x)``."""
    return SmoothGradExplorer(bundle, x, **kwargs)


def cascade_explorer(bundle: ModelBundle, x: torch.Tensor, **kwargs: Any) -> CascadeExplorer:
    """A :class:`CascadeExplorer` (randomization depth). Example: ``cascade_explorer(b, x)``."""
    return CascadeExplorer(bundle, x, **kwargs)
