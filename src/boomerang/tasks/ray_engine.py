"""``--engine ray``: the runner's blocks through Ray Data (optional extra ``ray``).

The same :func:`boomerang.tasks.blocks.write_block` (and so the one block function,
:func:`~boomerang.tasks.blocks.sample_block`) runs inside a pool of Ray actors: ``ray.data.from_items`` of the unfinished block indices, then
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

__all__ = ["check_available", "BlockActor", "run_blocks", "TASKS_IN_FLIGHT_PER_ACTOR"]

#: Blocks handed to each actor ahead of time (Ray Data's ``ActorPoolStrategy(max_tasks_in_flight_per_actor)``;
#: its default is 2). Ray Data's scheduling loop waits up to 100 ms for every task in flight before it hands
#: out more, so with 2 an actor whose blocks take less than ~50 ms sat idle between them (level 0 here: 20 ms
#: per block of 64 and 13-19 ms idle). Queued blocks have not started: an actor or node that is lost redoes
#: only the block it was running, and Ray retries the queued ones on the restarted actor. The price: at the
#: end of a job an actor may still hold up to this many blocks while another is idle (no work stealing).
TASKS_IN_FLIGHT_PER_ACTOR = 8


def check_available() -> None:
    """Raise SettingError unless Ray Data can be imported."""
    try:
        import ray.data  # noqa: F401
    except ImportError:
        raise SettingError(
            "`engine` ray needs Ray Data, which is not installed: pip install -e \".[ray]\" -c constraints.txt (from a checkout) "
            "(or use `engine` local)"
        ) from None


def _portable(job) -> bytes:
    """The job without its model (each actor loads its own), pickled for the actors."""
    import copy

    from boomerang.tasks.job import OutputList

    light = copy.copy(job)
    light.model = None
    light.inputs = []  # what an up-front check kept (sample's thumbnails): not needed to sample
    light.outputs = OutputList(light)  # made on demand from the light job's items
    return pickle.dumps(light)


class BlockActor:
    """A Ray Data callable class: loads the model once, then samples and writes whole blocks.

    Args:
        payload: the pickled job (:func:`_portable`).
        threads: torch CPU threads in this actor.
    """

    def __init__(self, payload: bytes, threads: int | None = None):
        from boomerang.tasks.blocks import InputCache, attach_model

        self.job = pickle.loads(payload)
        if str(self.job.settings.device).startswith("cuda"):
            # Ray gives each actor its own GPU as CUDA_VISIBLE_DEVICES: it is cuda:0 here.
            self.job.settings = self.job.settings.replace(device="cuda")
        attach_model(self.job, threads)
        self.cache = InputCache(self.job)

    def __call__(self, batch: dict) -> dict:
        from boomerang.tasks.blocks import block_outputs, write_block

        entries = []
        for b in batch["block"]:
            outputs = block_outputs(self.job, int(b))
            entries.append(json.dumps(write_block(self.job, int(b), outputs, cache=self.cache)))
        return {"entry": entries}


def run_blocks(job, todo, finished, progress, stop, *, workers: int | None = None) -> None:
    """Run the blocks ``todo`` on Ray actors; ``finished(entry)`` journals each one as it arrives.

    Args:
        job: the planned, loaded :class:`~boomerang.tasks.job.Job` (the driver's model is not shipped).
        todo: block indices still to do (an iterable; only the indices travel, each actor reads
            its block's items from the job folder).
        finished: called with each block's journal entry.
        progress: the job's :class:`~boomerang.tasks.progress.JobProgress` (moved per finished block).
        stop: an object whose ``signum`` becomes non-None on SIGINT/SIGTERM: no new results are
            waited for; blocks in flight are redone on the next run.
        workers: number of actors (default: one per GPU on CUDA, else 1).
    """
    import logging

    import ray

    from boomerang.tasks.blocks import block_length

    todo = [int(b) for b in todo]  # 8 bytes per unfinished block
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
        cuda = str(job.settings.device).startswith("cuda")
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("GPU", 1))) if cuda else 1
        threads = job.threads
        if threads is None and not cuda:
            threads = max(1, int(ray.cluster_resources().get("CPU", 1)) // workers)
        ctx_data = ray.data.DataContext.get_current()
        ctx_data.enable_progress_bars = False
        ds = ray.data.from_items([{"block": b} for b in todo], override_num_blocks=len(todo))
        ds = ds.map_batches(
            BlockActor,
            fn_constructor_kwargs={"payload": _portable(job), "threads": threads},
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=TASKS_IN_FLIGHT_PER_ACTOR),
            num_gpus=1 if cuda else 0,
            num_cpus=0 if cuda else max(1, threads or 1),
        )
        for row in ds.iter_rows():
            entry = json.loads(row["entry"])
            finished(entry)
            progress.finished(block_length(job, entry["block"]))
            if stop.signum is not None:
                break
    finally:
        if started:
            ray.shutdown()
