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
from saliency_helpers import plots, sanity

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
    assert list(result.similarity.columns) == [
        "method", "stage", "image", "seed", "metric", "value"
    ]
    assert len(result.similarity) == len(CHEAP) * len(stages) * len(sanity.METRICS)
    assert list(pd_unique(result.similarity.stage)) == stages
    assert list(result.maps.columns) == ["method", "stage", "row", "col", "value"]
    assert len(result.maps) == len(CHEAP) * len(stages) * sanity.FRAME_SIZE**2
    assert result.tensors[("gradient", "original")].shape == (224, 224)
    orig = result.similarity[result.similarity.stage == "original"]
    assert np.allclose(orig.value, 1.0)
    assert set(result.edges.columns) == {"method", "image", "metric", "value"}
    assert result.references.empty  # one seed: no floor
    assert result.table("spearman_abs").shape == (len(stages), len(CHEAP))


def pd_unique(series):
    return dict.fromkeys(series).keys()


@pytest.fixture(scope="module")
def many(lite):
    """The cheap methods over the five photos and two seeds, at three stages."""
    xs = [lite.preprocess(p) for p in sh.course_photos().values()]
    stages = [lite.layers[0], lite.layers[len(lite.layers) // 2], lite.layers[-1]]
    return sanity.cascade(
        lite, xs, CHEAP + ["guided_grad_cam"], seeds=(0, 1), stages=stages,
        images=list(sh.PHOTO_SET),
    )  # fmt: skip


def test_many_photos_and_seeds_give_tidy_frames_and_references(many):
    n_img, n_seed, n_stage = len(sh.PHOTO_SET), 2, 3
    methods = CHEAP + ["guided_grad_cam"]
    sim = many.similarity
    assert set(sim.image) == set(sh.PHOTO_SET) and set(sim.seed) == {0, 1}
    randomized = sim[sim.stage != "original"]
    assert len(randomized) == len(methods) * n_stage * n_img * n_seed * len(sanity.METRICS)
    refs = many.references
    assert set(refs.reference) == {"floor", "ceiling"}
    floor = refs[refs.reference == "floor"]
    # two seeds: one pair per stage and image
    assert len(floor) == len(methods) * n_stage * n_img * len(sanity.METRICS)
    ceiling = refs[refs.reference == "ceiling"]
    assert np.allclose(ceiling.value, 1.0)  # deterministic methods repeat exactly
    assert len(many.targets) == n_img and many.targets[0] == many.target
    assert set(many.edges.image) == set(sh.PHOTO_SET)
    summary = many.summary()
    assert set(summary.kind) == {"trained vs randomized", "floor", "ceiling"}


def test_the_course_verdicts(many):
    """The claims the course makes, decided by the stated rule over 5 photos x 2 seeds."""
    for metric in ("spearman_abs", "spearman_signed"):
        verdicts = many.verdicts(metric).set_index("method")
        print(metric, verdicts.round(3).to_string(), sep="\n")
        assert verdicts.loc["guided_backprop", "verdict"] == "fails"
        # Guided Grad-CAM inherits Grad-CAM's spread: on these photos it never passes.
        assert verdicts.loc["guided_grad_cam", "verdict"] != "passes"
        assert verdicts.loc["gradient", "verdict"] == "passes"
        assert set(verdicts.verdict) <= {"passes", "fails", "inconclusive"}
        assert {"first_mean", "first_sd", "ceiling", "floor", "threshold", "margin"} <= set(
            verdicts.columns
        )
    outcomes = many.stage_outcomes()
    assert len(outcomes) == 4 * 3


def test_decide_known_answers():
    assert sanity.decide([0.1, 0.2, 0.15], 1.0, [0.1, 0.2, 0.1])["outcome"] == "changed"
    assert sanity.decide([0.99, 0.98, 1.0], 1.0, [0.1, 0.2, 0.1])["outcome"] == "unchanged"
    # halfway, with a spread: no decision
    assert sanity.decide([0.3, 0.8, 0.5, 0.6], 1.0, [0.1, 0.2])["outcome"] == "undecided"
    d = sanity.decide([0.2, np.nan, 0.3], [1.0, 1.0], [0.0, 0.2])
    assert d["n"] == 2 and d["n_undefined"] == 1
    assert d["threshold"] == pytest.approx(0.55)
    se_t = np.std([0.2, 0.3], ddof=1) / np.sqrt(2)
    se_f = np.std([0.0, 0.2], ddof=1) / np.sqrt(2)
    assert d["margin"] == pytest.approx(2 * np.sqrt(se_t**2 + se_f**2 / 4))
    # references closer than the tested spread cannot resolve anything, however many samples
    # (tested sd 0.005 > ceiling - floor = 0.004)
    close = sanity.decide([0.985, 0.991, 0.997] * 100, [0.994] * 300, [0.990] * 300)
    assert close["tested_sd"] > close["ceiling_mean"] - close["floor_mean"]
    assert not close["resolved"] and close["outcome"] == "undecided"
    assert sanity.decide([0.1, 0.2, 0.15], 1.0, [0.1, 0.2, 0.1])["resolved"]
    # one defined value is not enough to decide, however far from the threshold
    assert sanity.decide([0.0, np.nan], 1.0, 0.0)["outcome"] == "undecided"
    # noise agrees with nothing, itself included: its 'change' means nothing
    gen = np.random.default_rng(0)
    noise = gen.normal(0, 0.01, 30)
    assert sanity.decide(noise, noise + 0.001, noise - 0.001)["outcome"] == "undecided"


def test_a_constant_map_is_nan_never_a_pass():
    """One zero-map policy: no ranking, NaN, counted; never 0 (a free pass) or 1."""
    a = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    zero = torch.zeros_like(a)
    sim = sanity.similarity(a, zero)
    assert math.isnan(sim["spearman_abs"]) and math.isnan(sim["spearman_signed"])
    assert math.isnan(sanity.similarity(zero, zero)["spearman_abs"])
    d = sanity.decide([float("nan")] * 4 + [0.9, 0.95], 1.0, [0.1, 0.2])
    assert d["n_undefined"] == 4 and d["n"] == 2 and d["tested_mean"] == pytest.approx(0.925)


def test_cascade_uses_the_same_method_and_the_original_target(lite, corella):
    """Each stage's map is the SAME method on the randomized copy, for the trained prediction;
    noisy methods draw their noise with a seed of their own on every network."""
    kw = {"smoothgrad": {"nt_samples": 2}}
    methods = ["smoothgrad", "grad_cam", "guided_grad_cam"]
    stage = lite.layers[1]
    result = sanity.cascade(lite, corella, methods, stages=[stage], method_kwargs=kw)
    predicted = lite.predict(corella, k=1).class_index[0]
    assert result.target == predicted
    _, net = next(sanity.randomized_models(lite, stages=[stage]))
    with torch.inference_mode():
        assert net(corella).argmax().item() != predicted  # so fixing the target matters
    for method in methods:
        extra = {"layer": lite.gradcam_layer_name} if "grad_cam" in method else {}
        for where, model, noise_seed in (("original", lite, 0), (stage, net, 2)):
            if method == "smoothgrad":
                extra = {"seed": noise_seed}
            expected = sh.attribute(
                method, model, corella, target=predicted, **kw.get(method, {}), **extra
            )
            got = result.tensors[(method, where)]
            assert torch.allclose(got, expected[0].sum(0), atol=1e-6), (method, where)


def _tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    )  # fmt: skip
    return net.eval()


def test_integrated_gradients_is_converged_in_the_cascade():
    """IG's steps come from the completeness rule on the trained model, reported per image."""
    net = _tiny_cnn()
    xs = torch.rand(3, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    result = sanity.cascade(
        net, xs, ["integrated_gradients"], target=[0, 1, 2], seeds=(0, 1),
        layers=["6", "2", "0"],
    )  # fmt: skip
    assert result.ig_steps in sanity.IG_STEP_LADDER
    assert list(result.completeness.index) == ["0", "1", "2"]
    assert (result.completeness <= 0.05).all()
    again = sh.attribute("integrated_gradients", net, xs[:1], target=0, n_steps=result.ig_steps)
    err = sh.completeness_error(net, xs[:1], again, 0)
    assert err == pytest.approx(result.completeness["0"], rel=1e-4, abs=1e-7)
    # f(x) = (w.x)^2: a left Riemann sum with 2 steps gets half of f(x) - f(0), a 50% error
    square = nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, 2), _Square()).eval()
    with pytest.raises(ValueError, match="does not converge"):
        sanity.cascade(
            square, xs, ["integrated_gradients"], target=0, layers=["1"],
            method_kwargs={"integrated_gradients": {"n_steps": 2, "method": "riemann_left"}},
        )  # fmt: skip
    with pytest.raises(ValueError, match="n_steps"):
        sanity.cascade(
            net, xs, ["integrated_gradients"], target=0, layers=["6"],
            method_kwargs={"integrated_gradients": {"n_steps": 1}},
        )  # fmt: skip


class _Square(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x**2


def test_both_reinitialisations(lite):
    """'default' is each layer's reset_parameters(); 'training' the architecture's own."""
    stage = lite.layers[-1]  # the stem: a 3x3 convolution and its BatchNorm
    _, net_default = next(sanity.randomized_models(lite, stages=[stage], init="default"))
    _, net_training = next(sanity.randomized_models(lite, stages=[stage], init="training"))
    _, net_auto = next(sanity.randomized_models(lite, stages=[stage]))
    conv = next(n for n in lite.blocks[stage]
                if isinstance(lite.model.get_submodule(n), nn.Conv2d))  # fmt: skip
    w_default = net_default.get_submodule(conv).weight
    w_training = net_training.get_submodule(conv).weight
    assert torch.equal(net_auto.get_submodule(conv).weight, w_training)  # auto = training
    fan_in = w_default[0].numel()
    fan_out = w_default.shape[0] * w_default[0, 0].numel()
    # PyTorch's default: U(-b, b), b = 1/sqrt(fan_in), so variance 1/(3 fan_in);
    # EfficientNet's training-time draw: N(0, 2 / fan_out)
    assert w_default.var().item() == pytest.approx(1 / (3 * fan_in), rel=0.3)
    assert w_training.var().item() == pytest.approx(2 / fan_out, rel=0.3)
    # A 3x3 convolution with as many input as output channels (ResNet's): 6x the variance
    conv3 = nn.Conv2d(64, 64, 3, bias=False)
    sh.models.resnet_training_init(conv3)
    v_training = conv3.weight.var().item()
    conv3.reset_parameters()
    assert v_training / conv3.weight.var().item() == pytest.approx(6.0, rel=0.15)
    calls = []

    def mine(module):
        calls.append(isinstance(module, nn.Conv2d))
        return sanity._reset(module)

    next(sanity.randomized_models(lite, stages=[stage], init=mine))
    assert any(calls)
    net = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="training-time initialiser"):
        next(sanity.randomized_models(net, layers=["0"], init="training"))
    with pytest.raises(ValueError, match="Unknown init"):
        next(sanity.randomized_models(lite, init="xavier"))


def test_similarity_metrics_known_answers():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(3, 32, 32, generator=gen)
    sim = sanity.similarity(a, a)
    assert sim == pytest.approx({"spearman_signed": 1.0, "spearman_abs": 1.0, "ssim": 1.0})
    assert sanity.similarity(a, -a)["spearman_signed"] == pytest.approx(-1.0)
    assert sanity.similarity(a, -a)["spearman_abs"] == pytest.approx(1.0)
    b = torch.rand(3, 32, 32, generator=gen)
    expected = spearmanr(a.sum(0).ravel(), b.sum(0).ravel()).statistic
    assert sanity.similarity(a, b)["spearman_signed"] == pytest.approx(expected)
    assert abs(sanity.similarity(a, b)["spearman_abs"]) < 0.2
    assert math.isnan(sanity.similarity(a, torch.zeros_like(a))["spearman_abs"])
    with pytest.raises(ValueError, match="size"):
        sanity.similarity(a, torch.rand(3, 16, 16))


def test_edge_map_is_the_sobel_of_the_photo(lite, corella):
    edges = sanity.edge_map(corella, lite)
    assert edges.shape == (224, 224)
    assert edges.min() >= 0 and math.isfinite(float(edges.max()))
    flat = torch.full_like(corella, 0.3)
    assert float(sanity.edge_map(flat, lite).abs().max()) < 1e-6


def test_cascade_rejects_bad_input(lite, corella):
    with pytest.raises(ValueError, match="differ in size"):
        sanity.cascade(lite, [corella, corella[..., :200, :200]], ["gradient"])
    with pytest.raises(ValueError, match="method_kwargs"):
        sanity.cascade(lite, corella, ["gradient"], method_kwargs={"smoothgrad": {}})
    with pytest.raises(ValueError, match="not in the model's layers"):
        sanity.cascade(lite, corella, ["gradient"], stages=["fc"])
    with pytest.raises(ValueError, match="seeds"):
        sanity.cascade(lite, corella, ["gradient"], seeds=(1, 1))
    with pytest.raises(ValueError, match="Unknown method"):
        sanity.cascade(lite, corella, ["gradients"])
    with pytest.raises(ValueError, match="images names"):
        sanity.cascade(lite, corella, ["gradient"], images=["a", "b"])
    one_seed = sanity.cascade(lite, corella, ["grad_cam"], stages=[lite.layers[0]])
    with pytest.raises(ValueError, match="no references"):
        one_seed.verdicts()


# ---------------------------------------------------------------------------
# Charts


def test_charts_fit_the_budget(top_down):
    result, _ = top_down
    grid = plots.cascade_grid(result)
    assert sh.chart_size_bytes(grid) <= 1_000_000
    lines = plots.similarity_chart(result)
    assert sh.chart_size_bytes(lines) <= 1_000_000
    with pytest.raises(ValueError, match="no map"):
        plots.cascade_grid(result, stages=["nowhere"])


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
    grid = plots.cascade_grid(fake)
    size = sh.chart_size_bytes(grid)
    assert size <= 1_000_000, size


def test_similarity_chart_draws_spread_and_references(many):
    chart = plots.similarity_chart(many, "spearman_signed")
    assert sh.chart_size_bytes(chart) <= 1_000_000
    spec = chart.to_dict()
    kinds = {row["kind"] for row in spec["datasets"][next(iter(spec["datasets"]))]}
    assert kinds == {"trained vs randomized", "floor", "ceiling", "threshold"}
    marks = [layer["mark"]["type"] for layer in spec["spec"]["layer"]]
    assert "area" in marks and "line" in marks  # the sd band and the means


def test_verdicts_are_kept_for_later_notebooks(tmp_path, monkeypatch):
    monkeypatch.setenv("SALIENCY_CACHE", str(tmp_path))
    assert sanity.load_verdicts("efficientnet_lite0") is None  # notebook 06 not run yet
    path = sanity.save_verdicts("efficientnet_lite0", {"gradient": "passes", "guided_backprop":
                                                      "fails"}, quick=True)  # fmt: skip
    assert path.parent == tmp_path
    assert sanity.load_verdicts("efficientnet_lite0") is None  # full size: not saved
    kept = sanity.load_verdicts("efficientnet_lite0", quick=True)
    assert kept["verdicts"] == {"gradient": "passes", "guided_backprop": "fails"}
    assert kept["quick"] is True and kept["saved"]
    assert sanity.load_verdicts("resnet18", quick=True) is None  # another model's verdicts
    path.write_text("not json")
    assert sanity.load_verdicts("efficientnet_lite0", quick=True) is None
    with pytest.raises(ValueError, match="model's name"):
        sanity.save_verdicts("../x", {})
