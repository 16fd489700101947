"""Load and check photos, find the course photos, undo a model's normalisation.

Every photo enters the course through :func:`load_image`, which turns whatever
the student has (a path, a PIL image, a NumPy array) into an 8-bit RGB PIL
image or raises :class:`ImageError` with the file and the problem named.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

#: The smallest side the course accepts; smaller images say nothing at 224 px.
MIN_SIDE = 32

#: The course photos, by short name; credits in ``figures/CREDITS.md``.
COURSE_PHOTOS = {
    "corella": "corella.jpg",
    "cockatoo": "sulphur_crested_cockatoo.jpg",
}

#: Photos that ship inside scikit-image (CC0 / public domain; credits in figures/CREDITS.md).
SKIMAGE_PHOTOS = {
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "rocket": "rocket.jpg",
}
#: The photo set of the sanity checks: every photo the course can load offline.
PHOTO_SET = ("corella", "cockatoo", "chelsea", "coffee", "rocket")

FIGURES_DIR = Path(__file__).resolve().parent.parent / "figures"


class ImageError(ValueError):
    """A photo could not be used: the message names the file and the problem."""


def course_photo(name: str = "corella") -> Path:
    """Path of one of the course photos.

    Args:
        name: ``"corella"`` (the headline photo, a little corella that ImageNet
            models call class 89, "sulphur-crested cockatoo"), ``"cockatoo"``
            (an unambiguous sulphur-crested cockatoo), or one of the photos that ship
            with scikit-image: ``"chelsea"`` (a cat), ``"coffee"`` (a cup of espresso),
            ``"rocket"`` (a rocket launch).

    Returns:
        The path of the image file (``figures/`` or scikit-image's data folder).

    Example:
        >>> load_image(course_photo("corella")).size
        (500, 650)
    """
    if name in SKIMAGE_PHOTOS:
        import skimage.data  # only here: scikit-image is a dependency, but a heavy import

        path = Path(skimage.data.__file__).parent / SKIMAGE_PHOTOS[name]
        if not path.is_file():
            raise ImageError(f"scikit-image's bundled photo {path} is missing: reinstall it.")
        return path
    if name not in COURSE_PHOTOS:
        choices = sorted(COURSE_PHOTOS) + sorted(SKIMAGE_PHOTOS)
        raise ValueError(f"Unknown course photo {name!r}; choose one of {choices}.")
    path = FIGURES_DIR / COURSE_PHOTOS[name]
    if not path.is_file():
        raise ImageError(
            f"Course photo {path} is missing. Install the package from a checkout of the "
            "course (pip install -e .) so that figures/ sits beside saliency_helpers/."
        )
    return path


def course_photos(names: Sequence[str] = PHOTO_SET) -> dict[str, Path]:
    """The photo set of the sanity checks, by name: every one loads offline.

    Args:
        names: which photos (default :data:`PHOTO_SET`: the two course photos and
            scikit-image's ``chelsea``, ``coffee`` and ``rocket``).

    Returns:
        ``{name: path}`` in the order given; pass each to ``bundle.preprocess``.

    Example:
        >>> xs = [b.preprocess(p) for p in course_photos().values()]
    """
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise ValueError(f"names is empty: give some of {list(PHOTO_SET)}.")
    return {name: course_photo(name) for name in names}


def load_image(src: Any) -> Image.Image:
    """Load a photo as an 8-bit RGB PIL image, converting every common format.

    Grayscale and 16-bit images are scaled to 8-bit RGB, palette and
    transparent images are composited on white, CMYK is converted, and the
    EXIF orientation is applied.

    Args:
        src: a file path (``str`` or ``Path``), a ``PIL.Image.Image``, or a
            NumPy array shaped ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)``
            (uint8 0..255, uint16 0..65535, or float 0..1).

    Returns:
        A ``PIL.Image.Image`` in mode ``"RGB"``.

    Raises:
        ImageError: missing, empty, truncated or non-image file, an array of
            the wrong shape or range, or an image smaller than 32 px.

    Example:
        >>> img = load_image(course_photo())
        >>> img.mode
        'RGB'
    """
    if isinstance(src, (str, Path)):
        image, label = _open_file(Path(src)), str(src)
    elif isinstance(src, Image.Image):
        image, label = src, "the PIL image"
    elif isinstance(src, np.ndarray):
        image, label = _from_array(src), f"the array of shape {src.shape}"
    elif isinstance(src, torch.Tensor):
        raise ImageError(
            "load_image takes a photo, not a tensor: pass a path, PIL image or NumPy array "
            "(to show a model input tensor, use sh.denormalize(x, bundle) first)."
        )
    else:
        raise ImageError(
            f"Cannot load an image from {type(src).__name__}: pass a file path, "
            "a PIL image or a NumPy array."
        )
    rgb = _to_rgb(image)
    if min(rgb.size) < MIN_SIDE:
        w, h = rgb.size
        raise ImageError(
            f"{label} is {w}×{h} px; the course needs at least {MIN_SIDE} px on each side."
        )
    return rgb


def denormalize(x: torch.Tensor, model: Any) -> torch.Tensor:
    """Undo a model's input normalisation, for showing an input tensor as a photo.

    Args:
        x: a preprocessed input, shape ``(N, 3, H, W)`` or ``(3, H, W)``.
        model: the object returned by ``load_model`` (its ``mean`` and ``std``
            are used), or a ``(mean, std)`` pair of 3-sequences.

    Returns:
        A tensor shaped like ``x`` with values clipped to ``[0, 1]``.

    Example:
        >>> b = load_model("efficientnet_lite0")
        >>> denormalize(b.preprocess(course_photo()), b).shape
        torch.Size([1, 3, 224, 224])
    """
    mean, std = (model.mean, model.std) if hasattr(model, "mean") else model
    if x.dim() not in (3, 4) or x.shape[-3] != 3:
        raise ValueError(f"denormalize expects (N, 3, H, W) or (3, H, W), got {tuple(x.shape)}.")
    shape = (3, 1, 1)
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(shape)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(shape)
    return (x.detach() * s + m).clamp(0.0, 1.0)


def _open_file(path: Path) -> Image.Image:
    if not path.exists():
        raise ImageError(f"{path}: no such file. Check the path (relative to {Path.cwd()}).")
    if path.is_dir():
        raise ImageError(f"{path} is a folder, not an image file.")
    if path.stat().st_size == 0:
        raise ImageError(f"{path} is empty (0 bytes): download or copy it again.")
    try:
        image = Image.open(path)
        image.load()  # decode now, so a truncated file fails here and not later
    except UnidentifiedImageError:
        raise ImageError(f"{path} is not an image file that Pillow can read.") from None
    except (OSError, SyntaxError) as err:
        raise ImageError(f"{path} is damaged or truncated ({err}): download it again.") from None
    return ImageOps.exif_transpose(image)


def _from_array(arr: np.ndarray) -> Image.Image:
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise ImageError(
            f"An image array must be (H, W), (H, W, 3) or (H, W, 4); got {arr.shape}. "
            "For a (3, H, W) array use arr.transpose(1, 2, 0)."
        )
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.dtype == np.uint8:
        data = arr
    elif arr.dtype == np.uint16:
        data = (arr.astype(np.float64) / 257.0).round().astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
            raise ImageError(
                "A float image array must hold values in [0, 1] (no NaN); "
                f"got range [{np.nanmin(arr):.3g}, {np.nanmax(arr):.3g}]. Divide by 255 first?"
            )
        data = (arr * 255.0).round().astype(np.uint8)
    else:
        raise ImageError(f"Unsupported image array dtype {arr.dtype}: use uint8, uint16 or float.")
    return Image.fromarray(data)


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        # Pillow's own convert("RGB") clips 16-bit values at 255 (a white photo): scale instead.
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 or mode.startswith("I;16") else 255.0
        image = Image.fromarray((arr / top * 255.0).clip(0, 255).round().astype(np.uint8))
    elif mode == "F":
        arr = np.asarray(image, dtype=np.float64)
        top = 255.0 if arr.max() > 1.0 else 1.0
        image = Image.fromarray((arr / top * 255.0).clip(0, 255).round().astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")
