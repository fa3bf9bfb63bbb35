"""The command line of the task commands: their shared flags, and argv -> typed settings in one place.

:func:`parse_task_args` is the only place where a parsed ``argparse.Namespace``
becomes the typed settings the executor takes: a
:class:`~boomerang.settings.SampleSettings`, the task's options (its
``Options`` dataclass) and a :class:`~boomerang.tasks.job.JobSettings`. The
runner, the API and the page build those directly and never see a Namespace.
:func:`sample_command` goes the other way for the record only: the
``boomerang sample`` command line that reproduces a page run (written to its
metadata.json, never parsed). Torch-free.
"""

from __future__ import annotations

import argparse

from boomerang.settings import DEFAULT_LEVEL, DTYPES, KERNELS, SCHEDULES, SampleSettings
from boomerang.tasks.job import ENGINES, JobSettings
from boomerang.tasks.layout import LAYOUTS

__all__ = ["add_sampling_arguments", "add_dataset_arguments", "add_job_arguments", "restate_help",
           "settings_from_args", "job_settings_from_args", "parse_task_args", "samples_per_image", "PAGE_FLAGS",
           "sample_command"]


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
                   help="auto (the model's own: ddpm for DDPM and SD 1.x/2.x, euler for SDXL, SD3 and FLUX, lcm "
                        "for Latent Consistency Models), ddpm (stochastic, the paper's sampler), ddim, euler, "
                        "dpmsolver++, heun, dpmsolver, lms, unipc, deis, lcm, euler-stochastic (flow models; euler and heun too); pndm, kdpm2, kdpm2-ancestral only with --schedule img2img/reference or --from-noise "
                        "(default %(default)s)")
    p.add_argument("--schedule", default=d["schedule"], choices=SCHEDULES,
                   help="exact: native Boomerang grid; img2img: diffusers strength semantics; "
                        "reference: the authors' notebook (default %(default)s)")
    p.add_argument("--from-noise", action="store_true", help="start from pure noise (ordinary global sampling)")
    p.add_argument("--eta", default=d["eta"], help="DDIM eta, >= 0 (default %(default)s)")
    from boomerang.assets import MODEL_NAMES

    p.add_argument("--model", default=d["model"], metavar="ID_OR_DIR",
                   help=f"hub id, local model folder, or a bundled model's short name ({', '.join(MODEL_NAMES)}); "
                        "default: chosen from the inputs: the digit model ddpm-mnist5k when every input is a "
                        "small gray image (at most 64x64), else the photo model ddpm-photos")
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
    p.add_argument("--cpu-offload", action="store_true",
                   help="model CPU offload (as diffusers' enable_model_cpu_offload): the networks wait in CPU memory "
                        "and each moves to the GPU only while it runs; needs --device cuda (not measured here)")
    p.add_argument("--background", default=d["background"],
                   help="colour that transparent pixels are composited over (default %(default)s)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="also load pickle (.bin/.ckpt) weights; only for files you trust (default: safetensors only)")
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="always show the progress bar (default: a bar on a terminal, else a plain line every 30 s)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")


def restate_help(p: argparse.ArgumentParser, **helps: str) -> None:
    """Replace the ``--help`` text of flags already added, by their ``dest``: for a task that takes
    less of a shared flag than its general text says (enhance's schedulers, augment's --from-noise)."""
    for action in p._actions:
        if action.dest in helps:
            action.help = helps[action.dest]


def add_dataset_arguments(p: argparse.ArgumentParser, *, default_out: str | None = None) -> None:
    """The flags of a dataset job: input folder, --out, layout, engine, workers, restart."""
    p.add_argument("input", metavar="IN_DIR", help="input folder (searched recursively; class folders and "
                   "Hugging Face imagefolder metadata.jsonl/.csv are recognised), or WebDataset .tar / Parquet "
                   "shards (a folder of them, or one file)")
    p.add_argument("--out", required=default_out is None, default=default_out, metavar="OUT_DIR",
                   help="output folder (never inside IN_DIR); rerunning the same command continues the job")
    p.add_argument("--layout", default="auto", choices=LAYOUTS,
                   help="input layout: auto (default: recognised), folder, classes (first folder = label), "
                        "imagefolder, webdataset (.tar shards) or parquet; shards are written back as shards")
    add_job_arguments(p)


def add_job_arguments(p: argparse.ArgumentParser) -> None:
    """--engine, --workers and --restart: how a dataset job runs (the same words in every command)."""
    p.add_argument("--engine", default="local", choices=ENGINES,
                   help="local (default): this process; ray: Ray Data actors (pip install -e \".[ray]\" -c constraints.txt; "
                        "RAY_ADDRESS attaches to a cluster)")
    p.add_argument("--workers", default=None, metavar="N",
                   help="--engine ray: number of model actors (default: 1 per GPU on CUDA, else 1)")
    p.add_argument("--restart", action="store_true",
                   help="delete the job in OUT_DIR (its outputs, journal and report) and start over")


def settings_from_args(args: argparse.Namespace, **changes) -> SampleSettings:
    """:class:`SampleSettings` from the shared sampling flags (validated there); ``changes``
    replace flag values (e.g. ``num_samples`` from a task's own ``--samples-per-image``)."""
    # --level and --timestep are one mutually exclusive group: with --timestep, args.level is only
    # a command's default level (enhance: 0.25), never something the user gave.
    values = dict(
        level=None if args.timestep is not None else args.level, timestep=args.timestep, num_samples=args.num_samples, seed=args.seed,
        steps=args.steps, scheduler=args.scheduler, schedule=args.schedule, from_noise=args.from_noise,
        eta=args.eta, model=args.model, prompt=args.prompt, negative_prompt=args.negative_prompt,
        guidance_scale=args.guidance_scale, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
        background=args.background, allow_pickle=args.allow_pickle, kernels=args.kernels,
        cpu_offload=bool(getattr(args, "cpu_offload", False)),
    )
    return SampleSettings(**{**values, **changes})


def samples_per_image(args: argparse.Namespace, default: int) -> int | None:
    """A task's ``--samples-per-image K`` (the same as ``--num-samples``): K checked under its own
    flag, or ``None`` when it was not given.

    Raises:
        SettingError: K is not an integer >= 1 (naming ``samples_per_image``), or both flags
            were given with different values.
    """
    from boomerang.errors import SettingError
    from boomerang.levels import check_positive_int

    if args.samples_per_image is None:
        return None
    k = check_positive_int(args.samples_per_image, "samples_per_image")
    if args.num_samples not in (None, default, args.samples_per_image, k) and str(args.num_samples) != str(k):
        raise SettingError("give `samples_per_image` or `num_samples`, not both")
    return k


def job_settings_from_args(args: argparse.Namespace) -> JobSettings:
    """:class:`JobSettings` from the flags (IN_DIR or IMAGE..., --out, --layout, --engine, --workers,
    --restart, --threads, --progress) and the command line itself."""
    inputs = getattr(args, "images", None) or getattr(args, "input", None) or ()
    return JobSettings(
        inputs=inputs, out=args.out, layout=getattr(args, "layout", "auto"), engine=getattr(args, "engine", "local"),
        workers=getattr(args, "workers", None), restart=bool(getattr(args, "restart", False)),
        threads=getattr(args, "threads", None), progress=getattr(args, "progress", None),
        command=tuple(getattr(args, "_argv", None) or ()),
    )


def parse_task_args(task, args: argparse.Namespace):
    """The one place where parsed flags become typed settings: ``(SampleSettings, task options,
    JobSettings)`` for ``task`` (its ``settings_from_args`` and ``options_from_args`` hooks).

    Raises:
        SettingError: (a ValueError) a bad value, naming the parameter (the CLI shows its flag).
    """
    return task.settings_from_args(args), task.options_from_args(args), job_settings_from_args(args)


#: Settings the page passes, with the CLI flag each one stands for.
PAGE_FLAGS = {
    "level": "--level", "num_samples": "--num-samples", "seed": "--seed", "steps": "--steps",
    "scheduler": "--scheduler", "schedule": "--schedule", "eta": "--eta", "prompt": "--prompt",
    "negative_prompt": "--negative-prompt", "guidance_scale": "--guidance-scale", "background": "--background",
}


def sample_command(image, settings: dict, *, model=None, device="cpu", dtype="float32", allow_pickle=False,
                   threads=None, out: str = "", cpu_offload: bool = False) -> list[str]:
    """The ``boomerang sample`` command line (without ``boomerang``) that does what a page run
    does: recorded in its metadata.json, never parsed.

    Args:
        image: the input file.
        settings: page settings, keys of :data:`PAGE_FLAGS` (``None`` values left out).
        model, device, dtype, allow_pickle, threads, cpu_offload: the server's model flags.
        out: the output folder.
    """
    # FLAG=VALUE and "--" before the file: a prompt or a file name that starts with "-" stays a value.
    argv = ["sample"]
    for key, flag in PAGE_FLAGS.items():
        if key in settings and settings[key] is not None:
            argv.append(f"{flag}={settings[key]}")
    if model is not None:
        argv.append(f"--model={model}")
    argv += [f"--device={device}", f"--dtype={dtype}"]
    if allow_pickle:
        argv.append("--allow-pickle")
    if cpu_offload:
        argv.append("--cpu-offload")
    if threads is not None:
        argv.append(f"--threads={threads}")
    return argv + [f"--out={out}", "--", str(image)]
