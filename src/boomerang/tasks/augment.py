"""``boomerang augment``: an augmented training set, K Boomerang samples per image and level.

The augment task on the shared runner (:mod:`boomerang.tasks.runner`: layouts,
resume, skipped files, report, seeds by relative path, ``--engine ray``). What
it supplies:

* ``--samples-per-image K`` (the shared ``--num-samples``; default 4) and
  ``--include-originals``; ``--from-noise`` is refused (a global sample is not
  a sample *of* its source, so it must not carry the source's label);
* output names from the cache layout (:mod:`boomerang.augment.cache`):
  ``OUT/level<L>/<relpath stem>_s<j>.png``, one sample set per level;
* at the end, in every level folder: the input's metadata format
  (``metadata.jsonl``, or ``metadata.csv`` when the input had one) with one row
  per sample carrying the source's columns (label, caption, ...), the manifest
  ``augment.jsonl`` that :class:`boomerang.augment.BoomerangAugmented` reads,
  and with ``--include-originals`` the originals, hard-linked where the file
  system allows, else copied, with their own rows.

Each level folder is then a ready-to-train dataset in the input's layout.
"""

from __future__ import annotations

import argparse
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from boomerang.tasks.base import Task
from boomerang.tasks.job import Job, OutputFile

__all__ = ["AugmentTask", "AugmentOptions"]


@dataclass(frozen=True)
class AugmentOptions:
    """The options of ``augment``: ``include_originals`` puts each original beside its samples
    in every level folder."""

    include_originals: bool = False


class AugmentTask(Task):
    """``boomerang augment IN_DIR --level 0.3 --samples-per-image 4 --out OUT_DIR [--include-originals]``."""

    name = "augment"
    help = "an augmented training set: K local samples per image, one sample set per level"
    description = (
        "Data augmentation with Boomerang local samples: for every image of IN_DIR (a folder, class folders, "
        "or metadata.jsonl/.csv), K samples per level, written to OUT_DIR/level<L>/ in the input's layout "
        "with labels and captions carried, plus augment.jsonl (the manifest boomerang.augment.BoomerangAugmented "
        "reads). Resumable; unreadable files are skipped and listed in OUT_DIR/report.json."
    )
    defaults: dict = {"num_samples": 4}
    Options = AugmentOptions

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--samples-per-image", default=None, metavar="K",
                            help=f"samples per image and level (default {self.defaults['num_samples']}; "
                                 "the same as --num-samples)")
        parser.add_argument("--include-originals", action="store_true",
                            help="put each original beside its samples in every level folder "
                                 "(hard-linked where possible, else copied)")
        from boomerang.tasks.flags import restate_help

        restate_help(parser, from_noise="refused: a sample from pure noise is not a sample of its image and "
                                        "could not carry its label")

    def settings_from_args(self, args: argparse.Namespace):
        from boomerang.errors import SettingError
        from boomerang.tasks.flags import samples_per_image, settings_from_args

        k = samples_per_image(args, self.defaults["num_samples"])  # errors name the flag that was given
        if args.from_noise:
            raise SettingError(
                "augment makes local samples of each image; `from_noise` would ignore the images, "
                "so the samples could not carry their labels (drop it, or use a level such as 0.3)"
            )
        return settings_from_args(args) if k is None else settings_from_args(args, num_samples=k)

    def options_from_args(self, args: argparse.Namespace) -> AugmentOptions:
        return AugmentOptions(include_originals=bool(args.include_originals))

    # -- names: the cache layout, one folder per level

    def _level_dir(self, job: Job, level_index: int) -> str:
        from boomerang.augment.cache import level_dirname

        return level_dirname(job.noise_levels[level_index][0])

    def output_name(self, job: Job, output: OutputFile) -> str:
        from boomerang.augment.cache import sample_relpath

        return f"{self._level_dir(job, output.level_index)}/{sample_relpath(output.item.relpath, output.sample)}"

    def other_outputs(self, job: Job) -> list[str]:
        from boomerang.augment.cache import MANIFEST_NAME
        from boomerang.errors import SettingError

        from boomerang.tasks.shards import is_sharded

        if is_sharded(job):  # OUT/level<L>/<input shard>: one set of shards per level
            return super().other_outputs(job)
        fmt = self._metadata_format(job)
        names = []
        samples = {o.name for o in job.outputs} if job.options.include_originals else set()
        for k in range(len(job.noise_levels)):
            d = self._level_dir(job, k)
            names += [f"{d}/metadata.{fmt}", f"{d}/{MANIFEST_NAME}"]
            if job.options.include_originals:
                for item in job.items:
                    name = f"{d}/{item.relpath}"
                    if name in samples:
                        raise SettingError(
                            f"the original {item.relpath} would overwrite a sample of the same name in {d}; "
                            "rename it, or drop `include_originals`"
                        )
                    names.append(name)
        return names

    @staticmethod
    def _metadata_format(job: Job) -> str:
        return job.layout.metadata_format if job.layout is not None and job.layout.metadata_format else "jsonl"

    # -- records: relative to the level folder, so each level folder is a dataset of its own

    def record(self, job: Job, output: OutputFile, plan, result, decoded, pixels) -> dict:
        row = super().record(job, output, plan, result, decoded, pixels)
        row["file_name"] = output.name.split("/", 1)[1]
        row["level_dir"] = self._level_dir(job, output.level_index)
        return row

    def shard_plan(self, job: Job, records):
        """Sharded inputs: each level folder mirrors the input shard for shard
        (``OUT/level<L>/<input shard>``), members named as in a level folder (``<key stem>_s<j>``);
        with ``include_originals`` each input's own bytes (its key, its extension) before its samples."""
        from boomerang.tasks.shard_writer import mirror_shards

        return mirror_shards(job, records, prefix=lambda k: self._level_dir(job, k),
                             member=lambda o: o.name.split("/", 1)[1],
                             public=lambda r: {k: v for k, v in r.items() if k != "level_dir"},
                             original=_original_row if job.options.include_originals else None)

    def finish(self, job: Job, records: list[dict], skipped: list[dict]) -> None:
        """Per level folder: the metadata file, the manifest and (option) the originals; for
        sharded inputs the level folders' shards (each member's metadata row inside it)."""
        import itertools

        from boomerang.augment.cache import write_manifest
        from boomerang.tasks.metadata import write_metadata_file
        from boomerang.tasks.shards import is_sharded
        from boomerang.tasks.streams import Replay

        if is_sharded(job):
            super().finish(job, records, skipped)
            return

        fmt = self._metadata_format(job)
        bad = {s["file"] for s in skipped}
        for k in range(len(job.noise_levels)):
            d = self._level_dir(job, k)

            def samples(d=d):  # this level's rows, streamed from the records (in output order)
                return ({key: v for key, v in r.items() if key != "level_dir"} for r in records if r["level_dir"] == d)

            write_manifest(job.out / d, ({key: v for key, v in r.items() if key != "_unit"} for r in samples()))

            def originals():  # originals first, in item order
                return ({"_unit": -1, "file_name": item.relpath, **item.columns, "source": item.relpath,
                         "level": None, "timestep": None, "sample_index": None, "seed": None}
                        for item in job.items if item.relpath not in bad)

            if job.options.include_originals:
                for item in job.items:
                    if item.relpath not in bad:
                        _link_or_copy(item.path, job.out / d / item.relpath)
                rows = Replay(lambda samples=samples: itertools.chain(originals(), samples()))
            else:
                rows = Replay(samples)
            write_metadata_file(job.out / d, rows, fmt, in_order=True)


def _original_row(item) -> dict:
    """The metadata row of an original put beside its samples (``--include-originals``)."""
    return {"file_name": item.relpath, **item.columns, "source": item.relpath, "level": None, "timestep": None,
            "sample_index": None, "seed": None}


def _link_or_copy(src: Path, dst: Path) -> None:
    """Put ``src`` at ``dst`` atomically: a hard link where the file system allows, else a copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.link.tmp"
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    try:
        os.link(src, tmp)
    except OSError:  # another device, or no hard links here
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
