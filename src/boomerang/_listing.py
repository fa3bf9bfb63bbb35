"""Listing image files (part of :mod:`boomerang.imageio`): the one lister of the project and the one list of
image suffixes. Every command, the dataset loaders, the privacy audit and the page find images through
:func:`iter_image_files`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from boomerang._image import ImageInputError

__all__ = ["IMAGE_SUFFIXES", "iter_image_files", "list_image_files"]

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
    stack = [iter(_entries(root))]
    while stack:
        for path, is_dir in stack[-1]:
            if not is_dir:
                yield path
            elif recursive:
                stack.append(iter(_entries(path)))
                break
        else:
            stack.pop()


def _entries(folder: Path) -> list[tuple[Path, bool]]:
    """``(path, is_folder)`` for the visible sub-folders and image files of one folder, sorted so that a
    depth-first walk gives the order of relative paths (a folder ``d`` sorts as ``d/``)."""
    found = []
    try:
        with os.scandir(folder) as it:
            for e in it:
                if e.name.startswith("."):
                    continue
                try:
                    if e.is_dir(follow_symlinks=False):
                        found.append((e.name + "/", e.name, True))
                    elif Path(e.name).suffix.lower() in IMAGE_SUFFIXES and e.is_file():
                        found.append((e.name, e.name, False))
                except OSError:
                    continue
    except OSError:
        return []
    found.sort()
    return [(folder / name, is_dir) for _, name, is_dir in found]
