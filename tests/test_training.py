"""Tests of saliency_helpers.data and saliency_helpers.training (MNIST, SmallCNN, training)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from saliency_helpers.data import MnistSplit, load_mnist, permuted_labels
from saliency_helpers.training import SmallCNN, TrainConfig, cache_dir, train, train_pair


@pytest.fixture(scope="module")
def split() -> MnistSplit:
    return load_mnist()


@pytest.fixture()
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SALIENCY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# ---------------------------------------------------------------- data
def test_load_mnist_shapes_dtypes_range(split):
    assert split.x_train.shape == (4000, 1, 28, 28)
    assert split.x_test.shape == (1000, 1, 28, 28)
    assert split.y_train.shape == (4000,) and split.y_test.shape == (1000,)
    assert split.x_train.dtype == torch.float32 and split.y_train.dtype == torch.int64
    for x in (split.x_train, split.x_test):
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert x.max() == 1.0  # scaled from 0..255, not left in pixel units


def test_load_mnist_shuffled_and_stratified(split):
    assert len(split.y_train[:100].unique()) > 5
    assert split.y_train.bincount(minlength=10).tolist() == [400] * 10
    assert split.y_test.bincount(minlength=10).tolist() == [100] * 10
    # No image is in both splits.
    train_rows = {tuple(r.tolist()) for r in split.x_train.flatten(1)[:, 100:700:7]}
    overlap = sum(tuple(r.tolist()) in train_rows for r in split.x_test.flatten(1)[:, 100:700:7])
    assert overlap <= 5  # a handful of MNIST digits are near duplicates


def test_load_mnist_seeded():
    a, b, c = load_mnist(seed=1), load_mnist(seed=1), load_mnist(seed=2)
    assert torch.equal(a.y_train, b.y_train) and torch.equal(a.x_test, b.x_test)
    assert not torch.equal(a.y_train, c.y_train)


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1])
def test_load_mnist_rejects_bad_fraction(bad):
    with pytest.raises(ValueError, match="test_fraction"):
        load_mnist(test_fraction=bad)


def test_permuted_labels_keeps_multiset_changes_most(split):
    y = split.y_train
    p = permuted_labels(y, seed=0)
    assert p.shape == y.shape and p.dtype == y.dtype
    assert torch.equal(p.sort().values, y.sort().values)
    assert (p != y).float().mean() > 0.8  # chance agreement is 10%
    assert torch.equal(p, permuted_labels(y, seed=0))
    assert not torch.equal(p, permuted_labels(y, seed=1))


def test_permuted_labels_rejects_bad_input():
    with pytest.raises(TypeError, match="torch.Tensor"):
        permuted_labels([1, 2, 3])
    with pytest.raises(ValueError, match="1-D"):
        permuted_labels(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        permuted_labels(torch.zeros(3))


# ---------------------------------------------------------------- SmallCNN
def test_smallcnn_output_shape():
    assert SmallCNN()(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_smallcnn_each_relu_module_used_once():
    model = SmallCNN()
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == 4
    calls = {id(m): 0 for m in relus}
    handles = [
        m.register_forward_hook(lambda mod, i, o: calls.__setitem__(id(mod), calls[id(mod)] + 1))
        for m in relus
    ]
    model(torch.zeros(2, 1, 28, 28))
    for h in handles:
        h.remove()
    assert list(calls.values()) == [1, 1, 1, 1]


def test_smallcnn_layer_names_resolve():
    model = SmallCNN()
    assert isinstance(model.get_submodule(model.gradcam_layer_name), nn.Conv2d)
    assert model.gradcam_layer is model.conv3
    assert list(model.layers)[:2] == ["fc2", "fc1"]
    for name in model.layers:
        model.get_submodule(name)


# ---------------------------------------------------------------- training
TINY = dict(epochs=1, n_train=256, batch_size=64)


def test_train_config_rejects_bad_values():
    with pytest.raises(ValueError, match="labels"):
        TrainConfig(labels="random")
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=-1.0)
    with pytest.raises(ValueError, match="target_accuracy"):
        TrainConfig(target_accuracy=95)
    with pytest.raises(TypeError, match="TrainConfig"):
        train({"epochs": 1})


def test_cache_dir_follows_env(tmp_cache):
    assert cache_dir() == tmp_cache


def test_train_tiny_and_cache(split, tmp_cache):
    config = TrainConfig(labels="true", **TINY)
    first = train(config, split, progress=False)
    assert not first.from_cache
    assert list(first.history.columns) == ["epoch", "train_accuracy", "test_accuracy", "loss"]
    assert first.history["epoch"].tolist() == [1]
    assert not first.model.training
    assert not any(p.requires_grad for p in first.model.parameters())
    assert first.cache_path is not None and first.cache_path.parent == tmp_cache
    assert first.cache_path.is_file()

    second = train(config, split, progress=False)
    assert second.from_cache
    state_a, state_b = first.model.state_dict(), second.model.state_dict()
    for a, b in zip(state_a.values(), state_b.values(), strict=True):
        assert torch.equal(a, b)
    assert second.history.equals(first.history)

    other = train(dataclasses.replace(config, seed=1), split, progress=False)
    assert not other.from_cache and other.cache_path != first.cache_path


def test_train_is_deterministic_without_cache(split):
    config = TrainConfig(labels="permuted", **TINY)
    a = train(config, split, progress=False, cache=False)
    b = train(config, split, progress=False, cache=False)
    assert a.cache_path is None and not a.from_cache
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_corrupt_cache_retrains(split, tmp_cache):
    config = TrainConfig(**TINY)
    path = train(config, split, progress=False).cache_path
    path.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unreadable"):
        again = train(config, split, progress=False)
    assert not again.from_cache
    assert train(config, split, progress=False).from_cache


def test_train_leaves_global_rng_unchanged(split):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    threads = torch.get_num_threads()
    train(TrainConfig(**TINY), split, progress=False, cache=False)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.get_num_threads() == threads


def test_train_pair_rejects_labels_and_unknown_fields():
    with pytest.raises(ValueError, match="labels"):
        train_pair(labels="true")
    with pytest.raises(TypeError, match="epoks"):
        train_pair(epoks=3)


def test_real_targets_true_vs_permuted(split):
    """The numbers the data-randomization notebook stands on (default recipe).

    Deliberately uses the DEFAULT cache ($SALIENCY_CACHE or ~/.cache/saliency_helpers) and
    the default recipe, exactly as notebook 07 calls ``train_pair(split)``: on CI the models
    are trained once (about a minute on 2 idle cores) and the notebook loads them.
    """
    true_run, permuted_run = train_pair(split, progress=False)
    assert true_run.config.labels == "true" and permuted_run.config.labels == "permuted"
    assert true_run.test_accuracy >= 0.95
    assert permuted_run.train_accuracy >= 0.95
    assert permuted_run.test_accuracy <= 0.2
    assert (permuted_run.y_train != split.y_train).float().mean() > 0.8
    assert true_run.reached_target and permuted_run.reached_target
    # Memorising takes longer than learning: the reason this test is expensive.
    assert len(permuted_run.history) > 2 * len(true_run.history)
    # The history's running training accuracy never overstates the final exact one.
    assert permuted_run.history["train_accuracy"].iloc[-1] <= permuted_run.train_accuracy + 0.01
