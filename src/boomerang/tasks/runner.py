"""The shared runner: list inputs, plan, batch, sample, write atomically, journal, report.

One function per stage, the same for every task (see :mod:`boomerang.tasks`):

1. :func:`prepare` (no model): settings, items, the model's JSON configs, the
   plans (``boomerang.core.plan``), the units and their output names, and the
   output folder check. Bad usage raises ``SettingError`` / ``ValueError`` here,
   before anything is loaded or written.
2. :func:`load` the model (``--threads`` first).
3. Resumable tasks: :class:`~boomerang.tasks.journal.JobFolder` checks or writes
   ``job.json`` and reads the journal of finished blocks.
4. An engine runs :func:`process_block` on every unfinished block: ``local``
   (this process) or ``ray`` (:mod:`boomerang.tasks.ray_engine`). A block's
   files are written atomically, then its journal line is appended.
5. ``task.finish`` writes what depends on every output (metadata file, contact
   sheets), then ``report.json`` and one summary line.

Blocks. Units (one output file each) have a fixed order (level-major: start,
item, sample) and unit ``u`` always belongs to block ``u // block_size``; a
block is sampled as one batch (split only by plan and by the shape the model
sees). The block size is part of the job's definition, so a resumed job, or one
spread over any number of Ray workers, batches exactly as an uninterrupted one:
outputs are byte-identical even without batch-invariant kernels (on the CPU
they are batch invariant anyway).

Exit status of dataset commands: 0 every item done; 3 done, but some input
files were skipped (listed in ``OUT/report.json``); 2 bad usage (nothing
written); 1 an unexpected failure; 130 stopped by Ctrl-C / SIGTERM (the block in
progress is dropped, never half-written; rerun the same command to continue).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from boomerang.errors import SettingError
from boomerang.tasks.base import Context, Task, Unit
from boomerang.tasks.blocks import blocks_of, default_block_size, load, process_block
from boomerang.tasks.metadata import write_metadata_file

__all__ = [
    "EXIT_OK", "EXIT_SKIPPED", "EXIT_USAGE", "EXIT_FAILED", "EXIT_INTERRUPTED",
    "prepare", "load", "process_block", "run", "run_task", "write_metadata_file", "REPORT_NAME",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SKIPPED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
REPORT_NAME = "report.json"


def _dumps(obj) -> bytes:
    return (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode()


# ----------------------------------------------------------------------------- 1. prepare


def prepare(task: Task, args) -> Context:
    """Everything that needs no model weights. Raises SettingError/ValueError for bad usage."""
    from boomerang import jobs
    from boomerang import levels as L
    from boomerang.imageio import check_output_dir

    settings = task.settings(args)
    options = task.options(args)
    layout = task.scan(args) if task.resumable else None
    items = layout.items if layout is not None else []
    ctx = Context(task, settings, options, items, layout, None, [], [], Path(args.out))
    task.before_load(ctx, args)  # non-resumable tasks read and check their inputs here
    if ctx.info is None:
        ctx.info = jobs.model_info(settings.model)
    T = int(ctx.info.num_train_timesteps)
    if not ctx.starts:
        if settings.timestep is not None:
            ctx.starts = [(L.timestep_to_level(t, T), L.check_timestep(t, T)) for t in settings.timestep]
        else:
            ctx.starts = [(lv, L.level_to_timestep(lv, T)) for lv in settings.level]
    takes_prompt = bool(getattr(ctx.info, "takes_prompt", False))
    if (settings.prompt or settings.negative_prompt) and not takes_prompt:
        raise SettingError(
            f"the model {ctx.info.source} takes no text prompt; drop `prompt`/`negative_prompt` "
            "(or use a text-conditioned model such as Stable Diffusion)"
        )
    if not takes_prompt and any(task.prompt(ctx, it) for it in ctx.items):
        raise SettingError(f"the model {ctx.info.source} takes no text prompt, but this task gives each item one")
    if not ctx.plans:
        ctx.plans = jobs.make_plans(settings, ctx.info, ctx.starts)
    units = []
    for k in range(len(ctx.starts)):
        for item in ctx.items:
            for j in range(settings.num_samples):
                u = Unit(len(units), item, k, j)
                units.append(Unit(u.index, item, k, j, task.output_name(ctx, u)))
    seen: dict[str, Unit] = {}
    for u in units:
        if u.name in seen:
            raise SettingError(
                f"two outputs would be named {u.name} ({seen[u.name].item.relpath} and {u.item.relpath}); "
                "rename one of the inputs"
            )
        seen[u.name] = u
    ctx.extra["units"] = units
    roots = args.input if task.resumable else ctx.extra.get("input_paths", [])  # a path, or several (enhance)
    out = check_output_dir(args.out, roots, [u.name for u in units] + task.other_outputs(ctx))
    if out.exists() and not out.is_dir():
        raise SettingError(f"`out` {args.out} exists and is not a folder")
    return ctx


# ----------------------------------------------------------------------------- 5. outputs


def run(ctx: Context, *, engine: str = "local", workers=None, restart: bool = False, progress=None,
        argv=None) -> int:
    """Run a prepared, loaded job to the end (or to a stop signal); returns the exit status."""
    from tqdm.auto import tqdm

    from boomerang.imageio import atomic_write_bytes
    from boomerang.tasks.journal import JobFolder
    from boomerang.stopping import NoStop, Stop, StopRequested

    task = ctx.task
    folder = JobFolder(ctx.out) if task.resumable else None
    ctx.block_size = ctx.extra.get("block_size") or default_block_size(ctx)
    if folder is not None and folder.exists() and not restart and not ctx.settings.batch_size:
        ctx.block_size = int(folder.read_job().get("block_size") or ctx.block_size)  # continue as started
    if folder is not None and folder.exists() and not restart and engine == "local":
        _continue_with_threads(ctx, folder.read_job().get("threads"))
    blocks = blocks_of(ctx)
    done: dict[int, dict] = {}
    if folder is not None:
        if restart:
            _remove_outputs(ctx)
        other = ["metadata.jsonl", "metadata.csv", REPORT_NAME, *task.other_outputs(ctx)]
        done = folder.start(job_definition(ctx), restart=restart, other_outputs=other)
    todo = [b for b in sorted(blocks) if b not in done]
    show = sys.stderr.isatty() if progress is None else bool(progress)
    total = len(ctx.extra["units"])
    bar = tqdm(total=total, initial=sum(len(blocks[b]) for b in done), unit="img", desc=task.name,
               disable=not show, file=sys.stderr, dynamic_ncols=True)
    t0 = time.perf_counter()

    def finished(entry: dict) -> None:
        if folder is not None:
            folder.append(entry)
        done[entry["block"]] = entry

    stopped = None
    try:
        with Stop(task.name) if task.resumable else NoStop() as stop:
            if engine == "ray":
                from boomerang.tasks.ray_engine import run_blocks

                run_blocks(ctx, todo, blocks, finished, bar, stop, workers=workers)
            else:
                for b in todo:
                    try:
                        entry = process_block(ctx, b, blocks[b], progress=bar.update, stop=stop)
                    except StopRequested:
                        break  # the block is not journalled: the next run redoes it
                    finished(entry)
                    if stop.signum is not None:
                        break
            stopped = stop.signum
    except BaseException:
        if not task.resumable:  # sample: take back the images this run wrote (no image without metadata)
            _take_back(ctx)
        raise
    finally:
        bar.close()
    if stopped is not None and len(done) < len(blocks):
        left = total - sum(len(blocks[b]) for b in done)
        print(f"boomerang {task.name}: stopped; {left} of {total} outputs still to make. Rerun the same command to continue.",
              file=sys.stderr)
        return EXIT_INTERRUPTED

    records = [r for b in sorted(done) for r in done[b]["records"]]
    skipped = {}
    for b in sorted(done):
        for s in done[b]["skipped"]:
            skipped.setdefault(s["file"], s["reason"])
    skipped_list = [{"file": f, "reason": r} for f, r in sorted(skipped.items())]
    try:
        task.finish(ctx, records, skipped_list)
    except BaseException:
        if not task.resumable:
            _take_back(ctx)
        raise
    n_items = len(ctx.items)
    if task.resumable:
        report = {
            "task": task.name, "total": n_items, "done": n_items - len(skipped_list), "skipped": len(skipped_list),
            "outputs": len(records), "skipped_files": skipped_list,
        }
        atomic_write_bytes(ctx.out / REPORT_NAME, _dumps(report))
        made = sum(len(done[b]["records"]) for b in todo if b in done)  # outputs made by this run, not before
        made_text = ("all made before, none now" if not made else
                     f"{made / max(time.perf_counter() - t0, 1e-9):.2f} outputs/s" if made == len(records) else
                     f"{made} made now, {made / max(time.perf_counter() - t0, 1e-9):.2f} outputs/s")
        print(f"boomerang {task.name}: done {n_items - len(skipped_list)}, skipped {len(skipped_list)}, total "
              f"{n_items} ({len(records)} outputs in {ctx.out}, {made_text})"
              + (f"; skipped files are listed in {ctx.out / REPORT_NAME}" if skipped_list else ""), file=sys.stderr)
        return EXIT_SKIPPED if skipped_list else EXIT_OK
    return EXIT_OK


def _continue_with_threads(ctx: Context, started) -> None:
    """A resumed job keeps the CPU thread count it started with (job.json ``threads``): float sums
    split by thread, so another count may move a written pixel by one grey level. The default
    count follows the idle cores, so without ``--threads`` the job's own is used; an explicit other
    ``--threads`` is honoured, with one warning line."""
    import torch

    now = torch.get_num_threads()
    if started is None or int(started) == now or str(ctx.settings.device).startswith("cuda"):
        return
    if ctx.extra.get("threads_given"):
        print(f"boomerang: warning: this job started with --threads {started}; continuing with {now} "
              "may change written pixels by one grey level (leave --threads out to continue with "
              f"{started})", file=sys.stderr)
        return
    torch.set_num_threads(int(started))
    ctx.extra["threads"] = int(started)


def job_definition(ctx: Context) -> dict:
    """What defines a job (job.json): a rerun must match it to continue."""
    from boomerang import __version__

    s = ctx.settings.to_dict()
    s.pop("batch_size", None)  # the resolved block size below is what matters
    return {
        "task": ctx.task.name,
        "settings": s,
        "options": ctx.options,
        # The weights and the noise schedule define the outputs; where they were read from does not.
        "model": {"weights_sha256": getattr(ctx.model, "weights_sha256", None),
                  "scheduler_config_sha256": _sha256_json(getattr(ctx.model, "scheduler_config", {}))},
        "input": {"folder": str(Path(ctx.layout.root).resolve()), "layout": ctx.layout.kind,
                  "items": len(ctx.items), "digest": ctx.layout.digest()},
        "block_size": ctx.block_size,
        "boomerang_version": __version__,
        "threads": _torch_threads(),  # not compared on resume: see _continue_with_threads
    }


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def _sha256_json(obj) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _remove_outputs(ctx: Context) -> None:
    for name in [u.name for u in ctx.extra["units"]] + ["metadata.jsonl", "metadata.csv", REPORT_NAME]:
        try:
            (ctx.out / name).unlink()
        except OSError:
            pass


def _take_back(ctx: Context) -> None:
    """Remove this job's outputs and the folders left empty (a failed task that is not resumable)."""
    _remove_outputs(ctx)
    folders = {(ctx.out / u.name).parent for u in ctx.extra["units"]} | {ctx.out}
    for d in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        try:
            d.rmdir()  # only if empty
        except OSError:
            pass


def run_task(task: Task, args) -> int:
    """The whole command: prepare, load, run. Returns the exit status; raises SettingError /
    ValueError for bad usage (the CLI turns them into one line and exit status 2)."""
    from boomerang.threads import resolve_threads

    threads = resolve_threads(getattr(args, "threads", None))  # default: the cores idle now
    workers = None
    if getattr(args, "workers", None) is not None:
        from boomerang.levels import check_positive_int

        workers = check_positive_int(args.workers, "workers")
    engine = getattr(args, "engine", "local")
    if engine == "ray":
        from boomerang.tasks.ray_engine import check_available

        check_available()
    ctx = prepare(task, args)
    load(ctx, threads)
    ctx.extra["threads"] = threads
    ctx.extra["threads_given"] = getattr(args, "threads", None) is not None
    ctx.extra["block_size"] = task.block_size(ctx)
    ctx.extra["args"] = args
    return run(ctx, engine=engine, workers=workers, restart=bool(getattr(args, "restart", False)),
               progress=getattr(args, "progress", None), argv=getattr(args, "_argv", None))
