"""Boomerang local sampling: the algorithm core (Luzi et al., Sec. 3; Fig. 1).

Planning is apart from execution. :func:`plan` decides, once, where noise is
added (t) and which timesteps the reverse process visits (a
:class:`~boomerang.levels.NoisePlan`, plain data). :func:`boomerang_sample`
then executes a plan on a batch of images x0:

1. encode x0 into the model's space (identity for pixel models, the VAE for
   latent models);
2. jump forward to step t with the model's own schedule,
   ``x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps``, eps ~ N(0, I)
   (the closed-form forward process, DDPM Eq. 4);
3. run the reverse process over ``plan.timesteps`` down to 0 (the partial
   reverse diffusion), conditioned on a prompt where the model takes one;
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

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from boomerang import levels
from boomerang.errors import SettingError
from boomerang.levels import NoisePlan
from boomerang.schedulers import (
    CUSTOM_GRID_SCHEDULERS,
    SCHEDULER_NAMES,
    check_sigma_spacing_supported,
    make_scheduler,
    set_grid,
    step_kwargs,
)

__all__ = [
    "SCHEDULER_NAMES",
    "SCHEDULES",
    "BoomerangOutput",
    "plan",
    "boomerang_sample",
    "returns_input_pixels",
    "check_start_sigma",
    "reference_timestep",
]

SCHEDULES: tuple[str, ...] = ("exact", "img2img", "reference")


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
    """

    samples: torch.Tensor
    plan: NoisePlan
    alpha_bar: float | None
    scheduler_name: str
    scheduler_config: dict[str, Any] = field(default_factory=dict)
    num_denoiser_evals: int = 0


# ----------------------------------------------------------------------------- planning


def reference_timestep(level: float, timestep: int | None, num_train_timesteps: int) -> int:
    """The noise timestep of the ``reference`` schedule: ``timestep`` if given, else
    t_ref = min(int(T * level), T - 1) (the VP rule of diffusers' DDIM noise-comparative pipeline)."""
    T = int(num_train_timesteps)
    return int(timestep) if timestep is not None else min(int(T * level), T - 1)


#: Schedulers that turn the denoiser's eps into x0 without clipping, x0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar):
#: any error in eps is multiplied by sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) at the first step.
from boomerang.schedulers import UNCLIPPED_X0_SCHEDULERS  # noqa: E402  (every scheduler but ddpm, ddim, pndm)
#: Largest start sigma_t accepted for those schedulers. Stable Diffusion's t = 999 is 14.6; the cosine
#: schedule's t = 999 is about 2e4, where euler returned noise for every test digit.
MAX_START_SIGMA = 1000.0


def check_start_sigma(scheduler: str, scheduler_config: dict, timestep: int | None, *,
                      by_timestep: bool = False) -> None:
    """Refuse a start where an unclipped scheduler's first x0 estimate would be noise.

    Args:
        scheduler: a name from ``SCHEDULER_NAMES``.
        scheduler_config: the model's scheduler config (its ``alphas_cumprod`` is used).
        timestep: the noise timestep t of the plan, or ``None`` (identity: nothing to check).
        by_timestep: the user gave a ``timestep`` (not a ``level``): the message suggests
            the largest timestep that works instead of the largest level.

    Raises:
        SettingError: ``scheduler`` is ``euler`` or ``dpmsolver++`` and sigma_t =
            sqrt((1 - alpha_bar_t) / alpha_bar_t) > ``MAX_START_SIGMA`` (e.g. t = 999 of a
            cosine schedule, alpha_bar = 2.4e-9); the message names the schedulers and the
            largest level (or, with ``by_timestep``, timestep) that work.
    """
    if timestep is None or scheduler not in UNCLIPPED_X0_SCHEDULERS:
        return
    ab = make_scheduler("ddpm", scheduler_config).alphas_cumprod.double()
    sigma = ((1 - ab) / ab).sqrt()
    if float(sigma[int(timestep)]) <= MAX_START_SIGMA:
        return
    ok = int((sigma <= MAX_START_SIGMA).nonzero().max())
    T = len(ab)
    smaller = f"a `timestep` <= {ok}" if by_timestep else f"a `level` <= {math.floor(1000 * ok / T) / 1000:.3f} (it starts at t <= {ok} on every schedule)"
    raise SettingError(
        f"`scheduler` {scheduler} cannot start at t={int(timestep)} of this model: alpha_bar_t = "
        f"{float(ab[int(timestep)]):.2g} (sigma_t = {float(sigma[int(timestep)]):.3g} > {MAX_START_SIGMA:g}) turns "
        f"its first x0 estimate into noise; use `scheduler` ddpm or ddim, or {smaller}"
    )


def _requested_level(level, timestep, T) -> float:
    if (level is None) == (timestep is None):
        raise SettingError("give exactly one of `level` (a fraction in [0, 1]) or `timestep` (an integer in [0, T-1])")
    if timestep is not None:
        return levels.timestep_to_level(levels.check_timestep(timestep, T), T)
    return levels.check_level(level)


def plan(
    model,
    *,
    level: float | None = None,
    timestep: int | None = None,
    schedule: str = "exact",
    from_noise: bool = False,
    scheduler: str = "ddpm",
    steps: int = 50,
) -> NoisePlan:
    """Plan one Boomerang run: where noise is added and the timesteps denoised.

    The only place the schedules' rules live; :func:`boomerang_sample`, the API
    and the dataset runner execute the plan and derive nothing again.

    Args:
        model: a loaded model, or anything with ``scheduler_config`` (the
            model's diffusers scheduler config, a dict); a dict is taken as the
            scheduler config itself.
        level: the noise level in [0, 1]; or give ``timestep`` (an int in [0, T-1]).
        timestep: a training timestep instead of ``level``.
        schedule:
            * ``'exact'`` (default): t = round(level (T-1)), the grid
              :func:`boomerang.levels.reverse_timesteps` (t first, about
              level x steps evaluations, at least one). Level 0: the identity.
            * ``'img2img'``: diffusers' StableDiffusionImg2ImgPipeline ``strength``
              semantics: set_timesteps(steps), init = min(int(steps strength),
              steps), keep ``timesteps[(steps - init) order:]``, noise at the first
              kept timestep. Zero kept steps (0 < strength < 1/steps): refused with a
              SettingError naming the smallest level that denoises.
            * ``'reference'``: the authors' notebook: noise at
              t_ref = min(int(T level), T-1), the usual grid set_timesteps(steps)
              with every timestep above t_ref skipped (the first denoised
              timestep is generally *below* t_ref). No grid entry <= t_ref: the
              identity. When the kept part of a pndm (PLMS) grid starts with its
              repeated warm-up timestep, the first copy is skipped.
        from_noise: ordinary global sampling on the scheduler's own grid
            set_timesteps(steps) (schedule ``global``); level must be None or 1
            and timestep None.
        scheduler: one of ``SCHEDULER_NAMES``; ``pndm`` only with img2img,
            reference or from_noise.
        steps: the step budget of a full chain (>= 1).

    Returns:
        A :class:`NoisePlan` with ``scheduler``, ``steps``, ``begin_index`` (into
        the scheduler's own grid) and ``alpha_bar`` filled in.

    Raises:
        SettingError: (a ValueError) bad level/timestep/steps, unknown schedule or
            scheduler, pndm with the exact schedule, a learned-variance model with
            another scheduler than ddpm, euler / dpmsolver++ starting at sigma_t >
            ``MAX_START_SIGMA`` (:func:`check_start_sigma`).
    """
    config = model if isinstance(model, dict) else model.scheduler_config
    if schedule not in SCHEDULES:
        raise SettingError(f"`schedule` must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if scheduler not in SCHEDULER_NAMES:
        raise SettingError(f"`scheduler` must be one of {', '.join(SCHEDULER_NAMES)}, got {scheduler!r}")
    steps = levels.check_positive_int(steps, "steps")
    unet = getattr(model, "unet", None)
    if (getattr(model, "kind", None) == "pixel" and unet is not None and scheduler != "ddpm"
            and unet.config.out_channels != unet.config.in_channels):
        raise SettingError(
            "this model also predicts the variance (learned variance, twice the output channels); "
            "only `scheduler` ddpm can use it"
        )
    sched = make_scheduler(scheduler, config)
    check_sigma_spacing_supported(scheduler, sched)  # never a silently ignored Karras (or other) spacing
    T = int(sched.config.num_train_timesteps)
    alphas = sched.alphas_cumprod

    if from_noise:  # ordinary global sampling from pure noise
        if timestep is not None or (level is not None and levels.check_level(level) != 1.0):
            raise SettingError("`from_noise` samples globally from pure noise: give no `level`/`timestep` (or level 1)")
        sched.set_timesteps(steps)
        grid = tuple(int(t) for t in sched.timesteps)
        return NoisePlan(1.0, grid[0], grid, T, "global", scheduler, steps, 0, None)

    if schedule == "exact":
        if scheduler not in CUSTOM_GRID_SCHEDULERS:
            raise SettingError(
                f"`scheduler` {scheduler} cannot follow the exact Boomerang grid; use one of "
                f"{', '.join(CUSTOM_GRID_SCHEDULERS)}, or `schedule` img2img / reference"
            )
        p = levels.plan_exact(level=level, timestep=timestep, steps=steps, num_train_timesteps=T)
        from boomerang.schedulers import check_exact_grid, grid_timesteps

        check_exact_grid(sched)  # no custom grid (pndm, kdpm2), or a Karras-like config: refused here, before loading
        t_noise, lvl, begin = p.timestep, p.level, 0
        grid = grid_timesteps(sched, list(p.timesteps)) if p.timesteps else p.timesteps  # heun visits each twice
    else:
        lvl = _requested_level(level, timestep, T)
        sched.set_timesteps(steps)
        full = [int(t) for t in sched.timesteps]
        if schedule == "img2img":
            init = min(int(steps * lvl), steps)
            begin = max(steps - init, 0) * getattr(sched, "order", 1)
            t_noise = full[begin] if begin < len(full) else None
        else:  # reference
            t_noise = reference_timestep(lvl, timestep, T)
            kept = [i for i, t in enumerate(full) if t <= t_noise]
            if not kept or lvl == 0:
                begin = len(full)  # nothing to denoise: the identity
            else:  # PLMS warm-up copies and second-order pairs (heun, kdpm2): enter at a step's start
                from boomerang.schedulers import entry_index

                begin = entry_index(sched, kept)
        grid = tuple(full[begin:])
        if not grid:
            if lvl > 0 and schedule == "img2img":  # never a silent copy of the input (the case table)
                raise SettingError(_too_small_message(lvl, steps))
            t_noise = None
    if t_noise is None:  # the identity: nothing added, nothing denoised
        return NoisePlan(lvl, None, (), T, schedule, scheduler, steps, 0, 1.0)
    check_start_sigma(scheduler, config, t_noise, by_timestep=timestep is not None)  # x_t is made at t_noise
    return NoisePlan(lvl, int(t_noise), grid, T, schedule, scheduler, steps, begin, float(alphas[int(t_noise)]))


def _too_small_message(level: float, steps: int) -> str:
    """The refusal for a positive img2img level that keeps no step (int(steps x level) = 0),
    naming the smallest level (3 decimals) that denoises at this step count."""
    smallest = next(k / 1000 for k in range(1, 1001) if int(steps * (k / 1000)) >= 1)
    return (f"`level` {level:g} with `schedule` img2img denoises nothing (int(`steps` x `level`) = "
            f"int({steps} x {level:g}) = 0 kept steps): the input would come back unchanged; use `level` >= "
            f"{smallest:.3f} at {steps} steps, more `steps`, or `schedule` exact (which always takes at least one step)")


_make_plan = plan  # boomerang_sample's argument ``plan`` shadows the function


def returns_input_pixels(model, plan: NoisePlan) -> bool:
    """True when the plan returns x0 itself, untouched and without a model call:
    the identity plan of a pixel-space model. (A latent model's identity is the
    VAE round trip.) Callers may then skip resizing for the model altogether."""
    return plan.is_identity and getattr(model, "kind", None) == "pixel"


# ----------------------------------------------------------------------------- execution


def _scheduler_for(plan: NoisePlan, scheduler_config: dict, device):
    """The plan's scheduler, set to visit exactly ``plan.timesteps``."""
    sched = make_scheduler(plan.scheduler, scheduler_config)
    if plan.is_identity:
        return sched
    if plan.schedule == "exact":
        set_grid(sched, sorted(set(plan.timesteps), reverse=True), device=device)  # the grid (heun repeats entries)
    else:
        sched.set_timesteps(plan.steps, device=device)
        if hasattr(sched, "set_begin_index"):
            sched.set_begin_index(plan.begin_index)
    assert tuple(int(t) for t in sched.timesteps[plan.begin_index:]) == plan.timesteps
    return sched


def _per_item_noise(generators, shape, device) -> torch.Tensor:
    """[B, *shape] standard normal noise, row i from generators[i], drawn on the CPU in float32."""
    rows = [torch.randn((1, *shape), generator=g, device="cpu", dtype=torch.float32) for g in generators]
    return torch.cat(rows).to(device)


def _add_noise(sched, plan: NoisePlan, z0, eps, device):
    """The forward jump to ``plan.timestep``: x_t = sqrt(alpha_bar_t) z0 + sqrt(1 - alpha_bar_t) eps."""
    if plan.schedule == "reference":
        # The notebook's add_noise at t_ref, which need not be on the grid: the VP formula (what
        # DDPM/DDIM/PNDM add_noise compute); sigma-space schedulers (Euler) take x_t / sqrt(alpha_bar).
        ab = sched.alphas_cumprod.to(device=device, dtype=torch.float32)[plan.timestep]
        x = ab**0.5 * z0 + (1 - ab) ** 0.5 * eps
        return x / ab**0.5 if _sigma_space(sched) else x
    # exact, img2img: the scheduler's add_noise at exactly the first timestep denoised
    t = sched.timesteps[plan.begin_index:plan.begin_index + 1].repeat(z0.shape[0])
    return sched.add_noise(z0, eps, t)


def _sigma_space(sched) -> bool:
    """True for schedulers whose samples are x_t / sqrt(alpha_bar_t) (Euler: init_noise_sigma > 1)."""
    from boomerang.schedulers import works_in_sigma_space

    return works_in_sigma_space(sched)  # Euler, Heun, LMS, KDPM2


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
        plan = _make_plan(model, **plan_args)
    elif plan_args:
        raise TypeError(f"give either a plan or plan arguments, not both: {', '.join(plan_args)}")
    generators, eta, guidance_scale = _check_inputs(model, x0, generators, eta, guidance_scale)
    device = model.device
    sched = _scheduler_for(plan, model.scheduler_config, device)
    if plan.is_identity:
        samples = x0.detach().to("cpu", torch.float32).clone() if model.kind == "pixel" else \
            model.decode(model.encode(x0)).clamp(-1.0, 1.0)
        return BoomerangOutput(samples, plan, 1.0, plan.scheduler, dict(sched.config), 0)

    # 1. Encode x0 into the model's space (img2img on a latent model: a VAE posterior sample per item).
    # 2. Forward jump to the noise timestep (from_noise: x_T ~ N(0, I) times init_noise_sigma).
    if plan.schedule == "global":
        eps = _per_item_noise(generators, _latent_shape(model, x0), device)
        x = eps * sched.init_noise_sigma
    else:
        posterior = generators if (plan.schedule == "img2img" and model.kind == "latent") else None
        z0 = model.encode(x0, generators=posterior)
        eps = _per_item_noise(generators, tuple(z0.shape[1:]), device)
        x = _add_noise(sched, plan, z0, eps, device)

    # 3. Partial reverse process over the plan's timesteps, down to x0.
    cond, uncond = model.encode_prompt(prompt, negative_prompt, guidance_scale)
    kwargs = step_kwargs(plan.scheduler, eta=eta, generators=generators)
    timesteps = sched.timesteps[plan.begin_index:]
    for i, t in enumerate(timesteps):
        x_in = sched.scale_model_input(x, t)
        out = model.predict(x_in, t, cond=cond, uncond=uncond, guidance_scale=guidance_scale)
        x = sched.step(out, t, x, **kwargs).prev_sample
        if progress is not None:
            progress(i + 1, len(timesteps))

    # 4. Decode back to images in [-1, 1].
    samples = model.decode(x).clamp(-1.0, 1.0)
    return BoomerangOutput(samples, plan, plan.alpha_bar, plan.scheduler, dict(sched.config), len(timesteps))


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
    if isinstance(generators, torch.Generator):
        generators = [generators]
    generators = list(generators or [])
    if len(generators) != x0.shape[0]:
        raise ValueError(f"need one generator per image: got {len(generators)} generators for a batch of {x0.shape[0]}")
    return generators, eta, guidance_scale


def _latent_shape(model, x0) -> tuple[int, ...]:
    if model.kind == "pixel":
        return tuple(x0.shape[1:])
    f = model.size_multiple
    h, w = x0.shape[2], x0.shape[3]
    if h % f or w % f:
        raise ValueError(f"image sides must be multiples of {f} for this model, got {h}x{w}")
    return (model.unet.config.in_channels, h // f, w // f)
