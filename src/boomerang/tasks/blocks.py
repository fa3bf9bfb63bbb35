"""One block of a job: read, fit, sample, restore (:func:`sample_block`), then write (:func:`write_block`).

:func:`sample_block` is the one block function: the API (:func:`boomerang.api.run`),
the runner's local engine, its Ray actors (:mod:`.ray_engine`) and the page all
sample through it. It reads nothing but the block's inputs and writes nothing;
:func:`write_block` adds the atomic writes and the records of a journalled block.
Torch-free at import.

Reading the block's inputs (:func:`read_item`, :class:`InputCache`) lives in
:mod:`.block_inputs` (its names are re-exported here).
"""

from __future__ import annotations

import dataclasses
import os
import contextlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, NamedTuple

from boomerang.tasks import job_plan
from boomerang.tasks.block_inputs import INPUT_CACHE_BYTES, InputCache, identity_fit, identity_only, read_item
from boomerang.tasks.job import DecodedInput, Job, OutputFile

__all__ = ["attach_model", "model_description", "default_block_size", "read_item", "identity_fit", "identity_only",
           "InputCache", "INPUT_CACHE_BYTES", "BlockSample", "sample_block", "write_block", "blocks_of", "block_count",
           "block_outputs", "block_length"]

#: Threads that write a block's PNGs (encode, fsync, rename) while the next output is restored;
#: 0 (the default): each output is written in the block's own thread as soon as it is made. On two
#: cores one writer thread cost 25-60% more CPU per item than none, and four 40-70% more (the GIL
#: is handed between the threads on every encode and file call; BENCHMARKS.md section 11, round 5).
WRITE_THREADS = 0
#: Outputs larger than this (uint8 bytes) are written at once, not queued for the writer threads.
BACKGROUND_WRITE_BYTES = 16 << 20


def attach_model(job: Job, threads=None) -> None:
    """Set torch's CPU threads (``threads``: None = torch's choice) and load the job's model into ``job.model``."""
    from boomerang.sampling import load

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    s = job.settings
    job.model = load(s.model, device=s.device, dtype=s.dtype, allow_pickle=s.allow_pickle, kernels=s.kernels,
                     cpu_offload=s.cpu_offload)


def model_description(job: Job) -> dict:
    """The model as recorded in job.json / metadata: id, source, kind, T, channels, weights sha256."""
    model = job.model
    s = job.settings
    source = str(getattr(model, "source", s.model))
    source = str(Path(source).resolve()) if Path(source).is_dir() else source
    hub_id = s.model if s.model and not Path(s.model).expanduser().exists() else None
    return {
        # "id": the hub id as given, else the local folder as an absolute path;
        # "source": the folder the weights were read from (for a hub id, the local cache snapshot).
        "id": hub_id or source,
        "source": source,
        "kind": model.kind,
        "family": getattr(getattr(model, "info", None), "family", None) or None,
        "num_train_timesteps": int(model.num_train_timesteps),
        "image_channels": int(model.image_channels),
        "native_size": getattr(model, "native_size", None),
        "size_multiple": getattr(model, "size_multiple", None),
        "takes_prompt": bool(getattr(model, "takes_prompt", False)),
        "weights_sha256": getattr(model, "weights_sha256", None),
    }


def default_block_size(job: Job) -> int:
    """``settings.batch_size``, else the automatic batch for the model's own input size."""
    from boomerang.batching import auto_batch_size

    if job.settings.batch_size:
        return int(job.settings.batch_size)
    native = getattr(job.model, "native_size", None)
    shape = (int(job.model.image_channels), native, native) if native else None
    return auto_batch_size(len(job.outputs), job.settings.device, job.model, shape)


class BlockSample(NamedTuple):
    """One sampled output of a block: the output, its pixels (restored to the input's size:
    uint8 or float32 (H, W, C)), the input as read, the plan and the batch's ``BoomerangOutput``
    (``None`` for an identity output)."""

    output: OutputFile
    pixels: Any
    decoded: DecodedInput
    plan: Any
    result: Any


def _generator(seed: int):
    import torch

    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    return g


def sample_block(job: Job, outputs: list[OutputFile], *, cache: InputCache | None = None, dtype=None,
                 skipped: list | None = None, progress=None, stop=None) -> Iterator[BlockSample]:
    """Sample one block: read and fit its inputs (task hooks), sample each group of equal plan and
    model-input shape as one batch (``task.sample_batch``), restore each output to its input's size.

    Args:
        job: a planned job with its model.
        outputs: the block's outputs, in job order (:func:`blocks_of`).
        cache: decoded inputs kept across blocks (default: none kept).
        dtype: ``numpy.uint8`` (the values written) or ``numpy.float32`` (default) for the pixels.
        skipped: resumable tasks: unreadable inputs are appended here as ``{"file", "reason"}``
            (paths relative to the input folder) and their outputs left out; otherwise raised.
        progress: a :class:`~boomerang.tasks.progress.JobProgress` moved after each denoiser step.
        stop: a :class:`~boomerang.stopping.Stop`: a stop signal while reading or sampling
            abandons the block (``StopRequested``).

    Yields:
        :class:`BlockSample` objects in output order, restored one at a time (a large output is
        never held as floats when ``dtype`` is uint8).

    Raises:
        ImageInputError: an unreadable input, when ``skipped`` is None.
    """
    import numpy as np

    from boomerang import core, imageio
    from boomerang.stopping import NoStop

    stop = stop or NoStop()
    cache = cache or InputCache(job, 0)
    dtype = np.float32 if dtype is None else dtype
    reads: dict[int, DecodedInput] = {}
    bad: set[int] = set()
    identity_u8 = np.dtype(dtype) == np.uint8
    with stop.interruptible():
        for o in outputs:
            if o.item.index in reads or o.item.index in bad:
                continue
            try:
                reads[o.item.index] = cache.get(o.item, identity_u8)
            except imageio.ImageInputError as exc:
                if skipped is None:
                    raise
                bad.add(o.item.index)
                reason = str(exc).replace(str(o.item.path), o.item.relpath) if o.item.path is not None else str(exc)
                skipped.append({"file": o.item.relpath, "reason": reason})
    todo = [o for o in outputs if o.item.index in reads]
    groups: dict[tuple, list[OutputFile]] = {}  # one sampling call per (plan, shape the model sees)
    for o in todo:
        groups.setdefault((o.level_index, reads[o.item.index].fitted.pixels.shape), []).append(o)
    made: dict[int, tuple] = {}  # output index -> (model-size array or None for the identity, result)
    plans: dict[int, Any] = {}  # output index -> the plan it ran with (size-dependent models: its size's)
    for (k, shape), group in groups.items():
        chw = (shape[-1], *shape[:2]) if len(shape) == 3 else (1, *shape)
        plan = job_plan.plan_for_image(job, k, job.task.plan_shape(job, chw))
        plans.update({o.index: plan for o in group})
        if core.returns_input_pixels(job.model, plan):  # level 0 on a pixel model: the input itself, bit-exact
            made.update({o.index: (None, None) for o in group})
            continue
        x0 = (np.stack([reads[o.item.index].fitted.pixels for o in group]) if len(group) > 1  # one item: no copy
              else reads[group[0].item.index].fitted.pixels[None])
        gens = [_generator(job.task.seed(job, o.item, o.sample)) for o in group]
        prompts = None
        if bool(getattr(job.model, "takes_prompt", False)):
            per_item = [job.task.prompt(job, o.item) for o in group]
            if any(p is not None for p in per_item):
                prompts = [job.settings.prompt if p is None else p for p in per_item]
        step = None
        if progress is not None:
            moved = [0.0]

            def step(done, total, _n=len(group), _moved=moved):
                now = _n * done / total
                progress.advance(now - _moved[0])
                _moved[0] = now
        with stop.interruptible():
            samples, result = job.task.sample_batch(job, x0, gens, plan, prompts, progress=step)
        made.update({o.index: (arr, result) for o, arr in zip(group, samples)})
    # A gray input comes back gray from a colour pixel model: its output's luminance, and the
    # reference (three equal channels) as one channel.
    gray_back = int(job.model.image_channels) == 3 and bool(getattr(job.model, "pixel_space", False))
    for o in todo:
        decoded = reads[o.item.index]
        arr, result = made.pop(o.index)
        gray = gray_back and decoded.loaded.is_grayscale and decoded.reference.shape[-1] == 3
        if gray:
            decoded = dataclasses.replace(decoded, reference=decoded.reference[..., :1])
            arr = None if arr is None else imageio.to_model_channels(arr, 1)
        if arr is None:
            pix = decoded.reference
            if np.dtype(dtype) == np.float32 and pix.dtype == np.uint8:  # large 8-bit inputs are kept as uint8
                pix = pix.astype(np.float32) / np.float32(255)
        else:
            pix = decoded.fitted.restore(arr, dtype=dtype)
        if pix.ndim == 2:
            pix = pix[..., None]
        yield BlockSample(o, pix, decoded, plans[o.index], result)


def write_block(job: Job, block: int, outputs: list[OutputFile], *, cache: InputCache | None = None,
                progress=None, stop=None) -> dict:
    """Sample one block (``task.sample_outputs``, by default :func:`sample_block`) and write it; returns its
    journal entry.

    Every output is written atomically (``imageio.save_image``: PNG, no metadata; by
    the block's thread, or by :data:`WRITE_THREADS` threads in order of submission) before the entry is returned; the
    caller appends the entry to the journal. Reading and sampling can be interrupted by
    ``stop``; writes cannot (a stop waits for the writes in flight).

    Returns:
        ``{"block", "written": [names], "records": [rows], "skipped": [{"file", "reason"}]}``.
    """
    import numpy as np

    from boomerang import imageio

    from boomerang.tasks.shards import is_sharded, staged_name

    skipped: list = [] if job.task.resumable else None
    written, records, made = [], [], set()
    staged = is_sharded(job)  # shards are written whole at the end; blocks stage their PNGs
    pending: deque = deque()
    out = str(job.out)  # output paths as strings: no Path objects per output

    def finish_oldest() -> None:
        pending.popleft().result()  # re-raises a failed write (OutputWriteError)
        if progress is not None:
            progress.finished(1)

    # Writes (PNG encode, fsync) run in the block's thread (WRITE_THREADS 0) or in writer threads
    # while the next output is restored. Leaving the `with` waits for every write in flight, also
    # when a stop or an error ends the block early: nothing half-written.
    with ThreadPoolExecutor(WRITE_THREADS) if WRITE_THREADS else contextlib.nullcontext() as pool:
        for s in job.task.sample_outputs(job, outputs, sample_block, cache=cache, dtype=np.uint8, skipped=skipped,
                                         progress=progress, stop=stop):
            name = staged_name(s.output.name) if staged else s.output.name
            path = os.path.join(out, name)
            sub = name.rpartition("/")[0]  # names are relative, '/'-separated
            if sub not in made:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                made.add(sub)
            if pool is None or s.pixels.nbytes > BACKGROUND_WRITE_BYTES:  # inline, or large: written at once
                while pending:
                    finish_oldest()
                imageio.save_image(s.pixels, path)
                if progress is not None:
                    progress.finished(1)
            else:
                while len(pending) >= 2 * WRITE_THREADS:
                    finish_oldest()
                pending.append(pool.submit(imageio.save_image, s.pixels, path))
            written.append(name)
            rec = job.task.record(job, s.output, s.plan, s.result, s.decoded, s.pixels)
            records.append({"_unit": s.output.index, **rec})
        while pending:
            finish_oldest()
    if cache is not None and outputs:
        cache.done_with(outputs[-1].index)
    return {"block": block, "written": written, "records": records, "skipped": skipped or []}


def block_count(job: Job) -> int:
    """The number of blocks of the job: ``ceil(len(outputs) / block_size)``."""
    return -(-len(job.outputs) // job.block_size)


def block_outputs(job: Job, block: int) -> list[OutputFile]:
    """The outputs of block ``block``: indices ``block * block_size`` up to the next block's first."""
    start = block * job.block_size
    outputs = job.outputs
    if hasattr(outputs, "range"):
        return list(outputs.range(start, start + job.block_size))
    return list(outputs[start:start + job.block_size])


def block_length(job: Job, block: int) -> int:
    """How many outputs block ``block`` holds (the last one may be short)."""
    return max(0, min(job.block_size, len(job.outputs) - block * job.block_size))


def blocks_of(job: Job) -> dict[int, list[OutputFile]]:
    """``{block index: outputs}`` of every block (in memory: for small in-memory jobs, the API)."""
    return {b: block_outputs(job, b) for b in range(block_count(job))}
