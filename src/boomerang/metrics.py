"""Distances between a sample and its input (torch-free).

Every metric here is computed by scikit-image (``skimage.metrics``), never by a
formula of our own, on float arrays in [0, 1] at the *output* resolution (the
resolution of the input file, since outputs are restored to the input size).

* ``mse``: mean squared error over all pixels and channels, in [0, 1].
* ``psnr``: peak signal-to-noise ratio in dB with ``data_range=1``; ``None``
  (written as JSON ``null``) when the images are identical (infinite PSNR).
* ``ssim``: structural similarity (Wang et al. 2004; scikit-image's default
  7x7 uniform window, or the largest odd window that fits images smaller than
  7 pixels; averaged over channels for colour images), in [-1, 1]; ``None``
  when a side is shorter than 3 pixels, where SSIM is undefined.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["as_unit_float", "image_distance"]


def as_unit_float(image) -> np.ndarray:
    """Convert an image to a float64 array in [0, 1] with shape [H, W] or [H, W, C].

    Args:
        image: a PIL image (modes L, RGB, RGBA, I;16, ...), or a numpy array:
            unsigned integers are divided by their dtype's maximum (255 for
            uint8, 65535 for uint16); floats are taken as already in [0, 1].

    Returns:
        float64 array; a trailing channel axis of size 1 is dropped.

    Raises:
        ValueError: for a float array with values outside [0, 1] or not finite,
            or an array that is not 2-D / 3-D.
    """
    if not isinstance(image, np.ndarray):  # PIL image
        mode = getattr(image, "mode", None)
        if mode in ("I;16", "I;16B", "I;16L"):
            image = np.asarray(image, dtype=np.uint16)
        elif mode in ("I", "F"):
            raise ValueError(f"as_unit_float: PIL mode {mode} has no fixed range; convert it first")
        else:
            image = np.asarray(image)
    arr = image
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected an image of shape [H, W] or [H, W, C], got {arr.shape}")
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.float64) / float(np.iinfo(arr.dtype).max)
    if arr.dtype == bool:
        return arr.astype(np.float64)
    out = arr.astype(np.float64)
    if not np.all(np.isfinite(out)) or out.min() < 0.0 or out.max() > 1.0:
        raise ValueError("float images must be finite and in [0, 1]")
    return out


def image_distance(sample, reference) -> dict[str, float | None]:
    """MSE, PSNR and SSIM between a sample and its reference image.

    Args:
        sample, reference: images of the same size and channel count (PIL images
            or arrays, see :func:`as_unit_float`); both are brought to [0, 1].

    Returns:
        ``{"mse": float, "psnr": float | None, "ssim": float | None}`` (see the
        module docstring for ranges and when a value is ``None``).

    Raises:
        ValueError: if the shapes differ.
    """
    from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

    a = as_unit_float(sample)
    b = as_unit_float(reference)
    if a.shape != b.shape:
        raise ValueError(f"image_distance: shapes differ: sample {a.shape} vs reference {b.shape}")
    mse = float(mean_squared_error(b, a))
    if mse == 0.0:
        psnr = None
    else:
        psnr = float(peak_signal_noise_ratio(b, a, data_range=1.0))
        if not math.isfinite(psnr):
            psnr = None
    side = min(a.shape[0], a.shape[1])
    win = min(7, side if side % 2 == 1 else side - 1)
    if win < 3:
        ssim = None
    else:
        ssim = float(
            structural_similarity(
                b, a, data_range=1.0, win_size=win, channel_axis=-1 if a.ndim == 3 else None
            )
        )
    return {"mse": mse, "psnr": psnr, "ssim": ssim}
