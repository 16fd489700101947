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

from saliency_helpers import comparison
from saliency_helpers.comparison import (
    METHODS,
    compare_explanations,
    compare_maps,
    explain,
    spearman,
    summarize,
)
from saliency_helpers.data import load_mnist
from saliency_helpers.training import SmallCNN, train_pair

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


def test_spearman_rejects_size_mismatch():
    with pytest.raises(ValueError, match="size"):
        spearman(torch.zeros(4), torch.zeros(5))


# ---------------------------------------------------------------- compare_maps
def test_compare_maps_layout_and_identity():
    g = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    df = compare_maps({"gradient": g}, {"gradient": g})
    assert list(df.columns) == ["method", "index", "metric", "value"]
    assert len(df) == 3 * 2
    assert set(df["metric"]) == set(comparison.METRICS)
    assert np.allclose(df["value"], 1.0)


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
    assert len(df) == len(METHODS) * len(x) * 2
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


def test_models_left_unchanged(net, digits):
    x, y = digits
    before = copy.deepcopy(net.state_dict())
    compare_explanations(net, net, x, METHODS, targets=y, method_kwargs=FAST)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
    assert not net.training


# ---------------------------------------------------------------- the course's numbers
def test_true_vs_permuted_models_explain_differently():
    """Notebook 07's claim: signed maps of the two models rank pixels differently.

    Uses the default recipe, so it shares the weight cache with the notebook and
    with tests/test_training.py (trains once per machine).
    """
    split = load_mnist()
    true_run, permuted_run = train_pair(split, progress=False)
    n = 50
    x, y = split.x_test[:n], split.y_test[:n]
    df = compare_explanations(
        true_run.model, permuted_run.model, x, ["gradient", "grad_cam"], targets=y
    )
    s = summarize(df).set_index(["method", "metric"])
    assert s.loc[("gradient", "spearman_signed"), "n"] == n
    for method in ("gradient", "grad_cam"):
        assert s.loc[(method, "spearman_signed"), "mean"] < 0.5, s
