"""Fitting images to a model (part of :mod:`boomerang.imageio`, which documents the rules): channels, size
(resize or pad, and back) and the warning that says what an input lost on the way.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from boomerang._image import LUMA_WEIGHTS, MIN_SIDE, LoadedImage
from boomerang.errors import BoomerangWarning
from boomerang.metrics import quantize8

__all__ = [
    "to_model_channels",
    "FittedImage",
    "fit_for_model",
    "fit_warning",
    "warn_fit",
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
    y = np.empty((*x.shape[:2], 1), np.float32)
    for r in range(0, x.shape[0], 256):  # in strips of rows: the same float32 operations, no image-sized temporaries
        np.clip((x[r:r + 256] * w).sum(axis=-1, keepdims=True), 0.0, 1.0, out=y[r:r + 256])
    return y


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
    """One line saying how much an input lost on its way to a model, or ``None``.

    Said once for every colour input that goes to a one-channel model, on every
    path (resized, padded, passed as it is, enhanced): its samples are gray.
    Also said when a pixel model's native size is less than half the input's
    width or height: the samples are resized back to the input size but hold no
    more detail than the model's input. ``enhance`` (``fitted.method ==
    "enhance"``) keeps the size, so only the colour-to-gray loss is said there.

    Args:
        loaded: the input as read (its ``name``, ``size`` and ``is_grayscale``).
        fitted: what the model gets (``method`` and ``pixels`` ``(h, w, C)``).
        channels: the model's image channels, 1 or 3.
    """
    to_gray = channels == 1 and not loaded.is_grayscale
    method = getattr(fitted, "method", None)
    if method != "resize":
        if not to_gray:
            return None
        what = "the enhanced image is" if method == "enhance" else "the samples are"
        return (f"{loaded.name}: colour to gray: this model takes one-channel images, so {what} "
                "gray. For colour images use a colour model (--model)")
    w, h = loaded.size
    mh, mw = int(fitted.pixels.shape[0]), int(fitted.pixels.shape[1])
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
