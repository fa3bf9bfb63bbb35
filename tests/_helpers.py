"""Helpers shared by the test files (tests/conftest.py puts this folder on ``sys.path``).

Paths of the checkout, per-item generators, the PNG-metadata check and the in-process CLI
wrapper: one copy each, imported by the test files that need them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

#: The checkout's root (README.md, examples/, docs/, benchmarks/, src/).
ROOT = Path(__file__).resolve().parents[1]
#: Copies of ../shared/cases/images: small input files for known classes of faults.
CASES = Path(__file__).resolve().parent / "data" / "cases"
#: The bundled example digits, and the one most tests use.
DIGITS = ROOT / "examples" / "digits"
DIGIT = DIGITS / "7.png"


def generators(seeds: Iterable[int], base: int = 0) -> list:
    """One ``torch.Generator`` per item, seeded ``base + seed``: what every sampler takes."""
    import torch

    return [torch.Generator().manual_seed(base + int(s)) for s in seeds]


def no_metadata(kinds: list[bytes]) -> bool:
    """A PNG's chunk kinds hold only image data: IHDR first, IEND last, IDAT (one or more) between."""
    return kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and set(kinds[1:-1]) == {b"IDAT"}


def run_cli(argv, capsys) -> tuple[int, str]:
    """``boomerang ARGV`` in this process: (exit status, what it printed on stderr)."""
    from boomerang.cli import main

    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def png_bytes(rng, size=(12, 10)) -> bytes:
    """A random 8-bit gray PNG of ``size`` (width, height), as bytes."""
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((rng.random(size[::-1]) * 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def label_of(key: str) -> int:
    """The class the shard builders give ``key`` (its digits' sum mod 3: the same in any grouping)."""
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


def tree_bytes(out: Path) -> dict:
    """``{relative path: bytes}`` of every file under ``out`` outside its job folder."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and ".job" not in p.relative_to(out).parts}


def shard_members(path: Path) -> dict:
    """``{member name: bytes}`` of a tar shard, or ``{row's image path: row}`` of a Parquet file."""
    import tarfile

    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return {r["image"]["path"]: r for r in pq.read_table(path).to_pylist()}
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
