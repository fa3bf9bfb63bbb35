"""``boomerang sample``: local samples of images, with contact sheets and metadata.json.

The sample task on the shared runner (:mod:`boomerang.tasks.runner`); the API
(:mod:`boomerang.api`) runs the same task in memory. What it supplies: its
flags (IMAGE files and/or folders), a check of every input before the model
loads (:func:`boomerang.inputs.check_inputs`: unreadable files stop the
command, all named with their count in one error line, exit 2, nothing written), seeds by input index
(``seeds.item_seed(seed, i, j)``), output names
``OUT/<image stem>/level<L>_s<jjj>.png`` (``L`` with 3 decimals; with
--timestep ``t<tttt>_s<jjj>.png``, the timestep with 4 digits; ``<stem>_<index>``
folders when stems collide), and at the end one contact sheet per input and
``OUT/metadata.json`` (written last, atomically).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from boomerang.tasks.base import Task, windows_fields
from boomerang.tasks.job import Job, OutputFile

__all__ = ["SampleTask", "SampleState", "DEFAULT_OUT", "METADATA_NAME", "SHEET_NAME"]

#: Output folder of ``boomerang sample`` when --out is not given.
DEFAULT_OUT = "boomerang-out"
#: Name of the metadata file written next to the samples.
METADATA_NAME = "metadata.json"
#: Name of each input's contact sheet (inside the input's folder in --out).
SHEET_NAME = "contact_sheet.png"


@dataclass
class SampleState:
    """What ``sample`` works out once per job: each input's folder in OUT (by input index) and
    the model as recorded in metadata.json (after loading)."""

    folders: dict = field(default_factory=dict)
    model: dict | None = None


class SampleTask(Task):
    """``boomerang sample IMAGE... [--level L[,L...] | --timestep T[,T...]] [options]``."""

    name = "sample"
    help = "local samples of images (the main command)"
    description = (
        "Boomerang local sampling: push each IMAGE to a noise level with the model's own forward "
        "process, then run the reverse process back to an image. Writes one PNG per sample, a "
        f"contact sheet per input and {METADATA_NAME} into --out."
    )
    resumable = False
    defaults: dict = {}
    State = SampleState

    def parser_kwargs(self) -> dict:
        return {"epilog": (
            "Levels map to training timesteps as t = round(level * (T-1)); level 0 returns the input. "
            "Outputs: OUT/<image stem>/level<L>_s<jjj>.png (L with 3 decimals, jjj the sample index; "
            f"t<tttt>_s<jjj>.png with --timestep, e.g. t0250_s000.png), OUT/<image stem>/{SHEET_NAME}, "
            f"OUT/{METADATA_NAME}. "
            "All inputs are read before the model loads: unreadable files stop the command (exit 2), every one named."
        )}

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        from boomerang.tasks.flags import add_sampling_arguments

        p.add_argument("images", nargs="+", metavar="IMAGE", help="image files and/or folders (searched recursively), "
                       "or WebDataset .tar / Parquet shards (files, or folders of them)")
        p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help="output folder (default %(default)s)")
        p.add_argument("--layout", default="auto", choices=("auto", "folder", "webdataset", "parquet"),
                       help="how to read each IMAGE path: auto (default: a .tar / .parquet file, or a folder of "
                            "them with no loose images, is read as shards), folder, webdataset or parquet")
        add_sampling_arguments(p, **self.defaults)

    # -- inputs: every one read and checked before the model loads

    def list_items(self, job: Job) -> None:
        from boomerang import imageio
        from boomerang.errors import SettingError
        from boomerang.tasks.layout import Item

        if not job.items:  # the command line: files and folders (the API gives its items)
            given = [str(p) for p in job.job_settings.inputs]
            if _has_shards(given, job.job_settings.layout):
                job.items = _shard_or_file_items(given, job.job_settings.layout)
                return
            files = imageio.list_image_files(given)
            if not files:
                raise SettingError(
                    f"no image files found in {' '.join(given)} (looked for {', '.join(imageio.IMAGE_SUFFIXES)})"
                )
            job.items = [Item(i, Path(f).as_posix(), Path(f)) for i, f in enumerate(files)]

    def before_load(self, job: Job) -> None:
        from collections import Counter

        from boomerang import imageio
        from boomerang.tasks import job_plan
        from boomerang.inputs import check_inputs

        self.list_items(job)
        sources, bad = _sources(job.items)
        try:
            info = job.model if job.model is not None else job_plan.model_info(job.settings.model)
        except ValueError:
            bad = list(bad)
            for src in sources:  # bad files are named even when the model is also missing
                try:
                    imageio.read_image(src, background=job.settings.background_rgb, pixels=False)
                except imageio.ImageInputError as exc:
                    bad.append(str(exc))
            if bad:
                from boomerang.inputs import unusable_inputs

                raise unusable_inputs(bad) from None
            raise
        if bad:  # a shard member that is not an image: named with every other unusable input
            from boomerang.inputs import unusable_inputs

            for src in sources:
                try:
                    imageio.read_image(src, background=job.settings.background_rgb, pixels=False)
                except imageio.ImageInputError as exc:
                    bad.append(str(exc))
            raise unusable_inputs(bad)
        job.info = info
        job.noise_levels = job_plan.noise_levels(job.settings, info)
        job_plan.check_prompt(job.settings, info)
        job.plans = job_plan.make_plans(job.settings, info, job.noise_levels)
        job.inputs = check_inputs(sources, job.settings, info, thumbnails=job.out is not None)
        stems = [(Path(it.relpath).stem if it.member is not None else it.path.stem if it.path is not None
                  else f"image{it.index}") or f"image{it.index}" for it in job.items]
        counts = Counter(stems)
        job.state.folders = {it.index: (st if counts[st] == 1 else f"{st}_{it.index}")
                             for it, st in zip(job.items, stems)}

    def other_outputs(self, job: Job) -> list[str]:
        return [f"{d}/{SHEET_NAME}" for d in job.state.folders.values()] + [METADATA_NAME]

    def block_size(self, job: Job) -> int:
        from boomerang.batching import resolve_batch_size

        return resolve_batch_size(job)

    def seed(self, job: Job, item, j: int) -> int:
        from boomerang.seeds import item_seed

        return item_seed(job.settings.seed, item.index, j)

    def output_name(self, job: Job, output: OutputFile) -> str:
        folder = job.state.folders[output.item.index]
        level, t = job.noise_levels[output.level_index]
        if job.settings.timestep is not None:
            return f"{folder}/t{t:04d}_s{output.sample:03d}.png"
        return f"{folder}/level{level:.3f}_s{output.sample:03d}.png"

    # -- one row of metadata.json per sample

    def record(self, job: Job, output: OutputFile, plan, result, decoded, pixels) -> dict:
        from boomerang import __version__
        from boomerang.metrics import image_distance, quantize8

        s = job.settings
        model = _model_record(job)
        if result is None:  # the identity of a pixel model: no model call
            from boomerang.tasks.job_plan import identity_scheduler_config

            timestep, alpha_bar, evals, name = None, 1.0, 0, plan.scheduler
            config, schedule = identity_scheduler_config(plan, job.model), plan.schedule
        else:
            timestep, alpha_bar, evals = result.plan.timestep, result.alpha_bar, int(result.num_denoiser_evals)
            name, config, schedule = result.scheduler_name, dict(result.scheduler_config), result.plan.schedule
        q, r = quantize8(pixels), quantize8(decoded.reference)  # no full-size float temporaries
        text = model["takes_prompt"]  # text conditioning only exists for text models; null otherwise
        return {
            "file": output.name,
            "input": str(output.item.path),  # a shard item: the shard file, and its key below
            **({"key": output.item.relpath} if output.item.member is not None else {}),
            "image_index": output.item.index,
            "sample_index": output.sample,
            "seed": self.seed(job, output.item, output.sample),
            "level": job.noise_levels[output.level_index][0],
            "timestep": timestep,
            "alpha_bar": alpha_bar,
            "sigma": plan.sigma,  # flow-matching models: x_t = (1 - sigma) x0 + sigma eps; else null
            "start_snr": plan.start_snr,  # SNR of x_t where noise was added (null: nothing added)
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
            "size": list(decoded.loaded.size),
            **image_distance(q, r),
            **windows_fields(result),
        }

    # -- contact sheets, then metadata.json

    def finish(self, job: Job, records: list[dict], skipped: list[dict]) -> None:
        from boomerang import __version__
        from boomerang.fileio import write_json
        out, s, folders = job.out, job.settings, job.state.folders
        records = [{k: v for k, v in r.items() if k != "_unit"} for r in sorted(records, key=lambda r: r["_unit"])]
        sheets = _write_contact_sheets(job, records)
        meta = {
            "boomerang_version": __version__,
            "command": ["boomerang", *job.job_settings.command],
            "settings": {**s.to_dict(), "batch_size_resolved": min(job.block_size, len(job.outputs)),
                         "threads": job.threads, "out": str(job.job_settings.out)},
            "model": _model_record(job),
            **({"default_model": job.default_model} if job.default_model is not None else {}),
            "inputs": [
                {
                    "index": inp.index, "file": str(inp.path if inp.path is not None else job.items[inp.index].path),
                    "name": inp.name, "size": list(inp.loaded.size),
                    "source_mode": inp.loaded.source_mode, "bit_depth": inp.loaded.bit_depth,
                    "is_grayscale": inp.loaded.is_grayscale, "had_alpha": inp.loaded.had_alpha,
                    "icc_profile": inp.loaded.icc_profile, "decoded_scale": inp.loaded.decoded_scale,
                    "fit": inp.fit_method, "model_size": [int(inp.model_shape[1]), int(inp.model_shape[0])],
                    "folder": folders[inp.index], "contact_sheet": sheets[inp.index],
                }
                for inp in job.inputs
            ],
            "samples": records,
        }
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / METADATA_NAME, meta)
        print(f"wrote {len(records)} sample{'' if len(records) == 1 else 's'}, {len(sheets)} contact sheet(s) and "
              f"{METADATA_NAME} to {Path(job.job_settings.out)}", file=sys.stderr)


def _has_shards(given: list[str], layout: str) -> bool:
    from boomerang.tasks.shards import SHARD_LAYOUTS, detect

    return layout in SHARD_LAYOUTS or layout == "auto" and any(Path(p).exists() and detect(Path(p)) for p in given)


def _shard_or_file_items(given: list[str], layout: str) -> list:
    """The items of IMAGE paths of which some are shards, in the order given: a shard file or
    folder of shards gives its items (key = ``relpath``, :mod:`boomerang.tasks.shards`), any other
    path its image files (``imageio.list_image_files``)."""
    import dataclasses

    from boomerang import imageio
    from boomerang.errors import SettingError
    from boomerang.tasks.layout import Item
    from boomerang.tasks.shards import SHARD_LAYOUTS, ShardItems, detect

    items: list = []
    for p in map(Path, given):
        if not p.exists():
            raise SettingError(f"`images` {p}: no such file or folder. Check the path (quote it if it contains spaces).")
        kind = layout if layout in SHARD_LAYOUTS else detect(p)
        if kind is not None:
            items += [dataclasses.replace(it, index=len(items) + n) for n, it in enumerate(ShardItems(p, kind))]
        else:
            items += [Item(len(items) + n, Path(f).as_posix(), Path(f)) for n, f in enumerate(imageio.list_image_files([str(p)]))]
    if not items:
        raise SettingError(f"no image files found in {' '.join(given)} (looked for {', '.join(imageio.IMAGE_SUFFIXES)})")
    return items


def _sources(items) -> tuple[list, list[str]]:
    """What ``check_inputs`` reads of each item (a shard item: its image, opened lazily) and the
    messages of shard items whose bytes are not an image."""
    from boomerang.imageio import ImageInputError
    from boomerang.tasks.shards import open_source

    sources, bad = [], []
    for it in items:
        if it.member is None:
            sources.append(it.path if it.path is not None else it.source)
            continue
        try:
            sources.append(open_source(it))
        except ImageInputError as exc:
            bad.append(str(exc))
    return sources, bad


def _write_contact_sheets(job: Job, records: list[dict]) -> dict:
    """One contact sheet per input (``boomerang.sheet.contact_sheet``: a row per noise level), from the
    written samples and the thumbnail the check kept (the input is not decoded again); returns
    ``{input index: the sheet's path relative to OUT}``."""
    import io

    import numpy as np
    from PIL import Image

    from boomerang.imageio import save_image
    from boomerang.sheet import contact_sheet, thumbnail

    out, s = job.out, job.settings
    level_of = {o.name: o.level_index for o in job.outputs}
    by_row: dict[tuple[int, int], list[dict]] = {}
    for r in records:
        by_row.setdefault((r["image_index"], level_of[r["file"]]), []).append(r)

    def sample_tile(path):
        with Image.open(path) as im:
            im.load()
            small = thumbnail(im)  # large samples are held at tile size only
            return im.copy() if small is im else small

    sheets = {}
    for inp in job.inputs:
        rows = []
        for k, (level, asked_t) in enumerate(job.noise_levels):
            recs = sorted(by_row.get((inp.index, k), []), key=lambda r: r["sample_index"])
            t = recs[0]["timestep"] if recs else asked_t
            evals = recs[0]["num_denoiser_evals"] if recs else 0
            asked = f"timestep {asked_t}" if s.timestep is not None else f"level {level:.3f}"  # what was asked
            label = (f"{asked}  identity (no noise)" if t is None
                     else f"{asked}  t={t}  {evals} eval{'' if evals == 1 else 's'}")
            rows.append((label, [sample_tile(out / r["file"]) for r in recs]))
        with Image.open(io.BytesIO(inp.thumbnail)) as im:
            im.load()
            sheet = contact_sheet(im, rows, size=tuple(inp.loaded.size))
        rel = f"{job.state.folders[inp.index]}/{SHEET_NAME}"
        save_image(np.asarray(sheet.convert("RGB"), dtype=np.float32) / 255.0, out / rel, grayscale=False)
        sheets[inp.index] = rel
    return sheets


def _model_record(job: Job) -> dict:
    """The model as metadata.json records it (worked out once per job)."""
    if job.state.model is None:
        from boomerang.tasks.blocks import model_description

        job.state.model = model_description(job)
    return job.state.model


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
