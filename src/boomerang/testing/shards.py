"""Tiny WebDataset / Parquet shards for tests and benchmarks (torch-free).

Each image is a random 8-bit gray PNG seeded by its key, so the same key gives the same image in
any grouping of shards; labels (:func:`label_of`) and captions depend on the key only.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["png_bytes", "label_of", "write_webdataset", "write_parquet"]


def png_bytes(rng, size=(12, 10)) -> bytes:
    """A random 8-bit gray PNG of ``size`` (width, height), as bytes."""
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((rng.random(size[::-1]) * 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def label_of(key: str) -> int:
    """The class the shard builders give ``key`` (the sum of its character codes mod 3: the same in any grouping)."""
    return sum(ord(c) for c in key) % 3


def write_webdataset(folder: Path, shards: dict, *, images: dict | None = None) -> Path:
    """WebDataset tars in ``folder``: ``{shard name: [keys]}``; each key gets ``KEY.png`` (random,
    seeded by the key, or ``images[key]`` bytes), ``.cls``, ``.txt`` and ``.json``."""
    import io
    import json
    import tarfile
    import zlib

    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    for shard, keys in shards.items():
        with tarfile.open(folder / shard, "w") as tar:
            for key in keys:
                data = (images or {}).get(key) or png_bytes(np.random.default_rng(zlib.crc32(key.encode())))
                for ext, blob in (("png", data), ("cls", str(label_of(key)).encode()),
                                  ("txt", f"a picture {key}".encode()), ("json", json.dumps({"id": key}).encode())):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(blob)
                    tar.addfile(info, io.BytesIO(blob))
    return folder


def write_parquet(folder: Path, shards: dict, *, row_group_size: int = 3) -> Path:
    """Parquet files in ``folder`` (the Hugging Face ``datasets`` layout): ``{shard name: [keys]}``;
    each row an ``image`` struct (``bytes`` random, seeded by the key; ``path`` KEY.png), ``label``
    and ``caption``."""
    import zlib

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    for shard, keys in shards.items():
        rows = [{"image": {"bytes": png_bytes(np.random.default_rng(zlib.crc32(k.encode()))), "path": f"{k}.png"},
                 "label": label_of(k), "caption": f"a picture {k}"} for k in keys]
        (folder / shard).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), folder / shard, row_group_size=row_group_size)
    return folder



