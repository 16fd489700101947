"""A small MNIST CNN, trained on true or permuted labels, with cached weights.

The data-randomization sanity check of Adebayo et al. (2018), "Sanity Checks for
Saliency Maps", https://arxiv.org/abs/1810.03292, trains one architecture twice
with the same recipe: once on the true labels and once on randomly permuted
labels. The second model can only memorise; if a saliency method gives the two
models similar maps, the method does not explain what the model learned.

Training stops as soon as its target is reached: test accuracy for true labels,
training accuracy (memorisation) for permuted labels. The default recipe (Adam, lr 1e-3,
batch 64, ``hidden=256``) takes 4 epochs on true labels and 15 on permuted labels; on 2 idle
CPU cores that is roughly 10 s + 60 s (estimated from single-thread CPU time; under heavy
load it can take several times longer). Trained weights and history
are cached on disk, keyed by a hash of the recipe and the data, so a re-run of a
notebook loads them instantly.

Example:
    >>> import saliency_helpers.training as training
    >>> true_model, permuted_model = training.train_pair()   # doctest: +SKIP
    >>> permuted_model.history.tail(1)                       # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .data import N_CLASSES, MnistSplit, load_mnist, permuted_labels

__all__ = [
    "SmallCNN",
    "TrainConfig",
    "TrainResult",
    "train",
    "train_pair",
    "cache_dir",
    "CACHE_VERSION",
]

# Bump when the architecture or the training loop changes, so old caches are ignored.
CACHE_VERSION = "smallcnn-v2"
LABEL_MODES = ("true", "permuted")
_EVAL_BATCH = 500
#: How close the running training accuracy must come to the target before an exact pass.
_EXACT_MARGIN = 0.05


class SmallCNN(nn.Module):
    """A small CNN for 28x28 grey digits, sized to memorise 4,000 random labels.

    ``conv1(1->16, 3) - ReLU - conv2(16->32, 3) - ReLU - maxpool - conv3(32->64, 3) - ReLU -
    flatten - fc1(6400->hidden) - ReLU - fc2(hidden->10)``.

    Only one max-pool: ``conv3`` keeps a 10x10 map, so Grad-CAM is less coarse, and ``fc1``
    sees 6,400 features, which makes memorising random labels about twice as fast (in
    compute) as with a second pool (measured: 15 vs 32 epochs to 95%).

    Every ReLU is its own ``nn.ReLU`` module (``relu1`` ... ``relu4``): Captum's Guided
    Backprop hooks ReLU *modules*, and a module used twice would be hooked twice.

    Attributes:
        layers: block names from the logits DOWN, for the randomization cascade.
        gradcam_layer_name: the last convolution (10x10 feature map), Grad-CAM's layer.

    Args:
        hidden: width of ``fc1``. Default 256.

    Example:
        >>> model = SmallCNN()
        >>> model(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    layers: tuple[str, ...] = ("fc2", "fc1", "conv3", "conv2", "conv1")
    gradcam_layer_name: str = "conv3"

    def __init__(self, hidden: int = 256) -> None:
        super().__init__()
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden must be a positive int (e.g. 256), got {hidden!r}.")
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3)
        self.relu2 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(32, 64, kernel_size=3)
        self.relu3 = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(64 * 10 * 10, hidden)
        self.relu4 = nn.ReLU()
        self.fc2 = nn.Linear(hidden, N_CLASSES)

    @property
    def gradcam_layer(self) -> nn.Module:
        """The module named by ``gradcam_layer_name`` (``conv3``)."""
        return self.get_submodule(self.gradcam_layer_name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, 10)`` for images ``x`` of shape ``(N, 1, 28, 28)``."""
        x = self.relu1(self.conv1(x))
        x = self.pool1(self.relu2(self.conv2(x)))
        x = self.relu3(self.conv3(x))
        x = self.relu4(self.fc1(self.flatten(x)))
        return self.fc2(x)


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe; every field is part of the cache key.

    Attributes:
        labels: ``"true"`` or ``"permuted"`` (training labels randomly permuted).
        epochs: the most epochs to run; training stops earlier at the target.
        batch_size: minibatch size.
        lr: Adam learning rate. No weight decay and no dropout, so that random
            labels can be memorised.
        seed: seed of weight init and minibatch order.
        label_seed: seed of the label permutation (used when ``labels="permuted"``).
        target_accuracy: stop when reached, on the test split for true labels and on
            the (permuted) training labels for permuted labels.
        hidden: width of ``SmallCNN.fc1``.
        data_seed: seed of :func:`~saliency_helpers.data.load_mnist` when ``train``
            loads the data itself.
        test_fraction: held-out fraction for :func:`~saliency_helpers.data.load_mnist`.
        n_train: use only the first ``n_train`` training images (``None``: all);
            for quick tests.
    """

    labels: Literal["true", "permuted"] = "true"
    epochs: int = 60
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    label_seed: int = 0
    target_accuracy: float = 0.95
    hidden: int = 256
    data_seed: int = 0
    test_fraction: float = 0.2
    n_train: int | None = None

    def __post_init__(self) -> None:
        if self.labels not in LABEL_MODES:
            raise ValueError(
                f"labels must be one of {LABEL_MODES}, got {self.labels!r}."
            )
        for name in ("epochs", "batch_size", "hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}.")
        if self.n_train is not None and (
            isinstance(self.n_train, bool) or not isinstance(self.n_train, int) or self.n_train < 1
        ):
            raise ValueError(f"n_train must be None or a positive int, got {self.n_train!r}.")
        if not isinstance(self.lr, (int, float)) or isinstance(self.lr, bool) or self.lr <= 0:
            raise ValueError(f"lr must be a positive number (e.g. 1e-3), got {self.lr!r}.")
        if not isinstance(self.target_accuracy, (int, float)) or not (
            0.0 < self.target_accuracy <= 1.0
        ):
            raise ValueError(
                f"target_accuracy must be in (0, 1] (e.g. 0.95), got {self.target_accuracy!r}."
            )
        for name in ("seed", "label_seed", "data_seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}.")

    @property
    def stop_on(self) -> str:
        """Which accuracy ends training: ``"test_accuracy"`` or ``"train_accuracy"``."""
        return "test_accuracy" if self.labels == "true" else "train_accuracy"


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: the trained ``SmallCNN`` in eval mode, parameters ``requires_grad=False``.
        history: one row per epoch, columns ``epoch, train_accuracy, test_accuracy, loss``
            (``train_accuracy`` against the labels trained on, scored on each minibatch
            just before its update step, so it lags the model a little and costs no extra
            pass; ``test_accuracy`` against the TRUE test labels after the epoch, in eval
            mode; ``loss`` the mean training loss of the epoch).
        train_accuracy: the final model's accuracy on the training labels used (one exact
            pass after training; at least the last epoch's running value in practice).
        test_accuracy: final accuracy on the true test labels.
        seconds: wall-clock training time (of the original run when loaded from cache).
        from_cache: True when weights were loaded from the cache.
        config: the recipe.
        y_train: ``(N,)`` the training labels used (permuted or true).
        cache_path: the cache file, or None when caching is off.
    """

    model: SmallCNN
    history: pd.DataFrame
    train_accuracy: float
    test_accuracy: float
    seconds: float
    from_cache: bool
    config: TrainConfig
    y_train: torch.Tensor = field(repr=False)
    cache_path: Path | None = None

    @property
    def reached_target(self) -> bool:
        """Whether the accuracy named by ``config.stop_on`` reached the target."""
        value = self.test_accuracy if self.config.labels == "true" else self.train_accuracy
        return value >= self.config.target_accuracy


def cache_dir() -> Path:
    """Directory of cached weights: env ``SALIENCY_CACHE``, else ``~/.cache/saliency_helpers``."""
    env = os.environ.get("SALIENCY_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "saliency_helpers"


def _data_fingerprint(data: MnistSplit) -> str:
    digest = hashlib.sha256()
    for tensor in (data.x_train, data.y_train, data.x_test, data.y_test):
        t = tensor.detach().cpu().contiguous()
        digest.update(str((tuple(t.shape), str(t.dtype))).encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def _cache_key(config: TrainConfig, data: MnistSplit) -> str:
    recipe = {
        "version": CACHE_VERSION,
        "config": dataclasses.asdict(config),
        "data_seed": data.seed,
        "data": _data_fingerprint(data),
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:20]


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(y), _EVAL_BATCH):
            correct += (model(x[i : i + _EVAL_BATCH]).argmax(1) == y[i : i + _EVAL_BATCH]).sum()
    return float(correct) / len(y)


def _finish(model: SmallCNN) -> SmallCNN:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _load_cache(path: Path, config: TrainConfig) -> tuple[SmallCNN, dict[str, Any]] | None:
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        model = SmallCNN(hidden=config.hidden)
        model.load_state_dict(blob["state_dict"])
        history = blob["history"]
        if not isinstance(history, dict) or not history.get("epoch"):
            raise ValueError("empty history")
        float(blob["final"]["train_accuracy"]), float(blob["final"]["test_accuracy"])
        return model, blob
    except Exception as err:  # corrupt or stale file: retrain rather than fail
        warnings.warn(f"Ignoring unreadable training cache {path} ({err}); retraining.",
                      stacklevel=3)
        return None


def _save_cache(
    path: Path, model: SmallCNN, history: dict, final: dict[str, float], seconds: float
) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(
            {"state_dict": model.state_dict(), "history": history, "final": final,
             "seconds": float(seconds), "version": CACHE_VERSION},
            buffer,
        )
        # Write then rename, so an interrupted run never leaves a half-written cache.
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(buffer.getvalue())
        os.replace(tmp, path)
    except OSError as err:
        warnings.warn(f"Could not write training cache {path} ({err}); continuing without it.",
                      stacklevel=3)


def _check_data(data: MnistSplit) -> None:
    if not isinstance(data, MnistSplit):
        raise TypeError(
            f"data must be a MnistSplit from saliency_helpers.data.load_mnist(), "
            f"got {type(data).__name__}."
        )
    for name in ("x_train", "x_test"):
        x = getattr(data, name)
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"data.{name} must have shape (N, 1, 28, 28), got {tuple(x.shape)}.")


def train(
    config: TrainConfig | None = None,
    data: MnistSplit | None = None,
    *,
    progress: bool = True,
    cache: bool = True,
) -> TrainResult:
    """Train a :class:`SmallCNN` with Adam until the recipe's target accuracy is reached.

    For ``labels="true"`` training stops once TEST accuracy reaches
    ``config.target_accuracy``; for ``labels="permuted"`` once TRAINING accuracy on the
    permuted labels does (memorisation; test accuracy stays near chance, 10%). Test
    accuracy is measured after every epoch in eval mode; training accuracy on the fly over
    the epoch's minibatches (see :class:`TrainResult`), plus one exact pass at the end.
    Deterministic for a given config; the
    caller's global RNG state is restored afterwards (``torch.random.fork_rng``).

    Args:
        config: the recipe; default ``TrainConfig()`` (true labels).
        data: a :class:`~saliency_helpers.data.MnistSplit`; default
            ``load_mnist(config.test_fraction, config.data_seed)``.
        progress: show a tqdm bar over epochs.
        cache: load/save weights in :func:`cache_dir`, keyed by a hash of the recipe and
            the data. A missing or corrupt cache file means retraining.

    Returns:
        TrainResult: ``model`` (eval mode, frozen), ``history`` DataFrame, final accuracies,
        ``seconds``, ``from_cache``.

    Example:
        >>> result = train(TrainConfig(labels="permuted"))   # doctest: +SKIP
        >>> result.train_accuracy >= 0.95, result.test_accuracy < 0.2   # doctest: +SKIP
        (True, True)
    """
    if config is None:
        config = TrainConfig()
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}.")
    if data is None:
        data = load_mnist(test_fraction=config.test_fraction, seed=config.data_seed)
    _check_data(data)

    x_train, y_true = data.x_train, data.y_train
    if config.n_train is not None:
        x_train, y_true = x_train[: config.n_train], y_true[: config.n_train]
    y_train = y_true if config.labels == "true" else permuted_labels(y_true, config.label_seed)

    path = cache_dir() / f"smallcnn-{_cache_key(config, data)}.pt" if cache else None
    if path is not None:
        loaded = _load_cache(path, config)
        if loaded is not None:
            model, blob = loaded
            history = pd.DataFrame(blob["history"])
            return TrainResult(
                model=_finish(model),
                history=history,
                train_accuracy=float(blob["final"]["train_accuracy"]),
                test_accuracy=float(blob["final"]["test_accuracy"]),
                seconds=float(blob.get("seconds", 0.0)),
                from_cache=True,
                config=config,
                y_train=y_train,
                cache_path=path,
            )

    from tqdm.auto import tqdm  # imported lazily: tqdm.auto probes for Jupyter

    rows: dict[str, list] = {"epoch": [], "train_accuracy": [], "test_accuracy": [], "loss": []}
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = SmallCNN(hidden=config.hidden)
        generator = torch.Generator().manual_seed(config.seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        bar = tqdm(range(1, config.epochs + 1), desc=f"{config.labels} labels", unit="epoch",
                   disable=not progress, leave=True)
        for epoch in bar:
            model.train()
            order = torch.randperm(len(y_train), generator=generator)
            total_loss, correct = 0.0, 0
            for i in range(0, len(order), config.batch_size):
                idx = order[i : i + config.batch_size]
                logits = model(x_train[idx])
                loss = F.cross_entropy(logits, y_train[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total_loss += loss.item() * len(idx)
                # Scored on the fly (before this step's update): no second pass over the
                # training set, which would cost about a quarter of an epoch.
                correct += int((logits.argmax(1) == y_train[idx]).sum())
            running_acc = correct / len(order)
            model.eval()
            test_acc = _accuracy(model, data.x_test, data.y_test)
            values = (epoch, running_acc, test_acc, total_loss / len(order))
            for key, value in zip(rows, values, strict=True):
                rows[key].append(value)
            bar.set_postfix(train=f"{running_acc:.3f}", test=f"{test_acc:.3f}")
            train_acc = None
            if config.labels == "true":
                done = test_acc >= config.target_accuracy
            else:
                # The running score lags the model by up to half an epoch; near the target,
                # one exact pass decides (and saves the epoch the lag would cost).
                done = running_acc >= config.target_accuracy
                if not done and running_acc >= config.target_accuracy - _EXACT_MARGIN:
                    train_acc = _accuracy(model, x_train, y_train)
                    done = train_acc >= config.target_accuracy
            if done:
                break
        bar.close()
        if train_acc is None:  # the reported training accuracy is the final model's, exactly
            train_acc = _accuracy(model, x_train, y_train)
    seconds = time.perf_counter() - start

    final = {"train_accuracy": train_acc, "test_accuracy": test_acc}
    if (
        (test_acc if config.labels == "true" else train_acc) < config.target_accuracy
    ) and config.n_train is None:
        warnings.warn(
            f"Training on {config.labels} labels stopped after {config.epochs} epochs without "
            f"reaching {config.stop_on} >= {config.target_accuracy}; raise `epochs`.",
            stacklevel=2,
        )
    if path is not None:
        _save_cache(path, model, rows, final, seconds)
    return TrainResult(
        model=_finish(model),
        history=pd.DataFrame(rows),
        train_accuracy=train_acc,
        test_accuracy=test_acc,
        seconds=seconds,
        from_cache=False,
        config=config,
        y_train=y_train,
        cache_path=path,
    )


def train_pair(
    data: MnistSplit | None = None,
    *,
    progress: bool = True,
    cache: bool = True,
    **config_kwargs: Any,
) -> tuple[TrainResult, TrainResult]:
    """Train the same recipe twice: on true labels and on permuted labels.

    Args:
        data: a MnistSplit; default ``load_mnist`` with the recipe's data seed.
        progress: show tqdm bars.
        cache: use the weight cache (see :func:`train`).
        **config_kwargs: any :class:`TrainConfig` field except ``labels``.

    Returns:
        ``(true_result, permuted_result)``, two :class:`TrainResult`.

    Example:
        >>> true_run, permuted_run = train_pair(seed=0)    # doctest: +SKIP
    """
    if "labels" in config_kwargs:
        raise ValueError("train_pair sets `labels` itself; remove it from the arguments.")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(config_kwargs) - names)
    if unknown:
        raise TypeError(f"Unknown TrainConfig field(s) {unknown}; valid: {sorted(names)}.")
    base = TrainConfig(**config_kwargs)
    if data is None:
        data = load_mnist(test_fraction=base.test_fraction, seed=base.data_seed)
    true_run = train(dataclasses.replace(base, labels="true"), data,
                     progress=progress, cache=cache)
    permuted_run = train(dataclasses.replace(base, labels="permuted"), data,
                         progress=progress, cache=cache)
    return true_run, permuted_run
