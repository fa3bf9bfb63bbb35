"""The high-level Python API of boomerang: :func:`sample` and :func:`load`.

Importing this module is cheap (no torch); the model, torch and diffusers load
inside the functions.

Typical use::

    import boomerang

    images = boomerang.sample("digit.png", level=0.3, num_samples=4, seed=0)
    # -> list of 4 PIL images, each the size of digit.png

    model = boomerang.load("path/to/model")        # load once, sample many
    more = boomerang.sample(pil_image, model=model, level=[0.2, 0.5])

The pieces live in their own modules and are re-exported here: the settings
(:mod:`boomerang.settings`), batch sizes (:mod:`boomerang.batching`) and the
two stages :func:`prepare` (every check that needs no model) and :func:`run`
(load, batch, sample) of :mod:`boomerang.jobs`. Dataset jobs (folders in,
folders out, resumable) run on :mod:`boomerang.tasks`.

Reproducibility: sample ``j`` of input ``i`` gets its own generator from
``boomerang.seeds.item_generator(seed, i, j)``; nothing else random is used.
Batch size, input order within a batch and ``num_samples`` therefore never
change a sample. The same (seed, i, j) is used at every level, so one
sample index follows the same noise across levels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from boomerang.batching import (  # noqa: F401 (re-exported)
    AUTO_BATCH_MAX,
    AUTO_BATCH_MAX_CUDA,
    AUTO_BATCH_MEMORY_FRACTION,
    auto_batch_size,
    available_memory_bytes,
    estimate_item_bytes,
    resolve_batch_size,
)
from boomerang.jobs import Job, Sample, load, prepare, run  # noqa: F401 (re-exported)
from boomerang.settings import DEFAULT_LEVEL, DTYPES, SCHEDULES, SampleSettings  # noqa: F401 (re-exported)

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
    """Local samples of one image: the Boomerang main job in one call.

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
