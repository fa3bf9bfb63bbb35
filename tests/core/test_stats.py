"""boomerang.stats: the paired comparison with bicubic that issue 11's 8x claim rests on (accuracy difference,
paired bootstrap interval, exact McNemar test) and the rounded Wilson interval of the benchmarks' shares."""

from __future__ import annotations

import math

import numpy as np
import pytest

from boomerang.metrics import wilson_interval
from boomerang.stats import paired_difference, wilson


def _pairs(both, a_only, b_only, neither):
    a = [1] * both + [1] * a_only + [0] * b_only + [0] * neither
    b = [1] * both + [0] * a_only + [1] * b_only + [0] * neither
    return a, b


def test_counts_difference_and_exact_mcnemar_by_hand():
    # 10 digits: 4 right by both, 3 only by A, 1 only by B, 2 by neither.
    # difference = (3 - 1) / 10 = 0.2; McNemar: 4 discordant pairs, the smaller side has 1,
    # p = 2 * P(Bin(4, 1/2) <= 1) = 2 * (1 + 4) / 16 = 0.625
    d = paired_difference(*_pairs(4, 3, 1, 2))
    assert (d["both"], d["a_only"], d["b_only"], d["neither"], d["n"]) == (4, 3, 1, 2, 10)
    assert d["difference"] == pytest.approx(0.2)
    assert d["mcnemar_p"] == pytest.approx(0.625)
    # 6 discordant pairs all for A: p = 2 / 2**6 = 0.03125; swapping A and B flips the sign, not p
    d = paired_difference(*_pairs(0, 6, 0, 4))
    assert d["mcnemar_p"] == pytest.approx(0.03125) and d["difference"] == pytest.approx(0.6)
    r = paired_difference(*reversed(_pairs(0, 6, 0, 4)))
    assert r["mcnemar_p"] == pytest.approx(0.03125) and r["difference"] == pytest.approx(-0.6)
    # 49 discordant pairs for A, 7 for B: p = 2 * sum_{i<=7} C(56, i) / 2**56 is tiny but not 0 (4 digits kept)
    p = 2 * sum(math.comb(56, i) for i in range(8)) / 2**56
    assert paired_difference(*_pairs(0, 49, 7, 0))["mcnemar_p"] == pytest.approx(p, rel=1e-3) and p < 1e-7
    # equal discordant counts: p = 1; no discordant pairs: p = 1 and a zero-width interval at 0
    assert paired_difference(*_pairs(2, 2, 2, 2))["mcnemar_p"] == pytest.approx(1.0)
    d = paired_difference(*_pairs(5, 0, 0, 5))
    assert d["mcnemar_p"] == 1.0 and d["difference"] == 0.0 and d["ci95"] == [0.0, 0.0]


def test_bootstrap_interval_is_paired():
    # Every digit discordant in A's favour: every resample gives +1, so the interval is [1, 1]
    assert paired_difference([1] * 20, [0] * 20)["ci95"] == [1.0, 1.0]
    # Same accuracies (50% each) but perfectly correlated vs independent outcomes: the paired
    # interval is zero-width when A and B agree on every digit, and wide when they never agree
    a = [1, 0] * 100
    assert paired_difference(a, a)["ci95"] == [0.0, 0.0]
    wide = paired_difference(a, [1 - v for v in a])["ci95"]
    assert wide[0] < -0.1 and wide[1] > 0.1


def test_bootstrap_interval_matches_the_normal_approximation():
    # 400 digits, 60 only by A, 20 only by B: difference 0.1, sd of a digit's (+1/-1/0) outcome
    # sqrt(80/400 - 0.1**2) = sqrt(0.19); half-width 1.96 * sqrt(0.19 / 400) = 0.0427
    d = paired_difference(*_pairs(150, 60, 20, 170), n_boot=20_000, seed=3)
    assert d["difference"] == pytest.approx(0.1)
    assert d["ci95"][0] == pytest.approx(0.1 - 0.0427, abs=0.006)
    assert d["ci95"][1] == pytest.approx(0.1 + 0.0427, abs=0.006)
    # seeded: the same seed gives the same interval, and the digits' order does not matter
    a, b = _pairs(150, 60, 20, 170)
    perm = np.random.default_rng(1).permutation(400)
    again = paired_difference(np.asarray(a)[perm], np.asarray(b)[perm], n_boot=20_000, seed=3)
    assert again == d


def test_bad_lengths_are_refused():
    with pytest.raises(ValueError, match="same non-zero length"):
        paired_difference([1, 0], [1])
    with pytest.raises(ValueError, match="same non-zero length"):
        paired_difference([], [])


def test_wilson_is_the_metrics_interval_rounded_for_a_report():
    # 7 of 10: p = 0.7, z = 1.96: centre (0.7 + 0.19208) / 1.38416 = 0.64449, half-width 0.24772
    assert wilson(7, 10) == [0.3968, 0.8922]
    assert wilson(np.int64(7), np.int64(10)) == [round(v, 4) for v in wilson_interval(7, 10)]
    assert wilson(0, 10) == [0.0, 0.2775] and wilson(10, 10) == [0.7225, 1.0] and wilson(0, 0) == [0.0, 1.0]
    assert all(isinstance(v, float) for v in wilson(3, 448))
    with pytest.raises(ValueError, match="hits must be in"):
        wilson(11, 10)


def test_bootstrap_mean_interval_covers_the_mean_and_shrinks_with_n():
    from boomerang.stats import bootstrap_mean

    rng = np.random.default_rng(1)
    small, large = bootstrap_mean(rng.normal(0.5, 0.1, 20)), bootstrap_mean(rng.normal(0.5, 0.1, 2000))
    for r in (small, large):
        assert r["ci95"][0] <= r["mean"] <= r["ci95"][1]
    assert large["ci95"][1] - large["ci95"][0] < (small["ci95"][1] - small["ci95"][0]) / 3
    assert bootstrap_mean([0.3])["ci95"] == [0.3, 0.3]
    assert bootstrap_mean([1.0, 2.0, 3.0], seed=4) == bootstrap_mean([1.0, 2.0, 3.0], seed=4)
    with pytest.raises(ValueError):
        bootstrap_mean([])
    with pytest.raises(ValueError):
        bootstrap_mean([1.0, float("nan")])
