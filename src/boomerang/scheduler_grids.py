"""Schedulers that follow an arbitrary descending grid of training timesteps.

diffusers gives DDPM, Euler, DPM-Solver(++) and Heun a custom ``timesteps``
grid; DDIM, LMS, UniPC and DEIS have none. The classes here add it without
touching their math: :class:`GridDDIMScheduler` makes DDIM's
``t - T // num_inference_steps`` the gap to the next grid entry, and
:class:`_GridSigmas` rebuilds a sigma-based scheduler's state on the grid;
:class:`GridFlowHeunScheduler` gives flow-matching Heun custom sigmas and the dynamic shift.
The registry (:mod:`boomerang.schedulers`) builds them by name; the exact
Boomerang grid (:func:`boomerang.levels.reverse_timesteps`) is set through
:func:`boomerang.schedulers.set_grid`.
"""

from __future__ import annotations

from diffusers import (
    DDIMScheduler,
    DEISMultistepScheduler,
    FlowMatchHeunDiscreteScheduler,
    LMSDiscreteScheduler,
    UniPCMultistepScheduler,
)

__all__ = ["GridDDIMScheduler", "GridLMSScheduler", "GridUniPCScheduler", "GridDEISScheduler", "GridFlowHeunScheduler"]


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


class _GridSigmas:
    """Mixin: ``set_timesteps(timesteps=[...])`` for sigma-based schedulers whose diffusers
    class has no custom grid (LMS, UniPC, DEIS).

    The scheduler first builds its own state for ``len(timesteps)`` steps (solver
    order, history buffers, its final sigma), then its grid is replaced: ``timesteps``
    = the given training steps and ``sigmas`` = sqrt((1 - alpha_bar_t) / alpha_bar_t)
    at exactly those steps (what the class's own interpolation gives at integer t),
    followed by the final sigma the class chose. All step math stays diffusers'.
    """

    def set_timesteps(self, num_inference_steps=None, device=None, timesteps=None, **kwargs):
        if timesteps is None:
            return super().set_timesteps(num_inference_steps, device=device, **kwargs)
        import numpy as np
        import torch

        grid = _check_grid(timesteps, self.config.num_train_timesteps)
        super().set_timesteps(len(grid), device=device)
        ac = self.alphas_cumprod.double().cpu().numpy()
        sig = np.sqrt((1 - ac) / ac)[grid]
        last = float(self.sigmas[-1])
        self.sigmas = torch.from_numpy(np.concatenate([sig, [last]])).to(self.sigmas.device, self.sigmas.dtype)
        self.timesteps = torch.tensor(grid, dtype=self.timesteps.dtype, device=self.timesteps.device)
        self.num_inference_steps = len(grid)


def _check_grid(timesteps, T: int) -> list[int]:
    grid = [int(t) for t in timesteps]
    if not grid or any(a <= b for a, b in zip(grid, grid[1:])) or grid[-1] < 0:
        raise ValueError(f"custom timesteps must be non-empty, strictly decreasing and >= 0, got {grid}")
    if grid[0] >= T:
        raise ValueError(f"custom timesteps must be < num_train_timesteps={T}")
    return grid


class GridLMSScheduler(_GridSigmas, LMSDiscreteScheduler):
    """LMSDiscreteScheduler that can follow a custom grid (see :class:`_GridSigmas`)."""


class GridUniPCScheduler(_GridSigmas, UniPCMultistepScheduler):
    """UniPCMultistepScheduler that can follow a custom grid (see :class:`_GridSigmas`)."""


class GridDEISScheduler(_GridSigmas, DEISMultistepScheduler):
    """DEISMultistepScheduler that can follow a custom grid (see :class:`_GridSigmas`)."""



class GridFlowHeunScheduler(FlowMatchHeunDiscreteScheduler):
    """diffusers' FlowMatchHeunDiscreteScheduler (Heun's second-order method on the flow ODE; Karras et
    al. 2022, Alg. 1 without churn) on any sigma grid, with the model's whole flow schedule.

    diffusers' class takes only a step count and only a static ``shift``. Here ``set_timesteps`` takes
    what FlowMatchEulerDiscreteScheduler takes (``sigmas``: unshifted sigmas, ``mu``: the dynamic
    shift) and computes the shifted sigmas with that class from the model's own scheduler config
    (``flow_config``: ``shift``, ``use_dynamic_shifting``, ``shift_terminal`` ... honoured as they
    are); then lays them out as Heun does: timesteps t_0, t_1, t_1, ..., t_{n-1}, t_{n-1} (each step
    after the first visited twice, predictor and corrector) and sigmas s_0, s_1, s_1, ..., 0. The
    stepping math is diffusers'. With ``set_timesteps(steps)`` on a static-shift config the grid
    equals diffusers' own class (tests/models/test_flow_heun.py).
    """

    flow_config: dict = {}

    def set_timesteps(self, num_inference_steps=None, device=None, sigmas=None, mu=None) -> None:
        import torch
        from diffusers import FlowMatchEulerDiscreteScheduler

        euler = FlowMatchEulerDiscreteScheduler.from_config(dict(self.flow_config))
        kw = {"mu": mu} if mu is not None else {}
        if sigmas is None:
            euler.set_timesteps(num_inference_steps, device=device, **kw)
        else:
            euler.set_timesteps(sigmas=list(sigmas), device=device, **kw)
        t, s = euler.timesteps, euler.sigmas  # n timesteps; n + 1 sigmas, the last the final one (0)
        self.num_inference_steps = len(t)
        self.timesteps = torch.cat([t[:1], t[1:].repeat_interleave(2)]).to(device=device)
        self.sigmas = torch.cat([s[:1], s[1:-1].repeat_interleave(2), s[-1:]]).to(device=device)
        self.prev_derivative = None
        self.dt = None
        self._step_index = None
        self._begin_index = None
