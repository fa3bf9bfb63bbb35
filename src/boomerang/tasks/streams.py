"""Sorting a stream of rows larger than memory (torch-free): :func:`external_sorted`.

Used where a job's output must come in another order than the journal's (``anonymise``: the
metadata file in opaque-name order, the link file in source order): rows are sorted in runs
of at most ``run_rows`` in memory, each run is written (pickled) to a temporary file, and the
runs are merged (``heapq.merge``), so memory is bounded by one run whatever the job's size.
"""

from __future__ import annotations

import heapq
import pickle
import tempfile
from pathlib import Path

__all__ = ["external_sorted", "Replay", "RUN_ROWS"]

#: Rows sorted in memory at a time (a few tens of MB of small dicts).
RUN_ROWS = 50_000


class Replay:
    """A re-iterable stream: each ``iter()`` calls ``make()`` for a fresh iterator (a file
    written in two passes, like a CSV whose header needs every column, reads it twice)."""

    def __init__(self, make):
        self.make = make

    def __iter__(self):
        return iter(self.make())


def _read_run(path: Path):
    with open(path, "rb") as f:
        while True:
            try:
                yield pickle.load(f)
            except EOFError:
                return


def external_sorted(rows, key, *, folder=None, run_rows: int = RUN_ROWS):
    """Yield ``rows`` sorted by ``key`` (stable), holding at most ``run_rows`` rows at a time.

    Args:
        rows: any iterable of picklable rows.
        key: the sort key of a row.
        folder: where the temporary run files go (default: the system's temporary folder); they
            are removed when the generator finishes or is closed.
        run_rows: rows per sorted run.
    """
    run: list = []
    with tempfile.TemporaryDirectory(prefix=".sort-", dir=folder) as tmp:
        runs: list[Path] = []
        for row in rows:
            run.append(row)
            if len(run) >= run_rows:
                runs.append(_spill(sorted(run, key=key), Path(tmp), len(runs)))
                run = []
        run.sort(key=key)
        if not runs:
            yield from run
            return
        runs.append(_spill(run, Path(tmp), len(runs)))
        del run
        yield from heapq.merge(*(_read_run(p) for p in runs), key=key)


def _spill(rows: list, folder: Path, n: int) -> Path:
    path = folder / f"run{n:06d}.pkl"
    with open(path, "wb") as f:
        for row in rows:
            pickle.dump(row, f, protocol=pickle.HIGHEST_PROTOCOL)
    return path
