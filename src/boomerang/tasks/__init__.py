"""Jobs: one shared executor, one small module per task (torch-free at import).

Every command that samples a set of images (``sample``, ``anonymise``,
``augment``, ``enhance``) is a :class:`Task` subclass in a module of this
package, registered in :data:`TASKS`. The executor does the rest, the same for
every task and for the API: :func:`.runner.plan_job` lists the inputs
(:mod:`.layout`: a folder, class folders, or the Hugging Face ``imagefolder``
convention), plans every noise level once (:mod:`boomerang.tasks.job_plan`) and lists
the outputs (:class:`OutputFile`); :func:`.blocks.sample_block` samples one
block (read, fit, sample, restore); :func:`.runner.execute_job` writes every
output atomically (PNG, no metadata), journals finished blocks (:mod:`.journal`),
resumes, reports skipped files, and runs on the ``local`` or ``ray`` engine.
Everything takes typed settings (:class:`~boomerang.settings.SampleSettings`,
the task's ``Options``, :class:`JobSettings`); the command line becomes them in
one place, :func:`.flags.parse_task_args`.

The contract (docs/runner.md has the long form and a minimal example task); every
hook gets the :class:`Job`:

(a) flags and options: ``add_arguments(parser)`` (default: IN_DIR, --out,
    --layout, --engine, --workers, --restart and every sampling flag, with the
    class attribute ``defaults`` overriding sampling defaults, e.g.
    ``{"num_samples": 1}``); ``settings_from_args(args)`` -> ``SampleSettings``;
    ``options_from_args(args)`` -> an instance of the task's ``Options`` dataclass
    (part of job.json, so a rerun with other options refuses to continue).
(b) per-item input transform: ``transform(job, item, pixels)`` gets the decoded
    float32 (H, W, 3) RGB in [0, 1] and returns what the model should see
    (outputs take its size); default unchanged. ``fit(job, loaded)`` -> (reference,
    fitted): how the input is fitted to the model and outputs restored; default
    ``boomerang.inputs.fit_input``.
(c) per-batch sampling: ``sample_batch(job, x0, generators, plan, prompts, progress)``
    with x0 float32 numpy [B, H, W, C] in [0, 1]; returns (samples like x0, the
    ``core.BoomerangOutput``); default ``boomerang.sampling.sample_batch`` (the plan
    executed by ``core.boomerang_sample``).
(d) output names: ``output_name(job, output)`` -> a ``/``-separated path relative to
    OUT ending in ``.png``; default mirrors the input's relative path (class
    folders stay class folders), adding ``_level<L>`` / ``_s<jjj>`` when needed.
(e) per-item metadata: ``record(job, output, plan, result, decoded, pixels)`` -> the
    output's row in ``OUT/metadata.jsonl`` (or ``.csv`` when the input had one):
    ``file_name``, the item's carried columns (``item.label``, ``item.caption``,
    ``item.columns``), level, timestep, sample index, seed, source; and
    ``prompt(job, item)`` -> a per-item prompt for text models (None: ``--prompt``).

Also: ``scan(job)``, ``before_load(job)``, ``block_size(job)``, ``other_outputs(job)``,
``seed(job, item, j)`` (default ``seeds.path_seed(seed, item.relpath, j)``),
``finish(job, records, skipped)`` (default: write the metadata file), and the
class attributes ``resumable`` (False only for ``sample``), ``private_report``,
``Options`` and ``State`` (the task's per-job state, ``job.state``). Hooks run in
the process that samples (a Ray actor with ``--engine ray``), so they must not
rely on state other than ``job``.

Exit status of dataset commands: 0 all done, 3 done with skipped files
(the report), 2 bad usage, 1 unexpected failure, 130 stopped
(resumable: rerun the same command).
"""

from __future__ import annotations

import importlib

from boomerang.tasks.base import Task
from boomerang.tasks.job import DecodedInput, Job, JobSettings, OutputFile
from boomerang.tasks.layout import Item, Layout

__all__ = ["TASKS", "Task", "Job", "JobSettings", "OutputFile", "DecodedInput", "Item", "Layout", "get_task",
           "add_task_parsers", "main_for"]

#: Registered commands: name -> "module:Class". Each module must import no torch at top level.
TASKS: dict[str, str] = {
    "sample": "boomerang.tasks.sample:SampleTask",
    "anonymise": "boomerang.tasks.anonymise:AnonymiseTask",
    "enhance": "boomerang.tasks.enhance:EnhanceTask",
    "augment": "boomerang.tasks.augment:AugmentTask",
}


def get_task(name: str) -> Task:
    """An instance of the registered task ``name``."""
    module, _, cls = TASKS[name].partition(":")
    return getattr(importlib.import_module(module), cls)()


def add_parser(subparsers, task: Task):
    """Register one task as a subcommand of an argparse ``subparsers`` object."""
    p = subparsers.add_parser(task.name, help=task.help, description=task.description, **task.parser_kwargs())
    task.add_arguments(p)
    p.set_defaults(task=task)
    return p


def add_task_parsers(subparsers) -> None:
    """Register every task of :data:`TASKS` (the CLI calls this)."""
    for name in TASKS:
        add_parser(subparsers, get_task(name))


def main_for(task: Task, argv: list[str]) -> int:
    """Run one task as a command line of its own (``argv`` without the command name):
    for tasks that are not registered in the CLI, e.g. in tests and notebooks."""
    from boomerang.argparsing import OneLineErrorParser
    from boomerang.tasks.command import run_task_command

    parser = OneLineErrorParser(prog=f"boomerang {task.name}")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub, task)
    try:
        args = parser.parse_args([task.name, *argv])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    args._argv = [task.name, *argv]
    return run_task_command(args)
