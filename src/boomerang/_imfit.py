"""Fitting images to a model (part of :mod:`boomerang.imageio`): channels, size (resize or pad, and back),
the fit warning, and reading large inputs for small models with bounded memory.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from boomerang._imread import (
    DEFAULT_BACKGROUND,
    DEFAULT_MAX_PIXELS,
    LUMA_WEIGHTS,
    MIN_SIDE,
    ImageInputError,
    ImageSource,
    LoadedImage,
    _check_background,
    _from_pil,
    _hollow,
    _open_file,
    read_image,
)
from boomerang.errors import BoomerangWarning
from boomerang.metrics import quantize8

__all__ = [
    "to_model_channels",
    "FittedImage",
    "fit_for_model",
    "fit_warning",
    "warn_fit",
    "LARGE_INPUT_PIXELS",
    "REDUCE_KEEP",
    "FULL_SIZE_MAX_PIXELS",
    "full_size_bytes",
    "check_full_size_input",
    "read_for_model",
]

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

    def restore(self, out_pixels: np.ndarray, dtype=np.float32) -> np.ndarray:
        """Bring a model output back to the input's exact size.

        Args:
            out_pixels: float ``(h, w)`` or ``(h, w, C)`` with the shape of
                ``self.pixels`` (any channel count), values in ``[0, 1]``.
            dtype: ``np.float32`` (default), or ``np.uint8`` for the 8-bit values
                a PNG holds (``rint(clip(x, 0, 1) * 255)``, computed in strips
                of rows: a large output never exists as full-size floats).

        Returns:
            ``dtype`` ``(H, W, C)`` (``(H, W)`` for 2-D input) with the
            original height and width, float values clipped to ``[0, 1]``.

        Raises:
            ValueError: ``out_pixels`` does not have the model size, or a
                ``dtype`` other than float32 / uint8.
        """
        if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.uint8)):
            raise ValueError(f"restore() gives float32 or uint8, not {np.dtype(dtype)}")
        out = np.asarray(out_pixels, dtype=np.float32)
        mh, mw = self.pixels.shape[:2]
        if out.ndim not in (2, 3) or out.shape[:2] != (mh, mw):
            raise ValueError(f"restore() expects an output of size {mh}x{mw} (H x W), got shape {out.shape}")
        squeeze = out.ndim == 2
        if squeeze:
            out = out[..., None]
        if self.method == "resize":
            res = self._restore(out, dtype=dtype)  # quantised strip by strip
        else:
            res = np.asarray(self._restore(out), dtype=np.float32)
            res = np.clip(res, 0.0, 1.0, out=res if res.flags.writeable and res.base is None else None)
            if np.dtype(dtype) == np.uint8:
                res = quantize8(res)
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
        return FittedImage(model, original, "resize", _restore=lambda out, dtype=np.float32: _resize(out, h, w, dtype))

    ph = (-h) % multiple_of
    pw = (-w) % multiple_of
    if ph == 0 and pw == 0:
        return FittedImage(x.copy(), original, "identity")
    model = _pad(x, ph, pw)
    return FittedImage(model, original, "pad", pad=(ph, pw), _restore=lambda out: out[:h, :w].copy())


def _resize(x: np.ndarray, height: int, width: int, dtype=np.float32) -> np.ndarray:
    """(H, W, C) float32 -> (height, width, C) ``dtype``, Lanczos per channel in mode F
    (written channel by channel into one array: memory ~ the output once). Values are
    clipped to [0, 1]; ``np.uint8`` quantises each strip as images are written."""
    as_bytes = np.dtype(dtype) == np.uint8
    out = np.empty((height, width, x.shape[-1]), np.uint8 if as_bytes else np.float32)
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
            strip = np.asarray(img, dtype=np.float32)
            # Lanczos overshoots slightly at sharp edges; keep the [0, 1] contract.
            out[y0:y1, :, c] = quantize8(strip) if as_bytes else np.clip(strip, 0.0, 1.0)
            del img, strip
    return out


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
    than the model's input. ``enhance`` (``fitted.method == "enhance"``) keeps the size, so
    only the colour-to-gray loss is said there.
    """
    if getattr(fitted, "method", None) == "enhance":
        if channels == 1 and not loaded.is_grayscale:
            return (f"{loaded.name}: colour to gray: this model takes one-channel images, so the enhanced image is "
                    "gray. For colour images use a colour model (--model)")
        return None
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
    """Issue :func:`fit_warning` as a :class:`boomerang.errors.BoomerangWarning` (a UserWarning)
    when there is one."""
    message = fit_warning(loaded, fitted, channels)
    if message:
        warnings.warn(message, BoomerangWarning, stacklevel=2)


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
                          vae_width: int | None = None, max_pixels: int | None = None) -> None:
    """Refuse an input too large for a model that runs at the image's own size.

    Models with a ``native_size`` (pixel models) get a resized copy of any input and are never
    refused here. Others (latent models) take the input itself, padded to ``multiple_of``: more
    than ``max_pixels`` pixels (:data:`FULL_SIZE_MAX_PIXELS`) is refused with one message naming
    the size, the memory its VAE alone would need (:func:`full_size_bytes`) and a size to resize to.

    Args:
        name: the input's name (file name or ``<memory>``), for the message.
        width, height: the input's size in pixels (a file's header size will do: EXIF rotation keeps the area).
        native_size, multiple_of, vae_width: the model's (``ModelInfo``).
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
        vae_width: the model's (``ModelInfo.vae_width``), for
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
                                  vae_width=vae_width)
    if isinstance(source, (str, os.PathLike)) and native_size is not None:
        bg = _check_background(background)
        path = Path(source)
        header = _peek_size(path, max_pixels)
        if header is not None and header[0] * header[1] > LARGE_INPUT_PIXELS:
            return _read_large(path, bg, max_pixels, channels, native_size, multiple_of)
    loaded = read_image(source, background=background, max_pixels=max_pixels)
    check_full_size_input(loaded.name, *loaded.size, native_size=native_size, multiple_of=multiple_of,
                          vae_width=vae_width)  # in-memory inputs (files: checked above from the header)
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
    # 8-bit files: the reference is held as the 8-bit values every output is written with
    # (a quarter of float32's memory); deeper files keep float32.
    as_bytes = small.bit_depth <= 8
    reference = np.empty((h, w, channels), np.uint8 if as_bytes else np.float32)
    for y in range(0, h, _STRIP_ROWS):
        part = _from_pil(img.crop((0, y, w, min(h, y + _STRIP_ROWS))), name, path, bg)
        strip = to_model_channels(part.pixels, channels)
        reference[y:y + part.height] = quantize8(strip) if as_bytes else strip
    del img
    loaded = LoadedImage(
        pixels=_hollow((h, w, 3)), size=(w, h), bit_depth=small.bit_depth, is_grayscale=small.is_grayscale,
        name=name, path=path, source_mode=small.source_mode, had_alpha=small.had_alpha,
        icc_profile=small.icc_profile, decoded_scale=k,
    )
    return loaded, reference, fitted
