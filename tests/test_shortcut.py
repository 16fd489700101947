"""The planted shortcut's helpers (notebook 09): the mark lands where asked, only on the chosen
class, at rate p with a seed; the two localisation measures give known answers on hand-built
maps."""

from __future__ import annotations

import pytest
import torch

import saliency_helpers as sh
from saliency_helpers import data


def test_mark_mask_corners_and_positions():
    m = data.mark_mask(3, "bottom_right")
    assert m.shape == (28, 28) and m.dtype == torch.bool and int(m.sum()) == 9
    assert m[24:27, 24:27].all() and not m[27].any() and not m[:, 27].any()  # 1 px margin
    assert data.mark_mask(2, "top_left")[1:3, 1:3].all()
    assert data.mark_mask(2, "top_right", margin=0)[0:2, 26:28].all()
    assert data.mark_mask(4, (10, 5))[10:14, 5:9].sum() == 16
    assert data.mark_mask(3, "bottom_left", image_size=(8, 6))[4:7, 1:4].all()
    with pytest.raises(ValueError, match="does not fit"):
        data.mark_mask(3, (26, 0))
    with pytest.raises(ValueError, match="position must be one of"):
        data.mark_mask(3, "middle")
    with pytest.raises(ValueError, match="size must be an int"):
        data.mark_mask(0)


@pytest.fixture(scope="module")
def split():
    return data.load_mnist()


def test_stamp_mark_only_on_the_chosen_class_at_rate_p(split):
    x, y = split.x_train, split.y_train
    before = x.clone()
    mask = data.mark_mask(3, "top_left")
    stamped, marked = data.stamp_mark(x, y, marked_class=7, p=0.9, mask=mask, seed=1)
    assert torch.equal(x, before)  # the input is left alone
    assert not marked[y != 7].any()
    rate = marked[y == 7].float().mean().item()
    assert 0.85 < rate < 0.95, rate  # 400 sevens: 0.9 within 2.5 sd
    assert (stamped[marked][:, :, mask] == 1.0).all()  # the mark, where asked
    assert torch.equal(stamped[marked][:, :, ~mask], x[marked][:, :, ~mask])  # nothing else
    assert torch.equal(stamped[~marked], x[~marked])
    again, marked_again = data.stamp_mark(x, y, marked_class=7, p=0.9, mask=mask, seed=1)
    assert torch.equal(again, stamped) and torch.equal(marked_again, marked)
    other = data.stamp_mark(x, y, marked_class=7, p=0.9, mask=mask, seed=2)[1]
    assert not torch.equal(other, marked)  # another seed, another draw
    assert not data.stamp_mark(x, y, 7, p=0.0)[1].any()
    faint, every = data.stamp_mark(x[:5], strength=0.3)  # no class: every image, p = 1
    assert every.all() and torch.allclose(faint[:, :, data.mark_mask()], torch.tensor(0.3))


def test_stamp_mark_errors_name_the_fix(split):
    x, y = split.x_test[:4], split.y_test[:4]
    with pytest.raises(ValueError, match="needs y"):
        data.stamp_mark(x, None, marked_class=3)
    with pytest.raises(ValueError, match="probability"):
        data.stamp_mark(x, y, 3, p=1.5)
    with pytest.raises(ValueError, match=r"bool tensor of shape \(28, 28\)"):
        data.stamp_mark(x, y, 3, mask=torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        data.stamp_mark(x[0], y, 3)


def _mask():
    m = torch.zeros(4, 4, dtype=torch.bool)
    m[0:2, 0:2] = True  # 4 of 16 pixels
    return m


def test_attribution_mass_known_answers():
    mask = _mask()
    inside = torch.zeros(1, 3, 4, 4)
    inside[0, :, 0, 1] = torch.tensor([1.0, -2.0, 0.5])  # signs do not matter
    uniform = torch.ones(1, 3, 4, 4)
    outside = torch.zeros(1, 1, 4, 4)
    outside[0, 0, 3, 3] = 1.0
    maps = torch.cat([inside, uniform, outside.expand(1, 3, 4, 4)])
    mass = sh.attribution_mass(maps, mask)
    assert mass.shape == (3,) and mass.tolist() == pytest.approx([1.0, 4 / 16, 0.0])
    per_image = torch.stack([mask, ~mask, mask])
    assert sh.attribution_mass(maps, per_image).tolist() == pytest.approx([1.0, 12 / 16, 0.0])
    assert sh.attribution_mass(maps[:, 0], mask).tolist() == pytest.approx([1.0, 0.25, 0.0])
    assert torch.isnan(sh.attribution_mass(torch.zeros(1, 1, 4, 4), mask)).all()


def test_pointing_game_known_answers():
    mask = _mask()
    maps = torch.zeros(4, 1, 4, 4)
    maps[0, 0, 1, 1] = -3.0  # the largest |value| inside
    maps[1, 0, 3, 3] = 3.0  # outside
    maps[1, 0, 0, 0] = 1.0
    maps[2] = 1.0  # flat: the maxima are everywhere, no hit for free
    maps[3, 0, 0, 0] = maps[3, 0, 1, 0] = 2.0  # tied maxima, both inside
    assert sh.pointing_game(maps, mask).tolist() == [True, False, False, True]
    assert sh.pointing_game(torch.zeros(1, 1, 4, 4), mask).tolist() == [False]


def test_localisation_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"does not fit maps of 2 images of 4x4"):
        sh.attribution_mass(torch.ones(2, 1, 4, 4), torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool tensor"):
        sh.pointing_game(torch.ones(2, 1, 4, 4), torch.ones(4, 4))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\) or \(N, H, W\)"):
        sh.attribution_mass(torch.ones(4, 4), _mask())


def test_shortcut_split_marks_train_and_val_of_one_class_only(split):
    mask = data.mark_mask(5, "top_left")
    marked = data.shortcut_split(split, 3, p=1.0, mask=mask, strength=0.5)
    assert marked.x_test is split.x_test and torch.equal(marked.y_train, split.y_train)
    for x, y, x0 in ((marked.x_train, split.y_train, split.x_train),
                     (marked.x_val, split.y_val, split.x_val)):  # fmt: skip
        assert (x[y == 3][:, :, mask] == 0.5).all()
        assert torch.equal(x[y != 3], x0[y != 3])
    with pytest.raises(TypeError, match="MnistSplit"):
        data.shortcut_split(split.x_train, 3)
