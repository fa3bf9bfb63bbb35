"""The one reverse loop of Boomerang: the forward jump to x_t, then the plan's reverse process.

Boomerang (Luzi et al., Sec. 3, Fig. 1 / Algorithm 1) is: encode x0, jump
forward to step t with the model's own schedule, run the reverse process from
t down to 0, decode. This module holds the middle two steps, shared by every
caller:

* :func:`boomerang.core.boomerang_sample` passes the model's (guided) denoiser;
* :func:`boomerang.enhance.sampler.tiled_boomerang` passes a denoiser that
  blends overlapping windows (MultiDiffusion) and ILVR as the per-step hook.

The scheduler math is diffusers' (DDPM: Ho et al. 2020, Eq. 4 and Alg. 2;
DDIM: Song et al. 2021, Eq. 12; the others see :mod:`boomerang.schedulers`).
What lives here: which timesteps the scheduler visits (the plan's, with the
second-order de-duplication of the exact grid), the
``scale_model_input`` / denoiser / ``step`` sequence, and where a hook may act.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from boomerang.levels import NoisePlan
from boomerang.schedulers import (
    is_flow_scheduler,
    is_lcm_scheduler,
    make_scheduler,
    set_grid,
    set_lcm_timesteps,
    step_kwargs,
    works_in_sigma_space,
)

__all__ = ["Denoiser", "StepHook", "WholeImage", "scheduler_for", "per_item_generators", "per_item_noise",
           "add_noise", "reverse_process"]

#: ``denoiser(x_in, t) -> out``: x_in [B, c, h, w] (the scheduler's scaled input), t a 0-d timestep
#: tensor; out [B, c', h, w] in the scheduler's parameterisation (the model's prediction_type: eps, v or x0).
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: ``hook(i, t, x) -> x`` after reverse step i: x [B, c, h, w] now sits at training timestep t (None: x0).
StepHook = Callable[[int, "int | None", torch.Tensor], torch.Tensor]


def scheduler_for(plan: NoisePlan, scheduler_config: dict, device=None):
    """The plan's scheduler (``plan.scheduler``, built from the model's config), set to visit
    exactly ``plan.timesteps`` from ``plan.begin_index`` on.

    The exact schedule sets the plan's distinct timesteps as a custom grid: a second-order
    scheduler (heun) lists each timestep after the first twice in ``plan.timesteps`` (predictor
    and corrector) and doubles the grid again itself, so the grid is de-duplicated first. The
    other schedules use the scheduler's own grid ``set_timesteps(plan.steps)``.

    Raises:
        ValueError: ``plan.scheduler`` is None (a plan from ``levels.plan_exact``: plan with
            :func:`boomerang.core.plan`); what :func:`boomerang.schedulers.set_grid` raises.
    """
    if plan.scheduler is None:
        raise ValueError("the plan names no scheduler: make it with boomerang.core.plan(model, ..., scheduler=...)")
    sched = make_scheduler(plan.scheduler, scheduler_config)
    if plan.is_identity:
        return sched
    if is_lcm_scheduler(sched):  # the plan's distilled timesteps as a custom grid (exact and img2img alike)
        set_lcm_timesteps(sched, "exact" if plan.schedule == "img2img" else plan.schedule, steps=plan.steps,
                          level=plan.level, timesteps=plan.timesteps, device=device)
    elif is_flow_scheduler(sched):  # the plan's unshifted sigmas (or the scheduler's own grid), its shift mu
        kw = {"mu": plan.mu} if plan.mu is not None else {}
        if plan.flow_sigmas is not None:
            sched.set_timesteps(sigmas=list(plan.flow_sigmas), device=device, **kw)
        else:
            sched.set_timesteps(plan.steps, device=device, **kw)
        sched.set_begin_index(plan.begin_index)
    elif plan.schedule == "exact":
        set_grid(sched, sorted(set(plan.timesteps), reverse=True), device=device)  # the grid (heun repeats entries)
    else:
        sched.set_timesteps(plan.steps, device=device)
        if hasattr(sched, "set_begin_index"):
            sched.set_begin_index(plan.begin_index)
    if is_flow_scheduler(sched):
        assert tuple(float(t) for t in sched.timesteps[plan.begin_index:]) == plan.timesteps
    else:
        assert tuple(int(t) for t in sched.timesteps[plan.begin_index:]) == plan.timesteps
    return sched


def per_item_generators(generators, batch: int) -> list[torch.Generator]:
    """The one rule of randomness: one ``torch.Generator`` per item of a batch of ``batch``.

    Args:
        generators: a sequence of generators (or one generator for a batch of one).
        batch: the number of items.

    Returns:
        The generators as a list.

    Raises:
        ValueError: not exactly one generator per item.
    """
    generators = [generators] if isinstance(generators, torch.Generator) else list(generators or [])
    if len(generators) != batch:
        raise ValueError(f"need one generator per image: got {len(generators)} generators for a batch of {batch}")
    return generators


def per_item_noise(generators: Sequence[torch.Generator], shape: tuple[int, ...], device) -> torch.Tensor:
    """[B, *shape] standard normal noise, row i from generators[i], drawn on the CPU in float32
    and then moved to ``device`` (so a sample never depends on the batch or the device)."""
    rows = [torch.randn((1, *shape), generator=g, device="cpu", dtype=torch.float32) for g in generators]
    return torch.cat(rows).to(device)


def add_noise(sched, plan: NoisePlan, z0: torch.Tensor, eps: torch.Tensor, device) -> torch.Tensor:
    """The forward jump to ``plan.timestep`` (DDPM Eq. 4): x_t = sqrt(alpha_bar_t) z0 + sqrt(1 - alpha_bar_t) eps;
    on a flow-matching model x_t = (1 - sigma) z0 + sigma eps (the scheduler's ``scale_noise``).

    Args:
        sched: the plan's scheduler (:func:`scheduler_for`).
        z0, eps: [B, c, h, w] in the model's space; eps ~ N(0, I).

    Returns:
        x_t [B, c, h, w], in the scheduler's space: sigma-space schedulers (Euler, Heun, LMS,
        KDPM2) keep x_t / sqrt(alpha_bar_t).
    """
    if plan.schedule == "reference":
        # The notebook's add_noise at t_ref, which need not be on the grid: the VP formula (what
        # DDPM/DDIM/PNDM add_noise compute); sigma-space schedulers (Euler) take x_t / sqrt(alpha_bar).
        ab = sched.alphas_cumprod.to(device=device, dtype=torch.float32)[plan.timestep]
        x = ab**0.5 * z0 + (1 - ab) ** 0.5 * eps
        return x / ab**0.5 if works_in_sigma_space(sched) else x
    # exact, img2img: the scheduler's add_noise at exactly the first timestep denoised
    t = sched.timesteps[plan.begin_index:plan.begin_index + 1].repeat(z0.shape[0])
    if is_flow_scheduler(sched):
        return sched.scale_noise(z0, t, eps)
    return sched.add_noise(z0, eps, t)


class WholeImage:
    """How :func:`reverse_process` holds x_t and applies a step: the ordinary way, x_t one tensor
    [B, c, h, w] and each step on all of it at once. Another execution (enhance's bounded path,
    :class:`boomerang.enhance.banded.Banded`: x_t in a file, the step band by band) has the
    same two methods and gives the same numbers."""

    def step(self, denoiser: Denoiser, sched, t, x_t, kwargs: dict):
        """One reverse step x_t -> x_{t-1}: ``step(denoiser(scale_model_input(x_t, t), t), t, x_t)``."""
        x_in = sched.scale_model_input(x_t, t) if hasattr(sched, "scale_model_input") else x_t  # (flow: none)
        out = denoiser(x_in, t)
        x_t = sched.step(out, t, x_t, **kwargs).prev_sample
        del x_in, out  # image-sized: not held through the hook and the next denoiser call
        return x_t

    def after(self, hook: StepHook, i: int, t: "int | None", x_t):
        """The hook after completed step i: ``hook(i, t, x_t)``."""
        return hook(i, t, x_t)


def reverse_process(
    denoiser: Denoiser,
    x_t: torch.Tensor,
    plan: NoisePlan,
    sched,
    generators: Sequence[torch.Generator],
    *,
    eta: float = 0.0,
    hook: StepHook | None = None,
    progress: Callable[[int, int], None] | None = None,
    execution=None,
) -> torch.Tensor:
    """Run the reverse process of ``plan`` from x_t down to x0 (Luzi et al., Fig. 1 / Alg. 1, steps 3-4).

    For each timestep t the scheduler visits (``plan.timesteps``), as in DDPM's Alg. 2 and
    DDIM's Eq. 12::

        out = denoiser(scale_model_input(x, t), t)      # eps (or v, x0) of the model
        x   = step(out, t, x)                            # x_t -> x_{t-1}; ddpm / ddim eta > 0 add fresh noise
        x   = hook(i, t_next, x)                         # after each *completed* step (ILVR)

    Args:
        denoiser: ``denoiser(x_in, t) -> out`` (see :data:`Denoiser`); called exactly
            ``len(plan.timesteps)`` times (``plan.num_denoiser_evals``).
        x_t: [B, c, h, w] float tensor on the scheduler's device: the noised start
            (:func:`add_noise`; ``from_noise``: eps times ``init_noise_sigma``), in the scheduler's
            space (sigma-space schedulers: x_t / sqrt(alpha_bar_t), unbounded; VP schedulers: about
            [-1, 1] plus noise).
        plan: the :class:`~boomerang.levels.NoisePlan` being executed (not the identity).
        sched: :func:`scheduler_for` of the plan (a fresh one: schedulers keep state).
        generators: one ``torch.Generator`` per item (len B): the steps' fresh noise (ddpm, ddim
            with eta > 0, kdpm2-ancestral) comes from them.
        eta: DDIM's eta (>= 0); ignored by the other schedulers.
        hook: optional ``hook(i, t, x) -> x`` called once per completed reverse step i =
            0 .. n-1, where n is the number of distinct timesteps of the plan, with x the
            [B, c, h, w] sample just produced and t the training timestep x now sits at (the next
            distinct timestep of the plan; None after the last step: x is x0). A second-order
            step (heun: predictor at t_i, corrector at t_{i+1}) is complete after its corrector:
            the predictor's intermediate x is the solver's own state and is not passed.
        progress: optional ``progress(done, total)`` after each denoiser call (total =
            ``len(plan.timesteps)``).
        execution: how x_t is held and each step applied (default :class:`WholeImage`, the one
            tensor); enhance's bounded path passes :class:`boomerang.enhance.banded.Banded`,
            whose x_t is a file and whose steps and hooks go band by band, with the same numbers.

    Returns:
        x0 [B, c, h, w] in the model's space (not clamped, not decoded); what ``execution``
        holds it in.
    """
    kwargs = step_kwargs(plan.scheduler, eta=eta, generators=generators)
    timesteps = sched.timesteps[plan.begin_index:]
    n = len(timesteps)
    done = 0  # completed reverse steps
    execution = WholeImage() if execution is None else execution
    for j, t in enumerate(timesteps):
        x_t = execution.step(denoiser, sched, t, x_t, kwargs)
        if hook is not None and (j + 1 == n or getattr(sched, "state_in_first_order", True)):
            x_t = execution.after(hook, done, int(timesteps[j + 1]) if j + 1 < n else None, x_t)
            done += 1
        if progress is not None:
            progress(j + 1, n)
    return x_t
