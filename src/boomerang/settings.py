"""Settings of a Boomerang job, validated in one place (torch-free).

:class:`SampleSettings` holds every setting of sampling and its default; the
CLI takes its defaults from here, the dataset runner and the API construct it,
and the resolved settings are written next to the outputs. :func:`parse_device`
is the one device parser (sampling, training, the runner). Errors are
:class:`boomerang.errors.SettingError` naming the parameter (``level``); the CLI
renders them with its flags (``--level``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from boomerang import levels as _levels
from boomerang.errors import SettingError
from boomerang.scheduler_names import AUTO, SCHEDULES, check_schedule, check_scheduler  # noqa: F401 (SCHEDULES re-exported)

__all__ = [
    "DEFAULT_LEVEL",
    "DTYPES",
    "SCHEDULES",
    "DEVICE_KINDS",
    "SampleSettings",
    "parse_device",
    "torch_device",
]

#: Level used when neither a level nor a timestep is given.
DEFAULT_LEVEL = 0.3
#: Accepted ``dtype`` names.
DTYPES = ("float32", "float16", "bfloat16")
#: Kernel choices (``SampleSettings.kernels``): ``auto`` = batch-invariant on the CPU, plain on CUDA.
KERNELS = ("auto", "invariant", "plain")
#: Device kinds sampling accepts (training also takes ``mps`` and ``auto``).
DEVICE_KINDS = ("cpu", "cuda")


def parse_device(device, *, allow: tuple[str, ...] = DEVICE_KINDS, name: str = "device") -> str:
    """Check a device name without importing torch; returns it normalised.

    Args:
        device: ``cpu``, ``cuda``, ``cuda:N`` (and ``mps`` / ``auto`` where ``allow`` has them).
        allow: the accepted kinds.
        name: the parameter's name in the message.

    Raises:
        SettingError: (a ValueError) for any other value.
    """
    dev = str(device).strip().lower()
    kind, _, index = dev.partition(":")
    if kind in allow and (not index or (kind == "cuda" and index.isdigit())):
        return dev
    choices = ", ".join(k + (", cuda:N" if k == "cuda" else "") for k in allow)
    raise SettingError(f"`{name}` must be one of {choices}, got {device!r}")


def torch_device(device, *, allow: tuple[str, ...] = DEVICE_KINDS, name: str = "device"):
    """:func:`parse_device`, then a ``torch.device`` that exists on this machine
    (``auto``: cuda, else mps, else cpu).

    Raises:
        SettingError: a bad name, or CUDA / MPS asked for where there is none.
    """
    import torch

    dev = parse_device(device, allow=allow, name=name)
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if dev == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise SettingError(f"`{name}` {dev}: no CUDA GPU is available on this machine; use cpu")
    if dev == "mps" and not mps:
        raise SettingError(f"`{name}` mps: MPS is not available on this machine; use cpu")
    return torch.device(dev)


def _as_tuple(value) -> tuple:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if hasattr(value, "__iter__"):  # lists, tuples, numpy arrays
        return tuple(value)
    return (value,)


def _flat_levels(value) -> list[float]:
    """Levels from a float, a comma-separated string or a sequence of either (checked)."""
    out: list[float] = []
    for item in _as_tuple(value):
        out.extend(_levels.parse_levels(item) if isinstance(item, str) else [_levels.check_level(item)])
    return out


def _number(value, name: str, *, minimum: float | None = None, need: str = "a finite number") -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not math.isfinite(v) or (minimum is not None and v < minimum):
        raise SettingError(f"`{name}` must be {need}, got {value!r}")
    return v


@dataclass(frozen=True)
class SampleSettings:
    """Every setting of a Boomerang sampling job, with its default (the one place
    defaults live; the CLI takes its defaults from here and writes the resolved
    settings to ``metadata.json``).

    Attributes:
        level: noise level(s) in [0, 1]: a float, a sequence, or a
            comma-separated string ``"0.2,0.5,0.8"``. Level 0 returns the input.
            Normalised to a tuple of floats, or ``None`` when ``timestep`` is
            given. Neither given: ``(DEFAULT_LEVEL,)`` = (0.3,).
        timestep: training timestep(s) in [0, T-1] instead of levels (int,
            sequence or comma-separated string); normalised to a tuple of ints.
            The upper bound is checked against the model in ``api.prepare``.
        num_samples: samples per input and level, >= 1.
        seed: base seed (an integer >= 0); sample j of input i uses
            ``seeds.item_seed(seed, i, j)`` (dataset jobs: ``seeds.path_seed``).
        steps: step budget of a full chain (denoiser evaluations at level 1),
            >= 1; a start at level L uses about L x steps (at least 1).
        scheduler: ``auto`` (default: the model's own, ``ModelInfo.default_scheduler``: ddpm for
            DDPM and Stable Diffusion 1.x/2.x, euler for SDXL and flow-matching models), or a
            name from ``boomerang.schedulers.SCHEDULER_NAMES``: ``ddpm`` (the paper's stochastic ancestral sampler), ``ddim``,
            ``euler``, ``dpmsolver++``, ``pndm`` (pndm only with the
            ``img2img`` / ``reference`` schedules or ``from_noise``).
        schedule: ``exact`` (the native Boomerang grid), ``img2img``
            (diffusers' strength semantics) or ``reference`` (the authors' notebook).
        from_noise: start from pure noise (ordinary global sampling on the
            scheduler's own grid of ``steps`` steps) instead of the noised
            input; the level is then 1 and the input only sets the size.
        eta: DDIM eta (>= 0; 0 is deterministic); ignored by other schedulers.
        model: hub id or local folder; ``None`` = the bundled model.
        prompt, negative_prompt: text conditioning (latent/text models only;
            a model without a text encoder rejects a non-empty prompt).
        guidance_scale: classifier-free guidance (text models only).
        device: ``cpu``, ``cuda`` or ``cuda:N`` (:func:`parse_device`).
        dtype: one of :data:`DTYPES`.
        batch_size: samples per core call (>= 1), ``None`` = automatic
            (``boomerang.batching.auto_batch_size``, memory-aware).
        background: colour that transparent pixels are composited over: a
            Pillow colour name or ``#rrggbb`` (default ``white``).
        allow_pickle: allow loading pickle (``.bin``/``.ckpt``) weights; by
            default only safetensors are loaded.
        kernels: ``auto`` (default: batch-invariant kernels on the CPU, the
            device's own on CUDA), ``invariant`` (a sample never depends on
            the batch it ran in; on CUDA the networks then run item by item)
            or ``plain`` (torch's fastest kernels: a sample may differ in its
            last bits with the batch size; dataset jobs still reproduce
            exactly on resume and on any number of workers, because each item
            always runs in the same fixed block). See ``models.DiffusionModel.batch_invariant``.
        cpu_offload: model CPU offload (diffusers' ``enable_model_cpu_offload``;
            :mod:`boomerang.models.offload`): the networks wait in CPU memory and each moves to
            the GPU only while it runs. Needs ``device`` cuda (refused otherwise, here); a sample
            does not change with it.

    Raises:
        SettingError: (a ValueError, on construction) naming the parameter and
            saying how to fix the value.
    """

    level: Any = None
    timestep: Any = None
    num_samples: int = 4
    seed: int = 0
    steps: int = 50
    scheduler: str = AUTO
    schedule: str = "exact"
    from_noise: bool = False
    eta: float = 0.0
    model: str | None = None
    prompt: str = ""
    negative_prompt: str = ""
    guidance_scale: float = 7.5
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int | None = None
    background: str = "white"
    allow_pickle: bool = False
    kernels: str = "auto"
    cpu_offload: bool = False

    def __post_init__(self) -> None:
        put = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        _levels.check_level_or_timestep(self.level, self.timestep, required=False)
        if self.from_noise:  # global sampling from pure noise: the input only gives the size
            _levels.check_from_noise(None if self.level is None else _flat_levels(self.level), self.timestep)
            put("level", (1.0,))
        elif self.timestep is not None:
            ts = []
            for item in _as_tuple(self.timestep):
                parts = item.split(",") if isinstance(item, str) else [item]
                for p in parts:
                    # Range [0, T-1] is checked against the model in prepare(); here only "integer >= 0".
                    ts.append(_levels.check_timestep(p.strip() if isinstance(p, str) else p, None))
            if not ts:
                raise SettingError("`timestep` needs at least one integer")
            if len(set(ts)) != len(ts):
                raise SettingError(f"`timestep` lists a value twice: {ts}")
            put("timestep", tuple(ts))
        else:
            lv = _flat_levels(DEFAULT_LEVEL if self.level is None else self.level)
            if not lv:
                raise SettingError("`level` needs at least one value in [0, 1]")
            names = [f"{v:.3f}" for v in lv]
            if len(set(names)) != len(names):
                raise SettingError(f"`level` values must differ in their first 3 decimals (they name the files), got {lv}")
            put("level", tuple(lv))
        put("num_samples", _levels.check_positive_int(self.num_samples, "num_samples"))
        put("steps", _levels.check_positive_int(self.steps, "steps"))
        if self.batch_size is not None:
            put("batch_size", _levels.check_positive_int(self.batch_size, "batch_size"))
        seed_f = _number(self.seed, "seed", minimum=0, need="an integer >= 0") if not isinstance(self.seed, bool) else -1
        if seed_f != int(seed_f) or seed_f < 0:
            raise SettingError(f"`seed` must be an integer >= 0, got {self.seed!r}")
        put("seed", int(seed_f))
        put("scheduler", check_scheduler(self.scheduler))  # checked here, before diffusers loads
        check_schedule(self.schedule)
        put("eta", _number(self.eta, "eta", minimum=0.0, need="a finite number >= 0"))
        put("guidance_scale", _number(self.guidance_scale, "guidance_scale"))
        if self.dtype not in DTYPES:
            raise SettingError(f"`dtype` must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        put("device", parse_device(self.device))
        if self.kernels not in KERNELS:
            raise SettingError(f"`kernels` must be one of {', '.join(KERNELS)}, got {self.kernels!r}")
        if not isinstance(self.cpu_offload, bool):
            raise SettingError(f"`cpu_offload` must be true or false, got {self.cpu_offload!r}")
        if self.cpu_offload and not self.device.startswith("cuda"):
            from boomerang.models.offload import OFFLOAD_NEEDS_CUDA

            raise SettingError(f"{OFFLOAD_NEEDS_CUDA}; `device` is {self.device}")
        self.background_rgb  # validates the colour
        if self.model is not None:
            put("model", str(self.model))

    @property
    def background_rgb(self) -> tuple[int, int, int]:
        """The background as (R, G, B) in 0..255."""
        from PIL import ImageColor

        try:
            rgb = ImageColor.getrgb(str(self.background))
        except ValueError:
            raise SettingError(f"`background` must be a colour name or #rrggbb, got {self.background!r}") from None
        return tuple(rgb[:3])

    def replace(self, **changes) -> "SampleSettings":
        """A copy with ``changes`` applied and validated again."""
        return replace(self, **changes)

    @classmethod
    def from_dict(cls, values: dict) -> "SampleSettings":
        """Settings from a dict of field values (unknown keys, e.g. ``background_rgb``, are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def to_dict(self) -> dict:
        """The settings as a JSON-ready dict (tuples become lists)."""
        d = asdict(self)
        d["level"] = list(self.level) if self.level is not None else None
        d["timestep"] = list(self.timestep) if self.timestep is not None else None
        d["background_rgb"] = list(self.background_rgb)
        return d
