"""The scheduler names (torch-free): what ``--scheduler`` accepts, checked before diffusers loads.

:mod:`boomerang.schedulers` builds the schedulers (and imports diffusers); the
names live here so that the settings (:class:`boomerang.settings.SampleSettings`),
the command line and the page can check a name at once, without importing torch
or diffusers. :mod:`boomerang.schedulers` re-exports both tuples.
"""

from __future__ import annotations

__all__ = ["SCHEDULER_NAMES", "CUSTOM_GRID_SCHEDULERS", "AUTO", "FLOW_SCHEDULERS", "DISTILLED_SCHEDULERS",
           "is_flow_config", "is_lcm_config", "accepted_name"]

#: Every scheduler name (see :mod:`boomerang.schedulers` for what each one is).
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
#: ddpm for DDPM and Stable Diffusion 1.x/2.x, euler for SDXL and the flow-matching families).
AUTO = "auto"
#: The names a flow-matching model (a ``FlowMatch*`` scheduler config: SD3, FLUX) takes: ``euler`` is
#: diffusers' FlowMatchEulerDiscreteScheduler (the deterministic flow ODE, Euler steps; the default);
#: ``euler-stochastic`` the same with ``stochastic_sampling``: each step estimates x0 = x - sigma v and
#: draws x at the next sigma afresh, (1 - sigma') x0 + sigma' eps' (eps' from the item's generator), the
#: flow counterpart of the paper's ancestral process. Offered on flow-matching models only.
FLOW_SCHEDULERS: tuple[str, ...] = ("euler", "euler-stochastic")


def is_flow_config(config: dict) -> bool:
    """True for the scheduler config of a flow-matching model (its class is a ``FlowMatch*`` scheduler)."""
    return str(dict(config).get("_class_name", "")).startswith("FlowMatch")
#: Schedulers of few-step distilled models: ``lcm`` is diffusers' LCMScheduler (the multistep
#: consistency sampler of Latent Consistency Models: a fresh noise draw between steps). Offered
#: beside :data:`SCHEDULER_NAMES` (which the per-scheduler tests of DDPM-type models iterate).
DISTILLED_SCHEDULERS: tuple[str, ...] = ("lcm",)


def is_lcm_config(config: dict) -> bool:
    """True for the scheduler config of a Latent Consistency Model (class LCMScheduler)."""
    return str(dict(config).get("_class_name", "")) == "LCMScheduler"


def accepted_name(name: str) -> bool:
    """True for every name ``--scheduler`` takes: auto, :data:`SCHEDULER_NAMES`, :data:`DISTILLED_SCHEDULERS`,
    :data:`FLOW_SCHEDULERS`."""
    return name == AUTO or name in SCHEDULER_NAMES or name in DISTILLED_SCHEDULERS or name in FLOW_SCHEDULERS
