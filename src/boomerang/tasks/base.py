"""The Task interface: what one command supplies to the shared executor.

See the package docstring (:mod:`boomerang.tasks`) and docs/runner.md for the
contract and a minimal example. Every hook gets the :class:`~boomerang.tasks.job.Job`
(typed settings, options, items, plans, outputs, model); only
:meth:`Task.add_arguments`, :meth:`Task.settings_from_args` and
:meth:`Task.options_from_args` see the command line
(:func:`boomerang.tasks.flags.parse_task_args`). Torch-free at import.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from boomerang.settings import SampleSettings
from boomerang.tasks.job import DecodedInput, Job, NoOptions, NoState, OutputFile
from boomerang.tasks.layout import Item, Layout

__all__ = ["Task", "windows_fields"]


class Task:
    """A command on the shared executor. Subclass it and override what differs.

    Class attributes:
        name: the command name (``boomerang <name>``).
        help: one line for ``boomerang --help``.
        description: the command's ``--help`` text.
        resumable: True (dataset jobs): a job folder, a journal, unreadable files
            skipped and reported. False (``sample``): every input is checked
            before the model loads (one bad file stops the command) and one run
            writes everything.
        private_report: the report names input files and so goes to the job's private folder
            (``OUT/.job/report.json``) instead of OUT (``anonymise``: OUT is the release).
        defaults: overrides of the sampling defaults for this command's flags
            (e.g. ``{"num_samples": 1}``).
        Options: the frozen dataclass of the task's own options (part of job.json, except
            fields with ``metadata={"job_definition": False}``).
        State: the dataclass of the task's per-job state (``job.state``), made fresh for each job.
    """

    name = "dataset"
    help = "Boomerang samples of every image of a folder"
    description = "Boomerang local samples of every image in IN_DIR, written to OUT_DIR in the same layout."
    resumable = True
    private_report = False
    defaults: dict = {"num_samples": 1}
    Options = NoOptions
    State = NoState

    # -- (a) flags: the command line, parsed into typed settings in one place (tasks.flags) -----

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Register the command's flags (torch-free). Default: the dataset and sampling flags."""
        from boomerang.tasks.flags import add_dataset_arguments, add_sampling_arguments

        add_dataset_arguments(parser)
        add_sampling_arguments(parser, **self.defaults)

    def settings_from_args(self, args: argparse.Namespace) -> SampleSettings:
        """The validated sampling settings from the parsed flags."""
        from boomerang.tasks.flags import settings_from_args

        return settings_from_args(args)

    def options_from_args(self, args: argparse.Namespace):
        """The task's options (an instance of :attr:`Options`) from the parsed flags."""
        return self.Options()

    def parser_kwargs(self) -> dict:
        """Extra keyword arguments for ``subparsers.add_parser`` (e.g. an ``epilog``)."""
        return {}

    # -- inputs ----------------------------------------------------------------------------------

    def scan(self, job: Job) -> Layout:
        """The input items: the layout of ``job.job_settings.inputs[0]``: WebDataset / Parquet shards
        (:mod:`boomerang.tasks.shards`, by ``layout`` or detected), else a folder layout
        (:func:`boomerang.tasks.layout.scan`)."""
        from boomerang.errors import SettingError
        from boomerang.tasks.layout import Layout, scan
        from boomerang.tasks.shards import ShardItems, detect

        if len(job.job_settings.inputs) != 1:
            raise SettingError(f"{self.name} reads one input folder, got {len(job.job_settings.inputs)}")
        root, layout = Path(job.job_settings.inputs[0]), job.job_settings.layout
        kind = layout if layout in ("webdataset", "parquet") else detect(root) if layout == "auto" else None
        if kind is not None and root.exists():
            items = ShardItems(root, kind)
            return Layout(kind, items.root, items, None, ())
        return scan(root, layout)

    def list_items(self, job: Job) -> None:
        """Fill ``job.items`` for a task that is not resumable (``sample`` lists its files and
        folders here) when the caller gave none; called before the model is chosen."""

    def before_load(self, job: Job) -> None:
        """Called after the items are known, before the model's configs are read: check what
        depends on the items, options and folders together. ``sample`` lists and checks its
        inputs here (and may fill ``job.items``, ``job.info`` and ``job.inputs``)."""

    def block_size(self, job: Job) -> int | None:
        """Outputs per block once the model is loaded; None: ``settings.batch_size`` or automatic."""
        return None

    def other_outputs(self, job: Job) -> list[str]:
        """Names of the files the task writes besides its samples (checked against the inputs).
        Default: the output shards of a sharded input (:meth:`shard_plan`)."""
        from boomerang.tasks.shards import is_sharded

        return [name for name, _ in self.shard_plan(job, None)] if is_sharded(job) else []

    def shard_plan(self, job: Job, records):
        """The output shards of a sharded input, in writing order: ``(shard name, iterator of
        (member name, output, metadata row or None))`` (``records`` None: the names only).
        Default: one output shard per input shard, same name
        (:func:`boomerang.tasks.shard_writer.mirror_shards`)."""
        from boomerang.tasks.shard_writer import mirror_shards

        return mirror_shards(job, records)

    def seed(self, job: Job, item: Item, j: int) -> int:
        """The seed of sample ``j`` of ``item``: ``seeds.path_seed(seed, item.relpath, j)``."""
        from boomerang.seeds import path_seed

        return path_seed(job.settings.seed, item.relpath, j)

    # -- (b) per-item input transform ------------------------------------------------------------

    def transform(self, job: Job, item: Item, pixels):
        """The input as the model should see it, before fitting to the model's size.

        Args:
            pixels: float32 (H, W, 3) RGB in [0, 1], as read (EXIF applied, alpha composited).

        Returns:
            float32 (H', W', 3) in [0, 1]; outputs get this size. Default: unchanged.
        """
        return pixels

    def fit(self, job: Job, loaded):
        """(reference, fitted) of an input after :meth:`transform`: ``reference`` float32
        (H, W, C) in [0, 1] in the model's channels (what a level-0 output is), ``fitted``
        what :meth:`sample_batch` gets (``.pixels``) and how outputs come back (``.restore``).
        Default: ``boomerang.inputs.fit_input`` (resize/pad to the model's size, then back)."""
        from boomerang.inputs import fit_args_for, fit_input

        return fit_input(loaded, fit_args_for(job.settings, job.model))

    # -- (c) per-batch sampling ------------------------------------------------------------------

    def sample_batch(self, job: Job, x0, generators, plan, prompts, progress=None):
        """Sample one batch: x0 float32 numpy [B, H, W, C] in [0, 1] (fitted to the model, one
        shape), one generator per item, the plan, per-item prompts (or None), and
        ``progress(done, total)`` to call after each denoiser step (or None).

        Returns:
            (samples float32 numpy [B, H, W, C] in [0, 1], ``core.BoomerangOutput`` or None).
            Default: ``boomerang.sampling.sample_batch`` (``core.boomerang_sample`` of the plan); a
            resumable (dataset) job's large photos on the bounded path keep their work files in
            ``OUT/.job/scratch`` (:func:`boomerang.tasks.journal.job_scratch`), others in ``TMPDIR``.
        """
        from boomerang.sampling import sample_batch
        from boomerang.tasks.journal import job_scratch

        work = job_scratch(job) if self.resumable else None
        return sample_batch(job.model, x0, generators, plan, job.settings, prompts=prompts, progress=progress,
                            work_dir=work)

    def sample_outputs(self, job: Job, outputs: list[OutputFile], sampler, **kwargs):
        """The samples of one block, as :func:`boomerang.tasks.blocks.write_block` writes them: yields
        :class:`~boomerang.tasks.blocks.BlockSample` objects in output order. ``sampler`` is the one
        block function (:func:`~boomerang.tasks.blocks.sample_block`), ``kwargs`` its keyword arguments.
        Default: ``sampler`` itself. A task may check each sample and replace it or leave it out
        (``anonymise --verify-top``)."""
        yield from sampler(job, outputs, **kwargs)

    # -- (d) output names ------------------------------------------------------------------------

    def output_name(self, job: Job, output: OutputFile) -> str:
        """The output's path relative to OUT (``/``-separated, ending in ``.png``).

        Default: the input's relative path with ``.png``, so the layout (class folders)
        is mirrored; ``_level<L>`` (3 decimals) is added when several levels are asked for
        (``_t<tttt>`` with timesteps) and ``_s<jjj>`` when several samples.
        """
        rel = output.item.relpath
        # Path(rel).suffix without making a Path (once per output): the last dot of the last part,
        # neither its first nor its last character
        name = rel[rel.rfind("/") + 1:]
        dot = name.rfind(".")
        stem = rel[: len(rel) - len(name) + dot] if 0 < dot < len(name) - 1 else rel
        if len(job.noise_levels) > 1:
            level, t = job.noise_levels[output.level_index]
            stem += f"_t{t:04d}" if job.settings.timestep is not None else f"_level{level:.3f}"
        if job.settings.num_samples > 1:
            stem += f"_s{output.sample:03d}"
        return stem + ".png"

    # -- (e) per-item metadata and prompts -------------------------------------------------------

    def plan_shape(self, job: Job, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """The (C, H, W) a plan is made for when the model's plan depends on the image's size (FLUX's
        dynamic shift), given the (C, H, W) of an input as fitted to the model. Default: that shape."""
        return image_shape

    def prompt(self, job: Job, item: Item) -> str | None:
        """The item's prompt (text models), or None for ``settings.prompt``."""
        return None

    def record(self, job: Job, output: OutputFile, plan, result, decoded: DecodedInput, pixels) -> dict:
        """The output's row in the output metadata file: ``file_name``, the item's carried
        columns (label, caption, ...), and how it was made. Must be JSON-ready and
        deterministic (no times), so a resumed job writes the same bytes.

        Args:
            plan: the output's :class:`~boomerang.levels.NoisePlan`.
            result: the batch's ``core.BoomerangOutput`` (``None`` for an identity output, or
                when :meth:`sample_batch` gives none).
            decoded: the input as read (:class:`~boomerang.tasks.job.DecodedInput`).
            pixels: the output as written, uint8 (H, W, C).
        """
        row = {
            "file_name": output.name,
            **output.item.columns,
            "source": output.item.relpath,
            "level": job.noise_levels[output.level_index][0],
            "timestep": plan.timestep,
            # how noisy the start was, comparable across families (flow models: sigma, no alpha_bar)
            "alpha_bar": plan.alpha_bar,
            "sigma": plan.sigma,
            "start_snr": plan.start_snr,
            "sample_index": output.sample,
            "seed": self.seed(job, output.item, output.sample),
        }
        return row | windows_fields(result)

    # -- end of the job --------------------------------------------------------------------------

    def report_fields(self, job: Job, records: list[dict]) -> dict:
        """Fields the task adds to the job's report (``report.json``), after :meth:`finish`. Default: none."""
        return {}

    def finish(self, job: Job, records: list[dict], skipped: list[dict]) -> None:
        """Write what depends on every output: by default the output metadata file
        (``metadata.jsonl``, or ``metadata.csv`` when the input had one), rows in output order;
        for sharded inputs the output shards of :meth:`shard_plan` instead
        (:func:`boomerang.tasks.shard_writer.write_output_shards`)."""
        from boomerang.tasks.metadata import write_metadata_file
        from boomerang.tasks.shard_writer import write_output_shards
        from boomerang.tasks.shards import is_sharded

        if is_sharded(job):  # the output shards carry each output's metadata row
            write_output_shards(job, records, self.shard_plan(job, records))
            return
        fmt = job.layout.metadata_format if job.layout is not None and job.layout.metadata_format else "jsonl"
        write_metadata_file(job.out, records, fmt)


def windows_fields(result) -> dict:
    """``{"window_tile": S, "window_overlap": O}`` (flat: CSV metadata too) for a metadata row when
    the batch's denoiser ran on blended windows (a large photo: :mod:`boomerang.windowing`), else
    ``{}`` (rows of images sampled whole are unchanged)."""
    windows = getattr(result, "windows", None)
    return {} if windows is None else {"window_tile": int(windows[0]), "window_overlap": int(windows[1])}
