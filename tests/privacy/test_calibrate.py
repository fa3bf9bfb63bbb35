"""``boomerang calibrate-privacy`` and :func:`boomerang.privacy.calibrate.calibrate_privacy` on real digits
(bundled model, 2 DDIM steps)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from boomerang.cli import main
from boomerang.metrics import wilson_interval
from boomerang.privacy.calibrate import calibrate_privacy, sources_needed
from boomerang.settings import SampleSettings

FAST = SampleSettings(scheduler="ddim", steps=2, eta=0)


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    """40 real digits in class folders (4 per class)."""
    from boomerang.data import load_dataset

    ds = load_dataset("mnist5k")
    root = tmp_path_factory.mktemp("cal") / "real"
    for c in range(10):
        for i in np.flatnonzero(ds.labels == c)[:4]:
            p = root / str(c) / f"mnist_{i:04d}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(ds.images[i, 0]).save(p)
    return root


def test_sources_needed_is_the_smallest_n_the_wilson_bound_certifies():
    n = sources_needed(0.05)
    assert n == 73 and wilson_interval(0, n)[1] <= 0.05 < wilson_interval(0, n - 1)[1]
    n2 = sources_needed(0.05, hits=2)
    assert wilson_interval(2, n2)[1] <= 0.05 < wilson_interval(2, n2 - 1)[1]


def test_bisection_recommends_the_smallest_probed_level_that_meets_the_target(digits):
    cal = calibrate_privacy(digits, 0.3, sources=30, settings=FAST, bisections=3, classifier="bundled")
    levels = [p.level for p in cal.probes]
    assert levels[:2] == [1.0, 0.0] and len(levels) == 5  # max, min, then 3 halvings
    assert cal.recommended is not None and cal.resolution == pytest.approx(1 / 8)
    by_level = {p.level: p for p in cal.probes}
    assert by_level[cal.recommended].meets
    assert wilson_interval(by_level[cal.recommended].top1.hits, 30)[1] <= 0.3
    # every probed level below the recommendation misses; the one just below is within the resolution
    below = [p for p in cal.probes if p.level < cal.recommended]
    assert below and not any(p.meets for p in below)
    assert cal.recommended - max(p.level for p in below) == pytest.approx(cal.resolution)
    assert cal.n_sources == 30 and cal.num_candidates == 40
    assert by_level[0.0].top1.hits == 30 and by_level[0.0].ssim == pytest.approx(1.0)  # level 0: the input
    assert by_level[0.0].class_retention == 1.0
    d = cal.to_dict()
    assert d["recommended_level"] == cal.recommended and len(d["probes"]) == 5 and len(d["sources"]) == 30
    # the same seeds at every level and on every run: a second calibration gives the same rates
    again = calibrate_privacy(digits, 0.3, sources=30, settings=FAST, bisections=3)
    assert [(p.level, p.top1.hits, p.top5.hits) for p in again.probes] == \
        [(p.level, p.top1.hits, p.top5.hits) for p in cal.probes]


def test_too_few_sources_to_certify_says_how_many(digits):
    cal = calibrate_privacy(digits, 0.02, sources=10, settings=FAST, bisections=1)
    assert cal.recommended is None and len(cal.probes) == 1
    if cal.probes[0].top1.hits == 0:
        assert cal.sources_needed == sources_needed(0.02) and f"--sources {cal.sources_needed}" in cal.message
    else:
        assert "no level up to 1" in cal.message


def test_cli_writes_json_and_plot_and_prints_the_anonymise_command(digits, tmp_path, capsys):
    out = tmp_path / "cal"
    rc = main(["calibrate-privacy", str(digits), "--target-top1", "0.3", "--sources", "20", "--bisections", "2",
               "--scheduler", "ddim", "--steps", "2", "--out", str(out), "--threads", "1", "--no-progress"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    result = json.loads((out / "calibration.json").read_text())
    assert (out / "calibration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    level = result["recommended_level"]
    assert f"level {level:g}" in printed.splitlines()
    command = shlex.split(result["anonymise_command"])
    assert command[:3] == ["boomerang", "anonymise", str(digits)] and command[command.index("--level") + 1] == f"{level:g}"
    assert "--scheduler" in command and "--steps" in command
    assert result["anonymise_command"] in printed


@pytest.mark.parametrize("extra,needle", [
    (["--level", "0.5"], "searches the level"),
    (["--target-top1", "1.5"], "target_top1"),
    (["--sources", "0"], "sources"),
])
def test_cli_refusals_are_one_line_and_write_nothing(digits, tmp_path, capsys, extra, needle):
    out = tmp_path / "cal"
    argv = ["calibrate-privacy", str(digits), "--target-top1", "0.05", "--out", str(out), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle.replace("_", "-") in err.replace("_", "-"), err
    assert not out.exists()


def test_cli_refuses_out_inside_in_dir(digits, capsys):
    assert main(["calibrate-privacy", str(digits), "--target-top1", "0.05", "--out", str(digits / "cal")]) == 2
    assert "inside IN_DIR" in capsys.readouterr().err and not (digits / "cal").exists()
