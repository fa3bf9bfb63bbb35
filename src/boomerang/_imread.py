"""Reading images (part of :mod:`boomerang.imageio`, which documents the rules): files, PIL images and
arrays to float RGB in [0, 1]; colour profiles, alpha, bit depth, EXIF orientation; folder expansion.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps

from boomerang.errors import BoomerangWarning

__all__ = [
    "DEFAULT_BACKGROUND",
    "DEFAULT_MAX_PIXELS",
    "MIN_SIDE",
    "IMAGE_SUFFIXES",
    "LUMA_WEIGHTS",
    "ImageInputError",
    "LoadedImage",
    "read_image",
    "list_image_files",
    "ImageSource",
]

#: Colour (R, G, B in 0..255) that transparent pixels are composited over.
DEFAULT_BACKGROUND: tuple[int, int, int] = (255, 255, 255)
#: Largest accepted image, in pixels (width x height): 50 megapixels, enough
#: for a 48 MP phone photo. As float32 RGB such an image takes 600 MB.
DEFAULT_MAX_PIXELS: int = 50_000_000
#: Smallest accepted side, in pixels.
MIN_SIDE: int = 1
#: File name endings that folder expansion picks up (compared lower-case).
IMAGE_SUFFIXES: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif",
)
#: Rec. 601 luma weights used for RGB -> one channel.
LUMA_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)

ImageSource = Union[str, "os.PathLike[str]", Image.Image, np.ndarray]

_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N"}


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


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


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
    bg = _check_background(background)
    if max_pixels is not None and (not isinstance(max_pixels, int) or max_pixels < 1):
        raise ValueError(f"max_pixels must be a positive integer or None, got {max_pixels!r}")

    if isinstance(source, np.ndarray):
        return _read_array(source, bg, max_pixels)
    if isinstance(source, Image.Image):
        name = _pil_name(source)
        with _pillow_errors(name):
            _check_pixel_count(source.size, name, max_pixels)
            img = _decode(source, name)
        return _from_pil(img, name, None, bg)
    if isinstance(source, (str, os.PathLike)):
        if not pixels:
            img, name, path = _open_file(Path(source), max_pixels)
            return _describe(img, name, path, bg)
        return _read_file(Path(source), bg, max_pixels)
    raise TypeError(
        "read_image() takes a file path, a PIL.Image.Image or a numpy array, "
        f"not {type(source).__name__}"
    )


def _read_file(path: Path, bg: np.ndarray, max_pixels: int | None) -> LoadedImage:
    img, name, path = _open_file(path, max_pixels)
    return _from_pil(img, name, path, bg)


def _open_file(path: Path, max_pixels: int | None) -> tuple[Image.Image, str, Path]:
    """Check and fully decode an image file: ``(upright PIL image, name, path)``."""
    name = path.name or str(path)
    if not path.exists():
        raise ImageInputError(f"{path}: no such file. Check the path (quote it if it contains spaces).")
    if path.is_dir():
        raise ImageInputError(f"{path}: is a folder, not an image file. Pass an image file.")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageInputError(f"{path}: cannot be read ({exc.strerror or exc}). Check its permissions.") from None
    if size == 0:
        raise ImageInputError(f"{path}: the file is empty (0 bytes). Replace it with a valid image file.")
    # Errors name the path as given (a folder input may hold several files of one name).
    with _pillow_errors(str(path), path):
        try:
            # Our own file handle, closed in every case; the decoded image (which we own,
            # so it is made upright in place, without a copy) outlives it.
            with open(path, "rb") as fh:
                img = Image.open(fh)
                _check_pixel_count(img.size, name, max_pixels)
                img = _decode(img, name, own=True)
        except PermissionError as exc:
            raise ImageInputError(f"{path}: cannot be read ({exc.strerror}). Check its permissions.") from None
    return img, name, path


def _hollow(shape: tuple[int, ...]) -> np.ndarray:
    """A read-only float32 array of ``shape`` that takes no memory (all zeros)."""
    return np.broadcast_to(np.zeros((), np.float32), shape)


def _describe(img: Image.Image, name: str, path: Path | None, bg: np.ndarray) -> LoadedImage:
    """A :class:`LoadedImage` for a decoded image without its float pixels
    (mode, bit depth, alpha and gray flags from its first rows)."""
    w, h = img.size
    head = _from_pil(img.crop((0, 0, w, min(h, 64))), name, path, bg)
    return LoadedImage(
        pixels=_hollow((h, w, 3)), size=(w, h), bit_depth=head.bit_depth, is_grayscale=head.is_grayscale,
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


def _check_background(background: Sequence[int]) -> np.ndarray:
    try:
        bg = np.asarray(background, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        bg = np.array([])
    if bg.shape != (3,) or not np.all(np.isfinite(bg)) or bg.min() < 0 or bg.max() > 255:
        raise ValueError(f"background must be three numbers (R, G, B) in 0..255, got {background!r}")
    return (bg / 255.0).astype(np.float32)


def _check_pixel_count(size: tuple[int, int], name: str, max_pixels: int | None) -> None:
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


def _icc_to_srgb(img: Image.Image) -> tuple[Image.Image, str | None]:
    """RGB / RGBA / L images with an embedded ICC profile, converted to sRGB through it
    (LittleCMS, Pillow's ImageCms, perceptual intent); returns ``(image, profile
    description)``, or ``(img, None)`` when there is no profile, it already is
    sRGB, or it cannot be used (then the pixels are taken as sRGB). CMYK images
    have their own path (:func:`_cmyk_to_rgb`)."""
    icc = img.info.get("icc_profile")
    if not icc or img.mode not in ("RGB", "RGBA", "L", "LA"):
        return img, None
    try:
        from PIL import ImageCms

        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        desc = (ImageCms.getProfileDescription(src) or "").strip()
        dst = ImageCms.createProfile("sRGB")
        if _is_srgb(src, dst, "L" if img.mode in ("L", "LA") else "RGB"):
            return img, None  # (an) sRGB profile: keep the pixels bit-exact
        info = dict(img.info)
        if img.mode in ("L", "LA"):
            # gray profiles map to sRGB as RGB; alpha is carried along unchanged
            alpha = img.getchannel("A") if img.mode == "LA" else None
            out = ImageCms.profileToProfile(img.convert("L"), src, dst, outputMode="RGB")
            if out is not None and alpha is not None:
                out.putalpha(alpha)
        else:
            out = ImageCms.profileToProfile(img, src, dst, outputMode=img.mode)
        if out is None:
            return img, None
        info.pop("icc_profile", None)
        out.info = info
        return out, desc or "embedded ICC profile"
    except Exception:  # noqa: BLE001 - a broken or unsupported profile: the pixels are taken as sRGB
        return img, None


def _is_srgb(src, dst, mode: str) -> bool:
    """True if the profile maps every gray level and the primaries to sRGB within 1/255
    (an sRGB profile, whatever its name): then the pixels are used as they are."""
    from PIL import ImageCms

    ramp = np.arange(256, dtype=np.uint8)
    if mode == "L":
        probe = Image.fromarray(ramp[None, :])
        want = np.repeat(ramp[None, :, None], 3, axis=-1)
    else:
        z = np.zeros(256, np.uint8)
        rows = [np.stack([ramp, ramp, ramp], -1), np.stack([ramp, z, z], -1), np.stack([z, ramp, z], -1),
                np.stack([z, z, ramp], -1)]
        want = np.stack(rows)
        probe = Image.fromarray(want)
    out = ImageCms.profileToProfile(probe, src, dst, outputMode="RGB")
    return out is not None and int(np.abs(np.asarray(out, np.int16) - want.astype(np.int16)).max()) <= 1


def _from_pil(img: Image.Image, name: str, path: Path | None, bg: np.ndarray) -> LoadedImage:
    orig_mode = img.mode
    was_gray = orig_mode in ("L", "LA")
    img, profile = _icc_to_srgb(img)
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
        colour = np.asarray(_cmyk_to_rgb(img), dtype=np.float32) / 255.0
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


def _cmyk_to_rgb(img: Image.Image) -> Image.Image:
    """CMYK -> RGB, through the embedded ICC profile when there is one."""
    icc = img.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            dst = ImageCms.createProfile("sRGB")
            out = ImageCms.profileToProfile(img, src, dst, outputMode="RGB")
            if out is not None:
                return out
        except Exception:  # a broken profile: fall back to the plain formula
            pass
    return img.convert("RGB")


def _read_array(arr: np.ndarray, bg: np.ndarray, max_pixels: int | None) -> LoadedImage:
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
    _check_pixel_count((w, h), name, max_pixels)

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


def list_image_files(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand files and folders into a deterministic list of image files.

    Files are kept as given (whatever their suffix, so a broken file still
    reaches :func:`read_image` and gets its clear error). Folders are searched
    recursively for files whose suffix (lower-cased) is in
    :data:`IMAGE_SUFFIXES`; hidden files and folders (name starting with
    ``.``) are skipped. Each folder's files come sorted by their path relative
    to it; duplicates are dropped (first occurrence kept).

    Args:
        paths: one path or an iterable of paths.

    Returns:
        A list of :class:`pathlib.Path`.

    Raises:
        ImageInputError: a path does not exist.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[Path] = []
    seen: set[Path] = set()
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted(
                (
                    f
                    for f in p.rglob("*")
                    if f.is_file()
                    and f.suffix.lower() in IMAGE_SUFFIXES
                    and not any(part.startswith(".") for part in f.relative_to(p).parts)
                ),
                key=lambda f: f.relative_to(p).as_posix(),
            )
        elif p.exists():
            found = [p]
        else:
            raise ImageInputError(f"{p}: no such file or folder. Check the path (quote it if it contains spaces).")
        for f in found:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out
