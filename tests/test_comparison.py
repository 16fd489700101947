"""Tests of saliency_helpers.comparison (the data-randomization comparison of two models)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

import saliency_helpers as sh
from saliency_helpers import comparison
from saliency_helpers.comparison import (
    METHODS,
    compare_explanations,
    compare_maps,
    data_randomization,
    data_randomization_verdicts,
    explain,
    reference_chart,
    spearman,
    summarize,
)
from saliency_helpers.data import load_mnist
from saliency_helpers.training import SmallCNN, fresh_model, train_pairs

# An untrained SmallCNN is nearly constant: IG's relative completeness error is meaningless there.
pytestmark = pytest.mark.filterwarnings("ignore::saliency_helpers.attribution.CompletenessWarning")

FAST = {"integrated_gradients": {"n_steps": 16}, "smoothgrad": {"nt_samples": 8}}


class Negated(nn.Module):
    """The same network with its logits negated: every gradient flips sign."""

    layers = SmallCNN.layers
    gradcam_layer_name = "net.conv3"

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.net(x)


@pytest.fixture(scope="module")
def digits():
    split = load_mnist()
    return split.x_test[:6], split.y_test[:6]


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return SmallCNN().eval()


# ---------------------------------------------------------------- spearman
def test_spearman_known_answers():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert spearman(a, a * 10 + 3) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, a**3) == pytest.approx(1.0)  # ranks only
    b = torch.tensor([2.0, 1.0, 4.0, 3.0])
    assert spearman(a, b) == pytest.approx(spearmanr(a.numpy(), b.numpy()).statistic)


def test_spearman_constant_map_is_nan_not_zero():
    a = torch.tensor([1.0, 2.0, 3.0])
    assert math.isnan(spearman(a, torch.zeros(3)))
    assert math.isnan(spearman(torch.zeros(3), torch.zeros(3)))


def test_vectorised_rows_equal_the_per_map_spearman():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20, 64))
    b = 0.5 * a + rng.normal(size=(20, 64))
    a[:, :30] = 0.0  # ties, as on a digit's background
    a[3] = 0.0  # a constant map
    keep = rng.random((20, 64)) > 0.5
    keep[5] = False  # nothing kept
    keep[6] = False
    keep[6, 2] = True  # one pixel kept: no ranking either
    whole = comparison._spearman_rows(a, b)
    kept = comparison._spearman_rows(a, b, keep=keep)
    for i in range(20):
        ref = spearman(a[i], b[i])
        ref_kept = spearman(a[i][keep[i]], b[i][keep[i]]) if keep[i].sum() >= 2 else np.nan
        for got, want in ((whole[i], ref), (kept[i], ref_kept)):
            assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, abs=1e-12)
    assert math.isnan(whole[3]) and math.isnan(kept[5]) and math.isnan(kept[6])


def test_spearman_rejects_size_mismatch():
    with pytest.raises(ValueError, match="size"):
        spearman(torch.zeros(4), torch.zeros(5))


# ---------------------------------------------------------------- methods
def test_methods_are_the_course_methods_and_the_controls():
    assert METHODS[:6] == sh.attribution.COURSE_METHODS
    assert "guided_grad_cam" in METHODS and "guided_backprop" in METHODS
    assert set(comparison.CONTROL_METHODS) == {"guided_backprop", "guided_grad_cam"}
    assert len(set(METHODS)) == len(METHODS) == 7


# ---------------------------------------------------------------- compare_maps
def test_compare_maps_layout_and_identity():
    g = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    df = compare_maps({"gradient": g}, {"gradient": g})
    assert list(df.columns) == ["method", "index", "metric", "value"]
    assert len(df) == 3 * 2
    assert set(df["metric"]) == {"spearman_signed", "spearman_abs"}
    assert np.allclose(df["value"], 1.0)
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with_ink = compare_maps({"gradient": g}, {"gradient": g}, inputs=x)
    assert set(with_ink["metric"]) == set(comparison.METRICS)
    assert np.allclose(with_ink["value"], 1.0)


def test_ink_metrics_ignore_the_background():
    """Two maps that agree only through their zeros off the digit: ink-only rho is -1."""
    x = torch.zeros(1, 1, 6, 6)
    x[0, 0, 2:4, 1:5] = 1.0  # 8 ink pixels, 28 background pixels
    ramp = torch.arange(1, 9, dtype=torch.float32)
    a, b = torch.zeros_like(x), torch.zeros_like(x)
    a[0, 0, 2:4, 1:5] = ramp.reshape(2, 4)
    b[0, 0, 2:4, 1:5] = ramp.flip(0).reshape(2, 4)  # the opposite order on the ink
    rho = compare_maps({"m": a}, {"m": b}, inputs=x).set_index("metric")["value"]
    assert rho["spearman_signed_ink"] == pytest.approx(-1.0)
    assert rho["spearman_abs_ink"] == pytest.approx(-1.0)
    # Over the whole image the 28 shared zeros make the same two maps look alike.
    assert rho["spearman_signed"] > 0.5 and rho["spearman_abs"] > 0.5
    # A map constant on the ink has no ranking there: NaN, not 0.
    flat = torch.where(x > 0, 1.0, 0.0)
    rho = compare_maps({"m": flat}, {"m": a}, inputs=x).set_index("metric")["value"]
    assert math.isnan(rho["spearman_signed_ink"]) and not math.isnan(rho["spearman_signed"])
    with pytest.raises(ValueError, match="inputs"):
        compare_maps({"m": a}, {"m": b}, inputs=x[:, :, :5])


def test_compare_maps_negated_signed_minus_one_abs_plus_one():
    g = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    df = compare_maps({"gradient": g}, {"gradient": -g})
    by = df.groupby("metric")["value"]
    assert np.allclose(by.get_group("spearman_signed"), -1.0)
    assert np.allclose(by.get_group("spearman_abs"), 1.0)


def test_compare_maps_sums_channels_for_signed():
    a = torch.zeros(1, 2, 2, 2)
    a[0, 0] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    a[0, 1] = torch.tensor([[10.0, 0.0], [0.0, 0.0]])  # channel sum: 11, 2, 3, 4
    b = torch.tensor([[[[4.0, 1.0], [2.0, 3.0]]]]).expand(1, 2, 2, 2)
    row = compare_maps({"m": a}, {"m": b}).set_index("metric")["value"]
    assert row["spearman_signed"] == pytest.approx(1.0)


def test_compare_maps_rejects_mismatch():
    with pytest.raises(ValueError, match="different methods"):
        compare_maps({"a": torch.zeros(1, 1, 2, 2)}, {"b": torch.zeros(1, 1, 2, 2)})
    with pytest.raises(ValueError, match="shape"):
        compare_maps({"a": torch.zeros(1, 1, 2, 2)}, {"a": torch.zeros(2, 1, 2, 2)})


# ---------------------------------------------------------------- summarize
def test_summarize_counts_undefined_and_ignores_them_in_mean():
    df = pd.DataFrame(
        {
            "method": ["g"] * 4 + ["c"] * 4,
            "index": [0, 0, 1, 1] * 2,
            "metric": ["spearman_signed", "spearman_abs"] * 4,
            "value": [0.2, 0.4, 0.6, 0.8, float("nan"), float("nan"), 0.5, 0.5],
        }
    )
    s = summarize(df).set_index(["method", "metric"])
    assert list(summarize(df)["method"].unique()) == ["g", "c"]  # order of appearance
    assert s.loc[("g", "spearman_signed"), "mean"] == pytest.approx(0.4)
    assert s.loc[("g", "spearman_signed"), "n_undefined"] == 0
    assert s.loc[("c", "spearman_signed"), "mean"] == pytest.approx(0.5)
    assert s.loc[("c", "spearman_signed"), "n"] == 1
    assert s.loc[("c", "spearman_signed"), "n_undefined"] == 1
    with pytest.raises(ValueError, match="value"):
        summarize(df.drop(columns="value"))


# ---------------------------------------------------------------- explain / compare_explanations
def test_explain_shapes_and_gradcam_layer(net, digits):
    x, y = digits
    maps = explain(net, x, ["gradient", "grad_cam"], targets=y)
    assert set(maps) == {"gradient", "grad_cam"}
    for m in maps.values():
        assert m.shape == x.shape
    assert maps["grad_cam"].min() >= 0  # ReLU'd class activation map


def test_same_model_gives_one_everywhere_it_is_defined(net, digits):
    x, y = digits
    df = compare_explanations(net, copy.deepcopy(net), x, METHODS, targets=y, method_kwargs=FAST)
    assert set(df["method"]) == set(METHODS)
    assert len(df) == len(METHODS) * len(x) * len(comparison.METRICS)
    defined = df["value"].dropna()
    assert len(defined) > 0.8 * len(df)
    assert np.allclose(defined, 1.0, atol=1e-9)


def test_negated_logits_flip_signed_gradients(net, digits):
    x, y = digits
    methods = ["gradient", "input_x_gradient", "integrated_gradients", "smoothgrad"]
    df = compare_explanations(net, Negated(net), x, methods, targets=y, method_kwargs=FAST)
    s = summarize(df).set_index(["method", "metric"])
    for m in methods:
        assert s.loc[(m, "spearman_signed"), "mean"] == pytest.approx(-1.0, abs=1e-6)
        assert s.loc[(m, "spearman_abs"), "mean"] == pytest.approx(1.0, abs=1e-6)


def test_targets_default_to_model_a_prediction(net, digits):
    x, _ = digits
    df = compare_explanations(net, net, x, ["gradient"])
    assert df.attrs["targets"] == net(x).argmax(1).tolist()


def test_compare_explanations_rejects_bad_arguments(net, digits):
    x, y = digits
    with pytest.raises(ValueError, match="Unknown method"):
        compare_explanations(net, net, x, ["gradients"], targets=y)
    with pytest.raises(ValueError, match="not in methods"):
        compare_explanations(net, net, x, ["gradient"], targets=y, method_kwargs=FAST)
    with pytest.raises(ValueError, match="N, C, H, W"):
        compare_explanations(net, net, x[0], ["gradient"], targets=y[:1])
    with pytest.raises(ValueError, match="layer"):
        compare_explanations(nn.Sequential(net), net, x, ["grad_cam"], targets=y)
    with pytest.raises(ValueError, match="guided_grad_cam.*layer"):
        compare_explanations(nn.Sequential(net), net, x, ["guided_grad_cam"], targets=y)


def test_guided_grad_cam_is_guided_backprop_times_grad_cam(net, digits):
    x, y = digits
    maps = explain(net, x, ["guided_backprop", "grad_cam", "guided_grad_cam"], targets=y)
    expected = maps["guided_backprop"] * maps["grad_cam"]
    assert torch.allclose(maps["guided_grad_cam"], expected, atol=1e-6 * expected.abs().max())


def test_models_left_unchanged(net, digits):
    x, y = digits
    before = copy.deepcopy(net.state_dict())
    compare_explanations(net, net, x, METHODS, targets=y, method_kwargs=FAST)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
    assert not net.training


# ---------------------------------------------------------------- verdicts
def _frame(method: str, values, metric: str = "spearman_signed") -> pd.DataFrame:
    return pd.DataFrame({"method": method, "metric": metric, "value": list(values)})


def test_verdicts_follow_the_rule():
    ceiling = _frame("m", [0.8, 0.9, 0.85, 0.95])
    floor = _frame("m", [0.0, 0.1, -0.1, 0.05])
    cases = {
        "passes": [0.0, 0.05, 0.1, 0.02],  # far below the threshold (~0.46)
        "fails": [0.9, 0.8, 0.85, 0.88],  # far above it
        "inconclusive": [0.2, 0.7, 0.4, 0.6],  # mean 0.475, close to it
    }
    for verdict, tested in cases.items():
        out = data_randomization_verdicts(_frame("m", tested), ceiling, floor)
        row = out.iloc[0]
        assert row["verdict"] == verdict, out
        assert row["verdict"] == sh.sanity.VERDICT[row["outcome"]]
        assert row["threshold"] == pytest.approx((0.875 + 0.0125) / 2)
        expected = sh.sanity.decide(tested, ceiling["value"], floor["value"])
        assert row["margin"] == pytest.approx(expected["margin"])
        assert row["tested_mean"] == pytest.approx(np.mean(tested))
    columns = ["method", "metric", "verdict", "outcome", "tested_mean", "tested_sd",
               "ceiling_mean", "ceiling_sd", "floor_mean", "floor_sd", "threshold", "margin",
               "n", "n_undefined", "ceiling_n_undefined", "floor_n_undefined"]  # fmt: skip
    assert list(out.columns) == columns


def test_verdicts_count_undefined_and_never_score_them():
    """NaN (a constant map) is left out of every mean and counted: never 0, never 1."""
    ceiling = _frame("m", [0.8, 0.9, np.nan, 0.85])
    floor = _frame("m", [0.0, np.nan, 0.1, -0.1])
    tested = _frame("m", [0.05, np.nan, np.nan, 0.0, 0.1])
    row = data_randomization_verdicts(tested, ceiling, floor).iloc[0]
    assert (row["n"], row["n_undefined"]) == (3, 2)
    assert (row["ceiling_n_undefined"], row["floor_n_undefined"]) == (1, 1)
    assert row["tested_mean"] == pytest.approx(0.05)
    assert row["ceiling_mean"] == pytest.approx(0.85)
    # All undefined: nothing to decide from.
    row = data_randomization_verdicts(_frame("m", [np.nan] * 3), ceiling, floor).iloc[0]
    assert row["verdict"] == "inconclusive" and row["n"] == 0 and row["n_undefined"] == 3


def test_verdicts_reject_bad_input():
    f = _frame("m", [0.1, 0.2])
    with pytest.raises(ValueError, match="metric"):
        data_randomization_verdicts(f, f, f, metrics="pearson")
    with pytest.raises(ValueError, match="value"):
        data_randomization_verdicts(f.drop(columns="value"), f, f)
    with pytest.raises(ValueError, match="floor has no rows"):
        data_randomization_verdicts(f, f, _frame("other", [0.1, 0.2]))
    with pytest.raises(TypeError, match="DataFrame"):
        data_randomization_verdicts([0.1], f, f)


def test_data_randomization_references_and_result(digits):
    """Known answers: a model compared with itself is 1 everywhere it is defined."""
    x, y = digits
    nets = {s: fresh_model(seed=s) for s in (0, 1)}
    methods = ["gradient", "grad_cam", "guided_grad_cam"]
    # tested: each model against ITSELF, so the tested similarity is exactly the ceiling 1.
    res = data_randomization(nets, nets, {s + 10: fresh_model(seed=s + 10) for s in (0, 1)},
                             x, methods, targets=y)
    sim = res.similarity
    assert list(sim.columns) == ["kind", "method", "metric", "seed_a", "seed_b", "index", "value"]
    assert set(sim["kind"]) == {"tested", "ceiling", "floor"}
    tested = sim[sim.kind == "tested"]
    assert sorted(set(zip(tested.seed_a, tested.seed_b, strict=True))) == [(0, 0), (1, 1)]
    assert np.allclose(tested["value"].dropna(), 1.0)
    assert set(zip(*[sim[sim.kind == "floor"][c] for c in ("seed_a", "seed_b")],
                   strict=True)) == {(10, 11)}
    # 2 tested pairs (one per seed), 1 ceiling pair, 1 floor pair
    assert len(sim) == 4 * len(methods) * len(comparison.METRICS) * len(x)
    assert res.seeds == [0, 1] and res.targets == y.tolist() and res.methods == methods
    summary = res.summary()
    assert list(summary.columns) == ["kind", "method", "metric", "mean", "sd", "n",
                                     "n_undefined"]
    assert list(dict.fromkeys(summary["kind"])) == ["ceiling", "tested", "floor"]
    verdicts = res.verdicts(["spearman_signed", "spearman_abs_ink"])
    assert len(verdicts) == 2 * len(methods)
    gradient = verdicts.query("method == 'gradient' and metric == 'spearman_signed'").iloc[0]
    assert gradient["tested_mean"] == pytest.approx(1.0)
    assert gradient["verdict"] == "fails"  # identical maps cannot have changed
    tested_values = res.values("tested", "gradient")
    assert len(tested_values) == 2 * len(x) and np.allclose(tested_values, 1.0)
    with pytest.raises(ValueError, match="kind"):
        res.values("reference", "gradient")
    chart = reference_chart(res)
    assert sh.chart_size_bytes(chart) < 100_000


def test_data_randomization_rejects_bad_input(net, digits):
    x, y = digits
    one = {0: net}
    two = {0: net, 1: net}
    with pytest.raises(ValueError, match="at least two"):
        data_randomization(one, one, two, x, ["gradient"], targets=y)
    with pytest.raises(ValueError, match="at least two"):
        data_randomization(two, two, one, x, ["gradient"], targets=y)
    with pytest.raises(ValueError, match="same seeds"):
        data_randomization(two, {0: net, 2: net}, two, x, ["gradient"], targets=y)
    with pytest.raises(TypeError, match="dict"):
        data_randomization(net, two, two, x, ["gradient"], targets=y)
    with pytest.raises(ValueError, match="N, C, H, W"):
        data_randomization(two, two, two, x[0], ["gradient"], targets=y[:1])


# ---------------------------------------------------------------- the course's numbers
def test_true_vs_permuted_models_explain_differently():
    """Notebook 07's claims, decided by the course's rule on the default recipe.

    Uses the default recipe and cache, so it shares the trained models with the notebook
    and with tests/test_training.py (trains once per machine).
    """
    split = load_mnist()
    pairs = train_pairs(split, seeds=(0, 1), progress=False)
    n = 40
    x, y = split.x_test[:n], split.y_test[:n]
    res = data_randomization(
        {s: t.model for s, (t, _) in pairs.items()},
        {s: p.model for s, (_, p) in pairs.items()},
        {s: fresh_model(seed=s) for s in pairs},
        x, ["gradient", "grad_cam", "guided_backprop"], targets=y,
    )
    verdicts = res.verdicts("spearman_signed").set_index("method")
    assert verdicts.loc["gradient", "n"] == 2 * n
    assert verdicts.loc["gradient", "verdict"] == "passes", verdicts
    assert verdicts.loc["guided_backprop", "verdict"] != "passes", verdicts
    # The ceiling is the reference that matters: two true-label models agree more than a
    # true- and a permuted-label model do.
    assert (verdicts["ceiling_mean"] > verdicts["tested_mean"]).loc["gradient"]


def test_paired_rule_decides_by_two_standard_errors():
    from saliency_helpers.comparison import paired_rule

    assert paired_rule([0.3, 0.25, 0.35])["outcome"] == "higher"
    assert paired_rule(torch.tensor([-0.3, -0.25, -0.35]))["outcome"] == "lower"
    r = paired_rule([0.5, -0.4, 0.3, float("nan")])
    assert r["outcome"] == "not distinguishable" and r["n"] == 3 and r["n_undefined"] == 1
    assert r["mean"] == pytest.approx(0.4 / 3) and r["se"] == pytest.approx(
        np.std([0.5, -0.4, 0.3], ddof=1) / np.sqrt(3))
    assert paired_rule([5.0])["outcome"] == "not distinguishable"  # one pair: no spread
    assert paired_rule([0.1, 0.3], z=1.0)["outcome"] == "higher"
    assert paired_rule([0.1, 0.3], z=3.0)["outcome"] == "not distinguishable"
