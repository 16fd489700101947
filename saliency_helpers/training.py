"""A small MNIST CNN, trained on true or permuted labels, with cached weights.

The data-randomization sanity check of Adebayo et al. (2018), "Sanity Checks for
Saliency Maps", https://arxiv.org/abs/1810.03292 (section 4), trains one architecture twice
with the same recipe: once on the true labels and once on randomly permuted labels. The
second model can only memorise; if a saliency method gives the two models similar maps,
the method does not explain what the model learned.

Training stops as soon as its target is reached: VALIDATION accuracy for true labels
(the test digits are never looked at while training), training accuracy (memorisation)
for permuted labels, as in the paper (">95% training set accuracy"). A training ``seed``
fixes the weight initialisation, the minibatch order and, for permuted labels, the
permutation; :func:`train_pairs` trains one true/permuted pair per seed, and
:func:`fresh_model` gives the untrained network a seed starts from.

The default recipe (Adam, lr 1e-3, batch 64, ``hidden=256``) takes 4-7 epochs on true
labels and 16-17 on permuted labels (seeds 0, 1, 2): about 50 s of single-core CPU time per
pair, measured; notebook 07 prints the wall-clock seconds of each run (under load they can be
several times longer). Trained weights and history are cached on disk, keyed by a hash of
the recipe and the data, so a re-run of a notebook loads them instantly.

Example:
    >>> import saliency_helpers.training as training
    >>> pairs = training.train_pairs(seeds=(0, 1, 2))          # doctest: +SKIP
    >>> true_run, permuted_run = pairs[0]                       # doctest: +SKIP
    >>> permuted_run.history.tail(1)                            # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .data import N_CLASSES, MnistSplit, load_mnist, permuted_labels
from .models import frozen

__all__ = [
    "SmallCNN",
    "TrainConfig",
    "TrainResult",
    "fresh_model",
    "train",
    "train_pair",
    "train_pairs",
    "cache_dir",
    "CACHE_VERSION",
]

# Bump when the architecture, the data split or the training loop changes, so old caches
# are ignored (v3: validation split, early stopping on it, a cheaper network).
CACHE_VERSION = "smallcnn-v3"
LABEL_MODES = ("true", "permuted")
_EVAL_BATCH = 500
#: How close the running training accuracy must come to the target before an exact pass.
_EXACT_MARGIN = 0.05


class SmallCNN(nn.Module):
    """A small CNN for 28x28 grey digits, sized to memorise 4,000 random labels quickly.

    ``conv1(1->8, 3) - ReLU - maxpool - conv2(8->16, 3) - ReLU - conv3(16->32, 3) - ReLU -
    flatten - fc1(2592->hidden) - ReLU - fc2(hidden->10)``.

    One max-pool, right after ``conv1``: ``conv3`` keeps a 9x9 map (Grad-CAM's resolution)
    and ``fc1`` sees 2,592 features. Why this shape: the data-randomization test trains
    one model per seed on permuted labels, and memorising them is the expensive part.
    Measured on one CPU core, memorising 4,000 permuted labels to 95% took 17 epochs and
    33 s of CPU time with this network, and 17 epochs and 56 s with the pool after ``conv2``;
    the previous network (16, 32, 64 channels, pool after ``conv2``) costs 6.3 s an epoch,
    about 95 s for its 15 epochs. About as many epochs, cheaper ones.

    Every ReLU is its own ``nn.ReLU`` module (``relu1`` ... ``relu4``): Captum's Guided
    Backprop hooks ReLU *modules*, and a module used twice would be hooked twice.

    Attributes:
        layers: block names from the logits DOWN, for the randomization cascade.
        gradcam_layer_name: the last convolution (9x9 feature map), Grad-CAM's layer.
        channels: output channels of ``conv1``, ``conv2``, ``conv3``.

    Args:
        hidden: width of ``fc1``. Default 256.

    Example:
        >>> model = SmallCNN()
        >>> model(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    layers: tuple[str, ...] = ("fc2", "fc1", "conv3", "conv2", "conv1")
    gradcam_layer_name: str = "conv3"
    channels: tuple[int, int, int] = (8, 16, 32)

    def __init__(self, hidden: int = 256) -> None:
        super().__init__()
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden must be a positive int (e.g. 256), got {hidden!r}.")
        c1, c2, c3 = self.channels
        self.conv1 = nn.Conv2d(1, c1, kernel_size=3)  # 28 -> 26
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)  # 26 -> 13
        self.conv2 = nn.Conv2d(c1, c2, kernel_size=3)  # 13 -> 11
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(c2, c3, kernel_size=3)  # 11 -> 9
        self.relu3 = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(c3 * 9 * 9, hidden)
        self.relu4 = nn.ReLU()
        self.fc2 = nn.Linear(hidden, N_CLASSES)

    @property
    def gradcam_layer(self) -> nn.Module:
        """The module named by ``gradcam_layer_name`` (``conv3``)."""
        return self.get_submodule(self.gradcam_layer_name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, 10)`` for images ``x`` of shape ``(N, 1, 28, 28)``."""
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.relu3(self.conv3(self.relu2(self.conv2(x))))
        x = self.relu4(self.fc1(self.flatten(x)))
        return self.fc2(x)


def _check_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}.")
    return value


def _init(seed: int, hidden: int) -> SmallCNN:
    # The one place a seed becomes weights: train() and fresh_model() must agree.
    torch.manual_seed(seed)
    return SmallCNN(hidden=hidden)


def fresh_model(seed: int = 0, hidden: int = 256) -> SmallCNN:
    """The untrained :class:`SmallCNN` that training with ``seed`` starts from.

    Two fresh models of different seeds share only the architecture: comparing their maps
    gives the *floor* of the data-randomization test (how alike two explanations are when
    nothing was learned). The caller's global RNG state is left unchanged.

    Args:
        seed: the training seed (:attr:`TrainConfig.seed`). Default 0.
        hidden: width of ``fc1``. Default 256.

    Returns:
        SmallCNN in eval mode with ``requires_grad=False``, its weights exactly those that
        ``train(TrainConfig(seed=seed, hidden=hidden))`` starts from.

    Example:
        >>> a, b = fresh_model(seed=0), fresh_model(seed=1)
        >>> bool((a.fc2.weight == b.fc2.weight).all())
        False
    """
    _check_int("seed", seed)
    with torch.random.fork_rng(devices=[]):
        return frozen(_init(seed, hidden))


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe; every field is part of the cache key.

    Attributes:
        labels: ``"true"`` or ``"permuted"`` (training labels randomly permuted).
        epochs: the most epochs to run; training stops earlier at the target.
        batch_size: minibatch size.
        lr: Adam learning rate. No weight decay and no dropout, so that random
            labels can be memorised.
        seed: seed of the weight initialisation and the minibatch order (and, unless
            ``label_seed`` is given, of the label permutation).
        label_seed: seed of the label permutation (used when ``labels="permuted"``);
            ``None`` (default) uses ``seed``, so that one seed changes everything random.
        target_accuracy: stop when reached: VALIDATION accuracy for true labels, accuracy
            on the (permuted) training labels for permuted labels.
        hidden: width of ``SmallCNN.fc1``.
        data_seed: seed of :func:`~saliency_helpers.data.load_mnist` when ``train``
            loads the data itself.
        val_fraction: held-out fraction for validation (early stopping).
        test_fraction: held-out fraction for testing.
        n_train: use only the first ``n_train`` training images (``None``: all);
            for quick tests.
    """

    labels: Literal["true", "permuted"] = "true"
    epochs: int = 60
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    label_seed: int | None = None
    target_accuracy: float = 0.95
    hidden: int = 256
    data_seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
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
        for name in ("seed", "data_seed"):
            _check_int(name, getattr(self, name))
        if self.label_seed is not None:
            _check_int("label_seed", self.label_seed)
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                0.0 < value < 1.0
            ):
                raise ValueError(f"{name} must be a number in (0, 1), got {value!r}.")

    @property
    def permutation_seed(self) -> int:
        """The seed of the label permutation: ``label_seed``, or ``seed`` when it is None."""
        return self.seed if self.label_seed is None else self.label_seed

    @property
    def stop_on(self) -> str:
        """Which accuracy ends training: ``"val_accuracy"`` or ``"train_accuracy"``."""
        return "val_accuracy" if self.labels == "true" else "train_accuracy"


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: the trained ``SmallCNN`` in eval mode, parameters ``requires_grad=False``.
        history: one row per epoch, columns ``epoch, train_accuracy, val_accuracy, loss``
            (``train_accuracy`` against the labels trained on, scored on each minibatch
            just before its update step, so it lags the model a little and costs no extra
            pass; ``val_accuracy`` against the TRUE validation labels after the epoch, in
            eval mode; ``loss`` the mean training loss of the epoch). The test digits do
            not appear: they are scored once, after training.
        train_accuracy: the final model's accuracy on the training labels used (one exact
            pass after training; at least the last epoch's running value in practice).
        val_accuracy: final accuracy on the true validation labels (the stopping rule's).
        test_accuracy: final accuracy on the true test labels, never used to stop.
        seconds: wall-clock training time (of the original run when loaded from cache).
        from_cache: True when weights were loaded from the cache.
        config: the recipe.
        y_train: ``(N,)`` the training labels used (permuted or true).
        cache_path: the cache file, or None when caching is off.
    """

    model: SmallCNN
    history: pd.DataFrame
    train_accuracy: float
    val_accuracy: float
    test_accuracy: float
    seconds: float
    from_cache: bool
    config: TrainConfig
    y_train: torch.Tensor = field(repr=False)
    cache_path: Path | None = None

    @property
    def reached_target(self) -> bool:
        """Whether the accuracy named by ``config.stop_on`` reached the target."""
        value = self.val_accuracy if self.config.labels == "true" else self.train_accuracy
        return value >= self.config.target_accuracy


def cache_dir() -> Path:
    """Directory of cached weights: env ``SALIENCY_CACHE``, else ``~/.cache/saliency_helpers``."""
    env = os.environ.get("SALIENCY_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "saliency_helpers"


_SPLIT_TENSORS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def _data_fingerprint(data: MnistSplit) -> str:
    digest = hashlib.sha256()
    for name in _SPLIT_TENSORS:
        t = getattr(data, name).detach().cpu().contiguous()
        digest.update(str((name, tuple(t.shape), str(t.dtype))).encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def _cache_key(config: TrainConfig, data: MnistSplit) -> str:
    recipe = dataclasses.asdict(config)
    # label_seed=None means "= seed": both spellings of one recipe share a cache file.
    recipe["label_seed"] = config.permutation_seed
    blob = {
        "version": CACHE_VERSION,
        "config": recipe,
        "data_seed": data.seed,
        "data": _data_fingerprint(data),
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:20]


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(y), _EVAL_BATCH):
            correct += (model(x[i : i + _EVAL_BATCH]).argmax(1) == y[i : i + _EVAL_BATCH]).sum()
    return float(correct) / len(y)


_FINAL_KEYS = ("train_accuracy", "val_accuracy", "test_accuracy")


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
        for key in _FINAL_KEYS:
            float(blob["final"][key])
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
                      stacklevel=4)


def _check_data(data: MnistSplit) -> None:
    if not isinstance(data, MnistSplit):
        raise TypeError(
            f"data must be a MnistSplit from saliency_helpers.data.load_mnist(), "
            f"got {type(data).__name__}."
        )
    for name in ("x_train", "x_val", "x_test"):
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

    For ``labels="true"`` training stops once VALIDATION accuracy reaches
    ``config.target_accuracy``; for ``labels="permuted"`` once TRAINING accuracy on the
    permuted labels does (memorisation; validation and test accuracy stay near chance,
    10%). Validation accuracy is measured after every epoch in eval mode; training accuracy
    on the fly over the epoch's minibatches (see :class:`TrainResult`), plus one exact pass
    at the end. The test digits are scored once, after training. Deterministic for a given
    config; the caller's global RNG state is restored afterwards
    (``torch.random.fork_rng``).

    Args:
        config: the recipe; default ``TrainConfig()`` (true labels, seed 0).
        data: a :class:`~saliency_helpers.data.MnistSplit`; default
            ``load_mnist(config.test_fraction, config.val_fraction, config.data_seed)``.
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
        data = load_mnist(test_fraction=config.test_fraction, val_fraction=config.val_fraction,
                          seed=config.data_seed)
    _check_data(data)

    x_train, y_true = data.x_train, data.y_train
    if config.n_train is not None:
        x_train, y_true = x_train[: config.n_train], y_true[: config.n_train]
    y_train = (
        y_true if config.labels == "true" else permuted_labels(y_true, config.permutation_seed)
    )

    path = cache_dir() / f"smallcnn-{_cache_key(config, data)}.pt" if cache else None
    with _recipe_lock(path, config, progress):
        if path is not None:
            loaded = _load_cache(path, config)
            if loaded is not None:
                model, blob = loaded
                final = blob["final"]
                return TrainResult(
                    model=frozen(model),
                    history=pd.DataFrame(blob["history"]),
                    train_accuracy=float(final["train_accuracy"]),
                    val_accuracy=float(final["val_accuracy"]),
                    test_accuracy=float(final["test_accuracy"]),
                    seconds=float(blob.get("seconds", 0.0)),
                    from_cache=True,
                    config=config,
                    y_train=y_train,
                    cache_path=path,
                )
        return _train_and_save(config, data, x_train, y_train, path, progress)


@contextlib.contextmanager
def _recipe_lock(path: Path | None, config: TrainConfig, progress: bool) -> Iterator[None]:
    """Hold the recipe's lock file: two processes that want the same recipe at once (two
    notebooks, or a lecture and its exercise being graded) train it once, the second one
    waiting for the first one's cache file instead of training a copy beside it. The lock
    (``filelock``, which torch installs) goes with its process if that process dies."""
    if path is None:
        yield
        return
    from filelock import FileLock, Timeout

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(path.with_suffix(".lock"))
        lock.acquire(timeout=0)
    except Timeout:  # (a TimeoutError, so an OSError: caught first)
        if progress:
            print(f"{config.labels} labels, seed {config.seed}: another process is training "
                  "this recipe; waiting for its result", flush=True)
        lock.acquire()
    except OSError as err:  # a read-only cache: train without the lock, as without a cache
        warnings.warn(f"Could not lock the training cache {path} ({err}).", stacklevel=4)
        yield
        return
    try:
        yield
    finally:
        lock.release()


def _train_and_save(
    config: TrainConfig,
    data: MnistSplit,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    path: Path | None,
    progress: bool,
) -> TrainResult:
    """Train ``config`` on ``(x_train, y_train)`` (see :func:`train`) and cache the result."""
    from tqdm.auto import tqdm  # imported lazily: tqdm.auto probes for Jupyter

    rows: dict[str, list] = {"epoch": [], "train_accuracy": [], "val_accuracy": [], "loss": []}
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        model = _init(config.seed, config.hidden)
        generator = torch.Generator().manual_seed(config.seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        bar = tqdm(range(1, config.epochs + 1),
                   desc=f"{config.labels} labels, seed {config.seed}", unit="epoch",
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
            val_acc = _accuracy(model, data.x_val, data.y_val)
            values = (epoch, running_acc, val_acc, total_loss / len(order))
            for key, value in zip(rows, values, strict=True):
                rows[key].append(value)
            bar.set_postfix(train=f"{running_acc:.3f}", val=f"{val_acc:.3f}")
            train_acc = None
            if config.labels == "true":
                done = val_acc >= config.target_accuracy
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
    test_acc = _accuracy(model, data.x_test, data.y_test)  # once, after training

    final = {"train_accuracy": train_acc, "val_accuracy": val_acc, "test_accuracy": test_acc}
    if (
        (val_acc if config.labels == "true" else train_acc) < config.target_accuracy
    ) and config.n_train is None:
        warnings.warn(
            f"Training on {config.labels} labels (seed {config.seed}) stopped after "
            f"{config.epochs} epochs without reaching {config.stop_on} >= "
            f"{config.target_accuracy}; raise `epochs`.",
            stacklevel=3,
        )
    if path is not None:
        _save_cache(path, model, rows, final, seconds)
    return TrainResult(
        model=frozen(model),
        history=pd.DataFrame(rows),
        train_accuracy=train_acc,
        val_accuracy=val_acc,
        test_accuracy=test_acc,
        seconds=seconds,
        from_cache=False,
        config=config,
        y_train=y_train,
        cache_path=path,
    )


def _base_config(config_kwargs: dict[str, Any], caller: str) -> TrainConfig:
    if "labels" in config_kwargs:
        raise ValueError(f"{caller} sets `labels` itself; remove it from the arguments.")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(config_kwargs) - names)
    if unknown:
        raise TypeError(f"Unknown TrainConfig field(s) {unknown}; valid: {sorted(names)}.")
    return TrainConfig(**config_kwargs)


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
        **config_kwargs: any :class:`TrainConfig` field except ``labels``, e.g.
            ``seed=1`` (initialisation, minibatch order and permutation).

    Returns:
        ``(true_result, permuted_result)``, two :class:`TrainResult`.

    Example:
        >>> true_run, permuted_run = train_pair(seed=0)    # doctest: +SKIP
    """
    base = _base_config(config_kwargs, "train_pair")
    if data is None:
        data = load_mnist(test_fraction=base.test_fraction, val_fraction=base.val_fraction,
                          seed=base.data_seed)
    true_run = train(dataclasses.replace(base, labels="true"), data,
                     progress=progress, cache=cache)
    permuted_run = train(dataclasses.replace(base, labels="permuted"), data,
                         progress=progress, cache=cache)
    return true_run, permuted_run


def train_pairs(
    data: MnistSplit | None = None,
    seeds: Iterable[int] = (0, 1, 2),
    *,
    progress: bool = True,
    cache: bool = True,
    **config_kwargs: Any,
) -> dict[int, tuple[TrainResult, TrainResult]]:
    """One true/permuted pair per training seed (see :func:`train_pair`).

    Several seeds show how much of a result is the training run rather than the labels:
    two true-label models of different seeds learned the same digits, and how alike their
    maps are is the ceiling the data-randomization test is measured against.

    Args:
        data: a MnistSplit; default ``load_mnist`` with the recipe's data seed.
        seeds: distinct int training seeds. Default ``(0, 1, 2)``.
        progress: show tqdm bars.
        cache: use the weight cache (see :func:`train`).
        **config_kwargs: any :class:`TrainConfig` field except ``labels`` and ``seed``.

    Returns:
        ``{seed: (true_result, permuted_result)}`` in the order of ``seeds``.

    Example:
        >>> pairs = train_pairs(seeds=(0, 1, 2))             # doctest: +SKIP
        >>> [round(t.test_accuracy, 2) for t, _ in pairs.values()]   # doctest: +SKIP
    """
    if "seed" in config_kwargs:
        raise ValueError("train_pairs takes its seeds from `seeds`; remove `seed`.")
    if isinstance(seeds, (int, str)) or not isinstance(seeds, Iterable):
        raise TypeError(f"seeds must be a sequence of ints, e.g. (0, 1, 2), got {seeds!r}.")
    seeds = [_check_int("seed", s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and not empty, got {seeds}.")
    base = _base_config(config_kwargs, "train_pairs")
    if data is None:
        data = load_mnist(test_fraction=base.test_fraction, val_fraction=base.val_fraction,
                          seed=base.data_seed)
    return {
        seed: train_pair(data, progress=progress, cache=cache,
                         **{**config_kwargs, "seed": seed})
        for seed in seeds
    }
