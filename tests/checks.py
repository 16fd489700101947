"""Assertions shared by the unit tests: the caller's model is left as it was."""

from __future__ import annotations

import torch


def model_state(net: torch.nn.Module) -> dict:
    """Everything about a model that a helper must leave as it found it."""
    return {
        "params": {k: v.detach().clone() for k, v in net.state_dict().items()},
        "training": [m.training for m in net.modules()],
        "requires_grad": [p.requires_grad for p in net.parameters()],
        "grads": [p.grad for p in net.parameters()],
    }


def assert_same_state(before: dict, net: torch.nn.Module) -> None:
    after = model_state(net)
    assert before["training"] == after["training"]
    assert before["requires_grad"] == after["requires_grad"]
    assert all(g is None for g in after["grads"]), "a helper left weight gradients behind"
    for key, value in before["params"].items():
        assert torch.equal(value, after["params"][key]), f"{key} changed"


def hooks_left(net: torch.nn.Module) -> list[str]:
    """Names of modules that still carry any forward/backward hook."""
    left = []
    for name, m in net.named_modules():
        if (
            m._forward_hooks
            or m._forward_pre_hooks
            or m._backward_hooks
            or getattr(m, "_backward_pre_hooks", None)
        ):
            left.append(name or "<root>")
    return left
