"""Boomerang data augmentation: the sample cache and the training-time Dataset wrapper.

Samples are computed once, ahead of training, by ``boomerang augment IN_DIR
--level L --samples-per-image K --out CACHE`` (layout: :mod:`boomerang.augment.cache`);
during training :class:`BoomerangAugmented` swaps an item's image for one of its
cached local samples with probability p. Sampling never happens in the training loop.

Importing this package is cheap: torch loads when :class:`BoomerangAugmented`
or :class:`SamplePicker` is first used.
"""

from boomerang.augment.choice import choose_sample
from boomerang.augment.cache import (
    MANIFEST_NAME,
    available_levels,
    level_dirname,
    read_manifest,
    sample_relpath,
    source_samples,
    write_manifest,
)

_LAZY = {"BoomerangAugmented": "boomerang.augment.dataset", "SamplePicker": "boomerang.augment.dataset"}

__all__ = [
    "BoomerangAugmented",
    "SamplePicker",
    "choose_sample",
    "MANIFEST_NAME",
    "available_levels",
    "level_dirname",
    "read_manifest",
    "sample_relpath",
    "source_samples",
    "write_manifest",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'boomerang.augment' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
