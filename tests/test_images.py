"""Photos in, RGB out; every bad file is an ImageError naming the file and the problem."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

import saliency_helpers as sh

SHA256 = {  # ../shared/assets/SOURCES.md
    "corella": "596b38feeb37a7c8f736e60099e07e617df456eaf0fb2471370c59a84d8e29c7",
    "cockatoo": "a1791b12da44a4d4e9c799eb63a57c378b16811cb0acce99f697cfb47b2aa573",
}


@pytest.mark.parametrize("name", sorted(SHA256))
def test_course_photos_are_the_credited_files(name):
    path = sh.course_photo(name)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA256[name]
    credits = (path.parent / "CREDITS.md").read_text()
    assert path.name in credits and "CC BY-SA" in credits


def test_corella_loads_as_rgb():
    img = sh.load_image(sh.course_photo("corella"))
    assert img.mode == "RGB" and img.size == (500, 650)


def test_unknown_course_photo():
    with pytest.raises(ValueError, match="corella"):
        sh.course_photo("parrot")


def _gradient(mode_max: int, dtype) -> np.ndarray:
    return np.tile(np.linspace(0, mode_max, 64), (48, 1)).astype(dtype)


@pytest.mark.parametrize(
    "make, expected_grey",
    [
        (lambda p: Image.fromarray(_gradient(255, np.uint8)).save(p), True),  # L
        (lambda p: Image.fromarray(_gradient(65535, np.uint16)).save(p), True),  # I;16
        (lambda p: Image.fromarray(_gradient(255, np.uint8)).convert("P").save(p), True),
        (
            lambda p: Image.new("CMYK", (64, 48), (0, 255, 255, 0)).save(p.with_suffix(".jpg")),
            False,
        ),
    ],
    ids=["grayscale", "16-bit", "palette", "cmyk"],
)
def test_modes_convert_to_rgb(tmp_path, make, expected_grey):
    path = tmp_path / "img.png"
    make(path)
    if not path.exists():
        path = path.with_suffix(".jpg")
    img = sh.load_image(path)
    arr = np.asarray(img).astype(int)
    assert img.mode == "RGB" and img.size == (64, 48)
    if expected_grey:
        assert (arr[..., 0] == arr[..., 1]).all()
        # the full range survives: 16-bit is scaled, not clipped to white
        assert arr[0, 0, 0] <= 2 and arr[0, -1, 0] >= 253 and 120 <= arr[0, 32, 0] <= 135
    else:
        assert arr[..., 0].mean() > 200 and arr[..., 1].mean() < 60  # CMYK red stays red


def test_transparent_pixels_become_white(tmp_path):
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent on the left half
    rgba[:, 20:, 3] = 255
    img = sh.load_image(rgba)
    arr = np.asarray(img)
    assert tuple(arr[0, 0]) == (255, 255, 255) and tuple(arr[0, 39]) == (255, 0, 0)


def test_arrays_uint8_uint16_float():
    u8 = sh.load_image(np.full((40, 40, 3), 128, np.uint8))
    u16 = sh.load_image(np.full((40, 40), 65535, np.uint16))
    f = sh.load_image(np.full((40, 40, 3), 0.5))
    assert np.asarray(u8)[0, 0, 0] == 128 and np.asarray(u16)[0, 0, 0] == 255
    assert np.asarray(f)[0, 0, 0] == 128
    with pytest.raises(sh.ImageError, match=r"\[0, 1\]"):
        sh.load_image(np.full((40, 40, 3), 200.0))
    with pytest.raises(sh.ImageError, match="transpose"):
        sh.load_image(np.zeros((3, 40, 40), np.uint8))


def test_missing_file(tmp_path):
    with pytest.raises(sh.ImageError, match="nope.jpg: no such file"):
        sh.load_image(tmp_path / "nope.jpg")


def test_empty_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(sh.ImageError, match=r"empty.jpg is empty \(0 bytes\)"):
        sh.load_image(tmp_path / "empty.jpg")


def test_not_an_image(tmp_path):
    (tmp_path / "notes.jpg").write_text("this is not a photo")
    with pytest.raises(sh.ImageError, match="notes.jpg is not an image"):
        sh.load_image(tmp_path / "notes.jpg")


def test_truncated_file(tmp_path):
    data = sh.course_photo().read_bytes()
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(sh.ImageError, match="half.jpg is damaged or truncated"):
        sh.load_image(tmp_path / "half.jpg")


def test_too_small(tmp_path):
    Image.new("RGB", (20, 20)).save(tmp_path / "tiny.png")
    with pytest.raises(sh.ImageError, match="tiny.png is 20×20 px"):
        sh.load_image(tmp_path / "tiny.png")


def test_tensor_is_refused_with_a_hint():
    with pytest.raises(sh.ImageError, match="denormalize"):
        sh.load_image(torch.zeros(3, 64, 64))


def test_denormalize_inverts_preprocess(lite, corella):
    pixels = sh.denormalize(corella, lite)
    assert pixels.shape == corella.shape
    assert 0.0 <= float(pixels.min()) and float(pixels.max()) <= 1.0
    crop = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)])
    img = crop(sh.load_image(sh.course_photo()))
    reference = torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255
    assert (pixels[0] - reference).abs().max() < 1e-5
    assert torch.allclose(sh.denormalize(corella[0], (lite.mean, lite.std)), pixels[0])


def test_the_photo_set_loads_offline():
    photos = sh.course_photos()
    expected = ["corella", "cockatoo", "chelsea", "coffee", "rocket"]
    assert list(photos) == list(sh.PHOTO_SET) == expected
    for name, path in photos.items():
        image = sh.load_image(path)
        assert image.mode == "RGB" and min(image.size) >= 224, name
    assert list(sh.course_photos(["coffee", "corella"])) == ["coffee", "corella"]
    with pytest.raises(ValueError, match="Unknown course photo"):
        sh.course_photos(["astronaut"])
    with pytest.raises(ValueError, match="empty"):
        sh.course_photos([])
