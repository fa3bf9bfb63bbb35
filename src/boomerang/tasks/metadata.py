"""The output metadata file of a dataset job (``metadata.jsonl`` or ``metadata.csv``), written
atomically and streamed: rows go to the file as they are read (from the job's journal), so its
size never has to fit in memory."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

__all__ = ["write_metadata_file"]


def _rows(records, in_order: bool):
    rows = records if in_order else sorted(records, key=lambda r: r["_unit"])
    return ({k: v for k, v in r.items() if k != "_unit"} for r in rows)


def write_metadata_file(out: Path, records, fmt: str = "jsonl", *, in_order: bool | None = None) -> Path:
    """Write the output metadata file (``metadata.jsonl`` or ``metadata.csv``, the Hugging
    Face imagefolder convention: a ``file_name`` column plus the carried columns), atomically.

    Args:
        out: the folder.
        records: rows with a ``_unit`` key (their order in the file; dropped from the file).
        fmt: ``jsonl`` or ``csv`` (its columns: every key in order of first appearance; a
            second pass over ``records``, which must then be re-iterable).
        in_order: the rows already come in ``_unit`` order and are streamed to the file (the
            journal's records); default: True unless ``records`` is a list (sorted here).
    """
    from boomerang.fileio import atomic_open

    if in_order is None:
        in_order = not isinstance(records, list)
    if isinstance(records, Iterator):
        records = list(records)  # a one-shot iterator cannot be read twice
    out.mkdir(parents=True, exist_ok=True)
    name = "metadata.csv" if fmt == "csv" else "metadata.jsonl"
    with atomic_open(out / name) as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8", newline="", write_through=False)
        if fmt == "csv":
            columns: list[str] = []
            for r in _rows(records, in_order):
                columns += [k for k in r if k not in columns]
            w = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
            w.writeheader()
            for r in _rows(records, in_order):
                w.writerow({k: "" if r.get(k) is None else r.get(k) for k in columns})
        else:
            for r in _rows(records, in_order):
                text.write(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n")
        text.flush()
        text.detach()
    return out / name
