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

__all__ = ["SHARD_LAYOUTS", "detect", "ShardItems", "open_source", "STAGING", "staged_name", "output_shards",
           "write_output_shards", "is_sharded"]

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
        h, n = hashlib.sha256(), 0
        for name, items in self._by_shard():
            first = n
            for it in items:
                n += 1
                h.update(item_line(it).encode() + b"\n")
            self.shards.append((name, first, n - first))
        if not n:
            raise SettingError(f"no images found in the {kind} shards of `input` {root}")
        self._len, self._digest = n, h.hexdigest()

    def _by_shard(self):
        start = 0
        for f in self.files:
            name = f.relative_to(self.root).as_posix()
            counter = [0]

            def items(f=f, name=name, start=start, counter=counter):
                read = _tar_items if self.kind == "webdataset" else _parquet_items
                for i, it in enumerate(read(f, name)):
                    counter[0] += 1
                    yield Item(start + i, *it)
            yield name, items()
            start += counter[0]

    def __iter__(self):
        for _, items in self._by_shard():
            yield from items



def _tar_items(path: Path, shard: str):
    """``(relpath, path, label, caption, columns, source, shard, member, size, offset)`` per sample."""
    try:
        tar = tarfile.open(path, "r:")
    except (OSError, tarfile.TarError) as exc:
        raise SettingError(f"{path}: not a readable tar shard ({exc})") from None
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
        if key is not None:
            yield from _sample(tar, path, shard, key, group)


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


def _image_column(schema) -> str:
    import pyarrow as pa

    for name in _BYTES_COLUMNS:
        if name in schema.names:
            t = schema.field(name).type
            if pa.types.is_struct(t) and t.get_field_index("bytes") >= 0 or pa.types.is_binary(t) \
                    or pa.types.is_large_binary(t):
                return name
    raise SettingError(f"no image column in {schema.names} (looked for {', '.join(_BYTES_COLUMNS)}: "
                       "a struct with `bytes`, or binary)")


def _parquet_items(path: Path, shard: str):
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many kinds
        raise SettingError(f"{path}: not a readable Parquet file ({exc})") from None
    col = _image_column(pf.schema_arrow)
    others = [n for n in pf.schema_arrow.names if n != col]
    row = 0
    for rg in range(pf.num_row_groups):
        table = pf.read_row_group(rg)
        images = table.column(col).to_pylist()
        rest = {n: table.column(n).to_pylist() for n in others}
        for r, image in enumerate(images):
            columns = {n: rest[n][r] for n in others}
            data = image.get("bytes") if isinstance(image, dict) else image
            ipath = image.get("path") if isinstance(image, dict) else None
            key = columns.get("file_name") or ipath or f"{shard}/{row}"
            label, caption = columns.get("label"), columns.get("caption", columns.get("text"))
            yield (str(key), path, None if label is None else str(label), None if caption is None else str(caption),
                   columns, None, shard, f"row:{row}", len(data or b""), rg)
            row += 1


_ROW_GROUPS: dict = {}


def open_source(item: Item):
    """The image of a shard item as a PIL image (decoded later by ``imageio.read_image``)."""
    from PIL import Image

    if item.member.startswith("row:"):
        data = _parquet_bytes(Path(item.path), int(item.member[4:]), int(item.offset))
    else:
        with open(item.path, "rb") as fh:
            fh.seek(int(item.offset))
            data = fh.read(int(item.size))
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


def staged_name(name: str) -> str:
    """Where a sharded job's block writes output ``name`` (relative to OUT)."""
    return f"{STAGING}/{name}"


def output_shards(job) -> list[str]:
    """The output shard names (relative to OUT): the input's shard names."""
    return [name for name, _, _ in job.layout.items.shards]


def is_sharded(job) -> bool:
    """Whether the job reads (and so writes) shards."""
    return job.layout is not None and job.layout.kind in SHARD_LAYOUTS


def _records_by_unit(journal, block_size: int):
    """``get(o)``: the metadata row of output ``o`` (None: its item was skipped), reading each
    block's journal line once while outputs are asked for in order."""
    cache = {"block": None, "rows": {}}

    def get(o: int):
        b = o // block_size
        if cache["block"] != b:
            rows = journal.entry(b)["records"] if b in journal else []
            cache.update(block=b, rows={r["_unit"]: r for r in rows})
        return cache["rows"].get(o)
    return get


def _shard_outputs(job, first: int, count: int):
    n_levels, n_items, n_samples = job.outputs.shape
    for k in range(n_levels):
        start = (k * n_items + first) * n_samples
        yield from job.outputs.range(start, start + count * n_samples)


def _tar_member(tar, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0o644, 0, 0, "", ""
    tar.addfile(info, io.BytesIO(data))


def _member_stem(name: str) -> str:
    """A WebDataset key for output ``name``: no ``.`` in its base name (the key ends at the first dot)."""
    stem = name[:-4] if name.endswith(".png") else name
    folder, _, base = stem.rpartition("/")
    base = base.replace(".", "_")
    return f"{folder}/{base}" if folder else base


def write_output_shards(job, records) -> list[str]:
    """Write every output shard of a finished sharded job (atomically, one at a time), then remove
    its staged PNGs; shards already written by an earlier, interrupted finish are kept.

    Args:
        job: the job (``job.layout.items`` are :class:`ShardItems`).
        records: the job's :class:`~boomerang.tasks.journal.JournalRecords`.

    Returns:
        The output shard names, relative to OUT.
    """
    from boomerang.fileio import atomic_open, write_json
    from boomerang.tasks.journal import _remove_files

    out = job.out
    done_path = out / ".job" / "shards.json"
    try:
        written = set(json.loads(done_path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        written = set()
    get = _records_by_unit(records.journal, job.block_size)
    names = []
    for name, first, count in job.layout.items.shards:
        names.append(name)
        if name in written and (out / name).is_file():
            continue
        staged = []
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(out / name) as fh:
            if job.layout.kind == "webdataset":
                with tarfile.open(fileobj=fh, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                    for o in _shard_outputs(job, first, count):
                        row = get(o.index)
                        if row is None:
                            continue
                        staged.append(staged_name(o.name))
                        stem = _member_stem(o.name)
                        _tar_member(tar, f"{stem}.png", (out / staged[-1]).read_bytes())
                        meta = {k: v for k, v in row.items() if k != "_unit"}
                        _tar_member(tar, f"{stem}.json", (json.dumps(meta, ensure_ascii=False) + "\n").encode())
                        if o.item.label is not None:
                            _tar_member(tar, f"{stem}.cls", str(o.item.label).encode())
                        if o.item.caption is not None:
                            _tar_member(tar, f"{stem}.txt", str(o.item.caption).encode())
            else:
                import pyarrow as pa
                import pyarrow.parquet as pq

                rows = []
                for o in _shard_outputs(job, first, count):
                    row = get(o.index)
                    if row is None:
                        continue
                    staged.append(staged_name(o.name))
                    meta = {k: v for k, v in row.items() if k not in ("_unit", "image")}
                    rows.append({"image": {"bytes": (out / staged[-1]).read_bytes(), "path": o.name}, **meta})
                pq.write_table(pa.Table.from_pylist(rows), fh)
        written.add(name)
        write_json(done_path, sorted(written))
        _remove_files(out, staged)
    return names
