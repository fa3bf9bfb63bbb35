"""Privacy audit of anonymised (Boomerang-resampled) image sets.

Boomerang's anonymisation (Luzi et al., Sec. 4.1: a "privacy-preserving"
dataset whose anonymity is set by the noise level t) replaces each image with
a local sample near it. How anonymous the result is has to be measured: this
package runs a **linkage attack** (rank every real image by its distance to a
released one; how often is the true source first, or in the first five?).
It is not differential privacy; see docs/privacy.md for what the level does
and does not protect.

Modules:

* :mod:`~boomerang.privacy.links`: the source -> output link file (JSONL),
  torch-free.
* :mod:`~boomerang.privacy.features`: feature spaces (``pixels``, ``ssim``,
  ``classifier``, or any torch module / callable).
* :mod:`~boomerang.privacy.attack`: ranks, top-k rates with Wilson 95%
  intervals, chance rates, rank histogram (:func:`linkage_attack` on tensors).
* :mod:`~boomerang.privacy.audit`: :func:`audit_folders` (real folder,
  anonymised folder, link file), the work of ``boomerang audit-privacy``.
* :mod:`~boomerang.privacy.dcr`: distance to closest record against a real
  holdout, near-copy sheet (``audit-privacy --holdout``).
* :mod:`~boomerang.privacy.realset`: the real set on the audit's comparison grid.
* :mod:`~boomerang.privacy.calibrate`: :func:`calibrate_privacy`, the level that meets
  a top-1 target on the user's data (``boomerang calibrate-privacy``).
* :mod:`~boomerang.privacy.verify`: per-item verification of ``anonymise --verify-top``.

Importing this package does not import torch; the functions below import it
when called.
"""

from __future__ import annotations

from boomerang.privacy.links import Link, LinkFileError, read_links, write_links
from boomerang.privacy.spaces import FEATURE_SPACES

__all__ = ["Link", "LinkFileError", "read_links", "write_links", "linkage_attack", "LinkageAttack", "audit_folders",
           "calibrate_privacy", "wilson_interval", "FEATURE_SPACES"]


def linkage_attack(*args, **kwargs):
    """See :func:`boomerang.privacy.attack.linkage_attack`."""
    from boomerang.privacy.attack import linkage_attack as f

    return f(*args, **kwargs)


def __getattr__(name):
    if name == "LinkageAttack":
        from boomerang.privacy.attack import LinkageAttack

        return LinkageAttack
    raise AttributeError(f"module 'boomerang.privacy' has no attribute {name!r}")


def audit_folders(*args, **kwargs):
    """See :func:`boomerang.privacy.audit.audit_folders`."""
    from boomerang.privacy.audit import audit_folders as f

    return f(*args, **kwargs)


def calibrate_privacy(*args, **kwargs):
    """See :func:`boomerang.privacy.calibrate.calibrate_privacy`."""
    from boomerang.privacy.calibrate import calibrate_privacy as f

    return f(*args, **kwargs)


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """See :func:`boomerang.privacy.attack.wilson_interval`."""
    from boomerang.privacy.attack import wilson_interval as f

    return f(hits, n, z)
