"""Forward-only work on ONNX Runtime: the same numbers as PyTorch, never stale weights, clear
errors, and the curves and occlusion unchanged by the engine."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import saliency_helpers as sh
from saliency_helpers import _inference as inf
from saliency_helpers import faithfulness as fa

pytestmark = pytest.mark.skipif(not inf.onnx_available(), reason="onnxruntime not installed")


def _small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise, as in EfficientNet
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    )
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
    return net.eval()


class DataDependent(nn.Module):
    """A forward pass that branches on the data: torch.export cannot follow it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).mean(dim=(2, 3))
        if float(y.sum()) > 0:
            return y
        return -y


def test_onnx_gives_the_logits_of_pytorch_for_any_batch_size():
    net, x = _small_cnn(), torch.randn(7, 3, 64, 64)
    run = inf.forward_only(net, x[:1], engine="onnx")
    assert run is not net
    with torch.inference_mode():
        for n in (1, 3, 7):  # a batch size that was not exported
            assert torch.allclose(run(x[:n]), net(x[:n]), atol=1e-5)


def test_auto_uses_onnx_only_for_photo_sized_images():
    net = _small_cnn()
    assert inf.forward_only(net, torch.randn(1, 3, 28, 28)) is net
    assert inf.forward_only(net, torch.randn(2, 784)) is net
    assert inf.forward_only(net, torch.randn(1, 3, 64, 64)) is not net
    assert inf.forward_only(net, torch.randn(1, 3, 64, 64), engine="torch") is net


def test_a_changed_weight_is_never_run_stale():
    net, x = _small_cnn(), torch.randn(2, 3, 64, 64)
    before = inf.forward_only(net, x, engine="onnx")
    with torch.no_grad():
        net[0].weight.mul_(-1.0)  # in place, as a randomization cascade does
    after = inf.forward_only(net, x, engine="onnx")
    with torch.inference_mode():
        assert torch.allclose(after(x), net(x), atol=1e-5)
        assert not torch.allclose(before(x), after(x), atol=1e-3)
    net[7].weight = nn.Parameter(torch.zeros_like(net[7].weight))  # replaced
    with torch.inference_mode():
        assert torch.allclose(inf.forward_only(net, x, engine="onnx")(x), net(x), atol=1e-6)


def test_the_session_is_reused_while_nothing_changes():
    net, x = _small_cnn(), torch.randn(2, 3, 64, 64)
    first = inf._session(net, x)
    assert inf._session(net, x[:1]) is first
    net.train()  # another mode is another network (BatchNorm)
    assert inf._session(net, x) is not first


def test_bad_engine_and_unexportable_networks_say_what_to_do():
    x = torch.randn(1, 3, 64, 64)
    with pytest.raises(ValueError, match="engine must be one of"):
        inf.forward_only(_small_cnn(), x, engine="ort")
    net = DataDependent().eval()
    with pytest.raises(RuntimeError, match="could not be exported to ONNX.*engine='torch'"):
        inf.forward_only(net, x, engine="onnx")
    with pytest.warns(UserWarning, match="run in PyTorch"):
        assert inf.forward_only(net, x, engine="auto") is net


def test_curves_and_occlusion_do_not_depend_on_the_engine():
    net, x = _small_cnn(), torch.randn(2, 3, 64, 64)
    maps = {"random": "random", "gradient": sh.attribute("gradient", net, x, target=0)}
    for kind in fa.KINDS:
        frames = [
            fa.curves(net, x, maps, kind=kind, steps=20, baseline=0.0, engine=e, target=0)
            for e in ("torch", "onnx")
        ]
        assert (frames[0].score - frames[1].score).abs().max() < 1e-6
    occluded = [
        sh.attribute("occlusion", net, x, target=0, window=16, stride=8, engine=e)
        for e in ("torch", "onnx")
    ]
    assert torch.allclose(*occluded, atol=1e-5)


def test_a_bad_engine_name_in_the_curves_is_a_clear_error():
    net, x = _small_cnn(), torch.randn(1, 3, 64, 64)
    with pytest.raises(ValueError, match="engine must be one of"):
        fa.deletion_curve(net, x, "random", target=0, baseline=0.0, engine="fast")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the toy sizes stay on PyTorch without a word
        fa.deletion_curve(net, x[..., :28, :28], "random", target=0, steps=4, baseline=0.0)
