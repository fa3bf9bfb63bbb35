"""Item lists whose memory does not grow with the dataset (torch-free).

A dataset job's items are a *sequence* (``len``, iteration in order, ``items[i]``), never
required to be a list:

* :class:`~boomerang.tasks.layout.ListedItems` -- a ``folder`` or ``classes`` layout, listed from disk each time it is
  iterated (:func:`boomerang.imageio.iter_image_files` is a generator). Built by one streaming
  pass that counts the items and computes the input fingerprint (``ListedItems.digest``:
  relative paths, sizes and carried columns, the same sha256 as a list of the same items).
* :class:`IndexedItems` -- any items written once to the job folder (``OUT/.job/items.jsonl``
  plus ``items.idx``, the byte offset of each line as little-endian int64), read back by index
  with one seek: what blocks (and Ray actors on other nodes: OUT is shared) read. Memory: the
  open file and one item at a time.

Memory per item held by the runner is then nothing but the journal's offset of each finished
block (8 bytes per block) and, while planning, 8 bytes per output name (the check that no two
outputs share a name).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

from boomerang.tasks.layout import Item, item_line

__all__ = ["IndexedItems", "index_items", "ITEMS_FILE", "INDEX_FILE"]

ITEMS_FILE, INDEX_FILE = "items.jsonl", "items.idx"
_quote = json.encoder.encode_basestring  # a str as json.dumps(ensure_ascii=False) writes it
_OFFSET = struct.Struct("<q")


class IndexedItems:
    """Items read back by index from ``folder/items.jsonl`` (see :func:`index_items`)."""

    def __init__(self, folder, count: int, digest: str, root):
        self.folder, self._len, self._digest, self.root = Path(folder), int(count), str(digest), Path(root)
        self._fh = self._idx = None
        self._folder, self._folder_path = None, None

    def __getstate__(self):  # pickled for Ray actors: paths only, files reopened there
        return {k: v for k, v in self.__dict__.items() if k not in ("_fh", "_idx", "_folder", "_folder_path")}

    def __setstate__(self, state):
        self.__dict__.update(state, _fh=None, _idx=None, _folder=None, _folder_path=None)

    def _open(self):
        if self._fh is None:
            self._fh = open(self.folder / ITEMS_FILE, "rb")
            self._idx = open(self.folder / INDEX_FILE, "rb")

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int) -> Item:
        if not 0 <= i < self._len:
            raise IndexError(i)
        self._open()
        self._idx.seek(8 * i)
        self._fh.seek(_OFFSET.unpack(self._idx.read(8))[0])
        return self._item(i, self._fh.readline())

    def range(self, start: int, stop: int):
        """Items ``start`` .. ``stop - 1`` in order (one seek, then sequential reads)."""
        stop = min(stop, self._len)
        if start >= stop:
            return
        self._open()
        self._idx.seek(8 * start)
        self._fh.seek(_OFFSET.unpack(self._idx.read(8))[0])
        for i in range(start, stop):
            yield self._item(i, self._fh.readline())

    def __iter__(self):
        with open(self.folder / ITEMS_FILE, "rb") as fh:
            for i, line in enumerate(fh):
                yield self._item(i, line)

    def _item(self, i: int, line: bytes) -> Item:
        rel, path, label, caption, columns, shard, member, size, offset = json.loads(line)
        if path is not None:  # one Path per folder, joined with each file's name
            folder, _, name = path.rpartition("/")
            if folder != self._folder:
                self._folder, self._folder_path = folder, self.root / folder if folder else self.root
            path = self._folder_path / name
        return Item(i, rel, path, label, caption, columns, shard=shard, member=member, size=size, offset=offset)

    def digest(self) -> str:
        return self._digest

    def close(self) -> None:
        for fh in (self._fh, self._idx):
            if fh is not None:
                fh.close()
        self._fh = self._idx = None


def index_items(items, folder, root) -> IndexedItems:
    """Write ``items`` (any iterable sequence) to ``folder/items.jsonl`` + ``items.idx`` (each
    atomically) and return them as :class:`IndexedItems`.

    Raises:
        SettingError: the input changed since it was scanned (another count or fingerprint).
    """
    from boomerang.errors import SettingError
    from boomerang.fileio import atomic_open

    root = Path(root)
    h, n, offset = hashlib.sha256(), 0, 0
    folder = Path(folder)
    prefix = os.path.join(str(root), "")
    with atomic_open(folder / ITEMS_FILE) as fh, atomic_open(folder / INDEX_FILE) as idx:
        for it in items:
            h.update(item_line(it).encode() + b"\n")
            path = None if it.path is None else str(it.path)
            if path is not None:  # relative to root (a string operation when it lies under root as given)
                rel = path[len(prefix):] if path.startswith(prefix) else Path(path).relative_to(root).as_posix()
                path = rel.replace(os.sep, "/") if os.sep != "/" else rel
            if (path == it.relpath and it.caption is None and it.shard is None and it.member is None
                    and it.size is None and it.offset is None
                    and (not it.columns or (type(it.label) is str and it.columns == {"label": it.label}))):
                # a folder's file (layout folder or classes): the text json.dumps writes, made directly
                r = _quote(path)
                lab = "null" if it.label is None else _quote(it.label)
                cols = f'{{"label": {lab}}}' if it.columns else "{}"
                line = f"[{r}, {r}, {lab}, null, {cols}, null, null, null, null]\n".encode()
            else:
                line = (json.dumps([it.relpath, path, it.label, it.caption, it.columns, it.shard, it.member, it.size,
                                    it.offset], ensure_ascii=False, default=str) + "\n").encode()
            idx.write(_OFFSET.pack(offset))
            fh.write(line)
            offset += len(line)
            n += 1
    digest = h.hexdigest()
    want = items.digest() if hasattr(items, "digest") else digest
    if n != len(items) or digest != want:
        raise SettingError(f"the input {root} changed while the job was starting ({n} items now, "
                           f"{len(items)} before); rerun the command")
    return IndexedItems(folder, n, digest, root)
