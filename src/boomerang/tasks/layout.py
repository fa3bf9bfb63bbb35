"""Input layouts of dataset jobs: what the items are and what travels with them (torch-free).

Three folder layouts, detected in this order (``layout="auto"``; the shard layouts
``webdataset`` and ``parquet`` are :mod:`boomerang.tasks.shards`, tried first by ``Task.scan``):

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
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boomerang.errors import SettingError

__all__ = ["LAYOUTS", "Item", "Layout", "ListedItems", "scan", "survey_folder", "items_digest", "item_line"]

LAYOUTS = ("auto", "folder", "classes", "imagefolder", "webdataset", "parquet")
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
        shard: sharded inputs (:mod:`boomerang.tasks.shards`): the shard's name relative to the
            input folder (``path`` is the shard file), else ``None``.
        member: sharded inputs: the image's tar member name, or ``"row:<n>"`` in a Parquet file.
        size: sharded inputs: the image's size in bytes (part of the input fingerprint).
        offset: sharded inputs: where the image's bytes start in a tar shard, or the Parquet
            row group holding the row.
    """

    index: int
    relpath: str
    path: Path | None
    label: str | None = None
    caption: str | None = None
    columns: dict = field(default_factory=dict)
    source: Any = field(default=None, compare=False, repr=False)
    shard: str | None = None
    member: str | None = None
    size: int | None = None
    offset: int | None = None


@dataclass(frozen=True)
class Layout:
    """The scanned input: kind, items and, for ``imagefolder``, the metadata format and columns."""

    kind: str
    root: Path
    items: Any  # a list, or a sequence streamed from disk (boomerang.tasks.items)
    metadata_format: str | None = None  # "jsonl" | "csv" | None
    columns: tuple[str, ...] = ()

    def digest(self) -> str:
        """sha256 of the item list (relative paths, sizes and carried columns): a job's input fingerprint."""
        if hasattr(self.items, "digest"):  # computed while the folder was listed
            return self.items.digest()
        return items_digest(self.items)


def item_line(item: Item) -> str:
    """The fingerprint line of one item (its relative path, size and carried columns)."""
    try:
        size = os.stat(item.path).st_size if item.member is None else item.size
    except (OSError, TypeError):
        size = -1
    columns = item.columns
    if type(size) is int and type(item.relpath) is str:  # the text json.dumps writes, made directly
        if not columns:  # the folder layout
            return f"[{_quote(item.relpath)}, {size}, {{}}]"
        if len(columns) == 1 and type(columns.get("label")) is str:  # classes
            return f"[{_quote(item.relpath)}, {size}, {{\"label\": {_quote(columns['label'])}}}]"
    return json.dumps([item.relpath, size, columns], sort_keys=True, default=str)


#: A str as a JSON string, as ``json.dumps`` (ensure_ascii) writes it (the json module's C escaper).
_quote = json.encoder.encode_basestring_ascii


def items_digest(items) -> str:
    """sha256 of the items' fingerprint lines (streaming): the job's input fingerprint."""
    h = hashlib.sha256()
    for it in items:
        h.update(item_line(it).encode() + b"\n")
    return h.hexdigest()


class StreamedItems:
    """The sequence protocol of items listed in one streaming pass (subclasses set ``_len`` and
    ``_digest`` and define ``__iter__``): ``len``, lookup by index (a scan) and the input digest."""

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int) -> Item:
        for it in self:
            if it.index == i:
                return it
        raise IndexError(i)

    def digest(self) -> str:
        return self._digest


class ListedItems(StreamedItems):
    """The items of a ``folder`` / ``classes`` layout under ``root``, streamed from the listing.

    Args:
        root: the input folder.
        kind: ``folder`` or ``classes`` (the first folder level is the label).

    Iterating lists the folder again (sorted by relative POSIX path, hidden files skipped);
    ``len`` and :meth:`digest` come from the one counting pass made here. ``items[i]`` walks to
    item ``i`` (linear time): blocks read an :class:`IndexedItems` instead.
    """

    def __init__(self, root, kind: str, *, count: int | None = None, digest: str | None = None):
        self.root, self.kind = Path(root), kind
        if count is None or digest is None:
            count, digest = 0, hashlib.sha256()
            for it in self:
                count += 1
                digest.update(item_line(it).encode() + b"\n")
            digest = digest.hexdigest()
        self._len, self._digest = int(count), str(digest)

    def files(self):
        """``(relative POSIX path, path)`` of every image file, in order (no item built)."""
        from boomerang.imageio import walk_image_paths

        yield from walk_image_paths(self.root)

    def __iter__(self):
        for i, (rel, f) in enumerate(self.files()):
            if self.kind == "classes":
                label = rel.split("/", 1)[0]
                yield Item(i, rel, f, label, None, {"label": label})
            else:
                yield Item(i, rel, f)



def survey_folder(root):
    """One streaming pass over a folder: ``(count, first file at the root or None, digest as
    ``folder``, digest as ``classes``)`` -- what ``layout.scan`` needs to choose and fingerprint.
    The digests hash :func:`item_line` of each item as it would be in either layout (written here
    without making the items: the same bytes)."""
    from boomerang.imageio import walk_image_entries

    n, at_root, plain, classes = 0, None, hashlib.sha256(), hashlib.sha256()
    for rel, entry in walk_image_entries(root):
        n += 1
        try:
            size = entry.stat().st_size
        except OSError:
            size = -1
        label = rel.split("/", 1)[0] if "/" in rel else None
        if label is None and at_root is None:
            at_root = rel
        head = f"[{_quote(rel)}, {size}, "
        plain.update(f"{head}{{}}]\n".encode())
        classes.update(f"{head}{{\"label\": {'null' if label is None else _quote(label)}}}]\n".encode())
    return n, at_root, plain.hexdigest(), classes.hexdigest()


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
    if layout in ("webdataset", "parquet"):  # read by boomerang.tasks.shards (Task.scan)
        raise SettingError(f"`layout` {layout} is not a folder layout; this command reads folders of images")
    if not root.is_dir():
        raise SettingError(f"`input` {root} is not a folder (a dataset job reads a folder of images)")
    if layout not in LAYOUTS:
        raise SettingError(f"`layout` must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    meta = [root / name for name in METADATA_FILES if (root / name).is_file()]
    survey = None
    if layout == "auto":
        if meta:
            layout = "imagefolder"
        else:
            survey = survey_folder(root)
            layout = "classes" if survey[0] and survey[1] is None else "folder"
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
    count, at_root, plain, classes = survey or survey_folder(root)
    if not count:
        from boomerang.imageio import IMAGE_SUFFIXES

        raise SettingError(f"no image files found in `input` {root} (looked for {', '.join(IMAGE_SUFFIXES)})")
    if layout == "classes" and at_root is not None:
        raise SettingError(f"`layout` classes needs every image in a class folder; {at_root} lies at the root")
    items = ListedItems(root, layout, count=count, digest=classes if layout == "classes" else plain)
    return Layout(layout, root, items, None, ("label",) if layout == "classes" else ())
