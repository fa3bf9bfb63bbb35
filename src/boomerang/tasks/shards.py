"""Sharded datasets in and out: WebDataset tar shards and Parquet files (torch-free).

Inputs (``--layout webdataset`` / ``parquet``, or ``auto``: IN is a ``.tar`` / ``.parquet`` file,
or a folder whose files of that kind hold the data and that has no loose images):

* **webdataset** -- ``.tar`` files (sorted by relative path) of ``KEY.<image ext>`` members with
  optional ``KEY.json`` (an object: its fields are carried columns), ``KEY.cls`` (the label) and
  ``KEY.txt`` (the caption); ``KEY`` is the member name up to the first ``.`` of its base name
  (the WebDataset rule). An item's key (what seeds it) is ``KEY`` plus the image member's
  extension: ``000123.jpg``.
* **parquet** -- ``.parquet`` files (the Hugging Face ``datasets`` layout): an image column
  (``image``: a struct of ``bytes`` and ``path``, or a binary column named ``image`` / ``png`` /
  ``jpg`` / ``bytes``) and any other columns (``label``, ``caption``, ``text`` ...), carried
  through. A row's key is its ``file_name`` column, else its image ``path``, else
  ``<shard>/<row index>`` (stable when the same files are read again).

Outputs mirror the input shard for shard under OUT (same relative names): a tar of
``<output stem>.png`` + ``.json`` (the output's metadata row) + ``.cls`` / ``.txt`` when the item
had a label / caption; or a Parquet file with an ``image`` struct column (``bytes``, ``path``)
and the metadata row's columns. Blocks write their PNGs to ``OUT/.job/staging/`` (journalled
as usual, so a job resumes per block); when every block is done each output shard is written
atomically (temporary file, fsync, rename: a half-written shard never has its final name),
recorded in ``OUT/.job/shards.json``, and its staged files are removed.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from boomerang.errors import SettingError
from boomerang.tasks.layout import Item, StreamedItems, item_line

__all__ = ["SHARD_LAYOUTS", "SUFFIX", "detect", "ShardItems", "open_source", "read_bytes", "item_source", "STAGING", "staged_name",
           "is_sharded"]

SHARD_LAYOUTS = ("webdataset", "parquet")
SUFFIX = {"webdataset": ".tar", "parquet": ".parquet"}
STAGING = ".job/staging"
_IMAGE_EXTS = ("png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff", "gif")
_BYTES_COLUMNS = ("image", "png", "jpg", "jpeg", "bytes")


def _shard_files(root: Path, kind: str) -> list[Path]:
    suffix = SUFFIX[kind]
    if root.is_file():
        return [root]
    return sorted((p for p in root.rglob(f"*{suffix}") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts)),
                  key=lambda p: p.relative_to(root).as_posix())


def detect(root: Path) -> str | None:
    """``webdataset`` / ``parquet`` when ``root`` is such a file, or a folder holding such files
    (and no loose images); else None."""
    root = Path(root)
    for kind, suffix in SUFFIX.items():
        if root.is_file() and root.suffix.lower() == suffix:
            return kind
    if not root.is_dir():
        return None
    from boomerang.imageio import iter_image_files

    if next(iter(iter_image_files(root, unique=False)), None) is not None:
        return None
    for kind in SHARD_LAYOUTS:
        if _shard_files(root, kind):
            return kind
    return None


def _split_key(name: str) -> tuple[str, str]:
    """WebDataset: ``dir/000123.seg.png`` -> (``dir/000123``, ``seg.png``)."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


class ShardItems(StreamedItems):
    """The items of WebDataset or Parquet shards, streamed shard by shard (one shard's member
    headers, or one Parquet row group, in memory at a time).

    Attributes:
        shards: ``[(relative name, first item index, item count)]`` in order.
    """

    def __init__(self, root: Path, kind: str):
        root = Path(root)
        self.kind = kind
        self.files = _shard_files(root, kind)
        self.root = root if root.is_dir() else root.parent
        if not self.files:
            raise SettingError(f"no {SUFFIX[kind]} files found in `input` {root} (`layout` {kind})")
        self.shards: list[tuple[str, int, int]] = []
        h, n, bad = hashlib.sha256(), 0, []
        for name, items in self._by_shard():
            first = n
            for it in items:
                n += 1
                h.update(item_line(it).encode() + b"\n")
                if it.member.startswith(BAD):
                    bad.append(it.member[len(BAD):])
            self.shards.append((name, first, n - first))
        if not n:
            raise SettingError(f"no images found in the {kind} shards of `input` {root}")
        if len(bad) == n:  # nothing usable: refused before anything is written
            raise SettingError(f"no usable {kind} shard in `input` {root}: " + "; ".join(bad[:5])
                               + (f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""))
        self._len, self._digest = n, h.hexdigest()

    def _by_shard(self):
        start = 0
        for f in self.files:
            name = f.relative_to(self.root).as_posix()
            counter = [0]

            def items(f=f, name=name, start=start, counter=counter):
                read = _tar_items if self.kind == "webdataset" else _parquet_items
                for i, it in enumerate(_guarded(read, f, name)):
                    counter[0] += 1
                    yield Item(start + i, *it)
            yield name, items()
            start += counter[0]

    def __iter__(self):
        for _, items in self._by_shard():
            yield from items



#: ``Item.member`` of a shard that cannot be read (``bad:<reason>``): one item standing for the
#: shard, skipped by the job and listed in its report like an unreadable file of a folder.
BAD = "bad:"


def _guarded(read, path: Path, shard: str):
    """The items ``read(path, shard)`` yields; if the shard cannot be read (not a tar or Parquet
    file, a damaged tar header, no image column) the items read so far, then one item for the
    rest of the shard whose reading fails with the reason (the job skips and reports it)."""
    try:
        yield from read(path, shard)
    except Exception as exc:  # noqa: BLE001 - tarfile and pyarrow raise many kinds
        reason = str(exc) if isinstance(exc, SettingError) else f"{shard}: cannot be read ({exc})"
        reason = reason.replace(str(path), shard)
        yield (shard, path, None, None, {}, None, shard, BAD + reason, 0, 0)


def _tar_items(path: Path, shard: str):
    """``(relpath, path, label, caption, columns, source, shard, member, size, offset)`` per sample."""
    try:
        tar = tarfile.open(path, "r:")
    except (OSError, tarfile.TarError) as exc:
        raise SettingError(f"{shard}: not a readable tar shard ({exc})") from None
    with tar:
        group: dict[str, tarfile.TarInfo] = {}
        key = None
        for m in tar:  # members in file order; one sample's files are consecutive
            if not m.isfile():
                continue
            k, ext = _split_key(m.name)
            if key is not None and k != key:
                yield from _sample(tar, path, shard, key, group)
                group = {}
            key = k
            group[ext] = m
        end = tar.offset  # where the members end: a whole tar has its end-of-archive blocks (zeros) after it
        if _ends_whole(path, end):
            if key is not None:
                yield from _sample(tar, path, shard, key, group)
            return
    # Cut between two members: tarfile stops there without an error. The samples after the cut are
    # gone, and the last one read may have lost some of its files (its .cls or .json): it is left
    # out too, and the shard is reported (one skipped entry) instead of silently shorter.
    last = f" from {key} on" if key is not None else ""
    raise SettingError(f"{shard}: ends without the tar end-of-archive blocks after byte {end}: the shard is cut "
                       f"short; its samples{last} are missing or incomplete and left out. Copy the shard again")


def _ends_whole(path: Path, end: int) -> bool:
    """Whether ``path`` holds at least the two 512-byte zero blocks of a tar's end after byte ``end``."""
    with open(path, "rb") as fh:
        fh.seek(end)
        tail = fh.read(1024)
    return len(tail) == 1024 and not any(tail)


def _sample(tar, path, shard, key, group):
    image_ext = next((e for e in _IMAGE_EXTS if e in group), None)
    if image_ext is None:
        return
    m = group[image_ext]
    columns: dict = {}
    label = caption = None

    def text(ext):
        return tar.extractfile(group[ext]).read().decode("utf-8").strip()

    if "json" in group:
        try:
            meta = json.loads(text("json"))
        except (ValueError, UnicodeDecodeError):
            meta = None
        if isinstance(meta, dict):
            columns.update(meta)
    if "cls" in group:
        columns["label"] = text("cls")
    if "txt" in group:
        columns["caption"] = text("txt")
    label = columns.get("label")
    caption = columns.get("caption", columns.get("text"))
    yield (f"{key}.{image_ext}", path, None if label is None else str(label),
           None if caption is None else str(caption), columns, None, shard, m.name, int(m.size), int(m.offset_data))


def _image_column(schema, shard: str = "") -> str:
    import pyarrow as pa

    for name in _BYTES_COLUMNS:
        if name in schema.names:
            t = schema.field(name).type
            if pa.types.is_struct(t) and t.get_field_index("bytes") >= 0 or pa.types.is_binary(t) \
                    or pa.types.is_large_binary(t):
                return name
    raise SettingError(f"{shard}: no image column in {schema.names} (looked for {', '.join(_BYTES_COLUMNS)}: "
                       "a struct with `bytes`, or binary)")


def _parquet_items(path: Path, shard: str):
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many kinds
        raise SettingError(f"{shard}: not a readable Parquet file ({exc})") from None
    col = _image_column(pf.schema_arrow, shard)
    others = [n for n in pf.schema_arrow.names if n != col]
    row = 0
    for rg in range(pf.num_row_groups):
        table = pf.read_row_group(rg)
        sizes, paths = _sizes_and_paths(table.column(col))  # no image bytes become Python objects
        rest = {n: table.column(n).to_pylist() for n in others}
        for r, (size, ipath) in enumerate(zip(sizes, paths)):
            columns = {n: rest[n][r] for n in others}
            key = columns.get("file_name") or ipath or f"{shard}/{row}"
            label, caption = columns.get("label"), columns.get("caption", columns.get("text"))
            yield (str(key), path, None if label is None else str(label), None if caption is None else str(caption),
                   columns, None, shard, f"row:{row}", int(size or 0), rg)
            row += 1


def _sizes_and_paths(column) -> tuple[list, list]:
    """Byte length of each row's image (0 when null) and its ``path`` (None when absent) of an image
    column (a struct of ``bytes`` and ``path``, or binary)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_struct(column.type):
        data = pc.struct_field(column, "bytes")  # null where the row's struct is null
        paths = (pc.struct_field(column, "path").to_pylist() if column.type.get_field_index("path") >= 0
                 else [None] * len(column))
    else:
        data, paths = column, [None] * len(column)
    sizes = pc.binary_length(data).to_pylist()
    return sizes, paths


_ROW_GROUPS: dict = {}


def read_bytes(item: Item) -> bytes:
    """The image bytes of a shard item as stored (a tar member's data, a Parquet row's bytes).

    Raises:
        boomerang.imageio.ImageInputError: a shard that could not be read, or no bytes.
    """
    from boomerang.imageio import ImageInputError

    if item.member.startswith(BAD):
        raise ImageInputError(item.member[len(BAD):])
    where = f"{item.shard}: {item.relpath}"
    try:
        if item.member.startswith("row:"):
            data = _parquet_bytes(Path(item.path), int(item.member[4:]), int(item.offset))
        else:
            with open(item.path, "rb") as fh:
                fh.seek(int(item.offset))
                data = fh.read(int(item.size))
    except (OSError, ValueError, IndexError) as exc:
        raise ImageInputError(f"{where}: cannot be read from its shard ({exc})") from None
    if not data:
        raise ImageInputError(f"{where}: no image bytes")
    return data


def open_source(item: Item):
    """The image of a shard item as a PIL image (decoded later by ``imageio.read_image``)."""
    from PIL import Image

    data = read_bytes(item)
    where = f"{item.shard}: {item.relpath}"
    from boomerang._imread import _pillow_errors

    with _pillow_errors(where):  # the same reasons as for a file in a folder (truncated, damaged, unknown format)
        img = Image.open(io.BytesIO(data))
    img.filename = item.relpath  # errors name the item's key
    return img


def _parquet_bytes(path: Path, row: int, rg: int) -> bytes:
    import pyarrow.parquet as pq

    key = (str(path), rg)
    if key not in _ROW_GROUPS:  # one row group kept per process: blocks read rows in order
        _ROW_GROUPS.clear()
        pf = pq.ParquetFile(path)
        col = _image_column(pf.schema_arrow)
        first = sum(pf.metadata.row_group(g).num_rows for g in range(rg))
        _ROW_GROUPS[key] = (first, pf.read_row_group(rg, columns=[col]).column(col).to_pylist())
    first, images = _ROW_GROUPS[key]
    image = images[row - first]
    return image.get("bytes") if isinstance(image, dict) else image


def item_source(item):
    """What ``imageio.read_image`` takes for any item: its file, its in-memory image, or a shard
    item's image opened lazily (a shard item that is not an image: its shard's path, which does
    not read as an image either)."""
    if item.member is None:
        return item.path if item.path is not None else item.source
    from boomerang.imageio import ImageInputError

    try:
        return open_source(item)
    except ImageInputError:
        return item.path


def staged_name(name: str) -> str:
    """Where a sharded job's block writes output ``name`` (relative to OUT)."""
    return f"{STAGING}/{name}"


def is_sharded(job) -> bool:
    """Whether the job reads (and so writes) shards."""
    return job.layout is not None and job.layout.kind in SHARD_LAYOUTS
