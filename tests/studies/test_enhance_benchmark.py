"""benchmarks/enhance.py as a program: the flags that choose which digits run and the README's tables
(``--table``), checked fast on results files written here; the benchmark itself is not a test. The paired
comparison the tables print is boomerang.stats.paired_difference (tests/core/test_stats.py)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from boomerang.stats import paired_difference

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "enhance.py"


def _enhance(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def _all(*runs: tuple[str, ...]) -> list[subprocess.CompletedProcess]:
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda a: _enhance(*a), runs))


def _table(folder: pathlib.Path, results: dict, *flags: str) -> str:
    (folder / "r.json").write_text(json.dumps(results))
    proc = _enhance("--table", "--out", str(folder), "--name", "r", *flags)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_digit_selection_flags(tmp_path):
    # With --table and an empty --out, a command line that parses stops at once ("run the benchmark first",
    # status 1): a flag error is status 2, before that.
    empty = ("--table", "--out", str(tmp_path))
    ok, six, ten, *bad = _all(
        ("--no-4x", "--sheets", "5", *empty),
        ("--no-4x", "--sheets", "6", *empty),
        ("--n-digits", "10", "--sheets", "8", *empty),
        *((*b, *empty) for b in (["--no-4x", "--no-8x"], ["--sheets", "6"], ["--first-sheet-digit", "480"],
                                 ["--n-boot", "5"])))
    assert ok.returncode == 1 and "run the benchmark first" in ok.stderr
    # the sheets start right after the 4x digits, with --no-4x too: the README's sheet first, then the next four
    assert six.returncode == 2 and "--sheets 6 from --first-sheet-digit 150 needs digits 150-533" in six.stderr
    assert ten.returncode == 2 and "--sheets 8 from --first-sheet-digit 10 needs digits 10-521" in ten.stderr
    for proc in bad:
        assert proc.returncode == 2, proc.args


def test_table_prints_the_paired_comparison(tmp_path):
    d = paired_difference([1] * 7 + [0] * 3, [1] * 4 + [0] * 3 + [1] + [0] * 2)  # 4 both, 3 A only, 1 B only
    row = {"accuracy": 0.7, "accuracy_ci95": [0.4, 0.9], "psnr_db": {"mean": 10.0}, "ssim": {"mean": 0.1},
           "consistency_error_8bit": {"mean": 1.0}, "seam_score": 1.0}
    results = {"x8": {"methods": {"bicubic": dict(row, accuracy=0.5), "enhance L=0.4": dict(row, vs_bicubic=d)}}}
    text = _table(tmp_path, results)
    assert "| 8x tiled (28->224) | enhance L=0.4 | 4 | 3 | 1 | +20.0 [" in text
    assert "| 0.62 |" in text
    # results without paired comparisons (the older runs) print only the first table
    del results["x8"]["methods"]["enhance L=0.4"]["vs_bicubic"]
    assert "McNemar" not in _table(tmp_path, results)


def test_table_without_a_range_of_positions(tmp_path):
    # 8x digits at order positions 10-19; positions 10-14 dropped, leaving 15-19:
    # bicubic right on 15, 16; the method on 15, 17, 18, 19 -> 3 method only, 1 bicubic only, +40 points,
    # p = 2 * (1 + 4) / 16
    row = {"accuracy": 0.5, "accuracy_ci95": [0.2, 0.8], "psnr_db": {"mean": 10.0}, "ssim": {"mean": 0.1},
           "consistency_error_8bit": {"mean": 1.0}, "seam_score": 1.0}
    results = {"x8": {"order_positions": [10, 20], "methods": {
        "bicubic": dict(row, correct_by_digit="1111111000"), "enhance L=0.4": dict(row, correct_by_digit="0000010111")}}}
    text = _table(tmp_path, results, "--without", "10-14")
    assert "outside positions 10-14 (5 digits; bicubic 40.0%)" in text
    assert "| enhance L=0.4 | 80.0 | 3 | 1 | +40.0 [" in text and "| 0.62 |" in text
    assert "outside positions 150-213 (10 digits; bicubic 70.0%)" in _table(tmp_path, results, "--without", "150-213")
    for proc in _all(*(("--table", "--out", str(tmp_path), "--name", "r", "--without", bad)
                       for bad in ("150", "213-150", "a-b", "0-500"))):
        assert proc.returncode == 2 and "--without" in proc.stderr, proc.args


def test_table_prints_both_judges(tmp_path):
    """Runs from issue 20 on score every method with two judges: --table adds a table with each judge's accuracy
    and its paired difference with bicubic; older results (no "judges") print without it (above)."""
    d_cnn = paired_difference([1] * 7 + [0] * 3, [1] * 4 + [0] * 3 + [1] + [0] * 2)  # +20 points
    d_svm = paired_difference([1] * 2 + [0] * 8, [1] * 4 + [0] * 6)  # -20 points
    judges = {"cnn": {"accuracy": 0.7, "accuracy_ci95": [0.4, 0.9]}, "hog-svm": {"accuracy": 0.2, "accuracy_ci95": [0.05, 0.5]}}
    row = {"accuracy": 0.7, "accuracy_ci95": [0.4, 0.9], "psnr_db": {"mean": 10.0}, "ssim": {"mean": 0.1},
           "consistency_error_8bit": {"mean": 1.0}, "seam_score": 1.0, "judges": judges}
    results = {"judges": {"cnn": {}, "hog-svm": {}},
               "x8": {"methods": {"bicubic": row, "enhance L=0.4": dict(row, vs_bicubic=d_cnn,
                                                                       vs_bicubic_by_judge={"cnn": d_cnn, "hog-svm": d_svm})}}}
    text = _table(tmp_path, results)
    assert "| setting | method | cnn: accuracy % [95% CI] | cnn: vs bicubic, points [95% CI] (p) | hog-svm: accuracy" in text
    assert "| 8x tiled (28->224) | enhance L=0.4 | 70.0 [40, 90] | +20.0 [" in text
    assert "] (0.62) | 20.0 [5, 50] | -20.0 [" in text
    assert "| 8x tiled (28->224) | bicubic | 70.0 [40, 90] | - | 20.0 [5, 50] | - |" in text
    del results["judges"]
    assert "hog-svm" not in _table(tmp_path, results)


def test_rejudge_scores_saved_outputs_again(tmp_path):
    """--rejudge: the outputs a run kept with --save-cells are scored with other judges and the results file gains
    their figures; a file whose outputs the reference CNN scores differently is refused."""
    import numpy as np

    from boomerang.assets import classifier_path
    from boomerang.data import load_dataset, load_split
    from boomerang.studies.judges import reference_judge

    ds, split = load_dataset("mnist5k"), load_split(classifier_path() / "split.json")
    test = np.asarray(split["test"])[::25]  # 20 test digits
    clean = ds.images[test, 0]
    dim = (clean // 3).astype(np.uint8)  # another "method": faint digits
    labels = ds.labels[test]
    cnn = reference_judge()
    row = {"accuracy_ci95": [0, 1], "psnr_db": {"mean": 1.0}, "ssim": {"mean": 0.1}, "consistency_error_8bit": {"mean": 1.0}}
    methods = {name: dict(row, correct_by_digit="".join("1" if v else "0" for v in cnn(x) == labels),
                          accuracy=float((cnn(x) == labels).mean())) for name, x in (("bicubic", clean), ("dim", dim))}
    results = {"settings": {"n_boot": 200, "seed": 0}, "x8": {"methods": methods}}
    (tmp_path / "r.json").write_text(json.dumps(results))
    np.savez(tmp_path / "cells.npz", **{"x8/labels": labels, "x8/bicubic": clean, "x8/dim": dim})
    proc = _enhance("--rejudge", str(tmp_path / "cells.npz"), "--judges", "cnn,hog-svm,pixel-svm",
                    "--out", str(tmp_path), "--name", "r")
    assert proc.returncode == 0, proc.stderr
    assert "judge pixel-svm: trained on 4000 training digits" in proc.stdout
    out = json.loads((tmp_path / "r.json").read_text())
    assert list(out["judges"]) == ["cnn", "hog-svm", "pixel-svm"]
    assert out["judges"]["hog-svm"]["n_train"] == 4000 and out["judges"]["hog-svm"]["test_accuracy"] > 0.9
    dim_row = out["x8"]["methods"]["dim"]
    assert set(dim_row["judges"]) == set(dim_row["vs_bicubic_by_judge"]) == {"cnn", "hog-svm", "pixel-svm"}
    assert dim_row["judges"]["cnn"]["correct_by_digit"] == methods["dim"]["correct_by_digit"]
    assert "| 8x tiled (28->224) | dim |" in proc.stdout and "pixel-svm: accuracy" in proc.stdout
    results["x8"]["methods"]["dim"]["correct_by_digit"] = "0" * 20  # not these outputs' scores
    (tmp_path / "r.json").write_text(json.dumps(results))
    proc = _enhance("--rejudge", str(tmp_path / "cells.npz"), "--out", str(tmp_path), "--name", "r")
    assert proc.returncode == 1 and "scores them differently" in proc.stderr
