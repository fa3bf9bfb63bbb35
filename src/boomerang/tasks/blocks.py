"""One block of a dataset job: load the model, read and fit each input, sample, write (the executor's unit of work).

Both engines (local, :mod:`.ray_engine`) call :func:`process_block`; torch-free at import.
"""

from __future__ import annotations

from pathlib import Path

from boomerang.tasks.base import Context, Read, Task, Unit

__all__ = ["load", "model_description", "default_block_size", "read_item", "process_block", "blocks_of"]


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
    :class:`~boomerang.stopping.Stop`), where a stop signal abandons the block
    by raising ``StopRequested``; writes never do.

    Returns:
        ``{"block", "written": [names], "records": [rows], "skipped": [{"file", "reason"}]}``.

    Raises:
        ImageInputError: an unreadable input, for tasks that are not resumable
            (resumable tasks skip it and list it under ``skipped``).
    """
    import numpy as np

    from boomerang import core, imageio
    from boomerang.stopping import NoStop

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
