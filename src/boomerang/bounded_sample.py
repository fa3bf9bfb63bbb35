"""``sample``'s bounded path: a large photo's x0, x_t and x_{t-1} in files, stepped band by band.

Above :data:`boomerang.windowing.WINDOW_ABOVE_PIXELS` a fully convolutional pixel model denoises a
photo in windows (:func:`boomerang.windowing.sample_windows`), but the in-memory path of
:func:`boomerang.core.boomerang_sample` still holds the whole image's x_t, the forward noise,
the model output and the scheduler's temporaries in memory. When :func:`bounded_reason` allows it,
:func:`boomerang.core.boomerang_sample` runs the same steps with enhance's bounded execution
(:class:`boomerang.enhance.banded.Banded`, :func:`boomerang.enhance.banded.add_noise_banded`):
x0 and x_t live in float32 files of a private temporary folder, the windowed denoiser reads its
windows from the file, the scheduler steps each band of final rows one channel at a time, and
all noise (the forward eps and ddpm's / ddim eta > 0's step noise) is drawn slice by slice in the
order of the whole draw (:class:`boomerang.enhance.bands.NoiseCursors`). The sample is the same,
byte for byte (``tests/core/test_sample_bounded.py``). Only the input x0 and the returned samples
stay image-sized in memory.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

__all__ = ["bounded_reason", "sample_bounded"]


def bounded_reason(model, plan, height: int, width: int) -> str | None:
    """Why a windowed sample of ``height`` x ``width`` (model space) stays in memory, or None when it
    takes the bounded path: at least ``banded.BANDED_MIN_PIXELS`` pixels and what
    :func:`boomerang.enhance.banded.can_band` asks (a pixel model on the CPU, ddpm / ddim / euler
    without dynamic thresholding, C or learned-variance 2C output channels, H W a multiple of 16)."""
    from boomerang.enhance import banded

    if int(height) * int(width) < banded.BANDED_MIN_PIXELS:
        return "small image"
    return banded.can_band(model, plan.scheduler, height, width)


def _forward(sched, plan, x0, x_t, generators, rows: int, device):
    """x_t's file from x0's: the forward jump (``add_noise``), or for ``from_noise`` (the global
    schedule) eps times ``init_noise_sigma``; eps in the whole draw's order either way."""
    from boomerang.enhance.banded import add_noise_banded
    from boomerang.enhance.bands import NoiseCursors
    from boomerang.reverse import per_item_noise

    if plan.schedule != "global":
        return add_noise_banded(sched, plan, x0, x_t, generators, rows, device)
    B, C, H, W = x0.shape
    noise, sigma = NoiseCursors(generators, C, H * W), getattr(sched, "init_noise_sigma", 1.0)
    for r0 in range(0, H, rows):
        r1 = min(H, r0 + rows)
        for c in range(C):
            eps = per_item_noise(noise.generators(c), (1, r1 - r0, W), device)
            x_t.write(r0, eps * sigma, channels=slice(c, c + 1))
    noise.finish()
    return x_t


def sample_bounded(model, x0, plan, sched, generators, denoiser, *, eta: float, progress=None, work_dir=None):
    """Steps 1-4 of :func:`boomerang.core.boomerang_sample` on the bounded path (its checks made,
    :func:`bounded_reason` None).

    Args:
        model: a pixel model (encode and decode are the identity, applied per band).
        x0: [B, C, H, W] float tensor in [-1, 1].
        plan, sched: the plan (not the identity) and its fresh scheduler.
        generators: one per item.
        denoiser: the windowed denoiser (:func:`boomerang.enhance.tiling.windowed_denoiser`, which
            takes ``sink=``), canonical window order.
        eta, progress: as :func:`boomerang.reverse.reverse_process`.
        work_dir: where to make the private temporary folder (default ``TMPDIR``); dataset
            commands pass ``OUT/.job/scratch``.

    Returns:
        float32 CPU tensor [B, C, H, W] clamped to [-1, 1]: the in-memory path's numbers.
    """
    import torch

    from boomerang.enhance import banded
    from boomerang.enhance.bands import BandFile, band_rows
    from boomerang.reverse import reverse_process

    B, C, H, W = x0.shape
    device = model.device
    rows = band_rows(W, banded.BAND_ROWS)
    samples = torch.empty((B, C, H, W), dtype=torch.float32)
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sample-bands-", dir=work_dir) as tmp:
        folder = Path(tmp)
        with BandFile(folder / "x0.f32", x0.shape) as z0, BandFile(folder / "x_t.f32", x0.shape) as x_t:
            if plan.schedule != "global":
                for r0 in range(0, H, rows):  # 1. encode: the identity of a pixel model, per band
                    z0.write(r0, model.encode(x0[:, :, r0:r0 + rows]))
            x = _forward(sched, plan, z0, x_t, generators, rows, device)  # 2. the forward jump
            execution = banded.Banded(folder, x0.shape, generators, rows, device)
            try:  # 3. the reverse process, band by band
                x = reverse_process(denoiser, x, plan, sched, generators, eta=eta, progress=progress,
                                    execution=execution)
                for r0 in range(0, H, rows):  # 4. decode (the identity), clamp
                    r1 = min(H, r0 + rows)
                    samples[:, :, r0:r1] = model.decode(x.read(r0, r1).to(device)).clamp_(-1.0, 1.0)
            finally:
                execution.close()
                x.close()
    return samples
