"""``audit-privacy --holdout``: distance to closest record (boomerang.privacy.dcr), near-copy sheet."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from boomerang.cli import main
from boomerang.privacy import Link, write_links


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """REAL (20 digits), ANON (10 exact copies of real digits under other names, 10 unrelated digits),
    HOLD (20 other real digits), and the links of the copies."""
    from boomerang.data import load_dataset

    ds = load_dataset("mnist5k")
    base = tmp_path_factory.mktemp("dcr")
    real, anon, hold = base / "real", base / "anon", base / "hold"
    for d in (real, anon, hold):
        d.mkdir()
    idx = np.arange(60)
    for i in idx[:20]:
        Image.fromarray(ds.images[i, 0]).save(real / f"r{i:02d}.png")
    links = []
    for k, i in enumerate(idx[:10]):
        shutil.copy(real / f"r{i:02d}.png", anon / f"copy{k:02d}.png")
        links.append(Link(f"r{i:02d}.png", f"copy{k:02d}.png"))
    for k, i in enumerate(idx[20:30]):
        Image.fromarray(ds.images[i, 0]).save(anon / f"new{k:02d}.png")
    for i in idx[30:50]:
        Image.fromarray(ds.images[i, 0]).save(hold / f"h{i:02d}.png")
    write_links(base / "links.jsonl", links)
    return real, anon, hold, base / "links.jsonl"


def test_copies_are_flagged_against_the_holdout(folders, tmp_path, capsys):
    real, anon, hold, links = folders
    sheet, rep = tmp_path / "pairs.png", tmp_path / "audit.json"
    rc = main(["audit-privacy", str(real), str(anon), "--holdout", str(hold), "--link-file", str(links),
               "--sheet", str(sheet), "--pairs", "5", "--json", str(rep)])
    out = capsys.readouterr().out
    assert rc == 0, out
    d = json.loads(rep.read_text())
    dcr = d["dcr"]
    assert dcr["released"]["n"] == 20 and dcr["holdout"]["n"] == 20 and dcr["num_real"] == 20
    assert dcr["released"]["min"] == 0.0 and dcr["holdout"]["min"] > 0.0
    assert dcr["below_holdout_p5"]["hits"] >= 10  # the 10 copies sit at distance 0
    assert len(dcr["closest_pairs"]) == 5 and all(p["distance"] == 0.0 and p["released"].startswith("copy")
                                                  for p in dcr["closest_pairs"])
    assert dcr["own_source_nearest"] == {"hits": 10, "n": 10, "rate": 1.0, "ci95": dcr["own_source_nearest"]["ci95"]}
    assert d["top1"]["rate"] == 1.0  # the linkage attack runs too
    per = {p["released"]: p for p in dcr["per_image"]}
    assert per["copy03.png"]["nearest"] == "r03.png" and per["copy03.png"]["dcr"] == 0.0
    im = Image.open(sheet)
    assert im.size[1] > 5 * 28 and "closest pair" in out and "own source" in out


def test_dcr_needs_no_links(folders, capsys):
    real, anon, hold, _ = folders
    assert main(["audit-privacy", str(real), str(anon), "--holdout", str(hold)]) == 0
    out = capsys.readouterr().out
    assert "DCR" in out and "linkage attack" not in out and "own source" not in out


@pytest.mark.parametrize("extra,needle", [
    ([], "--link-file"),
    (["--sheet", "SHEET"], "--holdout"),
    (["--holdout", "HOLD", "--sheet", "ANON/pairs.png"], "inside ANON_DIR"),
    (["--holdout", "/no/such/dir"], "--holdout"),
    (["--holdout", "REAL"], "NOT released"),  # the released sources are no holdout (found by a new-user trial)
    (["--holdout", "BASE"], "NOT released"),  # nor is a folder that holds them
])
def test_refusals(folders, capsys, extra, needle, tmp_path):
    real, anon, hold, _ = folders
    extra = [a.replace("REAL", str(real)).replace("BASE", str(real.parent)).replace("HOLD", str(hold)).replace("ANON", str(anon)).replace("SHEET", str(tmp_path / "s.png"))
             for a in extra]
    before = sorted(p.name for p in Path(anon).iterdir())
    assert main(["audit-privacy", str(real), str(anon), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err, err
    assert sorted(p.name for p in Path(anon).iterdir()) == before
