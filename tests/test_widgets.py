"""Tests of the ipywidgets explorers (saliency_helpers.widgets).

The widgets are driven as a notebook user would: setting a control's ``.value`` fires its
observer. Charts are checked by their titles and panel labels (Altair JSON), their size, and
against charts built from direct ``sh.attribute`` calls; ``.computations`` proves that an
earlier setting is served from the explorer's cache. Sizes are tiny (IG 8-16 steps,
SmoothGrad 1-2 samples, a 3-stage cascade) so the file runs in seconds on a shared CPU.
"""

from __future__ import annotations

import altair as alt
import pytest
import torch
from checks import assert_same_state, model_state

import saliency_helpers as sh
from saliency_helpers import widgets

MB = 1_000_000


def _text(chart: alt.TopLevelMixin) -> str:
    """The chart's JSON: titles and panel labels are in it, so tests can search it."""
    return chart.to_json()


def _check_chart(chart, *words: str) -> None:
    assert isinstance(chart, alt.TopLevelMixin)
    spec = _text(chart)
    for word in words:
        assert word in spec, f"{word!r} not in the chart"
    assert sh.chart_size_bytes(chart) < MB


# ---------------------------------------------------------------------------
# MethodExplorer


@pytest.fixture()
def methods(lite, corella):
    return widgets.MethodExplorer(
        lite, corella, method_kwargs={"integrated_gradients": {"n_steps": 8}}
    )


def test_method_explorer_first_chart_is_the_helpers_map(lite, corella, methods):
    assert methods.computations == 1
    top = lite.predict(corella, k=5)
    cls, name = int(top.class_index[0]), top.class_name[0]
    _check_chart(methods.chart, "gradient", f"class {cls} {name}")
    # Known answer: the same map and chart as a direct sh.attribute call.
    attr = sh.attribute("gradient", lite, corella, target=cls)
    assert torch.equal(methods.attributions, attr)
    expected = sh.heatmaps(
        {"gradient": attr[0]},
        photo=sh.denormalize(corella, lite)[0],
        size=widgets.PANEL,
        title=f"gradient · class {cls} {name} (p = {top.probability[0]:.2f})",
    )
    assert methods.chart.to_dict() == expected.to_dict()
    # The class list: the top 5, labelled "index name (probability)".
    options = methods.controls["target"].options
    assert [value for _, value in options] == top.class_index.tolist()
    assert options[1][0] == f"{options[1][1]} {top.class_name[1]} ({top.probability[1]:.2f})"
    # It displays as its widget: controls, status line, output.
    assert "application/vnd.jupyter.widget-view+json" in methods._repr_mimebundle_()
    children = methods.widget.children
    assert isinstance(children[-1], widgets.ipywidgets.Output)
    assert set(children[0].children) == set(methods.controls.values())


def test_method_switch_recomputes_once_and_back_is_cached(lite, corella, methods):
    methods.controls["method"].value = "grad_cam"  # fires the observer
    assert methods.computations == 2
    _check_chart(methods.chart, "grad_cam")
    assert "gradient ·" not in _text(methods.chart)
    methods.controls["method"].value = "gradient"
    assert methods.computations == 2  # served from the cache
    _check_chart(methods.chart, "gradient ·")
    methods.controls["method"].value = "grad_cam"
    assert methods.computations == 2
    # The cache belongs to the explorer: a new one starts from scratch.
    assert widgets.method_explorer(lite, corella).computations == 1


def test_class_pick_and_typed_class(lite, methods):
    first, second = (value for _, value in methods.controls["target"].options[:2])
    methods.controls["target"].value = second
    assert methods.computations == 2
    _check_chart(methods.chart, f"class {second} {lite.categories[second]}")
    methods.controls["class_text"].value = "tabby"  # a class name outside the top 5
    assert methods.computations == 3
    tabby = lite.class_index("tabby")
    _check_chart(methods.chart, f"class {tabby} tabby")
    assert methods.controls["target"].value is None  # so any pick from the list fires
    methods.controls["class_text"].value = str(tabby)  # the same class by index: cached
    assert methods.computations == 3
    # Picking from the list again, even the class shown before, clears the typed class.
    methods.controls["target"].value = second
    assert methods.controls["class_text"].value == ""
    assert methods.computations == 3
    _check_chart(methods.chart, f"class {second} ")
    # Clearing the box after typing returns to the top class.
    methods.controls["class_text"].value = "tabby"
    methods.controls["class_text"].value = ""
    assert methods.controls["target"].value == first
    _check_chart(methods.chart, f"class {first} ")
    assert methods.computations == 3


def test_bad_class_gives_a_message_not_a_traceback(methods):
    methods.controls["class_text"].value = "cockatoo"
    assert methods.chart is None and methods.attributions is None
    assert "not an ImageNet class name" in methods.message
    assert "sulphur-crested cockatoo" in methods.message  # the close match is suggested
    assert "color:#b2182b" in methods.status.value  # shown as an error
    methods.controls["class_text"].value = "1000"
    assert methods.chart is None and "out of range" in methods.message
    assert methods.computations == 1
    methods.controls["class_text"].value = ""  # back to the list's class, cached
    assert methods.chart is not None and methods.computations == 1


def test_update_sets_several_controls_and_checks_names(lite, methods):
    chart = methods.update(method="grad_cam", target="kite")
    assert chart is methods.chart and methods.computations == 2
    _check_chart(chart, "grad_cam", f"class {lite.class_index('kite')} kite")
    methods.update(method="integrated_gradients")  # 8 steps: error far above 5%
    assert "increase n_steps" in methods.message  # the CompletenessWarning, shown
    assert "'n_steps': 8" in methods.message
    with pytest.raises(ValueError, match="Unknown setting"):
        methods.update(n_steps=8)
    with pytest.raises(ValueError, match="not offered"):
        methods.update(method="lime")


def test_bad_inputs_are_refused(lite, corella):
    with pytest.raises(ValueError, match=r"\(1, 3, H, W\)"):
        widgets.MethodExplorer(lite, corella[0])
    with pytest.raises(TypeError, match="sh.load_model"):
        widgets.MethodExplorer(lite.model, corella)
    with pytest.raises(ValueError, match="not offered"):
        widgets.IGExplorer(lite, corella, n_steps=10)
    with pytest.raises(ValueError, match="not in the model's layers"):
        widgets.CascadeExplorer(lite, corella, stages=["layer4.1"])
    with pytest.raises(ValueError, match="Unknown order"):
        widgets.CascadeExplorer(lite, corella, order="sideways")


# ---------------------------------------------------------------------------
# IGExplorer


def test_ig_explorer_shows_the_completeness_error_and_caches(lite, corella):
    ex = widgets.ig_explorer(lite, corella, n_steps=8)
    assert ex.computations == 1
    # Known answer: the completeness error of the map shown, recomputed from it.
    err = sh.completeness_error(lite, corella, ex.attributions, target=None, baselines="zero")
    assert ex.error == pytest.approx(err, rel=1e-5)
    assert f"completeness error {ex.error:.2%}" in ex.message
    assert "increase n_steps" in ex.message  # 8 steps are far from 5% on this photo
    _check_chart(ex.chart, "8 steps", "zero baseline", f"completeness error {ex.error:.1%}")

    ex.controls["n_steps"].value = 16
    assert ex.computations == 2
    _check_chart(ex.chart, "16 steps", "zero baseline")
    ex.update(n_steps=8, baseline="black")
    assert ex.computations == 3
    _check_chart(ex.chart, "black baseline", "8 steps")
    black = sh.completeness_error(lite, corella, ex.attributions, None, baselines="black")
    assert ex.error == pytest.approx(black, rel=1e-5)
    ex.controls["baseline"].value = "zero"  # the first setting: cached, same error
    assert ex.computations == 3
    assert ex.error == pytest.approx(err, rel=1e-5)


# ---------------------------------------------------------------------------
# SmoothGradExplorer


def test_smoothgrad_explorer_noise_and_samples(lite, corella):
    ex = widgets.smoothgrad_explorer(lite, corella, nt_samples=1)
    assert ex.computations == 2  # the plain gradient and one SmoothGrad
    _check_chart(ex.chart, "σ = 0.15", "1 samples", "gradient (no noise)")
    span = float(corella.max() - corella.min())
    assert f"= {0.15 * span:.3f}" in ex.message  # σ in input units, as sh.attribute uses it
    # Known answer: the seeded SmoothGrad of sh.attribute.
    direct = sh.attribute("smoothgrad", lite, corella, noise=0.15, nt_samples=1)
    assert torch.equal(ex.attributions, direct)

    ex.controls["noise"].value = 0.3
    assert ex.computations == 3
    _check_chart(ex.chart, "σ = 0.30")
    ex.controls["nt_samples"].value = 2
    assert ex.computations == 4
    _check_chart(ex.chart, "σ = 0.30", "2 samples")
    ex.update(noise=0.1 + 0.05, nt_samples=1)  # 0.15000000000000002: the first setting
    assert ex.computations == 4
    _check_chart(ex.chart, "σ = 0.15", "1 samples")


# ---------------------------------------------------------------------------
# CascadeExplorer


@pytest.fixture(scope="module")
def stages(lite):
    return [lite.layers[0], lite.layers[2], lite.layers[4]]


def _line_stages(chart) -> list[str]:
    """The stages plotted in the similarity chart (the second part of the explorer's chart)."""
    spec = chart.to_dict()
    data = spec["datasets"][spec["vconcat"][1]["data"]["name"]]
    return list(dict.fromkeys(row["stage"] for row in data))


def test_cascade_explorer_walks_lazily_and_matches_sh_cascade(lite, corella, stages):
    before = model_state(lite.model)
    ex = widgets.cascade_explorer(lite, corella, stages=stages)
    methods = list(widgets.CASCADE_METHODS)
    assert ex.computations == 2 * len(methods)  # trained model and the first stage only
    first, middle, last = stages
    _check_chart(ex.chart, f"Randomized: {first} (stage 1 of 3", '"panel": "gradient"',
                 f'"column": "{first}"')  # the grid's row (method) and column (stage)
    assert _line_stages(ex.chart) == ["original", first]

    ex.controls["stage"].value = last  # walks through the middle stage on the way
    assert ex.computations == 4 * len(methods)
    _check_chart(ex.chart, f"Randomized: {last} (stage 3 of 3", '"panel": "guided_backprop"',
                 f'"column": "{last}"')
    assert _line_stages(ex.chart) == ["original", first, middle, last]

    ex.controls["stage"].value = middle  # already computed
    ex.controls["metric"].value = "spearman_signed"  # a different view of the same maps
    assert ex.computations == 4 * len(methods)
    _check_chart(ex.chart, f"Randomized: {middle} (stage 2 of 3", "spearman_signed")
    assert _line_stages(ex.chart) == ["original", first, middle]

    # Known answer: the same seeds as sh.cascade give the same similarities.
    res = sh.cascade(lite, corella, ["gradient"], stages=stages, progress=False)
    for metric in ("spearman_abs", "spearman_signed"):
        got, want = ex.result.table(metric)[["gradient"]], res.table(metric)
        assert list(got.index) == list(want.index)
        assert (got - want).abs().max().max() < 1e-9
    assert_same_state(before, lite.model)  # every stage was a deep copy

    browse = widgets.CascadeExplorer(lite, corella, result=res)  # nothing left to compute
    browse.update(stage=last, metric="ssim")
    assert browse.computations == 0
    _check_chart(browse.chart, f"Randomized: {last}", "ssim")
