"""Whole-image enhancement on the bounded path: :func:`enhance_images`' steps with x0, x_t and the
upsampled image in files (:mod:`.banded`), for large images.

:func:`boomerang.enhance.image.enhance_images` takes this path by itself for an image of at
least ``banded.BANDED_MIN_PIXELS`` output pixels when :func:`use_bounded` allows it; it
returns the same numbers as the in-memory path. What stays in memory per image: the input as
given, the float32 output (both image-sized, C channels) and bands of rows; at a scale other
than 1, one channel of the upsampled image while it is made (Pillow resizes whole channels).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

__all__ = ["use_bounded", "enhance_bounded"]


def use_bounded(model, scheduler: str, *, in_size, out_size, tile: int, consistency: bool, colour_fix: bool) -> bool:
    """Whether enhancing images of ``in_size`` (h, w) to ``out_size`` (H, W) takes the bounded path:
    H W >= ``banded.BANDED_MIN_PIXELS``, ``banded.can_band`` allows it (pixel model on the CPU,
    an elementwise scheduler, H W a multiple of 16, ILVR at scale 1 or a power of two), the model takes the
    output's size as it is (no resize: at least one native window, or sides that are multiples
    of the model's ``size_multiple``), and no colour fix (a Gaussian blur of the whole image)."""
    from boomerang.enhance import banded

    H, W = out_size
    if colour_fix or not model.pixel_space or H * W < banded.BANDED_MIN_PIXELS:
        return False
    if model.native_size is not None:
        fits = H >= tile and W >= tile
    else:
        m = int(model.size_multiple or 1)
        fits = H % m == 0 and W % m == 0
    h, w = in_size
    scale = (H // h if H % h == 0 and W % w == 0 and H // h == W // w else H / h) if consistency else None
    return fits and banded.can_band(model, scheduler, H, W, consistency_scale=scale) is None


def _upsampled_rows(im: np.ndarray, out_size, method: str, rows: int):
    """(channel slice, r0, r1, float32 rows (n, W, c)) of ``upsample(im, H, W, method)``, top to bottom:
    at scale 1 band by band (Pillow's resize to the same size is a copy), else one whole channel at a
    time (the same values: each channel is resized and clipped on its own)."""
    from boomerang.enhance.resample import upsample

    H, W = out_size
    if tuple(im.shape[:2]) == (H, W):
        for r0 in range(0, H, rows):
            r1 = min(H, r0 + rows)
            yield slice(None), r0, r1, upsample(im[r0:r1], r1 - r0, W, method)
        return
    for c in range(im.shape[-1]):
        up = upsample(im[..., c:c + 1], H, W, method)
        for r0 in range(0, H, rows):
            yield slice(c, c + 1), r0, min(H, r0 + rows), up[r0:r0 + rows]
        del up


def enhance_bounded(model, images, *, out_size, upsampler: str, plan, generators, tile: int, overlap: int,
                    tile_batch: int, weighting: str, eta: float, consistency: bool, consistency_until: float,
                    progress=None, work_dir=None):
    """Steps 1-3 of ``enhance_images`` on the bounded path (its checks already made).

    Args:
        images: B float32 arrays (h, w, C) in the model's channels.
        out_size: (H, W) of the outputs.
        work_dir: the folder to make the private temporary folder in (default ``TMPDIR``).
        the rest: as ``enhance_images`` / ``tiled_boomerang``.

    Returns:
        ``[(pixels, upsampled)]`` per image: pixels float32 (H, W, C) in [0, 1] in memory;
        upsampled (H, W, C) a read-only view of a file (``numpy.memmap``; its temporary folder is
        gone, the mapping keeps it until dropped).
    """
    import torch

    from boomerang.enhance import banded
    from boomerang.enhance.bands import BandFile
    from boomerang.enhance.sampler import tiled_boomerang

    B, C = len(images), int(model.image_channels)
    H, W = out_size
    rows = banded.BAND_ROWS
    with tempfile.TemporaryDirectory(prefix="enhance-bands-", dir=work_dir) as tmp:
        x0 = BandFile(Path(tmp) / "x0.f32", (B, C, H, W))
        up = BandFile(Path(tmp) / "upsampled.f32", (B, C, H, W))
        h = images[0].shape[0]
        low = BandFile(Path(tmp) / "reference.f32", (B, C, h, images[0].shape[1])) if consistency else None
        for i, im in enumerate(images):
            for cs, r0, r1, u in _upsampled_rows(im, (H, W), upsampler, rows):
                band = torch.from_numpy(np.ascontiguousarray(u)).permute(2, 0, 1)[None]
                up.write(r0, band, cs, item=i)
                x0.write(r0, band.clone().mul_(2.0).sub_(1.0), cs, item=i)  # x0 = up * 2 - 1, in [-1, 1]
            if low is not None:  # ILVR's reference: the input itself in [-1, 1], at its own size
                for r0 in range(0, h, rows):
                    ref = torch.from_numpy(np.ascontiguousarray(im[r0:r0 + rows])).permute(2, 0, 1)[None].float()
                    low.write(r0, ref * 2.0 - 1.0, item=i)
        out = tiled_boomerang(model, x0, plan, generators, tile=tile, overlap=overlap, tile_batch=tile_batch,
                              weighting=weighting, eta=eta, consistency_low=low, consistency_iterations=1,
                              consistency_until=consistency_until, progress=progress, band=rows)
        pixels = [np.empty((H, W, C), np.float32) for _ in range(B)]
        for r0 in range(0, H, rows):
            arr = out.read(r0, min(H, r0 + rows)).permute(0, 2, 3, 1).numpy()  # to [0, 1], as enhance_images
            arr += 1.0
            arr /= 2.0
            np.clip(arr, 0.0, 1.0, out=arr)
            for i in range(B):
                pixels[i][r0:r0 + rows] = arr[i]
        ups = [np.memmap(up.path, np.float32, "r", offset=i * C * H * W * 4, shape=(C, H, W)).transpose(1, 2, 0)
               for i in range(B)]
        for f in (x0, up, low, out):
            if f is not None:
                f.close()
    return list(zip(pixels, ups))

