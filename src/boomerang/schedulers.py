"""Scheduler registry: a name -> a diffusers scheduler built from the model's own config.

All scheduler math is diffusers'. This module only chooses the class, fixes a
few options that the Boomerang grid needs, and adapts DDIM so that it can
follow an arbitrary descending grid of training timesteps.

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
  (PLMS: Stable Diffusion's reference scheduler). It cannot follow a custom grid, so it is only available for the
  schedules that use the scheduler's own grid (``img2img``, ``reference``,
  ``from_noise``).

Deterministic solvers (ddim with eta=0, euler, dpmsolver++, pndm) get the
variety between samples only from the forward noise eps; ddpm and ddim with
eta>0 also add fresh noise at every reverse step.
"""

from __future__ import annotations

from typing import Any

from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
)

__all__ = [
    "SCHEDULER_NAMES",
    "CUSTOM_GRID_SCHEDULERS",
    "GridDDIMScheduler",
    "make_scheduler",
    "set_grid",
    "is_stochastic",
    "step_kwargs",
]

SCHEDULER_NAMES: tuple[str, ...] = ("ddpm", "ddim", "euler", "dpmsolver++", "pndm")
# Schedulers that can follow the exact Boomerang grid (levels.reverse_timesteps).
CUSTOM_GRID_SCHEDULERS: tuple[str, ...] = ("ddpm", "ddim", "euler", "dpmsolver++")


class _GapSteps(int):
    """An int (the number of inference steps) whose ``T // self`` is a given gap.

    DDIMScheduler.step computes the previous timestep as
    ``t - num_train_timesteps // num_inference_steps``, i.e. it assumes an evenly
    spaced grid. While a :class:`GridDDIMScheduler` steps, its
    ``num_inference_steps`` is one of these, so that expression evaluates to the
    gap between the current grid entry and the next one (or to t + 1 at the last
    entry, so prev = -1 and DDIM's final step uses ``final_alpha_cumprod``).
    Python calls ``__rfloordiv__`` of an int subclass before ``int.__floordiv__``.
    """

    gap: int

    def __new__(cls, value: int, gap: int):
        obj = super().__new__(cls, value)
        obj.gap = int(gap)
        return obj

    def __rfloordiv__(self, other):  # other // self
        return self.gap


class GridDDIMScheduler(DDIMScheduler):
    """DDIMScheduler that can follow a custom descending grid of timesteps.

    ``set_timesteps(timesteps=[...])`` stores the grid; ``step`` then sets
    ``num_inference_steps`` to a :class:`_GapSteps` holding the gap to the next
    grid entry and calls ``DDIMScheduler.step`` unchanged, so all DDIM math
    (eta, clipping, prediction types, final_alpha_cumprod) stays diffusers'.
    With ``set_timesteps(num_inference_steps)`` it is exactly DDIMScheduler.
    """

    _grid: list[int] | None = None

    def set_timesteps(self, num_inference_steps: int | None = None, device=None, timesteps: list[int] | None = None):
        if (num_inference_steps is None) == (timesteps is None):
            raise ValueError("pass exactly one of num_inference_steps or timesteps")
        if timesteps is None:
            self._grid = None
            return super().set_timesteps(num_inference_steps, device=device)
        import numpy as np
        import torch

        grid = [int(t) for t in timesteps]
        if not grid or any(a <= b for a, b in zip(grid, grid[1:])) or grid[-1] < 0:
            raise ValueError(f"custom timesteps must be non-empty, strictly decreasing and >= 0, got {grid}")
        if grid[0] >= self.config.num_train_timesteps:
            raise ValueError(f"custom timesteps must be < num_train_timesteps={self.config.num_train_timesteps}")
        self._grid = grid
        self.num_inference_steps = len(grid)
        self.timesteps = torch.from_numpy(np.array(grid, dtype=np.int64)).to(device)

    def step(self, model_output, timestep, sample, *args, **kwargs):
        if self._grid is None:
            return super().step(model_output, timestep, sample, *args, **kwargs)
        t = int(timestep)
        i = self._grid.index(t)  # ValueError if t is off the grid: a caller bug
        prev = self._grid[i + 1] if i + 1 < len(self._grid) else -1
        self.num_inference_steps = _GapSteps(len(self._grid), t - prev)
        try:
            return super().step(model_output, timestep, sample, *args, **kwargs)
        finally:
            self.num_inference_steps = len(self._grid)


_CLASSES = {
    "ddpm": DDPMScheduler,
    "ddim": GridDDIMScheduler,
    "euler": EulerDiscreteScheduler,
    "dpmsolver++": DPMSolverMultistepScheduler,
    "pndm": PNDMScheduler,
}


def check_scheduler_name(name: str) -> str:
    """Validate a scheduler name; returns it. Raises ValueError listing the choices."""
    if name not in SCHEDULER_NAMES:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULER_NAMES)}")
    return name


def make_scheduler(name: str, config: dict[str, Any]):
    """Build scheduler ``name`` with ``from_config`` of the model's scheduler config.

    The model's training schedule (num_train_timesteps, betas, prediction_type,
    clip_sample, timestep_spacing, steps_offset, ...) is kept. Overrides:
    ``dpmsolver++`` gets ``algorithm_type='dpmsolver++'``, ``solver_order=2``,
    ``final_sigmas_type='zero'`` and ``lower_order_final=True`` (the last step
    lands on x0 with a first-order update) and no Karras/Lu/exponential/beta
    sigmas (they cannot follow a custom grid); ``euler`` gets
    ``final_sigmas_type='zero'`` and no Karras sigmas; ``pndm`` gets
    ``skip_prk_steps=True`` (PLMS, Stable Diffusion's setting).

    Raises:
        ValueError: for an unknown name.
    """
    check_scheduler_name(name)
    cls = _CLASSES[name]
    overrides: dict[str, Any] = {}
    if name == "dpmsolver++":
        overrides = dict(
            algorithm_type="dpmsolver++",
            solver_order=2,
            final_sigmas_type="zero",
            lower_order_final=True,
            use_karras_sigmas=False,
            use_lu_lambdas=False,
            use_exponential_sigmas=False,
            use_beta_sigmas=False,
            use_flow_sigmas=False,
        )
    elif name == "pndm":
        # PLMS, as Stable Diffusion and the authors' notebook use it; PNDM's Runge-Kutta warm-up
        # (skip_prk_steps=False, the DDPM default) crashes in diffusers for fewer than 4 steps.
        overrides = dict(skip_prk_steps=True)
    elif name == "euler":
        overrides = dict(final_sigmas_type="zero", use_karras_sigmas=False, use_exponential_sigmas=False,
                         use_beta_sigmas=False)
    return cls.from_config(dict(config), **overrides)


def set_grid(scheduler, timesteps: list[int], device=None) -> None:
    """Make ``scheduler`` visit exactly ``timesteps`` (descending training steps) and then x0.

    Sigma-based schedulers (Euler, DPM-Solver) also get ``set_begin_index(0)``
    so that ``add_noise`` and the first ``step`` use the entry of ``timesteps[0]``.

    Raises:
        ValueError: if the scheduler cannot follow a custom grid (PNDM).
    """
    if isinstance(scheduler, PNDMScheduler):
        raise ValueError(
            "the pndm scheduler cannot follow the exact Boomerang grid; use --scheduler ddpm, ddim, euler "
            "or dpmsolver++, or --schedule reference / img2img with pndm"
        )
    scheduler.set_timesteps(timesteps=[int(t) for t in timesteps], device=device)
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(0)


def is_stochastic(name: str, eta: float = 0.0) -> bool:
    """True if the reverse steps draw fresh noise (ddpm; ddim with eta > 0)."""
    return name == "ddpm" or (name == "ddim" and eta > 0)


def step_kwargs(name: str, *, eta: float, generators) -> dict[str, Any]:
    """Keyword arguments for ``scheduler.step``: the per-item generator list, and eta for DDIM."""
    kwargs: dict[str, Any] = {}
    if name in ("ddpm", "ddim", "euler", "dpmsolver++"):
        kwargs["generator"] = list(generators)
    if name == "ddim":
        kwargs["eta"] = float(eta)
    return kwargs
