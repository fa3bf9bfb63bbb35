"""The noise-level contract of Boomerang (torch-free).

Boomerang (Luzi et al., "Boomerang: Local sampling on image manifolds using
diffusion models", Sec. 3) has one knob: how far along the forward process the
input x0 is pushed before the reverse process brings it back. This module turns
the user's knob into exact training timesteps, with no model or torch import, so
that the CLI can reject bad values before anything heavy is loaded.

Conventions (T = ``num_train_timesteps`` of the model's scheduler, 1000 for
DDPM and Stable Diffusion):

* A **timestep** t is an integer training step in [0, T-1]. Noise is added with
  the model's own schedule, x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps,
  and t is exactly the first timestep the reverse process denoises.
* A **level** is a fraction in [0, 1]. Level 0 means "no noise": the input comes
  back unchanged and the model is not called. A level in (0, 1] maps to

      t = round(level * (T - 1))

  which is monotone, reaches every training step (resolution 1/(T-1)), maps
  level 1 to the last training timestep T-1, and does not depend on the number
  of inference steps. ``timestep_to_level`` is its inverse on integers.
* The **reverse grid** for a start timestep t and a budget of ``steps`` (the
  number of steps a full chain from T-1 would take) has

      n = min(t + 1, max(1, ceil(steps * (t + 1) / T)))

  denoiser evaluations (about level x steps, at least one), at the timesteps

      t_i = floor((t + 1) * (n - i) / n) - 1,   i = 0 .. n-1,

  followed by the final step to x0. t_0 = t exactly, the t_i strictly
  decrease, and at t = T-1 the grid equals diffusers' "trailing" spacing
  (e.g. 999, 979, ..., 19 for 50 steps). This is "trailing" spacing applied to
  the truncated chain [0, t].

The compatibility schedules ``img2img`` and ``reference`` need a scheduler
object and live in :mod:`boomerang.planning` (re-exported by :mod:`boomerang.core`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from boomerang.errors import SettingError

__all__ = [
    "check_level",
    "check_timestep",
    "check_positive_int",
    "parse_levels",
    "level_to_timestep",
    "timestep_to_level",
    "num_denoiser_evals",
    "reverse_timesteps",
    "NoisePlan",
    "plan_exact",
    "check_level_or_timestep",
    "check_from_noise",
]


def check_level(level: float | str, name: str = "level") -> float:
    """Validate a noise level.

    Args:
        level: a fraction of the diffusion chain, in [0, 1] (a float, or a
            string from the command line).
        name: how the value is called in the error message.

    Returns:
        The level as a float.

    Raises:
        ValueError: if the value is not a number, is NaN or infinite, or lies
            outside [0, 1].
    """
    try:
        value = float(level)
    except (TypeError, ValueError):
        raise SettingError(
            f"`{name}` must be a number in [0, 1], got {level!r}; "
            "e.g. 0.3 (0 returns the input, 1 starts from the last training timestep)"
        ) from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise SettingError(
            f"`{name}` must be a finite number in [0, 1], got {level!r}; "
            "e.g. 0.3, or give `timestep` for an exact training timestep"
        )
    return value


def parse_levels(text: str) -> list[float]:
    """Parse a comma-separated list of levels such as ``"0.2,0.5,0.8"``.

    Raises:
        ValueError: if the list is empty or any entry is not a level in [0, 1].
    """
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(p == "" for p in parts):
        raise SettingError(f"`level` must be one level or a comma-separated list such as 0.2,0.5,0.8, got {text!r}")
    return [check_level(p) for p in parts]


def check_timestep(timestep: int | str, num_train_timesteps: int | None) -> int:
    """Validate an integer training timestep.

    Args:
        timestep: an integer in [0, T-1] (int or command-line string).
        num_train_timesteps: T, the length of the model's training chain; ``None``
            when the model is not known yet (then only "integer >= 0" is checked).

    Returns:
        The timestep as an int.

    Raises:
        ValueError: if it is not an integer or lies outside [0, T-1].
    """
    allowed = "an integer >= 0" if num_train_timesteps is None else f"an integer in [0, {num_train_timesteps - 1}]"
    try:
        as_float = float(timestep)
    except (TypeError, ValueError):
        as_float = math.nan
    if not math.isfinite(as_float) or as_float != int(as_float):
        raise SettingError(f"`timestep` must be {allowed}, got {timestep!r}")
    value = int(as_float)
    if num_train_timesteps is None:
        if value < 0:
            raise SettingError(f"`timestep` must be {allowed} (a training timestep), got {value}; or give `level` in [0, 1]")
        return value
    if not 0 <= value <= num_train_timesteps - 1:
        raise SettingError(
            f"`timestep` must be in [0, {num_train_timesteps - 1}] (the model has T={num_train_timesteps} "
            f"training timesteps), got {value}; or give `level` in [0, 1]"
        )
    return value


def check_positive_int(value: int | str, name: str) -> int:
    """Validate a count that must be an integer >= 1 (steps, num-samples, batch size).

    Args:
        name: the parameter's name (``num_samples``; a CLI spelling ``--num-samples`` is
            accepted and stored as the parameter name).

    Raises:
        SettingError: (a ValueError) if the value is not an integer or is smaller than 1.
    """
    name = name.lstrip("-").replace("-", "_")
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        as_float = math.nan
    if not math.isfinite(as_float) or as_float != int(as_float) or as_float < 1:
        raise SettingError(f"`{name}` must be an integer >= 1, got {value!r}")
    return int(as_float)


def level_to_timestep(level: float, num_train_timesteps: int) -> int | None:
    """Map a level in [0, 1] to the training timestep where noise is added.

    Returns ``None`` for level 0 (no noise: the input is returned), otherwise
    ``round(level * (T - 1))``, an integer in [0, T-1]. Monotone in ``level``.

    Raises:
        ValueError: if ``level`` is not in [0, 1] or T < 1.
    """
    level = check_level(level)
    if num_train_timesteps < 1:
        raise ValueError(f"num_train_timesteps must be >= 1, got {num_train_timesteps}")
    if level == 0.0:
        return None
    return int(round(level * (num_train_timesteps - 1)))


def timestep_to_level(timestep: int, num_train_timesteps: int) -> float:
    """The level that maps to ``timestep``: t / (T - 1) (1.0 when T == 1)."""
    timestep = check_timestep(timestep, num_train_timesteps)
    return timestep / (num_train_timesteps - 1) if num_train_timesteps > 1 else 1.0


def num_denoiser_evals(timestep: int, steps: int, num_train_timesteps: int) -> int:
    """Number of denoiser evaluations for a start timestep and a step budget.

    ``n = min(t + 1, max(1, ceil(steps * (t + 1) / T)))``: about level x steps,
    at least one, never more than the t + 1 distinct timesteps in [0, t].
    """
    timestep = check_timestep(timestep, num_train_timesteps)
    steps = check_positive_int(steps, "steps")
    # Integer ceil division: exact, no float rounding at the boundaries.
    n = -(-steps * (timestep + 1) // num_train_timesteps)
    return min(timestep + 1, max(1, n))


def reverse_timesteps(timestep: int, steps: int, num_train_timesteps: int) -> list[int]:
    """The descending timesteps the reverse process denoises, starting at ``timestep``.

    ``t_i = floor((t + 1) * (n - i) / n) - 1`` for i = 0 .. n-1, with n from
    :func:`num_denoiser_evals`. The first entry is ``timestep`` itself; entries
    strictly decrease; the last is >= 0 and the step after it reaches x0.
    """
    n = num_denoiser_evals(timestep, steps, num_train_timesteps)
    span = timestep + 1
    grid = [span * (n - i) // n - 1 for i in range(n)]
    assert grid[0] == timestep and all(a > b for a, b in zip(grid, grid[1:])) and grid[-1] >= 0
    return grid


@dataclass(frozen=True)
class NoisePlan:
    """Where noise is added and which timesteps the reverse process visits: the
    whole plan of one Boomerang run, made once (:func:`plan_exact` here, or
    :func:`boomerang.core.plan` for every schedule) and then only executed.

    Attributes:
        level: the level in [0, 1] (t / (T-1) when a timestep was given).
        timestep: the training timestep t where noise is added, or ``None`` for
            the identity (level 0: no noise, no model call).
        timesteps: the descending reverse grid (``exact``: ``timesteps[0] ==
            timestep``; ``reference`` may start below ``timestep``).
        num_train_timesteps: T.
        schedule: ``"exact"``, ``"img2img"``, ``"reference"`` or ``"global"``
            (``from_noise``: ordinary sampling from pure noise).
        scheduler: the scheduler's registry name (``None`` for a plan made
            without one, e.g. by :func:`plan_exact`).
        steps: the step budget the plan was made for.
        begin_index: where ``timesteps`` start in the scheduler's own grid
            ``set_timesteps(steps)`` (``img2img``, ``reference``, ``global``);
            0 for ``exact``, whose grid is set explicitly.
        alpha_bar: alpha_bar at ``timestep`` (1.0 for the identity, ``None`` for
            ``global``, for a flow-matching model, or when made without a scheduler).
        sigma: flow-matching models only: sigma at ``timestep`` in x_t = (1 - sigma) x0 +
            sigma eps (0.0 for the identity); there ``timestep`` and ``timesteps`` are the
            model timesteps T sigma the scheduler visits (floats). ``None`` for DDPM-type models.
        mu: flow-matching models with a size-dependent (dynamic) shift (FLUX): the shift
            parameter of the image size the plan was made for; else ``None``.
        flow_sigmas: flow-matching models: the unshifted sigmas handed to the scheduler's
            ``set_timesteps(sigmas=...)`` (the exact grid: (k + 1) / T of its training steps k;
            FLUX's own grid: linspace(1, 1 / steps, steps)); ``None``: the scheduler's own
            ``set_timesteps(steps)``.
    """

    level: float
    timestep: int | None
    timesteps: tuple[int, ...]
    num_train_timesteps: int
    schedule: str = "exact"
    scheduler: str | None = None
    steps: int | None = None
    begin_index: int = 0
    alpha_bar: float | None = None
    sigma: float | None = None
    mu: float | None = None
    flow_sigmas: tuple[float, ...] | None = None

    @property
    def start_snr(self) -> float | None:
        """Signal-to-noise ratio of x_t where noise is added (Kingma et al. 2021), comparable
        across families: alpha_bar / (1 - alpha_bar), or flow ((1 - sigma) / sigma)^2; ``None``
        for the identity (nothing added) and when neither is known."""
        if self.timestep is None:
            return None
        if self.sigma is not None:
            return ((1.0 - self.sigma) / self.sigma) ** 2 if self.sigma > 0 else None
        if self.alpha_bar is not None and self.alpha_bar < 1.0:
            return self.alpha_bar / (1.0 - self.alpha_bar)
        return None

    @property
    def signal_kept(self) -> float:
        """How much of x0 the forward jump keeps in x_t (docs/privacy.md): sqrt(alpha_bar_t) for DDPM-type
        models, 1 - sigma for flow-matching models (x_t = (1 - sigma) x0 + sigma eps); 1.0 for the identity,
        0.0 for ordinary sampling from pure noise (``global``) or when neither is known."""
        if self.schedule == "global":
            return 0.0
        if self.sigma is not None:
            return max(0.0, 1.0 - float(self.sigma))
        if self.alpha_bar is not None:
            return math.sqrt(max(0.0, float(self.alpha_bar)))
        return 1.0 if self.timestep is None else 0.0

    @property
    def num_denoiser_evals(self) -> int:
        """Denoiser (UNet) evaluations per sample; classifier-free guidance
        doubles the batch of each evaluation but not their number."""
        return len(self.timesteps)

    @property
    def is_identity(self) -> bool:
        """True when nothing is denoised: the input comes back (level 0, or a
        compatibility schedule that keeps no step)."""
        return self.schedule != "global" and not self.timesteps


def check_level_or_timestep(level, timestep, *, required: bool = True) -> None:
    """The one rule for where noise is asked for: a ``level`` or a ``timestep``, never both
    (``required``: exactly one; otherwise neither is allowed too, and a default level applies).

    Raises:
        SettingError: (a ValueError) both given, or neither when ``required``.
    """
    if level is not None and timestep is not None:
        raise SettingError("give `level` (a fraction in [0, 1]) or `timestep` (an integer in [0, T-1]), not both")
    if required and level is None and timestep is None:
        raise SettingError("give exactly one of `level` (a fraction in [0, 1]) or `timestep` (an integer in [0, T-1])")


def check_from_noise(levels, timestep) -> None:
    """The one rule of ``from_noise`` (ordinary global sampling from pure noise): no
    ``timestep``, and no ``level`` other than 1.

    Args:
        levels: the level values asked for (an iterable of floats, possibly empty), or None.
        timestep: None, or what was asked for.

    Raises:
        SettingError: naming what to drop.
    """
    if timestep is not None:
        raise SettingError("`from_noise` samples from pure noise; it takes no `timestep`")
    if levels is not None and any(check_level(lv) != 1.0 for lv in levels):
        raise SettingError("`from_noise` samples from pure noise; it takes no `level` (or level 1)")


def plan_exact(
    *, level: float | None = None, timestep: int | None = None, steps: int, num_train_timesteps: int
) -> NoisePlan:
    """Plan the native ("exact") Boomerang schedule from a level or a timestep.

    Exactly one of ``level`` and ``timestep`` must be given.

    Raises:
        ValueError: if both or neither are given, or any value is out of range.
    """
    check_level_or_timestep(level, timestep)
    steps = check_positive_int(steps, "steps")
    if timestep is not None:
        t = check_timestep(timestep, num_train_timesteps)
        level = timestep_to_level(t, num_train_timesteps)
    else:
        level = check_level(level)
        t = level_to_timestep(level, num_train_timesteps)
    if t is None:
        return NoisePlan(level, None, (), num_train_timesteps, "exact", steps=steps)
    return NoisePlan(level, t, tuple(reverse_timesteps(t, steps, num_train_timesteps)), num_train_timesteps, "exact",
                     steps=steps)
