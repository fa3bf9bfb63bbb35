"""Distances between a sample and its input (torch-free).

Every metric here is computed by scikit-image (``skimage.metrics``), never by a
formula of our own, on float arrays in [0, 1] at the *output* resolution (the
resolution of the input file, since outputs are restored to the input size).

* ``mse``: mean squared error over all pixels and channels, in [0, 1].
* ``psnr``: peak signal-to-noise ratio in dB with ``data_range=1``; ``None``
  (written as JSON ``null``) when the images are identical (infinite PSNR).
Images of more than :data:`STRIP_ABOVE_PIXELS` pixels are compared strip by
strip with the same scikit-image functions (see :func:`_distance_in_strips`):
the same values up to float rounding, with memory bounded by one strip.

* ``ssim``: structural similarity (Wang et al. 2004; scikit-image's default
  7x7 uniform window, or the largest odd window that fits images smaller than
  7 pixels; averaged over channels for colour images), in [-1, 1]; ``None``
  when a side is shorter than 3 pixels, where SSIM is undefined.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["wilson_interval", "as_unit_float", "image_distance", "quantize8", "STRIP_ABOVE_PIXELS"]

#: Images of more pixels than this are compared in strips of rows (float64 per
#: strip only), so that comparing an 8000x6000 sample needs tens of MB, not GB.
STRIP_ABOVE_PIXELS = 4_000_000
_STRIP_ROWS = 32


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


def quantize8(pixels) -> np.ndarray:
    """float values in [0, 1] -> uint8 ``rint(clip(x, 0, 1) * 255)`` (how images are written),
    computed in strips of rows so that large images need no full-size float temporaries.
    A uint8 array is already quantised and comes back as it is (no copy)."""
    x = np.asarray(pixels)
    if x.dtype == np.uint8:
        return x
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"quantize8 takes float values in [0, 1] or uint8, not {x.dtype}")
    q = np.empty(x.shape, np.uint8)
    for y in range(0, x.shape[0], 1024):
        q[y:y + 1024] = np.rint(np.clip(x[y:y + 1024], 0.0, 1.0) * 255)
    return q


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

    shape_a, shape_b = _shape(sample), _shape(reference)
    if shape_a != shape_b:
        raise ValueError(f"image_distance: shapes differ: sample {shape_a} vs reference {shape_b}")
    if shape_a[0] * shape_a[1] > STRIP_ABOVE_PIXELS and isinstance(sample, np.ndarray) and isinstance(reference, np.ndarray):
        return _distance_in_strips(sample, reference)
    a = as_unit_float(sample)
    b = as_unit_float(reference)
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


def _shape(image) -> tuple[int, ...]:
    if isinstance(image, np.ndarray):
        shape = image.shape
        return tuple(shape[:2]) if image.ndim == 2 or (image.ndim == 3 and shape[-1] == 1) else tuple(shape)
    w, h = image.size
    bands = len(image.getbands())
    return (h, w) if bands == 1 else (h, w, bands)


def _ssim_window(height: int, width: int) -> int:
    side = min(height, width)
    return min(7, side if side % 2 == 1 else side - 1)


def _distance_in_strips(sample: np.ndarray, reference: np.ndarray, rows: int = _STRIP_ROWS) -> dict:
    """:func:`image_distance` for large arrays, strip by strip (same definitions).

    MSE is the mean of scikit-image's per-strip squared errors weighted by
    their size; PSNR is scikit-image's formula ``10 log10(1 / mse)`` on that MSE;
    SSIM is the mean of scikit-image's SSIM map (``full=True``) over the same
    cropped region scikit-image averages, each strip computed with
    ``win_size`` rows of context above and below so that every map value equals
    the whole-image one (up to float rounding).
    """
    from skimage.metrics import structural_similarity

    h, w = sample.shape[:2]
    win = _ssim_window(h, w)
    pad = (win - 1) // 2
    sq_sum, n = 0.0, 0
    ssim_sum, ssim_n = 0.0, 0
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        lo, hi = max(0, r0 - win), min(h, r1 + win)
        a = as_unit_float(sample[lo:hi])
        b = as_unit_float(reference[lo:hi])
        core_a, core_b = a[r0 - lo:r1 - lo], b[r0 - lo:r1 - lo]
        sq_sum += float(np.sum((core_a - core_b) ** 2, dtype=np.float64))
        n += core_a.size
        if win >= 3:
            _, smap = structural_similarity(b, a, data_range=1.0, win_size=win, full=True,
                                            channel_axis=-1 if a.ndim == 3 else None)
            y0, y1 = max(r0, pad), min(r1, h - pad)
            if y1 > y0:
                part = smap[y0 - lo:y1 - lo, pad:w - pad]
                ssim_sum += float(np.sum(part, dtype=np.float64))
                ssim_n += part.size
    mse = sq_sum / n
    psnr = None if mse == 0.0 else float(10.0 * math.log10(1.0 / mse))
    ssim = float(ssim_sum / ssim_n) if win >= 3 and ssim_n else None
    return {"mse": mse, "psnr": psnr, "ssim": ssim}


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``hits / n`` (95% for z = 1.96).

    Returns:
        ``(low, high)`` in [0, 1]; ``(0.0, 1.0)`` when ``n == 0``.

    Raises:
        ValueError: ``hits`` outside [0, n].
    """
    if not 0 <= hits <= n:
        raise ValueError(f"hits must be in [0, n], got hits={hits}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if hits == 0 else max(0.0, centre - half)
    high = 1.0 if hits == n else min(1.0, centre + half)
    return low, high
