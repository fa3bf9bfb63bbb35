"""Resampling used by enhancement: Pillow upsampling, and the low-pass pair of ILVR.

* :func:`upsample` -- the naive upsampling (step 1 of perceptual resolution
  enhancement): Pillow's bicubic (default) or Lanczos filter, in float (mode
  ``F``, one channel at a time, no 8-bit rounding), to an exact size.
* :func:`area_down` / :func:`nearest_up` -- the low-pass filter
  phi(x) = nearest_up(area_down(x)) of the consistency step. ``area_down`` is
  the box average over each scale x scale block (``torch.nn.functional.interpolate``
  ``mode='area'``, i.e. adaptive average pooling); ``nearest_up`` repeats each
  low-resolution pixel over its block. For integer ratios area_down(nearest_up(z))
  == z, so phi is a projection and the consistency step makes the box-downsampled
  output equal the input.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["upsample", "resize_float", "area_down", "nearest_up"]

_FILTERS = {"bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS,
            "box": Image.Resampling.BOX, "bilinear": Image.Resampling.BILINEAR}


def resize_float(pixels: np.ndarray, height: int, width: int, method: str = "bicubic") -> np.ndarray:
    """Resize a float image with a Pillow filter, channel by channel in mode ``F``.

    Args:
        pixels: float array (H, W) or (H, W, C), values in [0, 1].
        height, width: the exact output size (>= 1).
        method: ``'bicubic'``, ``'lanczos'``, ``'bilinear'`` or ``'box'``.

    Returns:
        float32 (height, width, C) ((height, width) for 2-D input), clipped to
        [0, 1] (bicubic and Lanczos overshoot at sharp edges).
    """
    if method not in _FILTERS:
        raise ValueError(f"method must be one of {', '.join(_FILTERS)}, got {method!r}")
    x = np.asarray(pixels, dtype=np.float32)
    squeeze = x.ndim == 2
    if squeeze:
        x = x[..., None]
    chans = [
        np.asarray(Image.fromarray(np.ascontiguousarray(x[..., c])).resize((int(width), int(height)), _FILTERS[method]),
                   dtype=np.float32)
        for c in range(x.shape[-1])
    ]
    out = np.clip(np.stack(chans, axis=-1), 0.0, 1.0)
    return out[..., 0] if squeeze else out


def upsample(pixels: np.ndarray, height: int, width: int, method: str = "bicubic") -> np.ndarray:
    """The naive upsampling of enhancement: :func:`resize_float` with ``'bicubic'`` or ``'lanczos'``."""
    if method not in ("bicubic", "lanczos"):
        raise ValueError(f"upsampler must be bicubic or lanczos, got {method!r}")
    return resize_float(pixels, height, width, method)


def area_down(x, size: tuple[int, int]):
    """Box-average downsampling of [B, C, H, W] to [B, C, *size] (adaptive average pooling)."""
    import torch.nn.functional as F

    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="area")


def nearest_up(z, size: tuple[int, int]):
    """Nearest-neighbour upsampling of [B, C, h, w] to [B, C, *size] (each pixel repeated over its block)."""
    import torch.nn.functional as F

    if tuple(z.shape[-2:]) == tuple(size):
        return z
    return F.interpolate(z, size=tuple(size), mode="nearest-exact")
