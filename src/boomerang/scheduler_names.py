"""The scheduler names (torch-free): what ``--scheduler`` accepts, checked before diffusers loads.

:mod:`boomerang.schedulers` builds the schedulers (and imports diffusers); the
names live here so that the settings (:class:`boomerang.settings.SampleSettings`),
the command line and the page can check a name at once, without importing torch
or diffusers. :mod:`boomerang.schedulers` re-exports both tuples.
"""

from __future__ import annotations

__all__ = ["SCHEDULER_NAMES", "CUSTOM_GRID_SCHEDULERS", "SCHEDULES", "AUTO", "FLOW_SCHEDULERS", "DISTILLED_SCHEDULERS",
           "ALL_NAMES", "check_scheduler", "check_schedule", "is_flow_config", "is_lcm_config", "accepted_name"]


#: Reverse schedules: ``exact`` (Boomerang's own grid from the noise timestep), ``img2img``
#: (diffusers' img2img pipelines) and ``reference`` (the paper's reference code).
SCHEDULES: tuple[str, ...] = ("exact", "img2img", "reference")

#: Every scheduler name of DDPM-type (vp) models (see :mod:`boomerang.schedulers` for what each one is).
SCHEDULER_NAMES: tuple[str, ...] = (
    "ddpm", "ddim", "euler", "dpmsolver++", "pndm",
    "heun", "dpmsolver", "lms", "unipc", "deis", "kdpm2", "kdpm2-ancestral",
)
#: Schedulers that can follow the exact Boomerang grid (``levels.reverse_timesteps``): all but
#: pndm, kdpm2 and kdpm2-ancestral, which interleave timesteps of their own.
CUSTOM_GRID_SCHEDULERS: tuple[str, ...] = (
    "ddpm", "ddim", "euler", "dpmsolver++", "heun", "dpmsolver", "lms", "unipc", "deis",
)
#: ``--scheduler auto`` (the default): the model's own default scheduler (``ModelInfo.default_scheduler``:
#: ddpm for DDPM and Stable Diffusion 1.x/2.x, euler for SDXL and the flow-matching families, lcm for
#: Latent Consistency Models).
AUTO = "auto"
#: The names a flow-matching model (a ``FlowMatch*`` scheduler config: SD3, FLUX) takes: ``euler`` is
#: diffusers' FlowMatchEulerDiscreteScheduler (the deterministic flow ODE, Euler steps; the default);
#: ``euler-stochastic`` the same with ``stochastic_sampling``: each step estimates x0 = x - sigma v and
#: draws x at the next sigma afresh, (1 - sigma') x0 + sigma' eps' (eps' from the item's generator), the
#: flow counterpart of the paper's ancestral process. Offered on flow-matching models only. ``heun``:
#: Heun's second-order method on the flow ODE (diffusers' FlowMatchHeunDiscreteScheduler on the model's
#: own shifted sigmas, :class:`boomerang.scheduler_grids.GridFlowHeunScheduler`).
FLOW_SCHEDULERS: tuple[str, ...] = ("euler", "euler-stochastic", "heun")
#: Schedulers of few-step distilled models: ``lcm`` is diffusers' LCMScheduler (the multistep
#: consistency sampler of Latent Consistency Models: a fresh noise draw between steps). Offered
#: beside :data:`SCHEDULER_NAMES` (which the per-scheduler tests of DDPM-type models iterate).
DISTILLED_SCHEDULERS: tuple[str, ...] = ("lcm",)
#: Every name ``--scheduler`` takes, in the order messages list them.
ALL_NAMES: tuple[str, ...] = tuple(dict.fromkeys((AUTO, *SCHEDULER_NAMES, *DISTILLED_SCHEDULERS, *FLOW_SCHEDULERS)))


def is_flow_config(config: dict) -> bool:
    """True for the scheduler config of a flow-matching model (its class is a ``FlowMatch*`` scheduler)."""
    return str(dict(config).get("_class_name", "")).startswith("FlowMatch")


def is_lcm_config(config: dict) -> bool:
    """True for the scheduler config of a Latent Consistency Model (class LCMScheduler)."""
    return str(dict(config).get("_class_name", "")) == "LCMScheduler"


def accepted_name(name: str) -> bool:
    """True for every name ``--scheduler`` takes (:data:`ALL_NAMES`): auto, :data:`SCHEDULER_NAMES`,
    :data:`DISTILLED_SCHEDULERS`, :data:`FLOW_SCHEDULERS`."""
    return name in ALL_NAMES


def check_scheduler(name) -> str:
    """``name`` as a scheduler name (stripped, lower case), checked against :data:`ALL_NAMES`
    (whether the model takes it is checked when its plan is made).

    Raises:
        SettingError: (a ValueError) an unknown name, listing the known ones.
    """
    from boomerang.errors import SettingError

    name = str(name).strip().lower()
    if not accepted_name(name):
        raise SettingError(f"`scheduler` must be one of {', '.join(ALL_NAMES)}, got {name!r}")
    return name


def check_schedule(name) -> str:
    """``name`` checked against :data:`SCHEDULES`.

    Raises:
        SettingError: (a ValueError) an unknown schedule, listing the known ones.
    """
    from boomerang.errors import SettingError

    if name not in SCHEDULES:
        raise SettingError(f"`schedule` must be one of {', '.join(SCHEDULES)}, got {name!r}")
    return name
