"""``boomerang enhance``: perceptual resolution enhancement of an image or a folder (issue 11).

The enhance task on the shared runner (:mod:`boomerang.tasks.runner`): folders
get resume, skipped files, the report, progress and ``--engine ray`` from it.
What it supplies:

* flags ``--scale``, ``--tile-size``, ``--tile-overlap``, ``--tile-batch``,
  ``--consistency``, ``--colour-fix``, ``--upsampler`` (checked before the
  model loads, against the model's JSON configs too); ``IMAGE_OR_DIR...`` is
  one or more image files (each decoded before the model loads: a bad file is
  one error, exit 2) and/or folders (searched recursively; a bad file in a
  folder is skipped), as ``boomerang sample`` takes them;
* ``fit``: the model gets the input itself (in its channels), not a resized
  copy: :func:`boomerang.enhance.image.enhance_images` upsamples it and runs
  the windows; a level-0 output is the bicubic (or Lanczos) upsampling;
* ``sample_batch``: :func:`~boomerang.enhance.image.enhance_images` with the
  runner's plan and per-item generators;
* one image per block by default (memory is bounded by ``--tile-batch``).

Outputs are ``OUT/<input's relative path>.png`` at exactly round(scale x
size), plus ``OUT/metadata.jsonl`` with the scale and options per output. The
relative path is the one inside the folder for one folder (its layout read as
for every dataset command), the file's name for one file, and for several paths
the path from the deepest folder they share (a file's folder, or the folder
itself).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from boomerang.tasks.base import Task
from boomerang.tasks.flags import add_job_arguments, add_sampling_arguments
from boomerang.tasks.job import Job, OutputFile
from boomerang.tasks.layout import LAYOUTS
from boomerang.scheduler_names import CUSTOM_GRID_SCHEDULERS, DISTILLED_SCHEDULERS, FLOW_SCHEDULERS

#: The schedulers enhance takes (every one that follows the exact grid), and how messages list them.
ENHANCE_SCHEDULERS = tuple(dict.fromkeys(CUSTOM_GRID_SCHEDULERS + DISTILLED_SCHEDULERS + FLOW_SCHEDULERS))
ENHANCE_SCHEDULERS_TEXT = f"{', '.join(ENHANCE_SCHEDULERS)} (lcm: Latent Consistency Models; euler-stochastic: flow models)"

__all__ = ["EnhanceTask", "EnhanceOptions", "scan_paths"]


@dataclass(frozen=True)
class EnhanceOptions:
    """The options of ``enhance`` (checked by ``enhance.options.check_enhance_args``): the scale,
    the windows (``None``: the model's default), the windows per model call, ILVR
    (``consistency``) and for what fraction of the reverse steps (``consistency_until``), the
    colour fix and the upsampling filter."""

    scale: float = 4.0
    tile_size: int | None = None
    tile_overlap: int | None = None
    tile_batch: int = 8
    consistency: bool = False
    consistency_until: float = 1.0
    colour_fix: bool = False
    upsampler: str = "bicubic"


@dataclass
class EnhanceState:
    """(tile_size, tile_overlap) in image pixels as used, worked out once per job."""

    windows: tuple | None = None


def _check_output_pixels(name: str, height: int, width: int, scale: float, error) -> None:
    """Refuse outputs above ``imageio.DEFAULT_MAX_PIXELS`` (50 MP), raising ``error`` (a folder job skips the file)."""
    from boomerang.enhance.options import output_size
    from boomerang.imageio import DEFAULT_MAX_PIXELS

    from boomerang.errors import SettingError

    h, w = output_size(height, width, scale)
    flag = "`scale`" if issubclass(error, SettingError) else "--scale"  # a skipped file's reason is plain text
    if h * w > DEFAULT_MAX_PIXELS:
        raise error(f"{name}: enhancing {width}x{height} by {flag} {scale:g} gives {w}x{h} = {h * w / 1e6:.0f} MP, "
                    f"more than the {DEFAULT_MAX_PIXELS / 1e6:.0f} MP limit; use a smaller scale or crop the image first")


class _UnresizedInput:
    """``DecodedInput.fitted`` of enhance: the input as the sampler takes it (``pixels``, float32
    (H, W, C) in [0, 1]); outputs already have the output size, so ``restore`` is the identity."""

    method = "enhance"

    def __init__(self, pixels):
        self.pixels = pixels

    def restore(self, out, dtype=None):
        """``out`` as it is (float32), or its 8-bit values for ``dtype=np.uint8``."""
        import numpy as np

        from boomerang.metrics import quantize8

        out = np.asarray(out, dtype=np.float32)
        return quantize8(out) if dtype is not None and np.dtype(dtype) == np.uint8 else out


class EnhanceTask(Task):
    """``boomerang enhance IMAGE_OR_DIR... --scale S --level L [...] --out OUT``."""

    name = "enhance"
    help = "perceptual resolution enhancement: upsample, then Boomerang in blended windows"
    description = (
        "Upsample each image by --scale with Pillow (bicubic), then run Boomerang at a small --level so "
        "the model restores plausible detail, in overlapping windows blended at every reverse step "
        "(MultiDiffusion). --consistency keeps the result faithful to the input (ILVR). See docs/enhance.md."
    )
    defaults = {"num_samples": 1, "level": 0.25}
    Options = EnhanceOptions
    State = EnhanceState

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("input", nargs="+", metavar="IMAGE_OR_DIR",
                       help="image files and/or folders (searched recursively), as for 'boomerang sample'")
        p.add_argument("--out", required=True, metavar="OUT_DIR",
                       help="output folder (never inside an input folder); rerunning continues the job")
        p.add_argument("--layout", default="auto", choices=LAYOUTS,
                       help="input layout of a single folder or shard (default auto: also recognises a .tar / "
                            ".parquet file or a folder of them); several paths: every folder is searched "
                            "recursively (layout folder)")
        add_job_arguments(p)
        p.add_argument("--scale", default=4, help="upsampling factor in [1, 64], e.g. 4, 8 or 2.5 (default %(default)s); "
                       "outputs are round(scale x side)")
        p.add_argument("--tile-size", default=None, metavar="S",
                       help="window side in pixels (pixel models: their native size, the default; latent: 512)")
        p.add_argument("--tile-overlap", default=None, metavar="O", help="window overlap in pixels (default S/4)")
        p.add_argument("--tile-batch", default=8, metavar="N", help="windows per model call (default %(default)s); "
                       "bounds memory, never changes a result")
        p.add_argument("--consistency", action="store_true",
                       help="ILVR: box-downsampling the output gives the input back")
        p.add_argument("--consistency-until", default=None, metavar="F",
                       help="fidelity knob in [0, 1]: ILVR during the first fraction F of the reverse steps only "
                            "(implies --consistency; 1 = --consistency, 0 = none; lower F: sharper, less faithful)")
        p.add_argument("--colour-fix", action="store_true",
                       help="match the output's low-frequency colour to the upsampled input")
        p.add_argument("--upsampler", default="bicubic", choices=("bicubic", "lanczos"),
                       help="Pillow filter of the naive upsampling (default %(default)s)")
        add_sampling_arguments(p, **self.defaults)
        from boomerang.tasks.flags import restate_help

        restate_help(  # what settings_from_args accepts of the shared flags
            p, scheduler=f"a scheduler that follows the exact grid: {', '.join(ENHANCE_SCHEDULERS)} (lcm: Latent "
                         "Consistency Models; euler-stochastic: flow models; default %(default)s)",
            schedule="exact only: enhance runs on the exact Boomerang grid (default %(default)s)",
            from_noise="refused: enhance always starts from the upsampled image",
        )

    def settings_from_args(self, args):
        """The shared settings, after what enhance cannot take: ``--from-noise`` (checked first, so
        that no message suggests a ``--level`` that would then be refused), a ``--schedule`` other
        than exact, and a scheduler that cannot follow the exact grid (not in ``CUSTOM_GRID_SCHEDULERS``,
        ``DISTILLED_SCHEDULERS`` or ``FLOW_SCHEDULERS``: pndm, kdpm2, kdpm2-ancestral). ``lcm`` and
        ``euler-stochastic`` run, each step's ILVR (``--consistency``) at the timestep / sigma the step
        lands on; whether the model takes the scheduler is checked when the job is planned."""
        from boomerang.errors import SettingError
        from boomerang.scheduler_names import AUTO

        if args.from_noise:
            raise SettingError("enhance starts from the upsampled image, never from pure noise: drop `from_noise` "
                               "(`level` sets how much noise is added, up to 1)")
        if args.schedule != "exact":
            raise SettingError("enhance runs the exact schedule from the upsampled image: drop `schedule`")
        s = super().settings_from_args(args)  # the scheduler's name is checked there
        if s.scheduler != AUTO and s.scheduler not in ENHANCE_SCHEDULERS:
            raise SettingError(f"`scheduler` {s.scheduler} cannot follow the exact grid enhance runs on; use one of "
                               f"{ENHANCE_SCHEDULERS_TEXT}")
        return s

    def options_from_args(self, args) -> EnhanceOptions:
        from boomerang.enhance.options import check_enhance_args

        a = check_enhance_args(scale=args.scale, level=0.0, tile_size=args.tile_size, tile_overlap=args.tile_overlap,
                               tile_batch=args.tile_batch, upsampler=args.upsampler,
                               consistency_until=args.consistency_until)
        until = a.consistency_until
        return EnhanceOptions(scale=a.scale, tile_size=a.tile_size, tile_overlap=a.tile_overlap, tile_batch=a.tile_batch,
                              consistency=bool(args.consistency) or until is not None,
                              consistency_until=1.0 if until is None else until, colour_fix=bool(args.colour_fix),
                              upsampler=a.upsampler)

    def scan(self, job: Job):
        """One folder through the runner's layouts; one image file as a one-item job; several
        paths with :func:`scan_paths`. Every named file is decoded here, before the model loads."""
        from boomerang.tasks.layout import Item, Layout, scan

        from boomerang.tasks.shards import SHARD_LAYOUTS, detect

        paths = [Path(p) for p in job.job_settings.inputs]
        scale = float(job.options.scale)
        if len(paths) > 1:
            return scan_paths(paths, job.job_settings.layout, scale)
        path, layout = paths[0], job.job_settings.layout
        if path.exists() and (layout in SHARD_LAYOUTS or layout == "auto" and detect(path)):
            return super().scan(job)  # WebDataset / Parquet shards, mirrored shard for shard
        if path.is_file():
            _check_file(path, scale)
            return Layout("file", path.parent, [Item(0, path.name, path)])
        return scan(path, job.job_settings.layout)

    def before_load(self, job: Job) -> None:
        from boomerang.enhance.image import window_settings
        from boomerang.tasks.job_plan import model_info

        job.info = model_info(job.settings.model)
        o = job.options
        window_settings(job.info, o.tile_size, o.tile_overlap)  # e.g. a tile size the pixel model cannot take

    def block_size(self, job: Job) -> int:
        return int(job.settings.batch_size or 1)

    def fit(self, job: Job, loaded):
        from boomerang.enhance.resample import upsample
        from boomerang.enhance.options import output_size
        from boomerang.imageio import to_model_channels

        from boomerang.imageio import ImageInputError

        x = to_model_channels(loaded.pixels, int(job.model.image_channels))
        _check_output_pixels(loaded.name, x.shape[0], x.shape[1], job.options.scale, ImageInputError)
        h, w = output_size(x.shape[0], x.shape[1], job.options.scale)
        if (h, w) == x.shape[:2] and x.size and 0.0 <= float(x.min()) and float(x.max()) <= 1.0:
            return x, _UnresizedInput(x)  # scale 1: the upsampling is the input itself (a copy, clipped): no copy
        return upsample(x, h, w, job.options.upsampler), _UnresizedInput(x)

    def sample_batch(self, job: Job, x0, generators, plan, prompts, progress=None):
        """The windows' sampler (``enhance_images``); it takes no per-step ``progress``: the bar moves per image."""
        import numpy as np

        from boomerang.enhance.image import enhance_images

        from boomerang.tasks.journal import job_scratch

        o, s = dataclasses.asdict(job.options), job.settings
        work = job_scratch(job)  # large images' x_t files: OUT/.job/scratch (emptied when the job starts again)
        out = [None] * len(generators)
        groups: dict = {}
        for i in range(len(generators)):
            groups.setdefault(s.prompt if prompts is None else prompts[i], []).append(i)
        for prompt, idx in groups.items():
            res = enhance_images(
                job.model, [x0[i] for i in idx], scale=o["scale"], level=plan.level, plan=plan,
                generators=[generators[i] for i in idx], steps=s.steps, scheduler=plan.scheduler, eta=s.eta,
                tile_size=o["tile_size"], tile_overlap=o["tile_overlap"], tile_batch=o["tile_batch"],
                consistency=o["consistency"], consistency_until=o["consistency_until"], colour_fix=o["colour_fix"],
                upsampler=o["upsampler"],
                prompt=prompt or "", negative_prompt=s.negative_prompt, guidance_scale=s.guidance_scale, work_dir=work,
            )
            for i, r in zip(idx, res):
                out[i] = r.pixels
        return (np.stack(out) if len(out) > 1 else out[0][None]), None  # one image: no image-sized copy

    def plan_shape(self, job: Job, image_shape):
        """A size-dependent model (FLUX) is planned for one window of the upsampled image: the
        transformer sees (tile_size x tile_size) pixels, or the whole output when it is smaller."""
        from boomerang.enhance.options import output_size

        c, h, w = image_shape
        ho, wo = output_size(h, w, job.options.scale)
        tile, _ = _windows(job)
        return (c, min(tile, ho), min(tile, wo))

    def record(self, job: Job, output: OutputFile, plan, result, decoded, pixels) -> dict:
        row = super().record(job, output, plan, result, decoded, pixels)
        h, w = pixels.shape[:2]
        tile, overlap = _windows(job)
        return row | {"width": int(w), "height": int(h), **dataclasses.asdict(job.options), "tile_size": tile,
                      "tile_overlap": overlap}


def _check_file(path: Path, scale: float) -> None:
    """A named input file, before the model loads: a too large output (from the header, before
    decoding) or an unreadable file is one error naming it."""
    from PIL import Image

    from boomerang.errors import SettingError
    from boomerang.imageio import read_image

    try:
        with Image.open(path) as im:  # the header only: refuse a too large output before decoding
            _check_output_pixels(path.name, im.size[1], im.size[0], scale, SettingError)
    except (OSError, ValueError) as exc:
        if isinstance(exc, SettingError):
            raise
    read_image(path)  # a bad file: one error naming it, before the model loads


def scan_paths(paths, layout: str, scale: float):
    """The items of several ``IMAGE_OR_DIR`` paths, as ``boomerang sample`` takes them.

    Files are taken as named (each checked by :func:`_check_file`: one error naming it); folders
    are searched recursively (``imageio.list_image_files``: image suffixes, hidden names skipped;
    an unreadable file in a folder is skipped later, as in any folder job). The layout's root is
    the deepest folder the paths share (a file's folder, or the folder itself), so each item's
    ``relpath`` (its output name and its seed) is its path from there; items are sorted by it
    and a file reached twice is taken once.

    Args:
        paths: two or more files and/or folders.
        layout: ``--layout``; only ``auto`` and ``folder`` (several paths have no class
            folders or imagefolder metadata of their own).
        scale: the upsampling factor (a named file whose output would be too large is refused).

    Returns:
        ``boomerang.tasks.layout.Layout`` of kind ``paths``.

    Raises:
        SettingError: a path that does not exist, another layout, or no image file at all.
        ImageInputError: a named file that cannot be read.
    """
    import os

    from boomerang.errors import SettingError
    from boomerang.imageio import IMAGE_SUFFIXES, list_image_files
    from boomerang.tasks.layout import Item, Layout

    if layout not in ("auto", "folder"):
        raise SettingError(f"`layout` {layout} reads one folder; with several paths every folder is searched "
                           "recursively: drop `layout` or give one folder")
    from boomerang.tasks.shards import detect

    for p in paths:
        if not p.exists():
            raise SettingError(f"`input` {p}: no such file or folder. Check the path (quote it if it contains spaces).")
        if p.is_file() and detect(p):
            raise SettingError(f"`input` {p} is a {detect(p)} shard: give the shard, or their folder, as the only input")
    absolute = [Path(os.path.abspath(p)) for p in paths]  # as named: symlinks are not followed
    root = Path(os.path.commonpath([p if p.is_dir() else p.parent for p in absolute]))
    by_rel: dict[str, Path] = {}
    for p, a in zip(paths, absolute):
        if a.is_dir():
            found = [Path(os.path.abspath(f)) for f in list_image_files(a)]
        else:
            _check_file(p, scale)
            found = [a]
        for f in found:
            by_rel.setdefault(f.relative_to(root).as_posix(), f)
    if not by_rel:
        raise SettingError(f"no image files found in {' '.join(map(str, paths))} "
                           f"(looked for {', '.join(IMAGE_SUFFIXES)})")
    items = [Item(i, rel, by_rel[rel]) for i, rel in enumerate(sorted(by_rel))]
    return Layout("paths", root, items)


def _windows(job: Job) -> tuple[int, int]:
    """(tile_size, tile_overlap) in image pixels as used, defaults resolved
    (``enhance.image.window_settings``; a latent model's windows times its VAE factor)."""
    if job.state.windows is None:
        from boomerang.enhance.image import window_settings

        model = job.model if job.model is not None else job.info
        tile, overlap = window_settings(model, job.options.tile_size, job.options.tile_overlap)
        f = int(model.space_factor)
        job.state.windows = (tile * f, overlap * f)
    return job.state.windows
