"""The plain-vs-verified study helpers (boomerang.studies.privacy_utility.release_pair, read_partial_release):
with one job key the verified release keeps every item that passed at its first draw byte for byte."""

from __future__ import annotations

import json

import numpy as np

from boomerang.settings import SampleSettings
from boomerang.studies.privacy_utility import read_partial_release, release_pair, write_digits


def test_release_pair_shares_first_draws_and_reads_back_what_was_kept(tmp_path):
    from boomerang.data import load_dataset

    ds = load_dataset("mnist5k")
    idx = np.arange(12)
    names = write_digits(tmp_path / "src", ds.images[idx], idx)
    write_digits(tmp_path / "pool", ds.images[12:40], np.arange(12, 40))
    settings = SampleSettings(scheduler="ddim", steps=2, eta=0.0)
    pair = release_pair(tmp_path / "src", tmp_path / "pool", tmp_path, [0.8], settings, key="ab" * 32, verify_top=1)
    detail = json.loads((pair["verified"]["out"] / ".job" / "verification.json").read_text())
    assert pair["verified"]["report"]["verification"]["released"] + \
        pair["verified"]["report"]["verification"]["withheld"] == 12
    first = [r for r in detail["outputs"] if not r.get("withheld") and r["attempts"] == 0]
    assert first
    for r in first:  # the same key: the same name and the same bytes as the plain release
        assert (pair["verified"]["out"] / r["output"]).read_bytes() == (pair["plain"]["out"] / r["output"]).read_bytes()
    for r in detail["outputs"]:
        if not r.get("withheld") and r["attempts"]:
            assert (pair["verified"]["out"] / r["output"]).read_bytes() != \
                (pair["plain"]["out"] / r["output"]).read_bytes()
    kept, x = read_partial_release(pair["verified"]["out"], pair["verified"]["links"], names, [0.8])[0.8]
    withheld = {r["source"] for r in detail["outputs"] if r.get("withheld")}
    assert [names[i] for i in kept] == [n for n in names if n not in withheld]
    assert x.shape == (len(kept), 1, 28, 28) and float(x.min()) >= -1 and float(x.max()) <= 1
    kept_plain, _ = read_partial_release(pair["plain"]["out"], pair["plain"]["links"], names, [0.8])[0.8]
    assert kept_plain == list(range(12))
