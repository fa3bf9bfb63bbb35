"""Input layouts of dataset jobs: what the items are and what travels with them (torch-free).

Three layouts, detected in this order (``layout="auto"``):

* ``imagefolder`` -- the Hugging Face ``imagefolder`` convention: a
  ``metadata.jsonl`` or ``metadata.csv`` at the folder's root whose
  ``file_name`` column names each image (relative to the root) and whose other
  columns (``label``, ``caption``, ...) are carried through to the output's own
  metadata file, in the same format.
* ``classes`` -- the ImageFolder convention: every image lies in a sub-folder,
  and the first folder level is the item's ``label``.
* ``folder`` -- any folder, searched recursively.

Hidden files and folders (name starting with ``.``) are skipped; images are
recognised by suffix (``boomerang.imageio.IMAGE_SUFFIXES``). Items are sorted
by their relative path (POSIX separators), which is also what seeds them
(``boomerang.seeds.path_seed``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boomerang.errors import SettingError

__all__ = ["LAYOUTS", "Item", "Layout", "scan"]

LAYOUTS = ("auto", "folder", "classes", "imagefolder")
METADATA_FILES = ("metadata.jsonl", "metadata.csv")


@dataclass(frozen=True)
class Item:
    """One input image of a dataset job.

    Attributes:
        index: position in the sorted item list (0-based).
        relpath: path relative to the input folder, ``/``-separated (``cat/001.png``).
        path: the file.
        label: the class (``classes``: the first folder; ``imagefolder``: the
            ``label`` column if present), else ``None``.
        caption: the ``caption`` (or ``text``) column of ``imagefolder``, else ``None``.
        columns: every carried column of ``imagefolder`` except ``file_name``
            (``label`` and ``caption`` included), in the file's order.
        source: the image itself when it is not a file (the API's PIL images and arrays;
            ``path`` is then ``None``).
    """

    index: int
    relpath: str
    path: Path | None
    label: str | None = None
    caption: str | None = None
    columns: dict = field(default_factory=dict)
    source: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Layout:
    """The scanned input: kind, items and, for ``imagefolder``, the metadata format and columns."""

    kind: str
    root: Path
    items: list[Item]
    metadata_format: str | None = None  # "jsonl" | "csv" | None
    columns: tuple[str, ...] = ()

    def digest(self) -> str:
        """sha256 of the item list (relative paths, sizes and carried columns): a job's input fingerprint."""
        h = hashlib.sha256()
        for it in self.items:
            try:
                size = it.path.stat().st_size
            except OSError:
                size = -1
            h.update(json.dumps([it.relpath, size, it.columns], sort_keys=True, default=str).encode() + b"\n")
        return h.hexdigest()


def _image_files(root: Path) -> list[Path]:
    from boomerang.imageio import iter_image_files

    return list(iter_image_files(root, unique=False))


def _read_metadata(path: Path) -> list[dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingError(f"cannot read {path}: {exc}") from None
    rows = []
    if path.suffix == ".csv":
        rows = list(csv.DictReader(io.StringIO(text)))
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SettingError(f"{path}: line {n} is not JSON ({exc.msg}); fix or remove the line") from None
            if not isinstance(row, dict):
                raise SettingError(f"{path}: line {n} is not a JSON object")
            rows.append(row)
    for n, row in enumerate(rows, 1):
        if not isinstance(row.get("file_name"), str) or not row["file_name"]:
            raise SettingError(f"{path}: row {n} has no file_name (the imagefolder convention needs one per image)")
    return rows


def scan(root, layout: str = "auto") -> Layout:
    """List a dataset folder's items.

    Args:
        root: the input folder.
        layout: one of :data:`LAYOUTS`.

    Returns:
        A :class:`Layout` with items sorted by relative path.

    Raises:
        SettingError: ``root`` is not a folder, an unknown or impossible layout
            (``classes`` with images at the root; ``imagefolder`` without a
            metadata file, or naming a file twice or a file outside the folder),
            or no images at all.
    """
    root = Path(root)
    if not root.exists():
        raise SettingError(f"`input` {root}: no such file or folder. Check the path (quote it if it contains spaces).")
    if not root.is_dir():
        raise SettingError(f"`input` {root} is not a folder (a dataset job reads a folder of images)")
    if layout not in LAYOUTS:
        raise SettingError(f"`layout` must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    meta = [root / name for name in METADATA_FILES if (root / name).is_file()]
    if layout == "auto":
        files = _image_files(root)
        if meta:
            layout = "imagefolder"
        elif files and all(len(f.relative_to(root).parts) >= 2 for f in files):
            layout = "classes"
        else:
            layout = "folder"
    if layout == "imagefolder":
        if not meta:
            raise SettingError(f"`layout` imagefolder needs {' or '.join(METADATA_FILES)} in {root}")
        if len(meta) > 1:
            raise SettingError(f"{root} has both metadata.jsonl and metadata.csv; keep one")
        rows = _read_metadata(meta[0])
        columns: list[str] = []
        for row in rows:
            columns += [k for k in row if k != "file_name" and k not in columns]
        by_rel = {}
        for row in rows:
            rel = Path(row["file_name"]).as_posix()
            target = (root / rel).resolve()
            if root.resolve() not in target.parents:
                raise SettingError(f"{meta[0]}: file_name {row['file_name']!r} lies outside {root}")
            if rel in by_rel:
                raise SettingError(f"{meta[0]}: file_name {rel!r} appears twice")
            by_rel[rel] = row
        items = []
        for i, rel in enumerate(sorted(by_rel)):
            row = by_rel[rel]
            cols = {k: row.get(k) for k in columns}
            label = row.get("label")
            caption = row.get("caption", row.get("text"))
            items.append(Item(i, rel, root / rel, None if label is None else str(label),
                              None if caption is None else str(caption), cols))
        return Layout("imagefolder", root, items, meta[0].suffix.lstrip("."), tuple(columns))
    files = sorted(_image_files(root), key=lambda f: f.relative_to(root).as_posix())
    if not files:
        from boomerang.imageio import IMAGE_SUFFIXES

        raise SettingError(f"no image files found in `input` {root} (looked for {', '.join(IMAGE_SUFFIXES)})")
    items = []
    for i, f in enumerate(files):
        rel = f.relative_to(root).as_posix()
        parts = rel.split("/")
        if layout == "classes":
            if len(parts) < 2:
                raise SettingError(f"`layout` classes needs every image in a class folder; {rel} lies at the root")
            items.append(Item(i, rel, f, parts[0], None, {"label": parts[0]}))
        else:
            items.append(Item(i, rel, f))
    return Layout(layout, root, items, None, ("label",) if layout == "classes" else ())
