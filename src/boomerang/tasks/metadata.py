"""The output metadata file of a dataset job (``metadata.jsonl`` or ``metadata.csv``), written atomically."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

__all__ = ["write_metadata_file"]


def write_metadata_file(out: Path, records: list[dict], fmt: str = "jsonl") -> Path:
    """Write the output metadata file (``metadata.jsonl`` or ``metadata.csv``, the Hugging
    Face imagefolder convention: a ``file_name`` column plus the carried columns), atomically."""
    from boomerang.imageio import atomic_write_bytes

    rows = [{k: v for k, v in r.items() if k != "_unit"} for r in sorted(records, key=lambda r: r["_unit"])]
    if fmt == "csv":
        columns: list[str] = []
        for r in rows:
            columns += [k for k in r if k not in columns]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if r.get(k) is None else r.get(k) for k in columns})
        data, name = buf.getvalue().encode(), "metadata.csv"
    else:
        data = "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in rows).encode()
        name = "metadata.jsonl"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / name, data)
    return out / name


# ----------------------------------------------------------------------------- the whole job
