"""``--engine ray``: the runner's blocks through Ray Data (optional extra ``ray``).

The same :func:`boomerang.tasks.blocks.process_block` runs inside a pool of Ray
actors: ``ray.data.from_items`` of the unfinished block indices, then
``map_batches`` with a callable class (:class:`BlockActor`) that loads the model
once per actor (``num_gpus=1`` per actor on CUDA) and, for each block, samples
it and writes its files with the same atomic writer. Each actor returns the
block's journal entry; the driver appends it to the job's journal as results
stream in (in any order). A block's content, its seeds and its batch are fixed
by the job (not by the worker that runs it), so the outputs are byte-identical
to ``--engine local``.

Attaching to a cluster: set ``RAY_ADDRESS`` (e.g. ``ray://head:10001`` or
``auto``); otherwise a local Ray instance is started for the job and shut down
after it. On a cluster, OUT must be a folder every node can write (a shared
filesystem), and the model folder must be readable on every node.
"""

from __future__ import annotations

import json
import os
import pickle

from boomerang.errors import SettingError

__all__ = ["check_available", "BlockActor", "run_blocks"]


def check_available() -> None:
    """Raise SettingError unless Ray Data can be imported."""
    try:
        import ray.data  # noqa: F401
    except ImportError:
        raise SettingError(
            "`engine` ray needs Ray Data, which is not installed: pip install -e \".[ray]\" (from a checkout) "
            "(or use `engine` local)"
        ) from None


def _portable(ctx) -> bytes:
    """The job's context without the model and the parsed arguments, pickled for the actors."""
    import copy

    light = copy.copy(ctx)
    light.model = None
    light.extra = {k: v for k, v in ctx.extra.items() if k not in ("args", "job")}
    return pickle.dumps(light)


class BlockActor:
    """A Ray Data callable class: loads the model once, then samples and writes whole blocks.

    Args:
        payload: the pickled context (:func:`_portable`).
        threads: torch CPU threads in this actor.
    """

    def __init__(self, payload: bytes, threads: int | None = None):
        from boomerang.tasks.blocks import blocks_of, load

        self.ctx = pickle.loads(payload)
        if str(self.ctx.settings.device).startswith("cuda"):
            # Ray gives each actor its own GPU as CUDA_VISIBLE_DEVICES: it is cuda:0 here.
            self.ctx.settings = self.ctx.settings.replace(device="cuda")
        load(self.ctx, threads)
        self.blocks = blocks_of(self.ctx)

    def __call__(self, batch: dict) -> dict:
        from boomerang.tasks.blocks import process_block

        entries = []
        for b in batch["block"]:
            entries.append(json.dumps(process_block(self.ctx, int(b), self.blocks[int(b)])))
        return {"entry": entries}


def run_blocks(ctx, todo: list[int], blocks: dict, finished, bar, stop, *, workers: int | None = None) -> None:
    """Run the blocks ``todo`` on Ray actors; ``finished(entry)`` journals each one as it arrives.

    Args:
        ctx: the prepared, loaded job context (the driver's model is not shipped).
        todo: block indices still to do.
        blocks: ``{block: units}``.
        finished: called with each block's journal entry.
        bar: the progress bar (``bar.update(n)``).
        stop: an object whose ``signum`` becomes non-None on SIGINT/SIGTERM: no new results are
            waited for; blocks in flight are redone on the next run.
        workers: number of actors (default: one per GPU on CUDA, else 1).
    """
    import logging

    import ray

    if not todo:
        return
    for name in ("ray", "ray.data"):  # the runner's own bar and summary line are what the user reads
        logging.getLogger(name).setLevel(logging.WARNING)
    started = False
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS") or None
        kwargs = {} if address else {"num_cpus": os.cpu_count() or 1}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                 logging_level=logging.WARNING, **kwargs)
        started = True
    try:
        cuda = str(ctx.settings.device).startswith("cuda")
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("GPU", 1))) if cuda else 1
        threads = ctx.extra.get("threads")
        if threads is None and not cuda:
            threads = max(1, int(ray.cluster_resources().get("CPU", 1)) // workers)
        ctx_data = ray.data.DataContext.get_current()
        ctx_data.enable_progress_bars = False
        ds = ray.data.from_items([{"block": b} for b in todo], override_num_blocks=len(todo))
        ds = ds.map_batches(
            BlockActor,
            fn_constructor_kwargs={"payload": _portable(ctx), "threads": threads},
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_gpus=1 if cuda else 0,
            num_cpus=0 if cuda else max(1, threads or 1),
        )
        for row in ds.iter_rows():
            entry = json.loads(row["entry"])
            finished(entry)
            bar.update(len(blocks[entry["block"]]))
            if stop.signum is not None:
                break
    finally:
        if started:
            ray.shutdown()
