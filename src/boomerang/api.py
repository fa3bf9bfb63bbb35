"""The high-level Python API of boomerang; ``boomerang sample`` runs on it too.

Importing this module is cheap (no torch); the model, torch and diffusers load
inside the functions.

Typical use::

    import boomerang

    images = boomerang.sample("digit.png", level=0.3, num_samples=4, seed=0)
    # -> list of 4 PIL images, each the size of digit.png

    model = boomerang.load("path/to/model")        # load once, sample many
    more = boomerang.sample(pil_image, model=model, level=[0.2, 0.5])

One code path: :func:`sample` and the CLI both go through
:func:`prepare` (every check that needs no model: settings, model config,
reading every input) and :func:`run` (load, batch, sample, restore sizes).

Reproducibility: sample ``j`` of input ``i`` gets its own generator from
``boomerang.seeds.item_generator(seed, i, j)``; nothing else random is used.
Batch size, input order within a batch and ``num_samples`` therefore never
change a sample. The same (seed, i, j) is used at every level, so one
sample index follows the same noise across levels.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator, Sequence

from boomerang import levels as _levels

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

#: Level used when neither a level nor a timestep is given.
DEFAULT_LEVEL = 0.3
#: Accepted ``dtype`` names.
DTYPES = ("float32", "float16", "bfloat16")
#: Reverse schedules (the same names as ``boomerang.core.SCHEDULES``; kept
#: here so that settings can be checked without importing torch).
SCHEDULES = ("exact", "img2img", "reference")
#: Automatic batch size: at most this many samples per core call on the CPU. Measured
#: (benchmarks/batching.py, BENCHMARKS.md): throughput on the CPU rises up to batch
#: 4-16 and is flat or falling beyond, while memory grows with the batch.
AUTO_BATCH_MAX = 16
#: ... and on CUDA, where larger batches keep the GPU busy.
AUTO_BATCH_MAX_CUDA = 64
#: Fraction of the available memory the automatic batch may plan to use.
AUTO_BATCH_MEMORY_FRACTION = 0.5


def available_memory_bytes(device: str = "cpu") -> int | None:
    """Free memory for tensors on ``device``: CUDA free memory, or the CPU's
    ``MemAvailable`` (Linux ``/proc/meminfo``); None when unknown."""
    if str(device).startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def estimate_item_bytes(model, shape: tuple[int, int, int]) -> int:
    """Rough peak activation memory (bytes) of one item in one denoiser call.

    Args:
        model: a loaded model (``unet.config`` is read) or None (a generic guess).
        shape: (C, H, W) of the image the model gets (pixels, before the VAE).

    The UNet keeps every down-block output for its skip connections and works
    on a few tensors of the largest level at a time; attention levels add a
    heads x L x L score matrix. Sum: bytes x (3 x sum of level sizes x
    (layers_per_block + 1) + 4 x the largest level + attention), doubled for
    classifier-free guidance on text models, times a safety factor of 2.
    """
    c, h, w = (int(v) for v in shape)
    cfg = getattr(getattr(model, "unet", None), "config", None)
    if cfg is None:
        return 64 * c * h * w * 4
    f = int(getattr(model, "size_multiple", 1) or 1) if getattr(model, "kind", "pixel") == "latent" else 1
    h, w = max(1, h // f), max(1, w // f)
    chans = list(cfg.get("block_out_channels", (64,)))
    layers = int(cfg.get("layers_per_block", 1) or 1)
    types = list(cfg.get("down_block_types", ()))
    head_dim = cfg.get("attention_head_dim") or 8
    sizes, attn = [], 0
    for i, ch in enumerate(chans):
        hw = max(1, h >> i) * max(1, w >> i)
        sizes.append(ch * hw)
        if i < len(types) and "Attn" in str(types[i]):
            heads = max(1, ch // int(head_dim if isinstance(head_dim, int) else head_dim[0]))
            attn = max(attn, heads * hw * hw)
    attn = max(attn, max(1, chans[-1] // 8) * (max(1, h >> (len(chans) - 1)) * max(1, w >> (len(chans) - 1))) ** 2)
    elem = 2 if str(getattr(model, "dtype", "float32")) in ("float16", "bfloat16") else 4
    per = elem * (3 * (layers + 1) * sum(sizes) + 4 * max(sizes) + attn)
    if getattr(model, "takes_prompt", False):
        per *= 2
    return int(2 * per)


def auto_batch_size(num_items: int, device: str = "cpu", model=None, shape: tuple[int, int, int] | None = None,
                    available_bytes: int | None = None) -> int:
    """The batch size used when none is given: memory-aware and capped.

    ``min(num_items, cap, fit)``: cap = :data:`AUTO_BATCH_MAX` on the CPU
    (:data:`AUTO_BATCH_MAX_CUDA` on CUDA); fit = how many items of
    :func:`estimate_item_bytes` fit in :data:`AUTO_BATCH_MEMORY_FRACTION` of
    the available memory (``available_bytes``, default
    :func:`available_memory_bytes`); at least 1. Without ``model`` and ``shape``
    only the cap applies.

    Batch size never changes a sample (one generator per sample, batch-invariant
    kernels on the CPU); it only trades memory for speed.
    """
    cap = AUTO_BATCH_MAX_CUDA if str(device).startswith("cuda") else AUTO_BATCH_MAX
    batch = max(1, min(int(num_items), cap))
    if model is not None and shape is not None:
        free = available_bytes if available_bytes is not None else available_memory_bytes(device)
        if free is not None:
            fit = int(free * AUTO_BATCH_MEMORY_FRACTION) // max(1, estimate_item_bytes(model, shape))
            batch = max(1, min(batch, fit))
    return batch


def resolve_batch_size(job) -> int:
    """The batch size a job runs with: ``settings.batch_size`` or :func:`auto_batch_size`
    for its largest input (the model must be loaded)."""
    s = job.settings
    if s.batch_size:
        return int(s.batch_size)
    shape = None
    if job.model is not None and job.inputs:
        big = max(job.inputs, key=lambda inp: inp.fitted.pixels.shape[0] * inp.fitted.pixels.shape[1])
        hh, ww, cc = big.fitted.pixels.shape
        shape = (int(cc), int(hh), int(ww))
    return auto_batch_size(job.num_items, s.device, job.model, shape)


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
            The upper bound is checked against the model in :func:`prepare`.
        num_samples: samples per input and level, >= 1.
        seed: base seed (an integer >= 0); sample j of input i uses
            ``seeds.item_seed(seed, i, j)``.
        steps: step budget of a full chain (denoiser evaluations at level 1),
            >= 1; a start at level L uses about L x steps (at least 1).
        scheduler: a name from ``boomerang.schedulers.SCHEDULER_NAMES``:
            ``ddpm`` (the paper's stochastic ancestral sampler), ``ddim``,
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
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        dtype: one of :data:`DTYPES`.
        batch_size: samples per core call (>= 1), ``None`` = :func:`auto_batch_size` (memory-aware).
        background: colour that transparent pixels are composited over: a
            Pillow colour name or ``#rrggbb`` (default ``white``).
        allow_pickle: allow loading pickle (``.bin``/``.ckpt``) weights; by
            default only safetensors are loaded.

    Raises:
        ValueError: (on construction) with a message saying how to fix the value.
    """

    level: Any = None
    timestep: Any = None
    num_samples: int = 4
    seed: int = 0
    steps: int = 50
    scheduler: str = "ddpm"
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

    def __post_init__(self) -> None:
        put = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        if self.level is not None and self.timestep is not None:
            raise ValueError("give either --level or --timestep, not both")
        if self.from_noise:
            # Global sampling from pure noise: the input only gives the size.
            if self.timestep is not None:
                raise ValueError("--from-noise samples from pure noise; it takes no --timestep")
            if self.level is not None and any(lv != 1.0 for lv in _flat_levels(self.level)):
                raise ValueError("--from-noise samples from pure noise; it takes no --level (or --level 1)")
            put("level", (1.0,))
        elif self.timestep is not None:
            ts = []
            for item in _as_tuple(self.timestep):
                parts = item.split(",") if isinstance(item, str) else [item]
                for p in parts:
                    # Range [0, T-1] is checked against the model in prepare(); here only "integer >= 0".
                    ts.append(_levels.check_timestep(p.strip() if isinstance(p, str) else p, None))
            if not ts:
                raise ValueError("--timestep needs at least one integer")
            if len(set(ts)) != len(ts):
                raise ValueError(f"--timestep lists a value twice: {ts}")
            put("timestep", tuple(ts))
        else:
            lv = _flat_levels(DEFAULT_LEVEL if self.level is None else self.level)
            if not lv:
                raise ValueError("--level needs at least one value in [0, 1]")
            names = [f"{v:.3f}" for v in lv]
            if len(set(names)) != len(names):
                raise ValueError(f"--level values must differ in their first 3 decimals (they name the files), got {lv}")
            put("level", tuple(lv))
        put("num_samples", _levels.check_positive_int(self.num_samples, "--num-samples"))
        put("steps", _levels.check_positive_int(self.steps, "--steps"))
        if self.batch_size is not None:
            put("batch_size", _levels.check_positive_int(self.batch_size, "--batch-size"))
        try:
            seed_f = float(self.seed)
        except (TypeError, ValueError):
            seed_f = math.nan
        if isinstance(self.seed, bool) or not math.isfinite(seed_f) or seed_f != int(seed_f) or seed_f < 0:
            raise ValueError(f"--seed must be an integer >= 0, got {self.seed!r}")
        put("seed", int(seed_f))
        put("scheduler", str(self.scheduler).strip().lower())
        if self.schedule not in SCHEDULES:
            raise ValueError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        for name in ("eta", "guidance_scale"):
            try:
                v = float(getattr(self, name))
            except (TypeError, ValueError):
                v = math.nan
            if not math.isfinite(v) or (name == "eta" and v < 0):
                flag = "--" + name.replace("_", "-")
                need = "a finite number >= 0" if name == "eta" else "a finite number"
                raise ValueError(f"{flag} must be {need}, got {getattr(self, name)!r}")
            put(name, v)
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        dev = str(self.device)
        if not (dev in ("cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
            raise ValueError(f"--device must be cpu, cuda or cuda:N, got {self.device!r}")
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
            raise ValueError(
                f"--background must be a colour name or #rrggbb, got {self.background!r}"
            ) from None
        return tuple(rgb[:3])

    def to_dict(self) -> dict:
        """The settings as a JSON-ready dict (tuples become lists)."""
        d = asdict(self)
        d["level"] = list(self.level) if self.level is not None else None
        d["timestep"] = list(self.timestep) if self.timestep is not None else None
        d["background_rgb"] = list(self.background_rgb)
        return d


# --------------------------------------------------------------------------- stages


@dataclass
class _Input:
    index: int
    source: Any  # what the user passed (path, PIL image, array)
    loaded: Any  # imageio.LoadedImage
    reference: Any = None  # float32 (H, W, C) in [0, 1], model channels, input size
    fitted: Any = None  # imageio.FittedImage
    fit_args: Any = None  # (background_rgb, channels, native_size, multiple): set for inputs that may be released

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

        background, channels, native, multiple = self.fit_args
        loaded, self.reference, self.fitted = imageio.read_for_model(  # bounded memory for large files
            self.source, channels=channels, native_size=native, multiple_of=multiple, background=background)
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
    """

    settings: SampleSettings
    info: Any
    starts: list[tuple[float, int | None]]
    inputs: list[_Input]
    model: Any = None

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
        import numpy as np

        from boomerang.metrics import image_distance, quantize8

        return image_distance(quantize8(self.pixels), quantize8(self.reference))  # bounded memory for large images


def _model_fields(model_or_info) -> dict:
    keys = ("source", "kind", "num_train_timesteps", "image_channels", "native_size", "size_multiple", "takes_prompt")
    return {k: getattr(model_or_info, k, None) for k in keys}


def prepare(images, settings: SampleSettings | None = None, *, model=None, stream: bool = False, **overrides) -> Job:
    """Check everything that can be checked without loading a model.

    Steps: validate the settings; read and decode every input (so a bad file
    fails here, named in the message); read the model's JSON configs
    (``models.read_model_info``) to get T, channels and sizes; check timesteps
    against [0, T-1]; check the scheduler name and that a prompt is only given
    to a text model; fit every input to the model's size.

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
        ValueError: bad settings, model folder / hub id not available, timestep out of range.
        boomerang.imageio.ImageInputError: (a ValueError) an input that cannot be read; the message names it.
    """
    from boomerang import imageio

    settings = settings or SampleSettings()
    if overrides:
        settings = SampleSettings(**{**{f.name: getattr(settings, f.name) for f in fields(settings)}, **overrides})
    if isinstance(images, (str, Path)) or not isinstance(images, (list, tuple)):
        images = [images]
    if not images:
        raise ValueError("no input images given")
    # Inputs first: a bad file is named even when the model is also missing.
    loaded_images = []
    for src in images:
        loaded = imageio.read_image(src, background=settings.background_rgb, pixels=not stream)
        if stream and loaded.path is not None:  # checked; keep sizes and metadata only
            import dataclasses

            import numpy as np

            loaded = dataclasses.replace(loaded, pixels=np.broadcast_to(np.zeros((), np.float32), loaded.pixels.shape))
        loaded_images.append(loaded)
    if model is not None:
        info = model
    else:
        from boomerang.models import read_model_info

        info = read_model_info(settings.model)
    T = int(info.num_train_timesteps)
    if settings.timestep is not None:
        starts = [(_levels.timestep_to_level(t, T), _levels.check_timestep(t, T)) for t in settings.timestep]
    else:
        starts = [(lv, _levels.level_to_timestep(lv, T)) for lv in settings.level]
    if (settings.prompt or settings.negative_prompt) and not getattr(info, "takes_prompt", False):
        raise ValueError(
            f"the model {info.source} takes no text prompt; drop --prompt/--negative-prompt "
            "(or use a text-conditioned model such as Stable Diffusion)"
        )
    from boomerang.schedulers import CUSTOM_GRID_SCHEDULERS, SCHEDULER_NAMES

    if settings.scheduler not in SCHEDULER_NAMES:
        raise ValueError(f"--scheduler must be one of {', '.join(SCHEDULER_NAMES)}, got {settings.scheduler!r}")
    if settings.schedule == "exact" and not settings.from_noise and settings.scheduler not in CUSTOM_GRID_SCHEDULERS:
        raise ValueError(
            f"--scheduler {settings.scheduler} cannot follow the exact Boomerang grid; use one of "
            f"{', '.join(CUSTOM_GRID_SCHEDULERS)}, or --schedule img2img / reference"
        )

    inputs = []
    native = getattr(info, "native_size", None)
    # Pixel models with a native size get exactly that square; others pad to a multiple.
    multiple = 1 if native else int(getattr(info, "size_multiple", 1) or 1)
    fit_args = (settings.background_rgb, int(info.image_channels), native, multiple)
    for i, (src, loaded) in enumerate(zip(images, loaded_images)):
        if stream and loaded.path is not None:
            inp = _Input(i, src, loaded, fit_args=fit_args)
            inp.ensure()  # fit once for shapes, then drop the pixels again
            inp.release()
            inputs.append(inp)
            continue
        ref = imageio.to_model_channels(loaded.pixels, int(info.image_channels))
        fitted = imageio.fit_for_model(ref, native_size=native, multiple_of=multiple)
        inputs.append(_Input(i, src, loaded, ref, fitted))
    for inp in inputs:  # one warning line per input a small model shrinks (size, colour)
        imageio.warn_fit(inp.loaded, inp.fitted, int(info.image_channels))
    return Job(settings, info, starts, inputs, model=model)


def load(model: str | Path | None = None, *, device: str = "cpu", dtype: str = "float32", allow_pickle: bool = False):
    """Load a diffusion model once, to pass as ``model=`` to :func:`sample`.

    Args:
        model: hub id or local folder (a pixel-space DDPM layout or a Stable
            Diffusion 1.x/2.x layout); ``None`` = the bundled model.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        dtype: ``float32``, ``float16`` or ``bfloat16``.
        allow_pickle: also accept pickle weights (only for files you trust).

    Returns:
        A ``boomerang.models.DiffusionModel``.

    Raises:
        ValueError: missing folder, unknown layout, hub id not available offline,
            pickle weights without ``allow_pickle``, CUDA requested but not available.
    """
    s = SampleSettings(model=model, device=device, dtype=dtype, allow_pickle=allow_pickle)  # validates
    from boomerang.models import load_model

    return load_model(s.model, device=s.device, dtype=s.dtype, allow_pickle=s.allow_pickle)


def run(job: Job, *, progress: bool | None = None) -> Iterator[Sample]:
    """Run a prepared job; yields every :class:`Sample`, level by level.

    Within one level, items (input i, sample j) with the same model-input shape
    are batched ``batch_size`` at a time, one core call per batch; each item has
    its own generator, so batching never changes a sample. Level 0 with a
    pixel-space model returns the input's pixels unchanged (no model call, no
    resize round trip).

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
    import torch
    from tqdm.auto import tqdm

    from boomerang import core, seeds

    s = job.settings
    if job.model is None:
        job.model = load(s.model, device=s.device, dtype=s.dtype, allow_pickle=s.allow_pickle)
    model = job.model
    if s.schedule in ("exact", "reference") and not s.from_noise:  # refuse before the first sample, not half-way
        T = int(model.num_train_timesteps)
        for level, t in job.starts:  # the noise timestep: core's plan (img2img starts on the scheduler's own grid)
            if t is not None and s.schedule == "reference":
                t = core.reference_timestep(level, t if s.timestep is not None else None, T)
            core.check_start_sigma(s.scheduler, model.scheduler_config, t)
    channels = int(model.image_channels)
    batch = resolve_batch_size(job)
    identity_config = None

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

    try:
        for level, t in job.starts:
            if t is None and model.kind == "pixel" and not s.from_noise:
                # Level 0: the input itself (core would return x0 unchanged too, but
                # after the resize to the model's size and back; this is bit-exact).
                if identity_config is None:
                    from boomerang.schedulers import make_scheduler

                    identity_config = dict(make_scheduler(s.scheduler, model.scheduler_config).config)
                for inp in job.inputs:
                    inp.ensure()
                    reference = inp.reference
                    inp.release()
                    for j in range(s.num_samples):
                        yield Sample(
                            pixels=reference, image_index=inp.index, sample_index=j,
                            seed=seeds.item_seed(s.seed, inp.index, j), level=level, timestep=None,
                            alpha_bar=1.0, num_denoiser_evals=0, scheduler_name=s.scheduler,
                            scheduler_config=identity_config, schedule=s.schedule, input_name=inp.name,
                            input_path=inp.path, reference=reference,
                        )
                    bar.update(s.num_samples)
                del reference  # large inputs: not held while the next level reads the file again
                continue
            for items in groups.values():
                for start in range(0, len(items), batch):
                    chunk = items[start:start + batch]
                    for it, _ in chunk:
                        it.ensure()  # streaming: decoded again if released
                    x0 = torch.from_numpy(
                        np.stack([it.fitted.pixels.transpose(2, 0, 1) for it, _ in chunk]).astype(np.float32)
                    ) * 2.0 - 1.0  # [B, C, h, w] in [-1, 1]
                    gens = [seeds.item_generator(s.seed, it.index, j) for it, j in chunk]
                    kw = dict(level=level) if s.timestep is None else dict(timestep=t)
                    out = core.boomerang_sample(
                        model, x0, generators=gens, schedule=s.schedule, from_noise=s.from_noise,
                        scheduler=s.scheduler, steps=s.steps, eta=s.eta, prompt=s.prompt,
                        negative_prompt=s.negative_prompt, guidance_scale=s.guidance_scale,
                        progress=step_progress if show else None, **kw,
                    )
                    samples = ((out.samples.detach().float().cpu().clamp(-1, 1) + 1.0) / 2.0).numpy()
                    if not np.all(np.isfinite(samples)):
                        from boomerang.models import NonFiniteOutputError, nonfinite_message

                        raise NonFiniteOutputError(nonfinite_message(model))
                    for (inp, j), arr in zip(chunk, samples):
                        pix = inp.fitted.restore(arr.transpose(1, 2, 0))
                        if pix.ndim == 2:
                            pix = pix[..., None]
                        assert pix.shape[-1] == channels
                        yield Sample(
                            pixels=pix, image_index=inp.index, sample_index=j,
                            seed=seeds.item_seed(s.seed, inp.index, j), level=level,
                            timestep=out.plan.timestep, alpha_bar=out.alpha_bar,
                            num_denoiser_evals=int(out.num_denoiser_evals), scheduler_name=out.scheduler_name,
                            scheduler_config=dict(out.scheduler_config), schedule=out.plan.schedule,
                            input_name=inp.name, input_path=inp.path, reference=inp.reference,
                        )
                    bar.update(len(chunk))
                    upcoming = {id(it) for it, _ in items[start + batch:start + 2 * batch]}
                    for it, _ in chunk:
                        if id(it) not in upcoming:
                            it.release()  # no-op unless prepared with stream=True
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
