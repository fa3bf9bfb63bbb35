"""The model on a batch: load it once (:func:`load`), sample a batch from a plan (:func:`sample_batch`).

:func:`sample_batch` is the batch function every job runs through (the API,
``boomerang sample``, the dataset commands, the page), called once per group
of a block by :func:`boomerang.tasks.blocks.sample_block`. Torch loads inside
the functions.

Reproducibility: each item brings its own ``torch.Generator`` (seeded by the
task: ``seeds.item_seed(seed, i, j)`` for ``sample`` and the API); nothing else
random is used, so batch size and batch order never change a sample.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from boomerang.settings import SampleSettings

__all__ = ["load", "sample_batch"]


def load(model: str | Path | None = None, *, device: str = "cpu", dtype: str = "float32", allow_pickle: bool = False,
         kernels: str = "auto", cpu_offload: bool = False):
    """Load a diffusion model once, to pass as ``model=`` to :func:`boomerang.api.sample`.

    Args:
        model: hub id or local folder (a pixel-space DDPM layout or a Stable
            Diffusion 1.x/2.x layout); ``None`` = the bundled model.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        dtype: ``float32``, ``float16`` or ``bfloat16``.
        allow_pickle: also accept pickle weights (only for files you trust).
        kernels: ``auto``, ``invariant`` or ``plain`` (see ``SampleSettings.kernels``);
            sets the model's ``batch_invariant``.
        cpu_offload: model CPU offload (needs ``device`` cuda and a CUDA GPU; see
            ``SampleSettings.cpu_offload``).

    Returns:
        A ``boomerang.models.DiffusionModel``.

    Raises:
        ValueError: missing folder, unknown layout, hub id not available offline,
            pickle weights without ``allow_pickle``, CUDA requested but not available.
    """
    s = SampleSettings(model=model, device=device, dtype=dtype, allow_pickle=allow_pickle, kernels=kernels,
                       cpu_offload=cpu_offload)  # validates
    from boomerang.models import load_model

    loaded = load_model(s.model, device=s.device, dtype=s.dtype, allow_pickle=s.allow_pickle,
                        cpu_offload=s.cpu_offload)
    if s.kernels != "auto":
        loaded.batch_invariant = s.kernels == "invariant"
    return loaded


def sample_batch(model, x0, generators, plan, settings: SampleSettings,
                 progress: Callable[[int, int], None] | None = None, prompts=None, work_dir=None):
    """Execute one plan on one batch.

    Args:
        model: the loaded model.
        x0: float32 numpy [B, H, W, C] in [0, 1], every item fitted to the model (same shape).
        generators: one ``torch.Generator`` per item.
        plan: a :class:`~boomerang.levels.NoisePlan`.
            Images above :data:`boomerang.windowing.WINDOW_ABOVE_PIXELS` given to a fully
            convolutional pixel model are denoised in blended windows
            (:func:`boomerang.windowing.sample_windows`; ``output.windows`` says so).
        settings: eta, prompt, negative prompt and guidance scale are read from it.
        progress: ``progress(done, total)`` after each reverse step of each prompt group.
        prompts: optional per-item prompts (text models); items are then sampled
            in groups of equal prompt, each item with its own generator.
        work_dir: where windowed large photos on the bounded path keep their work files
            (``core.boomerang_sample``'s ``work_dir``; default ``TMPDIR``).

    Returns:
        (samples, output): float32 numpy [B, H, W, C] in [0, 1] at the model's size,
        and the :class:`boomerang.core.BoomerangOutput` (of the last group) with ``samples`` None
        (they are the returned array).

    Raises:
        NonFiniteOutputError: the model produced NaN or infinite values (nothing is returned for them).
    """
    import numpy as np
    import torch

    from boomerang import core
    from boomerang.windowing import SAMPLE_TILE_BATCH, sample_windows

    windows = sample_windows(model, x0.shape[1], x0.shape[2])  # large photos: a pixel model in windows
    # x0 * 2 - 1 in [-1, 1], in a copy of our own made in place (large photos: no image-sized temporaries)
    xt = torch.from_numpy(np.array(x0.transpose(0, 3, 1, 2), dtype=np.float32, order="C")).mul_(2.0).sub_(1.0)
    shape = (len(generators), x0.shape[3], x0.shape[1], x0.shape[2])
    del x0
    groups = {}
    for i in range(len(generators)):
        groups.setdefault(settings.prompt if prompts is None else prompts[i], []).append(i)
    result = np.empty(shape, np.float32) if len(groups) > 1 else None
    out = None
    for prompt, idx in groups.items():
        step = None
        if progress is not None:  # the whole batch's progress: groups one after another
            done_before, share = sum(len(v) for v in list(groups.values())[:list(groups).index(prompt)]), len(idx)

            def step(done, total, _before=done_before, _share=share):
                progress(_before * total + _share * done, len(generators) * total)
        part = xt[idx] if result is not None else xt  # one group: the whole batch, no copy
        if result is None:
            xt = None  # held by ``part`` only, freed once sampled
        out = core.boomerang_sample(
            model, part, plan, [generators[i] for i in idx], eta=settings.eta, prompt=prompt,
            negative_prompt=settings.negative_prompt, guidance_scale=settings.guidance_scale, progress=step,
            windows=windows, tile_batch=SAMPLE_TILE_BATCH, work_dir=work_dir,
        )
        del part
        # to [0, 1] in place: the output's samples (a fresh tensor) become the result, not copied
        pixels = out.samples.detach().float().cpu().clamp_(-1, 1).add_(1.0).div_(2.0).numpy()
        out = dataclasses.replace(out, samples=None)
        if result is None:
            result = pixels
        else:
            result[idx] = pixels
        del pixels
    if not np.all(np.isfinite(result)):
        from boomerang.models import NonFiniteOutputError, nonfinite_message

        raise NonFiniteOutputError(nonfinite_message(model))
    return result.transpose(0, 2, 3, 1), out
