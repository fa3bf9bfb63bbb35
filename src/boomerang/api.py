"""The high-level Python API of boomerang: :func:`sample` and :func:`load`, and :func:`prepare` / :func:`run`.

Importing this module is cheap (no torch); the model, torch and diffusers load
inside the functions.

Typical use::

    import boomerang

    images = boomerang.sample("digit.png", level=0.3, num_samples=4, seed=0)
    # -> list of 4 PIL images, each the size of digit.png

    model = boomerang.load("path/to/model")        # load once, sample many
    more = boomerang.sample(pil_image, model=model, level=[0.2, 0.5])

The API is ``boomerang sample`` in memory: :func:`prepare` plans a job of the
sample task (:class:`boomerang.tasks.sample.SampleTask`) with every check that
needs no model (settings, inputs, timesteps, plans), and :func:`run` samples
it block by block through the executor's one block function
(:func:`boomerang.tasks.blocks.sample_block`), the one the CLI, the dataset
commands and the page use. Dataset jobs (folders in, folders out, resumable)
run on :mod:`boomerang.tasks`.

Reproducibility: sample ``j`` of input ``i`` gets its own generator from
``boomerang.seeds.item_generator(seed, i, j)``; nothing else random is used.
Batch size, input order within a batch and ``num_samples`` therefore never
change a sample. The same (seed, i, j) is used at every level, so one
sample index follows the same noise across levels.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator, Sequence

from boomerang.batching import (  # noqa: F401 (re-exported)
    AUTO_BATCH_MAX,
    AUTO_BATCH_MAX_CUDA,
    AUTO_BATCH_MEMORY_FRACTION,
    auto_batch_size,
    available_memory_bytes,
    estimate_item_bytes,
    resolve_batch_size,
)
from boomerang.errors import SettingError
from boomerang.sampling import load  # noqa: F401 (re-exported)
from boomerang.settings import DEFAULT_LEVEL, DTYPES, SCHEDULES, SampleSettings  # noqa: F401 (re-exported)
from boomerang.tasks.job import Job  # noqa: F401 (re-exported)

__all__ = [
    "DEFAULT_LEVEL",
    "DTYPES",
    "SCHEDULES",
    "SampleSettings",
    "Sample",
    "Job",
    "auto_batch_size",
    "resolve_batch_size",
    "load",
    "prepare",
    "run",
    "sample",
]


@dataclass
class Sample:
    """One local sample.

    Attributes:
        pixels: float32 (H, W, C) in [0, 1], C = the model's channels, H x W = the input size.
        image_index, sample_index: i and j; ``seed`` = ``seeds.item_seed(settings.seed, i, j)``.
        level: the requested level (t / (T-1) when a timestep was requested).
        timestep: the training timestep where noise was added (``None``: identity, level 0).
        alpha_bar: the scheduler's ``alphas_cumprod[timestep]`` (1.0 at level 0, ``None`` with ``from_noise``).
        num_denoiser_evals: denoiser evaluations for this sample (0 at level 0).
        scheduler_name, scheduler_config: the scheduler used and its config.
        schedule: ``exact``, ``img2img``, ``reference`` (or what the core reports).
        input_name, input_path: the input's file name (``<memory>`` for in-memory) and path.
    """

    pixels: Any
    image_index: int
    sample_index: int
    seed: int
    level: float
    timestep: int | None
    alpha_bar: float | None
    num_denoiser_evals: int
    scheduler_name: str
    scheduler_config: dict
    schedule: str
    input_name: str
    input_path: Path | None
    reference: Any = field(default=None, repr=False)

    def to_pil(self):
        """The sample as an 8-bit PIL image (mode ``L`` for one channel, else ``RGB``),
        quantised exactly as :func:`boomerang.imageio.save_image` writes it."""
        import numpy as np
        from PIL import Image

        q = np.rint(np.clip(self.pixels, 0.0, 1.0) * 255).astype(np.uint8)
        return Image.fromarray(q[..., 0] if q.shape[-1] == 1 else q)

    def distance(self) -> dict:
        """MSE / PSNR / SSIM between the sample and its input, both as 8-bit
        values (what the PNG holds; the input at the model's channel count and
        its own size, quantised the same way), see :mod:`boomerang.metrics`.

        Returns:
            ``{"mse": float, "psnr": float | None, "ssim": float | None}``.
        """
        from boomerang.metrics import image_distance, quantize8

        return image_distance(quantize8(self.pixels), quantize8(self.reference))  # bounded memory for large images


def prepare(images, settings: SampleSettings | None = None, *, model=None, stream: bool = True, **overrides) -> Job:
    """Check everything that can be checked without loading a model: a planned :class:`Job`.

    Steps (:func:`boomerang.tasks.runner.plan_job` of the sample task): validate the settings;
    read the model's JSON configs (``models.read_model_info``) to get T, channels and sizes;
    check timesteps against [0, T-1] and that a prompt is only given to a text model; plan every
    noise level (:func:`boomerang.core.plan`); read, decode and fit every input once (so a bad
    file fails here, named in the message; a bad file is named even when the model is missing).
    No pixels are kept: :func:`run` reads each input again when its block runs, so memory does
    not grow with the number of inputs.

    Args:
        images: one image or a list: paths, PIL images or numpy arrays (see
            ``imageio.read_image``). Folders are not expanded here (the CLI does it).
        settings: a :class:`SampleSettings`; ``overrides`` replace its fields.
        model: an already loaded model (from :func:`load`), else ``settings.model`` is used.
        stream: kept for compatibility; inputs are always streamed.

    Returns:
        A :class:`Job` (``job.inputs``: what the check kept of each input; ``job.model``: ``model``).

    Raises:
        SettingError: (a ValueError) bad settings, timestep out of range, a plan refused.
        ValueError: model folder / hub id not available.
        boomerang.imageio.ImageInputError: (a ValueError) an input that cannot be read; the message names it.
    """
    from boomerang.tasks.job import JobSettings
    from boomerang.tasks.layout import Item
    from boomerang.tasks.runner import plan_job
    from boomerang.tasks.sample import SampleTask

    settings = settings or SampleSettings()
    if overrides:
        settings = SampleSettings(**{**{f.name: getattr(settings, f.name) for f in fields(settings)}, **overrides})
    if isinstance(images, (str, Path)) or not isinstance(images, (list, tuple)):
        images = [images]
    if not images:
        raise SettingError("no input `images` given")
    items = [Item(i, Path(src).as_posix(), Path(src)) if isinstance(src, (str, Path))
             else Item(i, f"<memory {i}>", None, source=src) for i, src in enumerate(images)]
    task = SampleTask()
    return plan_job(task, settings, task.Options(), JobSettings(), items=items, model=model)


def run(job: Job, *, progress: bool | None = None) -> Iterator[Sample]:
    """Run a prepared job; yields every :class:`Sample`, level by level, then by input and sample index.

    Outputs are sampled in the job's fixed blocks (``batch_size`` at a time, or the automatic
    size) through :func:`boomerang.tasks.blocks.sample_block`; each item has its own generator,
    so batching never changes a sample. An identity plan on a pixel model (level 0) yields the
    input's pixels unchanged (no model call, no resize round trip).

    Args:
        job: from :func:`prepare`; its model is loaded here when not given.
        progress: show a tqdm bar on stderr (``None``: only when stderr is a terminal).

    Raises:
        ValueError: the model cannot be loaded, or the core rejects a setting.
    """
    import sys

    from boomerang.tasks.blocks import InputCache, attach_model, blocks_of, sample_block
    from boomerang.tasks.progress import JobProgress

    if job.model is None:
        attach_model(job)
    job.block_size = job.task.block_size(job)
    show = sys.stderr.isatty() if progress is None else bool(progress)
    bar = JobProgress(len(job.outputs), desc="boomerang", unit="sample", show=show)
    cache = InputCache(job)
    try:
        for block in blocks_of(job).values():
            for got in sample_block(job, block, cache=cache, progress=bar):
                o, plan, result = got.output, got.plan, got.result
                if result is None:
                    from boomerang.tasks.job_plan import identity_scheduler_config

                    config, evals = identity_scheduler_config(plan, job.model), 0
                else:
                    plan, config, evals = result.plan, dict(result.scheduler_config), int(result.num_denoiser_evals)
                bar.finished(1)
                yield Sample(
                    pixels=got.pixels, image_index=o.item.index, sample_index=o.sample,
                    seed=job.task.seed(job, o.item, o.sample), level=job.noise_levels[o.level_index].level,
                    timestep=plan.timestep, alpha_bar=plan.alpha_bar, num_denoiser_evals=evals,
                    scheduler_name=plan.scheduler, scheduler_config=config, schedule=plan.schedule,
                    input_name=got.decoded.loaded.name, input_path=got.decoded.loaded.path,
                    reference=got.decoded.reference,
                )
            cache.done_with(block[-1].index)
    finally:
        bar.close()


def sample(
    image,
    *,
    level: float | Sequence[float] | None = None,
    timestep: int | Sequence[int] | None = None,
    num_samples: int = SampleSettings.num_samples,
    seed: int = SampleSettings.seed,
    model=None,
    progress: bool | None = False,
    **settings: Any,
) -> list:
    """Local samples of one image: the Boomerang main command (`boomerang sample`) in one call.

    Args:
        image: a path, a ``PIL.Image.Image`` or a numpy array (H, W[, C]) (see
            ``boomerang.imageio.read_image``: EXIF rotation applied, alpha
            composited over ``background``, 16-bit scaled by 65535).
        level: noise level(s) in [0, 1] (default 0.3); 0 returns the input.
        timestep: training timestep(s) in [0, T-1] instead of ``level``.
        num_samples: samples per level (>= 1).
        seed: base seed; sample j uses ``seeds.item_seed(seed, 0, j)``.
        model: a model from :func:`load`, a hub id or local folder, or ``None``
            for the bundled model.
        progress: show a progress bar on stderr.
        **settings: any other :class:`SampleSettings` field (``steps``,
            ``scheduler``, ``schedule``, ``from_noise``, ``eta``, ``prompt``,
            ``negative_prompt``, ``guidance_scale``, ``device``, ``dtype``,
            ``batch_size``, ``background``, ``allow_pickle``).

    Returns:
        ``num_samples`` x (number of levels) PIL images (mode ``L`` for
        one-channel models, else ``RGB``), each the size of the input; ordered
        level by level, then by sample index.

    Raises:
        ValueError: bad settings or model; ``ImageInputError`` (a ValueError)
            for an image that cannot be read.
    """
    loaded = None
    if model is not None and not isinstance(model, (str, Path)):
        loaded = model
        model_id = getattr(model, "source", None)
    else:
        model_id = model
    s = SampleSettings(level=level, timestep=timestep, num_samples=num_samples, seed=seed,
                       model=None if model_id is None else str(model_id), **settings)
    job = prepare(image, s, model=loaded)
    return [smp.to_pil() for smp in run(job, progress=progress)]
