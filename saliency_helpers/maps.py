"""Post-processing of saliency maps: channel reduction, clipping, scaling, pooling, tidy frames.

Attribution methods return a tensor shaped like the input, ``(N, C, H, W)``. Before a map can
be looked at or compared it is usually reduced to one value per pixel, clipped so that a few
extreme pixels do not wash out the rest, and scaled. Every function here is a few lines of
torch so that the choice it makes stays visible.

Example:
    >>> attr = torch.randn(1, 3, 224, 224)
    >>> m = reduce_channels(to_2d(attr), how="abs_max")   # (224, 224)
    >>> normalize(clip_percentile(m, q=99)).max()
    tensor(1.)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

__all__ = [
    "attribution_mass",
    "pointing_game",
    "spearman",
    "REDUCTIONS",
    "clip_percentile",
    "SIMILARITY_REDUCTION",
    "is_signed",
    "normalize",
    "pool",
    "reduce_channels",
    "to_2d",
    "to_frame",
]

REDUCTIONS = ("sum", "abs_mean", "abs_max")


def _as_tensor(m) -> torch.Tensor:
    if isinstance(m, torch.Tensor):
        return m.detach().float().cpu()
    if isinstance(m, np.ndarray):
        return torch.from_numpy(np.asarray(m, dtype=np.float32))
    raise TypeError(f"expected a torch.Tensor or numpy array, got {type(m).__name__}")


#: How the similarity metrics reduce a map's colour channels (the cascade and data
#: randomization alike): the signed metric sums them (colour channels add up to the
#: pixel's effect); the magnitude metrics (spearman_abs, SSIM) average ``|.|``.
SIMILARITY_REDUCTION = {"signed": "sum", "magnitude": "abs_mean"}


def _auto_signed(m: torch.Tensor, signed: bool | None) -> bool:
    # The rule used whenever `signed=None`: is_signed.
    return is_signed(m) if signed is None else bool(signed)


def to_2d(m) -> torch.Tensor:
    """Return the map of ONE image as a float tensor without the batch dimension.

    Args:
        m: Tensor or ndarray shaped ``(1, C, H, W)``, ``(C, H, W)`` (including ``(1, H, W)``)
            or ``(H, W)``.

    Returns:
        Float tensor on the CPU, ``(C, H, W)`` for channel maps or ``(H, W)`` for 2-D maps.
        A batch of one is squeezed; nothing else is changed.

    Example:
        >>> to_2d(torch.zeros(1, 3, 8, 8)).shape
        torch.Size([3, 8, 8])
    """
    t = _as_tensor(m)
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise ValueError(
                f"got a batch of {t.shape[0]} maps {tuple(t.shape)}; "
                "pass one image: attributions[i]"
            )
        t = t[0]
    if t.dim() not in (2, 3):
        raise ValueError(
            f"a map must be shaped (1, C, H, W), (C, H, W) or (H, W), got {tuple(t.shape)}"
        )
    return t


def reduce_channels(attr, how: str = "sum") -> torch.Tensor:
    """Collapse the colour channels of an attribution to one value per pixel.

    Args:
        attr: Tensor or ndarray ``(N, C, H, W)``, ``(C, H, W)`` or ``(H, W)``.
        how: ``"sum"`` keeps the sign (positive and negative evidence can cancel),
            ``"abs_mean"`` is the mean of ``|attr|`` over channels, ``"abs_max"`` the max of
            ``|attr|`` (the choice of Simonyan et al., https://arxiv.org/abs/1312.6034).

    Returns:
        Float tensor ``(N, H, W)``, ``(H, W)``, or the ``(H, W)`` input unchanged.

    Example:
        >>> reduce_channels(torch.tensor([[[1.0]], [[-3.0]]]), "abs_max")
        tensor([[3.]])
    """
    if how not in REDUCTIONS:
        raise ValueError(f"unknown reduction how={how!r}; choose one of {', '.join(REDUCTIONS)}")
    t = _as_tensor(attr)
    if t.dim() == 2:
        return t
    if t.dim() not in (3, 4):
        raise ValueError(f"expected (N, C, H, W), (C, H, W) or (H, W), got shape {tuple(t.shape)}")
    dim = t.dim() - 3  # the channel axis
    if how == "sum":
        return t.sum(dim=dim)
    if how == "abs_mean":
        return t.abs().mean(dim=dim)
    return t.abs().amax(dim=dim)


def is_signed(m, tol: float = 1e-6) -> bool:
    """True when the map has a clearly negative value: draw it with diverging colours.

    The course's one rule for "is this map signed" (``clip_percentile``, ``normalize`` and
    ``heatmaps`` all use it when ``signed=None``). "Clearly" means below ``-tol * max|m|``,
    so rounding noise around zero does not count; an all-negative map is signed.

    Args:
        m: a map (tensor or ndarray, any shape).
        tol: the fraction of ``max|m|`` that counts as zero.

    Returns:
        True if any value is below ``-tol * max|m|``.

    Example:
        >>> is_signed(torch.tensor([-1.0, 2.0])), is_signed(torch.tensor([0.0, 2.0]))
        (True, False)
    """
    t = _as_tensor(m)
    eps = tol * float(t.abs().max()) if t.numel() else 0.0
    return bool((t < -eps).any())


def clip_percentile(m, q: float = 99.0, signed: bool | None = None) -> torch.Tensor:
    """Clip a map to the ``q``-th percentile of ``|m|`` so a few extreme pixels do not dominate.

    Args:
        m: Tensor or ndarray of any shape (usually ``(H, W)``).
        q: Percentile in ``(0, 100]``; 100 keeps everything.
        signed: ``True`` clips symmetrically to ``[-p, p]``; ``False`` treats the map as a
            magnitude and clips to ``[0, p]`` (negative values become 0); ``None`` picks
            ``True`` when any value is negative.

    Returns:
        Float tensor shaped like ``m``. For display only: clipping changes sums.

    Example:
        >>> clip_percentile(torch.tensor([-10.0, 0.5, 1.0]), q=50)
        tensor([-1.0000,  0.5000,  1.0000])
    """
    if not 0 < q <= 100:
        raise ValueError(f"q must be a percentile in (0, 100], got {q}")
    t = _as_tensor(m)
    p = float(torch.quantile(t.abs().flatten(), q / 100)) if t.numel() else 0.0
    lo = -p if _auto_signed(t, signed) else 0.0
    return t.clamp(lo, p)


def normalize(m, signed: bool | None = None) -> torch.Tensor:
    """Scale a map to ``[-1, 1]`` (signed, divided by ``max|m|``) or ``[0, 1]`` (magnitude).

    Zero stays zero in both cases, so the colour of "no attribution" does not move. An
    all-zero map is returned as zeros (no division by zero, no NaN).

    Args:
        m: Tensor or ndarray of any shape.
        signed: As in :func:`clip_percentile`; ``False`` sets negative values to 0.

    Returns:
        Float tensor shaped like ``m``.

    Example:
        >>> normalize(torch.tensor([-2.0, 1.0]))
        tensor([-1.0000,  0.5000])
    """
    t = _as_tensor(m)
    if not _auto_signed(t, signed):
        t = t.clamp(min=0)
    top = float(t.abs().max()) if t.numel() else 0.0
    return t / top if top > 0 else torch.zeros_like(t)


def pool(m, size: int | tuple[int, int]) -> torch.Tensor:
    """Average-pool a map to ``(size, size)`` or ``(h, w)`` pixels, e.g. for display budgets.

    Adaptive average pooling keeps the mean of each block, so a pooled map still sums to
    (about) the original sum divided by the number of pixels per block.

    Args:
        m: Tensor or ndarray ``(H, W)``; ``(C, H, W)`` and ``(N, C, H, W)`` pool per channel.
        size: Output size, an int for a square or an ``(h, w)`` tuple.

    Returns:
        Float tensor with the last two dimensions replaced by the output size.

    Example:
        >>> pool(torch.ones(224, 224), 28).shape
        torch.Size([28, 28])
    """
    t = _as_tensor(m)
    if t.dim() not in (2, 3, 4):
        raise ValueError(f"expected a map (H, W), (C, H, W) or (N, C, H, W), got {tuple(t.shape)}")
    if t.dim() == 2:
        return F.adaptive_avg_pool2d(t[None], size)[0]
    return F.adaptive_avg_pool2d(t, size)


def to_frame(
    maps: Mapping[str, object],
    reduce: str = "sum",
    size: int | tuple[int, int] | None = None,
    **facets,
) -> pd.DataFrame:
    """Turn named maps into one long (tidy) data frame: one row per pixel per map.

    Args:
        maps: Mapping ``label -> map``, each map ``(1, C, H, W)``, ``(C, H, W)`` or ``(H, W)``.
        reduce: Channel reduction for channel maps, see :func:`reduce_channels`.
        size: Optional :func:`pool` size applied first; a 224x224 map is 50,176 rows.
        **facets: Constant columns added to every row, e.g. ``layer="fc"``.

    Returns:
        DataFrame with columns ``method``, the facet columns, ``row``, ``col``, ``value``.

    Example:
        >>> to_frame({"gradient": torch.ones(2, 3)}, layer="fc").columns.tolist()
        ['method', 'layer', 'row', 'col', 'value']
    """
    clash = {"method", "row", "col", "value"} & set(facets)
    if clash:
        raise ValueError(f"facet names {sorted(clash)} clash with the frame's own columns")
    frames = []
    for label, m in maps.items():
        m2 = reduce_channels(to_2d(m), how=reduce)
        if size is not None:
            m2 = pool(m2, size)
        h, w = m2.shape
        rows, cols = np.divmod(np.arange(h * w), w)
        frame = pd.DataFrame({"method": label, **facets, "row": rows, "col": cols})
        frame["value"] = m2.flatten().numpy()
        frames.append(frame)
    if not frames:
        raise ValueError("maps is empty: pass a mapping such as {'gradient': attributions[0]}")
    return pd.concat(frames, ignore_index=True)


def spearman(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Spearman's rank correlation of two maps of the same size; NaN if one is constant.

    Args:
        a, b: maps of the same number of elements, e.g. ``(H, W)``; flattened.

    Returns:
        ``scipy.stats.spearmanr(a, b).statistic`` as a float in ``[-1, 1]``, or ``nan``
        when either map is constant (a rank correlation is undefined then).

    Example:
        >>> spearman(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 20.0, 25.0]))
        1.0
    """
    a_np = np.asarray(a.detach().double() if isinstance(a, torch.Tensor) else a).ravel()
    b_np = np.asarray(b.detach().double() if isinstance(b, torch.Tensor) else b).ravel()
    if a_np.shape != b_np.shape:
        raise ValueError(f"maps differ in size: {a_np.size} vs {b_np.size} values.")
    if np.ptp(a_np) == 0 or np.ptp(b_np) == 0:
        return float("nan")
    return float(spearmanr(a_np, b_np).statistic)


# ---------------------------------------------------------------------------
# Localisation against a known region (notebook 09: a planted shortcut)


def _maps_and_mask(maps: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, H*W)`` |maps| summed over channels and an ``(N, H*W)`` bool mask."""
    if not isinstance(maps, torch.Tensor) or maps.dim() not in (3, 4):
        shape = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise ValueError(f"maps must be (N, C, H, W) or (N, H, W), got {shape}.")
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        kind = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise TypeError(f"mask must be a bool tensor (H, W) or (N, H, W), got {kind}.")
    m = maps.detach().abs().float()
    m = m.sum(dim=1) if m.dim() == 4 else m
    n, h, w = m.shape
    if mask.shape not in ((h, w), (n, h, w)):
        raise ValueError(
            f"mask {tuple(mask.shape)} does not fit maps of {n} images of {h}x{w}: "
            f"give ({h}, {w}) or ({n}, {h}, {w})."
        )
    return m.reshape(n, -1), mask.expand(n, h, w).reshape(n, -1)


def attribution_mass(maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The share of each map's absolute attribution that falls inside a region.

    A localisation measure for a region whose importance is known, e.g. a shortcut planted
    in the data: 1 when all of ``|map|`` (summed over channels) lies inside ``mask``, the
    region's share of the image (area / image area) for a uniform map.

    Args:
        maps: ``(N, C, H, W)`` attributions (or ``(N, H, W)``).
        mask: bool ``(H, W)`` (the same region in every image) or ``(N, H, W)``.

    Returns:
        ``(N,)`` float tensor in ``[0, 1]``; NaN for a map that is zero everywhere (no mass
        to share out).

    Example:
        >>> maps = torch.zeros(1, 1, 4, 4); maps[0, 0, 0, 0] = 2.0
        >>> mask = torch.zeros(4, 4, dtype=torch.bool); mask[0, 0] = True
        >>> attribution_mass(maps, mask)
        tensor([1.])
    """
    m, inside = _maps_and_mask(maps, mask)
    total = m.sum(dim=1)
    share = (m * inside).sum(dim=1) / total
    return torch.where(total > 0, share, torch.full_like(share, float("nan")))


def pointing_game(maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Does each map's largest absolute value lie inside a region? (Zhang et al. 2016.)

    The pointing game (Zhang et al., "Top-down Neural Attention by Excitation Backprop",
    https://arxiv.org/abs/1608.00507) asks whether a map's maximum falls on the object; here
    on a region whose importance is known. ``|map|`` is summed over channels. When several
    pixels share the maximum, it is a hit only if all of them lie inside (a map that is flat,
    or zero everywhere, gets no hit for free).

    Args:
        maps: ``(N, C, H, W)`` attributions (or ``(N, H, W)``).
        mask: bool ``(H, W)`` or ``(N, H, W)``.

    Returns:
        ``(N,)`` bool tensor.

    Example:
        >>> maps = torch.zeros(2, 1, 4, 4); maps[0, 0, 0, 0] = 5.0; maps[1, 0, 3, 3] = 5.0
        >>> mask = torch.zeros(4, 4, dtype=torch.bool); mask[0, 0] = True
        >>> pointing_game(maps, mask)
        tensor([ True, False])
    """
    m, inside = _maps_and_mask(maps, mask)
    top = m == m.max(dim=1, keepdim=True).values
    return (top & inside).sum(dim=1) == top.sum(dim=1)
