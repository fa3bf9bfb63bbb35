"""Every file the project writes, written atomically; JSON and JSON Lines written and read in one place.

Torch-free and PIL-free: any module may import this one. A file is written to a
temporary file in the same folder, flushed, fsynced and renamed over the target
(``os.replace``), so an interrupted run never leaves a truncated file.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["OutputWriteError", "atomic_write_bytes", "atomic_open", "atomic_write_text", "json_bytes", "write_json", "write_jsonl",
           "read_json", "read_jsonl", "follow_umask"]


class OutputWriteError(OSError, ValueError):
    """A file could not be written (a full disk, a read-only or missing folder ...).

    Its message is one line naming the path and the cause; ``errno`` is the
    cause's. An ``OSError`` and a ``ValueError``, so commands print it as their
    one error line (exit status 2). Nothing half-written is left behind: the
    temporary file is removed and the target is left as it was.
    """


def _write_error(path: Path, exc: OSError) -> OutputWriteError:
    """``exc`` (an error writing ``path``) as one line naming the path and the cause."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    full = exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
    hint = "free some space or choose another output folder" if full else "choose another output folder"
    err = OutputWriteError(f"cannot write {path}: {reason}; {hint}")
    err.errno = exc.errno
    return err


_TEMP_COUNTER = itertools.count()
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def _create_temp(path: str) -> tuple[int, str]:
    """A new temporary file beside ``path``: ``(fd, name)``, named ``.NAME.PID_N.tmp``.

    Created with ``O_EXCL`` and mode 0o666, so the kernel applies the umask (and a
    folder's default ACL) as for a plain ``open()``; a name left by an earlier process
    of the same id is skipped. Raises OSError (the folder is missing or not writable).
    """
    folder, name = os.path.split(path)
    stem = os.path.join(folder, f".{name}.{os.getpid()}_")
    for _ in range(100):
        tmp = f"{stem}{next(_TEMP_COUNTER)}.tmp"
        try:
            return os.open(tmp, _TEMP_FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", stem)


@contextlib.contextmanager
def _temporary(path: str):
    """``(fd, name)`` of a new temporary file beside ``path`` (:func:`_create_temp`); on any error in the
    block the file is removed, and an OSError becomes one :class:`OutputWriteError` line naming ``path``."""
    try:
        fd, tmp = _create_temp(path)
    except OSError as exc:
        raise _write_error(Path(path), exc) from exc
    try:
        yield fd, tmp
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, OutputWriteError):
            raise _write_error(Path(path), exc) from exc
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same
    folder, fsync, then ``os.replace``. On any error the temporary file is
    removed and ``path`` is left as it was, so an interrupted run never leaves a
    truncated file. Used for every file the project writes (images, metadata,
    training checkpoints). The file's mode is ``0o666 & ~umask``, as for a plain ``open()``.

    Raises:
        OutputWriteError: (an OSError) the folder does not exist or is not
            writable, the disk is full, ...: one line naming ``path`` and the cause.
    """
    path = os.fspath(path)
    with _temporary(path) as (fd, tmp):
        try:
            view = memoryview(data)
            while view:  # os.write may write less than asked (a signal, a pipe): loop
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike):
    """Write ``path`` atomically as a stream: ``with atomic_open(p) as fh: fh.write(...)``.

    The same promise as :func:`atomic_write_bytes` for a file too large to hold in memory (a
    job's metadata of millions of rows): the data goes to a temporary file in the same folder,
    which is flushed, fsynced and renamed over ``path`` when the block ends without an error;
    on any error it is removed and ``path`` is left as it was.

    Raises:
        OutputWriteError: the file cannot be created or written (one line naming ``path``).
    """
    path = os.fspath(path)
    with _temporary(path) as (fd, tmp):
        with os.fdopen(fd, "wb", buffering=1 << 20) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def json_bytes(obj: Any, *, indent: int | None = 2, sort_keys: bool = False) -> bytes:
    """``obj`` as UTF-8 JSON ending in a newline; NaN and infinity refused (``ValueError``: not JSON)."""
    return (json.dumps(obj, indent=indent, sort_keys=sort_keys, ensure_ascii=False, allow_nan=False) + "\n").encode()


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2, sort_keys: bool = False) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (see :func:`json_bytes`); returns the path."""
    atomic_write_bytes(path, json_bytes(obj, indent=indent, sort_keys=sort_keys))
    return Path(path)


def write_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> Path:
    """Write one JSON object per line (JSON Lines) to ``path`` atomically; returns the path."""
    atomic_write_bytes(path, b"".join(json_bytes(r, indent=None) for r in rows))
    return Path(path)


def read_json(path: str | os.PathLike) -> Any:
    """The JSON value stored in ``path`` (UTF-8). Raises ``OSError`` or ``json.JSONDecodeError``."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_jsonl(path: str | os.PathLike) -> list[Any]:
    """The values of a JSON Lines file, one per non-empty line."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def follow_umask(folder: str | os.PathLike[str]) -> None:
    """Give every file under ``folder`` the mode ``0o666 & ~umask`` (and folders
    ``0o777 & ~umask``), as a plain ``open()`` would: libraries that write through
    temporary files leave 0600 behind."""
    mask = _umask()
    root = Path(folder)
    for p in [root, *root.rglob("*")]:
        if p.is_symlink():
            continue
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
