"""Sampling jobs: check and prepare (no model), then load, batch and sample.

:func:`prepare` does every check that needs no model weights: the settings,
the model's JSON configs, every input (read and decoded, so a bad file is
named before anything loads), timesteps against the model's T, and the
:class:`~boomerang.levels.NoisePlan` of every start (:func:`boomerang.core.plan`:
the scheduler/schedule rules and the start-sigma refusal, in one place).
:func:`run` loads the model, batches items by the shape the model sees and
executes the plans through :func:`sample_batch`, the one batch function that
the dataset runner (:mod:`boomerang.tasks`) uses too.

Reproducibility: sample ``j`` of input ``i`` gets its own generator from
``boomerang.seeds.item_generator(seed, i, j)``; nothing else random is used.
Batch size, input order within a batch and ``num_samples`` therefore never
change a sample. The same (seed, i, j) is used at every level.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator

from boomerang import levels as _levels
from boomerang.errors import SettingError
from boomerang.settings import SampleSettings

__all__ = ["Job", "Sample", "prepare", "run", "load", "sample_batch", "scheduler_config_of"]


@dataclass
class _Input:
    index: int
    source: Any  # what the user passed (path, PIL image, array)
    loaded: Any  # imageio.LoadedImage
    reference: Any = None  # float32 (H, W, C) in [0, 1] (uint8 0..255 for large 8-bit files), model channels, input size
    fitted: Any = None  # imageio.FittedImage
    fit_args: Any = None  # fit_args_for(...): set for inputs that may be released

    @property
    def path(self) -> Path | None:
        return self.loaded.path

    def release(self) -> None:
        """Drop the decoded pixels of a file input to bound memory (streaming); shapes,
        sizes and metadata stay, and :meth:`ensure` reads the file again. No-op for
        in-memory inputs and inputs already released."""
        if self.path is None or self.fit_args is None or self.reference is None:
            return
        import dataclasses

        import numpy as np

        def hollow(a):  # same shape and dtype, no memory
            return np.broadcast_to(np.zeros((), dtype=a.dtype), a.shape)

        self.fitted = dataclasses.replace(self.fitted, pixels=hollow(self.fitted.pixels))
        self.reference = None

    def ensure(self) -> None:
        """Decode and fit the input again if :meth:`release` dropped it.

        Raises:
            boomerang.imageio.ImageInputError: the file changed and cannot be read any more.
        """
        if self.reference is not None:
            return
        from boomerang import imageio

        import dataclasses

        import numpy as np

        background, channels, native, multiple, vae_width = self.fit_args
        loaded, self.reference, self.fitted = imageio.read_for_model(  # bounded memory for large files
            self.source, channels=channels, native_size=native, multiple_of=multiple, background=background,
            vae_width=vae_width)
        # the RGB decode is not needed once the reference exists: keep its metadata only
        self.loaded = dataclasses.replace(loaded, pixels=np.broadcast_to(np.zeros((), np.float32), loaded.pixels.shape))

    @property
    def name(self) -> str:
        return self.loaded.name


@dataclass
class Job:
    """A checked sampling job, ready to run (see :func:`prepare`).

    Attributes:
        settings: the validated :class:`SampleSettings`.
        info: the model's ``boomerang.models.ModelInfo`` (or the loaded model).
        starts: one ``(level, timestep)`` per row: ``level`` in [0, 1] and the
            training timestep it maps to with the exact rule (``None`` for
            level 0); with ``--timestep``, level = t / (T-1).
        inputs: the inputs, all read and decoded.
        model: the loaded model (``None`` until :func:`run` or the caller loads it).
        plans: one :class:`boomerang.levels.NoisePlan` per start, from
            :func:`boomerang.core.plan` (made once, in :func:`prepare`).
    """

    settings: SampleSettings
    info: Any
    starts: list[tuple[float, int | None]]
    inputs: list[_Input]
    model: Any = None
    plans: list = field(default_factory=list)

    @property
    def num_items(self) -> int:
        """Samples per level: inputs x num_samples."""
        return len(self.inputs) * self.settings.num_samples


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


def make_plans(settings: SampleSettings, info, starts) -> list:
    """One :class:`~boomerang.levels.NoisePlan` per start (``boomerang.core.plan``)."""
    from boomerang import core

    config = scheduler_config_of(info)
    plan_model = info if getattr(info, "scheduler_config", None) is not None else config
    out = []
    for level, t in starts:
        where = dict(level=level) if settings.timestep is None else dict(timestep=t)
        out.append(core.plan(plan_model, schedule=settings.schedule, from_noise=settings.from_noise,
                             scheduler=settings.scheduler, steps=settings.steps, **where))
    return out


def prepare(images, settings: SampleSettings | None = None, *, model=None, stream: bool = False, **overrides) -> Job:
    """Check everything that can be checked without loading a model.

    Steps: validate the settings; read and decode every input (so a bad file
    fails here, named in the message); read the model's JSON configs
    (``models.read_model_info``) to get T, channels and sizes; check timesteps
    against [0, T-1] and that a prompt is only given to a text model; plan every
    start (:func:`boomerang.core.plan`: scheduler, schedule, start-sigma rules);
    fit every input to the model's size.

    Args:
        images: one image or a list: paths, PIL images or numpy arrays (see
            ``imageio.read_image``). Folders are not expanded here (the CLI does it).
        settings: a :class:`SampleSettings`; ``overrides`` replace its fields.
        model: an already loaded model (from :func:`load`), else ``settings.model`` is used.
        stream: keep at most a few decoded file inputs in memory at a time (the
            CLI's mode): every file is read and checked here, then its pixels are
            dropped and read again when its batch runs (:func:`run`), so memory does
            not grow with the number of inputs. In-memory inputs are always kept.

    Returns:
        A :class:`Job`.

    Raises:
        SettingError: (a ValueError) bad settings, timestep out of range, a plan refused.
        ValueError: model folder / hub id not available.
        boomerang.imageio.ImageInputError: (a ValueError) an input that cannot be read; the message names it.
    """
    from boomerang import imageio

    settings = settings or SampleSettings()
    if overrides:
        settings = SampleSettings(**{**{f.name: getattr(settings, f.name) for f in fields(settings)}, **overrides})
    if isinstance(images, (str, Path)) or not isinstance(images, (list, tuple)):
        images = [images]
    if not images:
        raise SettingError("no input `images` given")
    # Inputs first: a bad file is named even when the model is also missing.
    loaded_images = []
    for src in images:
        loaded = imageio.read_image(src, background=settings.background_rgb, pixels=not stream)
        if stream and loaded.path is not None:  # checked; keep sizes and metadata only
            import dataclasses

            import numpy as np

            loaded = dataclasses.replace(loaded, pixels=np.broadcast_to(np.zeros((), np.float32), loaded.pixels.shape))
        loaded_images.append(loaded)
    info = model if model is not None else model_info(settings.model)
    T = int(info.num_train_timesteps)
    if settings.timestep is not None:
        starts = [(_levels.timestep_to_level(t, T), _levels.check_timestep(t, T)) for t in settings.timestep]
    else:
        starts = [(lv, _levels.level_to_timestep(lv, T)) for lv in settings.level]
    if (settings.prompt or settings.negative_prompt) and not getattr(info, "takes_prompt", False):
        raise SettingError(
            f"the model {info.source} takes no text prompt; drop `prompt`/`negative_prompt` "
            "(or use a text-conditioned model such as Stable Diffusion)"
        )
    plans = make_plans(settings, info, starts)

    inputs = []
    fit_args = fit_args_for(settings, info)
    for i, (src, loaded) in enumerate(zip(images, loaded_images)):
        if stream and loaded.path is not None:
            inp = _Input(i, src, loaded, fit_args=fit_args)
            inp.ensure()  # fit once for shapes, then drop the pixels again
            inp.release()
            inputs.append(inp)
            continue
        ref, fitted = fit_input(loaded, fit_args)
        inputs.append(_Input(i, src, loaded, ref, fitted))
    for inp in inputs:  # one warning line per input a small model shrinks (size, colour)
        imageio.warn_fit(inp.loaded, inp.fitted, int(info.image_channels))
    return Job(settings, info, starts, inputs, model=model, plans=plans)


def model_info(model_id):
    """``models.read_model_info`` (JSON configs only, no weights)."""
    from boomerang.models import read_model_info

    return read_model_info(model_id)


def fit_args_for(settings: SampleSettings, info) -> tuple:
    """(background_rgb, channels, native_size, multiple, vae_width): how inputs are fitted to ``info``'s
    model. Pixel models with a native size get exactly that square; others pad to a multiple (and
    refuse inputs too large to run at their own size: ``imageio.check_full_size_input``)."""
    native = getattr(info, "native_size", None)
    multiple = 1 if native else int(getattr(info, "size_multiple", 1) or 1)
    vae_width = getattr(getattr(info, "info", info), "vae_width", None)  # a loaded model keeps its ModelInfo in .info
    return (settings.background_rgb, int(info.image_channels), native, multiple, vae_width)


def fit_input(loaded, fit_args) -> tuple:
    """(reference, fitted): the decoded input in the model's channels at its own size
    (float32 (H, W, C) in [0, 1]), and ``imageio.fit_for_model`` of it.

    Raises:
        boomerang.imageio.ImageInputError: too large for a model without a native size
            (``imageio.check_full_size_input``).
    """
    from boomerang import imageio

    _bg, channels, native, multiple, vae_width = fit_args
    h, w = loaded.pixels.shape[:2]
    imageio.check_full_size_input(loaded.name, w, h, native_size=native, multiple_of=multiple, vae_width=vae_width)
    ref = imageio.to_model_channels(loaded.pixels, channels)
    return ref, imageio.fit_for_model(ref, native_size=native, multiple_of=multiple)


def load(model: str | Path | None = None, *, device: str = "cpu", dtype: str = "float32", allow_pickle: bool = False,
         kernels: str = "auto"):
    """Load a diffusion model once, to pass as ``model=`` to :func:`boomerang.api.sample`.

    Args:
        model: hub id or local folder (a pixel-space DDPM layout or a Stable
            Diffusion 1.x/2.x layout); ``None`` = the bundled model.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        dtype: ``float32``, ``float16`` or ``bfloat16``.
        allow_pickle: also accept pickle weights (only for files you trust).
        kernels: ``auto``, ``invariant`` or ``plain`` (see ``SampleSettings.kernels``);
            sets the model's ``batch_invariant``.

    Returns:
        A ``boomerang.models.DiffusionModel``.

    Raises:
        ValueError: missing folder, unknown layout, hub id not available offline,
            pickle weights without ``allow_pickle``, CUDA requested but not available.
    """
    s = SampleSettings(model=model, device=device, dtype=dtype, allow_pickle=allow_pickle, kernels=kernels)  # validates
    from boomerang.models import load_model

    loaded = load_model(s.model, device=s.device, dtype=s.dtype, allow_pickle=s.allow_pickle)
    if s.kernels != "auto":
        loaded.batch_invariant = s.kernels == "invariant"
    return loaded


def sample_batch(model, x0, generators, plan, settings: SampleSettings,
                 progress: Callable[[int, int], None] | None = None, prompts=None):
    """Execute one plan on one batch: the shared batch function of the API and the runner.

    Args:
        model: the loaded model.
        x0: float32 numpy [B, H, W, C] in [0, 1], every item fitted to the model (same shape).
        generators: one ``torch.Generator`` per item.
        plan: a :class:`~boomerang.levels.NoisePlan`.
        settings: eta, prompt, negative prompt and guidance scale are read from it.
        progress: ``progress(done, total)`` after each reverse step.
        prompts: optional per-item prompts (text models); items are then sampled
            in groups of equal prompt, each item with its own generator.

    Returns:
        (samples, output): float32 numpy [B, H, W, C] in [0, 1] at the model's size,
        and the :class:`boomerang.core.BoomerangOutput` (of the last group).

    Raises:
        NonFiniteOutputError: the model produced NaN or infinite values (nothing is returned for them).
    """
    import numpy as np
    import torch

    from boomerang import core

    xt = torch.from_numpy(np.ascontiguousarray(x0.transpose(0, 3, 1, 2), dtype=np.float32)) * 2.0 - 1.0
    groups = {}
    for i in range(len(generators)):
        groups.setdefault(settings.prompt if prompts is None else prompts[i], []).append(i)
    result = np.empty((len(generators), x0.shape[3], x0.shape[1], x0.shape[2]), np.float32)
    out = None
    for prompt, idx in groups.items():
        out = core.boomerang_sample(
            model, xt[idx], plan, [generators[i] for i in idx], eta=settings.eta, prompt=prompt,
            negative_prompt=settings.negative_prompt, guidance_scale=settings.guidance_scale, progress=progress,
        )
        result[idx] = ((out.samples.detach().float().cpu().clamp(-1, 1) + 1.0) / 2.0).numpy()
    if not np.all(np.isfinite(result)):
        from boomerang.models import NonFiniteOutputError, nonfinite_message

        raise NonFiniteOutputError(nonfinite_message(model))
    return result.transpose(0, 2, 3, 1), out


def run(job: Job, *, progress: bool | None = None) -> Iterator[Sample]:
    """Run a prepared job; yields every :class:`Sample`, level by level.

    Within one level, items (input i, sample j) with the same model-input shape
    are batched ``batch_size`` at a time, one :func:`sample_batch` per batch;
    each item has its own generator, so batching never changes a sample. An
    identity plan on a pixel model (``core.returns_input_pixels``: level 0)
    yields the input's pixels unchanged (no model call, no resize round trip).

    Args:
        job: from :func:`prepare`; its model is loaded here when not given.
        progress: show a tqdm bar on stderr (``None``: only when stderr is a terminal).

    Yields:
        :class:`Sample` objects, for each start in ``job.starts`` then each
        batch, in (image_index, sample_index) order within a shape group.

    Raises:
        ValueError: the model cannot be loaded, or the core rejects a setting.
    """
    import sys

    import numpy as np
    from tqdm.auto import tqdm

    from boomerang import core, seeds
    from boomerang.batching import resolve_batch_size

    s = job.settings
    if job.model is None:
        job.model = load(s.model, device=s.device, dtype=s.dtype, allow_pickle=s.allow_pickle, kernels=s.kernels)
    model = job.model
    channels = int(model.image_channels)
    batch = resolve_batch_size(job)

    # Group items by the shape the model sees (pixel models: all the same).
    groups: dict[tuple, list[tuple[_Input, int]]] = {}
    for inp in job.inputs:
        for j in range(s.num_samples):
            groups.setdefault(inp.fitted.pixels.shape, []).append((inp, j))

    show = sys.stderr.isatty() if progress is None else bool(progress)
    bar = tqdm(total=job.num_items * len(job.starts), unit="sample", disable=not show, file=sys.stderr,
               desc="boomerang")

    def step_progress(done: int, total: int) -> None:  # denoiser evaluations within the current batch
        bar.set_postfix_str(f"step {done}/{total}")

    def record(inp, j, level, plan, pixels, scheduler_config, evals):
        return Sample(
            pixels=pixels, image_index=inp.index, sample_index=j, seed=seeds.item_seed(s.seed, inp.index, j),
            level=level, timestep=plan.timestep, alpha_bar=plan.alpha_bar, num_denoiser_evals=evals,
            scheduler_name=plan.scheduler, scheduler_config=scheduler_config, schedule=plan.schedule,
            input_name=inp.name, input_path=inp.path, reference=inp.reference,
        )

    try:
        for (level, _t), plan in zip(job.starts, job.plans):
            if core.returns_input_pixels(model, plan):  # level 0: the input itself, bit-exact
                config = identity_scheduler_config(plan, model)
                for inp in job.inputs:
                    inp.ensure()
                    for j in range(s.num_samples):
                        yield record(inp, j, level, plan, _unit_float32(inp.reference), config, 0)
                    inp.release()
                    bar.update(s.num_samples)
                continue
            for items in groups.values():
                for start in range(0, len(items), batch):
                    chunk = items[start:start + batch]
                    for it, _ in chunk:
                        it.ensure()  # streaming: decoded again if released
                    x0 = np.stack([it.fitted.pixels for it, _ in chunk])
                    gens = [seeds.item_generator(s.seed, it.index, j) for it, j in chunk]
                    samples, out = sample_batch(model, x0, gens, plan, s, progress=step_progress if show else None)
                    for (inp, j), arr in zip(chunk, samples):
                        pix = inp.fitted.restore(arr)
                        if pix.ndim == 2:
                            pix = pix[..., None]
                        assert pix.shape[-1] == channels
                        yield record(inp, j, level, out.plan, pix, dict(out.scheduler_config),
                                     int(out.num_denoiser_evals))
                    bar.update(len(chunk))
                    upcoming = {id(it) for it, _ in items[start + batch:start + 2 * batch]}
                    for it, _ in chunk:
                        if id(it) not in upcoming:
                            it.release()  # no-op unless prepared with stream=True
    finally:
        bar.close()


def _unit_float32(pixels):
    """float32 in [0, 1]: a uint8 reference (large 8-bit inputs) divided by 255, floats as they are."""
    import numpy as np

    return pixels.astype(np.float32) / np.float32(255) if pixels.dtype == np.uint8 else pixels


def identity_scheduler_config(plan, model) -> dict:
    """The scheduler config recorded for an identity plan (no scheduler ran): the plan's
    scheduler built from the model's config."""
    from boomerang.schedulers import make_scheduler

    return dict(make_scheduler(plan.scheduler, model.scheduler_config).config)
