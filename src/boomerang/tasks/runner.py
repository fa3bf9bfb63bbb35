"""The shared runner: plan, load, then sample and write every block, journal, report.

One function per stage, the same for every task (see :mod:`boomerang.tasks`); each takes
typed settings (:class:`~boomerang.settings.SampleSettings`, the task's options and a
:class:`~boomerang.tasks.job.JobSettings`), never a command line:

1. :func:`plan_job` (no model): the items, the model's JSON configs, the noise
   levels and their plans (:mod:`boomerang.tasks.job_plan`), the outputs and their
   names, and the output folder check. Bad usage raises ``SettingError`` /
   ``ValueError`` here, before anything is loaded or written.
2. :func:`~boomerang.tasks.blocks.attach_model` loads the model (after ``threads``).
3. :func:`execute_job`: resumable tasks check or write ``OUT/.job/job.json`` and read the
   journal of finished blocks (:class:`~boomerang.tasks.journal.JobFolder`); an engine runs
   :func:`~boomerang.tasks.blocks.write_block` on every unfinished block: ``local`` (this
   process) or ``ray`` (:mod:`boomerang.tasks.ray_engine`). A block's files are written
   atomically, then its journal line is appended. ``task.finish`` writes what depends on
   every output (metadata file, contact sheets), then the report and one summary line.

:func:`run_job` is all of it; the CLI (``tasks.command``) and the page (``serve.runs``) call it.

Blocks. Outputs have a fixed order (level-major: noise level, item, sample) and output ``o``
always belongs to block ``o // block_size``; a block is sampled as one batch (split only by
plan and by the shape the model sees). The block size is part of the job's definition, so a
resumed job, or one spread over any number of Ray workers, batches exactly as an uninterrupted
one: outputs are byte-identical even without batch-invariant kernels.

Exit status of dataset commands: 0 every item done; 3 done, but some input files were
skipped (listed in the report: ``OUT/report.json``, or ``OUT/.job/report.json`` for tasks
whose report must stay private); 2 bad usage (nothing written); 1 an unexpected failure;
130 stopped by Ctrl-C / SIGTERM (the block in progress is dropped, never half-written;
rerun the same command to continue).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from boomerang.errors import SettingError
from boomerang.settings import SampleSettings
from boomerang.tasks.base import Task
from boomerang.tasks.blocks import (InputCache, attach_model, block_count, block_length, block_outputs,
                                    default_block_size, write_block)
from boomerang.tasks.job import Job, JobSettings, OutputFile, OutputList

__all__ = ["EXIT_OK", "EXIT_SKIPPED", "EXIT_USAGE", "EXIT_FAILED", "EXIT_INTERRUPTED", "REPORT_NAME",
           "plan_job", "execute_job", "run_job", "report_path", "job_definition"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SKIPPED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
REPORT_NAME = "report.json"


# ----------------------------------------------------------------------------- 1. plan


def plan_job(task: Task, settings: SampleSettings, options, job_settings: JobSettings, *, items=None,
             model=None) -> Job:
    """Everything that needs no model weights: a :class:`Job` ready to load and run.

    Args:
        task, settings, options, job_settings: what to run (typed; see :mod:`boomerang.tasks.flags`).
        items: the items, when the caller has them (the API); else ``task.scan`` (resumable tasks)
            or ``task.before_load`` (``sample``) finds them.
        model: an already loaded model (its configs stand in for the JSON ones).

    Raises:
        SettingError, ValueError: bad usage (the message names the parameter or file).
    """
    from boomerang.tasks import job_plan
    from boomerang.imageio import check_output_dir

    job = Job(task, settings, options, job_settings, model=model, state=task.State())
    if items is not None:
        job.items = list(items)
    elif task.resumable:
        job.layout = task.scan(job)
        job.items = job.layout.items
    else:
        task.list_items(job)  # sample lists its files and folders here
    if model is None and settings.model is None:
        settings = job.settings = _choose_default_model(job)
    task.before_load(job)  # sample reads and checks its inputs here
    if job.info is None:
        job.info = model if model is not None else job_plan.model_info(settings.model)
    if not job.noise_levels:
        job.noise_levels = job_plan.noise_levels(settings, job.info)
    job_plan.check_prompt(settings, job.info)
    if (not getattr(job.info, "takes_prompt", False) and type(task).prompt is not Task.prompt
            and any(task.prompt(job, it) for it in job.items)):
        raise SettingError(f"the model {job.info.source} takes no text prompt, but this task gives each item one")
    if not job.plans:
        job.plans = job_plan.make_plans(settings, job.info, job.noise_levels)
    job.outputs = OutputList(job)
    _check_unique_names(job.outputs)
    if job.out is not None:
        import itertools

        names = itertools.chain((o.name for o in job.outputs), task.other_outputs(job))
        out = check_output_dir(job.out, list(job_settings.inputs), names)
        if out.exists() and not out.is_dir():
            raise SettingError(f"`out` {job_settings.out} exists and is not a folder")
    if job.default_model is not None and job.out is not None:  # bad usage stays one error line
        print(f"boomerang: no --model given: using {job.default_model['model']}: {job.default_model['reason']}",
              file=sys.stderr)
    return job


_name_hash = hash  # (a test makes every name collide)


def _check_unique_names(outputs) -> None:
    """Refuse two outputs of the same name, holding 8 bytes per output (Python's 64-bit hash of each
    name; the names themselves are looked up again only when two hashes agree)."""
    import numpy as np

    h = _name_hash
    hashes = np.fromiter((h(o.name) for o in outputs), dtype=np.int64, count=len(outputs))
    hashes.sort()
    same = set(hashes[1:][hashes[1:] == hashes[:-1]].tolist())
    if not same:
        return
    seen: dict[str, OutputFile] = {}
    for o in outputs:
        if h(o.name) not in same:
            continue
        if o.name in seen:
            raise SettingError(
                f"two outputs would be named {o.name} ({seen[o.name].item.relpath} and {o.item.relpath}); "
                "rename one of the inputs"
            )
        seen[o.name] = o


def _choose_default_model(job: Job) -> SampleSettings:
    """No model given: choose one from the job's inputs (:mod:`boomerang.default_model`) and keep the
    choice in ``job.default_model`` for metadata (:func:`plan_job` says it on stderr once the job is
    planned without error, for jobs with an output folder: the CLI and the page). Returns the settings to run with: unchanged for the digit
    model (``model=None``, the bundled default), ``model="ddpm-photos"`` for the photo model."""
    import dataclasses

    from boomerang.default_model import choose_default_model

    from boomerang.tasks.shards import item_source

    choice = choose_default_model((item_source(it) for it in job.items), job.settings.background_rgb)
    job.default_model = choice.record()
    if choice.model is None:
        return job.settings
    return dataclasses.replace(job.settings, model=choice.model)


# ----------------------------------------------------------------------------- 3. execute


def report_path(job: Job) -> Path:
    """Where the job's report goes: ``OUT/report.json``, or ``OUT/.job/report.json`` for a task
    whose report names inputs that must not be published with the outputs (``private_report``)."""
    from boomerang.tasks.journal import JOB_DIR

    return job.out / JOB_DIR / REPORT_NAME if job.task.private_report else job.out / REPORT_NAME


def execute_job(job: Job) -> int:
    """Run a planned, loaded job to the end (or to a stop signal); returns the exit status."""
    from boomerang.fileio import write_json
    from boomerang.stopping import NoStop, Stop, StopRequested
    from boomerang.tasks.journal import JobFolder, UnfinishedRun
    from boomerang.tasks.progress import JobProgress

    task, js = job.task, job.job_settings
    folder = JobFolder(job.out) if task.resumable else None
    if folder is not None and folder.exists() and not js.restart and not job.settings.batch_size:
        job.block_size = int(folder.read_job().get("block_size") or job.block_size)  # continue as started
    if folder is not None and folder.exists() and not js.restart and js.engine == "local":
        _continue_with_threads(job, folder.read_job().get("threads"))
    n_blocks = block_count(job)
    journal = None  # resumable jobs: the finished blocks, streamed from the journal
    done: dict[int, dict] = {}  # sample (not resumable, small): the finished blocks in memory
    unfinished = None
    out_existed = job.out is not None and job.out.exists()
    fresh = folder is not None and not folder.exists()  # this run starts the job folder
    if folder is not None:
        if js.restart:
            _remove_outputs(job)
        other = ["metadata.jsonl", "metadata.csv", REPORT_NAME, *task.other_outputs(job)]
        journal = folder.start(job_definition(job), restart=js.restart, other_outputs=other)
        _index_items(job, folder)
    else:  # sample: a killed earlier run's files go first; this run's are listed until it ends
        unfinished = UnfinishedRun(job.out)
        unfinished.begin([o.name for o in job.outputs] + task.other_outputs(job))
    finished_before = journal if journal is not None else done
    todo = (b for b in range(n_blocks) if b not in finished_before)
    total = len(job.outputs)
    initial = sum(block_length(job, b) for b in range(n_blocks) if b in finished_before)
    progress = JobProgress(total, initial=initial, desc=task.name, unit="img", show=js.progress)
    t0 = time.perf_counter()
    made = [0]

    def finished(entry: dict) -> None:
        if folder is not None:
            folder.append(entry, journal)
        else:
            done[entry["block"]] = entry
        made[0] += len(entry["records"])

    def finished_count() -> int:
        return len(journal) if journal is not None else len(done)

    stopped = None
    try:
        with Stop(task.name) if task.resumable else NoStop() as stop:
            if js.engine == "ray":
                from boomerang.tasks.ray_engine import run_blocks

                run_blocks(job, todo, finished, progress, stop, workers=js.workers)
            else:
                cache = InputCache(job)
                for b in todo:
                    try:
                        entry = write_block(job, b, block_outputs(job, b), cache=cache, progress=progress, stop=stop)
                    except StopRequested:
                        break  # the block is not journalled: the next run redoes it
                    finished(entry)
                    if stop.signum is not None:
                        break
            stopped = stop.signum
    except BaseException as exc:
        if unfinished is not None:  # sample: take back the images this run wrote (no image without metadata)
            unfinished.take_back()
        if fresh and isinstance(exc, ValueError) and finished_count() == 0:
            folder.forget(out_existed)  # refused before any output: nothing half-written
        raise
    finally:
        progress.close()
    if stopped is not None and finished_count() < n_blocks:
        left = total - sum(block_length(job, b) for b in range(n_blocks) if b in finished_before)
        print(f"boomerang {task.name}: stopped; {left} of {total} outputs still to make. Rerun the same command to continue.",
              file=sys.stderr)
        return EXIT_INTERRUPTED

    if journal is not None:
        from boomerang.tasks.journal import JournalRecords

        records = JournalRecords(journal)
        skipped_list = journal.skipped()
    else:
        records = [r for b in sorted(done) for r in done[b]["records"]]
        skipped = {}
        for b in sorted(done):
            for s in done[b]["skipped"]:
                skipped.setdefault(s["file"], s["reason"])
        skipped_list = [{"file": f, "reason": r} for f, r in sorted(skipped.items())]
    try:
        task.finish(job, records, skipped_list)
    except BaseException:
        if unfinished is not None:
            unfinished.take_back()
        raise
    if unfinished is not None:
        unfinished.end()
    n_items = len(job.items)
    if task.resumable:
        report = {
            "task": task.name, "total": n_items, "done": n_items - len(skipped_list), "skipped": len(skipped_list),
            "outputs": len(records), "skipped_files": skipped_list,
        }
        report.update(task.report_fields(job, records))
        if job.default_model is not None:
            report["default_model"] = job.default_model
        path = report_path(job)
        write_json(path, report)
        if task.private_report:  # a public report from an earlier version would name inputs
            _unlink(job.out / REPORT_NAME)
        made = made[0]  # outputs made by this run, not before
        made_text = ("all made before, none now" if not made else
                     f"{made / max(time.perf_counter() - t0, 1e-9):.2f} outputs/s" if made == len(records) else
                     f"{made} made now, {made / max(time.perf_counter() - t0, 1e-9):.2f} outputs/s")
        print(f"boomerang {task.name}: done {n_items - len(skipped_list)}, skipped {len(skipped_list)}, total "
              f"{n_items} ({len(records)} outputs in {job.out}, {made_text})"
              + (f"; skipped files are listed in {path}" if skipped_list else ""), file=sys.stderr)
        return EXIT_SKIPPED if skipped_list else EXIT_OK
    return EXIT_OK


def _continue_with_threads(job: Job, started) -> None:
    """A resumed job keeps the CPU thread count it started with (job.json ``threads``): float sums
    split by thread, so another count may move a written pixel by one grey level. The default
    count follows the idle cores, so without ``threads`` the job's own is used; an explicit other
    ``threads`` is honoured, with one warning line."""
    import torch

    now = torch.get_num_threads()
    if started is None or int(started) == now or str(job.settings.device).startswith("cuda"):
        return
    if job.job_settings.threads is not None:
        print(f"boomerang: warning: this job started with --threads {started}; continuing with {now} "
              "may change written pixels by one grey level (leave --threads out to continue with "
              f"{started})", file=sys.stderr)
        return
    torch.set_num_threads(int(started))
    job.threads = int(started)


def job_definition(job: Job) -> dict:
    """What defines a job (job.json): a rerun must match it to continue."""
    import dataclasses

    from boomerang import __version__

    s = job.settings.to_dict()
    s.pop("batch_size", None)  # the resolved block size below is what matters
    options = {f.name: getattr(job.options, f.name) for f in dataclasses.fields(job.options)
               if f.metadata.get("job_definition", True)}
    return {
        "task": job.task.name,
        "settings": s,
        "options": options,
        # The weights and the noise schedule define the outputs; where they were read from does not.
        "model": {"weights_sha256": getattr(job.model, "weights_sha256", None),
                  "scheduler_config_sha256": _sha256_json(getattr(job.model, "scheduler_config", {}))},
        "input": {"folder": str(Path(job.layout.root).resolve()), "layout": job.layout.kind,
                  "items": len(job.items), "digest": job.layout.digest()},
        "block_size": job.block_size,
        "boomerang_version": __version__,
        "threads": _torch_threads(),  # not compared on resume: see _continue_with_threads
    }


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def _sha256_json(obj) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _remove_outputs(job: Job) -> None:
    import itertools

    for name in itertools.chain((o.name for o in job.outputs), ["metadata.jsonl", "metadata.csv", REPORT_NAME]):
        _unlink(job.out / name)


def _index_items(job: Job, folder) -> None:
    """Items listed from disk are written once to the job folder and read back by index from
    there (:func:`boomerang.tasks.items.index_items`; Ray actors read the same files)."""
    from boomerang.tasks.items import index_items
    from boomerang.tasks.layout import ListedItems
    from boomerang.tasks.shards import ShardItems

    if isinstance(job.items, (ListedItems, ShardItems)):
        job.items = index_items(job.items, folder.dir, job.layout.root)


# ----------------------------------------------------------------------------- all of it


def run_job(task: Task, settings: SampleSettings, options, job_settings: JobSettings, *, model=None) -> int:
    """The whole command: plan, load, execute. Returns the exit status; raises SettingError /
    ValueError for bad usage (the CLI turns them into one line and exit status 2).

    Args:
        model: an already loaded model (the page's, loaded once); its threads are left as they
            are and ``job_settings.threads`` is only recorded. ``None``: loaded here after setting
            the threads (``job_settings.threads``, default: the cores idle now).
    """
    from boomerang.threads import resolve_threads

    if job_settings.engine == "ray":
        from boomerang.tasks.ray_engine import check_available

        check_available()
    if model is None:
        threads = resolve_threads(job_settings.threads)
        job = plan_job(task, settings, options, job_settings)
        attach_model(job, threads)
    else:
        threads = job_settings.threads
        job = plan_job(task, settings, options, job_settings, model=model)
    job.threads = threads
    job.block_size = task.block_size(job) or default_block_size(job)
    return execute_job(job)
