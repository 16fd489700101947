"""attribute(): known answers on models small enough to compute by hand, the course's
completeness numbers on the real model, and no side effects on the caller's model."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from captum.attr import GuidedGradCam
from checks import assert_same_state, hooks_left, model_state
from torch import nn

import saliency_helpers as sh
from saliency_helpers._batching import ChannelsLast, saved_bytes_per_input
from saliency_helpers.models import GuidedReLU6

ALL_METHODS = sorted(sh.METHODS)
QUICK = {
    "integrated_gradients": {"n_steps": 8},
    "smoothgrad": {"nt_samples": 4},
    "smoothgrad_sq": {"nt_samples": 4},
    "vargrad": {"nt_samples": 4},
    "occlusion": {"window": 56},  # 16 forward passes instead of the default's 729
}


@pytest.fixture
def linear():
    torch.manual_seed(0)
    net = nn.Linear(6, 3)
    return net


def test_linear_model_known_answers(linear):
    x = torch.randn(4, 6)
    w = linear.weight[1].detach()
    grad = sh.attribute("gradient", linear, x, target=1)
    ixg = sh.attribute("input_x_gradient", linear, x, target=1)
    ig = sh.attribute("integrated_gradients", linear, x, target=1, baselines="zero")
    assert torch.allclose(grad, w.expand_as(x))
    assert torch.allclose(ixg, x * w, atol=1e-6)
    assert torch.allclose(ig, x * w, atol=1e-5)  # IG with a zero baseline is x·w ...
    assert not torch.allclose(ig, grad)  # ... and not the gradient w


def test_input_x_gradient_is_zero_where_the_input_is_zero(lite, corella):
    x = corella.clone()
    x[..., 100:140, 100:140] = 0.0
    a = sh.attribute("input_x_gradient", lite, x)
    assert a[..., 100:140, 100:140].abs().max() == 0
    assert a.abs().sum() > 0


def test_smoothgrad_without_noise_is_the_gradient(lite, corella):
    grad = sh.attribute("gradient", lite, corella)
    smooth = sh.attribute("smoothgrad", lite, corella, noise=0.0, nt_samples=3)
    assert torch.allclose(grad, smooth, atol=1e-6)


def test_gradient_equals_autograd(lite, corella):
    x = corella.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(lite.model(x)[0, 89], x)
    assert torch.allclose(sh.attribute("gradient", lite, corella, target=89), g, atol=1e-6)


class TinyConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).mean(dim=(2, 3)))


def test_grad_cam_equals_the_formula_by_hand():
    net = TinyConvNet().eval()
    x = torch.randn(2, 2, 5, 5)
    a = net.act(net.conv(x))  # activations A^k, (N, K, h, w)
    # d y_c / d A^k_ij = w_ck / (h·w): the pooled gradient alpha_k = w_ck / (h·w)
    alpha = net.fc.weight[2].detach() / 25.0
    expected = F.relu((alpha.view(1, -1, 1, 1) * a).sum(dim=1, keepdim=True))
    got = sh.attribute("grad_cam", net, x, target=2, layer=net.act)
    assert got.shape == x.shape
    assert torch.allclose(got[:, :1], expected, atol=1e-6)
    assert torch.equal(got[:, 0], got[:, 1])  # one map, repeated over channels
    assert torch.allclose(sh.attribute("grad_cam", net, x, target=2, layer="act"), got)


def _guided_by_hand(net: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    """Guided Backprop written out: at every rectifier, pass on only positive gradients
    where the forward input was in the linear range."""

    class Guided(torch.autograd.Function):
        @staticmethod
        def forward(ctx, inp, upper):
            ctx.save_for_backward(inp)
            ctx.upper = upper
            return inp.clamp(0, upper)

        @staticmethod
        def backward(ctx, grad):
            (inp,) = ctx.saved_tensors
            return grad.clamp_min(0) * ((inp > 0) & (inp < ctx.upper)), None

    originals = {}
    for name, m in net.named_modules():
        if isinstance(m, (nn.ReLU, GuidedReLU6)):
            originals[name] = m.forward
            upper = 6.0 if isinstance(m, GuidedReLU6) else float("inf")
            m.forward = lambda inp, upper=upper: Guided.apply(inp, upper)
    try:
        x = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(net(x)[:, target].sum(), x)
    finally:
        for name in originals:
            del net.get_submodule(name).forward
    return g


class TinyReLU6Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.conv1, self.act1 = nn.Conv2d(3, 8, 3, padding=1), GuidedReLU6()
        self.conv2, self.act2 = nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.act2(self.conv2(self.act1(self.conv1(x) * 4))).mean(dim=(2, 3)))


def test_guided_backprop_handles_relu6_and_matches_the_rule():
    net = TinyReLU6Net().eval()
    x = torch.randn(2, 3, 8, 8)
    got = sh.attribute("guided_backprop", net, x, target=1)
    assert torch.allclose(got, _guided_by_hand(net, x, 1), atol=1e-6)
    assert not torch.allclose(got, sh.attribute("gradient", net, x, target=1))


def test_guided_backprop_on_lite_is_not_the_gradient(lite, corella):
    gb = sh.attribute("guided_backprop", lite, corella)
    grad = sh.attribute("gradient", lite, corella)
    assert not torch.allclose(gb, grad, atol=1e-4)
    assert torch.allclose(gb, _guided_by_hand(lite.model, corella, 89), atol=1e-5)


class TinyStridedNet(nn.Module):
    """Two ReLUs (Guided Backprop acts on both) and a 4x4 Grad-CAM map under 8x8 inputs."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.conv1, self.act1 = nn.Conv2d(2, 4, 3, padding=1), nn.ReLU()
        self.conv2, self.act2 = nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU()
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(self.act2(self.conv2(self.act1(self.conv1(x)))).mean(dim=(2, 3)))


def test_guided_grad_cam_equals_captum_on_a_tiny_cnn():
    net = TinyStridedNet().train()  # no BatchNorm or dropout: train and eval agree
    for p in net.parameters():
        p.requires_grad_(True)
    before = model_state(net)
    x = torch.randn(2, 2, 8, 8)
    got = sh.attribute("guided_grad_cam", net, x, target=2, layer=net.act2)
    # Captum's keyword goes through; a dotted name picks the same layer.
    nearest = sh.attribute(
        "guided_grad_cam", net, x, target=2, layer="act2", interpolate_mode="nearest"
    )
    assert net.training and hooks_left(net) == []
    assert_same_state(before, net)
    assert got.shape == x.shape and not got.requires_grad and got.abs().sum() > 0
    captum = GuidedGradCam(net, net.act2)
    expected = captum.attribute(x.clone().requires_grad_(True), target=2,
                                interpolate_mode="bilinear")
    assert torch.allclose(got, expected.detach(), atol=1e-6)
    expected_nearest = captum.attribute(x.clone().requires_grad_(True), target=2)
    assert torch.allclose(nearest, expected_nearest.detach(), atol=1e-6)
    assert not torch.allclose(got, nearest)  # the two modes really differ here


def test_guided_grad_cam_on_the_course_model(lite, corella):
    before = model_state(lite.model)
    got = sh.attribute("guided_grad_cam", lite, corella, target=89)
    expected = GuidedGradCam(lite.model, lite.gradcam_layer).attribute(
        corella.clone().requires_grad_(True), target=89, interpolate_mode="bilinear"
    )
    assert got.shape == corella.shape and not got.requires_grad
    assert torch.allclose(got, expected.detach(), atol=1e-6)
    # Guided Backprop times the helper's (bilinear) Grad-CAM, exactly.
    product = sh.attribute("guided_backprop", lite, corella, target=89) * sh.attribute(
        "grad_cam", lite, corella, target=89
    )
    assert torch.allclose(got, product, atol=1e-6)
    assert hooks_left(lite.model) == []
    assert_same_state(before, lite.model)


def test_guided_grad_cam_needs_a_layer_on_a_bare_module():
    net = TinyConvNet().eval()
    x = torch.randn(1, 2, 5, 5)
    with pytest.raises(ValueError, match="guided_grad_cam on a bare nn.Module needs layer="):
        sh.attribute("guided_grad_cam", net, x, target=0)
    with pytest.raises(ValueError, match="needs a convolutional layer"):
        sh.attribute("guided_grad_cam", net, x, target=0, layer="fc")
    with pytest.raises(ValueError, match="base must be one of"):
        sh.attribute("smoothgrad", net, x, target=0, base="guided_grad_cam")
    assert hooks_left(net) == []


def test_control_methods_are_registered_but_not_taught():
    assert set(sh.attribution.CONTROL_METHODS) <= set(sh.METHODS)
    assert "guided_grad_cam" not in sh.attribution.COURSE_METHODS


@pytest.mark.parametrize("method", ALL_METHODS)
def test_every_method_returns_input_shape_and_leaves_no_trace(lite, corella, method):
    before = model_state(lite.model)
    x = corella.clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = sh.attribute(method, lite, x, **QUICK.get(method, {}))
    assert a.shape == x.shape and not a.requires_grad
    assert torch.isfinite(a).all() and a.abs().sum() > 0
    assert torch.equal(x, corella) and not x.requires_grad
    assert hooks_left(lite.model) == []
    assert_same_state(before, lite.model)


def test_bare_module_in_training_mode_is_left_in_training_mode():
    net = TinyConvNet().train()
    for p in net.parameters():
        p.requires_grad_(True)
    before = model_state(net)
    sh.attribute("integrated_gradients", net, torch.randn(1, 2, 5, 5), target=0, n_steps=4)
    sh.attribute("grad_cam", net, torch.randn(1, 2, 5, 5), target=0, layer="act")
    assert net.training
    assert_same_state(before, net)


def test_targets_by_default_name_list_and_errors(lite, corella):
    x = torch.cat([corella, corella])
    default = sh.attribute("gradient", lite, x)
    assert torch.allclose(default, sh.attribute("gradient", lite, x, target=89))
    assert torch.allclose(
        default, sh.attribute("gradient", lite, x, target="sulphur-crested cockatoo")
    )
    mixed = sh.attribute("gradient", lite, x, target=[89, 21])
    assert torch.allclose(mixed[0], default[0]) and not torch.allclose(mixed[1], default[1])
    with pytest.raises(ValueError, match="out of range.*1000 classes"):
        sh.attribute("gradient", lite, corella, target=1000)
    with pytest.raises(ValueError, match="2 targets for 1 inputs"):
        sh.attribute("gradient", lite, corella, target=[1, 2])
    with pytest.raises(ValueError, match="not an ImageNet class"):
        sh.attribute("gradient", lite, corella, target="corella")
    with pytest.raises(ValueError, match="Unknown method"):
        sh.attribute("saliency", lite, corella)
    with pytest.raises(TypeError, match=r"the order is sh.attribute\(method, model"):
        sh.attribute(lite, corella, 89, "gradient")  # arguments in the wrong order
    with pytest.raises(ValueError, match="unsqueeze"):
        sh.attribute("gradient", lite, corella[0])
    with pytest.raises(TypeError, match="preprocess"):
        sh.attribute("gradient", lite, "corella.jpg")
    with pytest.raises(ValueError, match="no layer named"):
        sh.attribute("grad_cam", lite, corella, layer="layer4")


@pytest.mark.parametrize("photo", ["corella", "cockatoo"])
@pytest.mark.parametrize("baseline", ["zero", "black"])
def test_ig_completeness_below_5_percent_at_defaults(lite, photo, baseline):
    x = lite.preprocess(sh.course_photo(photo))
    with warnings.catch_warnings():
        warnings.simplefilter("error", sh.CompletenessWarning)
        a, error = sh.attribute(
            "integrated_gradients", lite, x, baselines=baseline, return_error=True
        )
    print(
        f"{photo} {baseline}: completeness error {error:.2%} at n_steps={sh.attribution.IG_STEPS}"
    )
    assert error < 0.05
    assert error == pytest.approx(sh.completeness_error(lite, x, a, 89, baseline))


def test_ig_warns_when_steps_are_too_few(lite, corella):
    with pytest.warns(sh.CompletenessWarning, match="increase n_steps"):
        sh.attribute("integrated_gradients", lite, corella, n_steps=32)


def test_named_baselines(lite, corella):
    black = sh.make_baseline("black", corella, lite)
    assert torch.allclose(sh.denormalize(black, lite), torch.zeros_like(black))
    assert torch.allclose(black, torch.full_like(black, -1.0))  # [-1, 1] inputs
    for name in sh.BASELINES:
        b = sh.make_baseline(name, corella, lite)
        assert b.shape == corella.shape and torch.isfinite(b).all()
    assert torch.equal(
        sh.make_baseline("noise", corella, lite), sh.make_baseline("noise", corella, lite)
    )
    with pytest.raises(ValueError, match="needs the model's normalisation"):
        sh.make_baseline("black", corella)
    with pytest.raises(ValueError, match="one of"):
        sh.make_baseline("grey", corella, lite)


def test_smoothgrad_is_seeded_and_keeps_the_global_rng(lite, corella):
    state = torch.random.get_rng_state()
    a = sh.attribute("smoothgrad", lite, corella, nt_samples=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = sh.attribute("smoothgrad", lite, corella, nt_samples=4)
    assert torch.equal(a, b)
    assert not torch.equal(a, sh.attribute("smoothgrad", lite, corella, nt_samples=4, seed=1))
    assert (sh.attribute("smoothgrad_sq", lite, corella, nt_samples=4) >= 0).all()
    with pytest.raises(ValueError, match="fraction of the input range"):
        sh.attribute("smoothgrad", lite, corella, noise=-1)


def test_ig_accepts_captums_method_keyword(linear):
    """`method` names both the attribution method and Captum's integration rule."""
    x = torch.randn(2, 6)
    ig = sh.attribute(
        "integrated_gradients", linear, x, target=0, method="riemann_middle", n_steps=4
    )
    assert torch.allclose(ig, x * linear.weight[0].detach(), atol=1e-5)


# ---------------------------------------------------------------------------
# Performance defaults (issue 5): batches, memory layout, no side effects


class ConvBNNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv, self.bn, self.act = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU()
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        return self.fc(self.act(self.bn(self.conv(x))).mean(dim=(2, 3)))


def _max_batch_seen(net, run):
    seen = []
    handle = net.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    try:
        run()
    finally:
        handle.remove()
    return max(seen)


def test_bare_module_with_batchnorm_in_training_mode_keeps_its_statistics():
    """Target resolution and IG's completeness check run in eval mode too."""
    net = ConvBNNet().train()
    before = model_state(net)  # includes BatchNorm's running mean and variance
    x = torch.randn(2, 3, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sh.CompletenessWarning)
        sh.attribute("integrated_gradients", net, x, target=1, n_steps=4)
        sh.attribute("smoothgrad", net, x, nt_samples=3)
    assert net.training
    assert_same_state(before, net)


def test_many_pass_methods_stay_within_the_memory_budget(monkeypatch):
    net = ConvBNNet().eval()
    x = torch.randn(1, 3, 16, 16)
    per_image = saved_bytes_per_input(net, x)
    monkeypatch.setattr(sh.attribution, "MEMORY_BUDGET", 5 * per_image)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sh.CompletenessWarning)
        ig = _max_batch_seen(net, lambda: sh.attribute(
            "integrated_gradients", net, x, target=0, n_steps=300))
        sg = _max_batch_seen(net, lambda: sh.attribute("smoothgrad", net, x, target=0))
        two = _max_batch_seen(net, lambda: sh.attribute(
            "smoothgrad", net, torch.cat([x, x]), target=0))
    assert ig == 5 and sg == 5 and two == 4  # 300 steps or 50 samples: never more at once
    monkeypatch.setattr(sh.attribution, "MEMORY_BUDGET", 10**12)
    monkeypatch.setattr(sh.attribution, "BATCH", 16)
    assert sh.attribution._ig_batch(net, x, 50) == 13  # 13+13+13+11, not 16+16+16+2
    assert sh.attribution._ig_batch(net, torch.cat([x, x]), 50) == 2 * 8  # steps per chunk


def test_results_do_not_depend_on_the_batch_size(lite, corella):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sh.CompletenessWarning)
        ig = {k: sh.attribute("integrated_gradients", lite, corella, n_steps=12,
                              internal_batch_size=k, method="riemann_middle") for k in (1, 12)}
    scale = ig[1].abs().max()
    assert torch.allclose(ig[1], ig[12], atol=1e-5 * scale)
    # The seeded noise is drawn in the same order whatever the batch.
    sg = {k: sh.attribute("smoothgrad", lite, corella, nt_samples=6, nt_samples_batch_size=k)
          for k in (1, 4)}
    assert torch.allclose(sg[1], sg[4], atol=1e-5 * sg[1].abs().max())


def test_channels_last_is_as_accurate_as_channels_first(lite, corella):
    """The layout changes the order of float sums only: against a float64 reference both
    layouts are equally close, and far closer than the method's own approximation."""
    x0 = sh.make_baseline("black", corella, lite)
    steps = 8
    alphas = (torch.arange(steps, dtype=torch.float64) + 0.5) / steps
    net64 = copy.deepcopy(lite.model).double()
    x64, b64 = corella.double(), x0.double()
    path = (b64 + alphas.view(-1, 1, 1, 1) * (x64 - b64)).requires_grad_(True)
    (g,) = torch.autograd.grad(net64(path)[:, 89].sum(), path)
    reference = (x64 - b64) * g.mean(dim=0, keepdim=True)
    errors = {}
    for channels_last in (True, False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sh.CompletenessWarning)
            a = sh.attribute("integrated_gradients", lite, corella, target=89, baselines=x0,
                             n_steps=steps, method="riemann_middle", channels_last=channels_last)
        assert a.is_contiguous()
        errors[channels_last] = float((a.double() - reference).abs().max() / reference.abs().max())
    print(f"max error against float64, relative to the largest value: {errors}")
    assert errors[True] < 1e-2 and errors[True] < 2 * errors[False] + 1e-5


def test_channels_last_wrapper_only_for_channels_first_cnns():
    net = ConvBNNet().eval()
    assert isinstance(sh.attribution._fast(net), ChannelsLast)
    assert sh.attribution._fast(net.to(memory_format=torch.channels_last)) is net
    lin = nn.Linear(3, 2)
    assert sh.attribution._fast(lin) is lin
    assert sh.attribution._fast(net, channels_last=False) is net


def test_blur_baseline_works_on_small_images():
    """Photos keep the 51-px kernel; images smaller than it get a kernel that fits."""
    import torchvision.transforms.functional as TF

    photo = torch.rand(1, 3, 64, 64)
    expected = TF.gaussian_blur(photo, kernel_size=[51, 51], sigma=[12.0, 12.0])
    assert torch.equal(sh.make_baseline("blur", photo), expected)
    for side in (3, 8, 25):
        tiny = torch.rand(2, 1, side, side)
        blurred = sh.make_baseline("blur", tiny)
        assert blurred.shape == tiny.shape and torch.isfinite(blurred).all()
        assert blurred.std() < tiny.std()  # smoothed


class _Threshold(torch.nn.Module):
    """f(x) = relu(sum(x) - 0.5): IG from zero with two steps misses the part of the path
    that a sum just above 0.5 spends above the threshold."""

    def forward(self, x):
        s = x.flatten(1).sum(dim=1)
        return torch.stack([torch.relu(s - 0.5), torch.zeros_like(s)], dim=1)


def test_ig_warning_on_a_batch_names_the_input_and_its_tiny_change():
    x = torch.full((3, 1, 2, 2), 0.25)  # sum 1: f changes by 0.5 from the zero baseline
    x[2] = (0.5 + 1e-5) / 4  # sum just above 0.5: f changes by 1e-5 only
    with pytest.warns(sh.CompletenessWarning) as seen:
        sh.attribute("integrated_gradients", _Threshold(), x, target=0, baselines=0.0, n_steps=2)
    message = str(seen[0].message)
    assert "input 2 of 3; 1 of them over 5%" in message, message
    assert "a relative error of a near-zero change" in message and "increase n_steps" in message
