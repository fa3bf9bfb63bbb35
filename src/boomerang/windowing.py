"""When ``sample`` denoises in windows: the memory limits of models that run at the image's own size (torch-free).

A fully convolutional pixel model (no native size, e.g. ``ddpm-photos``) samples a photo at its
own size. Its denoiser's activations grow with the image: about 2.2 kB per pixel for
``ddpm-photos`` on the CPU (float32, batch 1; 25 s and ~0.6 GB for one call on 512x512), so a
12 MP phone photo would need ~26 GB in one call. Above :data:`WINDOW_ABOVE_PIXELS` the
denoiser therefore runs on overlapping windows of :data:`SAMPLE_TILE` pixels blended at every
reverse step (MultiDiffusion, the windowed denoiser of ``enhance``:
:func:`boomerang.enhance.tiling.windowed_denoiser`, inside the one reverse loop), while the
forward jump, the scheduler's steps and all noise act on the whole image. Peak memory is then
the windows' activations (:data:`SAMPLE_TILE_BATCH` windows of ``SAMPLE_TILE`` squared pixels)
plus a few whole-image float tensors (about :data:`WINDOWED_BYTES_PER_PIXEL` bytes per pixel,
measured); on the CPU with ddpm, ddim or euler x0 and x_t live in files instead and are stepped
band by band (:mod:`boomerang.bounded_sample`, the same sample; 47 bytes per RGB pixel measured,
docs/input.md). Time bounds the image a pixel model takes at all:
:data:`boomerang.imageio.FULL_SIZE_MAX_PIXELS` (16 MP, the same limit as latent models, worded
for each kind by :func:`boomerang.imageio.check_full_size_input`).

The rule depends only on the image's size (never on free memory), so a sample is the same on
every machine. Windowed samples are not bit-identical to whole-image ones (the UNet's GroupNorm
normalises over what it sees, and its receptive field is cut at window edges); the difference is
measured in ``benchmarks/photo_windows.py`` and stated in docs/input.md. An image no larger than
the limit is never windowed, and one window over a whole image gives exactly the whole-image sample.
"""

from __future__ import annotations

__all__ = ["WINDOW_ABOVE_PIXELS", "SAMPLE_TILE", "SAMPLE_OVERLAP", "SAMPLE_TILE_BATCH", "WINDOWED_BYTES_PER_PIXEL",
           "PIXEL_BYTES_PER_PIXEL", "sample_windows"]

#: Images of more pixels than this (after padding to the model's multiple) are denoised in windows
#: by a fully convolutional pixel model: 1024 x 1024, about 2.3 GB of activations in one call.
WINDOW_ABOVE_PIXELS: int = 1024 * 1024
#: Window side (pixels) of windowed sampling, and the overlap of neighbouring windows.
SAMPLE_TILE: int = 512
SAMPLE_OVERLAP: int = 128
#: Windows per model call (memory bound; never changes a sample on the CPU).
SAMPLE_TILE_BATCH: int = 1
#: Measured peak activation bytes per pixel of one ``ddpm-photos`` call on the whole image (CPU, float32).
PIXEL_BYTES_PER_PIXEL: int = 2200
#: Measured bytes per image pixel of a windowed ``sample`` command on the in-memory path beyond the
#: windows themselves (the decoded file, the reference, the whole-image float tensors x0, x_t, the
#: noise, the blending sums, the scheduler's output): 156.8-158.9 bytes per RGB pixel through
#: ``boomerang sample`` with a tiny fully convolutional model at 2048 and 4000 sides
#: (``benchmarks/enhance_memory.py --command sample``, ``docs/input.md``). The bounded path
#: (:mod:`boomerang.bounded_sample`) needs far less; this figure sizes the refusal message.
WINDOWED_BYTES_PER_PIXEL: int = 160


def sample_windows(model, height: int, width: int) -> tuple[int, int] | None:
    """``(tile, overlap)`` when ``sample`` denoises an image of ``height`` x ``width`` (the model's
    input, padded) in windows, else ``None``.

    Only models that work on pixels at the image's own size (``pixel_space`` and no
    ``native_size``: fully convolutional pixel models) are windowed, and only above
    :data:`WINDOW_ABOVE_PIXELS`. Latent models keep their whole-image path (their VAE and
    self-attention make windows a different sample; ``enhance`` offers windows for them).

    Args:
        model: a loaded model or its ``ModelInfo`` (``pixel_space``, ``native_size``, ``size_multiple`` are read).
        height, width: the model input's size in pixels.
    """
    if not getattr(model, "pixel_space", False) or getattr(model, "native_size", None) is not None:
        return None
    if int(height) * int(width) <= WINDOW_ABOVE_PIXELS:
        return None
    m = max(1, int(getattr(model, "size_multiple", 1) or 1))
    tile = max(m, SAMPLE_TILE // m * m)
    return tile, min(SAMPLE_OVERLAP, tile - m)
