"""One home per rule: the seed rule (``seeds.seed_from_digest``) and the image lister
(``imageio.iter_image_files``). Seeds are pinned to the values every release so far has used;
the lister must give the order of relative paths that outputs and seeds depend on, one item at a time."""

from __future__ import annotations

import hashlib
import hmac
import inspect
import os
import re
from pathlib import Path

import pytest

from boomerang import imageio, seeds
from boomerang.tasks.anonymise import secret_seed

SRC = Path(__file__).resolve().parents[2] / "src" / "boomerang"


# ----------------------------------------------------------------------------- seeds


def test_seed_values_are_pinned() -> None:
    # Values of the rule as written before it had one home: a change here changes every sample.
    assert seeds.item_seed(0, 0, 0) == 8439165705358739091
    assert seeds.item_seed(7, 3, 2) == 5237423377344553413
    assert seeds.path_seed(0, "cat/001.png", 0) == 8313222286324762952
    assert seeds.path_seed(5, "é/b.png", 4) == 5758137132186860637
    assert secret_seed("00" * 32, 0, "cat/001.png", 0) == 5933885930746909974


def test_seed_from_digest_is_the_rule() -> None:
    digest = hashlib.sha256(b"x").digest()
    assert seeds.seed_from_digest(digest) == int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)
    assert seeds.seed_from_digest(b"\xff" * 8) == 2**63 - 1
    key = bytes(range(32))
    mac = hmac.new(key, b"seed\x003\x00a.png\x001", hashlib.sha256).digest()
    assert secret_seed(key.hex(), 3, "a.png", 1) == seeds.seed_from_digest(mac)
    with pytest.raises(ValueError, match="8 bytes"):
        seeds.seed_from_digest(b"short")


def test_the_seed_rule_is_written_once() -> None:
    rule = re.compile(r"<<\s*63|\*\*\s*63\s*-")  # (1 << 63) - 1, 2**63 - 1: the top bit cleared
    homes = [p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py") if rule.search(p.read_text(encoding="utf-8"))]
    assert homes == ["seeds.py"]


# ----------------------------------------------------------------------------- the lister


def _tree(root: Path, rels: list[str]) -> None:
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")


def test_iter_image_files_yields_relative_path_order(tmp_path: Path) -> None:
    # "a-b/" < "a.png" < "a/" as strings: a walk that sorted plain names would put a/ first.
    _tree(tmp_path, ["a/x.png", "a-b/y.png", "a.png", "B.PNG", "a/.h.png", ".h/z.png", "a/n.txt", "c/d/e.gif", "é.jpg"])
    got = [p.relative_to(tmp_path).as_posix() for p in imageio.iter_image_files(tmp_path)]
    assert got == ["B.PNG", "a-b/y.png", "a.png", "a/x.png", "c/d/e.gif", "é.jpg"]
    assert got == sorted(got)
    flat = [p.name for p in imageio.iter_image_files(tmp_path, recursive=False)]
    assert flat == ["B.PNG", "a.png", "é.jpg"]


def test_iter_image_files_is_lazy(tmp_path: Path) -> None:
    _tree(tmp_path, [f"d{i}/x.png" for i in range(3)])
    it = imageio.iter_image_files(tmp_path)
    assert inspect.isgenerator(it)
    first = next(it)
    assert first == tmp_path / "d0" / "x.png"
    (tmp_path / "d2" / "x.png").unlink()  # found as the walk gets there, not listed up front
    assert [p.parent.name for p in it] == ["d1"]


def test_iter_image_files_unique_and_links(tmp_path: Path) -> None:
    _tree(tmp_path, ["a.png", "sub/b.png"])
    os.symlink(tmp_path / "a.png", tmp_path / "link.png")
    os.symlink(tmp_path / "sub", tmp_path / "zdir")  # a link to a folder is not followed
    rel = lambda ps: [p.relative_to(tmp_path).as_posix() for p in ps]  # noqa: E731
    assert rel(imageio.iter_image_files(tmp_path)) == ["a.png", "sub/b.png"]
    assert rel(imageio.iter_image_files(tmp_path, unique=False)) == ["a.png", "link.png", "sub/b.png"]
    assert rel(imageio.list_image_files([tmp_path / "sub", tmp_path])) == ["sub/b.png", "a.png"]


def test_every_lister_calls_the_one_lister(tmp_path: Path) -> None:
    from boomerang.data import _list_images
    from boomerang.serve.page import find_examples
    from boomerang.tasks.layout import scan

    _tree(tmp_path, ["b.png", "a.jpg", ".hidden.png", "notes.txt", "k/c.png"])
    assert [p.name for p in _list_images(tmp_path)] == ["a.jpg", "b.png"]
    assert [p.name for p in find_examples(tmp_path)] == ["a.jpg", "b.png"]
    assert [it.relpath for it in scan(tmp_path).items] == ["a.jpg", "b.png", "k/c.png"]
    # No module but the lister defines the suffixes or compares a file's suffix with them.
    rule = re.compile(r"IMAGE_SUFFIXES\s*(:|=[^=])|suffix.*\bin\s+(imageio\.)?IMAGE_SUFFIXES")
    homes = {p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py") if rule.search(p.read_text(encoding="utf-8"))}
    assert homes == {"_listing.py"}
