"""Reading images for a model (part of :mod:`boomerang.imageio`, which documents the rules): large inputs for
small models with bounded memory, and the size limit of models that run at the image's own size.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from boomerang._fit import FittedImage, fit_for_model, to_model_channels
from boomerang._image import (
    DEFAULT_BACKGROUND,
    DEFAULT_MAX_PIXELS,
    ImageInputError,
    ImageSource,
    MIN_SIDE,
    LoadedImage,
    check_background,
    hollow,
)
from boomerang._imread import open_file, read_image
from boomerang._pixels import from_pil
from boomerang.metrics import quantize8

__all__ = [
    "LARGE_INPUT_PIXELS",
    "REDUCE_KEEP",
    "FULL_SIZE_MAX_PIXELS",
    "full_size_bytes",
    "check_full_size_input",
    "read_for_model",
    "read_for_identity",
]


#: Inputs of more than this many pixels, given to a model that needs far fewer
#: (a pixel model with a native size), are decoded at a reduced size for the
#: model and converted in strips: see :func:`read_for_model`.
LARGE_INPUT_PIXELS: int = 16_000_000
#: A reduced decode keeps at least this many source pixels per model pixel along each side.
REDUCE_KEEP: int = 4
_STRIP_ROWS = 64


#: The most pixels (after padding to the size multiple) an input may have for a model
#: that runs at the image's own size (no native size: latent models). Their VAE works at
#: full size, and their self-attention compares every latent pixel with every other, so
#: cost grows faster than the area: 16 MP is e.g. 4608 x 3456. Larger inputs are refused
#: (:func:`check_full_size_input`) before they are decoded and before the model loads.
FULL_SIZE_MAX_PIXELS: int = 16_000_000
#: Peak bytes per pixel and per channel of a VAE's full-size layers (float32, a few
#: tensors alive at once): measured about 280 bytes per pixel on ldm-mnist5k-text's
#: 16-channel VAE on the CPU (2048 x 2048 encode), i.e. 17.5 per channel.
_VAE_BYTES_PER_PIXEL_CHANNEL = 18


def full_size_bytes(width: int, height: int, vae_width: int | None = None) -> int:
    """Rough peak memory (bytes) of a latent model's VAE on a ``width`` x ``height`` image:
    18 bytes per pixel and per channel of its full-size layers (``vae_width``; default 128,
    Stable Diffusion's VAE). A lower bound for the whole model: the UNet comes on top."""
    return _VAE_BYTES_PER_PIXEL_CHANNEL * int(vae_width or 128) * int(width) * int(height)


def check_full_size_input(name: str, width: int, height: int, *, native_size: int | None, multiple_of: int = 1,
                          vae_width: int | None = None, max_pixels: int | None = None,
                          pixel_space: bool = False) -> None:
    """Refuse an input too large for a model that runs at the image's own size.

    Models with a ``native_size`` (pixel models) get a resized copy of any input and are never
    refused here. Others take the input itself, padded to ``multiple_of``: more than ``max_pixels``
    pixels (:data:`FULL_SIZE_MAX_PIXELS`) is refused with one message naming the size, why the
    model cannot take it and a size to resize to. Worded per kind: latent models by the memory
    their VAE alone would need (:func:`full_size_bytes`) and their self-attention; fully
    convolutional pixel models (``pixel_space``) by the whole-image tensors that windowed
    sampling still holds (:mod:`boomerang.windowing`: the denoiser runs in windows above
    1 MP, the image, its noise and the blending sums stay whole).

    Args:
        name: the input's name (file name or ``<memory>``), for the message.
        width, height: the input's size in pixels (a file's header size will do: EXIF rotation keeps the area).
        native_size, multiple_of, vae_width, pixel_space: the model's (``ModelInfo``).
        max_pixels: the limit; default :data:`FULL_SIZE_MAX_PIXELS` (read when called).

    Raises:
        ImageInputError: (a ValueError) the input is too large; a dataset job skips the file.
    """
    if native_size is not None:
        return
    max_pixels = FULL_SIZE_MAX_PIXELS if max_pixels is None else int(max_pixels)
    f = max(1, int(multiple_of))
    w, h = int(width) + (-int(width)) % f, int(height) + (-int(height)) % f
    if w * h <= max_pixels:
        return
    shrink = (max_pixels / (w * h)) ** 0.5
    sw, sh = (max(f, int(v * shrink) // f * f) for v in (width, height))
    if pixel_space:
        from boomerang.windowing import SAMPLE_OVERLAP, SAMPLE_TILE, WINDOWED_BYTES_PER_PIXEL

        stride = SAMPLE_TILE - SAMPLE_OVERLAP
        windows = (1 + -(-max(0, w - SAMPLE_TILE) // stride)) * (1 + -(-max(0, h - SAMPLE_TILE) // stride))
        raise ImageInputError(
            f"{name}: {width}x{height} ({width * height / 1e6:.1f} MP) is too large for this model, which works on "
            f"the image's own pixels: it denoises windows of {SAMPLE_TILE}x{SAMPLE_TILE}, and every reverse step runs "
            f"the model over all {windows} of them (with schedulers that keep whole-image state, or on a GPU, the "
            f"whole image also stays in memory: about {WINDOWED_BYTES_PER_PIXEL * w * h / 1e9:.1f} GB). It takes at "
            f"most {max_pixels / 1e6:.0f} MP: resize the image first (e.g. to {sw}x{sh}) or crop it."
        )
    latents = (w // f) * (h // f)
    raise ImageInputError(
        f"{name}: {width}x{height} ({width * height / 1e6:.1f} MP) is too large for this model, which runs at the "
        f"image's own size: its VAE alone would need about {full_size_bytes(w, h, vae_width) / 1e9:.0f} GB of "
        f"memory, and its self-attention compares each of the {latents:,} latent pixels with every other. It takes "
        f"at most {max_pixels / 1e6:.0f} MP: resize the image first (e.g. to {sw}x{sh}) or crop it."
    )


def read_for_model(
    source: ImageSource,
    *,
    channels: int,
    native_size: int | None = None,
    multiple_of: int = 1,
    background: Sequence[int] = DEFAULT_BACKGROUND,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    vae_width: int | None = None,
    pixel_space: bool = False,
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
    size, for level 0 and the distances) is converted in strips of rows and,
    for 8-bit files, held as uint8 (the values every output is written with).
    Peak memory is about the decoded file plus one byte per pixel and model
    channel, never a float copy of the whole image. ``fitted.restore`` returns the
    input's exact size.

    Args:
        source, background, max_pixels: as :func:`read_image`.
        channels, native_size, multiple_of: the model's, as
            :func:`to_model_channels` / :func:`fit_for_model`.
        vae_width, pixel_space: the model's (``ModelInfo``), for
            :func:`check_full_size_input`: a model without a native size refuses
            an input of more than :data:`FULL_SIZE_MAX_PIXELS`, from the file's
            header, before decoding it.

    Returns:
        ``loaded``: the description (:class:`LoadedImage`; for large files its
        ``pixels`` take no memory and ``decoded_scale`` is k); ``reference``:
        float32 ``(H, W, channels)`` in [0, 1], except for a large 8-bit file:
        uint8 ``(H, W, channels)`` in 0..255 (``rint(x * 255)`` of the float
        values); ``fitted``: a :class:`FittedImage`.

    Raises:
        ImageInputError, ValueError: as :func:`read_image`; an input too large
            for a model without a native size (:func:`check_full_size_input`).
    """
    if isinstance(source, (str, os.PathLike)) and native_size is None:
        header = _peek_size(Path(source), max_pixels)
        if header is not None:
            check_full_size_input(Path(source).name, *header, native_size=None, multiple_of=multiple_of,
                                  vae_width=vae_width, pixel_space=pixel_space)
    if isinstance(source, (str, os.PathLike)) and native_size is not None:
        bg = check_background(background)
        path = Path(source)
        header = _peek_size(path, max_pixels)
        if header is not None and header[0] * header[1] > LARGE_INPUT_PIXELS:
            return _read_large(path, bg, max_pixels, channels, native_size, multiple_of)
    loaded = read_image(source, background=background, max_pixels=max_pixels)
    check_full_size_input(loaded.name, *loaded.size, native_size=native_size, multiple_of=multiple_of,
                          vae_width=vae_width, pixel_space=pixel_space)  # in-memory inputs (files: checked above from the header)
    reference = to_model_channels(loaded.pixels, channels)
    return loaded, reference, fit_for_model(reference, native_size=native_size, multiple_of=multiple_of)


def read_for_identity(
    path: str | os.PathLike,
    *,
    channels: int,
    native_size: int | None = None,
    multiple_of: int = 1,
    vae_width: int | None = None,
) -> tuple[LoadedImage, np.ndarray, FittedImage] | None:
    """:func:`read_for_model` for an output that is the input itself (level 0 on a pixel model),
    without the float round trip: ``(loaded, reference, fitted)`` with ``reference`` uint8
    ``(H, W, channels)``, the values :func:`~boomerang.imageio.save_image` writes for the float
    reference of :func:`read_for_model` (``rint(x * 255)``; the same bytes, tested), and ``fitted``
    a :class:`FittedImage` of method ``identity`` whose ``pixels`` take no memory (the model never
    sees them). Only for an 8-bit gray file (mode ``L``, no transparency, no ICC profile, no EXIF
    orientation to apply) already at the model's size; ``None`` for anything else, and for any file
    this path cannot read: the caller reads it with :func:`read_for_model`, which says why.

    A PNG is opened once: its size from the IHDR chunk, its mode and chunks before the pixels
    are decoded (Pillow's PNG reader only).

    Raises:
        ImageInputError: an input too large for a model without a native size
            (:func:`check_full_size_input`), as :func:`read_for_model`.
    """
    if channels not in (1, 3):
        return None
    path = path if isinstance(path, Path) else Path(path)
    try:
        fh = open(path, "rb")
    except OSError:
        return None
    with fh:
        head = fh.read(24)
        if not (len(head) == 24 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"):
            fh.close()
            return _read_for_identity_any(path, channels, native_size, multiple_of, vae_width)
        w, h = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        if not _identity_size(path, w, h, native_size, multiple_of, vae_width):
            return None
        fh.seek(0)
        try:
            img = Image.open(fh, formats=("PNG",))
            if (img.mode != "L" or img.size != (w, h) or not MIN_SIDE <= min(w, h) or w * h > DEFAULT_MAX_PIXELS
                    or "transparency" in img.info or img.info.get("icc_profile") or getattr(img, "n_frames", 1) > 1):
                return None
            img.load()
        except Exception:  # noqa: BLE001 - a damaged file: read_for_model reports it
            return None
        for key in img.info:  # an orientation may apply (eXIf chunk, or EXIF in a text chunk): read_for_model makes it upright
            if key == "exif" or key.startswith("Raw profile type exif"):
                return None
    return _identity_result(img, path, channels)


def _identity_size(path: Path, w: int, h: int, native_size, multiple_of: int, vae_width) -> bool:
    """Whether a (w, h) file is at the model's size (raises what read_for_model raises for a full-size input)."""
    if native_size is not None:
        return (w, h) == (native_size, native_size)
    check_full_size_input(path.name, w, h, native_size=None, multiple_of=multiple_of, vae_width=vae_width)
    return not (w % multiple_of or h % multiple_of)


def _identity_result(img: Image.Image, path: Path, channels: int) -> tuple[LoadedImage, np.ndarray, FittedImage]:
    w, h = img.size
    u8 = np.frombuffer(img.tobytes(), np.uint8).reshape(h, w, 1)  # the decoded bytes (read-only)
    reference = np.repeat(u8, 3, axis=-1) if channels == 3 else u8
    loaded = LoadedImage(pixels=_hollow((h, w, 3)), size=(w, h), bit_depth=8, is_grayscale=True, name=path.name,
                         path=path, source_mode="L")
    fitted = FittedImage(_hollow((h, w, channels)), (w, h), "identity")
    return loaded, reference, fitted


@functools.lru_cache(maxsize=64)
def _hollow(shape: tuple[int, int, int]) -> np.ndarray:
    """:func:`hollow` arrays shared by every image of one size (read-only, they take no memory)."""
    return hollow(shape)


def _read_for_identity_any(path: Path, channels: int, native_size, multiple_of: int, vae_width):
    """:func:`read_for_identity` of a file that is not a PNG (any format Pillow reads)."""
    header = _peek_size(path, DEFAULT_MAX_PIXELS)
    if header is None or not _identity_size(path, *header, native_size, multiple_of, vae_width):
        return None
    img, name, path = open_file(path, DEFAULT_MAX_PIXELS)
    if img.mode != "L" or "transparency" in img.info or img.info.get("icc_profile") or img.size != header:
        return None
    return _identity_result(img, path, channels)


def _peek_size(path: Path, max_pixels: int | None) -> tuple[int, int] | None:
    """(W, H) from the file header, or None if it cannot be read (read_image then says why).

    A PNG's size is read from its IHDR chunk (the first 24 bytes) without opening it with
    Pillow (the same numbers Pillow reads; the full read checks everything else)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(24)
        if len(head) == 24 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
            w, h = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
            if w > 0 and h > 0:
                return w, h
    except OSError:
        return None
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
    img, name, path = open_file(path, max_pixels)
    w, h = img.size
    k = max(1, min(w, h) // (REDUCE_KEEP * native_size))
    small = from_pil(_reduce(img, k), name, path, bg)
    fitted = fit_for_model(to_model_channels(small.pixels, channels), native_size=native_size,
                           multiple_of=multiple_of, restore_size=(w, h))
    # 8-bit files: the reference is held as the 8-bit values every output is written with
    # (a quarter of float32's memory); deeper files keep float32.
    as_bytes = small.bit_depth <= 8
    reference = np.empty((h, w, channels), np.uint8 if as_bytes else np.float32)
    for y in range(0, h, _STRIP_ROWS):
        part = from_pil(img.crop((0, y, w, min(h, y + _STRIP_ROWS))), name, path, bg)
        strip = to_model_channels(part.pixels, channels)
        reference[y:y + part.height] = quantize8(strip) if as_bytes else strip
    del img
    loaded = LoadedImage(
        pixels=hollow((h, w, 3)), size=(w, h), bit_depth=small.bit_depth, is_grayscale=small.is_grayscale,
        name=name, path=path, source_mode=small.source_mode, had_alpha=small.had_alpha,
        icc_profile=small.icc_profile, decoded_scale=k,
    )
    return loaded, reference, fitted
