"""The textbook implementations the helpers are compared with.

Each is what a tutorial writes first: the model as torchvision hands it over
(parameters requiring grad), one ``.backward()`` per interpolation step or
noise sample, the gradient read from ``x.grad``. Same number of network passes
as the helper, so the ratio measures the implementation, not the method.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


def trainable_copy(net: nn.Module) -> nn.Module:
    """A copy of ``net`` in eval mode whose parameters require grad, as freshly loaded."""
    out = copy.deepcopy(net).eval()
    for p in out.parameters():
        p.requires_grad_(True)
    return out


def _grad(net: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    net.zero_grad(set_to_none=True)
    net(x)[0, target].backward()
    return x.grad


def gradient(net: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    return _grad(net, x, target)


def input_x_gradient(net: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    return x * _grad(net, x, target)


def integrated_gradients(
    net: nn.Module, x: torch.Tensor, target: int, n_steps: int = 50
) -> torch.Tensor:
    baseline = torch.zeros_like(x)
    total = torch.zeros_like(x)
    for k in range(n_steps):
        alpha = (k + 0.5) / n_steps
        total += _grad(net, baseline + alpha * (x - baseline), target)
    return (x - baseline) * total / n_steps


def smoothgrad(
    net: nn.Module, x: torch.Tensor, target: int, nt_samples: int = 50, noise: float = 0.15
) -> torch.Tensor:
    sigma = noise * float(x.max() - x.min())
    total = torch.zeros_like(x)
    for _ in range(nt_samples):
        total += _grad(net, x + sigma * torch.randn_like(x), target)
    return total / nt_samples


def grad_cam(net: nn.Module, x: torch.Tensor, target: int, layer: str) -> torch.Tensor:
    saved = {}

    def keep(module, inputs, output):
        saved["act"] = output
        output.register_hook(lambda g: saved.__setitem__("grad", g))

    handle = net.get_submodule(layer).register_forward_hook(keep)
    try:
        _grad(net, x, target)
    finally:
        handle.remove()
    weights = saved["grad"].mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * saved["act"]).sum(dim=1, keepdim=True))
    return F.interpolate(cam.detach(), size=x.shape[2:], mode="bilinear", align_corners=False)


def guided_backprop(net: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    def positive(module, grad_input, grad_output):
        return (grad_input[0].clamp_min(0),)

    handles = [
        m.register_full_backward_hook(positive) for m in net.modules() if isinstance(m, nn.ReLU)
    ]
    try:
        return _grad(net, x, target)
    finally:
        for h in handles:
            h.remove()


METHODS = {
    "gradient": gradient,
    "input_x_gradient": input_x_gradient,
    "integrated_gradients": integrated_gradients,
    "smoothgrad": smoothgrad,
    "grad_cam": grad_cam,
    "guided_backprop": guided_backprop,
}
