"""The Task interface: what one application command supplies to the shared runner.

See the package docstring (:mod:`boomerang.tasks`) and docs/runner.md for the
contract and a minimal example. Everything here is torch-free at import.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boomerang.settings import DEFAULT_LEVEL, DTYPES, KERNELS, SCHEDULES, SampleSettings
from boomerang.tasks.layout import LAYOUTS, Item, Layout

__all__ = ["Unit", "Read", "Context", "Task", "add_sampling_arguments", "add_dataset_arguments", "add_job_arguments",
           "settings_from_args", "ENGINES"]

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class Unit:
    """One output file: sample ``sample`` of ``item`` at start ``start`` (an index into
    ``Context.starts`` / ``Context.plans``). ``index`` is its place in the job's fixed
    unit order (level-major: start, then item, then sample); block ``index // block_size``."""

    index: int
    item: Item
    start: int
    sample: int
    name: str = ""


@dataclass
class Read:
    """An item as read for sampling: ``loaded`` (``imageio.LoadedImage``, after the task's
    transform), ``reference`` (float32 (H, W, C) in [0, 1] in the model's channels, at the
    transformed input's size) and ``fitted`` (``imageio.FittedImage``: what the model sees)."""

    loaded: Any
    reference: Any
    fitted: Any


@dataclass
class Context:
    """Everything a task's hooks may read while a job runs.

    Attributes:
        task: the :class:`Task`.
        settings: the validated :class:`~boomerang.settings.SampleSettings`.
        options: the task's own resolved options (:meth:`Task.options`; written to job.json).
        items: the input items (:class:`~boomerang.tasks.layout.Item`), sorted.
        layout: the scanned :class:`~boomerang.tasks.layout.Layout` (``None`` for ``sample``).
        info: the model's ``ModelInfo`` (JSON only) before loading, the model after.
        starts: one ``(level, timestep)`` per requested level/timestep.
        plans: one :class:`~boomerang.levels.NoisePlan` per start.
        out: the output folder.
        model: the loaded model (``None`` until loaded; in Ray actors, each actor's own).
        block_size: units per block (the batch of one sampling call).
        extra: a dict the task may use freely (e.g. the sample task's prepared job).
    """

    task: "Task"
    settings: SampleSettings
    options: dict
    items: list
    layout: Layout | None
    info: Any
    starts: list
    plans: list
    out: Path
    model: Any = None
    block_size: int = 1
    extra: dict = field(default_factory=dict)


def add_sampling_arguments(p: argparse.ArgumentParser, **defaults) -> None:
    """The sampling flags every task shares, with defaults from :class:`SampleSettings`
    (``defaults`` overrides them per task, e.g. ``num_samples=1``)."""
    level_required = bool(defaults.pop("level_required", False))
    d = {f: SampleSettings.__dataclass_fields__[f].default for f in SampleSettings.__dataclass_fields__}
    d.update(defaults)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--level", default=d["level"],
                   help="noise level in [0, 1], or a comma-separated list such as 0.2,0.5,0.8 "
                        + ("(required: no default)" if level_required else f"(default {d['level'] or DEFAULT_LEVEL})"))
    g.add_argument("--timestep", default=None,
                   help="training timestep(s) in [0, T-1] instead of --level (comma-separated list allowed)")
    p.add_argument("--num-samples", default=d["num_samples"], help="samples per image and level (default %(default)s)")
    p.add_argument("--seed", default=d["seed"], help="base seed (default %(default)s)")
    p.add_argument("--steps", default=d["steps"],
                   help="step budget of a full chain; a start at level L takes about L*steps denoiser evaluations "
                        "(default %(default)s)")
    p.add_argument("--scheduler", default=d["scheduler"],
                   help="ddpm (stochastic, the paper's sampler), ddim, euler, dpmsolver++, heun, dpmsolver, lms, unipc, "
                        "deis; pndm, kdpm2, kdpm2-ancestral only with --schedule img2img/reference or --from-noise "
                        "(default %(default)s)")
    p.add_argument("--schedule", default=d["schedule"], choices=SCHEDULES,
                   help="exact: native Boomerang grid; img2img: diffusers strength semantics; "
                        "reference: the authors' notebook (default %(default)s)")
    p.add_argument("--from-noise", action="store_true", help="start from pure noise (ordinary global sampling)")
    p.add_argument("--eta", default=d["eta"], help="DDIM eta, >= 0 (default %(default)s)")
    p.add_argument("--model", default=d["model"], metavar="ID_OR_DIR",
                   help="hub id or local model folder (default: the bundled MNIST model)")
    p.add_argument("--prompt", default=d["prompt"], help="text prompt (text-conditioned models only)")
    p.add_argument("--negative-prompt", default=d["negative_prompt"], help="negative prompt (text models only)")
    p.add_argument("--guidance-scale", default=d["guidance_scale"],
                   help="classifier-free guidance scale (text models only; default %(default)s)")
    p.add_argument("--device", default=d["device"], help="cpu, cuda or cuda:N (default %(default)s)")
    p.add_argument("--dtype", default=d["dtype"], choices=DTYPES,
                   help="precision of the UNet and text encoder; the VAE stays float32 (default %(default)s)")
    p.add_argument("--batch-size", default=d["batch_size"], metavar="N",
                   help="samples per model call (default: automatic, memory-aware); never changes a sample")
    p.add_argument("--threads", default=None, metavar="N",
                   help="torch CPU threads, or 'torch' for torch's own choice (default: the cores idle at "
                        "start, or OMP_NUM_THREADS if set)")
    p.add_argument("--kernels", default=d["kernels"], choices=KERNELS,
                   help="auto: batch-invariant on the CPU, the device's own on CUDA; invariant: a sample never "
                        "depends on its batch; plain: torch's fastest kernels, a sample may differ in its last "
                        "bits with --batch-size (dataset jobs still reproduce on resume and with any --workers) "
                        "(default %(default)s)")
    p.add_argument("--background", default=d["background"],
                   help="colour that transparent pixels are composited over (default %(default)s)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="also load pickle (.bin/.ckpt) weights; only for files you trust (default: safetensors only)")
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="always show the progress bar (default: only on a terminal)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="never show the progress bar")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")


def add_dataset_arguments(p: argparse.ArgumentParser, *, default_out: str | None = None) -> None:
    """The flags of a dataset job: input folder, --out, layout, engine, workers, restart."""
    p.add_argument("input", metavar="IN_DIR", help="input folder (searched recursively; class folders and "
                   "Hugging Face imagefolder metadata.jsonl/.csv are recognised)")
    p.add_argument("--out", required=default_out is None, default=default_out, metavar="OUT_DIR",
                   help="output folder (never inside IN_DIR); rerunning the same command continues the job")
    p.add_argument("--layout", default="auto", choices=LAYOUTS,
                   help="input layout: auto (default), folder, classes (first folder = label) or imagefolder")
    add_job_arguments(p)


def add_job_arguments(p: argparse.ArgumentParser) -> None:
    """--engine, --workers and --restart: how a dataset job runs (the same words in every command)."""
    p.add_argument("--engine", default="local", choices=ENGINES,
                   help="local (default): this process; ray: Ray Data actors (pip install -e \".[ray]\"; "
                        "RAY_ADDRESS attaches to a cluster)")
    p.add_argument("--workers", default=None, metavar="N",
                   help="--engine ray: number of model actors (default: 1 per GPU on CUDA, else 1)")
    p.add_argument("--restart", action="store_true",
                   help="delete the job in OUT_DIR (its outputs, journal and report) and start over")


def settings_from_args(args: argparse.Namespace) -> SampleSettings:
    """:class:`SampleSettings` from the shared sampling flags (validated there)."""
    return SampleSettings(
        level=args.level, timestep=args.timestep, num_samples=args.num_samples, seed=args.seed,
        steps=args.steps, scheduler=args.scheduler, schedule=args.schedule, from_noise=args.from_noise,
        eta=args.eta, model=args.model, prompt=args.prompt, negative_prompt=args.negative_prompt,
        guidance_scale=args.guidance_scale, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
        background=args.background, allow_pickle=args.allow_pickle, kernels=args.kernels,
    )


class Task:
    """A dataset command on the shared runner. Subclass it and override what differs.

    Class attributes:
        name: the command name (``boomerang <name>``).
        help: one line for ``boomerang --help``.
        description: the command's ``--help`` text.
        resumable: True (dataset jobs): a job folder, a journal, unreadable files
            skipped and reported. False (``sample``): every input is checked
            before the model loads (one bad file stops the command) and one run
            writes everything.
        defaults: overrides of the sampling defaults for this command's flags
            (e.g. ``{"num_samples": 1}``).
    """

    name = "dataset"
    help = "Boomerang samples of every image of a folder"
    description = "Boomerang local samples of every image in IN_DIR, written to OUT_DIR in the same layout."
    resumable = True
    defaults: dict = {"num_samples": 1}

    # -- (a) flags and settings ------------------------------------------------------------------

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Register the command's flags (torch-free). Default: the dataset and sampling flags."""
        add_dataset_arguments(parser)
        add_sampling_arguments(parser, **self.defaults)

    def settings(self, args: argparse.Namespace) -> SampleSettings:
        """The validated settings from the parsed flags."""
        return settings_from_args(args)

    def options(self, args: argparse.Namespace) -> dict:
        """The task's own resolved options (JSON-ready); they are part of the job's
        definition (job.json): a rerun with other options refuses to continue."""
        return {}

    def parser_kwargs(self) -> dict:
        """Extra keyword arguments for ``subparsers.add_parser`` (e.g. an ``epilog``)."""
        return {}

    # -- inputs ----------------------------------------------------------------------------------

    def before_load(self, ctx: Context, args: argparse.Namespace) -> None:
        """Called by the runner after the settings and the scan, before the model's configs are
        read. Non-resumable tasks read and check their inputs here and may fill ``ctx.items``,
        ``ctx.info``, ``ctx.starts``, ``ctx.plans`` and ``ctx.extra["input_paths"]``."""

    def block_size(self, ctx: Context) -> int | None:
        """Units per block once the model is loaded; None: ``settings.batch_size`` or automatic."""
        return None

    def other_outputs(self, ctx: Context) -> list[str]:
        """Names of the files the task writes besides its samples (checked against the inputs)."""
        return []

    def scan(self, args: argparse.Namespace) -> Layout:
        """The input items: the layout of ``args.input`` (:func:`boomerang.tasks.layout.scan`)."""
        from boomerang.tasks.layout import scan

        return scan(args.input, args.layout)

    def seed(self, ctx: Context, item: Item, j: int) -> int:
        """The seed of sample ``j`` of ``item``: ``seeds.path_seed(seed, item.relpath, j)``."""
        from boomerang.seeds import path_seed

        return path_seed(ctx.settings.seed, item.relpath, j)

    # -- (b) per-item input transform ------------------------------------------------------------

    def transform(self, ctx: Context, item: Item, pixels):
        """The input as the model should see it, before fitting to the model's size.

        Args:
            pixels: float32 (H, W, 3) RGB in [0, 1], as read (EXIF applied, alpha composited).

        Returns:
            float32 (H', W', 3) in [0, 1]; outputs get this size. Default: unchanged.
        """
        return pixels

    def fit(self, ctx: Context, loaded):
        """(reference, fitted) of an input after :meth:`transform`: ``reference`` float32
        (H, W, C) in [0, 1] in the model's channels (what a level-0 output is), ``fitted``
        what :meth:`sample_batch` gets (``.pixels``) and how outputs come back (``.restore``).
        Default: ``boomerang.jobs.fit_input`` (resize/pad to the model's size, then back)."""
        from boomerang import jobs

        return jobs.fit_input(loaded, jobs.fit_args_for(ctx.settings, ctx.model))

    # -- (c) per-batch sampling ------------------------------------------------------------------

    def sample_batch(self, ctx: Context, x0, generators, plan, prompts):
        """Sample one batch: x0 float32 numpy [B, H, W, C] in [0, 1] (fitted to the model, one
        shape), one generator per item, the plan, per-item prompts (or None).

        Returns:
            (samples float32 numpy [B, H, W, C] in [0, 1], ``core.BoomerangOutput``).
            Default: ``boomerang.jobs.sample_batch`` (``core.boomerang_sample`` of the plan).
        """
        from boomerang.jobs import sample_batch

        return sample_batch(ctx.model, x0, generators, plan, ctx.settings, prompts=prompts)

    # -- (d) output names ------------------------------------------------------------------------

    def output_name(self, ctx: Context, unit: Unit) -> str:
        """The output's path relative to OUT (``/``-separated, ending in ``.png``).

        Default: the input's relative path with ``.png``, so the layout (class folders)
        is mirrored; ``_level<L>`` is added when several levels are asked for
        (``_t<t>`` with timesteps) and ``_s<j>`` when several samples.
        """
        rel = unit.item.relpath
        stem = rel[: -len(Path(rel).suffix)] if Path(rel).suffix else rel
        if len(ctx.starts) > 1:
            level, t = ctx.starts[unit.start]
            stem += f"_t{t:04d}" if ctx.settings.timestep is not None else f"_level{level:.3f}"
        if ctx.settings.num_samples > 1:
            stem += f"_s{unit.sample:03d}"
        return stem + ".png"

    # -- (e) per-item metadata and prompts -------------------------------------------------------

    def prompt(self, ctx: Context, item: Item) -> str | None:
        """The item's prompt (text models), or None for ``settings.prompt``."""
        return None

    def record(self, ctx: Context, unit: Unit, plan, output, read: Read, pixels) -> dict:
        """The output's row in the output metadata file: ``file_name``, the item's carried
        columns (label, caption, ...), and how it was made. Must be JSON-ready and
        deterministic (no times), so a resumed job writes the same bytes."""
        return {
            "file_name": unit.name,
            **unit.item.columns,
            "source": unit.item.relpath,
            "level": ctx.starts[unit.start][0],
            "timestep": plan.timestep,
            "sample_index": unit.sample,
            "seed": self.seed(ctx, unit.item, unit.sample),
        }

    # -- end of the job --------------------------------------------------------------------------

    def finish(self, ctx: Context, records: list[dict], skipped: list[dict]) -> None:
        """Write what depends on every output: by default the output metadata file
        (``metadata.jsonl``, or ``metadata.csv`` when the input had one), rows in unit order."""
        from boomerang.tasks.metadata import write_metadata_file

        fmt = ctx.layout.metadata_format if ctx.layout is not None and ctx.layout.metadata_format else "jsonl"
        write_metadata_file(ctx.out, records, fmt)
