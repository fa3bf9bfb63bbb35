"""MultiDiffusion blending holds one band of window rows in float64 (canonical order), not the
whole image: the result must be bit-identical to summing over the whole image in the same order."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from boomerang.enhance.tiling import blend_windows, make_layout  # noqa: E402


def _context_fn(ratio_num: int = 1, ratio_den: int = 1, out_channels: int | None = None):
    """A window function whose output depends on the whole window (not pixel by pixel)."""
    def fn(w):
        y = torch.tanh(w * 1.7 + w.mean(dim=(-2, -1), keepdim=True) - 0.3 * w.roll(1, dims=-1))
        if out_channels is not None:
            y = torch.cat([y, y[:, :1] * 0.5], dim=1)[:, :out_channels]
        if ratio_num != 1:
            y = y.repeat_interleave(ratio_num, dim=-2).repeat_interleave(ratio_num, dim=-1)
        if ratio_den != 1:
            y = torch.nn.functional.avg_pool2d(y, ratio_den)
        return y
    return fn


@pytest.mark.parametrize("shape,tile,overlap,ratio,weighting,tile_batch", [
    ((2, 3, 37, 53), 16, 5, (1, 1), "uniform", 3),
    ((1, 1, 64, 40), 16, 8, (1, 1), "feather", 1),
    ((1, 3, 24, 40), 8, 2, (2, 1), "feather", 4),  # a decoder's ratio 2
    ((1, 3, 48, 32), 16, 8, (1, 2), "uniform", 2),  # an encoder's ratio 1/2
    ((1, 2, 10, 10), 16, 4, (1, 1), "uniform", 8),  # one window: the whole image
])
def test_band_blend_equals_the_whole_image_blend(shape, tile, overlap, ratio, weighting, tile_batch):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g)
    num, den = ratio
    align = den
    layout = make_layout(shape[-2], shape[-1], tile, overlap, align=align)
    fn = _context_fn(num, den, out_channels=4 if num == 2 else None)
    kw = dict(tile_batch=tile_batch, ratio=num / den, weighting=weighting,
              out_channels=4 if num == 2 else None)
    banded = blend_windows(fn, x, layout, **kw)  # canonical order: band sums
    whole = blend_windows(fn, x, layout, order=list(range(len(layout))), **kw)  # same order, whole-image sums
    assert banded.dtype == torch.float32 and banded.shape == whole.shape
    assert torch.equal(banded, whole)
