"""The on-disk layout of an augmentation cache (torch-free; the one place it is defined).

``boomerang augment IN_DIR --level 0.2,0.4 --samples-per-image K --out OUT_DIR``
writes, and :class:`boomerang.augment.BoomerangAugmented` reads::

    OUT_DIR/
      level0.200/                  one sample set per level: level_dirname(level)
        augment.jsonl              the manifest: one JSON row per sample (MANIFEST_NAME)
        <parent>/<stem>_s000.png   sample j of IN_DIR/<parent>/<stem>.<ext>: sample_relpath()
        ...                        (class folders and metadata files as in IN_DIR)
      level0.400/
        ...

A level folder is a ready-to-train dataset in the input's layout (class folders
stay class folders; ``metadata.jsonl``/``metadata.csv`` get one row per sample
with the source's label and caption). The manifest links every sample to its
source, so a training script can find the K samples of an item by the item's
path relative to IN_DIR (its *key*). Manifest row fields:

    file_name     sample path relative to the level folder (posix)
    source        source image path relative to IN_DIR (posix): the key
    sample_index  j in [0, K-1]; the sample's seed is boomerang.seeds.item_seed(seed, ..., j)
    level         the noise level in [0, 1]
    timestep      the training timestep the noise was added at (None at level 0)
    seed          the sample's own seed
    ...           the source's carried fields (label, caption/text, ...)

Levels name folders with 3 decimals, as ``boomerang sample`` names files, so
two levels that agree to 3 decimals share a folder.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import posixpath
import re
from typing import Iterable, Mapping

from boomerang.levels import check_level

__all__ = [
    "MANIFEST_NAME",
    "level_dirname",
    "parse_level_dirname",
    "sample_relpath",
    "available_levels",
    "read_manifest",
    "write_manifest",
    "source_samples",
]

#: File name of the per-level manifest (one JSON object per line, one line per sample).
MANIFEST_NAME = "augment.jsonl"
_LEVEL_RE = re.compile(r"^level(\d\.\d{3})$")


def level_dirname(level: float) -> str:
    """The folder of one level's sample set: ``level0.300`` for 0.3 (3 decimals).

    Raises:
        ValueError: ``level`` is not a number in [0, 1].
    """
    return f"level{check_level(level):.3f}"


def parse_level_dirname(name: str) -> float | None:
    """The level a folder name stands for (``"level0.300"`` -> 0.3), or None if it names no level."""
    m = _LEVEL_RE.match(name)
    if not m:
        return None
    value = float(m.group(1))
    return value if 0.0 <= value <= 1.0 else None


def _check_relpath(source: str, name: str = "source") -> str:
    rel = str(source).replace(os.sep, "/")
    norm = posixpath.normpath(rel)
    if not rel or rel.startswith("/") or norm == "." or norm.startswith("../") or norm == "..":
        raise ValueError(f"{name} must be a path relative to the input folder, got {source!r}")
    return norm


def sample_relpath(source: str, sample_index: int) -> str:
    """Where sample ``sample_index`` of ``source`` lies inside a level folder.

    ``"3/0042.png", 1`` -> ``"3/0042_s001.png"``: same sub-folder, the source's
    stem, the sample index with 3 digits, always PNG.

    Raises:
        ValueError: ``source`` is absolute or leaves the folder; ``sample_index`` < 0.
    """
    rel = _check_relpath(source)
    if isinstance(sample_index, bool) or not isinstance(sample_index, int) or sample_index < 0:
        raise ValueError(f"sample_index must be an integer >= 0, got {sample_index!r}")
    parent, base = posixpath.split(rel)
    stem = posixpath.splitext(base)[0] or base
    return posixpath.join(parent, f"{stem}_s{sample_index:03d}.png")


def available_levels(cache_dir: str | os.PathLike) -> list[float]:
    """Levels with a sample set (a level folder holding a manifest) in ``cache_dir``, ascending."""
    root = pathlib.Path(cache_dir)
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        lv = parse_level_dirname(p.name)
        if lv is not None and (p / MANIFEST_NAME).is_file():
            out.append(lv)
    return sorted(out)


def write_manifest(level_dir: str | os.PathLike, rows: Iterable[Mapping]) -> pathlib.Path:
    """Write a level folder's manifest atomically (temporary file, then rename).

    Args:
        level_dir: the level folder (``OUT_DIR/level0.300``), created if missing.
        rows: one mapping per sample with at least ``file_name``, ``source`` and
            ``sample_index`` (see the module docstring); written in the order given.

    Returns:
        the manifest's path.

    Raises:
        ValueError: a row lacks a required field or has a bad path or index.
    """
    from boomerang.fileio import atomic_open

    path = pathlib.Path(level_dir) / MANIFEST_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as fh:  # streamed: a level of millions of samples is never held
        for row in rows:
            fh.write((_manifest_line(row) + "\n").encode("utf-8"))
    return path


def _manifest_line(row: Mapping) -> str:
    """One checked manifest row as JSON."""
    row = dict(row)
    for k in ("file_name", "source", "sample_index"):
        if k not in row:
            raise ValueError(f"manifest row lacks {k!r}: {row}")
    row["file_name"] = _check_relpath(row["file_name"], "file_name")
    row["source"] = _check_relpath(row["source"])
    if isinstance(row["sample_index"], bool) or not isinstance(row["sample_index"], int) or row["sample_index"] < 0:
        raise ValueError(f"sample_index must be an integer >= 0, got {row['sample_index']!r}")
    return json.dumps(row, sort_keys=False)


def read_manifest(cache_dir: str | os.PathLike, level: float) -> list[dict]:
    """The manifest rows of one level's sample set.

    Args:
        cache_dir: the folder ``boomerang augment --out`` wrote.
        level: the level in [0, 1] (matched to 3 decimals).

    Returns:
        the rows as dicts, in file order.

    Raises:
        ValueError: no sample set for ``level`` (the message lists the levels
            present and the command that fills the cache), or a malformed line.
    """
    if isinstance(level, float) and math.isnan(level):
        raise ValueError("level must be a number in [0, 1], got nan")
    path = pathlib.Path(cache_dir) / level_dirname(level) / MANIFEST_NAME
    if not path.is_file():
        have = available_levels(cache_dir)
        present = ", ".join(f"{v:g}" for v in have) if have else "none"
        raise ValueError(
            f"no sample set for level {level:g} in {str(cache_dir)!r} (levels present: {present}); "
            f"fill it with: boomerang augment IN_DIR --level {level:g} --out {cache_dir}"
        )
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not a JSON line ({e.msg})") from None
            if not isinstance(row, dict) or not {"file_name", "source", "sample_index"} <= row.keys():
                raise ValueError(f"{path}:{n}: a manifest row needs file_name, source and sample_index")
            rows.append(row)
    return rows


def source_samples(cache_dir: str | os.PathLike, level: float) -> dict[str, dict[int, pathlib.Path]]:
    """Map each source key to its samples at one level: ``{source: {sample_index: absolute path}}``.

    Raises:
        ValueError: as :func:`read_manifest`.
    """
    level_dir = pathlib.Path(cache_dir) / level_dirname(level)
    out: dict[str, dict[int, pathlib.Path]] = {}
    for row in read_manifest(cache_dir, level):
        out.setdefault(posixpath.normpath(str(row["source"])), {})[int(row["sample_index"])] = \
            level_dir / str(row["file_name"])
    return out
