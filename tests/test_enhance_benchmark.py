"""benchmarks/enhance.py: the paired comparison with bicubic (issue 11's 8x claim rests on it) and the flags
that choose which digits run, checked fast; the benchmark itself is not a test."""

from __future__ import annotations

import math
import pathlib

import numpy as np
import pytest

from _bench import load_benchmark

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("enhance", "enhance_benchmark")


def _pairs(both, a_only, b_only, neither):
    a = [1] * both + [1] * a_only + [0] * b_only + [0] * neither
    b = [1] * both + [0] * a_only + [1] * b_only + [0] * neither
    return a, b


def test_counts_difference_and_exact_mcnemar_by_hand(bench):
    # 10 digits: 4 right by both, 3 only by A, 1 only by B, 2 by neither.
    # difference = (3 - 1) / 10 = 0.2; McNemar: 4 discordant pairs, the smaller side has 1,
    # p = 2 * P(Bin(4, 1/2) <= 1) = 2 * (1 + 4) / 16 = 0.625
    d = bench.paired_difference(*_pairs(4, 3, 1, 2))
    assert (d["both"], d["a_only"], d["b_only"], d["neither"], d["n"]) == (4, 3, 1, 2, 10)
    assert d["difference"] == pytest.approx(0.2)
    assert d["mcnemar_p"] == pytest.approx(0.625)
    # 6 discordant pairs all for A: p = 2 / 2**6 = 0.03125; swapping A and B flips the sign, not p
    d = bench.paired_difference(*_pairs(0, 6, 0, 4))
    assert d["mcnemar_p"] == pytest.approx(0.03125) and d["difference"] == pytest.approx(0.6)
    r = bench.paired_difference(*reversed(_pairs(0, 6, 0, 4)))
    assert r["mcnemar_p"] == pytest.approx(0.03125) and r["difference"] == pytest.approx(-0.6)
    # 49 discordant pairs for A, 7 for B: p = 2 * sum_{i<=7} C(56, i) / 2**56 is tiny but not 0 (4 digits kept)
    p = 2 * sum(math.comb(56, i) for i in range(8)) / 2**56
    assert bench.paired_difference(*_pairs(0, 49, 7, 0))["mcnemar_p"] == pytest.approx(p, rel=1e-3) and p < 1e-7
    # equal discordant counts: p = 1; no discordant pairs: p = 1 and a zero-width interval at 0
    assert bench.paired_difference(*_pairs(2, 2, 2, 2))["mcnemar_p"] == pytest.approx(1.0)
    d = bench.paired_difference(*_pairs(5, 0, 0, 5))
    assert d["mcnemar_p"] == 1.0 and d["difference"] == 0.0 and d["ci95"] == [0.0, 0.0]


def test_bootstrap_interval_is_paired(bench):
    # Every digit discordant in A's favour: every resample gives +1, so the interval is [1, 1]
    assert bench.paired_difference([1] * 20, [0] * 20)["ci95"] == [1.0, 1.0]
    # Same accuracies (50% each) but perfectly correlated vs independent outcomes: the paired
    # interval is zero-width when A and B agree on every digit, and wide when they never agree
    a = [1, 0] * 100
    assert bench.paired_difference(a, a)["ci95"] == [0.0, 0.0]
    wide = bench.paired_difference(a, [1 - v for v in a])["ci95"]
    assert wide[0] < -0.1 and wide[1] > 0.1


def test_bootstrap_interval_matches_the_normal_approximation(bench):
    # 400 digits, 60 only by A, 20 only by B: difference 0.1, sd of a digit's (+1/-1/0) outcome
    # sqrt(80/400 - 0.1**2) = sqrt(0.19); half-width 1.96 * sqrt(0.19 / 400) = 0.0427
    d = bench.paired_difference(*_pairs(150, 60, 20, 170), n_boot=20_000, seed=3)
    assert d["difference"] == pytest.approx(0.1)
    assert d["ci95"][0] == pytest.approx(0.1 - 0.0427, abs=0.006)
    assert d["ci95"][1] == pytest.approx(0.1 + 0.0427, abs=0.006)
    # seeded: the same seed gives the same interval, and the digits' order does not matter
    a, b = _pairs(150, 60, 20, 170)
    perm = np.random.default_rng(1).permutation(400)
    again = bench.paired_difference(np.asarray(a)[perm], np.asarray(b)[perm], n_boot=20_000, seed=3)
    assert again == d


def test_bad_lengths_are_refused(bench):
    with pytest.raises(ValueError, match="same non-zero length"):
        bench.paired_difference([1, 0], [1])
    with pytest.raises(ValueError, match="same non-zero length"):
        bench.paired_difference([], [])


def test_digit_selection_flags(bench):
    a = bench.parse_args(["--no-4x", "--sheets", "5"])
    assert a.no_4x and a.first_sheet_digit == 150  # the README's sheet first, then the next four
    assert bench.parse_args(["--n-digits", "10"]).first_sheet_digit == 10
    for bad in (["--no-4x", "--no-8x"], ["--sheets", "6"], ["--first-sheet-digit", "480"], ["--n-boot", "5"]):
        with pytest.raises(SystemExit) as e:
            bench.parse_args(bad)
        assert e.value.code == 2


def test_table_prints_the_paired_comparison(bench):
    d = bench.paired_difference(*_pairs(4, 3, 1, 2))
    row = {"accuracy": 0.7, "accuracy_ci95": [0.4, 0.9], "psnr_db": {"mean": 10.0}, "ssim": {"mean": 0.1},
           "consistency_error_8bit": {"mean": 1.0}, "seam_score": 1.0}
    results = {"x8": {"methods": {"bicubic": dict(row, accuracy=0.5), "enhance L=0.4": dict(row, vs_bicubic=d)}}}
    text = bench.table(results)
    assert "| 8x tiled (28->224) | enhance L=0.4 | 4 | 3 | 1 | +20.0 [" in text
    assert "| 0.62 |" in text
    # results without paired comparisons (the older runs) print only the first table
    del results["x8"]["methods"]["enhance L=0.4"]["vs_bicubic"]
    assert "McNemar" not in bench.table(results)


def test_table_without_a_range_of_positions(bench):
    # 8x digits at order positions 10-19; positions 10-14 dropped, leaving 15-19:
    # bicubic right on 15, 16; the method on 15, 17, 18, 19 -> 3 method only, 1 bicubic only, +40 points,
    # p = 2 * (1 + 4) / 16
    row = {"accuracy": 0.5, "accuracy_ci95": [0.2, 0.8], "psnr_db": {"mean": 10.0}, "ssim": {"mean": 0.1},
           "consistency_error_8bit": {"mean": 1.0}, "seam_score": 1.0}
    results = {"x8": {"order_positions": [10, 20], "methods": {
        "bicubic": dict(row, correct_by_digit="1111111000"), "enhance L=0.4": dict(row, correct_by_digit="0000010111")}}}
    text = bench.table(results, without=(10, 14))
    assert "outside positions 10-14 (5 digits; bicubic 40.0%)" in text
    assert "| enhance L=0.4 | 80.0 | 3 | 1 | +40.0 [" in text and "| 0.62 |" in text
    assert bench.parse_args(["--table", "--without", "150-213"]).without == (150, 213)
    for bad in ("150", "213-150", "a-b", "0-500"):
        with pytest.raises(SystemExit):
            bench.parse_args(["--table", "--without", bad])
