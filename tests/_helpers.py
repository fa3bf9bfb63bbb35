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
