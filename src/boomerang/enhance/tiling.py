"""Overlapping windows and MultiDiffusion blending (Bar-Tal et al. 2023, Eq. 3-5).

An image larger than the model's window is covered by overlapping windows.
At every reverse step the model is run on each window, and the windows'
outputs are blended into one output for the whole image: the per-pixel
weighted average

    out(p) = sum_i w_i(p) F(crop_i(x))(p) / sum_i w_i(p)

which is MultiDiffusion's closed-form least-squares solution of "every window
should agree with its own model output". With uniform weights this is
MultiDiffusion exactly; ``feather`` weights fall off linearly towards a
window's edges inside the overlap (as Mixture of Diffusers does), which
favours each window's centre. Either way the weights are normalised per pixel,
so where the model output does not depend on context (a denoiser acting pixel
by pixel) blending returns exactly the untiled output: blending adds no bias,
at image borders too (every pixel is covered, weights are > 0).

Randomness is never drawn per window: the noise lives on the whole image and
is drawn from the image's own generator by the caller, so the result cannot
depend on the order or the batching of the windows. Windows are accumulated
in float64 so that their order changes nothing beyond float64 rounding. In the
canonical order only one band of window rows is held in float64 at a time
(rows above the current windows are final): the image-sized float64 sums of
a plain implementation are never made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

__all__ = ["WEIGHTINGS", "TileLayout", "tile_starts", "make_layout", "window_weight", "blend_windows",
           "windowed_denoiser"]

WEIGHTINGS: tuple[str, ...] = ("uniform", "feather")


def tile_starts(length: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Start offsets of windows of side ``tile`` covering [0, length) with >= ``overlap`` overlap.

    The fewest windows n = ceil((length - overlap) / (tile - overlap)) are
    spread evenly from 0 to length - tile (first flush with the start, last
    flush with the end), starts rounded down to multiples of ``align``
    (latent models: the VAE factor). ``length <= tile``: one window at 0.

    Raises:
        ValueError: overlap >= tile, or a length that ``align`` does not divide.
    """
    if tile < 1 or not 0 <= overlap < tile:
        raise ValueError(f"tile_overlap must be in [0, tile_size - 1] = [0, {tile - 1}], got {overlap}")
    if length <= tile:
        return [0]
    if (length - tile) % align:
        raise ValueError(f"image side {length} minus tile {tile} must be a multiple of {align}")
    n = math.ceil((length - overlap) / (tile - overlap))
    n = max(n, 2)
    span = (length - tile) // align
    starts = [align * ((span * i) // (n - 1)) for i in range(n)]
    return sorted(set(starts))


@dataclass(frozen=True)
class TileLayout:
    """Windows over an image of ``height`` x ``width``: each is (top, left, h, w).

    ``windows`` are in a fixed row-major order (the canonical order). A window
    is ``min(tile, side)`` pixels along each axis, so an image smaller than the
    tile has one window: the whole image (the untiled run).
    """

    height: int
    width: int
    tile: int
    overlap: int
    windows: tuple[tuple[int, int, int, int], ...]

    def __len__(self) -> int:
        return len(self.windows)


def make_layout(height: int, width: int, tile: int, overlap: int, align: int = 1) -> TileLayout:
    """The canonical :class:`TileLayout` (see :func:`tile_starts` for the rule)."""
    th, tw = min(tile, height), min(tile, width)
    rows = tile_starts(height, tile, overlap, align)
    cols = tile_starts(width, tile, overlap, align)
    windows = tuple((r, c, th, tw) for r in rows for c in cols)
    return TileLayout(int(height), int(width), int(tile), int(overlap), windows)


def window_weight(h: int, w: int, overlap: int, weighting: str = "uniform"):
    """[h, w] float64 blending weight of one window, > 0 everywhere.

    ``uniform``: ones (MultiDiffusion). ``feather``: along each axis
    min(1, (d + 1) / (overlap + 1)) with d the distance in pixels to the nearer
    window edge, multiplied over the two axes (1 in the centre, 1/(overlap+1)
    at the corners).
    """
    import torch

    if weighting not in WEIGHTINGS:
        raise ValueError(f"tile weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
    if weighting == "uniform" or overlap == 0:
        return torch.ones(h, w, dtype=torch.float64)

    def ramp(n: int):
        d = torch.arange(n, dtype=torch.float64)
        d = torch.minimum(d, n - 1 - d)
        return torch.clamp((d + 1) / (overlap + 1), max=1.0)

    return ramp(h)[:, None] * ramp(w)[None, :]


def blend_windows(
    fn: Callable,
    x,
    layout: TileLayout,
    *,
    tile_batch: int = 8,
    ratio: float = 1.0,
    out_channels: int | None = None,
    weighting: str = "uniform",
    order: Sequence[int] | None = None,
    positions: bool = False,
    sink: Callable | None = None,
):
    """Run ``fn`` on every window of ``x`` and blend the outputs (MultiDiffusion).

    Args:
        fn: maps a batch of windows [n, C, h, w] to outputs [n, C', h r, w r]
            (r = ``ratio``: 1 for a denoiser, 8 for a VAE decoder, 1/8 for a
            VAE encoder). It must treat the n windows independently.
        x: [B, C, H, W] tensor, or a source of rows (an object with ``shape``, ``device`` and
            ``crop(r, q, h, w)`` returning x[..., r:r+h, q:q+w]; windows are cropped in the
            canonical order, their tops never decreasing: :class:`~boomerang.enhance.banded.RowSource`);
            ``layout`` must be for H x W.
        layout: the windows (:func:`make_layout`).
        tile_batch: windows per ``fn`` call (each call sees up to
            ``tile_batch`` x B items); bounds memory, does not change the result
            when ``fn`` is batch invariant (as the models are on the CPU).
        ratio: output pixels per input pixel.
        out_channels: C' (default C).
        weighting: ``'uniform'`` or ``'feather'`` (:func:`window_weight`).
        order: the order in which windows are fed to ``fn`` (a permutation of
            range(len(layout))); default canonical. Only for tests: the result
            is the same (to float64 rounding) in any order.
        positions: call ``fn(windows, places)`` with ``places`` the (top, left, h, w) of each
            window of the batch (window-major, each repeated for the B items), for models that
            number their tokens by position (FLUX).
        sink: canonical order only: ``sink(r0, r1, rows)`` receives each band of finished rows
            (float32 [B, C', r1 - r0, W r], top to bottom, the same values as the whole result's
            rows) instead of an image-sized result being kept (the bounded path of enhance).

    Returns:
        float32 tensor [B, C', H r, W r] on ``x``'s device; None with ``sink``.
    """
    import torch

    if layout.height != x.shape[-2] or layout.width != x.shape[-1]:
        raise ValueError(f"layout is for {layout.height}x{layout.width}, image is {tuple(x.shape[-2:])}")
    b, c = x.shape[0], x.shape[1]
    oc = c if out_channels is None else out_channels
    H, W = round(layout.height * ratio), round(layout.width * ratio)
    idx = list(range(len(layout))) if order is None else [int(i) for i in order]
    if sorted(idx) != list(range(len(layout))):
        raise ValueError("order must be a permutation of the window indices")
    if sink is not None and order is not None:
        raise ValueError("a sink takes the windows in the canonical order only")
    band = _Band(b, oc, H, W, layout, ratio, x.device, sink) if order is None else _Whole(b, oc, H, W, x.device)
    crop = x.crop if hasattr(x, "crop") else (lambda r, q, h, w: x[..., r:r + h, q:q + w])
    for k in range(0, len(idx), max(1, int(tile_batch))):
        chunk = [layout.windows[i] for i in idx[k:k + tile_batch]]
        crops = torch.cat([crop(r, q, h, w) for r, q, h, w in chunk])  # [n B, C, h, w], window-major
        outs = fn(crops, chunk) if positions else fn(crops)
        del crops  # the batch's input windows are not needed while its outputs are blended
        for j, (r, q, h, w) in enumerate(chunk):
            o = outs[j * b:(j + 1) * b].to(x.device, torch.float64)
            R, Q, oh, ow = round(r * ratio), round(q * ratio), round(h * ratio), round(w * ratio)
            if tuple(o.shape[-2:]) != (oh, ow):
                raise ValueError(f"fn returned windows of {tuple(o.shape[-2:])}, expected {(oh, ow)}")
            wgt = window_weight(oh, ow, round(layout.overlap * ratio), weighting).to(x.device)
            band.add(o * wgt, wgt, R, Q)
    return band.result()


class _Whole:
    """The blend's sums over the whole image (float64), for windows in any order."""

    def __init__(self, b, oc, H, W, device):
        import torch

        self.acc = torch.zeros(b, oc, H, W, dtype=torch.float64, device=device)
        self.norm = torch.zeros(H, W, dtype=torch.float64, device=device)

    def add(self, ow, wgt, R, Q):
        h, w = wgt.shape
        self.acc[..., R:R + h, Q:Q + w] += ow
        self.norm[R:R + h, Q:Q + w] += wgt

    def result(self):
        import torch

        assert bool((self.norm > 0).all()), "every pixel is covered by a window"
        return self.acc.div_(self.norm).to(torch.float32)  # in place: one image-sized float64 buffer fewer


class _Band:
    """The blend's sums for windows in the canonical (row-major) order, held for one band of rows:
    rows above the current windows' top are final, so they are divided and stored as float32 and
    their float64 sums dropped. The same additions in the same order as :class:`_Whole` (the
    same float64 sums, so the same float32 result), with float64 memory of one window row
    instead of the whole image. With a ``sink`` the final rows go to ``sink(r0, r1, rows)``
    instead of an image-sized float32 result."""

    def __init__(self, b, oc, H, W, layout, ratio, device, sink=None):
        import torch

        self.bh = max(round(h * ratio) for _, _, h, _ in layout.windows)
        self.sink = sink
        self.out = torch.empty(b, oc, H, W, dtype=torch.float32, device=device) if sink is None else None
        self.acc = torch.zeros(b, oc, self.bh, W, dtype=torch.float64, device=device)
        self.norm = torch.zeros(self.bh, W, dtype=torch.float64, device=device)
        self.lo, self.H = 0, H

    def _flush(self, upto: int) -> None:
        import torch

        n = upto - self.lo
        if n <= 0:
            return
        assert n <= self.bh and bool((self.norm[:n] > 0).all()), "every pixel is covered by a window"
        rows = self.acc[..., :n, :].div(self.norm[:n]).to(torch.float32)
        if self.sink is None:
            self.out[..., self.lo:upto, :] = rows
        else:
            self.sink(self.lo, upto, rows)
        del rows
        keep = self.bh - n
        if keep > 0:
            self.acc[..., :keep, :] = self.acc[..., n:, :].clone()
            self.norm[:keep] = self.norm[n:].clone()
        self.acc[..., keep:, :] = 0
        self.norm[keep:] = 0
        self.lo = upto

    def add(self, ow, wgt, R, Q):
        if R > self.lo:
            self._flush(R)
        h, w = wgt.shape
        top = R - self.lo
        self.acc[..., top:top + h, Q:Q + w] += ow
        self.norm[top:top + h, Q:Q + w] += wgt

    def result(self):
        self._flush(self.H)
        return self.out


def windowed_denoiser(
    model,
    layout: TileLayout,
    *,
    cond=None,
    uncond=None,
    guidance_scale: float = 7.5,
    tile_batch: int = 8,
    weighting: str = "uniform",
    order: Sequence[int] | None = None,
):
    """The model's denoiser on blended windows (MultiDiffusion), as a ``reverse_process`` denoiser.

    Returns ``denoiser(x_in, t, sink=None)``: x_in [B, c, H, W] in the model's space (``layout``
    is for H x W; or a source of rows, see :func:`blend_windows`), t a 0-d timestep tensor; the
    model's (guided) prediction on every window of ``layout`` blended by :func:`blend_windows`,
    [B, prediction_channels, H, W] float32 (with ``sink``: handed to it band by band). It is
    the denoiser of both windowed callers of the one reverse loop (:mod:`boomerang.reverse`):
    ``enhance`` (:func:`boomerang.enhance.sampler.tiled_boomerang`) and ``sample`` of images
    above the windowing limit (:func:`boomerang.core.boomerang_sample` with ``windows``).
    A layout of one window gives exactly ``model.predict`` of the whole input (weights 1).
    Models that number their tokens by position (``model.window_positions``, FLUX) get each
    window's :class:`~boomerang.models.contract.Region`.
    """
    import torch

    out_channels = model.prediction_channels
    positions = bool(getattr(model, "window_positions", False))

    def placed(w, chunk, t):  # each window with its Region in the whole image (FLUX's image ids)
        from boomerang.models.contract import Region

        n = w.shape[0] // len(chunk)
        return torch.cat([model.predict(w[j * n:(j + 1) * n], t, cond=cond, uncond=uncond, guidance_scale=guidance_scale,
                                        region=Region(r, q, layout.height, layout.width))
                          for j, (r, q, _, _) in enumerate(chunk)])

    def denoiser(x_in, t, sink=None):
        if positions:
            return blend_windows(lambda w, chunk: placed(w, chunk, t), x_in, layout, tile_batch=tile_batch,
                                 out_channels=out_channels, weighting=weighting, order=order, positions=True,
                                 sink=sink)
        return blend_windows(
            lambda w: model.predict(w, t, cond=cond, uncond=uncond, guidance_scale=guidance_scale),
            x_in, layout, tile_batch=tile_batch, out_channels=out_channels, weighting=weighting, order=order,
            sink=sink,
        )

    return denoiser
