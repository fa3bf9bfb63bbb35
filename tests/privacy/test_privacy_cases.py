"""``anonymise --verify-top`` and ``calibrate-privacy`` on the shared input cases (tests/data/cases): the
unreadable files are skipped and listed, every readable one is verified (released or withheld) with its own
size, and calibration attacks with the readable ones only."""

from __future__ import annotations

import json
import shutil

from _helpers import CASES
from PIL import Image

from boomerang.cli import main
from boomerang.privacy import read_links

FAST = ["--steps", "2", "--scheduler", "ddim", "--no-progress", "--threads", "1"]
BROKEN = {"empty.png", "not_an_image.png", "truncated.jpg"}


def test_verified_release_and_calibration_on_the_cases(tiny_colour_pixel_dir, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for p in CASES.iterdir():
        if p.name != "under_8000x6000.png":  # its bounded-memory read has its own tests
            shutil.copy(p, src / p.name)
    readable = {p.name for p in src.iterdir()} - BROKEN
    out, links = tmp_path / "anon", tmp_path / "links.jsonl"
    model = ["--model", str(tiny_colour_pixel_dir)]
    assert main(["anonymise", str(src), "--out", str(out), "--link-file", str(links), "--level", "0.5",
                 "--verify-top", "1", "--max-level", "0.7", *model, *FAST]) == 3  # done, some files skipped
    report = json.loads((out / ".job" / "report.json").read_text())
    assert {s["file"] for s in report["skipped_files"]} == BROKEN
    v = report["verification"]
    assert v["released"] + v["withheld"] == len(readable) == report["done"]
    detail = json.loads((out / ".job" / "verification.json").read_text())
    assert {r["source"] for r in detail["outputs"]} == readable
    for ln in read_links(links):
        with Image.open(src / ln.source) as a, Image.open(out / ln.output) as b:
            upright = (a.height, a.width) if ln.source == "exif_rotate6.jpg" else a.size
            assert b.size == upright
    published = (out / "metadata.jsonl").read_text() + "".join(p.name for p in out.iterdir())
    assert not any(name in published or name.rsplit(".", 1)[0] in published for name in readable | BROKEN)

    cal = tmp_path / "cal"
    assert main(["calibrate-privacy", str(src), "--target-top1", "0.4", "--out", str(cal), "--sources", str(len(readable)),
                 "--bisections", "1", *model, *FAST]) in (0, 4)
    result = json.loads((cal / "calibration.json").read_text())
    # as many sources as readable images: all of them drawn, none of the broken ones (a new-user trial found
    # an unreadable file drawn as a source, silently leaving fewer sources)
    assert result["n_sources"] == result["num_candidates"] == len(readable)
    assert {s["file"] for s in result["skipped_candidates"]} == BROKEN
    assert (cal / "calibration.png").is_file()
