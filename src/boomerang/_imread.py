"""Reading images (part of :mod:`boomerang.imageio`, which documents the rules): files, PIL images and
arrays through :func:`read_image`; opening and fully decoding files, EXIF orientation, Pillow's errors as
:class:`~boomerang._image.ImageInputError`.
"""

from __future__ import annotations

import errno
import os
import struct
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from boomerang._image import (
    DEFAULT_BACKGROUND,
    DEFAULT_MAX_PIXELS,
    ImageInputError,
    ImageSource,
    LoadedImage,
    check_background,
    check_pixel_count,
    hollow,
)
from boomerang._listing import IMAGE_SUFFIXES
from boomerang._pixels import from_pil, read_array

__all__ = ["read_image"]


def read_image(
    source: ImageSource,
    *,
    background: Sequence[int] = DEFAULT_BACKGROUND,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    pixels: bool = True,
) -> LoadedImage:
    """Read an image file, PIL image or array into float RGB in ``[0, 1]``.

    Args:
        source: a path (``str`` or ``os.PathLike``), a ``PIL.Image.Image``, or
            a numpy array of shape ``(H, W)`` or ``(H, W, C)`` with ``C`` in
            1..4 (gray, gray+alpha, RGB, RGBA), dtype ``bool``, ``uint8``
            (0..255), ``uint16`` (0..65535) or float (0..1).
        background: ``(R, G, B)`` in 0..255 that transparent pixels are
            composited over. Default white.
        max_pixels: largest accepted ``W * H``; ``None`` for no limit of ours
            (Pillow's own decompression-bomb limit still applies to files).
        pixels: ``False``: for a file, decode it completely (every check
            above still runs) but return only its description: ``pixels`` is
            then a read-only zero-memory array of the right shape. Used to
            check many or large files without holding their float pixels.

    Returns:
        A :class:`LoadedImage`; ``pixels`` is ``float32`` ``(H, W, 3)`` in
        ``[0, 1]``.

    Raises:
        ImageInputError: missing, unreadable, empty, truncated or non-image
            file; decompression bomb; more than ``max_pixels`` pixels; an
            empty array; an unsupported array shape or dtype; NaN or infinite
            values.
        ValueError: a bad ``background`` or ``max_pixels`` argument.

    Warns:
        UserWarning: float values outside ``[0, 1]`` (or mode ``I`` values
            outside 0..65535) that were clipped.
    """
    bg = check_background(background)
    if max_pixels is not None and (not isinstance(max_pixels, int) or max_pixels < 1):
        raise ValueError(f"max_pixels must be a positive integer or None, got {max_pixels!r}")

    if isinstance(source, np.ndarray):
        return read_array(source, bg, max_pixels)
    if isinstance(source, Image.Image):
        name = _pil_name(source)
        with _pillow_errors(name):
            check_pixel_count(source.size, name, max_pixels)
            img = _decode(source, name)
        return from_pil(img, name, None, bg)
    if isinstance(source, (str, os.PathLike)):
        if not pixels:
            img, name, path = open_file(Path(source), max_pixels)
            return _describe(img, name, path, bg)
        return _read_file(Path(source), bg, max_pixels)
    raise TypeError(
        "read_image() takes a file path, a PIL.Image.Image or a numpy array, "
        f"not {type(source).__name__}"
    )


def _read_file(path: Path, bg: np.ndarray, max_pixels: int | None) -> LoadedImage:
    img, name, path = open_file(path, max_pixels)
    return from_pil(img, name, path, bg)


def open_file(path: Path, max_pixels: int | None) -> tuple[Image.Image, str, Path]:
    """Check and fully decode an image file: ``(upright PIL image, name, path)``."""
    name = path.name or str(path)
    # One open and one fstat (not exists / is_dir / stat first): the same messages, fewer system calls.
    try:
        fh = open(path, "rb")
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EBADF):  # what Path.exists() calls absent
            raise ImageInputError(f"{path}: no such file. Check the path (quote it if it contains spaces).") from None
        if isinstance(exc, IsADirectoryError) or path.is_dir():
            raise ImageInputError(f"{path}: is a folder, not an image file. Pass an image file.") from None
        raise ImageInputError(f"{path}: cannot be read ({exc.strerror or exc}). Check its permissions.") from None
    # Errors name the path as given (a folder input may hold several files of one name).
    with fh, _pillow_errors(str(path), path):
        if os.fstat(fh.fileno()).st_size == 0:
            raise ImageInputError(f"{path}: the file is empty (0 bytes). Replace it with a valid image file.")
        # Our own file handle, closed in every case; the decoded image (which we own,
        # so it is made upright in place, without a copy) outlives it.
        img = Image.open(fh)
        check_pixel_count(img.size, name, max_pixels)
        img = _decode(img, name, own=True)
    return img, name, path


def _describe(img: Image.Image, name: str, path: Path | None, bg: np.ndarray) -> LoadedImage:
    """A :class:`LoadedImage` for a decoded image without its float pixels
    (mode, bit depth, alpha and gray flags from its first rows)."""
    w, h = img.size
    head = from_pil(img.crop((0, 0, w, min(h, 64))), name, path, bg)
    return LoadedImage(
        pixels=hollow((h, w, 3)), size=(w, h), bit_depth=head.bit_depth, is_grayscale=head.is_grayscale,
        name=name, path=path, source_mode=head.source_mode, had_alpha=head.had_alpha, icc_profile=head.icc_profile,
    )


class _pillow_errors:
    """Turn everything Pillow can raise while reading into ImageInputError."""

    def __init__(self, name: str, path: Path | None = None) -> None:
        self.name = name
        self.path = path
        self._warnings = warnings.catch_warnings()

    def __enter__(self) -> "_pillow_errors":
        self._warnings.__enter__()
        # Our own max_pixels check runs first; Pillow's softer warning
        # threshold would only be noise (and would fire for max_pixels > its
        # limit, which the caller asked for explicitly).
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._warnings.__exit__(None, None, None)
        if exc is None or isinstance(exc, ImageInputError):
            return False
        n = self.name
        if isinstance(exc, Image.DecompressionBombError):
            raise ImageInputError(
                f"{n}: refused as a possible decompression bomb ({exc}). "
                "If the image is genuine, shrink it first."
            ) from None
        if isinstance(exc, Image.UnidentifiedImageError):
            raise ImageInputError(
                f"{n}: not an image file Pillow can read (unknown or damaged format). "
                f"Supported: {', '.join(s.lstrip('.') for s in IMAGE_SUFFIXES)} and others Pillow knows."
            ) from None
        if isinstance(exc, (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError,
                            KeyError, TypeError, ZeroDivisionError, MemoryError)):
            reason = str(exc) or type(exc).__name__
            if "truncated" in reason.lower():
                reason = f"the file is truncated or incomplete ({reason})"
            else:
                reason = f"the file is damaged or cannot be decoded ({reason})"
            raise ImageInputError(f"{n}: {reason}. Re-export or replace the file.") from None
        return False


def _decode(img: Image.Image, name: str, own: bool = False) -> Image.Image:
    """Fully decode the first frame (truncation shows up here) and make it upright.

    Returns a new image, detached from any open file, with the EXIF
    orientation applied (``ImageOps.exif_transpose``; it reads the tag from
    the image object, so in-memory images whose EXIF was edited work too).
    """
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
    img.load()
    if own:  # an image we opened: transpose in place (no copy of a large image)
        fmt = img.format
        ImageOps.exif_transpose(img, in_place=True)
        out = img
        out.format = fmt
    else:
        out = ImageOps.exif_transpose(img)
        if out is None:  # pragma: no cover - only with in_place=True
            out = img.copy()
    if img.format == "JPEG" and img.mode == "CMYK" and "adobe" not in img.info:
        # Pillow decodes every CMYK JPEG with Adobe (inverted) polarity. A file
        # without the Adobe APP14 marker stores plain CMYK: undo the inversion.
        info = dict(out.info)
        out = out.point(lambda v: 255 - v)
        out.info = info
    return out


def _pil_name(img: Image.Image) -> str:
    filename = getattr(img, "filename", "") or ""
    return Path(filename).name if filename else "<memory>"
