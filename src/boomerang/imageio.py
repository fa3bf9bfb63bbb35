"""The one image input/output layer of boomerang (torch-free; numpy + Pillow).

Every command and the Python API read images with :func:`read_image`, map them
to the model with :func:`to_model_channels` and :func:`fit_for_model`, and write
results with :func:`save_image`. The rules below are also written up for users
in ``docs/input.md``; keep the two in step.

Reading (:func:`read_image`)
    * Sources: a path (``str`` / ``os.PathLike``; spaces and non-ASCII names
      work), a ``PIL.Image.Image``, or a numpy array ``(H, W)`` / ``(H, W, C)``
      with ``C`` in 1..4 (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA), dtype ``bool``,
      ``uint8``, ``uint16`` or float.
    * The result is always ``float32`` RGB ``(H, W, 3)`` in ``[0, 1]``;
      grayscale sources are replicated to three equal channels and flagged
      ``is_grayscale``.
    * EXIF orientation is applied (``ImageOps.exif_transpose``) for files and
      for in-memory PIL images alike; ``size`` is the upright size.
    * Transparency (RGBA, LA, PA, palette or ``L``/``RGB`` images with a
      ``transparency`` entry) is composited over ``background`` (default white,
      ``(255, 255, 255)``): out = a * colour + (1 - a) * background, computed in
      float. Colours hidden under fully transparent pixels never get through.
    * Bit depth: 8-bit data is divided by 255, 16-bit data (``I;16``,
      ``I;16B``, ``I;16L``, ``I`` and ``uint16`` arrays) by 65535, float data is
      taken as already in ``[0, 1]``; float values outside are clipped with a
      :class:`UserWarning`, non-finite values are an error. 32-bit integer
      images (mode ``I``) are treated as 16-bit; values outside 0..65535 are
      clipped with a warning. Pillow reads 16-bit *colour* PNGs at 8-bit
      precision (it keeps the high byte, so the range is still right).
    * CMYK: Pillow decodes every CMYK JPEG with Adobe (inverted) polarity,
      which is right for files carrying the Adobe APP14 marker (Photoshop,
      Pillow and libjpeg write it; the case file ``cmyk.jpg`` has it). A CMYK
      JPEG *without* that marker stores plain CMYK, so the inversion is undone
      for it. An embedded ICC profile is honoured through LittleCMS (to sRGB);
      without one the plain formula R = (1 - C)(1 - K) etc. is used.
    * Colour profiles: an RGB, RGBA or gray image with an embedded ICC profile
      is converted to sRGB through it (LittleCMS via ``PIL.ImageCms``); an
      sRGB profile is left alone (bit-exact). An image tagged with a linear
      (gamma 1.0) profile whose pixels are 128 reads as about 188. Outputs are
      sRGB and carry no profile. A profile LittleCMS cannot use is ignored.
    * Multi-frame files (GIF, APNG, TIFF): the first frame is used.
    * Size limits: at least 1 x 1 pixel; at most ``max_pixels`` pixels
      (default :data:`DEFAULT_MAX_PIXELS`, 50 megapixels), checked from the
      file header before anything is decoded. Pillow's decompression-bomb
      error becomes an :class:`ImageInputError` as well.
    * The whole file is decoded inside ``read_image``, so a truncated file
      fails here, never later in the sampler. Truncated images are never
      accepted (``ImageFile.LOAD_TRUNCATED_IMAGES`` is not touched).

Model mapping
    * Channels (:func:`to_model_channels`): one-channel models get the Rec. 601
      luminance 0.299 R + 0.587 G + 0.114 B; three-channel models get RGB
      (grayscale is replicated).
    * Size (:func:`fit_for_model`): pixel models with a native sample size get
      the image resized (stretched, both axes independently) to ``native_size``
      x ``native_size`` with Lanczos in float (mode ``F``, one channel at a
      time) and resized back to the exact input size afterwards. Models that
      need sides divisible by ``multiple_of`` (latent models: 8, or 64 for a
      full SD UNet) get the image reflect-padded on the bottom and right (a 1-pixel side is repeated) and
      cropped back exactly. Nothing of the user's image is ever cropped. Any
      image of at least 1 x 1 is handled (a 1 x 1 input gives a 1 x 1 output).

Writing (:func:`save_image`)
    * PNG only, written to a temporary file in the destination folder and
      moved into place with ``os.replace`` (atomic on one file system); on any
      failure nothing is left behind.
    * No metadata at all is written: no EXIF (so no orientation, camera, GPS),
      no text chunks, no ICC profile, no DPI.
    * Mode: ``L`` (8-bit) or ``I;16`` (16-bit) for single-channel or exactly
      gray content, ``RGB`` (8-bit) or 16-bit RGB otherwise, so reading the file
      back gives the same values (to the written precision).
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
import warnings
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps

__all__ = [
    "DEFAULT_BACKGROUND",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "MIN_SIDE",
    "FittedImage",
    "ImageInputError",
    "WriteJournal",
    "LoadedImage",
    "check_output_dir",
    "fit_for_model",
    "fit_warning",
    "warn_fit",
    "list_image_files",
    "read_for_model",
    "read_image",
    "save_image",
    "to_model_channels",
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
                UserWarning,
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
            UserWarning,
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


# --------------------------------------------------------------------------
# Model mapping
# --------------------------------------------------------------------------


def to_model_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """Map an image to the number of channels a model takes.

    Rule: one-channel models get the Rec. 601 luminance
    ``0.299 R + 0.587 G + 0.114 B``; three-channel models get RGB, with a
    single-channel image replicated to three equal channels.

    Args:
        pixels: float array ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)``, values
            in ``[0, 1]``.
        channels: 1 or 3.

    Returns:
        ``float32`` array ``(H, W, channels)``, values in ``[0, 1]``.

    Raises:
        ValueError: ``channels`` not 1 or 3, or ``pixels`` of another shape.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    x = np.asarray(pixels, dtype=np.float32)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[-1] not in (1, 3):
        raise ValueError(f"pixels must be (H, W), (H, W, 1) or (H, W, 3), got shape {np.shape(pixels)}")
    if x.shape[-1] == channels:
        return np.ascontiguousarray(x)
    if channels == 3:
        return np.repeat(x, 3, axis=-1)
    w = np.asarray(LUMA_WEIGHTS, dtype=np.float32)
    y = (x * w).sum(axis=-1, keepdims=True)
    return np.clip(y, 0.0, 1.0).astype(np.float32)


@dataclass
class FittedImage:
    """An image fitted to a model's size, and the way back.

    Attributes:
        pixels: ``float32`` ``(h, w, C)``, what the model gets.
        original_size: ``(W, H)`` of the input (PIL order).
        method: ``"identity"``, ``"resize"`` or ``"pad"``.
        pad: ``(bottom, right)`` pixels added on the pad path, else ``(0, 0)``.
    """

    pixels: np.ndarray
    original_size: tuple[int, int]
    method: str
    pad: tuple[int, int] = (0, 0)
    _restore: Callable[[np.ndarray], np.ndarray] = field(default=lambda x: x, repr=False)

    def restore(self, out_pixels: np.ndarray) -> np.ndarray:
        """Bring a model output back to the input's exact size.

        Args:
            out_pixels: float ``(h, w)`` or ``(h, w, C)`` with the shape of
                ``self.pixels`` (any channel count), values in ``[0, 1]``.

        Returns:
            ``float32`` ``(H, W, C)`` (``(H, W)`` for 2-D input) with the
            original height and width, values clipped to ``[0, 1]``.

        Raises:
            ValueError: ``out_pixels`` does not have the model size.
        """
        out = np.asarray(out_pixels, dtype=np.float32)
        mh, mw = self.pixels.shape[:2]
        if out.ndim not in (2, 3) or out.shape[:2] != (mh, mw):
            raise ValueError(f"restore() expects an output of size {mh}x{mw} (H x W), got shape {out.shape}")
        squeeze = out.ndim == 2
        if squeeze:
            out = out[..., None]
        res = np.asarray(self._restore(out), dtype=np.float32)
        res = np.clip(res, 0.0, 1.0, out=res if res.flags.writeable and res.base is None else None)
        w, h = self.original_size
        assert res.shape[:2] == (h, w), (res.shape, self.original_size)
        return res[..., 0] if squeeze else res


def fit_for_model(
    pixels: np.ndarray,
    *,
    native_size: int | None = None,
    multiple_of: int = 1,
    restore_size: tuple[int, int] | None = None,
) -> FittedImage:
    """Fit an image to the sizes a model accepts, reversibly.

    Rule:

    * ``native_size`` given (pixel models with a fixed ``sample_size``, e.g.
      28 for the bundled MNIST model): resize (stretch) to ``native_size`` x
      ``native_size`` with Lanczos in float32 (Pillow mode ``F``, one channel
      at a time, no 8-bit rounding); :meth:`FittedImage.restore` resizes the
      output back the same way to the exact input size. An image already at
      the native size is passed through untouched (bit-exact).
    * otherwise, sides not divisible by ``multiple_of`` (latent models: 8):
      reflect-pad at the bottom and right up to the next multiple (numpy's
      ``reflect``, which repeats a side of one pixel and reflects again when
      the padding is longer than the side); ``restore`` crops it off.
    * otherwise: identity.

    Any image of at least 1 x 1 pixel is accepted; nothing is ever cropped
    from the user's content.

    Args:
        pixels: float ``(H, W)`` or ``(H, W, C)``, values in ``[0, 1]``.
        native_size: side in pixels of a square-only model, or ``None``.
        multiple_of: required divisor of both sides (>= 1); with
            ``native_size`` it must divide ``native_size``.
        restore_size: ``(W, H)`` that :meth:`FittedImage.restore` returns,
            when ``pixels`` is a reduced decode of a larger image (only with
            ``native_size``); default: the size of ``pixels``.

    Returns:
        A :class:`FittedImage`; ``.pixels`` is ``float32`` ``(h, w, C)``.

    Raises:
        ValueError: bad ``native_size`` / ``multiple_of``, an empty image or
            a shape other than 2-D / 3-D.
    """
    x = np.asarray(pixels, dtype=np.float32)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[0] < MIN_SIDE or x.shape[1] < MIN_SIDE:
        raise ValueError(
            f"pixels must be (H, W) or (H, W, C) with sides of at least {MIN_SIDE}, got shape {np.shape(pixels)}"
        )
    if not isinstance(multiple_of, int) or multiple_of < 1:
        raise ValueError(f"multiple_of must be a positive integer, got {multiple_of!r}")
    if native_size is not None:
        if not isinstance(native_size, int) or native_size < 1:
            raise ValueError(f"native_size must be a positive integer or None, got {native_size!r}")
        if native_size % multiple_of:
            raise ValueError(f"native_size {native_size} is not a multiple of multiple_of {multiple_of}")
    h, w = int(x.shape[0]), int(x.shape[1])
    if restore_size is not None:
        if native_size is None:
            raise ValueError("restore_size needs native_size (a reduced decode is only resized, never padded)")
        w, h = (int(v) for v in restore_size)
    original = (w, h)

    if native_size is not None:
        if (h, w) == (native_size, native_size) == x.shape[:2]:
            return FittedImage(x.copy(), original, "identity")
        model = _resize(x, native_size, native_size)
        return FittedImage(model, original, "resize", _restore=lambda out: _resize(out, h, w))

    ph = (-h) % multiple_of
    pw = (-w) % multiple_of
    if ph == 0 and pw == 0:
        return FittedImage(x.copy(), original, "identity")
    model = _pad(x, ph, pw)
    return FittedImage(model, original, "pad", pad=(ph, pw), _restore=lambda out: out[:h, :w].copy())


def _resize(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, C) float32 -> (height, width, C) float32, Lanczos per channel in mode F
    (written channel by channel into one array: memory ~ the output once)."""
    out = np.empty((height, width, x.shape[-1]), np.float32)
    # Large outputs are made in strips of rows (Pillow's `box`: the filter still reads the
    # source rows around each strip), so no full-size temporary is made besides `out`.
    rows = height if height * width <= 4_000_000 else max(1, 1_000_000 // width)
    scale = x.shape[0] / height
    for c in range(x.shape[-1]):
        src = Image.fromarray(np.ascontiguousarray(x[..., c], dtype=np.float32))
        for y0 in range(0, height, rows):
            y1 = min(height, y0 + rows)
            if rows == height:
                img = src.resize((width, height), Image.Resampling.LANCZOS)
            else:
                img = src.resize((width, y1 - y0), Image.Resampling.LANCZOS,
                                 box=(0.0, y0 * scale, float(x.shape[1]), y1 * scale))
            out[y0:y1, :, c] = np.asarray(img, dtype=np.float32)
            del img
    # Lanczos overshoots slightly at sharp edges; keep the [0, 1] contract.
    return np.clip(out, 0.0, 1.0, out=out)


def _pad(x: np.ndarray, ph: int, pw: int) -> np.ndarray:
    """Pad bottom/right by reflection (numpy repeats a 1-pixel side)."""
    out = x
    for axis, amount in ((0, ph), (1, pw)):
        if amount == 0:
            continue
        widths = [(0, 0)] * 3
        widths[axis] = (0, amount)
        out = np.pad(out, widths, mode="reflect")
    return np.ascontiguousarray(out, dtype=np.float32)


def fit_warning(loaded: LoadedImage, fitted: FittedImage, channels: int) -> str | None:
    """One line saying how much an input lost on its way to a small model, or ``None``.

    Said when a pixel model's native size is less than half the input's width
    or height, or when a colour input goes to a one-channel model: the samples
    are resized back to the input size but hold no more detail (and no colour)
    than the model's input.
    """
    if fitted.method != "resize":
        return None
    w, h = loaded.size
    mh, mw = int(fitted.pixels.shape[0]), int(fitted.pixels.shape[1])
    to_gray = channels == 1 and not loaded.is_grayscale
    if not (to_gray or w > 2 * mw or h > 2 * mh):
        return None
    kind = "gray" if channels == 1 else "RGB"
    done = f"resized {w}x{h} -> {mw}x{mh}" + (", colour to gray" if to_gray else "")
    return (f"{loaded.name}: fitted to this model's {mw}x{mh} {kind} input ({done}); the samples are resized back to "
            f"{w}x{h} but hold only {mw}x{mh} {kind} detail. For such images use a model trained on them (--model)")


def warn_fit(loaded: LoadedImage, fitted: FittedImage, channels: int) -> None:
    """Issue :func:`fit_warning` as a :class:`UserWarning` when there is one."""
    message = fit_warning(loaded, fitted, channels)
    if message:
        warnings.warn(message, UserWarning, stacklevel=2)


#: Inputs of more than this many pixels, given to a model that needs far fewer
#: (a pixel model with a native size), are decoded at a reduced size for the
#: model and converted in strips: see :func:`read_for_model`.
LARGE_INPUT_PIXELS: int = 16_000_000
#: A reduced decode keeps at least this many source pixels per model pixel along each side.
REDUCE_KEEP: int = 4
_STRIP_ROWS = 256


def read_for_model(
    source: ImageSource,
    *,
    channels: int,
    native_size: int | None = None,
    multiple_of: int = 1,
    background: Sequence[int] = DEFAULT_BACKGROUND,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> tuple[LoadedImage, np.ndarray, FittedImage]:
    """Read an image for a model: ``(loaded, reference, fitted)``, with bounded memory.

    The same as :func:`read_image`, :func:`to_model_channels` and
    :func:`fit_for_model` in a row, except for large files: a file of more than
    :data:`LARGE_INPUT_PIXELS` pixels given to a model with a ``native_size`` is
    decoded once in its own 8/16-bit form (at full size: the reference needs
    it); the model's input comes from that image reduced by the largest integer
    factor k that keeps at least :data:`REDUCE_KEEP` x ``native_size`` pixels on
    each side (``Image.reduce(k)``, a box filter), then Lanczos to
    ``native_size``; the reference (the input in the model's channels, at full
    size, for level 0 and the distances) is converted in strips of rows. Peak
    memory is about the decoded file plus one float32 plane per model channel,
    never a float RGBA copy of the whole image. ``fitted.restore`` returns the
    input's exact size.

    Args:
        source, background, max_pixels: as :func:`read_image`.
        channels, native_size, multiple_of: the model's, as
            :func:`to_model_channels` / :func:`fit_for_model`.

    Returns:
        ``loaded``: the description (:class:`LoadedImage`; for large files its
        ``pixels`` take no memory and ``decoded_scale`` is k); ``reference``:
        float32 ``(H, W, channels)`` in [0, 1]; ``fitted``: a :class:`FittedImage`.

    Raises:
        ImageInputError, ValueError: as :func:`read_image`.
    """
    if isinstance(source, (str, os.PathLike)) and native_size is not None:
        bg = _check_background(background)
        path = Path(source)
        header = _peek_size(path, max_pixels)
        if header is not None and header[0] * header[1] > LARGE_INPUT_PIXELS:
            return _read_large(path, bg, max_pixels, channels, native_size, multiple_of)
    loaded = read_image(source, background=background, max_pixels=max_pixels)
    reference = to_model_channels(loaded.pixels, channels)
    return loaded, reference, fit_for_model(reference, native_size=native_size, multiple_of=multiple_of)


def _peek_size(path: Path, max_pixels: int | None) -> tuple[int, int] | None:
    """(W, H) from the file header, or None if it cannot be read (read_image then says why)."""
    try:
        with Image.open(path) as img:
            return img.size
    except Exception:  # noqa: BLE001 - the full read reports it properly
        return None


def _reduce(img: Image.Image, k: int) -> Image.Image:
    """``img`` shrunk by the integer factor k (box filter); modes reduce() lacks go through RGBA / I / L."""
    if k <= 1:
        return img
    try:
        return img.reduce(k)
    except (ValueError, NotImplementedError):
        pass
    mode = {"P": "RGBA", "PA": "RGBA", "1": "L", "I;16": "I", "I;16B": "I", "I;16L": "I", "I;16N": "I"}.get(img.mode, "RGBA")
    info = dict(img.info)
    out = img.convert(mode).reduce(k)
    out.info = {k2: v for k2, v in info.items() if k2 != "transparency"}
    return out


def _read_large(path: Path, bg: np.ndarray, max_pixels: int | None, channels: int, native_size: int,
                multiple_of: int) -> tuple[LoadedImage, np.ndarray, FittedImage]:
    img, name, path = _open_file(path, max_pixels)
    w, h = img.size
    k = max(1, min(w, h) // (REDUCE_KEEP * native_size))
    small = _from_pil(_reduce(img, k), name, path, bg)
    fitted = fit_for_model(to_model_channels(small.pixels, channels), native_size=native_size,
                           multiple_of=multiple_of, restore_size=(w, h))
    reference = np.empty((h, w, channels), np.float32)
    for y in range(0, h, _STRIP_ROWS):
        part = _from_pil(img.crop((0, y, w, min(h, y + _STRIP_ROWS))), name, path, bg)
        reference[y:y + part.height] = to_model_channels(part.pixels, channels)
    loaded = LoadedImage(
        pixels=_hollow((h, w, 3)), size=(w, h), bit_depth=small.bit_depth, is_grayscale=small.is_grayscale,
        name=name, path=path, source_mode=small.source_mode, had_alpha=small.had_alpha,
        icc_profile=small.icc_profile, decoded_scale=k,
    )
    return loaded, reference, fitted


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def save_image(
    pixels: np.ndarray,
    path: str | os.PathLike[str],
    *,
    bit_depth: int = 8,
    grayscale: bool | None = None,
) -> None:
    """Write an image as a metadata-free PNG, atomically.

    The file is written to a temporary file in the destination folder and
    moved into place with ``os.replace``; on any error the temporary file is
    removed and ``path`` is left as it was (absent, or the old file).

    Args:
        pixels: float ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)``, values in
            ``[0, 1]`` (clipped; NaN is an error). Quantised with rounding.
        path: destination; should end in ``.png`` (the format is PNG whatever
            the suffix). The folder must exist.
        bit_depth: 8 or 16 bits per sample.
        grayscale: ``None`` (default) writes a gray PNG (``L`` / 16-bit gray)
            for single-channel input and for three-channel input whose
            channels are exactly equal after quantisation, else RGB.
            ``True`` forces gray (three channels are reduced to Rec. 601
            luminance); ``False`` forces RGB.

    Raises:
        ValueError: bad shape, bit depth, or non-finite values.
        OSError: the folder does not exist or is not writable.
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
    x = np.asarray(pixels, dtype=np.float32)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[-1] not in (1, 3) or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"pixels must be (H, W), (H, W, 1) or (H, W, 3), got shape {np.shape(pixels)}")
    if not np.all(np.isfinite(x)):
        raise ValueError("pixels hold NaN or infinite values; refusing to write them as an image")
    if grayscale is True:
        x = to_model_channels(x, 1)
    elif grayscale is False:
        x = to_model_channels(x, 3)

    top = 255 if bit_depth == 8 else 65535
    q = np.empty(x.shape, np.uint8 if bit_depth == 8 else np.uint16)
    for y in range(0, x.shape[0], 1024):  # in strips: no full-size float temporaries
        q[y:y + 1024] = np.rint(np.clip(x[y:y + 1024], 0.0, 1.0) * top)
    if q.shape[-1] == 3 and grayscale is None and np.array_equal(q[..., 0], q[..., 1]) and np.array_equal(
        q[..., 1], q[..., 2]
    ):
        q = q[..., :1]

    if q.shape[-1] == 1:
        if bit_depth == 8:
            data = _encode_with_pillow(Image.fromarray(np.ascontiguousarray(q[..., 0])))
        else:
            img = Image.frombytes("I;16", (q.shape[1], q.shape[0]), np.ascontiguousarray(q[..., 0]).astype("<u2").tobytes())
            data = _encode_with_pillow(img)
    elif bit_depth == 8:
        data = _encode_with_pillow(Image.fromarray(np.ascontiguousarray(q)))
    else:
        data = _encode_png16_rgb(q)
    atomic_write_bytes(path, data)


def _encode_with_pillow(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    # A fresh image carries no info; pnginfo=None, no exif, no icc, no dpi.
    img.info.clear()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def _encode_png16_rgb(q: np.ndarray) -> bytes:
    """16-bit RGB PNG (Pillow has no 48-bit mode to write from). No metadata."""
    h, w = q.shape[:2]
    rows = np.ascontiguousarray(q.astype(">u2")).view(np.uint8).reshape(h, w * 6)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()  # filter 0 per row

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same
    folder, fsync, then ``os.replace``. On any error the temporary file is
    removed and ``path`` is left as it was, so an interrupted run never leaves a
    truncated file. Used for every file the project writes (images, metadata,
    training checkpoints).

    Raises:
        OSError: if the folder does not exist or is not writable.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class WriteJournal:
    """Remembers the files (and folders) one run writes, so that a failed run can
    take them back: no image is ever left without the metadata that describes it.

    Use :meth:`save_image` instead of :func:`save_image` (it creates missing
    folders and records them) and :meth:`rollback` when the run fails.
    """

    def __init__(self) -> None:
        self.files: list[Path] = []
        self.folders: list[Path] = []

    def save_image(self, pixels: np.ndarray, path: str | os.PathLike[str], **kwargs) -> None:
        """:func:`save_image` into ``path``, creating and recording its missing folders."""
        path = Path(path)
        missing = []
        folder = path.parent
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for f in reversed(missing):
            f.mkdir()
            self.folders.append(f)
        save_image(pixels, path, **kwargs)
        self.files.append(path)

    def rollback(self) -> None:
        """Delete the recorded files, then the recorded folders that are empty (deepest first)."""
        for f in self.files:
            try:
                f.unlink()
            except OSError:
                pass
        for d in sorted(self.folders, key=lambda p: len(p.parts), reverse=True):
            try:
                d.rmdir()
            except OSError:
                pass
        self.files, self.folders = [], []


def follow_umask(folder: str | os.PathLike[str]) -> None:
    """Give every file under ``folder`` the mode ``0o666 & ~umask`` (and folders
    ``0o777 & ~umask``), as a plain ``open()`` would: libraries that write through
    temporary files leave 0600 behind."""
    mask = _umask()
    root = Path(folder)
    for p in [root, *root.rglob("*")]:
        if p.is_symlink():
            continue
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------
# Files and folders
# --------------------------------------------------------------------------


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


def check_output_dir(
    out_dir: str | os.PathLike[str],
    input_paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    output_names: Iterable[str] = (),
) -> Path:
    """Refuse an output folder that would write into the inputs.

    Args:
        out_dir: the folder outputs go to (need not exist yet).
        input_paths: input files and/or folders, as given by the user.
        output_names: file names (no folder) that will be written into
            ``out_dir``; each is checked against the input files.

    Returns:
        ``out_dir`` resolved (symlinks followed) as a :class:`pathlib.Path`.

    Raises:
        ValueError: ``out_dir`` is an input folder or lies inside one; or
            ``out_dir`` is an input file; or ``out_dir / name`` for one of
            ``output_names`` is an input file (it would be overwritten).
    """
    if isinstance(input_paths, (str, os.PathLike)):
        input_paths = [input_paths]
    out = Path(out_dir).resolve()
    input_files: set[Path] = set()
    for p in input_paths:
        src = Path(p).resolve()
        if src.is_dir():
            if out == src or src in out.parents:
                raise ValueError(
                    f"output folder {out_dir} is inside the input folder {p}; outputs could be read back "
                    "as inputs or overwrite them. Choose an output folder outside the inputs."
                )
        else:
            if out == src:
                raise ValueError(f"output folder {out_dir} is the input file {p}; choose another output folder.")
            input_files.add(src)
    for name in output_names:
        target = (out / name).resolve()
        if target in input_files:
            raise ValueError(
                f"writing {name} into {out_dir} would overwrite the input file {target}; "
                "choose another output folder."
            )
    return out
