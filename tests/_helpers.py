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



# Shard builders live in the package (benchmarks use them too).
from boomerang.testing.shards import label_of, png_bytes, write_parquet, write_webdataset  # noqa: E402,F401


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
