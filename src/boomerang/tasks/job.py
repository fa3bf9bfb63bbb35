"""The data model of the executor: a :class:`Job`, its :class:`OutputFile` list and its settings (torch-free).

Words (docs/runner.md has the long form):

* **task**: one command's hooks (:class:`boomerang.tasks.Task`: ``sample``, ``anonymise`` ...).
* **job**: one run of a task over its inputs (:class:`Job`): the typed settings, the items,
  the noise levels and their plans, the outputs; ``boomerang.sample`` and ``api.prepare``
  make one too. A job's private files live in its **job folder**, ``OUT/.job``.
* **item**: one input image (:class:`~boomerang.tasks.layout.Item`).
* **output**: one output image (:class:`OutputFile`): sample j of an item at one noise level.
* **block**: a fixed run of consecutive outputs, sampled as one batch and journalled as one.
* **noise level**: a level the user asked for and its timestep (:class:`~boomerang.tasks.job_plan.NoiseLevel`);
  its :class:`~boomerang.levels.NoisePlan` says how it runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boomerang.errors import SettingError
from boomerang.settings import SampleSettings
from boomerang.tasks.layout import LAYOUTS, Item, Layout

__all__ = ["ENGINES", "JobSettings", "OutputFile", "OutputList", "DecodedInput", "Job", "NoOptions", "NoState"]

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class JobSettings:
    """Where a job reads and writes, and how it runs (not what it makes: that is the
    :class:`~boomerang.settings.SampleSettings` and the task's options).

    Attributes:
        inputs: IN_DIR (dataset commands: one folder), or the IMAGE files and folders of ``sample``.
        out: the output folder (``None``: nothing is written, the API's in-memory jobs).
        layout: input layout of a folder (``auto``, ``folder``, ``classes``, ``imagefolder``).
        engine: ``local`` (this process) or ``ray`` (Ray Data actors).
        workers: ``ray``: number of model actors (``None``: one per GPU on CUDA, else 1).
        restart: delete the job in ``out`` and start over.
        threads: torch CPU threads as given: an int, ``"torch"`` or ``None`` (the idle cores).
        progress: ``True`` always a bar, ``False`` never, ``None``: a bar on a terminal, else a
            plain line now and then.
        command: the command line recorded with the outputs (``sample``'s metadata.json).

    Raises:
        SettingError: an unknown engine or layout, or workers that are not an integer >= 1.
    """

    inputs: tuple = ()
    out: str | None = None
    layout: str = "auto"
    engine: str = "local"
    workers: int | None = None
    restart: bool = False
    threads: Any = None
    progress: bool | None = None
    command: tuple = ()

    def __post_init__(self) -> None:
        from boomerang.levels import check_positive_int

        put = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        put("inputs", (self.inputs,) if isinstance(self.inputs, (str, Path)) else tuple(self.inputs))
        if self.engine not in ENGINES:
            raise SettingError(f"`engine` must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.layout not in LAYOUTS:
            raise SettingError(f"`layout` must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.workers is not None:
            put("workers", check_positive_int(self.workers, "workers"))
        put("command", tuple(self.command))


@dataclass(frozen=True)
class NoOptions:
    """The options of a task that has none of its own."""


@dataclass
class NoState:
    """The per-job state of a task that keeps none."""


@dataclass(frozen=True)
class OutputFile:
    """One output: sample ``sample`` of ``item`` at noise level ``level_index`` (an index into
    ``Job.noise_levels`` / ``Job.plans``). ``index`` is its place in the job's fixed output order
    (level-major: noise level, then item, then sample); its block is ``index // block_size``.
    ``name``: its path relative to OUT (``/``-separated)."""

    index: int
    item: Item
    level_index: int
    sample: int
    name: str = ""


class OutputList:
    """Every :class:`OutputFile` of a job in its fixed order, made on demand (never held as a list).

    Output ``o`` is sample ``j`` of item ``i`` at noise level ``k`` with
    ``o = (k * n_items + i) * num_samples + j``; its name is ``task.output_name``. Iterating
    streams the items once per level; ``outputs[o]`` and :meth:`range` read the items by index
    (a list, or :class:`~boomerang.tasks.items.IndexedItems` from the job folder).
    """

    def __init__(self, job: "Job"):
        self.job = job

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(noise levels, items, samples per item)``."""
        return len(self.job.noise_levels), len(self.job.items), int(self.job.settings.num_samples)

    def __len__(self) -> int:
        n_levels, n_items, n_samples = self.shape
        return n_levels * n_items * n_samples

    def _make(self, o: int, item: Item, k: int, j: int) -> OutputFile:
        return OutputFile(o, item, k, j, self.job.task.output_name(self.job, OutputFile(o, item, k, j)))

    def __getitem__(self, o: int) -> OutputFile:
        n_levels, n_items, n_samples = self.shape
        if not 0 <= o < n_levels * n_items * n_samples:
            raise IndexError(o)
        (k, i), j = divmod(o // n_samples, n_items), o % n_samples
        return self._make(o, self.job.items[i], k, j)

    def last_of_item(self, i: int) -> int:
        """The index of item ``i``'s last output (its last sample at the last level)."""
        n_levels, n_items, n_samples = self.shape
        return ((n_levels - 1) * n_items + i) * n_samples + n_samples - 1

    def range(self, start: int, stop: int):
        """Outputs ``start`` .. ``stop - 1`` in order, reading only the items they need."""
        import itertools

        n_levels, n_items, n_samples = self.shape
        stop = min(stop, n_levels * n_items * n_samples)
        o = max(start, 0)
        while o < stop:
            k, i0 = divmod(o // n_samples, n_items)
            last = min(stop - 1, (k + 1) * n_items * n_samples - 1)  # this level's part
            i1 = (last // n_samples) % n_items + 1
            items = self.job.items
            if isinstance(items, (list, tuple)):
                run = items[i0:i1]
            elif hasattr(items, "range"):
                run = items.range(i0, i1)
            else:
                run = itertools.islice(iter(items), i0, i1)
            for n, item in enumerate(run):
                for j in range(n_samples):
                    idx = (k * n_items + i0 + n) * n_samples + j
                    if o <= idx <= last:
                        yield self._make(idx, item, k, j)
            o = last + 1

    def __iter__(self):
        return self.range(0, len(self))


@dataclass
class DecodedInput:
    """An item as read for sampling: ``loaded`` (``imageio.LoadedImage``, after the task's
    transform), ``reference`` (the input in the model's channels at the transformed input's size:
    float32 (H, W, C) in [0, 1], or uint8 for large 8-bit files) and ``fitted``
    (``imageio.FittedImage``: what the model sees, and the way back)."""

    loaded: Any
    reference: Any
    fitted: Any


@dataclass
class Job:
    """One run of a task: everything its hooks and the executor read.

    Attributes:
        task: the :class:`~boomerang.tasks.Task`.
        settings: the validated :class:`~boomerang.settings.SampleSettings`.
        options: the task's own options (an instance of ``task.Options``; written to job.json).
        job_settings: the :class:`JobSettings` (inputs, out, engine ...).
        items: the input items, in order.
        layout: the scanned :class:`~boomerang.tasks.layout.Layout` (``None`` for ``sample`` and the API).
        info: the model's ``ModelInfo`` (JSON only) before loading, the model after.
        noise_levels: one :class:`~boomerang.tasks.job_plan.NoiseLevel` per requested level or timestep.
        plans: one :class:`~boomerang.levels.NoisePlan` per noise level.
        outputs: every :class:`OutputFile`, in the job's fixed order (an :class:`OutputList`).
        inputs: what the check kept of each item (:class:`~boomerang.inputs.CheckedInput`;
            tasks that check every input before the model loads: ``sample`` and the API), else empty.
        model: the loaded model (``None`` until loaded; in Ray actors, each actor's own).
        block_size: outputs per block (the batch of one sampling call).
        threads: the torch CPU threads the job runs with (recorded; ``None``: torch's default).
        state: the task's per-job state (an instance of ``task.State``), e.g. names worked out once.
        default_model: when no model was given, the choice of
            :func:`boomerang.default_model.choose_default_model` (``{"model", "reason"}``, recorded in
            metadata); ``None`` when a model was given.
    """

    task: Any
    settings: SampleSettings
    options: Any
    job_settings: JobSettings
    items: list = field(default_factory=list)
    layout: Layout | None = None
    info: Any = None
    noise_levels: list = field(default_factory=list)
    plans: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    model: Any = None
    block_size: int = 1
    threads: int | None = None
    state: Any = None
    default_model: dict | None = None

    @property
    def out(self) -> Path | None:
        """The output folder (``None`` for in-memory jobs)."""
        return None if self.job_settings.out is None else Path(self.job_settings.out)
