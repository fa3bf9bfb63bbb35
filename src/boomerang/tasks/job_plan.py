"""What a job will run, decided before any weights load (torch-free at import).

The job-level plan: ``boomerang.planning`` plans one noise level (a
:class:`~boomerang.levels.NoisePlan`); this module turns a job's settings into its
noise levels and their plans.

From the validated :class:`~boomerang.settings.SampleSettings` and the model's
JSON configs (``models.read_model_info``): the :class:`NoiseLevel` of every
level or timestep the user asked for, the refusal of a prompt for a model
without text, and one :class:`~boomerang.levels.NoisePlan` per noise level
(``boomerang.planning.plan``: the scheduler/schedule rules and the start-sigma
refusal, in one place). The API (:mod:`boomerang.api`), ``boomerang sample``,
the dataset commands and the page all plan through here (via
:func:`boomerang.tasks.runner.plan_job`), once per job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from boomerang import levels as _levels
from boomerang.errors import SettingError
from boomerang.settings import SampleSettings

__all__ = ["NoiseLevel", "model_info", "scheduler_config_of", "noise_levels", "check_prompt", "make_plans",
           "identity_scheduler_config", "size_dependent", "plan_for_image"]


class NoiseLevel(NamedTuple):
    """One level the user asked for: ``level`` in [0, 1] and the training ``timestep`` it maps to
    with the exact rule (``None`` for level 0). With ``timestep`` settings, level = t / (T-1).
    (How it runs, e.g. on the img2img grid, is the :class:`~boomerang.levels.NoisePlan`.)"""

    level: float
    timestep: int | None


def model_info(model_id):
    """``models.read_model_info`` (JSON configs only, no weights).

    Raises:
        ValueError: the model folder or hub id is not available.
    """
    from boomerang.models import read_model_info

    return read_model_info(model_id)


def scheduler_config_of(info) -> dict:
    """The model's diffusers scheduler config, from a loaded model or from the
    JSON beside a model folder described by ``models.read_model_info`` (no weights read).

    Raises:
        ValueError: the folder has no readable ``scheduler_config.json``.
    """
    config = getattr(info, "scheduler_config", None)
    if config is not None:
        return dict(config)
    root = Path(info.source)
    for path in (root / "scheduler" / "scheduler_config.json", root / "scheduler_config.json"):
        if path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise ValueError(f"cannot read model config {path}: {exc}") from None
    raise ValueError(f"{root}: missing scheduler_config.json; the model folder is incomplete")


def noise_levels(settings: SampleSettings, info) -> list[NoiseLevel]:
    """One :class:`NoiseLevel` per requested level (or timestep, checked against [0, T-1]).

    Raises:
        SettingError: a timestep outside [0, T-1] of the model.
    """
    T = int(info.num_train_timesteps)
    if settings.timestep is not None:
        return [NoiseLevel(_levels.timestep_to_level(t, T), _levels.check_timestep(t, T)) for t in settings.timestep]
    return [NoiseLevel(lv, _levels.level_to_timestep(lv, T)) for lv in settings.level]


def check_prompt(settings: SampleSettings, info) -> None:
    """Refuse a prompt or negative prompt for a model that takes no text.

    Raises:
        SettingError: naming the model and what to drop.
    """
    if (settings.prompt or settings.negative_prompt) and not getattr(info, "takes_prompt", False):
        raise SettingError(
            f"the model {info.source} takes no text prompt; drop `prompt`/`negative_prompt` "
            "(or use a text-conditioned model such as Stable Diffusion)"
        )


def make_plans(settings: SampleSettings, info, levels: list[NoiseLevel]) -> list:
    """One :class:`~boomerang.levels.NoisePlan` per noise level (``boomerang.planning.plan``).

    Raises:
        SettingError: a plan refused (scheduler and schedule, a start below the first step ...).
    """
    from boomerang.planning import plan, resolve_scheduler

    config = scheduler_config_of(info)
    scheduler = resolve_scheduler(info if getattr(info, "default_scheduler", None) else config, settings.scheduler)
    plan_model = info if getattr(info, "scheduler_config", None) is not None else config
    if size_dependent(config):
        # FLUX: sigma depends on the image's size; these plans check the settings (on the static shift) and
        # count the steps; each image size gets its own plan when it runs (plan_for_image).
        plan_model = dict(config, use_dynamic_shifting=False)
    out = []
    for level, t in levels:
        where = dict(level=level) if settings.timestep is None else dict(timestep=t)
        out.append(plan(plan_model, schedule=settings.schedule, from_noise=settings.from_noise,
                             scheduler=scheduler, steps=settings.steps, **where))
    return out


def identity_scheduler_config(plan, model) -> dict:
    """The scheduler config recorded for an identity plan (no scheduler ran): the plan's
    scheduler built from the model's config."""
    from boomerang.schedulers import make_scheduler

    return dict(make_scheduler(plan.scheduler, model.scheduler_config).config)


def size_dependent(scheduler_config: dict) -> bool:
    """True when a model's plans depend on the image's size (a flow-matching config with dynamic shifting)."""
    from boomerang.scheduler_names import is_flow_config

    return is_flow_config(scheduler_config) and bool(dict(scheduler_config).get("use_dynamic_shifting"))


def plan_for_image(job, k: int, image_shape) -> object:
    """The plan of noise level ``k`` for an image of ``image_shape`` (C, H, W) as the model sees it:
    ``job.plans[k]``, or for a size-dependent model (FLUX) the plan made for that size (cached per job).
    Each sample's metadata records the plan it ran with."""
    if job.model is None or not size_dependent(job.model.scheduler_config):
        return job.plans[k]
    from boomerang.planning import plan, resolve_scheduler

    key = (k, tuple(int(v) for v in image_shape))
    cache = job.__dict__.setdefault("_size_plans", {})
    if key not in cache:
        level, t = job.noise_levels[k]
        where = dict(level=level) if job.settings.timestep is None else dict(timestep=t)
        cache[key] = plan(job.model, schedule=job.settings.schedule, from_noise=job.settings.from_noise,
                          scheduler=resolve_scheduler(job.model, job.settings.scheduler), steps=job.settings.steps,
                          image_shape=key[1], **where)
    return cache[key]
