"""Perceptual resolution enhancement of whole images (Luzi et al., Sec. 4.3).

:func:`enhance_images` is the library entry point behind ``boomerang enhance``:

1. map the image to the model's channels and upsample it naively with
   Pillow (bicubic by default, or Lanczos) to exactly round(scale x side);
2. run Boomerang at a small ``level`` on the upsampled image, in overlapping
   windows blended at every reverse step (:mod:`.tiling`, MultiDiffusion) so
   that any size works with a fixed-size pixel model, and memory is bounded by
   the window batch;
3. optionally keep the result consistent with the input (ILVR,
   :mod:`.consistency`) and fix its low-frequency colour (:mod:`.colour`).

Pixel models are run in windows of their native size; images with a side
smaller than that are stretched up to it for the model and resized back.
Latent models (Stable Diffusion) get the image reflect-padded to a multiple
of the VAE factor, encoded, denoised and decoded in windows (``tile_size``
image pixels, 512 by default), and cropped back; their consistency step acts
on the latents (an approximation: the VAE is not linear).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from boomerang import levels
from boomerang.enhance.resample import resize_float, upsample
from boomerang.enhance.options import check_enhance_args, output_size
from boomerang.errors import SettingError
from boomerang.imageio import fit_for_model, to_model_channels

__all__ = ["Enhanced", "enhance_images", "enhance_image", "LATENT_TILE_SIZE", "PIXEL_TILE_SIZE", "window_settings"]

#: Default window side in image pixels for latent models (Stable Diffusion 1.x's native 512).
LATENT_TILE_SIZE = 512
#: Default window side (pixels) of a fully convolutional pixel model (no native size).
PIXEL_TILE_SIZE = 256


@dataclass
class Enhanced:
    """One enhanced image.

    Attributes:
        pixels: float32 (H', W', C) in [0, 1]; (H', W') = round(scale x (H, W)),
            C = the model's channels.
        upsampled: float32 (H', W', C): the naive Pillow upsampling (the baseline); on the bounded
            path of large images (:mod:`.bounded`) a read-only ``numpy.memmap`` view of a
            deleted temporary file (the same values; pages are read only when used).
        plan: the :class:`boomerang.levels.NoisePlan` used.
        num_windows: windows per reverse step.
        num_denoiser_evals: window evaluations per image (windows x steps).
    """

    pixels: np.ndarray
    upsampled: np.ndarray
    plan: levels.NoisePlan
    num_windows: int
    num_denoiser_evals: int


def window_settings(model, tile_size: int | None, tile_overlap: int | None) -> tuple[int, int]:
    """(tile, overlap) in the model's space for ``tile_size`` / ``tile_overlap`` in image pixels.

    Pixel models with a native size: tile = the native size (``tile_size`` must be None or
    equal to it); overlap default tile // 4. Fully convolutional pixel models (no native size):
    ``tile_size`` (default :data:`PIXEL_TILE_SIZE`), a multiple of the model's ``size_multiple``,
    only bounds memory; overlap default tile // 4. Latent models: tile_size (default 512)
    and tile_overlap (default tile_size // 4) must be multiples of the VAE
    factor f; returned divided by f.

    Raises:
        ValueError: naming ``tile_size`` / ``tile_overlap``.
    """
    if model.pixel_space and model.native_size is None:  # fully convolutional: windows only bound memory
        m = int(model.size_multiple or 1)
        tile = PIXEL_TILE_SIZE if tile_size is None else int(tile_size)
        if tile <= 0 or tile % m:
            raise SettingError(f"`tile_size` must be a positive multiple of {m} for this model, got {tile}")
        overlap = tile // 4 if tile_overlap is None else int(tile_overlap)
        f = 1
    elif model.pixel_space:
        n = model.native_size
        if tile_size is not None and int(tile_size) != n:
            raise SettingError(f"`tile_size` must be the model's native size {n} for this pixel model, got {tile_size}")
        tile = n
        overlap = tile // 4 if tile_overlap is None else int(tile_overlap)
        f = 1
    else:
        f = model.space_factor
        tile = LATENT_TILE_SIZE if tile_size is None else int(tile_size)
        overlap = tile // 4 if tile_overlap is None else int(tile_overlap)
        if tile % f or overlap % f:
            raise SettingError(f"`tile_size` and `tile_overlap` must be multiples of {f} for this model, got {tile} and {overlap}")
    if not 0 <= overlap < tile:
        raise SettingError(f"`tile_overlap` must be in [0, {tile - 1}] (smaller than the window), got {overlap}")
    return tile // f, overlap // f


def enhance_images(
    model,
    images: Sequence[np.ndarray],
    *,
    scale: float,
    level: float,
    generators,
    steps: int = 50,
    scheduler: str = "auto",
    eta: float = 0.0,
    tile_size: int | None = None,
    tile_overlap: int | None = None,
    tile_batch: int = 8,
    weighting: str = "feather",
    consistency: bool = False,
    consistency_until: float = 1.0,
    colour_fix: bool = False,
    upsampler: str = "bicubic",
    prompt: str = "",
    negative_prompt: str = "",
    guidance_scale: float = 7.5,
    progress: Callable[[int, int], None] | None = None,
    plan: levels.NoisePlan | None = None,
    work_dir=None,
) -> list[Enhanced]:
    """Enhance a batch of same-size images by ``scale`` (one generator each).

    Args:
        model: a :class:`boomerang.models.DiffusionModel`.
        images: float arrays (H, W), (H, W, 1) or (H, W, 3) in [0, 1], all the
            same size (e.g. ``boomerang.imageio.read_image(...).pixels``:
            EXIF-upright, alpha composited, 16-bit scaled). For several samples
            of one image pass it several times with different generators.
        scale: upsampling factor in [1, 64] (fractional allowed).
        level: Boomerang noise level in [0, 1] (0: the upsampled image, no model call).
        generators: one ``torch.Generator`` per image (the sample depends on
            nothing else: not the batch, window order or window batch).
        steps: step budget of a full chain (about level x steps evaluations per window).
        scheduler, eta: as in ``boomerang sample`` (``auto``: the model's own; exact schedule: not pndm, kdpm2,
            kdpm2-ancestral).
        tile_size, tile_overlap: window side and overlap in image pixels (see
            :func:`window_settings`).
        tile_batch: windows per model call.
        weighting: window blending, ``'feather'`` (default: weights falling off linearly
            inside the overlap) or ``'uniform'`` (MultiDiffusion's plain mean). On the 8x
            benchmark sheet the seam score was 1.07 feathered vs 1.17 uniform.
        consistency: ILVR towards the input (box-downsampling the output gives the input back).
        consistency_until: with ``consistency``, the fidelity knob F in [0, 1]: ILVR only after
            the first ceil(F n) of the n reverse steps (1: every step, the default; 0: none,
            exactly as without ``consistency``). See docs/enhance.md (perception-distortion curve).
        colour_fix: match the output's low-frequency colour to the upsampled input.
        upsampler: ``'bicubic'`` (default) or ``'lanczos'``.
        prompt, negative_prompt, guidance_scale: latent (text) models only.
        progress: ``progress(done, total)`` after each denoiser evaluation.
        plan: an exact-schedule :class:`boomerang.levels.NoisePlan` planned
            elsewhere with :func:`boomerang.core.plan` (e.g. by the dataset runner);
            default ``core.plan(model, level=level, scheduler=scheduler, steps=steps)``,
            the plan ``boomerang sample`` runs. Its level and scheduler must equal
            ``level`` and ``scheduler``.
        work_dir: where the bounded path of large images (:mod:`.bounded`) makes its private
            temporary folder (deleted before returning); default the system's (``TMPDIR``).
            The command passes the job folder ``OUT/.job`` (the output's disk).

    Returns:
        one :class:`Enhanced` per image, in order.

    Raises:
        ValueError: bad parameters (named as above; what :func:`boomerang.core.plan`
            refuses, e.g. a scheduler that cannot follow the exact grid), images of
            different sizes or shapes, a wrong number of generators.
    """
    import torch

    from boomerang.enhance.colour import colour_fix as _colour_fix
    from boomerang.reverse import per_item_generators
    from boomerang.enhance.sampler import tiled_boomerang
    from boomerang.planning import plan as make_plan

    args = check_enhance_args(scale=scale, level=level, tile_size=tile_size, tile_overlap=tile_overlap,
                              tile_batch=tile_batch, upsampler=upsampler, consistency_until=consistency_until)
    images = [to_model_channels(np.asarray(im, dtype=np.float32), model.image_channels) for im in images]
    if not images:
        raise ValueError("images is empty")
    generators = per_item_generators(generators, len(images))
    h, w = images[0].shape[:2]
    if any(im.shape[:2] != (h, w) for im in images):
        raise ValueError("images must all have the same size; enhance images of different sizes in separate calls")
    tile, overlap = window_settings(model, args.tile_size, args.tile_overlap)
    ho, wo = output_size(h, w, args.scale)
    from boomerang.planning import resolve_scheduler

    scheduler = resolve_scheduler(model, scheduler)
    if plan is None:
        f = model.space_factor  # size-dependent schedules (FLUX) are planned for one window, as the model sees it
        window = (model.image_channels, min(tile * f, ho), min(tile * f, wo))
        plan = make_plan(model, level=args.level, schedule="exact", scheduler=scheduler, steps=steps, image_shape=window)
    elif plan.schedule != "exact" or abs(plan.level - args.level) > 1e-12 or plan.scheduler != scheduler:
        raise ValueError(f"plan must be an exact-schedule plan for level {args.level} and scheduler {scheduler}, got {plan}")

    from boomerang.enhance.bounded import enhance_bounded, use_bounded
    from boomerang.enhance.tiling import make_layout

    if plan.timestep is not None and use_bounded(model, plan.scheduler, in_size=(h, w), out_size=(ho, wo), tile=tile,
                                                 consistency=consistency, colour_fix=colour_fix):
        # a large image: the same steps with x0, x_t and the upsampling in files, band by band
        n_windows = len(make_layout(ho, wo, tile, overlap))
        done = enhance_bounded(model, images, out_size=(ho, wo), upsampler=args.upsampler, plan=plan,
                               generators=generators, tile=tile, overlap=overlap, tile_batch=args.tile_batch,
                               weighting=weighting, eta=eta, consistency=consistency,
                               consistency_until=args.consistency_until, progress=progress, work_dir=work_dir)
        return [Enhanced(p, u, plan, n_windows, n_windows * plan.num_denoiser_evals) for p, u in done]

    # 1. Naive upsampling to the exact output size.
    up = [upsample(im, ho, wo, args.upsampler) for im in images]

    if plan.timestep is None and model.pixel_space:  # level 0: the upsampled image, no model call
        return [Enhanced(u.copy(), u, plan, 0, 0) for u in up]

    # Fit to what the model takes: pixel models with a native size at least one native window;
    # fully convolutional pixel models sides that are multiples of their downsampling factor
    # (resized, like the native path, so that consistency compares the same picture); latent
    # models multiples of f (padded).
    if model.pixel_space:
        m = 1 if model.native_size is not None else int(model.size_multiple or 1)
        hw, ww = (max(ho, tile), max(wo, tile)) if model.native_size is not None else (-(-ho // m) * m, -(-wo // m) * m)
        work = [resize_float(u, hw, ww, "bicubic") if (hw, ww) != (ho, wo) else u for u in up]
        restore = (lambda a: resize_float(a, ho, wo, "bicubic")) if (hw, ww) != (ho, wo) else (lambda a: a)
    else:
        fitted = [fit_for_model(u, multiple_of=model.size_multiple) for u in up]
        work = [fi.pixels for fi in fitted]
        restore = fitted[0].restore

    # [B, C, h, w] in [-1, 1]: x * 2 - 1 in place on the fresh stack (the same float32 operations as
    # out of place, without two image-sized temporaries)
    x0 = torch.from_numpy(np.stack(work).astype(np.float32, copy=False)).permute(0, 3, 1, 2)
    x0.mul_(2.0).sub_(1.0)
    low = None
    iterations = 1 if (ho % h == 0 and wo % w == 0) else 3
    if consistency:
        if model.pixel_space:
            low = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() * 2.0 - 1.0  # the input itself
        else:
            f = model.space_factor
            low = (max(1, round(x0.shape[-2] / f / args.scale)), max(1, round(x0.shape[-1] / f / args.scale)))
    samples = tiled_boomerang(
        model, x0, plan, generators, tile=tile, overlap=overlap, tile_batch=args.tile_batch, weighting=weighting,
        eta=eta, consistency_low=low, consistency_iterations=iterations, consistency_until=args.consistency_until,
        prompt=prompt,
        negative_prompt=negative_prompt, guidance_scale=guidance_scale, progress=progress,
    )
    if colour_fix and plan.timestep is not None:
        ref = x0.to(samples)
        samples = _colour_fix(samples, ref, sigma=args.scale).clamp(-1.0, 1.0)

    n_windows = len(make_layout(samples.shape[-2] // model.space_factor,
                                samples.shape[-1] // model.space_factor, tile, overlap))
    # to [0, 1] in place (the same float32 operations as out-of-place; samples is not used again):
    # no image-sized temporaries
    arr = samples.permute(0, 2, 3, 1).numpy()
    arr += 1.0
    arr /= 2.0
    np.clip(arr, 0.0, 1.0, out=arr)
    return [Enhanced(restore(a).astype(np.float32, copy=False), u, plan, n_windows, n_windows * plan.num_denoiser_evals)
            for a, u in zip(arr, up)]


def enhance_image(model, pixels: np.ndarray, *, scale: float, level: float, generator, **kwargs) -> Enhanced:
    """Enhance one image with one generator: ``enhance_images(model, [pixels], generators=[generator], ...)[0]``.

    See :func:`enhance_images` for the arguments, result and errors.
    """
    return enhance_images(model, [pixels], scale=scale, level=level, generators=[generator], **kwargs)[0]
