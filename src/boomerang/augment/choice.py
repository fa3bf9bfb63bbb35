"""Which image an augmented item shows: the original or one of its cached samples (torch-free).

The choice for item ``index`` in epoch ``epoch`` is a pure function of
``(seed, epoch, index)``: a sha256 of the triple gives a uniform number u in
[0, 1) and an integer r. The item shows its original when u >= p, else
sample ``r mod n`` of its n cached samples. Nothing is drawn from a global
random generator, so the choice is the same in every DataLoader worker, in
any order, on any machine (the same convention as :mod:`boomerang.seeds`).
"""

from __future__ import annotations

import hashlib
import math

__all__ = ["choose_sample"]


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_probability(p, name: str = "p") -> float:
    """``p`` as a float in [0, 1]; ValueError naming ``name`` otherwise."""
    try:
        v = float(p)
    except (TypeError, ValueError):
        v = math.nan
    if isinstance(p, bool) or not (0.0 <= v <= 1.0):
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return v


def choose_sample(seed: int, epoch: int, index: int, p: float, num_samples: int) -> int | None:
    """The sample an item shows in one epoch, or None for its original.

    Args:
        seed: the augmentation seed (an integer >= 0).
        epoch: the epoch (an integer >= 0); every epoch draws afresh.
        index: the item's index in the dataset (>= 0).
        p: probability in [0, 1] that the item shows a sample instead of its original.
        num_samples: how many samples the item has to choose from (>= 0; 0: always the original).

    Returns:
        a sample index in [0, num_samples - 1], or None (show the original).
        Over many items the share of samples is p, and each sample is equally likely.

    Raises:
        ValueError: an argument out of range (the message names it).
    """
    _check_int(seed, "seed", 0)
    _check_int(epoch, "epoch", 0)
    _check_int(index, "index", 0)
    _check_int(num_samples, "num_samples", 0)
    p = check_probability(p)
    if num_samples == 0 or p == 0.0:
        return None
    digest = hashlib.sha256(f"boomerang-augment:{seed}:{epoch}:{index}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64  # uniform in [0, 1)
    if u >= p:
        return None
    return int.from_bytes(digest[8:16], "big") % num_samples
