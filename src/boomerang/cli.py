"""Command-line entry point: ``boomerang <command> ...``.

Commands: ``sample`` (the main job: local samples of images), ``train`` and
``train-classifier``. Building the parser imports no torch, so ``boomerang
--help`` and ``boomerang sample --help`` answer at once; torch, diffusers and
the model load inside the commands.

Exit status: 0 success; 2 bad input (bad parameter, missing or unreadable
input, missing model), reported as one ``boomerang: error: ...`` line on
stderr before any model loads, with nothing written; 1 an unexpected failure
while sampling; 130 interrupted. ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys

#: Output folder of ``boomerang sample`` when --out is not given.
DEFAULT_OUT = "boomerang-out"
#: Name of the metadata file written next to the samples.
METADATA_NAME = "metadata.json"
#: Name of each input's contact sheet (inside the input's folder in --out).
SHEET_NAME = "contact_sheet.png"


class _OneLineErrorParser(argparse.ArgumentParser):
    """argparse parser whose usage errors are one line (``boomerang: error: ...``,
    exit status 2) instead of the usage text followed by the error; subparsers
    inherit the class."""

    def error(self, message: str):
        self.exit(2, f"boomerang: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered (imports no torch)."""
    from boomerang import __version__
    from boomerang.classifier import add_train_classifier_parser
    from boomerang.train import add_train_parser

    parser = _OneLineErrorParser(
        prog="boomerang",
        description="Boomerang: local sampling on image manifolds with pretrained diffusion models.",
    )
    parser.add_argument("--version", action="version", version=f"boomerang {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_sample_parser(sub)
    add_train_parser(sub)
    add_train_classifier_parser(sub)
    from boomerang.train_ldm import add_train_ldm_parser; add_train_ldm_parser(sub)  # noqa: E702
    return parser


def add_sample_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``boomerang sample``; defaults come from :class:`boomerang.api.SampleSettings`."""
    from boomerang.api import AUTO_BATCH_MAX, DEFAULT_LEVEL, DTYPES, SCHEDULES, SampleSettings

    d = SampleSettings.__dataclass_fields__
    D = lambda name: d[name].default  # noqa: E731
    p = subparsers.add_parser(
        "sample",
        help="local samples of images (the main job)",
        description=(
            "Boomerang local sampling: push each IMAGE to a noise level with the model's own forward "
            "process, then run the reverse process back to an image. Writes one PNG per sample, a "
            f"contact sheet per input and {METADATA_NAME} into --out."
        ),
        epilog=(
            "Levels map to training timesteps as t = round(level * (T-1)); level 0 returns the input. "
            f"Outputs: OUT/<image stem>/level<L>_s<j>.png (t<t>_s<j>.png with --timestep), "
            f"OUT/<image stem>/{SHEET_NAME}, OUT/{METADATA_NAME}. "
            "All inputs are read before the model loads: one unreadable file stops the command (exit 2)."
        ),
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files and/or folders (searched recursively)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--level", default=None,
                   help=f"noise level in [0, 1], or a comma-separated list such as 0.2,0.5,0.8 (default {DEFAULT_LEVEL})")
    g.add_argument("--timestep", default=None,
                   help="training timestep(s) in [0, T-1] instead of --level (comma-separated list allowed)")
    p.add_argument("--num-samples", default=D("num_samples"), help="samples per image and level (default %(default)s)")
    p.add_argument("--seed", default=D("seed"), help="base seed; sample j of image i uses seed hash (seed, i, j) (default %(default)s)")
    p.add_argument("--steps", default=D("steps"),
                   help="step budget of a full chain; a start at level L takes about L*steps denoiser evaluations (default %(default)s)")
    p.add_argument("--scheduler", default=D("scheduler"),
                   help="ddpm (stochastic, the paper's sampler), ddim, euler, dpmsolver++ or pndm (default %(default)s)")
    p.add_argument("--schedule", default=D("schedule"), choices=SCHEDULES,
                   help="exact: native Boomerang grid; img2img: diffusers strength semantics; "
                        "reference: the authors' notebook (default %(default)s)")
    p.add_argument("--from-noise", action="store_true", help="start from pure noise (ordinary global sampling)")
    p.add_argument("--eta", default=D("eta"), help="DDIM eta, >= 0 (default %(default)s)")
    p.add_argument("--model", default=D("model"), metavar="ID_OR_DIR",
                   help="hub id or local model folder (default: the bundled MNIST model)")
    p.add_argument("--prompt", default=D("prompt"), help="text prompt (text-conditioned models only)")
    p.add_argument("--negative-prompt", default=D("negative_prompt"), help="negative prompt (text models only)")
    p.add_argument("--guidance-scale", default=D("guidance_scale"),
                   help="classifier-free guidance scale (text models only; default %(default)s)")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help="output folder (default %(default)s)")
    p.add_argument("--device", default=D("device"), help="cpu, cuda or cuda:N (default %(default)s)")
    p.add_argument("--dtype", default=D("dtype"), choices=DTYPES, help="(default %(default)s)")
    p.add_argument("--batch-size", default=D("batch_size"), metavar="N",
                   help=f"samples per model call (default: automatic, at most {AUTO_BATCH_MAX} on the CPU and what fits "
                        "in half the free memory); never changes a sample")
    p.add_argument("--threads", default=None, metavar="N",
                   help="torch CPU threads (default: torch's choice); 1 is much faster on a busy machine")
    p.add_argument("--background", default=D("background"),
                   help="colour that transparent pixels are composited over (default %(default)s)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="also load pickle (.bin/.ckpt) weights; only for files you trust (default: safetensors only)")
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="always show the progress bar (default: only on a terminal)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="never show the progress bar")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.set_defaults(func=run_sample)
    return p


class _UserError(Exception):
    """A problem with the user's input: exit status 2."""


def _error(message: str, status: int) -> int:
    print(f"boomerang: error: {message}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the subcommand.

    Returns:
        The exit status (0 ok, 2 bad input, 1 unexpected failure, 130 interrupted);
        argparse's own exits (``--help``, usage errors) are returned, not raised.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    args._argv = list(sys.argv[1:] if argv is None else argv)
    return int(args.func(args))


# --------------------------------------------------------------------------- sample


def _output_names(job) -> tuple[list[str], dict[int, str]]:
    """Folder per input (its stem; ``<stem>_<index>`` when stems collide) and
    relative file names of every sample, per (start index, image, sample)."""
    from collections import Counter

    stems = [(inp.path.stem if inp.path is not None else f"image{inp.index}") or f"image{inp.index}" for inp in job.inputs]
    counts = Counter(stems)
    dirs = {inp.index: (st if counts[st] == 1 else f"{st}_{inp.index}") for inp, st in zip(job.inputs, stems)}
    rels = []
    for k in range(len(job.starts)):
        for inp in job.inputs:
            for j in range(job.settings.num_samples):
                rels.append(_sample_name(job, k, dirs[inp.index], j))
    rels += [f"{d}/{SHEET_NAME}" for d in dirs.values()] + [METADATA_NAME]
    return rels, dirs


def _sample_name(job, k: int, folder: str, j: int) -> str:
    level, t = job.starts[k]
    if job.settings.timestep is not None:
        return f"{folder}/t{t:04d}_s{j:03d}.png"
    return f"{folder}/level{level:.3f}_s{j:03d}.png"


def _settings_from_args(args):
    from boomerang.api import SampleSettings

    return SampleSettings(
        level=args.level, timestep=args.timestep, num_samples=args.num_samples, seed=args.seed,
        steps=args.steps, scheduler=args.scheduler, schedule=args.schedule, from_noise=args.from_noise,
        eta=args.eta, model=args.model, prompt=args.prompt, negative_prompt=args.negative_prompt,
        guidance_scale=args.guidance_scale, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
        background=args.background, allow_pickle=args.allow_pickle,
    )


def run_sample(args: argparse.Namespace) -> int:
    """Run ``boomerang sample``; returns the exit status (see the module docstring)."""
    try:
        return _run_sample(args)
    except KeyboardInterrupt:
        return _error("interrupted", 130)
    except (_UserError, ValueError) as exc:  # ImageInputError is a ValueError
        if args.debug:
            raise
        return _error(str(exc), 2)
    except Exception as exc:  # noqa: BLE001 - one line for the user, the traceback with --debug
        if args.debug:
            raise
        return _error(f"{type(exc).__name__}: {exc} (run again with --debug for the traceback)", 1)


def _run_sample(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from boomerang import __version__, api, imageio

    # 1. Everything that needs no model: settings, model config, inputs, output folder.
    settings = _settings_from_args(args)
    files = imageio.list_image_files(args.images)
    if not files:
        raise _UserError(f"no image files found in {' '.join(args.images)} (looked for {', '.join(imageio.IMAGE_SUFFIXES)})")
    job = api.prepare(files, settings, stream=True)  # inputs decoded again per batch: memory stays flat
    rels, dirs = _output_names(job)
    out = imageio.check_output_dir(args.out, args.images, rels)
    if out.exists() and not out.is_dir():
        raise _UserError(f"--out {args.out} exists and is not a folder")

    threads = None
    if args.threads is not None:
        from boomerang.levels import check_positive_int

        threads = check_positive_int(args.threads, "--threads")

    # 2. The model. Nothing has been written yet.
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    job.model = api.load(settings.model, device=settings.device, dtype=settings.dtype,
                         allow_pickle=settings.allow_pickle)
    model = job.model
    source = str(getattr(model, "source", settings.model))
    source = str(Path(source).resolve()) if Path(source).is_dir() else source
    hub_id = settings.model if settings.model and not Path(settings.model).expanduser().exists() else None
    info = {
        # "id": what names the model: the hub id as given, else the local folder as an absolute path;
        # "source": the folder the weights were read from (for a hub id, the local cache snapshot).
        "id": hub_id or source,
        "source": source,
        "kind": model.kind,
        "num_train_timesteps": int(model.num_train_timesteps),
        "image_channels": int(model.image_channels),
        "native_size": getattr(model, "native_size", None),
        "size_multiple": getattr(model, "size_multiple", None),
        "takes_prompt": bool(getattr(model, "takes_prompt", False)),
        "weights_sha256": getattr(model, "weights_sha256", None),
    }
    batch_size = api.resolve_batch_size(job)

    # 3. Sample and write, one PNG at a time (folders are created on the first write).
    records = []
    made: set = set()
    for smp in api.run(job, progress=args.progress):
        k = _find_start(job, smp.level)
        rel = _sample_name(job, k, dirs[smp.image_index], smp.sample_index)
        path = out / rel
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        imageio.save_image(smp.pixels, path)
        inp = job.inputs[smp.image_index]
        records.append({
            "file": rel,
            "input": str(inp.path),
            "image_index": smp.image_index,
            "sample_index": smp.sample_index,
            "seed": smp.seed,
            "level": smp.level,
            "timestep": smp.timestep,
            "alpha_bar": smp.alpha_bar,
            "num_denoiser_evals": smp.num_denoiser_evals,
            "scheduler": smp.scheduler_name,
            "scheduler_config": _jsonable(smp.scheduler_config),
            "schedule": smp.schedule,
            "from_noise": settings.from_noise,
            "eta": settings.eta,
            "steps": settings.steps,
            "model": info["id"],
            "weights_sha256": info["weights_sha256"],
            # Text conditioning only exists for text models; null otherwise.
            "prompt": settings.prompt if info["takes_prompt"] else None,
            "negative_prompt": settings.negative_prompt if info["takes_prompt"] else None,
            "guidance_scale": settings.guidance_scale if info["takes_prompt"] else None,
            "dtype": settings.dtype,
            "device": settings.device,
            "boomerang_version": __version__,
            "size": list(inp.loaded.size),
            **smp.distance(),
        })

    # 4. One contact sheet per input, from the files just written.
    from boomerang.sheet import contact_sheet

    by_row: dict[tuple[int, int], list[dict]] = {}
    for r in records:
        by_row.setdefault((r["image_index"], _find_start(job, r["level"])), []).append(r)
    sheets = {}
    for inp in job.inputs:
        rows = []
        for k, (level, _t) in enumerate(job.starts):
            recs = sorted(by_row.get((inp.index, k), []), key=lambda r: r["sample_index"])
            t = recs[0]["timestep"] if recs else _t
            evals = recs[0]["num_denoiser_evals"] if recs else 0
            label = (f"level {level:.3f}  identity (no noise)" if t is None
                     else f"level {level:.3f}  t={t}  {evals} evals")
            rows.append((label, [_open(out / r["file"]) for r in recs]))
        inp.ensure()
        sheet = contact_sheet(_to_pil(inp.reference), rows)
        inp.release()
        rel = f"{dirs[inp.index]}/{SHEET_NAME}"
        imageio.save_image(_np01(sheet), out / rel, grayscale=False)
        sheets[inp.index] = rel

    # 5. metadata.json, last and atomically: it lists exactly this run's files.
    meta = {
        "boomerang_version": __version__,
        "command": ["boomerang", *getattr(args, "_argv", [])],
        "settings": {**settings.to_dict(), "batch_size_resolved": batch_size, "threads": threads,
                     "out": str(args.out)},
        "model": info,
        "inputs": [
            {
                "index": inp.index, "file": str(inp.path), "name": inp.name, "size": list(inp.loaded.size),
                "source_mode": inp.loaded.source_mode, "bit_depth": inp.loaded.bit_depth,
                "is_grayscale": inp.loaded.is_grayscale, "had_alpha": inp.loaded.had_alpha,
                "fit": inp.fitted.method, "model_size": [int(inp.fitted.pixels.shape[1]), int(inp.fitted.pixels.shape[0])],
                "folder": dirs[inp.index], "contact_sheet": sheets[inp.index],
            }
            for inp in job.inputs
        ],
        "samples": records,
    }
    out.mkdir(parents=True, exist_ok=True)
    from boomerang.imageio import atomic_write_bytes

    atomic_write_bytes(out / METADATA_NAME, (json.dumps(meta, indent=2, allow_nan=False) + "\n").encode())
    print(f"wrote {len(records)} samples, {len(sheets)} contact sheet(s) and {METADATA_NAME} to {Path(args.out)}",
          file=sys.stderr)
    return 0


def _find_start(job, level: float) -> int:
    for k, (lv, _t) in enumerate(job.starts):
        if lv == level:
            return k
    raise AssertionError(f"level {level} is not one of the job's starts")


def _open(path):
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        return im.copy()


def _to_pil(pixels):
    import numpy as np
    from PIL import Image

    q = np.rint(np.clip(pixels, 0.0, 1.0) * 255).astype(np.uint8)
    return Image.fromarray(q[..., 0] if q.shape[-1] == 1 else q)


def _np01(image):
    import numpy as np

    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def _jsonable(obj):
    """Scheduler configs hold tuples, numpy scalars and lists: make them JSON."""
    import math

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items() if not str(k).startswith("_") or k == "_class_name"}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, bool)) or obj is None:
        return obj
    if isinstance(obj, int):
        return int(obj)
    try:
        f = float(obj)
    except (TypeError, ValueError):
        return str(obj)
    if hasattr(obj, "is_integer") and f.is_integer() and not isinstance(obj, float):
        return int(f)
    return f if math.isfinite(f) else str(f)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
