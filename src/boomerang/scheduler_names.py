"""The scheduler names (torch-free): what ``--scheduler`` accepts, checked before diffusers loads.

:mod:`boomerang.schedulers` builds the schedulers (and imports diffusers); the
names live here so that the settings (:class:`boomerang.settings.SampleSettings`),
the command line and the page can check a name at once, without importing torch
or diffusers. :mod:`boomerang.schedulers` re-exports both tuples.
"""

from __future__ import annotations

__all__ = ["SCHEDULER_NAMES", "CUSTOM_GRID_SCHEDULERS"]

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
