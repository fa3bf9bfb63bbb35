"""Boomerang local sampling: the algorithm core (Luzi et al., Sec. 3; Fig. 1).

Given an image x0, Boomerang

1. plans the timesteps: where noise is added (t) and which timesteps the
   reverse process visits (the grid, :mod:`boomerang.levels`);
2. encodes x0 into the model's space (identity for pixel models, the VAE for
   latent models);
3. jumps forward to step t with the model's own schedule,
   ``x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps``, eps ~ N(0, I)
   (the closed-form forward process, DDPM Eq. 4);
4. runs the reverse process from t down to 0 (the partial reverse diffusion),
   conditioned on a prompt where the model takes one;
5. decodes.

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

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from boomerang import levels
from boomerang.levels import NoisePlan
from boomerang.schedulers import (
    CUSTOM_GRID_SCHEDULERS,
    SCHEDULER_NAMES,
    check_scheduler_name,
    make_scheduler,
    set_grid,
    step_kwargs,
)

__all__ = ["SCHEDULER_NAMES", "SCHEDULES", "BoomerangOutput", "boomerang_sample"]

SCHEDULES: tuple[str, ...] = ("exact", "img2img", "reference")


@dataclass
class BoomerangOutput:
    """The result of :func:`boomerang_sample`.

    Attributes:
        samples: float32 CPU tensor [B, C, H, W], values clamped to [-1, 1].
        plan: where noise was added and the timesteps denoised. ``plan.timestep``
            is the noise timestep (None: identity, nothing added); for the
            ``reference`` schedule it can differ from ``plan.timesteps[0]``.
        alpha_bar: alpha_bar at the noise timestep (the signal fraction of x_t's
            variance); 1.0 for the identity; None for ``from_noise``.
        scheduler_name: the registry name used.
        scheduler_config: the scheduler's full config (dict) for metadata.
        num_denoiser_evals: denoiser evaluations per sample (len(plan.timesteps));
            classifier-free guidance doubles their batch, not their number.
    """

    samples: torch.Tensor
    plan: NoisePlan
    alpha_bar: float | None
    scheduler_name: str
    scheduler_config: dict[str, Any] = field(default_factory=dict)
    num_denoiser_evals: int = 0


# ----------------------------------------------------------------------------- helpers


def _per_item_noise(generators, shape, device) -> torch.Tensor:
    """[B, *shape] standard normal noise, row i from generators[i], drawn on the CPU in float32."""
    rows = [torch.randn((1, *shape), generator=g, device="cpu", dtype=torch.float32) for g in generators]
    return torch.cat(rows).to(device)


def _check_inputs(model, x0, generators, schedule, scheduler, steps, eta, guidance_scale):
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    check_scheduler_name(scheduler)
    steps = levels.check_positive_int(steps, "steps")
    try:
        eta = float(eta)
        guidance_scale = float(guidance_scale)
    except (TypeError, ValueError):
        raise ValueError(f"eta and guidance_scale must be numbers, got {eta!r}, {guidance_scale!r}") from None
    if not (eta == eta and 0.0 <= eta <= 1e6):
        raise ValueError(f"eta must be a number >= 0 (0: deterministic DDIM, 1: DDPM-like), got {eta}")
    if not guidance_scale == guidance_scale or abs(guidance_scale) == float("inf"):
        raise ValueError(f"guidance_scale must be a finite number (7.5 is usual; <= 1 disables guidance), got {guidance_scale}")
    if not isinstance(x0, torch.Tensor) or x0.dim() != 4 or not x0.is_floating_point():
        raise ValueError(f"x0 must be a float tensor [B, C, H, W] in [-1, 1], got {getattr(x0, 'shape', type(x0))}")
    if not torch.isfinite(x0).all() or x0.min() < -1.001 or x0.max() > 1.001:
        raise ValueError(
            f"x0 must hold finite values in [-1, 1] (got min {float(x0.min()):.4g}, max {float(x0.max()):.4g}); "
            "map 8-bit images with x / 127.5 - 1 (16-bit: x / 32767.5 - 1)"
        )
    if x0.shape[1] != model.image_channels:
        raise ValueError(f"x0 has {x0.shape[1]} channels but the model takes {model.image_channels}")
    if isinstance(generators, torch.Generator):
        generators = [generators]
    generators = list(generators)
    if len(generators) != x0.shape[0]:
        raise ValueError(f"need one generator per image: got {len(generators)} generators for a batch of {x0.shape[0]}")
    return generators, steps, eta, guidance_scale


def _identity(model, x0, plan, sched_name, sched, alpha_bar=1.0) -> BoomerangOutput:
    """Level 0 (or zero kept steps): pixel models return x0 unchanged, without a model
    call; latent models the VAE round trip decode(encode(x0)) (posterior mode)."""
    if model.kind == "pixel":
        samples = x0.detach().to("cpu", torch.float32).clone()
    else:
        samples = model.decode(model.encode(x0)).clamp(-1.0, 1.0)
    config = dict(sched.config) if sched is not None else {}
    return BoomerangOutput(samples, plan, alpha_bar, sched_name, config, 0)


def _alpha_bar(sched, t: int) -> float:
    return float(sched.alphas_cumprod[int(t)])


def reference_timestep(level: float, timestep: int | None, num_train_timesteps: int) -> int:
    """The noise timestep of the ``reference`` schedule: ``timestep`` if given, else
    t_ref = min(int(T * level), T - 1) (the VP rule of diffusers' DDIM noise-comparative pipeline)."""
    T = int(num_train_timesteps)
    return int(timestep) if timestep is not None else min(int(T * level), T - 1)


#: Schedulers that turn the denoiser's eps into x0 without clipping, x0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar):
#: any error in eps is multiplied by sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) at the first step.
UNCLIPPED_X0_SCHEDULERS: tuple[str, ...] = ("euler", "dpmsolver++")
#: Largest start sigma_t accepted for those schedulers. Stable Diffusion's t = 999 is 14.6; the cosine
#: schedule's t = 999 is about 2e4, where euler returned noise for every test digit.
MAX_START_SIGMA = 1000.0


def check_start_sigma(scheduler: str, scheduler_config: dict, timestep: int | None) -> None:
    """Refuse a start where an unclipped scheduler's first x0 estimate would be noise.

    Args:
        scheduler: a name from ``SCHEDULER_NAMES``.
        scheduler_config: the model's scheduler config (its ``alphas_cumprod`` is used).
        timestep: the noise timestep t of the plan, or ``None`` (identity: nothing to check).

    Raises:
        ValueError: ``scheduler`` is ``euler`` or ``dpmsolver++`` and sigma_t =
            sqrt((1 - alpha_bar_t) / alpha_bar_t) > ``MAX_START_SIGMA`` (e.g. t = 999 of a
            cosine schedule, alpha_bar = 2.4e-9); the message names the schedulers and the
            largest level that work.
    """
    if timestep is None or scheduler not in UNCLIPPED_X0_SCHEDULERS:
        return
    ab = make_scheduler("ddpm", scheduler_config).alphas_cumprod.double()
    sigma = ((1 - ab) / ab).sqrt()
    if float(sigma[int(timestep)]) <= MAX_START_SIGMA:
        return
    ok = int((sigma <= MAX_START_SIGMA).nonzero().max())
    T = len(ab)
    raise ValueError(
        f"--scheduler {scheduler} cannot start at t={int(timestep)} of this model: alpha_bar_t = {float(ab[int(timestep)]):.2g} "
        f"(sigma_t = {float(sigma[int(timestep)]):.3g} > {MAX_START_SIGMA:g}) turns its first x0 estimate into noise; "
        f"use --scheduler ddpm or ddim, or a level <= {math.floor(1000 * ok / T) / 1000:.3f} (t <= {ok})"
    )


def _sigma_space(sched) -> bool:
    """True for schedulers whose samples are x_t / sqrt(alpha_bar_t) (Euler: init_noise_sigma > 1)."""
    from diffusers import EulerDiscreteScheduler

    return isinstance(sched, EulerDiscreteScheduler)


# ----------------------------------------------------------------------------- the sampler


def boomerang_sample(
    model,
    x0: torch.Tensor,
    *,
    generators,
    level: float | None = None,
    timestep: int | None = None,
    schedule: str = "exact",
    from_noise: bool = False,
    scheduler: str = "ddpm",
    steps: int = 50,
    eta: float = 0.0,
    prompt: str = "",
    negative_prompt: str = "",
    guidance_scale: float = 7.5,
    progress: Callable[[int, int], None] | None = None,
) -> BoomerangOutput:
    """Boomerang local samples of a batch of images (paper Sec. 3, Fig. 1).

    Args:
        model: a :class:`boomerang.models.DiffusionModel` (``load_model``).
        x0: float tensor [B, C, H, W], values in [-1, 1], C = model.image_channels;
            pixel models: H = W = native_size; latent models: multiples of
            size_multiple.
        generators: one ``torch.Generator`` per item (len B), e.g. from
            :func:`boomerang.seeds.item_generator`; all randomness comes from them.
        level: the noise level in [0, 1]; or give ``timestep`` (an int in [0, T-1]).
            ``exact``: t = round(level (T-1)); ``img2img``: level is diffusers'
            ``strength``; ``reference``: t = min(int(T level), T-1).
        schedule:
            * ``'exact'`` (default): noise at exactly t, then the grid
              :func:`boomerang.levels.reverse_timesteps` (t first, about
              level x steps evaluations, at least one). Level 0: the identity.
            * ``'img2img'``: diffusers' StableDiffusionImg2ImgPipeline ``strength``
              semantics, exactly: set_timesteps(steps), init = min(int(steps
              strength), steps), keep ``timesteps[(steps - init) order:]``, noise at
              the first kept timestep; latent models encode with a VAE posterior
              *sample* from each item's generator, then draw the noise from the same
              generator (the pipeline's draw order). Few kept steps quantise the
              noise level to the step grid; zero kept steps (strength <
              1/steps) return the identity (VAE round trip) instead of failing.
            * ``'reference'``: the authors' notebook: noise at
              t_ref = min(int(T level), T-1) (VP formula), the scheduler's usual
              grid set_timesteps(steps) with every timestep above t_ref skipped,
              VAE posterior mode. Unlike ``exact``, the first denoised timestep is
              the largest grid entry <= t_ref, generally *below* t_ref (the model
              is told less noise than x_t has). If no grid entry is <= t_ref, the
              identity (VAE round trip) is returned, with zero evaluations. One
              deviation from the notebook: when the kept part of a pndm (PLMS) grid
              starts with PLMS's repeated warm-up timestep, the first copy is
              skipped (otherwise PLMS would treat x as one grid step noisier).
        from_noise: ordinary global sampling: x_T ~ N(0, I) (times the
            scheduler's init_noise_sigma) on the scheduler's own grid
            set_timesteps(steps); x0 only gives the shape. Equals diffusers'
            DDPMPipeline / DDIMPipeline for the same generators. level must be
            None or 1 and timestep None.
        scheduler: one of ``SCHEDULER_NAMES``; ``pndm`` only with img2img,
            reference or from_noise.
        steps: the step budget of a full chain (>= 1); see ``schedule``.
        eta: DDIM's eta (>= 0); ignored by the other schedulers.
        prompt, negative_prompt, guidance_scale: text conditioning of latent
            models, with classifier-free guidance (w <= 1: no unconditional
            pass); ignored by pixel models.
        progress: optional ``progress(done, total)`` called after each reverse step.

    Returns:
        :class:`BoomerangOutput` (samples float32 CPU [B, C, H, W] in [-1, 1]).

    Raises:
        ValueError: bad level/timestep/steps/eta, unknown schedule or scheduler,
            pndm with the exact schedule, x0 of the wrong shape, wrong number of
            generators, a non-finite model output (e.g. float16 overflow), or
            euler / dpmsolver++ starting at sigma_t > ``MAX_START_SIGMA``
            at the noise timestep (see :func:`check_start_sigma`).

    Deterministic solvers (ddim eta=0, euler, dpmsolver++, pndm) get their
    variety only from the forward noise eps; ddpm and ddim with eta>0 add fresh
    noise at every step (the paper's stochastic process).
    """
    generators, steps, eta, guidance_scale = _check_inputs(
        model, x0, generators, schedule, scheduler, steps, eta, guidance_scale
    )
    if model.kind == "pixel" and model.unet.config.out_channels != model.unet.config.in_channels and scheduler != "ddpm":
        raise ValueError(
            "this model also predicts the variance (learned variance, twice the output channels); "
            "only --scheduler ddpm can use it"
        )
    T = model.num_train_timesteps
    device = model.device
    batch = x0.shape[0]
    sched = make_scheduler(scheduler, model.scheduler_config)

    # 1. Plan the timesteps: the noise timestep and the reverse grid.
    if from_noise:
        if timestep is not None or (level is not None and levels.check_level(level) != 1.0):
            raise ValueError("from_noise samples globally from pure noise: give no level/timestep (or level 1)")
        sched.set_timesteps(steps, device=device)
        timesteps = sched.timesteps
        plan = NoisePlan(1.0, int(timesteps[0]), tuple(int(t) for t in timesteps), T, "global")
    elif schedule == "exact":
        if scheduler not in CUSTOM_GRID_SCHEDULERS:
            raise ValueError(
                f"the {scheduler} scheduler cannot follow the exact grid; use one of "
                f"{', '.join(CUSTOM_GRID_SCHEDULERS)}, or --schedule reference / img2img"
            )
        plan = levels.plan_exact(level=level, timestep=timestep, steps=steps, num_train_timesteps=T)
        if plan.timestep is None:
            return _identity(model, x0, plan, scheduler, sched)
        set_grid(sched, list(plan.timesteps), device=device)
        timesteps = sched.timesteps
        assert int(timesteps[0]) == plan.timestep
    else:
        lvl = _compat_level(level, timestep, T)
        sched.set_timesteps(steps, device=device)
        order = getattr(sched, "order", 1)
        if schedule == "img2img":
            init_timestep = min(int(steps * lvl), steps)
            t_start = max(steps - init_timestep, 0)
            begin = t_start * order
            t_noise = None  # the first kept timestep, below
        else:  # reference
            t_ref = reference_timestep(lvl, timestep, T)
            kept = [i for i, t in enumerate(sched.timesteps) if int(t) <= t_ref]
            if not kept or lvl == 0:
                begin = len(sched.timesteps)  # nothing to denoise: the identity
            elif len(kept) >= 2 and int(sched.timesteps[kept[0]]) == int(sched.timesteps[kept[1]]):
                # PLMS (pndm) repeats its second timestep for its warm-up; entering at the first
                # copy would make the second call treat x as one step noisier. Enter at the second.
                begin = kept[1]
            else:
                begin = kept[0]
            t_noise = t_ref
        timesteps = sched.timesteps[begin:]
        if len(timesteps) == 0:
            plan = NoisePlan(lvl, None, (), T, schedule)
            return _identity(model, x0, plan, scheduler, sched)
        if hasattr(sched, "set_begin_index"):
            sched.set_begin_index(begin)
        if t_noise is None:
            t_noise = int(timesteps[0])
        plan = NoisePlan(lvl, int(t_noise), tuple(int(t) for t in timesteps), T, schedule)
    if not from_noise:
        check_start_sigma(scheduler, model.scheduler_config, plan.timestep)  # x_t is made at plan.timestep

    # 2. Encode x0 into the model's space (img2img: VAE posterior sample per item).
    if from_noise:
        z0 = None
        shape = _latent_shape(model, x0)
    else:
        z0 = model.encode(x0, generators=generators if (schedule == "img2img" and model.kind == "latent") else None)
        shape = tuple(z0.shape[1:])

    # 3. Forward jump to the noise timestep: x_t = sqrt(alpha_bar_t) z0 + sqrt(1 - alpha_bar_t) eps.
    eps = _per_item_noise(generators, shape, device)
    if from_noise:
        x = eps * sched.init_noise_sigma
        alpha_bar = None
    elif schedule == "reference":
        # The notebook's add_noise at t_ref, which need not be on the grid: the VP formula
        # (what DDPM/DDIM/PNDM add_noise compute); sigma-space schedulers (Euler) take x_t / sqrt(alpha_bar).
        ab = sched.alphas_cumprod.to(device=device, dtype=torch.float32)[plan.timestep]
        x = ab**0.5 * z0 + (1 - ab) ** 0.5 * eps
        if _sigma_space(sched):
            x = x / ab**0.5
        alpha_bar = _alpha_bar(sched, plan.timestep)
    else:  # exact, img2img: add_noise at exactly the first timestep denoised
        x = sched.add_noise(z0, eps, timesteps[:1].repeat(batch))
        alpha_bar = _alpha_bar(sched, plan.timestep)

    # 4. Partial reverse process from the first timestep down to x0.
    cond, uncond = model.encode_prompt(prompt, negative_prompt, guidance_scale)
    kwargs = step_kwargs(scheduler, eta=eta, generators=generators)
    total = len(timesteps)
    for i, t in enumerate(timesteps):
        x_in = sched.scale_model_input(x, t)
        out = model.predict(x_in, t, cond=cond, uncond=uncond, guidance_scale=guidance_scale)
        x = sched.step(out, t, x, **kwargs).prev_sample
        if progress is not None:
            progress(i + 1, total)

    # 5. Decode back to images in [-1, 1].
    samples = model.decode(x).clamp(-1.0, 1.0)
    return BoomerangOutput(samples, plan, alpha_bar, scheduler, dict(sched.config), total)


def _compat_level(level, timestep, T) -> float:
    if (level is None) == (timestep is None):
        raise ValueError("give exactly one of level (a fraction in [0, 1]) or timestep (an integer in [0, T-1])")
    if timestep is not None:
        return levels.timestep_to_level(levels.check_timestep(timestep, T), T)
    return levels.check_level(level)


def _latent_shape(model, x0) -> tuple[int, ...]:
    if model.kind == "pixel":
        return tuple(x0.shape[1:])
    f = model.size_multiple
    h, w = x0.shape[2], x0.shape[3]
    if h % f or w % f:
        raise ValueError(f"image sides must be multiples of {f} for this model, got {h}x{w}")
    return (model.unet.config.in_channels, h // f, w // f)
