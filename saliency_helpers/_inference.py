"""Forward passes only, fast: ONNX Runtime for the thousands of inferences of notebook 08.

Deletion and insertion curves (about 100 perturbed copies of every photo, for every
ranking) and occlusion (one forward pass per patch position) need no gradients, only
forward passes, thousands of them. PyTorch's CPU kernels for EfficientNet's depthwise
convolutions are slow; ONNX Runtime (Microsoft's inference engine, the reference runtime of
the ONNX format) runs the same network, exported once with ``torch.onnx.export``, about
twice as fast on a laptop CPU (measured on 2 cores, EfficientNet-Lite0, 224-pixel photos:
about 5 ms per image at any batch from 2 to 32, against 9.8 ms for PyTorch at its best
batch of 4 and 34 ms at 32; ``python -m benchmarks.run`` measures both). The logits agree
with PyTorch's to about 1e-5 (float32, a different order of additions).

:func:`forward_only` returns the function that these helpers call instead of ``net(x)``.
With ``engine="auto"`` it uses ONNX Runtime for photo-sized images (at least
:data:`ONNX_MIN_PIXELS` pixels) when ``onnxruntime`` and ``onnxscript`` are installed (they
are in the course's install) and the network can be exported, and PyTorch otherwise: the
export takes a few seconds, which small inputs (28 x 28 digits, the tests' toy models) never
win back. ``engine="torch"`` forces PyTorch, ``engine="onnx"`` ONNX Runtime. The exported
copy is made once per network and remembered until a parameter or buffer of the network
changes (in place or replaced), so a randomized layer or a student's edit is never run with
stale weights.

Threads: ONNX Runtime gets as many as ``torch.get_num_threads()`` (so a grader's
``OMP_NUM_THREADS`` share holds for it too) and does not spin on idle cores.
"""

from __future__ import annotations

import importlib.util
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["ENGINES", "FORWARD_BATCH", "ONNX_MIN_PIXELS", "forward_only", "onnx_available"]

#: Images per forward pass for forward-only work (curves, occlusion). Measured on 2 cores
#: (EfficientNet-Lite0, 224-pixel photos): PyTorch is fastest at 4 (9.8 ms per image; 14 at
#: 8, 34 at 32, where its depthwise convolutions fall out of the cache); ONNX Runtime runs
#: 2 to 32 at about the same 5 ms per image.
FORWARD_BATCH = 4

#: What :func:`forward_only` accepts: ONNX Runtime when possible, or always PyTorch, or
#: always ONNX Runtime (an error if it cannot be used).
ENGINES = ("auto", "torch", "onnx")
#: ``engine="auto"`` exports to ONNX Runtime only for images of at least this many pixels.
#: The export costs about 5 s on 2 cores and saves about 25 ms per forward pass of a 224 x 224
#: photo through EfficientNet-Lite0; a 28 x 28 digit costs PyTorch well under 1 ms.
ONNX_MIN_PIXELS = 64 * 64

# net -> (fingerprint, session); weak keys: a network that is gone takes its copy with it.
_SESSIONS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, Any]] = weakref.WeakKeyDictionary()


def onnx_available() -> bool:
    """Whether ONNX Runtime and the ONNX exporter's package (onnxscript) are installed."""
    return all(importlib.util.find_spec(name) for name in ("onnxruntime", "onnxscript"))


def forward_only(
    net: nn.Module, example: torch.Tensor, engine: str = "auto"
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function that computes ``net(x)`` for forward-only work, on the fastest engine.

    Args:
        net: the network, in the mode it should run in (the helpers put it in eval mode).
        example: ``(N, C, H, W)`` (or ``(N, D)``) inputs of the shape that will be run; only
            the shape after the batch dimension matters, the batch size may vary.
        engine: one of :data:`ENGINES`: ``"auto"`` (ONNX Runtime for photo-sized images
            when it is installed, else PyTorch), ``"torch"`` or ``"onnx"``.

    Returns:
        A function from a ``(B, ...)`` float tensor to the ``(B, classes)`` logits, as a
        tensor. No gradients flow through it: call it under ``torch.inference_mode()``.

    Example:
        >>> run = forward_only(b.model.eval(), x)
        >>> torch.allclose(run(x), b.model(x), atol=1e-4)
        True
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}.")
    photo_sized = example.dim() == 4 and example.shape[-2] * example.shape[-1] >= ONNX_MIN_PIXELS
    if engine == "torch" or (engine == "auto" and not (photo_sized and onnx_available())):
        return net
    if not onnx_available():
        raise ModuleNotFoundError(
            "engine='onnx' needs onnxruntime and onnxscript: pip install onnxruntime onnxscript "
            "(or use engine='torch')."
        )
    try:
        session = _session(net, example)
    except Exception as error:  # noqa: BLE001 - any export failure: say so, then use PyTorch
        if engine == "onnx":
            raise RuntimeError(
                f"{type(net).__name__} could not be exported to ONNX ({type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''}); use engine='torch'."
            ) from error
        warnings.warn(
            f"{type(net).__name__} could not be exported to ONNX ({type(error).__name__}); "
            "its forward passes run in PyTorch (same numbers, slower).",
            stacklevel=3,
        )
        return net
    name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().to(torch.float32).numpy())
        return torch.from_numpy(session.run(None, {name: array})[0])

    return run


def _fingerprint(net: nn.Module, example: torch.Tensor) -> tuple:
    """What the exported copy depends on: every tensor's storage and in-place version, the
    modules' training flags and the input's shape after the batch dimension."""
    tensors = [*net.parameters(), *net.buffers()]
    return (
        tuple((t.data_ptr(), t._version, tuple(t.shape)) for t in tensors),
        tuple(m.training for m in net.modules()),
        tuple(example.shape[1:]),
        torch.get_num_threads(),
    )


def _session(net: nn.Module, example: torch.Tensor) -> Any:
    """The ONNX Runtime session for ``net``, exported again only when it has changed."""
    key = _fingerprint(net, example)
    kept = _SESSIONS.get(net)
    if kept is not None and kept[0] == key:
        return kept[1]
    import onnxruntime as ort

    dummy = example[:1].detach().clone().to(torch.float32)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals
        program = torch.onnx.export(
            net,
            (dummy,),
            dynamo=True,
            dynamic_shapes=({0: torch.export.Dim.DYNAMIC},),
            verbose=False,
            report=False,
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(
        program.model_proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    _SESSIONS[net] = (key, session)
    return session
