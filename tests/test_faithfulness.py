"""Faithfulness by intervention: deletion and insertion curves against answers computed by
hand on a linear model, occlusion's known answer, ROAR's bookkeeping, Captum's metrics, and
no side effects on the caller's model."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from checks import assert_same_state, hooks_left, model_state
from skimage.filters import sobel
from torch import nn

import saliency_helpers as sh
from saliency_helpers import faithfulness as fa
from saliency_helpers import training
from saliency_helpers.data import ink_mask, load_mnist

trapezoid = getattr(np, "trapezoid", None) or np.trapz
C, H, W = 2, 4, 4
PIXELS = H * W


class LinearScore(nn.Module):
    """logits = [w·x, 0], so the probability of class 0 is sigmoid(w·x)."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("w", w.flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1) @ self.w
        return torch.stack([s, torch.zeros_like(s)], dim=1)


@pytest.fixture
def linear_case():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(C, H, W, generator=gen)
    x = torch.rand(1, C, H, W, generator=gen)
    return LinearScore(w), w, x


def _contributions(w: torch.Tensor, x: torch.Tensor) -> list[float]:
    """Each pixel's share of the logit, all channels together: sum_c w_c x_c."""
    return (w * x[0]).sum(dim=0).flatten().double().tolist()


def _by_hand(contrib: list[float], order: list[int], kind: str) -> list[float]:
    """sigmoid of the logit after step i of `order` (one pixel a step, baseline 0)."""
    scores = []
    for i in range(len(order) + 1):
        changed = set(order[:i])
        if kind == "deletion":  # the changed pixels are gone
            logit = sum(c for p, c in enumerate(contrib) if p not in changed)
        else:  # only the changed pixels are there
            logit = sum(c for p, c in enumerate(contrib) if p in changed)
        scores.append(1 / (1 + math.exp(-logit)))
    return scores


def _area(scores: list[float]) -> float:
    return float(trapezoid(scores, np.linspace(0, 1, len(scores))))


@pytest.mark.parametrize("kind", fa.KINDS)
def test_ordering_by_true_contribution_is_best_and_matches_the_hand_computed_curve(
    linear_case, kind
):
    net, w, x = linear_case
    run = fa.deletion_curve if kind == "deletion" else fa.insertion_curve
    contrib = _contributions(w, x)
    best_order = sorted(range(PIXELS), key=lambda p: -contrib[p])
    expected = _by_hand(contrib, best_order, kind)

    truth = w * x  # (1, C, H, W): summed over channels it is the pixel's contribution
    frame = run(net, x, truth, target=0, steps=PIXELS, baseline=0.0)
    assert list(frame.columns) == ["image", "fraction", "score", "target"]
    assert frame["fraction"].tolist() == pytest.approx(np.linspace(0, 1, PIXELS + 1))
    assert frame["score"].to_numpy() == pytest.approx(expected, abs=1e-6)
    best = sh.auc(frame)
    assert isinstance(best, float)
    assert best == pytest.approx(_area(expected), abs=1e-6)

    # Reverse order: the least relevant pixels first, by either spelling.
    worst = sh.auc(run(net, x, truth, 0, PIXELS, 0.0, order="least_relevant_first"))
    assert worst == pytest.approx(sh.auc(run(net, x, -truth, 0, PIXELS, 0.0)), abs=1e-9)
    assert worst == pytest.approx(_area(_by_hand(contrib, best_order[::-1], kind)), abs=1e-6)

    others = [w[None], x, w.abs()[None], torch.ones_like(x)] + [
        torch.randn(1, C, H, W, generator=torch.Generator().manual_seed(s)) for s in range(20)
    ]
    randoms = [sh.auc(run(net, x, "random", 0, PIXELS, 0.0, seed=s)) for s in range(5)]
    areas = [sh.auc(run(net, x, m, 0, PIXELS, 0.0)) for m in others] + randoms
    if kind == "deletion":  # the score falls fastest: the smallest area
        assert all(best <= a + 1e-9 for a in areas)
        assert all(best - 1e-9 <= a <= worst + 1e-9 for a in randoms)
        assert best < worst
    else:  # the score rises fastest: the largest area
        assert all(best >= a - 1e-9 for a in areas)
        assert all(worst - 1e-9 <= a <= best + 1e-9 for a in randoms)
        assert best > worst


def test_one_map_per_image_and_steps_of_several_pixels(linear_case):
    net, w, x = linear_case
    truth = w * x
    full = fa.deletion_curve(net, x, truth, 0, steps=4, baseline=0.0)
    for one_map in (truth.sum(dim=1), truth.sum(dim=1, keepdim=True)):
        other = fa.deletion_curve(net, x, one_map, 0, steps=4, baseline=0.0)
        pd.testing.assert_frame_equal(full, other)
    contrib = _contributions(w, x)
    order = sorted(range(PIXELS), key=lambda p: -contrib[p])
    expected = _by_hand(contrib, order, "deletion")[::4]  # 4 pixels a step
    assert full["score"].to_numpy() == pytest.approx(expected, abs=1e-6)
    # The same points given as fractions: the same frame; uneven fractions, the same scores.
    same = fa.deletion_curve(net, x, truth, 0, steps=[0, 0.25, 0.5, 0.75, 1], baseline=0.0)
    pd.testing.assert_frame_equal(full, same)
    uneven = fa.deletion_curve(net, x, truth, 0, steps=(0, 0.25, 1), baseline=0.0)
    assert uneven["fraction"].tolist() == [0, 0.25, 1]
    assert uneven["score"].to_numpy() == pytest.approx(full["score"].to_numpy()[[0, 1, 4]])
    s0, s1, s2 = uneven["score"]
    assert fa.auc(uneven) == pytest.approx(
        0.25 * (s0 + s1) / 2 + 0.75 * (s1 + s2) / 2
    )


def test_ties_are_broken_by_pixel_order(linear_case):
    net, _, x = linear_case
    flat = torch.zeros(1, H, W)  # every pixel tied: removed in raster order
    frame = fa.deletion_curve(net, x, flat, 0, steps=PIXELS, baseline=0.0)
    w = net.w.view(C, H, W)
    contrib = _contributions(w, x)
    expected = _by_hand(contrib, list(range(PIXELS)), "deletion")
    assert frame["score"].to_numpy() == pytest.approx(expected, abs=1e-6)


def test_random_ranking_is_seeded():
    net = LinearScore(torch.linspace(-1, 1, C * H * W))
    x = torch.rand(2, C, H, W, generator=torch.Generator().manual_seed(3))
    a = fa.deletion_curve(net, x, "random", 0, steps=8, baseline=0.0)
    b = fa.deletion_curve(net, x, "random", 0, steps=8, baseline=0.0)
    c = fa.deletion_curve(net, x, "random", 0, steps=8, baseline=0.0, seed=1)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["score"], c["score"])
    assert sorted(a["image"].unique()) == [0, 1]


def test_random_ranking_of_squares_removes_one_whole_square_after_another():
    x = torch.zeros(2, 3, 10, 7)  # 10 x 7 pixels in squares of 4: 3 x 2 squares, edges cut
    r = fa.random_ranking(x, block=4, seed=0)
    assert r.shape == (2, 1, 10, 7)
    assert torch.equal(r, fa.random_ranking(x, block=4, seed=0))
    assert not torch.equal(r, fa.random_ranking(x, block=4, seed=1))
    square = (torch.arange(10)[:, None] // 4) * 2 + torch.arange(7)[None, :] // 4
    orders = []
    for image in range(2):
        order = r[image, 0].flatten().argsort(descending=True)
        squares_in_order = square.flatten()[order]
        assert (squares_in_order.diff() != 0).sum() == 6 - 1  # each square's pixels in one run
        assert sorted(squares_in_order.unique_consecutive().tolist()) == list(range(6))
        orders.append(squares_in_order.unique_consecutive().tolist())
    assert orders[0] != orders[1]  # each image has its own order of squares
    single = fa.random_ranking(x, block=1)
    assert all(single[i].unique().numel() == 70 for i in range(2))  # block 1: pixels apart
    for bad in (0, 2.5, True, 11):
        with pytest.raises(ValueError, match="block must be a whole number of pixels from 1 to 10"):
            fa.random_ranking(x, block=bad)
    with pytest.raises(ValueError, match=r"shaped \(N, C, H, W\)"):
        fa.random_ranking(x[0], block=2)


# ---------------------------------------------------------------------------- auc


def test_auc_of_hand_made_frames():
    line = pd.DataFrame({"fraction": [0.0, 0.5, 1.0], "score": [1.0, 0.5, 0.0]})
    assert fa.auc(line) == pytest.approx(0.5)
    assert fa.auc(line.iloc[::-1]) == pytest.approx(0.5)  # sorted by fraction first
    two = pd.concat(
        [
            line.assign(method="down", image=0, target=3),
            line.assign(method="flat", image=0, target=3, score=1.0),
        ]
    )
    areas = fa.auc(two)
    assert isinstance(areas, pd.Series) and areas.name == "auc"
    assert list(areas.index.names) == ["method", "image"]
    assert areas.loc[("down", 0)] == pytest.approx(0.5)
    assert areas.loc[("flat", 0)] == pytest.approx(1.0)
    by_image = fa.auc(line.assign(image=0).pipe(lambda f: pd.concat([f, f.assign(image=1)])))
    assert by_image.index.name == "image" and by_image.tolist() == pytest.approx([0.5, 0.5])
    with pytest.raises(ValueError, match="columns fraction and score"):
        fa.auc(line.rename(columns={"score": "p"}))


# ---------------------------------------------------------------------------- errors


def test_validation_errors_name_the_fix(linear_case):
    net, w, x = linear_case
    with pytest.raises(ValueError, match=r"do not fit inputs.*one map per image"):
        fa.deletion_curve(net, x, torch.zeros(1, C, H, W + 1), 0, baseline=0.0)
    with pytest.raises(ValueError, match=r"do not fit inputs"):
        fa.deletion_curve(net, x, torch.zeros(2, C, H, W), 0, baseline=0.0)
    with pytest.raises(ValueError, match=r"steps must be a positive int"):
        fa.deletion_curve(net, x, w * x, 0, steps=0, baseline=0.0)
    for bad in ((0.1, 1.0), (0, 0.5), (0, 0.5, 0.5, 1), (1,)):
        with pytest.raises(ValueError, match=r"must increase from 0 to 1"):
            fa.deletion_curve(net, x, w * x, 0, steps=bad, baseline=0.0)
    with pytest.raises(TypeError, match=r"steps must be an int \(e.g. 100\) or fractions"):
        fa.deletion_curve(net, x, w * x, 0, steps="many", baseline=0.0)
    with pytest.raises(ValueError, match=r"Unknown baseline 'grey'.*one of"):
        fa.insertion_curve(net, x, w * x, 0, baseline="grey")
    with pytest.raises(ValueError, match=r"needs the model's normalisation"):
        fa.deletion_curve(net, x, w * x, 0)  # "black" on a bare module
    nan = (w * x).clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or inf.*nan_to_num"):
        fa.deletion_curve(net, x, nan, 0, baseline=0.0)
    with pytest.raises(ValueError, match=r"order must be one of"):
        fa.deletion_curve(net, x, w * x, 0, baseline=0.0, order="morf")
    with pytest.raises(ValueError, match=r'tensor or "random"'):
        fa.deletion_curve(net, x, "edges", 0, baseline=0.0)
    with pytest.raises(ValueError, match=r"batch must be a positive int"):
        fa.deletion_curve(net, x, w * x, 0, baseline=0.0, batch=0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        fa.deletion_curve(nn.Linear(4, 2), torch.rand(3, 4), torch.rand(3, 4), 0, baseline=0.0)
    with pytest.raises(ValueError, match=r"kind must be one of"):
        fa.curves(net, x, {"w": w * x}, kind="removal")


# ---------------------------------------------------------------------------- no side effects


class TinyBatchNormNet(nn.Module):
    """BatchNorm in training mode would change its running statistics on every forward."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.bn(self.conv(x))).mean(dim=(2, 3)))


def test_the_callers_model_is_unchanged_and_no_hooks_are_left():
    net = TinyBatchNormNet().train()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    before = model_state(net)
    maps = {"gradient": sh.attribute("gradient", net, x, target=1), "random": "random"}
    frame = fa.curves(net, x, maps, kind="insertion", steps=8, baseline=0.0, images=["a", "b"])
    fa.deletion_curve(net, x, maps["gradient"], steps=8, baseline="mean", batch=3)
    fa.robustness("gradient", net, x, target=1, n_perturb=3)
    assert net.training and net.bn.training
    assert_same_state(before, net)
    assert hooks_left(net) == []
    assert list(frame.columns) == ["method", "photo", "image", "fraction", "score", "target"]
    assert frame["method"].unique().tolist() == ["gradient", "random"]
    assert frame.groupby("image")["photo"].first().tolist() == ["a", "b"]
    assert (frame["target"] == frame.groupby("image")["target"].transform("first")).all()
    assert len(fa.auc(frame)) == 4  # 2 methods x 2 images


# ---------------------------------------------------------------------------- occlusion


def test_occlusion_of_one_pixel_on_a_linear_model_is_w_times_x_minus_baseline():
    gen = torch.Generator().manual_seed(6)
    w = torch.randn(3, H, W, generator=gen)
    net = LinearScore(w)
    x = torch.rand(2, 3, H, W, generator=gen)
    got = sh.attribute("occlusion", net, x, target=0, window=1, baselines=0.5)
    # A 1-pixel window covers all 3 channels of the pixel (sliding window (C, 1, 1)), so the
    # logit changes by sum_c w_c (x_c - b) at that pixel, and Captum gives that change to
    # every value the patch covered: each channel of the pixel gets the pixel's sum.
    per_pixel = (w * (x - 0.5)).sum(dim=1, keepdim=True)
    assert got.shape == x.shape
    assert torch.allclose(got, per_pixel.expand_as(x), atol=1e-5)
    assert not got.is_inference()
    # Patches of 2x2 pixels, side by side: each value gets its patch's total.
    patches = sh.attribute("occlusion", net, x, target=0, window=2, stride=2, baselines=0.5)
    pooled = nn.functional.avg_pool2d(per_pixel, 2) * 4
    expected = nn.functional.interpolate(pooled, scale_factor=2, mode="nearest")
    assert torch.allclose(patches, expected.expand_as(x), atol=1e-5)


def test_occlusion_on_vectors_and_its_errors():
    torch.manual_seed(7)
    net = nn.Linear(6, 3)
    x = torch.randn(4, 6)
    got = sh.attribute("occlusion", net, x, target=2, window=1)
    assert torch.allclose(got, net.weight[2].detach() * x, atol=1e-5)
    image = torch.rand(1, 3, H, W)
    conv = TinyBatchNormNet().eval()
    with pytest.raises(ValueError, match=r"window=5 is larger than the input \(4 x 4\)"):
        sh.attribute("occlusion", conv, image, target=0, window=5)
    with pytest.raises(ValueError, match=r"stride=3 > window=2"):
        sh.attribute("occlusion", conv, image, target=0, window=2, stride=3)
    with pytest.raises(ValueError, match=r"window must be a positive int"):
        sh.attribute("occlusion", conv, image, target=0, window=0)
    assert "occlusion" in sh.METHODS and "occlusion" not in sh.attribution.COURSE_METHODS


# ---------------------------------------------------------------------------- edge map


def test_edge_map_is_the_sobel_magnitude_of_the_grey_image():
    grey = torch.zeros(2, 1, 12, 12)
    grey[0, :, :, 6:] = 1.0  # a vertical step
    grey[1, :, 3:9, 3:9] = 0.5  # a square
    edges = fa.edge_map(grey)
    assert edges.shape == grey.shape
    for i in range(2):
        assert np.allclose(edges[i, 0].numpy(), sobel(grey[i, 0].numpy()), atol=1e-6)
    rgb = fa.edge_map(grey.expand(2, 3, 12, 12), ((0.0,) * 3, (1.0,) * 3))
    assert rgb.shape == (2, 3, 12, 12) and torch.allclose(rgb[:, :1], edges, atol=1e-6)
    assert edges[0, 0, :, :4].abs().max() == 0  # flat: no edge
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\) or \(N, 1, H, W\)"):
        fa.edge_map(torch.zeros(1, 2, 12, 12))


# ---------------------------------------------------------------------------- ROAR


@pytest.fixture(scope="module")
def split():
    return load_mnist()


def test_roar_trains_k0_once_and_removes_the_top_pixels_everywhere(split, monkeypatch):
    calls = []

    def fake_train(config, data=None, *, progress=True, cache=True):
        calls.append(data)
        return SimpleNamespace(test_accuracy=0.5, seconds=1.0, from_cache=False)

    monkeypatch.setattr(training, "train", fake_train)
    config = training.TrainConfig(n_train=50, epochs=1)
    ink = {"train": split.x_train, "val": split.x_val, "test": split.x_test}
    rankings = {"ink": ink, "fn": lambda x: x, "random": "random"}
    frame = fa.roar(split, rankings, fractions=(0.5, 0.0), replacement=0.0, config=config)
    assert len(calls) == 1 + 3  # k = 0 once, then one run per ranking
    assert list(frame.columns) == [
        "method", "fraction", "seed", "test_accuracy", "seconds", "from_cache"
    ]  # fmt: skip
    assert frame[["method", "fraction"]].values.tolist() == [
        ["ink", 0.0], ["ink", 0.5], ["fn", 0.0], ["fn", 0.5], ["random", 0.0], ["random", 0.5]
    ]  # fmt: skip
    unmodified, by_dict, by_function, random = calls
    assert len(unmodified.x_train) == 50 and torch.equal(unmodified.x_test, split.x_test)
    # Under 40% of any digit's pixels are ink: removing half of them by brightness is all.
    for part in ("x_train", "x_val", "x_test"):
        assert not ink_mask(getattr(by_dict, part)).any(), part
        assert torch.equal(getattr(by_dict, part), getattr(by_function, part))
    removed = random.x_test != split.x_test
    assert removed.any() and ink_mask(random.x_test).any()
    assert torch.equal(by_dict.y_test, split.y_test) and torch.equal(by_dict.y_val, split.y_val)

    mean = split.x_train[:50].mean()
    fa.roar(split, {"random": "random"}, fractions=(0.5,), config=config)
    changed = calls[-1].x_test[calls[-1].x_test != split.x_test]
    assert torch.allclose(changed, mean.expand_as(changed))  # ROAR's per-channel mean
    with pytest.raises(ValueError, match=r"needs maps for train, val and test"):
        fa.roar(split, {"bad": {"train": split.x_train}}, fractions=(0.5,), config=config)
    with pytest.raises(ValueError, match=r"fractions must be numbers in \[0, 1\]"):
        fa.roar(split, {"random": "random"}, fractions=(1.5,), config=config)

    calls.clear()  # seeds: every run once per seed, the rankings made once
    seen = []
    frame = fa.roar(split, {"fn": lambda x: seen.append(1) or x}, fractions=(0.0, 0.5),
                    config=config, seeds=(3, 4))  # fmt: skip
    assert len(calls) == 4 and len(seen) == 3  # 2 seeds x (k=0, k=0.5); train, val, test
    assert frame[["fraction", "seed"]].values.tolist() == [[0.0, 3], [0.0, 4], [0.5, 3], [0.5, 4]]
    with pytest.raises(ValueError, match="seeds is empty"):
        fa.roar(split, {"random": "random"}, config=config, seeds=())


def _roar_frame(drops):
    """A roar() frame with accuracy 1 at k = 0 and 1 - drop at k = 0.5, per method and seed."""
    rows = []
    for method, values in drops.items():
        for seed, drop in enumerate(values):
            rows += [{"method": method, "fraction": 0.0, "seed": seed, "test_accuracy": 1.0},
                     {"method": method, "fraction": 0.5, "seed": seed,
                      "test_accuracy": 1.0 - drop}]  # fmt: skip
    return pd.DataFrame(rows)


def test_roar_verdicts_pair_each_seed_with_the_random_ranking():
    frame = _roar_frame({
        "clear": [0.5, 0.6, 0.55], "worse": [0.1, 0.0, 0.05], "noisy": [0.5, 0.1, 0.3],
        "random": [0.3, 0.2, 0.25],
    })  # fmt: skip
    table = fa.roar_verdicts(frame)
    assert list(table.index) == ["clear", "worse", "noisy"]
    assert table.loc["clear", "verdict"] == "more than random"
    assert table.loc["worse", "verdict"] == "less than random"
    assert table.loc["noisy", "verdict"] == "not distinguishable"
    assert table.loc["clear", "drop"] == pytest.approx(0.55)
    assert table.loc["clear", "gain"] == pytest.approx(0.3) and table.loc["clear", "seeds"] == 3
    drop = fa.roar_drop(frame)
    assert drop["noisy"] == pytest.approx(0.3) and list(drop.index) == list(frame.method.unique())
    # one seed: no spread, so never a verdict either way
    one = fa.roar_verdicts(_roar_frame({"clear": [0.9], "random": [0.1]}))
    assert one.loc["clear", "verdict"] == "not distinguishable"
    with pytest.raises(ValueError, match="no 'random' ranking"):
        fa.roar_verdicts(_roar_frame({"clear": [0.9, 0.8]}))


def test_roar_removing_the_ink_leaves_chance_accuracy(split):
    config = training.TrainConfig(n_train=200, epochs=2, batch_size=16, target_accuracy=1.0)
    frame = fa.roar(
        split, {"ink": lambda x: x}, fractions=(0.0, 0.5), replacement=0.0,
        config=config, cache=False,
    )  # fmt: skip
    start, blank = frame["test_accuracy"].tolist()
    # Blank test digits all get one class: exactly 50 of the 500 (10%) are right.
    assert blank == pytest.approx(0.1) and start > 0.3
    drop = fa.roar_drop(frame)
    assert drop.name == "roar_drop" and drop["ink"] == pytest.approx(start - blank)
    chart = fa.roar_chart(pd.concat([frame, frame.assign(method="random")])).to_dict()
    assert chart["mark"]["type"] == "line"


# ---------------------------------------------------------------------------- metrics


def test_robustness_of_the_gradient(linear_case):
    net, w, x = linear_case
    # A linear model's gradient explains every perturbation exactly: infidelity 0, and
    # the gradient does not change under perturbations: sensitivity 0.
    state = torch.random.get_rng_state()
    exact = fa.robustness("gradient", net, x, target=0)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert exact["infidelity"] == pytest.approx(0.0, abs=1e-6)
    assert exact["sensitivity_max"] == pytest.approx(0.0, abs=1e-6)
    conv = TinyBatchNormNet().eval()
    images = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(8))
    values = fa.robustness("gradient", conv, images, n_perturb=4, perturb_radius=0.1)
    assert set(values) == {"infidelity", "sensitivity_max"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in values.values())
    assert values["sensitivity_max"] > 0
    assert values == fa.robustness("gradient", conv, images, n_perturb=4, perturb_radius=0.1)
    # A named baseline becomes one tensor that Captum repeats for the perturbed copies.
    ig = fa.robustness("integrated_gradients", conv, images, n_perturb=2, baselines="mean")
    assert all(math.isfinite(v) for v in ig.values())


# ---------------------------------------------------------------------------- charts


def test_curves_chart_summarises_before_charting():
    net = LinearScore(torch.linspace(-1, 1, C * H * W))
    x = torch.rand(3, C, H, W, generator=torch.Generator().manual_seed(9))
    maps = {"x": x, "random": "random"}
    frame = fa.curves(net, x, maps, steps=10, baseline=0.0)
    spec = fa.curves_chart(frame).to_dict()
    assert len(spec["datasets"][next(iter(spec["datasets"]))]) == 2 * 11  # methods x steps
    assert "AUC" in str(spec["facet"]) or "AUC" in str(spec)
    fa.curves_chart(fa.deletion_curve(net, x[:1], x[:1], 0, 10, 0.0), kind="deletion").to_dict()


# ---------------------------------------------------------------------------- the real model


def test_batching_does_not_change_the_curve_on_the_course_model(lite, corella):
    before = model_state(lite.model)
    grad = sh.attribute("gradient", lite, corella)
    one = fa.deletion_curve(lite, corella, grad, steps=10, batch=1)
    many = fa.deletion_curve(lite, corella, grad, steps=10)
    assert np.allclose(one["score"], many["score"], atol=1e-6)
    assert one["target"].unique().tolist() == [89]  # the predicted class, fixed once
    assert one["score"].iloc[0] > one["score"].iloc[-1]
    assert_same_state(before, lite.model)


def _areas(values: dict[str, list[float]]) -> pd.Series:
    rows = [(m, i, v) for m, vs in values.items() for i, v in enumerate(vs)]
    frame = pd.DataFrame(rows, columns=["method", "image", "auc"])
    return frame.set_index(["method", "image"])["auc"]


def test_versus_reference_applies_the_stated_rule():
    areas = _areas({
        "random": [0.30, 0.40, 0.35, 0.50],
        "good": [0.10, 0.21, 0.14, 0.30],     # 0.20 lower on every photo: better
        "bad": [0.50, 0.60, 0.56, 0.70],      # 0.20 higher on every photo: worse
        "mixed": [0.10, 0.60, 0.15, 0.70],    # better on two, worse on two
    })
    deletion = sh.faithfulness.versus_reference(areas, kind="deletion")
    assert deletion.loc["good", "verdict"] == "better than random"
    assert deletion.loc["bad", "verdict"] == "worse than random"
    assert deletion.loc["mixed", "verdict"] == "not distinguishable"
    assert "random" not in deletion.index
    assert deletion.loc["good", "gain"] == pytest.approx(0.2, abs=0.01)
    insertion = sh.faithfulness.versus_reference(areas, kind="insertion")  # higher is better
    assert insertion.loc["good", "verdict"] == "worse than random"
    assert insertion.loc["bad", "verdict"] == "better than random"
    one = _areas({"random": [0.3], "good": [0.1]})  # one image: no spread, no verdict
    assert sh.faithfulness.versus_reference(one).loc["good", "verdict"] == "not distinguishable"
    with pytest.raises(ValueError, match="random"):
        sh.faithfulness.versus_reference(_areas({"good": [0.1, 0.2]}))


@pytest.mark.parametrize("kind", fa.KINDS)
def test_a_pass_that_spans_two_images_scores_each_with_its_own_ranking(kind):
    """Several images and batch sizes that cut through an image's steps: each image's curve
    is the one it gets alone, with one image per pass."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)).eval()
    x = torch.randn(3, 2, 6, 6)
    maps = torch.randn(3, 2, 6, 6)
    run = fa.deletion_curve if kind == "deletion" else fa.insertion_curve
    alone = pd.concat(
        [run(net, x[i : i + 1], maps[i : i + 1], 1, steps=10, baseline=0.0, batch=1)
         for i in range(3)],
        ignore_index=True,
    )  # fmt: skip
    for batch in (1, 5, 7, 32):
        together = run(net, x, maps, 1, steps=10, baseline=0.0, batch=batch)
        assert together["image"].tolist() == [i for i in range(3) for _ in range(11)]
        assert np.allclose(together["score"], alone["score"], atol=1e-6), batch
