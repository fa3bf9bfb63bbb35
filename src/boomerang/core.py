"""Boomerang local sampling: the algorithm core (Luzi et al., Sec. 3; Fig. 1).

Planning is apart from execution. :func:`plan` (:mod:`boomerang.planning`,
re-exported here) decides, once, where noise is added (t) and which timesteps
the reverse process visits (a :class:`~boomerang.levels.NoisePlan`, plain
data). :func:`boomerang_sample` then executes a plan on a batch of images x0:

1. encode x0 into the model's space (identity for pixel models, the VAE for
   latent models);
2. jump forward to step t with the model's own schedule,
   ``x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps``, eps ~ N(0, I)
   (the closed-form forward process, DDPM Eq. 4);
3. run the reverse process over ``plan.timesteps`` down to 0 (the partial
   reverse diffusion, :func:`boomerang.reverse.reverse_process`, the one
   reverse loop), conditioned on a prompt where the model takes one;
4. decode.

The result is a local sample: near x0 on the model's image manifold; the level
t / (T-1) sets how near.

Randomness. Every item has its own ``torch.Generator``; eps is drawn per item
on the CPU in float32 and then moved to the device, and ancestral noise is
drawn by diffusers from the list of per-item generators, so a sample depends
only on its generator, never on the batch size, order or device. On the CPU
the networks run batched with batch-invariant kernels (``model.batch_invariant``,
see :mod:`boomerang.models`), so float32 samples on the CPU are bit-identical
whatever the batch.

Stochastic vs deterministic reverse processes. ``ddpm`` (and ``ddim`` with
eta > 0) add fresh Gaussian noise at every reverse step: this is the
stochastic (ancestral) process of the paper. Deterministic solvers (``ddim``
with eta = 0, ``euler``, ``dpmsolver++``, ``pndm``) map x_t to one output, so
the variety between samples comes only from the forward noise eps; at small
levels their samples differ less from each other than ddpm's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from boomerang.errors import SettingError
from boomerang.levels import NoisePlan
from boomerang.planning import (
    MAX_START_SIGMA,
    SCHEDULES,
    check_start_sigma,
    plan,
    reference_timestep,
    returns_input_pixels,
)
from boomerang.reverse import add_noise, per_item_generators, per_item_noise, reverse_process, scheduler_for
from boomerang.schedulers import SCHEDULER_NAMES

__all__ = [
    "SCHEDULER_NAMES",
    "SCHEDULES",
    "MAX_START_SIGMA",
    "BoomerangOutput",
    "plan",
    "boomerang_sample",
    "returns_input_pixels",
    "check_start_sigma",
    "reference_timestep",
]


@dataclass
class BoomerangOutput:
    """The result of :func:`boomerang_sample`.

    Attributes:
        samples: float32 CPU tensor [B, C, H, W], values clamped to [-1, 1].
        plan: the :class:`NoisePlan` executed. ``plan.timestep`` is the noise
            timestep (None: identity, nothing added); for the ``reference``
            schedule it can differ from ``plan.timesteps[0]``.
        alpha_bar: ``plan.alpha_bar``: alpha_bar at the noise timestep (1.0 for
            the identity; None for ``from_noise``).
        scheduler_name: the registry name used.
        scheduler_config: the scheduler's full config (dict) for metadata.
        num_denoiser_evals: denoiser evaluations per sample (len(plan.timesteps));
            classifier-free guidance doubles their batch, not their number.
        windows: ``(tile, overlap)`` when the denoiser ran on blended windows, else None.
    """

    samples: torch.Tensor
    plan: NoisePlan
    alpha_bar: float | None
    scheduler_name: str
    scheduler_config: dict[str, Any] = field(default_factory=dict)
    num_denoiser_evals: int = 0
    windows: tuple[int, int] | None = None


_make_plan = plan  # boomerang_sample's argument ``plan`` shadows the function


# ----------------------------------------------------------------------------- execution


def boomerang_sample(
    model,
    x0: torch.Tensor,
    plan: NoisePlan | None = None,
    generators=None,
    *,
    eta: float = 0.0,
    prompt: str = "",
    negative_prompt: str = "",
    guidance_scale: float = 7.5,
    progress: Callable[[int, int], None] | None = None,
    windows: tuple[int, int] | None = None,
    tile_batch: int = 1,
    work_dir=None,
    **plan_args,
) -> BoomerangOutput:
    """Boomerang local samples of a batch of images (paper Sec. 3, Fig. 1): execute a plan.

    Args:
        model: a :class:`boomerang.models.DiffusionModel` (``load_model``).
        x0: float tensor [B, C, H, W], values in [-1, 1], C = model.image_channels;
            pixel models: H = W = native_size; latent models: multiples of
            size_multiple.
        plan: a :class:`NoisePlan` from :func:`plan`. Omitted: made here from
            ``plan_args`` (``level``, ``timestep``, ``schedule``, ``from_noise``,
            ``scheduler``, ``steps``: see :func:`plan`).
        generators: one ``torch.Generator`` per item (len B), e.g. from
            :func:`boomerang.seeds.item_generator`; all randomness comes from
            them (latent models on the img2img schedule also draw their VAE
            posterior sample from them, then the noise: the pipeline's order).
        eta: DDIM's eta (>= 0); ignored by the other schedulers.
        prompt, negative_prompt, guidance_scale: text conditioning of latent
            models, with classifier-free guidance (w <= 1: no unconditional
            pass); ignored by pixel models.
        progress: optional ``progress(done, total)`` called after each reverse step.
        windows: ``(tile, overlap)`` in model-space pixels: the denoiser runs on overlapping
            windows of x_t, blended at every reverse step (MultiDiffusion, the windowed denoiser of
            ``enhance``: :func:`boomerang.enhance.tiling.windowed_denoiser`) while the forward jump,
            the scheduler steps and all noise act on the whole image (so the noise never depends
            on the windows). For fully convolutional pixel models on images above
            :data:`boomerang.windowing.WINDOW_ABOVE_PIXELS` (``sample`` and the dataset commands
            choose it: :func:`boomerang.windowing.sample_windows`); an image no larger than one
            window is sampled exactly as with ``None``. Memory then grows with the window, not the
            image. ``None`` (default): the model sees the whole image.
        tile_batch: windows per model call when ``windows`` is set (memory bound; never changes a sample).
        work_dir: where a windowed sample that takes the bounded path
            (:func:`boomerang.bounded_sample.bounded_reason` is None: a pixel model on the CPU, ddpm / ddim /
            euler, at least ``enhance.banded.BANDED_MIN_PIXELS`` pixels) keeps x0 and x_t in files, in a private
            temporary folder (default ``TMPDIR``); the same sample, with memory bounded by the windows and bands.

    Returns:
        :class:`BoomerangOutput` (samples float32 CPU [B, C, H, W] in [-1, 1]).
        The identity plan returns x0 unchanged for pixel models (no model
        call) and the VAE round trip (posterior mode) for latent models.

    Raises:
        ValueError: what :func:`plan` raises; bad eta or guidance_scale; x0 of
            the wrong shape, range or channel count; the wrong number of
            generators; a non-finite model output (e.g. float16 overflow).
    """
    if plan is None:
        plan = _make_plan(model, image_shape=tuple(getattr(x0, "shape", ())[1:]) or None, **plan_args)
    elif plan_args:
        raise TypeError(f"give either a plan or plan arguments, not both: {', '.join(plan_args)}")
    generators, eta, guidance_scale = _check_inputs(model, x0, generators, eta, guidance_scale)
    device = model.device
    sched = scheduler_for(plan, model.scheduler_config, device)
    if plan.is_identity:
        samples = x0.detach().to("cpu", torch.float32).clone() if model.pixel_space else \
            model.decode(model.encode(x0)).clamp(-1.0, 1.0)
        return BoomerangOutput(samples, plan, 1.0, plan.scheduler, dict(sched.config), 0)

    cond, uncond = model.encode_prompt(prompt, negative_prompt, guidance_scale)
    denoiser, layout = _windowed(model, x0, windows, tile_batch, cond, uncond, guidance_scale)
    used = (int(windows[0]), int(windows[1])) if layout is not None else None
    if layout is not None:
        from boomerang.bounded_sample import bounded_reason, sample_bounded

        if bounded_reason(model, plan, layout.height, layout.width) is None:  # x0, x_t in files, band by band
            samples = sample_bounded(model, x0, plan, sched, generators, denoiser, eta=eta, progress=progress,
                                     work_dir=work_dir)
            return BoomerangOutput(samples, plan, plan.alpha_bar, plan.scheduler, dict(sched.config),
                                   plan.num_denoiser_evals, used)

    # 1. Encode x0 into the model's space (img2img on a latent model: a VAE posterior sample per item).
    # 2. Forward jump to the noise timestep (from_noise: x_T ~ N(0, I) times init_noise_sigma).
    if plan.schedule == "global":
        eps = per_item_noise(generators, model.model_shape(tuple(x0.shape[1:])), device)
        x = eps * getattr(sched, "init_noise_sigma", 1.0)  # flow-matching schedulers: x_1 = eps
    else:
        z0 = model.encode(x0, generators=generators if plan.schedule == "img2img" else None)
        eps = per_item_noise(generators, tuple(z0.shape[1:]), device)
        x = add_noise(sched, plan, z0, eps, device)

    # 3. Partial reverse process over the plan's timesteps, down to x0, with the model's (guided) denoiser.
    x = reverse_process(denoiser, x, plan, sched, generators, eta=eta, progress=progress)

    # 4. Decode back to images in [-1, 1].
    samples = model.decode(x).clamp(-1.0, 1.0)
    return BoomerangOutput(samples, plan, plan.alpha_bar, plan.scheduler, dict(sched.config), plan.num_denoiser_evals,
                           used)


def _windowed(model, x0, windows, tile_batch, cond, uncond, guidance_scale):
    """(denoiser, layout): the model's (guided) denoiser, or with ``windows`` over more than one window
    of the model-space image the windowed denoiser (MultiDiffusion) and its layout (else None)."""

    def denoiser(x_in, t):
        return model.predict(x_in, t, cond=cond, uncond=uncond, guidance_scale=guidance_scale)

    if windows is None:
        return denoiser, None
    from boomerang.enhance.tiling import make_layout, windowed_denoiser

    h, w = model.model_shape(tuple(x0.shape[1:]))[-2:]
    layout = make_layout(h, w, int(windows[0]), int(windows[1]))
    if len(layout) == 1:  # one window: the whole image, the plain denoiser (the same numbers)
        return denoiser, None
    return windowed_denoiser(model, layout, cond=cond, uncond=uncond, guidance_scale=guidance_scale,
                             tile_batch=tile_batch), layout


# ----------------------------------------------------------------------------- input checks


def _check_inputs(model, x0, generators, eta, guidance_scale):
    try:
        eta = float(eta)
        guidance_scale = float(guidance_scale)
    except (TypeError, ValueError):
        raise SettingError(f"`eta` and `guidance_scale` must be numbers, got {eta!r}, {guidance_scale!r}") from None
    if not (eta == eta and 0.0 <= eta <= 1e6):
        raise SettingError(f"`eta` must be a number >= 0 (0: deterministic DDIM, 1: DDPM-like), got {eta}")
    if not guidance_scale == guidance_scale or abs(guidance_scale) == float("inf"):
        raise SettingError(
            f"`guidance_scale` must be a finite number (7.5 is usual; <= 1 disables guidance), got {guidance_scale}"
        )
    if not isinstance(x0, torch.Tensor) or x0.dim() != 4 or not x0.is_floating_point():
        raise ValueError(f"x0 must be a float tensor [B, C, H, W] in [-1, 1], got {getattr(x0, 'shape', type(x0))}")
    if not torch.isfinite(x0).all() or x0.min() < -1.001 or x0.max() > 1.001:
        raise ValueError(
            f"x0 must hold finite values in [-1, 1] (got min {float(x0.min()):.4g}, max {float(x0.max()):.4g}); "
            "map 8-bit images with x / 127.5 - 1 (16-bit: x / 32767.5 - 1)"
        )
    if x0.shape[1] != model.image_channels:
        raise ValueError(f"x0 has {x0.shape[1]} channels but the model takes {model.image_channels}")
    return per_item_generators(generators, x0.shape[0]), eta, guidance_scale

