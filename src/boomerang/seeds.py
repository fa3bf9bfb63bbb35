"""Per-sample random generators (torch-free except :func:`item_generator`).

Every sample draws all of its randomness (the forward noise eps, the VAE
posterior sample of the img2img schedule, the fresh noise of ancestral
steps) from its own generator, seeded from ``(seed, image_index,
sample_index)`` (``boomerang sample`` and the API) or, in dataset jobs, from
``(seed, the item's relative path, sample_index)`` (:func:`path_seed`), so that
adding, removing or reordering files never changes another item's output. A sample therefore never depends on the batch size, on the
order of the batch, on how many other samples are drawn, or on the worker
that computes it (the EDM convention: one generator per seed).
"""

from __future__ import annotations

import hashlib

__all__ = ["seed_from_digest", "item_seed", "item_generator", "path_seed", "path_generator"]


def seed_from_digest(digest: bytes) -> int:
    """A generator seed from a hash digest: its first 8 bytes, big-endian, top bit cleared.

    The one rule that turns a hash into a seed (:func:`item_seed`, :func:`path_seed` and the
    anonymiser's keyed seeds use it), so that every seed is an int in ``[0, 2**63)``, which
    ``torch.Generator.manual_seed`` takes on every platform.

    Args:
        digest: the hash's bytes (at least 8; e.g. ``hashlib.sha256(...).digest()``).

    Raises:
        ValueError: a digest shorter than 8 bytes.
    """
    if len(digest) < 8:
        raise ValueError(f"a seed needs a digest of at least 8 bytes, got {len(digest)}")
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


def _check_index(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def item_seed(seed: int, image_index: int, sample_index: int) -> int:
    """The seed of one sample: a hash of the triple into [0, 2**63).

    ``sha256(b"boomerang:{seed}:{image_index}:{sample_index}")``, first 8 bytes,
    big-endian, top bit cleared. Distinct triples give unrelated seeds.

    Args:
        seed: the user's seed, any integer >= 0.
        image_index: index of the input image in the job, >= 0.
        sample_index: index of the sample of that image (and level), >= 0.

    Raises:
        ValueError: if any argument is not an integer >= 0.
    """
    seed = _check_index(seed, "seed")
    image_index = _check_index(image_index, "image_index")
    sample_index = _check_index(sample_index, "sample_index")
    return seed_from_digest(hashlib.sha256(f"boomerang:{seed}:{image_index}:{sample_index}".encode()).digest())


def item_generator(seed: int, image_index: int, sample_index: int):
    """A CPU ``torch.Generator`` seeded with :func:`item_seed` of the triple.

    Noise is always drawn on the CPU in float32 and then moved to the
    device, so the same triple gives the same noise on every device.
    """
    import torch

    generator = torch.Generator(device="cpu")
    generator.manual_seed(item_seed(seed, image_index, sample_index))
    return generator


def path_seed(seed: int, relpath: str, sample_index: int) -> int:
    """The seed of sample ``sample_index`` of a dataset item: a hash into [0, 2**63).

    ``sha256(b"boomerang-path:{seed}:{sample_index}:" + relpath as UTF-8)``, first
    8 bytes, big-endian, top bit cleared. ``relpath`` is the item's path relative
    to the input folder with ``/`` separators (``cat/001.png``), so the seed does
    not depend on where the folder lies, on the other files, their order, the
    batch size or the number of workers.

    Args:
        seed: the user's seed, an integer >= 0.
        relpath: the item's relative path (non-empty, POSIX separators).
        sample_index: index of the sample of that item (and level), >= 0.

    Raises:
        ValueError: a negative or non-integer seed / index, or an empty or
            backslash-separated ``relpath``.
    """
    seed = _check_index(seed, "seed")
    sample_index = _check_index(sample_index, "sample_index")
    if not isinstance(relpath, str) or not relpath or "\\" in relpath or relpath.startswith("/"):
        raise ValueError(f"relpath must be a relative POSIX path such as 'cat/001.png', got {relpath!r}")
    digest = hashlib.sha256(f"boomerang-path:{seed}:{sample_index}:".encode() + relpath.encode("utf-8")).digest()
    return seed_from_digest(digest)


def path_generator(seed: int, relpath: str, sample_index: int):
    """A CPU ``torch.Generator`` seeded with :func:`path_seed`."""
    import torch

    generator = torch.Generator(device="cpu")
    generator.manual_seed(path_seed(seed, relpath, sample_index))
    return generator
