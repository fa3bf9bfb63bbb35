"""Decoded pixels to float RGB in [0, 1] (part of :mod:`boomerang.imageio`, which documents the rules): every
Pillow mode and array dtype, bit depth, alpha over the background, the gray flag.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from boomerang._colour import cmyk_to_rgb, icc_to_srgb
from boomerang._image import ImageInputError, LoadedImage, check_pixel_count
from boomerang.errors import BoomerangWarning

__all__: list[str] = []

_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N"}



def from_pil(img: Image.Image, name: str, path: Path | None, bg: np.ndarray) -> LoadedImage:
    """A decoded, upright PIL image (any mode) as a :class:`LoadedImage`: float32 RGB ``(H, W, 3)`` in [0, 1]
    over ``bg`` (float32 ``(3,)`` in [0, 1]), sRGB through its ICC profile."""
    orig_mode = img.mode
    was_gray = orig_mode in ("L", "LA")
    img, profile = icc_to_srgb(img)
    mode = img.mode
    if mode in ("RGBa", "La", "LA;16", "LA;16B"):
        img = img.convert("RGBA" if mode == "RGBa" else "LA")
        mode = img.mode
    has_alpha = mode in ("RGBA", "LA", "PA") or (
        mode in ("P", "L", "RGB", "1") and "transparency" in img.info
    )
    is_gray = mode in _GRAY_MODES
    bit_depth = 8
    alpha = None

    if mode == "P" or mode == "PA":
        # Palette: go through RGBA so a transparent index becomes alpha.
        palette_mode = img.palette.mode if img.palette is not None else "RGB"
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        colour, alpha = rgba[..., :3], rgba[..., 3]
        is_gray = palette_mode == "L" or bool(
            np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(colour[..., 1], colour[..., 2])
        )
    elif mode == "CMYK":
        colour = np.asarray(cmyk_to_rgb(img), dtype=np.float32) / 255.0
    elif mode in _SIXTEEN_BIT_MODES:
        bit_depth = 16
        colour = np.asarray(img, dtype=np.float32) / 65535.0
        if "transparency" in img.info:
            alpha = (np.asarray(img) != img.info["transparency"]).astype(np.float32)
    elif mode == "I":
        bit_depth = 16
        arr = np.asarray(img, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            warnings.warn(
                f"{name}: 32-bit integer pixel values outside 0..65535 were clipped "
                f"(min {arr.min()}, max {arr.max()}); the image is read as 16-bit.",
                BoomerangWarning,
                stacklevel=3,
            )
        colour = np.clip(arr, 0, 65535).astype(np.float32) / 65535.0
        if "transparency" in img.info:
            alpha = (arr != img.info["transparency"]).astype(np.float32)
    elif mode == "F":
        bit_depth = 32
        colour = _float_to_unit(np.asarray(img, dtype=np.float32), name)
    elif mode == "L" and not has_alpha:
        colour = np.asarray(img, dtype=np.float32)  # a fresh float32 array: scaled in place (as "LA" below, less memory)
        colour /= 255.0
    elif mode in ("1", "L", "LA"):
        la = np.asarray(img.convert("LA"), dtype=np.float32) / 255.0
        colour, alpha = la[..., 0], la[..., 1]
        if mode != "LA" and not has_alpha:
            alpha = None
    elif mode == "RGB" and not has_alpha:
        colour = np.asarray(img, dtype=np.float32)  # a fresh float32 array: scaled in place
        colour /= 255.0
    elif mode in ("RGB", "RGBA"):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        colour, alpha = rgba[..., :3], rgba[..., 3]
        if not has_alpha:
            alpha = None
    else:
        # YCbCr, LAB, HSV and anything else Pillow can convert.
        try:
            rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        except (ValueError, OSError) as exc:
            raise ImageInputError(
                f"{name}: pixel mode {mode!r} cannot be converted to RGB ({exc}). Convert the file to PNG first."
            ) from None
        colour, alpha = rgba[..., :3], rgba[..., 3]
        has_alpha = bool((alpha < 1).any())
        if not has_alpha:
            alpha = None

    pixels = _finish(colour, alpha, bg)
    return LoadedImage(
        pixels=pixels,
        size=(int(pixels.shape[1]), int(pixels.shape[0])),
        bit_depth=bit_depth,
        is_grayscale=bool(is_gray or was_gray),
        name=name,
        path=path,
        source_mode=orig_mode if profile is not None else mode,
        had_alpha=bool(has_alpha),
        icc_profile=profile,
    )


def read_array(arr: np.ndarray, bg: np.ndarray, max_pixels: int | None) -> LoadedImage:
    """A numpy array ``(H, W)`` / ``(H, W, C)``, C in 1..4, as a :class:`LoadedImage` (see :func:`read_image`)."""
    name = "<memory>"
    desc = f"array {arr.dtype} {tuple(arr.shape)}"
    if arr.ndim == 3 and arr.shape[-1] not in (1, 2, 3, 4) and arr.shape[0] in (1, 2, 3, 4):
        raise ImageInputError(
            f"{name}: got an array of shape {arr.shape}, which looks channels-first. "
            "Pass (H, W) or (H, W, C) channels-last, e.g. arr.transpose(1, 2, 0)."
        )
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (1, 2, 3, 4)):
        raise ImageInputError(
            f"{name}: got an array of shape {arr.shape}; expected (H, W) or (H, W, C) with C in 1..4."
        )
    h, w = int(arr.shape[0]), int(arr.shape[1])
    check_pixel_count((w, h), name, max_pixels)

    if arr.dtype == np.bool_:
        data, bit_depth = arr.astype(np.float32), 8
    elif arr.dtype == np.uint8:
        data, bit_depth = arr.astype(np.float32) / 255.0, 8
    elif arr.dtype == np.uint16:
        data, bit_depth = arr.astype(np.float32) / 65535.0, 16
    elif np.issubdtype(arr.dtype, np.floating):
        data, bit_depth = _float_to_unit(arr.astype(np.float32), name), 32
    else:
        raise ImageInputError(
            f"{name}: arrays of dtype {arr.dtype} are ambiguous. Pass uint8 (0..255), "
            "uint16 (0..65535) or float (0..1), e.g. arr.astype(np.uint8)."
        )
    if data.ndim == 2:
        data = data[..., None]
    c = data.shape[-1]
    alpha = data[..., c - 1] if c in (2, 4) else None
    colour = data[..., : c - 1] if c in (2, 4) else data
    if colour.shape[-1] == 1:
        colour = colour[..., 0]
    pixels = _finish(colour, alpha, bg)
    return LoadedImage(
        pixels=pixels,
        size=(w, h),
        bit_depth=bit_depth,
        is_grayscale=c in (1, 2),
        name=name,
        path=None,
        source_mode=desc,
        had_alpha=alpha is not None,
    )


def _float_to_unit(arr: np.ndarray, name: str) -> np.ndarray:
    if not np.all(np.isfinite(arr)):
        raise ImageInputError(f"{name}: the image holds NaN or infinite values. Replace them before passing it.")
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if lo < 0.0 or hi > 1.0:
        hint = " If it holds 0..255 values, pass it as uint8 or divide by 255." if hi > 1.0 else ""
        warnings.warn(
            f"{name}: float pixel values outside [0, 1] (min {lo:g}, max {hi:g}) were clipped.{hint}",
            BoomerangWarning,
            stacklevel=4,
        )
        arr = np.clip(arr, 0.0, 1.0)
    return arr


def _finish(colour: np.ndarray, alpha: np.ndarray | None, bg: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) colour + optional (H, W) alpha -> (H, W, 3) float32 over bg.
    ``colour`` may be modified in place (callers pass arrays they own)."""
    colour = np.asarray(colour, dtype=np.float32)
    if colour.ndim == 2:
        colour = np.repeat(colour[..., None], 3, axis=-1)
    if alpha is not None:
        a = np.asarray(alpha, dtype=np.float32)[..., None]
        colour = colour * a + bg.reshape(1, 1, 3) * (1.0 - a)
    if not (colour.flags.c_contiguous and colour.flags.writeable and colour.base is None):
        colour = np.ascontiguousarray(colour, dtype=np.float32).copy()
    return np.clip(colour, 0.0, 1.0, out=colour)
