"""Opaque output names and secret seeds of an anonymised release (``boomerang anonymise``).

Both are HMAC-SHA256 under the job's secret key (kept in ``OUT/.job``, never published): a
released file's name and its sample's seed reveal nothing about the input they came from.
"""

from __future__ import annotations

import hashlib
import hmac

from boomerang.seeds import seed_from_digest

__all__ = ["NAME_HEX", "opaque_name", "secret_seed"]

#: Hex digits of an opaque name (80 bits: collisions are negligible at 10^7 images; checked anyway).
NAME_HEX = 20


def opaque_name(key: str, relpath: str, start: int, sample: int) -> str:
    """The opaque stem of one output: HMAC-SHA256 under the job key, first :data:`NAME_HEX` hex digits.

    Args:
        key: the job key (hex string).
        relpath: the input's path relative to IN_DIR.
        start, sample: index of the level (start) and of the sample.
    """
    msg = f"name\0{relpath}\0{start}\0{sample}".encode()
    return hmac.new(bytes.fromhex(key), msg, hashlib.sha256).hexdigest()[:NAME_HEX]


def secret_seed(key: str, seed: int, relpath: str, sample: int, attempt: int = 0) -> int:
    """The generator seed of sample ``sample`` of an item: HMAC-SHA256 under the job key of
    (seed, relpath, sample), first 8 bytes, top bit cleared (an int in [0, 2**63)). ``attempt`` > 0:
    the seed of redraw ``attempt`` of ``--verify-top`` (the attempt is added to the message)."""
    msg = f"seed\0{seed}\0{relpath}\0{sample}".encode() + (f"\0{attempt}".encode() if attempt else b"")
    return seed_from_digest(hmac.new(bytes.fromhex(key), msg, hashlib.sha256).digest())
