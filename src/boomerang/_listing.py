"""Listing image files (part of :mod:`boomerang.imageio`): the one lister of the project and the one list of
image suffixes. Every command, the dataset loaders, the privacy audit and the page find images through
:func:`iter_image_files`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from boomerang._image import ImageInputError

__all__ = ["IMAGE_SUFFIXES", "iter_image_files", "list_image_files", "walk_image_entries", "walk_image_paths"]

#: File name endings that folder expansion picks up (compared lower-case).
IMAGE_SUFFIXES: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif",
)


def iter_image_files(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    recursive: bool = True,
    unique: bool = True,
) -> Iterator[Path]:
    """Yield the image files of files and folders, one at a time, in a fixed order.

    Files are yielded as given (whatever their suffix, so a broken file still
    reaches :func:`read_image` and gets its clear error). Folders are walked
    for files whose suffix (lower-cased) is in :data:`IMAGE_SUFFIXES`: each
    folder's files come in the order of their path relative to it (POSIX
    separators, compared as strings), which the walk gets by sorting the
    entries of one directory at a time (a sub-folder ``d`` sorts as ``d/``)
    and yielding as it goes, so a large tree is never held in memory (one
    directory's entry names at most). Hidden files and folders (name starting
    with ``.``) are skipped; symbolic links to folders are not followed (links
    to files are yielded); folders that cannot be read are passed over.

    Args:
        paths: one path or an iterable of paths (files or folders).
        recursive: walk sub-folders (default); ``False``: only the files
            directly inside each folder.
        unique: drop a file met again (by its resolved path; first occurrence
            kept). This keeps one resolved path per file yielded; pass
            ``False`` for one folder whose every entry counts.

    Yields:
        :class:`pathlib.Path` objects: a given file as given, a found file as
        ``folder / relative path``.

    Raises:
        ImageInputError: a path does not exist (raised when the walk reaches it).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    seen: set[Path] = set()
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found: Iterable[Path] = _walk(p, recursive)
        elif p.exists():
            found = (p,)
        else:
            raise ImageInputError(f"{p}: no such file or folder. Check the path (quote it if it contains spaces).")
        for f in found:
            if unique:
                key = f.resolve()
                if key in seen:
                    continue
                seen.add(key)
            yield f


def list_image_files(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    """:func:`iter_image_files` of ``paths`` (recursive, duplicates dropped) as a list.

    Args:
        paths: one path or an iterable of paths.

    Returns:
        A list of :class:`pathlib.Path`.

    Raises:
        ImageInputError: a path does not exist.
    """
    return list(iter_image_files(paths))


def _walk(root: Path, recursive: bool) -> Iterator[Path]:
    """Image files under ``root`` in the order of their relative POSIX path, depth first."""
    for _, path in walk_image_paths(root, recursive):
        yield path


def walk_image_paths(root: str | os.PathLike[str], recursive: bool = True) -> Iterator[tuple[str, Path]]:
    """``(relative POSIX path, Path)`` of the image files under the folder ``root``, as
    :func:`walk_image_entries` (one ``Path`` per folder, joined with each file's name)."""
    folder, folder_path = None, None
    for rel, entry in walk_image_entries(root, recursive):
        parent = rel.rpartition("/")[0]
        if parent != folder:
            folder, folder_path = parent, Path(os.path.dirname(entry.path))
        yield rel, folder_path / entry.name


def walk_image_entries(root: str | os.PathLike[str], recursive: bool = True) -> Iterator[tuple[str, os.DirEntry]]:
    """``(relative POSIX path, os.DirEntry)`` of the image files under the folder ``root``, in the
    order and with the rules of :func:`iter_image_files` (which yields ``Path(entry.path)``): for
    callers that list millions of files and need strings (and ``entry.stat()``), not ``Path`` objects."""
    stack = [(iter(_entries(os.fspath(root))), "")]
    while stack:
        it, prefix = stack[-1]
        for key, entry, is_dir in it:
            if not is_dir:
                yield prefix + key, entry
            elif recursive:
                stack.append((iter(_entries(entry.path)), prefix + key))
                break
        else:
            stack.pop()


def _key(found: tuple[str, os.DirEntry, bool]) -> str:
    return found[0]


def _entries(folder: str) -> list[tuple[str, os.DirEntry, bool]]:
    """``(sort key, entry, is_folder)`` for the visible sub-folders and image files of one folder, sorted
    so that a depth-first walk gives the order of relative paths (a folder ``d`` has the key ``d/``)."""
    found = []
    try:
        with os.scandir(folder) as it:
            for e in it:
                name = e.name
                if name.startswith("."):
                    continue
                try:
                    if e.is_dir(follow_symlinks=False):
                        found.append((name + "/", e, True))
                    elif os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES and e.is_file():
                        found.append((name, e, False))
                except OSError:
                    continue
    except OSError:
        return []
    found.sort(key=_key)
    return found
