"""The job folder of a dataset job: ``job.json`` and an append-only journal (torch-free).

``OUT/.job/job.json`` holds what defines the job: the task, the resolved
settings (the model id as given among them), the weights and scheduler-config sha256, the input layout and a digest of
the input list, and the block size. ``OUT/.job/journal.jsonl`` gets one line
per finished *block* (a fixed group of work units, see
:mod:`boomerang.tasks.runner`), appended and fsynced only after every file of
the block has been written atomically. A job killed at any moment therefore
leaves: finished blocks (in the journal, files complete), at most one block
whose files may exist but which is not in the journal (it is redone; the
files are rewritten with the same bytes), possibly a truncated last journal
line (ignored), and possibly temporary files of an interrupted atomic write
(removed by :func:`remove_temp_files` when the job starts again).

A run that cannot resume (``boomerang sample``) lists the files it is about to
write in ``OUT/.job/unfinished.json`` (:class:`UnfinishedRun`) and removes the
list once its metadata is written: a run killed on the way (SIGKILL, power
loss) leaves the list behind, and the next run into OUT first deletes the files
it names, so no image stays without its metadata.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from boomerang.errors import SettingError

__all__ = ["JOB_DIR", "JobFolder", "Journal", "JournalRecords", "UnfinishedRun", "remove_temp_files",
           "job_scratch"]

JOB_DIR = ".job"
#: What boomerang.imageio.atomic_write_bytes leaves behind when killed: ``.<name>.<random>.tmp``.
_TEMP = re.compile(r"^\..+\.[A-Za-z0-9_]+\.tmp$")


def remove_temp_files(folder: Path) -> int:
    """Delete the temporary files of interrupted atomic writes under ``folder``; returns how many."""
    n = 0
    if not folder.is_dir():
        return 0
    for p in folder.rglob(".*.tmp"):
        if p.is_file() and _TEMP.match(p.name):
            try:
                p.unlink()
                n += 1
            except OSError:
                pass
    return n


def job_scratch(job) -> Path | None:
    """``OUT/.job/scratch`` of a job whose output folder has a job folder (made if missing), else None:
    where a block's large-image work files go (the bounded paths of ``enhance`` and ``sample``), on the
    output's disk, private, emptied when the job starts again (:attr:`JobFolder.scratch`)."""
    out = getattr(job, "out", None)
    if out is None or not (Path(out) / JOB_DIR).is_dir():
        return None
    work = JobFolder(out).scratch
    work.mkdir(exist_ok=True)
    return work


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} {json.dumps(a)} (now {json.dumps(b)})")
    return out


class JobFolder:
    """``OUT/.job``: the job definition and the journal of finished blocks."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.dir = self.out / JOB_DIR
        self.job_path = self.dir / "job.json"
        self.journal_path = self.dir / "journal.jsonl"
        self.outputs_path = self.dir / "outputs.json"  # the job's files besides its samples (for restart)

    def forget(self, out_existed: bool) -> None:
        """Remove a job folder this run started, for a job refused (bad usage, e.g. a model whose
        output is not finite) before any block finished, and ``--out`` too when this run created it
        and it is empty: the corrected rerun then starts afresh instead of finding "other settings"."""
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)
        if not out_existed:
            try:
                self.out.rmdir()  # only when empty
            except OSError:
                pass

    def exists(self) -> bool:
        return self.job_path.is_file()

    def read_job(self) -> dict:
        try:
            return json.loads(self.job_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise SettingError(f"{self.job_path} cannot be read ({exc}); start over with `restart`") from None

    def start(self, definition: dict, *, restart: bool = False, other_outputs=()) -> "Journal":
        """Create the job, or check that ``definition`` matches the existing one.

        ``other_outputs``: the files the job writes besides the samples its journal lists
        (metadata files, manifests, copied originals; relative to ``out``), recorded so that
        a later ``restart``, whatever its settings, deletes them too (:meth:`clear`).

        Returns:
            The :class:`Journal` of finished blocks.

        Raises:
            SettingError: the folder holds a job with a different definition; the
                message names what differs and how to start over.
        """
        from boomerang.imageio import atomic_write_bytes

        if restart:
            self.clear()
        if self.exists():
            old = self.read_job()
            # the thread count is kept or warned about by the runner, never a refusal
            diff = _differences({k: v for k, v in old.items() if k != "threads"},
                                {k: v for k, v in definition.items() if k != "threads"})
            if diff:
                raise SettingError(
                    f"{self.out} holds a job started with other settings: {'; '.join(diff[:4])}"
                    f"{' ...' if len(diff) > 4 else ''}. Rerun with the same settings to continue, add `restart` "
                    "to start over (its outputs are deleted), or choose another `out`"
                )
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.outputs_path, (json.dumps(sorted(set(other_outputs)), indent=1) + "\n").encode())
            atomic_write_bytes(self.job_path, (json.dumps(definition, indent=2, sort_keys=True) + "\n").encode())
        remove_temp_files(self.out)
        shutil.rmtree(self.scratch, ignore_errors=True)  # a killed run's work files (no block is running now)
        return self.read_journal()

    @property
    def scratch(self) -> Path:
        """``OUT/.job/scratch``: work files of blocks in flight (enhance's large-image x_t files), on the
        output's disk; emptied when the job starts or starts again (a killed run's are stale then)."""
        return self.dir / "scratch"

    def read_journal(self) -> "Journal":
        """Finished blocks (:class:`Journal`, read streaming: 8 bytes per block held); a truncated
        or unreadable last line (a kill mid-append) is dropped and cut from the file."""
        return Journal(self.journal_path)

    def append(self, entry: dict, journal: "Journal | None" = None) -> None:
        """Append one finished block, durably (write, flush, fsync); ``journal`` notes where."""
        line = (json.dumps(entry, allow_nan=False) + "\n").encode()  # key order kept: records are rewritten from it
        fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            offset = os.fstat(fd).st_size
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        if journal is not None:
            journal.note(entry, offset)

    def clear(self) -> None:
        """Delete the job: the files its journal lists, the other files it recorded at its start
        (metadata, manifests, originals), the folders that leaves empty, and the job folder."""
        if not self.dir.is_dir():
            return
        _remove_files(self.out, (name for entry in self.read_journal().entries() for name in entry.get("written", [])))
        try:
            names = [str(n) for n in json.loads(self.outputs_path.read_text(encoding="utf-8"))]
        except (OSError, ValueError, TypeError):
            names = []  # a job from before outputs.json, or a damaged file: its samples still go
        _remove_files(self.out, names)
        shutil.rmtree(self.scratch, ignore_errors=True)
        for name in ("job.json", "journal.jsonl", "outputs.json", "report.json", "items.jsonl", "items.idx",
                     "shards.json"):
            try:
                (self.dir / name).unlink()
            except OSError:
                pass
        try:
            self.dir.rmdir()
        except OSError:
            pass


class Journal:
    """The finished blocks of a job, read from ``journal.jsonl`` without holding them: the byte
    offset of each block's line (8 bytes per block), the counts, and the skipped files.

    ``b in journal``: block ``b`` is finished; :meth:`entry` reads its line again;
    :meth:`entries` / :meth:`records` stream every finished block / output row in block order.
    """

    def __init__(self, path: Path):
        from array import array

        self.path = Path(path)
        self.offsets = array("q")
        self.blocks = self.records_count = 0
        self._skipped: dict[str, tuple[int, str]] = {}
        if not self.path.is_file():
            return
        offset = 0
        with open(self.path, "rb") as f:
            for line in f:
                start, offset = offset, offset + len(line)
                if not line.endswith(b"\n"):  # cut the partial line so the next append starts clean
                    with open(self.path, "r+b") as g:
                        g.truncate(start)
                    break
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue  # only the last line can be cut short
                self.note(entry, start)

    def note(self, entry: dict, offset: int) -> None:
        """Record block ``entry["block"]`` as finished, its line starting at byte ``offset``."""
        b = int(entry["block"])
        if b >= len(self.offsets):
            self.offsets.extend([-1] * (b + 1 - len(self.offsets)))
        if self.offsets[b] < 0:
            self.blocks += 1
            self.records_count += len(entry.get("records", ()))
        self.offsets[b] = offset
        for s in entry.get("skipped", ()):
            old = self._skipped.get(s["file"])
            if old is None or b < old[0]:
                self._skipped[s["file"]] = (b, s["reason"])

    def __contains__(self, b: int) -> bool:
        return 0 <= b < len(self.offsets) and self.offsets[b] >= 0

    def __len__(self) -> int:
        return self.blocks

    def entry(self, b: int) -> dict:
        """Block ``b``'s journal entry, read again from the file."""
        with open(self.path, "rb") as f:
            f.seek(self.offsets[b])
            return json.loads(f.readline())

    def entries(self):
        """Every finished block's entry, in block order (one line in memory at a time)."""
        if not self.blocks:
            return
        with open(self.path, "rb") as f:
            for b, offset in enumerate(self.offsets):
                if offset >= 0:
                    f.seek(offset)
                    yield json.loads(f.readline())

    def records(self):
        """Every output row (``{"_unit", ...}``) of the finished blocks, in output order."""
        for entry in self.entries():
            yield from entry.get("records", ())

    def skipped(self) -> list[dict]:
        """``[{"file", "reason"}]`` of every skipped input, sorted by file (first reason kept)."""
        return [{"file": f, "reason": r} for f, (_, r) in sorted(self._skipped.items())]


class JournalRecords:
    """The output rows of a job as a re-iterable sequence in output order (``len``: how many),
    streamed from its journal: what ``Task.finish`` gets from a resumable job."""

    def __init__(self, journal: Journal):
        self.journal = journal

    def __iter__(self):
        return self.journal.records()

    def __len__(self) -> int:
        return self.journal.records_count


def _remove_files(out: Path, names) -> None:
    """Delete ``out/name`` for each name (never outside ``out``), then the folders that leaves empty."""
    root = out.resolve()
    folders = set()
    for name in names:
        path = out / name
        if root not in path.resolve().parents:
            continue
        try:
            path.unlink()
        except OSError:
            continue
        folders.update(p for p in path.parents if p != out and out in p.parents)
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()  # only if empty
        except OSError:
            pass


class UnfinishedRun:
    """The files a run that cannot resume is writing, listed in ``OUT/.job/unfinished.json`` until it ends.

    :meth:`begin` first deletes what an earlier run that never ended (killed) listed, then lists
    this run's files; :meth:`end` drops the list once everything is written; :meth:`take_back`
    deletes this run's files after a failure.
    """

    def __init__(self, out: Path):
        self.out = Path(out)
        self.path = self.out / JOB_DIR / "unfinished.json"
        self.names: list[str] = []

    def begin(self, names) -> None:
        """Remove an earlier unfinished run's files (and temporary files), then list ``names``."""
        from boomerang.fileio import atomic_write_bytes

        if self.path.is_file():
            try:
                earlier = [str(n) for n in json.loads(self.path.read_text(encoding="utf-8"))]
            except (OSError, ValueError, TypeError):
                earlier = []
            _remove_files(self.out, earlier)
            remove_temp_files(self.out)
        self.names = list(names)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, (json.dumps(self.names, indent=1) + "\n").encode())

    def end(self) -> None:
        """Everything is written: drop the list (and the job folder if that leaves it empty)."""
        for p in (self.path, self.path.parent):
            try:
                p.unlink() if p == self.path else p.rmdir()
            except OSError:
                pass

    def take_back(self) -> None:
        """Delete this run's files, the list, and the folders that leaves empty (OUT included)."""
        _remove_files(self.out, self.names)
        self.end()
        try:
            self.out.rmdir()
        except OSError:
            pass
