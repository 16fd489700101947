"""Tests of the model-parameter randomization cascade (saliency_helpers.sanity).

Adebayo et al. 2018, https://arxiv.org/abs/1810.03292. Runs on the offline
EfficientNet-Lite0 and the corella photo; the cheap methods (gradient,
Grad-CAM, Guided Backprop) carry the numbers, IG and SmoothGrad run at tiny
sizes only to prove they are wired the same way.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from checks import assert_same_state, model_state
from scipy.stats import spearmanr
from torch import nn

import saliency_helpers as sh
from saliency_helpers import sanity

CHEAP = ["gradient", "grad_cam", "guided_backprop"]


def _stage_params(net: nn.Module, modules: list[str]) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of a stage's modules, by full dotted name."""
    out = {}
    for name in modules:
        for key, value in net.get_submodule(name).state_dict().items():
            out[f"{name}.{key}"] = value
    return out


def _changed(a: dict, b: dict) -> bool:
    """True when every float tensor of the stage differs somewhere (num_batches_tracked aside)."""
    keys = [k for k in a if a[k].is_floating_point()]
    return all(not torch.equal(a[k], b[k]) for k in keys)


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def top_down(lite, corella):
    """Top-down cascade of the cheap methods, at the first, halfway and last stages."""
    before = model_state(lite.model)
    stages = [lite.layers[0], lite.layers[len(lite.layers) // 2], lite.layers[-1]]
    result = sanity.cascade(lite, corella, CHEAP, stages=stages)
    return result, before


# ---------------------------------------------------------------------------
# The generator


def test_generator_yields_deep_copies_and_leaves_the_model_alone(lite, corella):
    before = model_state(lite.model)
    rng_before = torch.random.get_rng_state()
    seen = []
    for stage, net in sanity.randomized_models(lite, inputs=corella):
        assert net is not lite.model
        shared = {p.data_ptr() for p in lite.model.parameters()}
        assert not shared & {p.data_ptr() for p in net.parameters()}, "shares storage"
        assert not net.training and not any(m.training for m in net.modules())
        assert not any(p.requires_grad for p in net.parameters())
        seen.append((stage, net))
    assert [s for s, _ in seen] == lite.layers
    # Earlier yields are not changed by later stages (each is its own copy).
    first_stage, first_net = seen[0]
    head = lite.blocks[lite.layers[1]]
    assert _same(_stage_params(first_net, head), _stage_params(lite.model, head))
    assert_same_state(before, lite.model)
    assert torch.equal(rng_before, torch.random.get_rng_state()), "the caller's RNG moved"


def test_top_down_is_cumulative_and_starts_at_the_logits(lite):
    gen = sanity.randomized_models(lite, order="top_down")
    first_stage, net0 = next(gen)
    assert first_stage == lite.layers[0]
    fc = lite.blocks[lite.layers[0]]
    # The final fully connected layer IS randomized at the first stage ...
    assert _changed(_stage_params(net0, fc), _stage_params(lite.model, fc))
    # ... and nothing else is.
    others = [m for s in lite.layers[1:] for m in lite.blocks[s]]
    assert _same(_stage_params(net0, others), _stage_params(lite.model, others))
    _, net1 = next(gen)
    _, net2 = next(gen)
    for k, net in ((1, net1), (2, net2)):
        for stage in lite.layers[: k + 1]:
            mods = lite.blocks[stage]
            assert _changed(_stage_params(net, mods), _stage_params(lite.model, mods)), stage
        # Still the same random weights as when the block was first randomized.
        assert _same(_stage_params(net, fc), _stage_params(net0, fc))
    rest = [m for s in lite.layers[3:] for m in lite.blocks[s]]
    assert _same(_stage_params(net2, rest), _stage_params(lite.model, rest))


def test_independent_randomizes_exactly_one_stage(lite):
    picks = [lite.layers[0], lite.layers[5], lite.layers[-1]]
    got = list(sanity.randomized_models(lite, order="independent", stages=picks))
    assert [s for s, _ in got] == picks
    for stage, net in got:
        for other in lite.layers:
            mods = lite.blocks[other]
            mine, orig = _stage_params(net, mods), _stage_params(lite.model, mods)
            if other == stage:
                assert _changed(mine, orig), other
            else:
                assert _same(mine, orig), f"{other} changed while randomizing {stage}"


def test_bottom_up_runs_from_the_input(lite):
    gen = sanity.randomized_models(lite, order="bottom_up")
    stage, net = next(gen)
    assert stage == lite.layers[-1]
    fc = lite.blocks[lite.layers[0]]
    assert _same(_stage_params(net, fc), _stage_params(lite.model, fc))
    stages = [stage] + [s for s, _ in gen]
    assert stages == lite.layers[::-1]


def test_seeded_and_order_independent_weights(lite):
    def weights(seed, order="top_down", stage=None):
        stage = stage or lite.layers[2]
        for _s, net in sanity.randomized_models(lite, order=order, seed=seed, stages=[stage]):
            return _stage_params(net, lite.blocks[stage])

    assert _same(weights(0), weights(0))
    assert not _same(weights(0), weights(1))
    # A block gets the same random draw whatever the order (seed + its index in layers).
    assert _same(weights(0), weights(0, order="independent"))


def test_batchnorm_running_statistics_are_reset(lite):
    stage = next(s for s in lite.layers if any(
        isinstance(m, nn.BatchNorm2d)
        for name in lite.blocks[s]
        for m in lite.model.get_submodule(name).modules()
    ))  # fmt: skip
    _, net = next(iter(sanity.randomized_models(lite, order="independent", stages=[stage])))
    bns = [
        (name, m)
        for name in lite.blocks[stage]
        for m in net.get_submodule(name).modules()
        if isinstance(m, nn.BatchNorm2d)
    ]
    assert bns
    for _, bn in bns:
        assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert torch.equal(bn.running_var, torch.ones_like(bn.running_var))
        assert torch.equal(bn.weight, torch.ones_like(bn.weight))
        assert torch.equal(bn.bias, torch.zeros_like(bn.bias))
    trained = [
        m
        for name in lite.blocks[stage]
        for m in lite.model.get_submodule(name).modules()
        if isinstance(m, nn.BatchNorm2d)
    ]
    assert not torch.equal(trained[0].running_var, torch.ones_like(trained[0].running_var))


def test_randomized_outputs_are_finite_and_differ(lite, corella):
    with torch.inference_mode():
        logits = lite.model(corella)
    for stage, net in sanity.randomized_models(lite, stages=lite.layers[::6]):
        with torch.inference_mode():
            out = net(corella)
        assert torch.isfinite(out).all(), stage
        assert not torch.allclose(out, logits), stage


def test_nan_outputs_raise_a_clear_error(lite, corella):
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(4, 3))

        def reset_parameters(self):
            nn.init.constant_(self.weight, float("nan"))

        def forward(self, x):
            return x @ self.weight

    net = Broken()
    with pytest.raises(FloatingPointError, match="NaN or inf"):
        list(sanity.randomized_models(net, layers=[""], inputs=torch.ones(1, 4)))


def test_bad_arguments_are_named(lite):
    with pytest.raises(ValueError, match="order"):
        next(sanity.randomized_models(lite, order="sideways"))
    with pytest.raises(ValueError, match="not in the model's layers"):
        next(sanity.randomized_models(lite, stages=["layer9"]))
    with pytest.raises(ValueError, match="layers="):
        next(sanity.randomized_models(nn.Linear(2, 2)))
    with pytest.raises(TypeError, match="load_model"):
        next(sanity.randomized_models("resnet"))


def test_bare_module_with_layers(corella):
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten())
    net.eval()
    with torch.no_grad():
        net[1].running_mean.fill_(3.0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    got = dict(sanity.randomized_models(net, layers=["1", "0"], blocks={"1": ["1"], "0": ["0"]}))
    assert set(got) == {"1", "0"}
    assert torch.equal(got["1"][1].running_mean, torch.zeros(4))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


# ---------------------------------------------------------------------------
# The cascade


def test_cascade_leaves_the_model_unchanged_and_has_no_nan(lite, top_down):
    result, before = top_down
    assert_same_state(before, lite.model)
    assert np.isfinite(result.similarity.value).all()
    assert np.isfinite(result.edges.value).all()
    assert np.isfinite(result.maps.value).all()
    assert all(torch.isfinite(t).all() for t in result.tensors.values())


def test_cascade_shapes(lite, top_down):
    result, _ = top_down
    stages = ["original", lite.layers[0], lite.layers[len(lite.layers) // 2], lite.layers[-1]]
    assert result.stages == stages
    assert list(result.similarity.columns) == ["method", "stage", "metric", "value"]
    assert len(result.similarity) == len(CHEAP) * len(stages) * len(sanity.METRICS)
    assert list(pd_unique(result.similarity.stage)) == stages
    assert list(result.maps.columns) == ["method", "stage", "row", "col", "value"]
    assert len(result.maps) == len(CHEAP) * len(stages) * sanity.FRAME_SIZE**2
    assert result.tensors[("gradient", "original")].shape == (224, 224)
    orig = result.similarity[result.similarity.stage == "original"]
    assert np.allclose(orig.value, 1.0)
    assert set(result.edges.columns) == {"method", "metric", "value"}
    assert result.table("spearman_abs").shape == (len(stages), len(CHEAP))


def pd_unique(series):
    return dict.fromkeys(series).keys()


def test_the_course_numbers(lite, top_down):
    """The paper's direction on EfficientNet-Lite0 and the corella (see DESIGN.md)."""
    result, _ = top_down
    abs_ = result.table("spearman_abs")
    signed = result.table("spearman_signed")
    half, last = lite.layers[len(lite.layers) // 2], lite.layers[-1]
    grad_half = abs(abs_.loc[half, "gradient"])
    gbp_half = abs(abs_.loc[half, "guided_backprop"])
    print(abs_.round(3), signed.round(3), sep="\n")
    assert grad_half <= 0.5
    assert gbp_half >= 0.6
    assert gbp_half >= 2 * grad_half
    assert abs(abs_.loc[last, "gradient"]) < 0.3
    assert signed.loc[result.stages[1:], "grad_cam"].min() < 0.5
    assert signed.loc[last, "grad_cam"] < 0.5


@pytest.mark.filterwarnings("ignore::saliency_helpers.CompletenessWarning")
def test_cascade_uses_the_same_method_and_the_original_target(lite, corella):
    """Each stage's map is the SAME method on the randomized copy, for the trained prediction."""
    kw = {"integrated_gradients": {"n_steps": 4}, "smoothgrad": {"nt_samples": 2}}
    methods = ["integrated_gradients", "smoothgrad", "grad_cam"]
    stage = lite.layers[1]
    result = sanity.cascade(lite, corella, methods, stages=[stage], method_kwargs=kw)
    predicted = lite.predict(corella, k=1).class_index[0]
    assert result.target == predicted
    _, net = next(sanity.randomized_models(lite, stages=[stage]))
    with torch.inference_mode():
        assert net(corella).argmax().item() != predicted  # so fixing the target matters
    for method in methods:
        extra = {"layer": lite.gradcam_layer_name} if method == "grad_cam" else {}
        for where, model in (("original", lite), (stage, net)):
            expected = sh.attribute(
                method, model, corella, target=predicted, **kw.get(method, {}), **extra
            )
            got = result.tensors[(method, where)]
            assert torch.allclose(got, expected[0].sum(0), atol=1e-6), (method, where)


def test_similarity_metrics_known_answers():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(3, 32, 32, generator=gen)
    sim = sanity.similarity(a, a)
    assert sim == {"spearman_signed": 1.0, "spearman_abs": 1.0, "ssim": 1.0}
    assert sanity.similarity(a, -a)["spearman_signed"] == pytest.approx(-1.0)
    assert sanity.similarity(a, -a)["spearman_abs"] == pytest.approx(1.0)
    b = torch.rand(3, 32, 32, generator=gen)
    expected = spearmanr(a.sum(0).ravel(), b.sum(0).ravel()).statistic
    assert sanity.similarity(a, b)["spearman_signed"] == pytest.approx(expected)
    assert abs(sanity.similarity(a, b)["spearman_abs"]) < 0.2
    assert sanity.similarity(a, torch.zeros_like(a))["spearman_abs"] == 0.0
    with pytest.raises(ValueError, match="size"):
        sanity.similarity(a, torch.rand(3, 16, 16))


def test_edge_map_is_the_sobel_of_the_photo(lite, corella):
    edges = sanity.edge_map(corella, lite)
    assert edges.shape == (224, 224)
    assert edges.min() >= 0 and math.isfinite(float(edges.max()))
    flat = torch.full_like(corella, 0.3)
    assert float(sanity.edge_map(flat, lite).abs().max()) < 1e-6


def test_cascade_rejects_bad_input(lite, corella):
    with pytest.raises(ValueError, match="one image"):
        sanity.cascade(lite, corella.expand(2, -1, -1, -1), ["gradient"])
    with pytest.raises(ValueError, match="method_kwargs"):
        sanity.cascade(lite, corella, ["gradient"], method_kwargs={"smoothgrad": {}})
    with pytest.raises(ValueError, match="not in the model's layers"):
        sanity.cascade(lite, corella, ["gradient"], stages=["fc"])


# ---------------------------------------------------------------------------
# Charts


def test_charts_fit_the_budget(top_down):
    result, _ = top_down
    grid = sanity.cascade_grid(result)
    assert sh.chart_size_bytes(grid) <= 1_000_000
    lines = sanity.similarity_chart(result)
    assert sh.chart_size_bytes(lines) <= 1_000_000
    with pytest.raises(ValueError, match="no map"):
        sanity.cascade_grid(result, stages=["nowhere"])


def test_grid_worst_case_fits_the_budget():
    """Five methods x the default seven depths of pure noise (PNG's worst case) < 1 MB."""
    gen = torch.Generator().manual_seed(0)
    methods = ["gradient", "integrated_gradients", "smoothgrad", "grad_cam", "guided_backprop"]
    stages = ["original"] + [f"block{i}" for i in range(19)]
    tensors = {(m, s): torch.randn(224, 224, generator=gen) for m in methods for s in stages}
    fake = sanity.CascadeResult(
        maps=None, tensors=tensors, similarity=None, edges=None, stages=stages,
        methods=methods, target=0, order="top_down",
    )  # fmt: skip
    grid = sanity.cascade_grid(fake)
    size = sh.chart_size_bytes(grid)
    assert size <= 1_000_000, size
