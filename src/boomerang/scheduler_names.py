"""The scheduler names (torch-free): what ``--scheduler`` accepts, checked before diffusers loads.

:mod:`boomerang.schedulers` builds the schedulers (and imports diffusers); the
names live here so that the settings (:class:`boomerang.settings.SampleSettings`),
the command line and the page can check a name at once, without importing torch
or diffusers. :mod:`boomerang.schedulers` re-exports both tuples.
"""

from __future__ import annotations

__all__ = ["SCHEDULER_NAMES", "CUSTOM_GRID_SCHEDULERS", "SCHEDULES", "check_scheduler", "check_schedule"]

#: Reverse schedules: ``exact`` (Boomerang's own grid from the noise timestep), ``img2img``
#: (diffusers' img2img pipelines) and ``reference`` (the paper's reference code).
SCHEDULES: tuple[str, ...] = ("exact", "img2img", "reference")

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


def check_scheduler(name) -> str:
    """``name`` as a scheduler name (stripped, lower case), checked against :data:`SCHEDULER_NAMES`.

    Raises:
        SettingError: (a ValueError) an unknown name, listing the known ones.
    """
    from boomerang.errors import SettingError

    name = str(name).strip().lower()
    if name not in SCHEDULER_NAMES:
        raise SettingError(f"`scheduler` must be one of {', '.join(SCHEDULER_NAMES)}, got {name!r}")
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
