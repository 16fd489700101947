"""Known-answer tests for saliency_helpers.maps."""

import numpy as np
import pytest
import torch

from saliency_helpers import maps

# One pixel, three channels; the largest magnitude is negative, so max and abs-max differ.
PIXEL = torch.tensor([1.0, -5.0, 3.0]).reshape(3, 1, 1)


@pytest.mark.parametrize(("how", "expected"), [("sum", -1.0), ("abs_mean", 3.0), ("abs_max", 5.0)])
def test_reduce_channels_known_answers(how, expected):
    out = maps.reduce_channels(PIXEL, how=how)
    assert out.shape == (1, 1)
    assert out.item() == pytest.approx(expected)


def test_reduce_channels_shapes():
    assert maps.reduce_channels(torch.randn(2, 3, 5, 7)).shape == (2, 5, 7)
    assert maps.reduce_channels(np.ones((3, 5, 7), dtype=np.float32)).shape == (5, 7)
    m = torch.randn(5, 7)
    assert torch.equal(maps.reduce_channels(m, "abs_max"), m)  # 2-D maps are left alone


def test_reduce_channels_rejects_unknown_reduction_and_shape():
    with pytest.raises(ValueError, match="abs_mean"):
        maps.reduce_channels(PIXEL, how="mean")
    with pytest.raises(ValueError, match="shape"):
        maps.reduce_channels(torch.zeros(5))


def test_to_2d_shapes_and_errors():
    assert maps.to_2d(torch.zeros(1, 3, 4, 6)).shape == (3, 4, 6)
    assert maps.to_2d(np.zeros((1, 4, 6))).shape == (1, 4, 6)
    assert maps.to_2d(torch.zeros(4, 6, dtype=torch.float64)).dtype == torch.float32
    with pytest.raises(ValueError, match=r"attributions\[i\]"):
        maps.to_2d(torch.zeros(2, 3, 4, 6))
    with pytest.raises(ValueError, match="shaped"):
        maps.to_2d(torch.zeros(6))
    with pytest.raises(TypeError):
        maps.to_2d([[1.0, 2.0]])


def test_is_signed():
    assert maps.is_signed(torch.tensor([-1.0, 2.0]))
    assert not maps.is_signed(torch.tensor([0.0, 2.0]))
    assert maps.is_signed(torch.tensor([-1.0, -2.0]))  # all negative: diverging colours too
    assert not maps.is_signed(torch.tensor([-1e-12, 2.0]))  # rounding noise is not a sign


def test_clip_percentile_signed_and_magnitude():
    m = torch.tensor([-10.0, 0.5, 1.0])
    assert torch.allclose(maps.clip_percentile(m, q=50), torch.tensor([-1.0, 0.5, 1.0]))
    assert torch.allclose(maps.clip_percentile(m, q=50, signed=False), torch.tensor([0, 0.5, 1]))
    big = torch.arange(101.0)  # |m| percentiles are the values themselves
    assert maps.clip_percentile(big, q=90).max().item() == pytest.approx(90.0)
    with pytest.raises(ValueError, match="percentile"):
        maps.clip_percentile(m, q=0)


def test_normalize():
    assert torch.allclose(maps.normalize(torch.tensor([-2.0, 1.0])), torch.tensor([-1.0, 0.5]))
    assert torch.allclose(maps.normalize(torch.tensor([0.0, 4.0])), torch.tensor([0.0, 1.0]))
    zero = maps.normalize(torch.zeros(3, 3))
    assert torch.equal(zero, torch.zeros(3, 3)) and not zero.isnan().any()


def test_pool_shapes_and_means():
    m = torch.arange(16.0).reshape(4, 4)
    pooled = maps.pool(m, 2)
    assert torch.allclose(pooled, torch.tensor([[2.5, 4.5], [10.5, 12.5]]))
    assert maps.pool(torch.randn(224, 224), (28, 14)).shape == (28, 14)
    assert maps.pool(torch.randn(1, 3, 8, 8), 4).shape == (1, 3, 4, 4)


def test_to_frame_columns_rows_and_values():
    frame = maps.to_frame(
        {"gradient": torch.randn(1, 3, 4, 6), "ig": torch.arange(24.0).reshape(4, 6)},
        layer="fc",
    )
    assert list(frame.columns) == ["method", "layer", "row", "col", "value"]
    assert len(frame) == 2 * 4 * 6
    assert (frame["layer"] == "fc").all()
    ig = frame[frame["method"] == "ig"]
    assert ig.loc[(ig["row"] == 2) & (ig["col"] == 3), "value"].item() == 2 * 6 + 3


def test_to_frame_pools_and_rejects_clashing_facets():
    frame = maps.to_frame({"a": torch.ones(224, 224)}, size=7)
    assert len(frame) == 49 and frame["value"].eq(1).all()
    with pytest.raises(ValueError, match="clash"):
        maps.to_frame({"a": torch.ones(2, 2)}, value=3)
