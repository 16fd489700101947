"""Measuring the work: a FLOP counter that works inside ``torch.autograd.grad`` and the
machine's matrix-multiply rate, the denominator of every "% of peak" in the report.

Only the benchmark uses these, so they live here and not in the course's package.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["FlopCount", "gemm_gflops"]


class FlopCount(TorchDispatchMode):
    """Count floating-point operations with PyTorch's own formulas, gradients included.

    ``torch.utils.flop_counter.FlopCounterMode`` tracks modules with backward
    hooks that fail inside ``torch.autograd.grad`` (which Captum uses). This
    context manager applies the same per-operator formulas (convolutions, matrix
    products, their backward passes; 2 FLOP per multiply-add) without the module
    tracking, so it works under any autograd call.

    Attributes:
        total: FLOPs counted so far.
        by_op: FLOPs per ATen operator name.

    Example:
        >>> with FlopCount() as fc:
        ...     net(torch.randn(1, 3, 224, 224))
        >>> round(fc.total / 1e9, 2)  # ResNet18 forward
        3.63
    """

    def __init__(self) -> None:
        super().__init__()
        self.total = 0
        self.by_op: Counter[str] = Counter()
        self._registry = FlopCounterMode(display=False).flop_registry

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        formula = self._registry.get(func._overloadpacket)
        if formula is None and func is not torch.ops.prim.device.default:
            # Composite operators (conv2d under inference_mode) count through their parts.
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        out = func(*args, **kwargs)
        if func._overloadpacket is torch.ops.aten.convolution_backward and args[9] != 1:
            flops = _grouped_conv_backward_flop(*args)
            self.total += flops
            self.by_op["convolution_backward"] += flops
        elif formula is not None:
            flops = int(formula(*args, **kwargs, out_val=out))
            self.total += flops
            self.by_op[str(func._overloadpacket.__name__)] += flops
        return out


def _grouped_conv_backward_flop(grad_out, x, w, bias, stride, padding, dilation, transposed,
                                _out_pad, groups, mask) -> int:  # noqa: ANN001
    """Backward FLOPs of a grouped (e.g. depthwise) convolution: as many as the forward for
    each gradient asked for. PyTorch's formula ignores ``groups`` for the weight gradient
    and counts a depthwise convolution's as if it were dense (64x too many for 64 channels)."""
    spatial = (x if transposed else grad_out).shape[2:]
    c_out, c_in_per_group, *kernel = w.shape
    forward = 2 * x.shape[0] * c_out * c_in_per_group * math.prod(kernel) * math.prod(spatial)
    return forward * (int(mask[0]) + int(mask[1]))


def gemm_gflops(
    n: int = 4096, repeats: int = 5, dtype: torch.dtype = torch.float32
) -> dict[str, Any]:
    """This machine's matrix-multiply rate: the denominator of every "% of peak".

    Args:
        n: side of the square matrices (``2 n³`` FLOP per product).
        repeats: timed products after one warm-up.
        dtype: element type.

    Returns:
        ``{"gflops_best", "gflops_median", "n", "threads", "seconds"}``: rates from
        the fastest and the median product, with ``torch.get_num_threads()``.

    Example:
        >>> gemm_gflops(1024, repeats=2)["gflops_best"] > 1
        True
    """
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen, dtype=dtype)
    b = torch.randn(n, n, generator=gen, dtype=dtype)
    out = torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        times.append(time.perf_counter() - start)
    flop = 2.0 * n**3
    times.sort()
    return {
        "gflops_best": flop / times[0] / 1e9,
        "gflops_median": flop / times[len(times) // 2] / 1e9,
        "n": n,
        "threads": torch.get_num_threads(),
        "seconds": times,
    }
