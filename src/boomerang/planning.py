"""Planning a Boomerang run: where noise is added (t) and which timesteps are denoised.

:func:`plan` decides, once, the whole of a run as plain data (a
:class:`~boomerang.levels.NoisePlan`): the noise timestep t, the reverse grid
the scheduler visits (for the exact schedule
:func:`boomerang.levels.reverse_timesteps`; for second-order schedulers such
as heun each timestep after the first twice), and alpha_bar_t. Everything
else (:func:`boomerang.core.boomerang_sample`, the tiled enhancement, the API
and the dataset runner) executes a plan and derives nothing again.

Also here: the rules a start must satisfy (:func:`check_start_sigma`), the
``reference`` schedule's noise timestep, and :func:`returns_input_pixels`.
"""

from __future__ import annotations

import math

from boomerang import levels
from boomerang.errors import SettingError
from boomerang.levels import NoisePlan
from boomerang.scheduler_names import (  # noqa: F401 (SCHEDULES re-exported)
    AUTO,
    DISTILLED_SCHEDULERS,
    FLOW_SCHEDULERS,
    SCHEDULES,
    check_schedule,
    check_scheduler,
    is_flow_config,
)
from boomerang.schedulers import (
    CUSTOM_GRID_SCHEDULERS,
    UNCLIPPED_X0_SCHEDULERS,
    check_exact_grid,
    check_sigma_spacing_supported,
    entry_index,
    grid_timesteps,
    make_scheduler,
    set_lcm_timesteps,
)

__all__ = [
    "SCHEDULES",
    "MAX_START_SIGMA",
    "plan",
    "returns_input_pixels",
    "check_start_sigma",
    "reference_timestep",
    "resolve_scheduler",
]


def reference_timestep(level: float, timestep: int | None, num_train_timesteps: int) -> int:
    """The noise timestep of the ``reference`` schedule: ``timestep`` if given, else
    t_ref = min(int(T * level), T - 1) (the VP rule of diffusers' DDIM noise-comparative pipeline)."""
    T = int(num_train_timesteps)
    return int(timestep) if timestep is not None else min(int(T * level), T - 1)


#: Largest start sigma_t accepted for the schedulers that turn the denoiser's eps into x0 without
#: clipping (``UNCLIPPED_X0_SCHEDULERS``: every one but ddpm, ddim, pndm), x0 = (x_t - sqrt(1 - alpha_bar) eps)
#: / sqrt(alpha_bar), so any error in eps is multiplied by sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t)
#: at the first step. Stable Diffusion's t = 999 is 14.6; the cosine
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
        SettingError: ``scheduler`` is one of ``schedulers.UNCLIPPED_X0_SCHEDULERS`` (every
            scheduler but ddpm, ddim and pndm, which clip their x0 estimate) and sigma_t =
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


def resolve_scheduler(model, scheduler: str) -> str:
    """``scheduler`` itself, or for ``'auto'`` the model's own default (``model.default_scheduler``;
    for a bare scheduler config: euler for a flow-matching model, else ddpm)."""
    if scheduler != AUTO:
        return scheduler
    default = getattr(model, "default_scheduler", None)
    if default:
        return default
    config = model if isinstance(model, dict) else getattr(model, "scheduler_config", {})
    return FLOW_SCHEDULERS[0] if is_flow_config(config) else "ddpm"


def _requested_level(level, timestep, T) -> float:
    levels.check_level_or_timestep(level, timestep)
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
    scheduler: str = AUTO,
    steps: int = 50,
    image_shape: tuple[int, ...] | None = None,
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
              timestep is generally *below* t_ref). No grid entry <= t_ref at a
              positive level: refused with a SettingError naming the smallest level
              that denoises (never a silent copy). When the kept part of a pndm (PLMS) grid starts with its
              repeated warm-up timestep, the first copy is skipped.
        from_noise: ordinary global sampling on the scheduler's own grid
            set_timesteps(steps) (schedule ``global``); level must be None or 1
            and timestep None.
        scheduler: one of ``SCHEDULER_NAMES``; ``pndm`` only with img2img,
            reference or from_noise; ``'auto'`` (default): the model's own
            (:func:`resolve_scheduler`: ddpm for DDPM and SD 1.x/2.x, euler for SDXL and SD3).
        steps: the step budget of a full chain (>= 1).
        image_shape: ([C,] H, W) of the images the plan is for; needed only by a
            flow-matching model whose shift depends on the image's size (FLUX: mu
            from its token count, ``model.schedule_for(image_shape).mu``).

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
    check_schedule(schedule)
    scheduler = resolve_scheduler(model, check_scheduler(scheduler))
    steps = levels.check_positive_int(steps, "steps")
    if getattr(model, "learned_variance", False) and scheduler != "ddpm":
        raise SettingError(
            "this model also predicts the variance (learned variance, twice the output channels); "
            "only `scheduler` ddpm can use it"
        )
    sched = make_scheduler(scheduler, config)
    check_sigma_spacing_supported(scheduler, sched)  # never a silently ignored Karras (or other) spacing
    T = int(sched.config.num_train_timesteps)
    if scheduler in DISTILLED_SCHEDULERS:
        return _plan_lcm(sched, level=level, timestep=timestep, schedule=schedule, from_noise=from_noise,
                         scheduler=scheduler, steps=steps, T=T, rule=getattr(model, "lcm_img2img_rule", "strength"))
    if is_flow_config(config):
        mu = None
        if dict(config).get("use_dynamic_shifting"):  # (the model's config: heun's class keeps only the shift)
            if image_shape is None or not hasattr(model, "schedule_for"):
                raise SettingError("this flow-matching model's shift depends on the image's size (dynamic "
                                   "shifting): plan it with the loaded model and the image's shape")
            mu = model.schedule_for(image_shape).mu
        grid = getattr(model, "flow_sigma_grid", None)  # the family's own unshifted inference sigmas (FLUX)
        return _plan_flow(sched, level=level, timestep=timestep, schedule=schedule, from_noise=from_noise,
                          scheduler=scheduler, steps=steps, T=T, mu=mu, own_sigmas=grid(steps) if grid else None)
    alphas = sched.alphas_cumprod

    if from_noise:  # ordinary global sampling from pure noise
        levels.check_from_noise(None if level is None else [level], timestep)
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
                begin = entry_index(sched, kept)
        grid = tuple(full[begin:])
        if not grid:
            if lvl > 0 and schedule == "img2img":  # never a silent copy of the input (the case table)
                raise SettingError(_too_small_message(lvl, steps))
            if lvl > 0 and schedule == "reference":  # nor with the notebook's rule (anonymise would release inputs)
                raise SettingError(_reference_too_small_message(sched, full, lvl, timestep, T, scheduler, steps))
            t_noise = None
    if t_noise is None:  # the identity: nothing added, nothing denoised
        return NoisePlan(lvl, None, (), T, schedule, scheduler, steps, 0, 1.0)
    check_start_sigma(scheduler, config, t_noise, by_timestep=timestep is not None)  # x_t is made at t_noise
    return NoisePlan(lvl, int(t_noise), grid, T, schedule, scheduler, steps, begin, float(alphas[int(t_noise)]))


def _plan_flow(sched, *, level, timestep, schedule, from_noise, scheduler, steps, T, mu, own_sigmas) -> NoisePlan:
    """The plan on a flow-matching model (x_t = (1 - sigma) x0 + sigma eps; README, "Noise levels").

    ``exact``: training step k = round(level (T-1)) (or ``timestep``), sigma_k the model's own
    shifted sigma of s = (k + 1) / T (level 1: sigma = 1, pure noise), the grid the training steps
    of :func:`boomerang.levels.reverse_timesteps` (k first); ``timesteps`` are the model timesteps
    T sigma the scheduler visits (floats). ``img2img``: diffusers' SD3 / FLUX img2img rule,
    t_start = int(max(steps - steps level, 0)) on the family's own grid of ``steps`` (``own_sigmas``,
    FLUX's linspace(1, 1/steps, steps); else ``set_timesteps(steps)``): any level > 0 keeps a step.
    ``reference`` (the notebook's DDPM rule) is refused. ``mu``: the dynamic shift (FLUX), or None.
    ``heun`` (second order) visits each step after the first twice: the grid lists it twice.
    """
    kw = {"mu": mu} if mu is not None else {}

    def visit(sigmas):  # the scheduler on unshifted ``sigmas`` (None: its own grid of ``steps``)
        if sigmas is None:
            sched.set_timesteps(steps, **kw)
        else:
            sched.set_timesteps(sigmas=list(sigmas), **kw)
        return tuple(float(x) for x in sigmas) if sigmas is not None else None

    if from_noise:
        if timestep is not None or (level is not None and levels.check_level(level) != 1.0):
            raise SettingError("`from_noise` samples globally from pure noise: give no `level`/`timestep` (or level 1)")
        inputs = visit(own_sigmas)
        grid = tuple(float(t) for t in sched.timesteps)
        return NoisePlan(1.0, grid[0], grid, T, "global", scheduler, steps, 0, None, float(sched.sigmas[0]), mu, inputs)
    if schedule == "reference":
        raise SettingError("`schedule` reference is the authors' DDPM notebook rule; a flow-matching model takes "
                           "`schedule` exact or img2img")
    if schedule == "exact":
        p = levels.plan_exact(level=level, timestep=timestep, steps=steps, num_train_timesteps=T)
        lvl, begin = p.level, 0
        if p.timestep is None:
            return NoisePlan(lvl, None, (), T, schedule, scheduler, steps, 0, 1.0, 0.0, mu)
        check_exact_grid(sched)  # a Karras-like sigma spacing would override the grid: refused
        inputs = visit([(k + 1) / T for k in p.timesteps])
    else:
        lvl = _requested_level(level, timestep, T)
        inputs = visit(own_sigmas)
        begin = int(max(steps - steps * lvl, 0)) * getattr(sched, "order", 1)  # heun: 2 entries a step
        if begin >= len(sched.timesteps):
            return NoisePlan(lvl, None, (), T, schedule, scheduler, steps, 0, 1.0, 0.0, mu)
    grid = tuple(float(t) for t in sched.timesteps[begin:])
    return NoisePlan(lvl, grid[0], grid, T, schedule, scheduler, steps, begin, None, float(sched.sigmas[begin]), mu,
                     inputs)


def distilled_timesteps(sched) -> list[int]:
    """The timesteps a Latent Consistency Model was distilled on, descending: k j - 1 for
    j = ``original_inference_steps`` .. 1, k = T // ``original_inference_steps`` (999, 979, ..., 19 for 50)."""
    orig = int(sched.config.original_inference_steps)
    k = int(sched.config.num_train_timesteps) // orig
    return [j * k - 1 for j in range(orig, 0, -1)]


def _plan_lcm(sched, *, level, timestep, schedule, from_noise, scheduler, steps, T, rule="strength") -> NoisePlan:
    """The plan with ``lcm`` (a Latent Consistency Model, distilled on a few timesteps only).

    ``exact``: the level's training step t = round(level (T-1)) (or ``timestep``) falls between the
    distilled timesteps; noise is added at the nearest distilled timestep t' (the lower one on a tie;
    at least the smallest, 19 for 50), reported as the plan's ``timestep``, and t' is denoised first.
    The grid: n = min(#distilled <= t', max(1, ceil(steps (t' + 1) / T))) of the distilled timesteps
    <= t', evenly picked as LCMScheduler picks its own (floor(linspace(0, m, n)) of them), t' first.
    ``img2img``: the family's diffusers img2img pipeline (``rule``, ``model.lcm_img2img_rule``):
    ``'strength'``: the LCM img2img pipeline's ``set_timesteps(steps, strength=level)``; ``'truncate'``
    (SDXL's img2img pipeline): ``set_timesteps(steps)`` and its last min(int(steps level), steps) timesteps
    (none: refused, as for the other schedulers); noise at the first. The scheduler then follows the
    plan's grid as custom timesteps (:func:`boomerang.reverse.scheduler_for`). ``reference`` is refused.
    """
    import math

    import numpy as np

    alphas = sched.alphas_cumprod
    if from_noise:
        if timestep is not None or (level is not None and levels.check_level(level) != 1.0):
            raise SettingError("`from_noise` samples globally from pure noise: give no `level`/`timestep` (or level 1)")
        set_lcm_timesteps(sched, "global", steps=steps, level=1.0)
        grid = tuple(int(t) for t in sched.timesteps)
        return NoisePlan(1.0, grid[0], grid, T, "global", scheduler, steps, 0, None)
    if schedule == "reference":
        raise SettingError("`scheduler` lcm takes `schedule` exact or img2img (the notebook's rule skips "
                           "timesteps the model was not distilled on)")
    if schedule == "exact":
        p = levels.plan_exact(level=level, timestep=timestep, steps=steps, num_train_timesteps=T)
        lvl = p.level
        if p.timestep is None:
            return NoisePlan(lvl, None, (), T, schedule, scheduler, steps, 0, 1.0)
        distilled = distilled_timesteps(sched)
        start = min(distilled, key=lambda d: (abs(d - p.timestep), d))
        below = [d for d in distilled if d <= start]
        n = min(len(below), max(1, -(-steps * (start + 1) // T)))
        grid = tuple(below[int(i)] for i in np.floor(np.linspace(0, len(below), n, endpoint=False)))
        assert grid[0] == start and math.isfinite(start)
    else:
        lvl = _requested_level(level, timestep, T)
        if lvl == 0:
            return NoisePlan(lvl, None, (), T, schedule, scheduler, steps, 0, 1.0)
        try:
            set_lcm_timesteps(sched, "img2img" if rule == "strength" else "global", steps=steps, level=lvl)
        except ValueError as exc:
            raise SettingError(f"`scheduler` lcm with `schedule` img2img cannot run `level` {lvl:g} at {steps} "
                               f"`steps`: {exc}") from None
        grid = tuple(int(t) for t in sched.timesteps)
        if rule != "strength":
            grid = grid[max(steps - min(int(steps * lvl), steps), 0):]
            if not grid:
                raise SettingError(_too_small_message(lvl, steps))
    return NoisePlan(lvl, grid[0], grid, T, schedule, scheduler, steps, 0, float(alphas[grid[0]]))


def _too_small_message(level: float, steps: int) -> str:
    """The refusal for a positive img2img level that keeps no step (int(steps x level) = 0),
    naming the smallest level (3 decimals) that denoises at this step count."""
    smallest = next(k / 1000 for k in range(1, 1001) if int(steps * (k / 1000)) >= 1)
    return (f"`level` {level:g} with `schedule` img2img denoises nothing (int(`steps` x `level`) = "
            f"int({steps} x {level:g}) = 0 kept steps): the input would come back unchanged; use `level` >= "
            f"{smallest:.3f} at {steps} steps, more `steps`, or `schedule` exact (which always takes at least one step)")


def _reference_too_small_message(sched, full: list[int], level: float, timestep, T: int, scheduler: str,
                                 steps: int) -> str:
    """The refusal for a positive reference level whose noise step lies below every step of the grid
    (nothing to denoise), naming the smallest level (3 decimals) that denoises with this grid."""
    smallest = None
    for k in range(1, 1001):
        kept = [i for i, t in enumerate(full) if t <= reference_timestep(k / 1000, None, T)]
        if kept and full[entry_index(sched, kept):]:
            smallest = k / 1000
            break
    what = f"`timestep` {timestep}" if timestep is not None else f"`level` {level:g}"
    hint = f"use `level` >= {smallest:.3f} at {steps} steps, " if smallest is not None else ""
    return (f"{what} with `schedule` reference and `scheduler` {scheduler} at {steps} steps denoises nothing (no step "
            f"of its grid lies at or below the noise step {reference_timestep(level, timestep, T)}): the input would "
            f"come back unchanged; {hint}more `steps`, or `schedule` exact (which always takes at least one step)")


def returns_input_pixels(model, plan: NoisePlan) -> bool:
    """True when the plan returns x0 itself, untouched and without a model call:
    the identity plan of a pixel-space model. (A latent model's identity is the
    VAE round trip.) Callers may then skip resizing for the model altogether."""
    return plan.is_identity and bool(getattr(model, "pixel_space", False))
