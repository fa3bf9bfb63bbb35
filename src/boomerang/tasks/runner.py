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

import csv
import io
import json
import sys
import time
from pathlib import Path

from boomerang.errors import SettingError
from boomerang.tasks.base import Context, Read, Task, Unit

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
    roots = [args.input] if task.resumable else ctx.extra.get("input_paths", [])
    out = check_output_dir(args.out, roots, [u.name for u in units] + task.other_outputs(ctx))
    if out.exists() and not out.is_dir():
        raise SettingError(f"`out` {args.out} exists and is not a folder")
    return ctx


# ----------------------------------------------------------------------------- 2. load


def load(ctx: Context, threads=None) -> None:
    """Set torch's CPU threads (``threads``: None = torch's choice) and load the model into ``ctx``."""
    from boomerang import jobs

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    s = ctx.settings
    ctx.model = jobs.load(s.model, device=s.device, dtype=s.dtype, allow_pickle=s.allow_pickle, kernels=s.kernels)


def model_description(ctx: Context) -> dict:
    """The model as recorded in job.json / metadata: id, source, kind, T, channels, weights sha256."""
    model = ctx.model
    s = ctx.settings
    source = str(getattr(model, "source", s.model))
    source = str(Path(source).resolve()) if Path(source).is_dir() else source
    hub_id = s.model if s.model and not Path(s.model).expanduser().exists() else None
    return {
        # "id": the hub id as given, else the local folder as an absolute path;
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


def default_block_size(ctx: Context) -> int:
    """``settings.batch_size``, else the automatic batch for the model's own input size."""
    from boomerang.batching import auto_batch_size

    if ctx.settings.batch_size:
        return int(ctx.settings.batch_size)
    native = getattr(ctx.model, "native_size", None)
    shape = (int(ctx.model.image_channels), native, native) if native else None
    return auto_batch_size(len(ctx.extra["units"]), ctx.settings.device, ctx.model, shape)


# ----------------------------------------------------------------------------- 4. one block


def read_item(ctx: Context, item) -> Read:
    """Read, transform and fit (task hooks) one item. Raises ``ImageInputError`` for a bad file."""
    import dataclasses

    from boomerang import imageio, jobs

    plain = type(ctx.task).transform is Task.transform and type(ctx.task).fit is Task.fit
    if plain:  # no task hooks: large files are decoded at a reduced size, with bounded memory
        background, channels, native, multiple, vae_width = jobs.fit_args_for(ctx.settings, ctx.model)
        loaded, reference, fitted = imageio.read_for_model(item.path, channels=channels, native_size=native,
                                                           multiple_of=multiple, background=background,
                                                           vae_width=vae_width)
    else:
        loaded = imageio.read_image(item.path, background=ctx.settings.background_rgb)
        pixels = ctx.task.transform(ctx, item, loaded.pixels)
        if pixels is not loaded.pixels:
            loaded = dataclasses.replace(loaded, pixels=pixels, size=(int(pixels.shape[1]), int(pixels.shape[0])))
        reference, fitted = ctx.task.fit(ctx, loaded)
    imageio.warn_fit(loaded, fitted, int(ctx.model.image_channels))
    return Read(loaded, reference, fitted)


def process_block(ctx: Context, block: int, units: list[Unit], progress=None, stop=None) -> dict:
    """Sample and write one block; returns its journal entry.

    Every output is written atomically (``imageio.save_image``: PNG, no metadata)
    before the entry is returned; the caller appends the entry to the journal.
    Reading and sampling run inside ``stop.interruptible()`` (a
    :class:`~boomerang.tasks.stopping.Stop`), where a stop signal abandons the block
    by raising ``StopRequested``; writes never do.

    Returns:
        ``{"block", "written": [names], "records": [rows], "skipped": [{"file", "reason"}]}``.

    Raises:
        ImageInputError: an unreadable input, for tasks that are not resumable
            (resumable tasks skip it and list it under ``skipped``).
    """
    import numpy as np

    from boomerang import core, imageio
    from boomerang.tasks.stopping import NoStop

    stop = stop or NoStop()
    reads: dict[int, Read] = {}
    skipped = []
    with stop.interruptible():
        for u in units:
            if u.item.index in reads or any(s["file"] == u.item.relpath for s in skipped):
                continue
            try:
                reads[u.item.index] = read_item(ctx, u.item)
            except imageio.ImageInputError as exc:
                if not ctx.task.resumable:
                    raise
                skipped.append({"file": u.item.relpath, "reason": str(exc)})
    todo = [u for u in units if u.item.index in reads]
    # One sampling call per (plan, shape the model sees), in unit order.
    groups: dict[tuple, list[Unit]] = {}
    for u in todo:
        groups.setdefault((u.start, reads[u.item.index].fitted.pixels.shape), []).append(u)
    written, records = [], []
    made: set = set()
    for (k, _shape), group in groups.items():
        plan = ctx.plans[k]
        if core.returns_input_pixels(ctx.model, plan):  # level 0 on a pixel model: the input itself, bit-exact
            outs = [reads[u.item.index].reference for u in group]
            output = None
        else:
            x0 = np.stack([reads[u.item.index].fitted.pixels for u in group])
            gens = [_generator(ctx.task.seed(ctx, u.item, u.sample)) for u in group]
            prompts = None
            if bool(getattr(ctx.model, "takes_prompt", False)):
                per_item = [ctx.task.prompt(ctx, u.item) for u in group]
                if any(p is not None for p in per_item):
                    prompts = [ctx.settings.prompt if p is None else p for p in per_item]
            with stop.interruptible():
                samples, output = ctx.task.sample_batch(ctx, x0, gens, plan, prompts)
            # one at a time, as the 8-bit values written (a large output is never held as floats)
            outs = (reads[v.item.index].fitted.restore(arr, dtype=np.uint8) for v, arr in zip(group, samples))
        for u, pix in zip(group, outs):
            if pix.ndim == 2:
                pix = pix[..., None]
            path = ctx.out / u.name
            if path.parent not in made:
                path.parent.mkdir(parents=True, exist_ok=True)
                made.add(path.parent)
            imageio.save_image(pix, path)
            written.append(u.name)
            rec = ctx.task.record(ctx, u, plan, output, reads[u.item.index], pix)
            records.append({"_unit": u.index, **rec})
            if progress is not None:
                progress(1)
    return {"block": block, "written": written, "records": records, "skipped": skipped}


def _generator(seed: int):
    import torch

    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    return g


def blocks_of(ctx: Context) -> dict[int, list[Unit]]:
    """``{block index: units}``: unit u is in block u.index // block_size."""
    blocks: dict[int, list[Unit]] = {}
    for u in ctx.extra["units"]:
        blocks.setdefault(u.index // ctx.block_size, []).append(u)
    return blocks


# ----------------------------------------------------------------------------- 5. outputs


def write_metadata_file(out: Path, records: list[dict], fmt: str = "jsonl") -> Path:
    """Write the output metadata file (``metadata.jsonl`` or ``metadata.csv``, the Hugging
    Face imagefolder convention: a ``file_name`` column plus the carried columns), atomically."""
    from boomerang.imageio import atomic_write_bytes

    rows = [{k: v for k, v in r.items() if k != "_unit"} for r in sorted(records, key=lambda r: r["_unit"])]
    if fmt == "csv":
        columns: list[str] = []
        for r in rows:
            columns += [k for k in r if k not in columns]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if r.get(k) is None else r.get(k) for k in columns})
        data, name = buf.getvalue().encode(), "metadata.csv"
    else:
        data = "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in rows).encode()
        name = "metadata.jsonl"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / name, data)
    return out / name


# ----------------------------------------------------------------------------- the whole job


def run(ctx: Context, *, engine: str = "local", workers=None, restart: bool = False, progress=None,
        argv=None) -> int:
    """Run a prepared, loaded job to the end (or to a stop signal); returns the exit status."""
    from tqdm.auto import tqdm

    from boomerang.imageio import atomic_write_bytes
    from boomerang.tasks.journal import JobFolder
    from boomerang.tasks.stopping import NoStop, Stop, StopRequested

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
