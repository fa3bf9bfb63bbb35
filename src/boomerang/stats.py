"""Intervals and tests for the figures of the studies (``benchmarks/``) (torch-free).

* :func:`wilson`: the 95% Wilson score interval of a share, rounded for a report
  (the interval itself is :func:`boomerang.metrics.wilson_interval`).
* :func:`paired_difference`: two methods scored on the same items: the difference
  of their accuracies with a paired bootstrap interval, the discordant counts and
  the exact McNemar test.
* :func:`bootstrap_mean`: the mean of per-item values with a percentile bootstrap interval.

Both return plain floats and lists, ready for a results JSON.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["wilson", "paired_difference", "bootstrap_mean"]


def wilson(k: int, n: int) -> list[float]:
    """95% Wilson score interval of a share ``k / n`` as ``[low, high]``, each rounded to 4 decimals.

    Args:
        k: hits, 0 <= k <= n (numpy integers are accepted).
        n: trials; ``n == 0`` gives ``[0.0, 1.0]``.

    Raises:
        ValueError: ``k`` outside [0, n] (:func:`boomerang.metrics.wilson_interval`).
    """
    from boomerang.metrics import wilson_interval

    return [round(float(v), 4) for v in wilson_interval(int(k), int(n))]


def paired_difference(correct_a, correct_b, n_boot: int = 10_000, seed: int = 0) -> dict:
    """Accuracy of method A minus that of method B scored on the same digits (a paired comparison).

    ``correct_a``, ``correct_b``: [N] booleans (or 0/1), digit i right by A / by B.
    Returns ``difference`` = (a_only - b_only) / N, its 95% percentile interval
    ``ci95`` from ``n_boot`` paired bootstrap resamples of the N digits (seeded;
    each resample draws N digits with replacement, keeping A's and B's outcome on
    a digit together), the counts ``both``, ``neither``, ``a_only``, ``b_only``
    (the discordant pairs), and ``mcnemar_p``: the exact two-sided McNemar test,
    P(a binomial(a_only + b_only, 1/2) count is at least as far from its mean),
    1.0 when there are no discordant pairs. Raises ValueError if the lengths
    differ or are 0.
    """
    a = np.asarray(correct_a, dtype=bool).ravel()
    b = np.asarray(correct_b, dtype=bool).ravel()
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired_difference: correct_a and correct_b must have the same non-zero length "
                         f"(got {a.size} and {b.size})")
    n = a.size
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    m = a_only + b_only
    k = min(a_only, b_only)
    p = min(1.0, 2.0 * sum(math.comb(m, i) for i in range(k + 1)) / 2.0 ** m) if m else 1.0
    # a digit's paired outcome is +1 (A only), -1 (B only) or 0, so a resample is a multinomial draw of the three
    counts = np.random.default_rng(seed).multinomial(n, [a_only / n, b_only / n, 1.0 - m / n], size=n_boot)
    diffs = (counts[:, 0] - counts[:, 1]) / n
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    return {"difference": round((a_only - b_only) / n, 4), "ci95": [round(float(lo), 4), round(float(hi), 4)],
            "both": int((a & b).sum()), "neither": int((~a & ~b).sum()), "a_only": a_only, "b_only": b_only,
            "mcnemar_p": float(f"{p:.4g}"), "n": n, "n_boot": n_boot}


def bootstrap_mean(values, n_boot: int = 2_000, seed: int = 0) -> dict:
    """The mean of per-item ``values`` (e.g. SSIM of each sample to its input) with the 95%
    percentile interval of ``n_boot`` bootstrap resamples of the items (seeded).

    Returns:
        ``{"mean", "ci95": [low, high], "n", "n_boot"}``, rounded to 4 decimals; one value gives the
        interval ``[v, v]``.
    Raises:
        ValueError: no values, or a value that is not finite.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0 or not np.isfinite(v).all():
        raise ValueError(f"bootstrap_mean: needs finite values, got {v.size} values")
    idx = np.random.default_rng(seed).integers(0, v.size, size=(n_boot, v.size))
    lo, hi = np.quantile(v[idx].mean(axis=1), [0.025, 0.975])
    return {"mean": round(float(v.mean()), 4), "ci95": [round(float(lo), 4), round(float(hi), 4)], "n": int(v.size),
            "n_boot": n_boot}
