"""``boomerang sample``: local samples of images, with contact sheets and metadata.json.

The sample task on the shared runner (:mod:`boomerang.tasks.runner`). What it
supplies: its flags (IMAGE files and/or folders), a check of every input
before the model loads (``boomerang.jobs.prepare``: one unreadable file stops
the command, exit 2, nothing written), seeds by input index
(``seeds.item_seed(seed, i, j)``), output names
``OUT/<image stem>/level<L>_s<j>.png`` (``t<t>_s<j>.png`` with --timestep;
``<stem>_<index>`` folders when stems collide), and at the end one contact
sheet per input and ``OUT/metadata.json`` (written last, atomically).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from boomerang.tasks.base import Context, Task, Unit, add_sampling_arguments

__all__ = ["SampleTask", "DEFAULT_OUT", "METADATA_NAME", "SHEET_NAME"]

#: Output folder of ``boomerang sample`` when --out is not given.
DEFAULT_OUT = "boomerang-out"
#: Name of the metadata file written next to the samples.
METADATA_NAME = "metadata.json"
#: Name of each input's contact sheet (inside the input's folder in --out).
SHEET_NAME = "contact_sheet.png"


class SampleTask(Task):
    """``boomerang sample IMAGE... [--level L[,L...] | --timestep T[,T...]] [options]``."""

    name = "sample"
    help = "local samples of images (the main job)"
    description = (
        "Boomerang local sampling: push each IMAGE to a noise level with the model's own forward "
        "process, then run the reverse process back to an image. Writes one PNG per sample, a "
        f"contact sheet per input and {METADATA_NAME} into --out."
    )
    resumable = False
    defaults: dict = {}

    def parser_kwargs(self) -> dict:
        return {"epilog": (
            "Levels map to training timesteps as t = round(level * (T-1)); level 0 returns the input. "
            f"Outputs: OUT/<image stem>/level<L>_s<j>.png (t<t>_s<j>.png with --timestep), "
            f"OUT/<image stem>/{SHEET_NAME}, OUT/{METADATA_NAME}. "
            "All inputs are read before the model loads: one unreadable file stops the command (exit 2)."
        )}

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("images", nargs="+", metavar="IMAGE", help="image files and/or folders (searched recursively)")
        p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help="output folder (default %(default)s)")
        add_sampling_arguments(p, **self.defaults)

    # -- inputs: every one read and checked before the model loads

    def before_load(self, ctx: Context, args) -> None:
        from collections import Counter

        from boomerang import imageio, jobs
        from boomerang.errors import SettingError
        from boomerang.tasks.layout import Item

        files = imageio.list_image_files(args.images)
        if not files:
            raise SettingError(
                f"no image files found in {' '.join(args.images)} (looked for {', '.join(imageio.IMAGE_SUFFIXES)})"
            )
        job = jobs.prepare(files, ctx.settings, stream=True)  # inputs decoded again per block: memory stays flat
        ctx.info, ctx.starts, ctx.plans = job.info, job.starts, job.plans
        ctx.items = [Item(inp.index, Path(inp.path).as_posix(), Path(inp.path)) for inp in job.inputs]
        stems = [(inp.path.stem if inp.path is not None else f"image{inp.index}") or f"image{inp.index}"
                 for inp in job.inputs]
        counts = Counter(stems)
        ctx.extra.update(
            job=job, input_paths=list(args.images),
            dirs={inp.index: (st if counts[st] == 1 else f"{st}_{inp.index}") for inp, st in zip(job.inputs, stems)},
        )

    def other_outputs(self, ctx: Context) -> list[str]:
        return [f"{d}/{SHEET_NAME}" for d in ctx.extra["dirs"].values()] + [METADATA_NAME]

    def block_size(self, ctx: Context) -> int:
        from boomerang.batching import resolve_batch_size

        job = ctx.extra["job"]
        job.model = ctx.model
        return resolve_batch_size(job)

    def seed(self, ctx: Context, item, j: int) -> int:
        from boomerang.seeds import item_seed

        return item_seed(ctx.settings.seed, item.index, j)

    def output_name(self, ctx: Context, unit: Unit) -> str:
        folder = ctx.extra["dirs"][unit.item.index]
        level, t = ctx.starts[unit.start]
        if ctx.settings.timestep is not None:
            return f"{folder}/t{t:04d}_s{unit.sample:03d}.png"
        return f"{folder}/level{level:.3f}_s{unit.sample:03d}.png"

    # -- one row of metadata.json per sample

    def record(self, ctx: Context, unit: Unit, plan, output, read, pixels) -> dict:
        from boomerang import __version__
        from boomerang.metrics import image_distance, quantize8

        s = ctx.settings
        model = ctx.extra.get("model_info") or ctx.extra.setdefault("model_info", _model_info(ctx))
        if output is None:  # the identity of a pixel model: no model call
            from boomerang.jobs import identity_scheduler_config

            timestep, alpha_bar, evals, name, config = None, 1.0, 0, s.scheduler, identity_scheduler_config(plan, ctx.model)
            schedule = plan.schedule
        else:
            timestep, alpha_bar, evals = output.plan.timestep, output.alpha_bar, int(output.num_denoiser_evals)
            name, config, schedule = output.scheduler_name, dict(output.scheduler_config), output.plan.schedule
        q, r = quantize8(pixels), quantize8(read.reference)  # no full-size float temporaries
        text = model["takes_prompt"]  # text conditioning only exists for text models; null otherwise
        return {
            "file": unit.name,
            "input": str(unit.item.path),
            "image_index": unit.item.index,
            "sample_index": unit.sample,
            "seed": self.seed(ctx, unit.item, unit.sample),
            "level": ctx.starts[unit.start][0],
            "timestep": timestep,
            "alpha_bar": alpha_bar,
            "num_denoiser_evals": evals,
            "scheduler": name,
            "scheduler_config": _jsonable(config),
            "schedule": schedule,
            "from_noise": s.from_noise,
            "eta": s.eta,
            "steps": s.steps,
            "model": model["id"],
            "weights_sha256": model["weights_sha256"],
            "prompt": s.prompt if text else None,
            "negative_prompt": s.negative_prompt if text else None,
            "guidance_scale": s.guidance_scale if text else None,
            "dtype": s.dtype,
            "device": s.device,
            "boomerang_version": __version__,
            "size": list(read.loaded.size),
            **image_distance(q, r),
        }

    # -- contact sheets, then metadata.json

    def finish(self, ctx: Context, records: list[dict], skipped: list[dict]) -> None:
        import json

        from boomerang import __version__
        from boomerang.imageio import atomic_write_bytes, save_image
        from boomerang.sheet import contact_sheet

        job, dirs, out, s = ctx.extra["job"], ctx.extra["dirs"], ctx.out, ctx.settings
        # The order samples came in before the runner: start, then shape group (in order of first
        # appearance), then image, then sample.
        shapes: dict = {}
        for inp in job.inputs:
            shapes.setdefault(inp.fitted.pixels.shape, len(shapes))
        rank = {inp.index: shapes[inp.fitted.pixels.shape] for inp in job.inputs}
        start_of = {u.index: u.start for u in ctx.extra["units"]}
        records = sorted(records, key=lambda r: (start_of[r["_unit"]], rank[r["image_index"]], r["image_index"],
                                                  r["sample_index"]))
        records = [{k: v for k, v in r.items() if k != "_unit"} for r in records]

        by_row: dict[tuple[int, int], list[dict]] = {}
        for r in records:
            by_row.setdefault((r["image_index"], _find_start(ctx, r["level"])), []).append(r)
        sheets = {}
        for inp in job.inputs:
            rows = []
            for k, (level, _t) in enumerate(ctx.starts):
                recs = sorted(by_row.get((inp.index, k), []), key=lambda r: r["sample_index"])
                t = recs[0]["timestep"] if recs else _t
                evals = recs[0]["num_denoiser_evals"] if recs else 0
                asked = f"timestep {_t}" if s.timestep is not None else f"level {level:.3f}"  # what was asked
                label = (f"{asked}  identity (no noise)" if t is None
                         else f"{asked}  t={t}  {evals} eval{'' if evals == 1 else 's'}")
                rows.append((label, [_open(out / r["file"]) for r in recs]))
            inp.ensure()
            sheet = contact_sheet(_to_pil(inp.reference), rows)
            inp.release()
            rel = f"{dirs[inp.index]}/{SHEET_NAME}"
            save_image(_np01(sheet), out / rel, grayscale=False)
            sheets[inp.index] = rel

        args = ctx.extra["args"]
        meta = {
            "boomerang_version": __version__,
            "command": ["boomerang", *(getattr(args, "_argv", None) or [])],
            "settings": {**s.to_dict(), "batch_size_resolved": min(ctx.block_size, len(ctx.extra["units"])), "threads": ctx.extra.get("threads"),
                         "out": str(args.out)},
            "model": ctx.extra.setdefault("model_info", _model_info(ctx)),
            "inputs": [
                {
                    "index": inp.index, "file": str(inp.path), "name": inp.name, "size": list(inp.loaded.size),
                    "source_mode": inp.loaded.source_mode, "bit_depth": inp.loaded.bit_depth,
                    "is_grayscale": inp.loaded.is_grayscale, "had_alpha": inp.loaded.had_alpha,
                    "icc_profile": inp.loaded.icc_profile, "decoded_scale": inp.loaded.decoded_scale,
                    "fit": inp.fitted.method,
                    "model_size": [int(inp.fitted.pixels.shape[1]), int(inp.fitted.pixels.shape[0])],
                    "folder": dirs[inp.index], "contact_sheet": sheets[inp.index],
                }
                for inp in job.inputs
            ],
            "samples": records,
        }
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / METADATA_NAME, (json.dumps(meta, indent=2, allow_nan=False) + "\n").encode())
        print(f"wrote {len(records)} sample{'' if len(records) == 1 else 's'}, {len(sheets)} contact sheet(s) and {METADATA_NAME} to {Path(args.out)}",
              file=sys.stderr)


def _model_info(ctx: Context) -> dict:
    from boomerang.tasks.blocks import model_description

    return model_description(ctx)


def _find_start(ctx: Context, level: float) -> int:
    for k, (lv, _t) in enumerate(ctx.starts):
        if lv == level:
            return k
    raise AssertionError(f"level {level} is not one of the job's starts")


def _open(path):
    from PIL import Image

    from boomerang.sheet import thumbnail

    with Image.open(path) as im:
        im.load()
        small = thumbnail(im)  # large samples are held at tile size only
        return im.copy() if small is im else small


def _to_pil(pixels):
    from PIL import Image

    from boomerang.metrics import quantize8

    q = quantize8(pixels)  # float or uint8 (large inputs): no full-size float temporaries
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
