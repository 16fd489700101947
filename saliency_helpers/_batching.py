"""Speed without changing the answer: memory layout and batch size (private to the package).

Integrated Gradients and SmoothGrad run one network forward and backward
dozens of times; on a CPU the memory layout decides much of the speed. PyTorch
stores images channels-first (NCHW), and oneDNN, PyTorch's CPU convolution
library, reorders every activation to its own blocked layout and back around
each convolution. On channels-last (NHWC) tensors it works in place, and its
depthwise convolutions (EfficientNet's) are several times faster.
:class:`ChannelsLast` runs a network on channels-last inputs; ``attribute``
uses it for the many-pass methods when the network's weights are not stored
channels-last already (see ``benchmarks/`` for the numbers). It computes the same
function; only the order of float additions changes (measured: the input gradient
of EfficientNet-Lite0 is as close to a float64 reference with it as without it).

The tools that measure the work (FLOP counter, GEMM probe) live in ``benchmarks/flops.py``.

Threads: PyTorch uses one thread per core; nothing here calls
``torch.set_num_threads`` (and nothing in the package does on import).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = [
    "ChannelsLast",
    "channels_last_weights",
    "images_per_batch",
    "saved_bytes_per_input",
    "uses_convolutions",
]


class ChannelsLast(nn.Module):
    """Wrap a network so that it sees its image inputs in channels-last memory layout.

    Only the layout changes: the shape, the values and the wrapped network (its
    weights, hooks, ``training`` flags) are untouched, and gradients flow back to
    the caller's NCHW tensor. Inputs that are not 4-D pass through as they are.

    Args:
        net: the network to run, e.g. ``bundle.model``.

    Example:
        >>> fast = ChannelsLast(b.model)
        >>> torch.allclose(fast(x), b.model(x), atol=1e-4)
        True
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if isinstance(x, torch.Tensor) and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x, *args, **kwargs)


def uses_convolutions(net: nn.Module) -> bool:
    """Whether ``net`` has a 2-D convolution (only then does the layout matter)."""
    return any(isinstance(m, nn.Conv2d) for m in net.modules())


def channels_last_weights(net: nn.Module) -> bool:
    """Whether every 2-D convolution of ``net`` stores its weights channels-last.

    Such a network (``net.to(memory_format=torch.channels_last)``) already runs its
    convolutions channels-last whatever the layout of its inputs.
    """
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    return bool(convs) and all(
        m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs
    )


# Bytes saved for the backward pass depend on the architecture and the input shape, not on
# the weights: remembered per (architecture, input shape), e.g. across a cascade's copies.
_SAVED_BYTES: dict[tuple, int] = {}


def _signature(net: nn.Module, example: torch.Tensor) -> tuple:
    tensors = [*net.named_parameters(), *net.named_buffers()]
    return (
        type(net).__module__,
        type(net).__qualname__,
        tuple((name, tuple(t.shape), t.dtype) for name, t in tensors),
        tuple(example.shape[1:]),
        example.dtype,
    )


def saved_bytes_per_input(net: nn.Module, example: torch.Tensor) -> int:
    """Bytes that autograd keeps for the backward pass of one input (weights excluded).

    Measured once per architecture and input shape with one forward pass of one
    input, then remembered. Call it on a network in eval mode.

    Args:
        net: the network.
        example: ``(N, ...)`` inputs; only ``example[:1]`` is run.

    Returns:
        The activations' bytes held between forward and backward for one input.

    Example:
        >>> saved_bytes_per_input(b.model, x) / 2**20  # doctest: +SKIP
        78.4
    """
    key = _signature(net, example)
    if key not in _SAVED_BYTES:
        weights = {t.untyped_storage().data_ptr() for t in [*net.parameters(), *net.buffers()]}
        saved: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            storage = t.untyped_storage()
            if storage.data_ptr() not in weights:
                saved[storage.data_ptr()] = storage.nbytes()
            return t

        hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
        # Outside inference mode whatever the caller's mode: nothing is saved inside it.
        with torch.inference_mode(False), torch.enable_grad(), hooks:
            net(example[:1].detach().clone().requires_grad_(True))
        _SAVED_BYTES[key] = sum(saved.values())
    return _SAVED_BYTES[key]


def images_per_batch(
    net: nn.Module, example: torch.Tensor, budget_bytes: float, most: int
) -> int:
    """How many images to push through ``net`` at once for a memory budget.

    Args:
        net: the network (eval mode).
        example: ``(N, ...)`` inputs of the shape that will be run.
        budget_bytes: bytes that the activations kept for backward may take.
        most: the largest batch worth running (speed stops growing beyond it).

    Returns:
        ``max(1, min(most, budget_bytes // saved_bytes_per_input))``.

    Example:
        >>> images_per_batch(b.model, x, 300 * 2**20, 16)  # doctest: +SKIP
        4
    """
    per_input = max(1, saved_bytes_per_input(net, example))
    return max(1, min(most, int(budget_bytes // per_input)))
