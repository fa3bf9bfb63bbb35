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
from pathlib import Path

from boomerang.errors import SettingError

__all__ = ["JOB_DIR", "JobFolder", "UnfinishedRun", "remove_temp_files"]

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

    def exists(self) -> bool:
        return self.job_path.is_file()

    def read_job(self) -> dict:
        try:
            return json.loads(self.job_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise SettingError(f"{self.job_path} cannot be read ({exc}); start over with `restart`") from None

    def start(self, definition: dict, *, restart: bool = False, other_outputs=()) -> dict:
        """Create the job, or check that ``definition`` matches the existing one.

        ``other_outputs``: the files the job writes besides the samples its journal lists
        (metadata files, manifests, copied originals; relative to ``out``), recorded so that
        a later ``restart``, whatever its settings, deletes them too (:meth:`clear`).

        Returns:
            The journal: ``{block index: entry}`` of finished blocks.

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
        return self.read_journal()

    def read_journal(self) -> dict:
        """Finished blocks; a truncated or unreadable last line (a kill mid-append) is dropped."""
        done = {}
        if not self.journal_path.is_file():
            return done
        with open(self.journal_path, "rb") as f:
            data = f.read()
        lines = data.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue  # only the last line can be cut short
            done[int(entry["block"])] = entry
        if data and not data.endswith(b"\n"):  # cut the partial line so the next append starts clean
            with open(self.journal_path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)
        return done

    def append(self, entry: dict) -> None:
        """Append one finished block, durably (write, flush, fsync)."""
        line = (json.dumps(entry, allow_nan=False) + "\n").encode()  # key order kept: records are rewritten from it
        fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def clear(self) -> None:
        """Delete the job: the files its journal lists, the other files it recorded at its start
        (metadata, manifests, originals), the folders that leaves empty, and the job folder."""
        if not self.dir.is_dir():
            return
        names = [rec for entry in self.read_journal().values() for rec in entry.get("written", [])]
        try:
            names += [str(n) for n in json.loads(self.outputs_path.read_text(encoding="utf-8"))]
        except (OSError, ValueError, TypeError):
            pass  # a job from before outputs.json, or a damaged file: its samples still go
        _remove_files(self.out, names)
        for name in ("job.json", "journal.jsonl", "outputs.json", "report.json"):
            try:
                (self.dir / name).unlink()
            except OSError:
                pass
        try:
            self.dir.rmdir()
        except OSError:
            pass


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
