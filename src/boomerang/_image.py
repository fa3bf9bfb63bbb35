"""What reading an image gives (part of :mod:`boomerang.imageio`, which documents the rules): the limits and
defaults, :class:`LoadedImage`, :class:`ImageInputError` and the checks of sizes and backgrounds.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

__all__ = [
    "DEFAULT_BACKGROUND",
    "DEFAULT_MAX_PIXELS",
    "MIN_SIDE",
    "LUMA_WEIGHTS",
    "ImageInputError",
    "LoadedImage",
    "ImageSource",
]

#: Colour (R, G, B in 0..255) that transparent pixels are composited over.
DEFAULT_BACKGROUND: tuple[int, int, int] = (255, 255, 255)
#: Largest accepted image, in pixels (width x height): 50 megapixels, enough
#: for a 48 MP phone photo. As float32 RGB such an image takes 600 MB.
DEFAULT_MAX_PIXELS: int = 50_000_000
#: Smallest accepted side, in pixels.
MIN_SIDE: int = 1
#: Rec. 601 luma weights used for RGB -> one channel.
LUMA_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)

ImageSource = Union[str, "os.PathLike[str]", Image.Image, np.ndarray]


class ImageInputError(ValueError):
    """An input image cannot be used.

    The message names the image (file name or ``<memory>``), the reason, and
    what to do about it. Commands turn it into one line on stderr and exit
    status 2.
    """


@dataclass
class LoadedImage:
    """An image as read by :func:`read_image`.

    Attributes:
        pixels: ``float32`` array ``(H, W, 3)``, RGB, values in ``[0, 1]``,
            upright (EXIF orientation applied), alpha already composited.
        size: ``(W, H)`` in pixels, after EXIF transposition (PIL order).
        bit_depth: bits per sample of the source: 8, 16 or 32 (float).
        is_grayscale: the source had a single colour channel (``L``, ``I;16``,
            ``LA``, 2-D arrays ...); the three channels of ``pixels`` are equal.
        name: file name (without folder) or ``"<memory>"``.
        path: the path read, or ``None`` for in-memory sources.
        source_mode: PIL mode of the source (``"RGB"``, ``"CMYK"``, ...), or a
            description such as ``"array uint16 (H, W)"`` for arrays.
        had_alpha: the source carried transparency that was composited.
        icc_profile: description of the embedded ICC profile the pixels were
            converted to sRGB from, or ``None`` (no profile, or already sRGB).
        decoded_scale: 1, or the factor k a large input was reduced by for the
            model (:func:`read_for_model`).
    """

    pixels: np.ndarray
    size: tuple[int, int]
    bit_depth: int
    is_grayscale: bool
    name: str
    path: Path | None = None
    source_mode: str = ""
    had_alpha: bool = False
    icc_profile: str | None = None
    decoded_scale: int = 1

    @property
    def height(self) -> int:
        """Height in pixels."""
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        """Width in pixels."""
        return int(self.pixels.shape[1])


_ZERO = np.zeros(1, np.float32)


def hollow(shape: tuple[int, ...]) -> np.ndarray:
    """A read-only float32 array of ``shape`` that takes no memory (all zeros: every stride is 0)."""
    shape = tuple(int(v) for v in shape)
    a = np.ndarray(shape, np.float32, buffer=_ZERO, strides=(0,) * len(shape))
    a.flags.writeable = False
    return a


def check_background(background: Sequence[int]) -> np.ndarray:
    """``background`` (R, G, B in 0..255) as float32 ``(3,)`` in [0, 1]; ValueError for anything else."""
    try:
        bg = np.asarray(background, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        bg = np.array([])
    if bg.shape != (3,) or not np.all(np.isfinite(bg)) or bg.min() < 0 or bg.max() > 255:
        raise ValueError(f"background must be three numbers (R, G, B) in 0..255, got {background!r}")
    return (bg / 255.0).astype(np.float32)


def check_pixel_count(size: tuple[int, int], name: str, max_pixels: int | None) -> None:
    """Refuse (ImageInputError) a ``size`` ``(W, H)`` under :data:`MIN_SIDE` or over ``max_pixels`` pixels."""
    w, h = int(size[0]), int(size[1])
    if w < MIN_SIDE or h < MIN_SIDE:
        raise ImageInputError(
            f"{name}: the image is {w}x{h} pixels; the minimum size is {MIN_SIDE}x{MIN_SIDE}."
        )
    if max_pixels is not None and w * h > max_pixels:
        raise ImageInputError(
            f"{name}: the image is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,}. "
            "Shrink it first, or raise the limit (read_image(max_pixels=...))."
        )
