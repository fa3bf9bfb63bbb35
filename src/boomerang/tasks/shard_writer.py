"""Writing the output shards of a sharded job (torch-free): :func:`write_output_shards`.

A task says which output shards there are and what goes into each with two hooks
(:meth:`boomerang.tasks.Task.shard_names` and :meth:`~boomerang.tasks.Task.shard_contents`):
``(shard name, [(member name, output, metadata row or None)])`` in writing order. Two plans
are given here:

* :func:`mirror_shards` -- one output shard per input shard, same relative name (``augment``
  puts one set under each level folder): the outputs of the shard's items in job order.
* :func:`secret_order_shards` -- ``anonymise``: every output of the job sorted by its opaque
  name (an HMAC under the job's secret key: an order nobody without the key can tie to the
  input's), cut into as many shards as the input had, named by HMACs of their rank. Which
  outputs share a shard, and in what order, says nothing about the input's shards or order.

Each shard is written whole into a temporary file next to its final name, fsynced and renamed
(:func:`boomerang.fileio.atomic_open`): a half-written shard never has its final name. Written
shards are recorded in ``OUT/.job/shards.json`` and their staged PNGs removed, so an
interrupted finish resumes with the next shard. WebDataset members get ``mtime`` 0, uid/gid 0
and no user names, so a resumed job writes the same bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import tarfile
from typing import Any, NamedTuple

__all__ = ["Original", "mirror_shards", "secret_order_shards", "secret_shard_names", "write_output_shards", "member_stem",
           "SHARDS_DONE"]

#: The job folder's record of the output shards already written (resume of the finish).
SHARDS_DONE = "shards.json"


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


def _shard_outputs(job, first: int, count: int, levels=None):
    n_levels, n_items, n_samples = job.outputs.shape
    for k in (range(n_levels) if levels is None else levels):
        start = (k * n_items + first) * n_samples
        yield from job.outputs.range(start, start + count * n_samples)


def member_stem(name: str) -> str:
    """A WebDataset key for output ``name``: without ``.png`` and with no ``.`` in its base name
    (a WebDataset key ends at the first dot of the base name)."""
    stem = name[:-4] if name.endswith(".png") else name
    folder, _, base = stem.rpartition("/")
    base = base.replace(".", "_")
    return f"{folder}/{base}" if folder else base


class Original(NamedTuple):
    """An input image copied as it is into an output shard (``augment --include-originals``): its
    bytes and extension are the input's; ``item`` carries its label and caption."""

    item: Any
    name: str


def mirror_shards(job, records, *, prefix=None, member=None, public=None, original=None):
    """One output shard per input shard (same relative name), in input order.

    Args:
        job: a sharded job.
        records: the job's :class:`~boomerang.tasks.journal.JournalRecords`, or ``None`` for the
            names only (each shard's contents are then empty).
        prefix: ``prefix(level index)`` -> a folder for that level's own set of shards (``augment``:
            ``level0.300``); ``None``: every level of a shard's items in one shard.
        member: ``member(output)`` -> the member's name in its shard (default: the output's name).
        public: ``public(row)`` -> the row as published in the shard (default: unchanged).
        original: ``original(item)`` -> the row of an input copied as it is before its first
            sample (``augment --include-originals``); ``None``: no originals. An item skipped
            (no row for its first sample) gets no original either.

    Yields:
        ``(shard name, iterator of (member name, output, row or None))``.
    """
    get = None if records is None else _records_by_unit(records.journal, job.block_size)
    member = member or (lambda o: o.name)
    groups = [None] if prefix is None else [[k] for k in range(len(job.noise_levels))]
    for levels in groups:
        for name, first, count in job.layout.items.shards:
            shard = name if levels is None else f"{prefix(levels[0])}/{name}"
            if get is None:
                yield shard, iter(())
                continue
            yield shard, _with_originals(((member(o), o, _public(get(o.index), public))
                                          for o in _shard_outputs(job, first, count, levels)), original)


def _public(row, public):
    return row if row is None or public is None else public(row)


def _with_originals(contents, original):
    for member, o, row in contents:
        if original is not None and o.sample == 0 and row is not None:
            yield o.item.relpath, Original(o.item, o.item.relpath), original(o.item)
        yield member, o, row


def secret_shard_names(job, key: str) -> list[str]:
    """The output shard names of a release: ``<20 hex digits of HMAC(key, rank)>.<tar|parquet>``,
    as many as the input had shards."""
    from boomerang.tasks.shards import SUFFIX

    n = len(job.layout.items.shards)
    return [hmac.new(bytes.fromhex(key), f"shard\0{i}".encode(), hashlib.sha256).hexdigest()[:20]
            + SUFFIX[job.layout.kind] for i in range(n)]


def secret_order_shards(job, records, key: str, *, scratch=None, public=None):
    """``anonymise``'s output shards: every written output, sorted by its (opaque) name, cut into
    :func:`secret_shard_names` in that order (``ceil(outputs / shards)`` each; trailing shards may
    stay empty and are then not written). Memory: one sort run
    (:func:`boomerang.tasks.streams.external_sorted`).

    Args:
        records: the job's records, or ``None`` for the names only.
        key: the job's secret key (hex).
        scratch: where the sort's temporary runs go (the private job folder).
        public: ``public(row)`` -> the row as published (default: unchanged).

    Yields:
        ``(shard name, iterator of (member name, output, row))``.
    """
    from boomerang.tasks.streams import external_sorted

    names = secret_shard_names(job, key)
    if records is None:
        for name in names:
            yield name, iter(())
        return
    per = max(1, -(-len(records) // len(names)))
    ordered = external_sorted(iter(records), key=lambda r: r["file_name"], folder=scratch)
    outputs = job.outputs
    for name in names:
        def contents(ordered=ordered):
            for _ in range(per):
                row = next(ordered, None)
                if row is None:
                    return
                o = outputs[row["_unit"]]
                yield o.name, o, (row if public is None else public(row))
        yield name, contents()


def _tar_member(tar, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0o644, 0, 0, "", ""
    tar.addfile(info, io.BytesIO(data))


def _write_tar(fh, out, contents, staged: list) -> int:
    from boomerang.tasks.shards import read_bytes, staged_name

    n = 0
    with tarfile.open(fileobj=fh, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for member, o, row in contents:
            if row is None:
                continue
            if isinstance(o, Original):  # the input's own bytes and extension
                stem, _, ext = member.rpartition(".")
                stem, ext = member_stem(stem) if stem else member_stem(member), ext.lower() if stem else "png"
                _tar_member(tar, f"{stem}.{ext}", read_bytes(o.item))
            else:
                staged.append(staged_name(o.name))
                stem = member_stem(member)
                _tar_member(tar, f"{stem}.png", (out / staged[-1]).read_bytes())
            meta = {k: v for k, v in row.items() if k != "_unit"}
            _tar_member(tar, f"{stem}.json", (json.dumps(meta, ensure_ascii=False) + "\n").encode())
            if o.item.label is not None:
                _tar_member(tar, f"{stem}.cls", str(o.item.label).encode())
            if o.item.caption is not None:
                _tar_member(tar, f"{stem}.txt", str(o.item.caption).encode())
            n += 1
    return n


def _parquet_rows(out, contents, staged: list) -> list:
    from boomerang.tasks.shards import read_bytes, staged_name

    rows = []
    for member, o, row in contents:
        if row is None:
            continue
        if isinstance(o, Original):
            data = read_bytes(o.item)
        else:
            staged.append(staged_name(o.name))
            data = (out / staged[-1]).read_bytes()
        meta = {k: v for k, v in row.items() if k not in ("_unit", "image")}
        rows.append({"image": {"bytes": data, "path": member}, **meta})
    columns = list(dict.fromkeys(k for r in rows for k in r))  # every row's columns (pyarrow reads the first's)
    return [{k: r.get(k) for k in columns} for r in rows]


def write_output_shards(job, records, plan) -> list[str]:
    """Write every output shard of a finished sharded job (each atomically, one at a time), then
    remove its staged PNGs; shards written by an earlier, interrupted finish are kept.

    Args:
        job: the job (``job.layout.kind``: ``webdataset`` or ``parquet``).
        records: the job's :class:`~boomerang.tasks.journal.JournalRecords`.
        plan: ``(shard name, iterator of (member name, output, row or None))`` in writing order
            (:func:`mirror_shards`, :func:`secret_order_shards`); a row of ``None`` (a skipped
            item) is left out, and a shard with no row is not written.

    Returns:
        The names (relative to OUT) of the shards that hold outputs.
    """
    from boomerang.fileio import atomic_open, write_json
    from boomerang.tasks.journal import _remove_files

    out = job.out
    done_path = out / ".job" / SHARDS_DONE
    try:
        written = json.loads(done_path.read_text(encoding="utf-8"))
        written = written if isinstance(written, dict) else {}
    except (OSError, ValueError):
        written = {}
    names = []
    for name, contents in plan:
        if name in written and (not written[name] or (out / name).is_file()):
            names += [name] if written[name] else []
            for _ in contents:  # a shared stream (secret order) moves on past this shard
                pass
            continue
        contents = [t for t in contents if t[2] is not None]  # one shard's rows (small dicts)
        staged: list = []
        if contents:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            with atomic_open(out / name) as fh:
                if job.layout.kind == "webdataset":
                    _write_tar(fh, out, contents, staged)
                else:
                    import pyarrow as pa
                    import pyarrow.parquet as pq

                    pq.write_table(pa.Table.from_pylist(_parquet_rows(out, contents, staged)), fh)
            names.append(name)
        written[name] = len(contents)
        write_json(done_path, written)
        _remove_files(out, staged)
    return names

