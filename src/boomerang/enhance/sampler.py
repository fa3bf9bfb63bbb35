"""The tiled Boomerang reverse process: MultiDiffusion windows, optional ILVR (enhancement step 2).

Boomerang (Luzi et al., Sec. 3) on an image of any size: the same forward jump
and the same reverse loop as :func:`boomerang.core.boomerang_sample`
(:mod:`boomerang.reverse`), with two things plugged in. The denoiser sees
overlapping windows of x_t and their outputs are blended into one output for
the whole image (:func:`boomerang.enhance.tiling.blend_windows`,
MultiDiffusion); the scheduler then steps the *whole* image, so its noise (the
forward eps and ddpm's fresh noise) is drawn for the whole image from the
image's own generator, never per window. With ``consistency`` each completed
reverse step is followed by the ILVR replacement of x's low frequencies
(:mod:`.consistency`), the loop's per-step hook.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from boomerang.enhance.bands import BandFile
from boomerang.enhance.banded import BAND_ROWS
from boomerang.enhance.consistency import Consistency
from boomerang.enhance.resample import area_down
from boomerang.enhance.tiling import blend_windows, make_layout, windowed_denoiser
from boomerang.levels import NoisePlan
from boomerang.reverse import add_noise, per_item_generators, per_item_noise, reverse_process, scheduler_for
from boomerang.schedulers import is_flow_scheduler, works_in_sigma_space

__all__ = ["tiled_boomerang", "encode_tiled", "decode_tiled"]


def encode_tiled(model, x: torch.Tensor, tile: int, overlap: int, tile_batch: int = 1) -> torch.Tensor:
    """The model's encode of images [B, C, H, W] in [-1, 1], in blended windows when larger than ``tile`` pixels.

    Pixel models: the identity. Latent models: the VAE posterior mode times the
    scaling factor (``model.encode``) of each window, blended (feathered) in
    latent space; H, W, ``tile`` and ``overlap`` must be multiples of the VAE
    factor f. An image no larger than ``tile`` is encoded in one piece
    (exactly ``model.encode``). Windowed encoding differs from one-piece
    encoding where the VAE uses whole-image statistics (GroupNorm).
    """
    if model.pixel_space:
        return model.encode(x)
    f = model.space_factor
    layout = make_layout(x.shape[-2], x.shape[-1], tile, overlap, align=f)
    if len(layout) == 1:
        return model.encode(x)
    return blend_windows(lambda w: model.encode(w), x.to(model.device), layout, tile_batch=tile_batch,
                         ratio=1.0 / f, out_channels=model.model_shape(tuple(x.shape[1:]))[0], weighting="feather")


def decode_tiled(model, z: torch.Tensor, tile: int, overlap: int, tile_batch: int = 1) -> torch.Tensor:
    """``model.decode`` of [B, c, h, w] in blended windows of ``tile`` model-space pixels (latent models).

    Returns float32 CPU images [B, C, h f, w f] (not clamped)."""
    if model.pixel_space:
        return model.decode(z)
    f = model.space_factor
    layout = make_layout(z.shape[-2], z.shape[-1], tile, overlap)
    if len(layout) == 1:
        return model.decode(z)
    out = blend_windows(lambda w: model.decode(w), z, layout, tile_batch=tile_batch, ratio=float(f),
                        out_channels=model.image_channels, weighting="feather")
    return out.cpu()


def tiled_boomerang(
    model,
    x0: torch.Tensor,
    plan: NoisePlan,
    generators: Sequence[torch.Generator],
    *,
    tile: int,
    overlap: int,
    tile_batch: int = 8,
    weighting: str = "uniform",
    eta: float = 0.0,
    consistency_low: torch.Tensor | tuple[int, int] | None = None,
    consistency_iterations: int = 1,
    consistency_until: float = 1.0,
    prompt: str = "",
    negative_prompt: str = "",
    guidance_scale: float = 7.5,
    vae_tile: int | None = None,
    order: Sequence[int] | None = None,
    progress: Callable[[int, int], None] | None = None,
    band: int | None = None,
) -> torch.Tensor:
    """Boomerang local samples of images of any size, denoised in blended windows.

    Args:
        model: a :class:`boomerang.models.DiffusionModel` (or any object with the
            same ``pixel_space``, ``space_factor``, ``prediction_channels``, ``predict``, ``encode``, ``decode``, ``encode_prompt``,
            ``scheduler_config``, ``device`` members).
        x0: [B, C, H, W] float images in [-1, 1] (latent models: H, W multiples of f); or, for
            the bounded path (:mod:`.banded`; ``banded.can_band`` must allow it), a
            ``bands.BandFile`` holding them, in a private temporary folder that then also holds
            x_t's two files.
        plan: an exact-schedule :class:`boomerang.levels.NoisePlan` from
            :func:`boomerang.core.plan` (which names the scheduler and has checked
            the start); ``plan.timestep is None`` returns x0 (pixel models) or
            the VAE round trip. The denoiser (all windows of one step: one
            evaluation) runs ``len(plan.timesteps)`` times, as in ``sample``.
        generators: one ``torch.Generator`` per image; all randomness comes from them.
        tile, overlap: window side and overlap in the model's space (pixels for
            pixel models, latent pixels for latent models).
        tile_batch: windows per model call (memory bound; does not change the result).
        weighting: ``'uniform'`` (MultiDiffusion) or ``'feather'``.
        eta: DDIM's eta.
        consistency_low: ILVR reference (see :mod:`.consistency`): a tensor
            [B, C, h, w] in the model's space (the low-resolution input), or a
            size (h, w) to take area_down(encode(x0)) as the reference; None: off.
        consistency_iterations: ILVR repetitions per step (fractional scales).
        consistency_until: the fidelity knob F in [0, 1]: ILVR acts after the first
            ceil(F n) of the n reverse steps only (ILVR's conditioning range, Choi et al.
            2021 Sec. 4.2), so the last steps run unconditioned: 1 (default) is ILVR at every
            step, 0 none at all (exactly as ``consistency_low=None``).
        prompt, negative_prompt, guidance_scale: text conditioning (latent models).
        vae_tile: window side in image pixels for the VAE (latent models;
            default 8 x ``tile``).
        order: window order fed to the model (tests only; see ``blend_windows``).
        progress: ``progress(done, total)`` after each denoiser evaluation.
        band: the bounded path's rows per band (default ``banded.BAND_ROWS``; tests make it small).

    Returns:
        float32 CPU tensor [B, C, H, W], clamped to [-1, 1]; on the bounded path a ``BandFile``
        in x0's folder holding it (the same numbers).

    Raises:
        ValueError: a plan that is not ``exact`` or names no scheduler (one from
            ``levels.plan_exact``), wrong number of generators.
    """
    generators = per_item_generators(generators, x0.shape[0])
    if plan.schedule != "exact":
        raise ValueError(f"enhancement uses the exact schedule, got a {plan.schedule!r} plan")
    if plan.scheduler is None:
        raise ValueError("the plan names no scheduler: make it with boomerang.core.plan(model, ..., scheduler=...)")
    f = model.space_factor
    vae_tile = vae_tile or tile * f
    vae_overlap = overlap * f
    if plan.timestep is None:  # level 0: nothing to denoise
        if model.pixel_space:
            return x0.detach().to("cpu", torch.float32).clamp(-1, 1)
        z = encode_tiled(model, x0, vae_tile, vae_overlap)
        return decode_tiled(model, z, tile, overlap).clamp(-1, 1)

    # 1. The plan's scheduler on the plan's grid (t first, then the descending timesteps, then x0).
    sched = scheduler_for(plan, model.scheduler_config, device=model.device)
    if isinstance(x0, BandFile):  # the bounded path: the same steps, band by band (pixel models: z0 is x0)
        return _banded(model, x0, plan, sched, generators, tile=tile, overlap=overlap, tile_batch=tile_batch,
                       weighting=weighting, eta=eta, consistency_low=consistency_low,
                       consistency_iterations=consistency_iterations, consistency_until=consistency_until,
                       order=order, progress=progress, band=band or BAND_ROWS, prompt=prompt,
                       negative_prompt=negative_prompt, guidance_scale=guidance_scale)

    # 2. Encode x0 into the model's space (latent models: windowed VAE).
    z0 = encode_tiled(model, x0, vae_tile, vae_overlap)

    # 3. Forward jump of the whole image: x_t = sqrt(alpha_bar_t) z0 + sqrt(1 - alpha_bar_t) eps.
    eps = per_item_noise(generators, tuple(z0.shape[1:]), z0.device)
    x = add_noise(sched, plan, z0, eps, z0.device)
    del eps  # image-sized: not needed after the forward jump

    hook = _ilvr_hook(model, plan, sched, generators, z0, consistency_low, consistency_iterations, consistency_until)

    # 4. Partial reverse process; each denoiser evaluation sees windows, each step the whole image.
    layout = make_layout(z0.shape[-2], z0.shape[-1], tile, overlap)
    cond, uncond = model.encode_prompt(prompt, negative_prompt, guidance_scale)
    denoiser = windowed_denoiser(model, layout, cond=cond, uncond=uncond, guidance_scale=guidance_scale,
                                 tile_batch=tile_batch, weighting=weighting, order=order)

    x = reverse_process(denoiser, x, plan, sched, generators, eta=eta, hook=hook, progress=progress)

    # 5. Decode (latent models: windowed VAE) back to images in [-1, 1].
    # x is not used again: clamp the decode in place (pixel models decode to x itself)
    return decode_tiled(model, x, tile, overlap).clamp_(-1.0, 1.0)


def _ilvr_hook(model, plan, sched, generators, z0, consistency_low, consistency_iterations, consistency_until):
    """ILVR as the reverse loop's hook ``hook(i, t, x, region=None)`` (None: off). On the bounded
    path z0 and ``consistency_low`` are ``BandFile`` s and each call acts on one ``BandRegion``."""
    import torch

    hook = None
    until = float(consistency_until)
    if not 0.0 <= until <= 1.0:
        raise ValueError(f"consistency_until must be in [0, 1], got {consistency_until!r}")
    n_steps = len(dict.fromkeys(int(t) for t in plan.timesteps))  # completed reverse steps (heun: predictor+corrector = 1)
    conditioned = math.ceil(until * n_steps - 1e-9)  # ILVR after steps i < conditioned
    if consistency_low is not None and conditioned > 0:
        if isinstance(consistency_low, BandFile):  # bounded path: read by region
            ref = consistency_low
        else:
            ref = consistency_low if isinstance(consistency_low, torch.Tensor) else area_down(z0, tuple(consistency_low))
            ref = ref.to(z0.device, torch.float32)
        ilvr = Consistency(ref, iterations=consistency_iterations, bounds=(-1.0, 1.0) if model.pixel_space else None)

        def at(region):  # the whole image's ILVR, or one band's (its reference rows, its slice of the noise)
            return (ilvr, generators, {}) if region is None else (ilvr.band(region), None, {"noise": region.noise})
        if is_flow_scheduler(sched):  # x_t = (1 - sigma) x0 + sigma eps: after step i, x is at the (i+1)-th sigma
            visited = [float(v) for v in sched.sigmas.double()[plan.begin_index:]]
            # distinct sigmas in order (Heun lists each after the first twice: predictor and corrector)
            landing = [v for k, v in enumerate(visited) if k == 0 or v != visited[k - 1]][1:]

            def hook(i, t, x, region=None):
                if i >= conditioned:
                    return x
                sigma = landing[i] if t is not None else 0.0
                here, gens, kw = at(region)
                return here.apply(x, None, gens, flow_sigma=sigma, **kw)
        else:
            alphas_cumprod = sched.alphas_cumprod.double()
            sigma_space = works_in_sigma_space(sched)  # Euler, Heun, LMS: x_t / sqrt(alpha_bar_t)

            def hook(i, t, x, region=None):  # ILVR at the timestep x now sits at (None: x0, alpha_bar = 1)
                if i >= conditioned:
                    return x
                alpha_bar = float(alphas_cumprod[t]) if t is not None else 1.0
                here, gens, kw = at(region)
                return here.apply(x, alpha_bar, gens, sigma_space=sigma_space, **kw)
    return hook


def _banded(model, x0, plan, sched, generators, *, tile, overlap, tile_batch, weighting, eta, consistency_low,
            consistency_iterations, consistency_until, order, progress, band, prompt, negative_prompt, guidance_scale):
    """Steps 3-5 of :func:`tiled_boomerang` on the bounded path (:mod:`.banded`): x0 a ``BandFile``
    (a pixel model: z0 is x0), x_t in files beside it, everything band by band; the same numbers."""
    from pathlib import Path

    from boomerang.enhance.banded import ILVR_HALO, Banded, add_noise_banded, can_band

    H, W = x0.shape[-2:]
    s = 1  # ILVR's scale: the reference is the input, s times smaller (1 or a power of two)
    if consistency_low is not None and not isinstance(consistency_low, BandFile):
        raise ValueError("on the bounded path consistency_low is a BandFile of the input, like x0")
    if consistency_low is not None:
        h, w = consistency_low.shape[-2:]
        s = H // h if (H % h == 0 and W % w == 0 and H // h == W // w) else H / h
    why = can_band(model, plan.scheduler, H, W, consistency_scale=s if consistency_low is not None else None)
    if why is not None:
        raise ValueError(f"this image cannot take enhance's bounded path: {why}")
    if order is not None:
        raise ValueError("the bounded path takes the windows in the canonical order only")
    folder = Path(x0.path).parent
    device = model.device
    x = add_noise_banded(sched, plan, x0, BandFile(folder / "x_t.f32", x0.shape), generators, band, device)
    hook = _ilvr_hook(model, plan, sched, generators, x0, consistency_low, consistency_iterations, consistency_until)
    layout = make_layout(x0.shape[-2], x0.shape[-1], tile, overlap)
    cond, uncond = model.encode_prompt(prompt, negative_prompt, guidance_scale)
    denoiser = windowed_denoiser(model, layout, cond=cond, uncond=uncond, guidance_scale=guidance_scale,
                                 tile_batch=tile_batch, weighting=weighting)
    execution = Banded(folder, x0.shape, generators, band, device, halo=ILVR_HALO * s if s > 1 else 0, multiple=s)
    x = reverse_process(denoiser, x, plan, sched, generators, eta=eta, hook=hook, progress=progress,
                        execution=execution)
    for r0 in range(0, x.shape[-2], execution.rows):  # decode (pixel models: the identity), clamp, in place
        x.write(r0, model.decode(x.read(r0, min(x.shape[-2], r0 + execution.rows)).to(device)).clamp_(-1.0, 1.0))
    execution.close()  # the spare file; x (the other) is the caller's
    return x

