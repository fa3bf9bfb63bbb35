"""Scheduler registry: a name -> a diffusers scheduler built from the model's own config.

All scheduler math is diffusers'. This module only chooses the class, fixes a
few options that the Boomerang grid needs, and adapts DDIM so that it can
follow an arbitrary descending grid of training timesteps (the ``Grid*``
classes live in :mod:`boomerang.scheduler_grids` and are re-exported here).

Names (``SCHEDULER_NAMES``):

* ``ddpm`` -- :class:`diffusers.DDPMScheduler`, ancestral: fresh Gaussian
  noise at every step. This is the stochastic reverse process of the paper.
* ``ddim`` -- :class:`diffusers.DDIMScheduler` with ``eta`` (0: deterministic
  DDIM; 1: DDPM-like variance), through :class:`GridDDIMScheduler`.
* ``euler`` -- :class:`diffusers.EulerDiscreteScheduler` (deterministic; it
  works in the "sigma" parameterisation x / sqrt(alpha_bar)).
* ``dpmsolver++`` -- :class:`diffusers.DPMSolverMultistepScheduler` with
  ``algorithm_type='dpmsolver++'`` (deterministic, second order multistep;
  the first step after entering the chain and the last step are first order).
* ``pndm`` -- :class:`diffusers.PNDMScheduler` with ``skip_prk_steps=True``
  (PLMS: Stable Diffusion's reference scheduler).
* ``heun`` -- :class:`diffusers.HeunDiscreteScheduler` (Karras et al. 2022,
  second order: two denoiser evaluations per step but the last).
* ``dpmsolver`` -- :class:`diffusers.DPMSolverSinglestepScheduler` (DPM-Solver++
  single-step, second order).
* ``lms`` -- :class:`diffusers.LMSDiscreteScheduler` (linear multistep), through
  :class:`GridLMSScheduler`.
* ``unipc`` -- :class:`diffusers.UniPCMultistepScheduler` (UniPC, bh2 corrector),
  through :class:`GridUniPCScheduler`.
* ``deis`` -- :class:`diffusers.DEISMultistepScheduler`, through :class:`GridDEISScheduler`.
* ``kdpm2``, ``kdpm2-ancestral`` -- :class:`diffusers.KDPM2DiscreteScheduler` and
  :class:`diffusers.KDPM2AncestralDiscreteScheduler` (the ancestral one draws fresh
  noise at every step).

Exact grid. Every scheduler but ``pndm``, ``kdpm2`` and ``kdpm2-ancestral`` follows
the exact Boomerang grid (``CUSTOM_GRID_SCHEDULERS``): diffusers' own custom
``timesteps`` (ddpm, euler, dpmsolver++, heun, dpmsolver), or the scheduler's own
state rebuilt on the grid (ddim, lms, unipc, deis: :class:`GridDDIMScheduler`,
:class:`_GridSigmas`). PNDM, KDPM2 and KDPM2-ancestral interleave their own
intermediate timesteps and have no custom grid in diffusers; they are refused on
the exact schedule with a message naming what works, and available with the
schedules that use the scheduler's own grid (``img2img``, ``reference``,
``from_noise``).

Sigma spacing. A model's scheduler config may ask for Karras, exponential,
beta or Lu-lambda sigmas (``use_karras_sigmas`` ...). Those choose their own
timesteps, so the exact grid cannot honour them: :func:`set_grid` refuses with
one message. The img2img / reference schedules and from-noise sampling use the
scheduler's own grid and honour the config as it is; it is never changed. A
scheduler whose class does not take the key (ddpm, ddim, pndm) would ignore it:
:func:`check_sigma_spacing_supported` refuses that on every schedule.

Deterministic solvers (ddim with eta=0, euler, dpmsolver++, pndm, heun,
dpmsolver, lms, unipc, deis, kdpm2) get the variety between samples only from
the forward noise eps; ddpm, ddim with eta>0 and kdpm2-ancestral also add fresh
noise at every reverse step.
"""

from __future__ import annotations

from typing import Any

import inspect

from diffusers import (
    DDPMScheduler,
    FlowMatchEulerDiscreteScheduler,
    DPMSolverMultistepScheduler,
    DPMSolverSinglestepScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2AncestralDiscreteScheduler,
    KDPM2DiscreteScheduler,
    LCMScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
)

from boomerang.scheduler_grids import (  # the classes that follow a custom grid (re-exported)
    GridDDIMScheduler,
    GridFlowHeunScheduler,
    GridDEISScheduler,
    GridLMSScheduler,
    GridUniPCScheduler,
)

__all__ = [
    "SCHEDULER_NAMES",
    "CUSTOM_GRID_SCHEDULERS",
    "GridDDIMScheduler",
    "GridLMSScheduler",
    "GridUniPCScheduler",
    "GridDEISScheduler",
    "SIGMA_SPACING_KEYS",
    "UNCLIPPED_X0_SCHEDULERS",
    "sigma_spacing",
    "entry_index",
    "check_exact_grid",
    "grid_timesteps",
    "works_in_sigma_space",
    "make_scheduler",
    "set_grid",
    "is_flow_scheduler",
    "set_lcm_timesteps",
    "is_lcm_scheduler",
    "is_stochastic",
    "step_kwargs",
]

# The names (and those that can follow the exact Boomerang grid) live in a torch-free module.
from boomerang.scheduler_names import (  # noqa: E402
    CUSTOM_GRID_SCHEDULERS,
    DISTILLED_SCHEDULERS,
    FLOW_SCHEDULERS,
    SCHEDULER_NAMES,
    is_flow_config,
)
#: Schedulers that turn the denoiser's eps into x0 without clipping (every one but ddpm and
#: ddim, which clip when the config says clip_sample): any error in eps is multiplied by
#: sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) at the first step.
UNCLIPPED_X0_SCHEDULERS: tuple[str, ...] = tuple(n for n in SCHEDULER_NAMES if n not in ("ddpm", "ddim", "pndm"))
#: Config keys that ask for a sigma spacing of the scheduler's own choosing.
SIGMA_SPACING_KEYS: tuple[str, ...] = (
    "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "use_lu_lambdas", "use_flow_sigmas",
)


_CLASSES = {
    "ddpm": DDPMScheduler,
    "ddim": GridDDIMScheduler,
    "euler": EulerDiscreteScheduler,
    "dpmsolver++": DPMSolverMultistepScheduler,
    "pndm": PNDMScheduler,
    "heun": HeunDiscreteScheduler,
    "dpmsolver": DPMSolverSinglestepScheduler,
    "lms": GridLMSScheduler,
    "unipc": GridUniPCScheduler,
    "deis": GridDEISScheduler,
    "kdpm2": KDPM2DiscreteScheduler,
    "kdpm2-ancestral": KDPM2AncestralDiscreteScheduler,
    "lcm": LCMScheduler,  # DISTILLED_SCHEDULERS (not in SCHEDULER_NAMES)
}
#: Schedulers whose ``step`` takes ``generator`` (the per-item generator list is passed).
_TAKES_GENERATOR = frozenset(
    n for n, c in _CLASSES.items()
    if any("generator" in inspect.signature(k.__dict__["step"]).parameters for k in c.__mro__ if "step" in k.__dict__)
)
#: Schedulers that keep x in "sigma space" (x_t / sqrt(alpha_bar_t); init_noise_sigma > 1).
SIGMA_SPACE_CLASSES = (EulerDiscreteScheduler, HeunDiscreteScheduler, LMSDiscreteScheduler, KDPM2DiscreteScheduler,
                       KDPM2AncestralDiscreteScheduler)


def works_in_sigma_space(scheduler) -> bool:
    """True for schedulers whose samples are x_t / sqrt(alpha_bar_t) (Euler, Heun, LMS, KDPM2)."""
    return isinstance(scheduler, SIGMA_SPACE_CLASSES)


def check_scheduler_name(name: str) -> str:
    """Validate a scheduler name; returns it. Raises ValueError listing the choices."""
    names = tuple(dict.fromkeys(SCHEDULER_NAMES + DISTILLED_SCHEDULERS + FLOW_SCHEDULERS))
    if name not in names:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(names)}")
    return name


def make_scheduler(name: str, config: dict[str, Any]):
    """Build scheduler ``name`` with ``from_config`` of the model's scheduler config.

    The model's training schedule (num_train_timesteps, betas, prediction_type,
    clip_sample, timestep_spacing, steps_offset, and any sigma spacing such as
    ``use_karras_sigmas``) is kept as it is. Overrides, which the names stand for:
    ``dpmsolver++`` gets ``algorithm_type='dpmsolver++'``, ``solver_order=2``,
    ``final_sigmas_type='zero'`` and ``lower_order_final=True`` (the last step
    lands on x0 with a first-order update); ``dpmsolver`` (single-step) gets
    ``algorithm_type='dpmsolver++'``, ``solver_order=2``, ``final_sigmas_type='zero'``;
    ``euler`` gets ``final_sigmas_type='zero'``; ``unipc`` and ``deis`` get
    ``solver_order=2`` (their guided-sampling setting) and ``final_sigmas_type='zero'``
    where the class has it; ``pndm`` gets ``skip_prk_steps=True`` (PLMS, Stable
    Diffusion's setting).

    A flow-matching model's config (a ``FlowMatch*`` class: SD3) gives its own flow scheduler:
    ``euler`` is :class:`diffusers.FlowMatchEulerDiscreteScheduler` from that config (``shift``,
    ``use_dynamic_shifting``, ``shift_terminal`` kept as they are), ``euler-stochastic`` the same
    with ``stochastic_sampling=True``, ``heun`` :class:`GridFlowHeunScheduler` (diffusers'
    FlowMatchHeunDiscreteScheduler on the same shifted sigmas: second order, two evaluations per step
    but the last).

    Raises:
        ValueError: for an unknown name; SettingError: a name a flow-matching model does not take.
    """
    check_scheduler_name(name)
    if is_flow_config(config):
        if name == "heun":  # Heun on the flow ODE, following the model's whole (shifted) schedule
            flow = {k: v for k, v in dict(config).items() if k != "_use_default_values"}
            sched = GridFlowHeunScheduler.from_config({k: v for k, v in flow.items()
                                                       if k in ("num_train_timesteps", "shift")})
            sched.flow_config = flow
            return sched
        if name not in FLOW_SCHEDULERS:
            from boomerang.errors import SettingError

            raise SettingError(f"`scheduler` {name} works on the DDPM noise schedule; this flow-matching model takes "
                               f"{', '.join(FLOW_SCHEDULERS)} (or auto)")
        return FlowMatchEulerDiscreteScheduler.from_config({k: v for k, v in dict(config).items()
                                                            if k != "_use_default_values"},
                                                           stochastic_sampling=name == "euler-stochastic")
    if name not in _CLASSES:
        from boomerang.errors import SettingError

        raise SettingError(f"`scheduler` {name} is offered on flow-matching models (SD3, FLUX); this model's "
                           f"schedule is DDPM-type: use one of {', '.join(SCHEDULER_NAMES)}")
    cls = _CLASSES[name]
    overrides: dict[str, Any] = {}
    if name == "dpmsolver++":
        overrides = dict(algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero", lower_order_final=True)
    elif name == "dpmsolver":
        overrides = dict(algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero", lower_order_final=True)
    elif name in ("unipc", "deis"):
        overrides = dict(solver_order=2, lower_order_final=True)
        if "final_sigmas_type" in inspect.signature(cls.__init__).parameters:
            overrides["final_sigmas_type"] = "zero"
    elif name == "pndm":
        # PLMS, as Stable Diffusion and the authors' notebook use it; PNDM's Runge-Kutta warm-up
        # (skip_prk_steps=False, the DDPM default) crashes in diffusers for fewer than 4 steps.
        overrides = dict(skip_prk_steps=True)
    elif name == "euler":
        overrides = dict(final_sigmas_type="zero")
    return cls.from_config(dict(config), **overrides)


def sigma_spacing(scheduler) -> str | None:
    """The sigma-spacing key a built scheduler's config turns on (``use_karras_sigmas`` ...), or None
    (flow Heun: the model's flow config it computes its sigmas from)."""
    config = {**dict(scheduler.config), **dict(getattr(scheduler, "flow_config", {}) or {})}
    for key in SIGMA_SPACING_KEYS:
        if config.get(key):
            return key
    return None


def check_sigma_spacing_supported(name: str, scheduler) -> None:
    """Refuse a sigma spacing (``use_karras_sigmas`` ...) that the scheduler's class does not take.

    diffusers keeps such a key in the config of any scheduler but only the classes whose
    constructor takes it use it; the others would silently sample on their plain grid.

    Raises:
        SettingError: naming the key, the scheduler, and the schedulers that honour it.
    """
    from boomerang.errors import SettingError

    key = sigma_spacing(scheduler)
    if key is None or key in inspect.signature(type(scheduler).__init__).parameters:
        return
    takes = [n for n, c in _CLASSES.items() if key in inspect.signature(c.__init__).parameters]
    raise SettingError(
        f"the model's scheduler config asks for {key}=true, which `scheduler` {name} does not use (diffusers "
        f"would ignore it and sample on the plain grid); use `scheduler` {' / '.join(takes) or '(none here)'}"
        f" with `schedule` img2img or reference, or set \"{key}\": false in the model's scheduler_config.json"
    )


def check_exact_grid(scheduler) -> None:
    """Refuse a scheduler that cannot follow the exact Boomerang grid as it is configured.

    Raises:
        SettingError: PNDM, KDPM2 and KDPM2-ancestral (no custom grid in diffusers), or a
            config asking for a sigma spacing (``use_karras_sigmas`` ...) the grid would override.
    """
    from boomerang.errors import SettingError

    if isinstance(scheduler, (PNDMScheduler, KDPM2DiscreteScheduler, KDPM2AncestralDiscreteScheduler)):
        name = {PNDMScheduler: "pndm", KDPM2DiscreteScheduler: "kdpm2"}.get(type(scheduler), "kdpm2-ancestral")
        raise SettingError(
            f"`scheduler` {name} cannot follow the exact Boomerang grid (diffusers gives it no custom "
            f"timesteps); use one of {', '.join(CUSTOM_GRID_SCHEDULERS)}, or `schedule` img2img / reference with {name}"
        )
    key = sigma_spacing(scheduler)
    if key is not None:
        raise SettingError(
            f"the model's scheduler config asks for {key}=true, a sigma spacing that chooses its own timesteps, "
            "so the exact Boomerang grid cannot honour it; use `schedule` img2img or reference, which follow the "
            f"config's own grid, or set \"{key}\": false in the model's scheduler_config.json for the exact grid"
        )


def grid_timesteps(scheduler, timesteps: list[int]) -> tuple[int, ...]:
    """What ``scheduler`` visits on the exact grid ``timesteps``: the grid itself, or for
    second-order schedulers (heun) each timestep after the first twice (predictor and corrector).

    Raises:
        SettingError: see :func:`check_exact_grid`.
    """
    set_grid(scheduler, timesteps)
    return tuple(int(t) for t in scheduler.timesteps)


def set_grid(scheduler, timesteps: list[int], device=None) -> None:
    """Make ``scheduler`` visit exactly ``timesteps`` (descending training steps) and then x0.

    Sigma-based schedulers (Euler, DPM-Solver) also get ``set_begin_index(0)``
    so that ``add_noise`` and the first ``step`` use the entry of ``timesteps[0]``.

    Raises:
        ValueError: if the scheduler cannot follow a custom grid (PNDM, KDPM2), or
            its config asks for a sigma spacing (``use_karras_sigmas`` ...) that
            the grid would silently override.
    """
    check_exact_grid(scheduler)
    scheduler.set_timesteps(timesteps=[int(t) for t in timesteps], device=device)
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(0)


def entry_index(scheduler, kept: list[int]) -> int:
    """Where a reverse process may enter the scheduler's own grid (``reference`` schedule).

    Args:
        scheduler: a scheduler after ``set_timesteps(steps)``.
        kept: ascending indices of ``scheduler.timesteps`` at or below the noise timestep.

    Returns:
        An index in ``kept`` (or ``len(timesteps)``: nothing to denoise). PLMS (pndm)
        repeats its second timestep for its warm-up: entering at the first copy would
        make the second call treat x as one step noisier, so the second copy is used.
        Second-order schedulers (heun, kdpm2, kdpm2-ancestral: ``order == 2``) list
        each step's start and its correction; only a start (an even index) is an entry.
    """
    ts = scheduler.timesteps
    if getattr(scheduler, "order", 1) == 2:
        starts = [i for i in kept if i % 2 == 0]
        return starts[0] if starts else len(ts)
    if len(kept) >= 2 and int(ts[kept[0]]) == int(ts[kept[1]]):
        return kept[1]
    return kept[0]


def is_flow_scheduler(scheduler) -> bool:
    """True for the flow-matching schedulers (x_t = (1 - sigma) x0 + sigma eps): Euler (and its
    stochastic form) and Heun."""
    return isinstance(scheduler, (FlowMatchEulerDiscreteScheduler, GridFlowHeunScheduler))


def is_lcm_scheduler(scheduler) -> bool:
    """True for diffusers' LCMScheduler (Latent Consistency Models)."""
    return isinstance(scheduler, LCMScheduler)


def set_lcm_timesteps(scheduler, plan_schedule: str, *, steps: int, level: float, timesteps=(), device=None) -> None:
    """Set an LCMScheduler for a plan: the exact schedule's distilled timesteps ``timesteps`` as its
    custom grid (its warnings about a first timestep below T - 1 silenced: that is the point of a
    partial chain); ``img2img``: diffusers' LCM img2img rule ``set_timesteps(steps, strength=level)``;
    ``global``: ``set_timesteps(steps)``.

    Raises:
        ValueError: what LCMScheduler raises (e.g. ``steps`` x level larger than the distilled grid).
    """
    from diffusers.utils import logging as dlogging

    if plan_schedule == "exact":
        before = dlogging.get_verbosity()
        dlogging.set_verbosity_error()
        try:
            scheduler.set_timesteps(timesteps=[int(t) for t in timesteps], device=device)
        finally:
            dlogging.set_verbosity(before)
    elif plan_schedule == "img2img":
        scheduler.set_timesteps(steps, device=device, strength=level)
    else:
        scheduler.set_timesteps(steps, device=device)


def is_stochastic(name: str, eta: float = 0.0) -> bool:
    """True if the reverse steps draw fresh noise (ddpm, kdpm2-ancestral, lcm, euler-stochastic; ddim with eta > 0)."""
    return name in ("ddpm", "kdpm2-ancestral", "lcm", "euler-stochastic") or (name == "ddim" and eta > 0)


def step_kwargs(name: str, *, eta: float, generators) -> dict[str, Any]:
    """Keyword arguments for ``scheduler.step``: the per-item generator list, and eta for DDIM."""
    kwargs: dict[str, Any] = {}
    if name in _TAKES_GENERATOR or name == "euler-stochastic":
        kwargs["generator"] = list(generators)
    if name == "ddim":
        kwargs["eta"] = float(eta)
    return kwargs
