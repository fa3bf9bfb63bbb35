"""Training-time augmentation with cached Boomerang samples: a torch ``Dataset`` wrapper.

For item i, :class:`BoomerangAugmented` returns the base dataset's item with
its image replaced, with probability p, by one of the item's K cached local
samples (Luzi et al., Sec. 5.2: data augmentation that stays on the image
manifold). The cache is written ahead of training by ``boomerang augment``
(layout: :mod:`boomerang.augment.cache`); nothing is sampled here.

The choice depends only on (seed, epoch, i) (:func:`boomerang.augment.choose_sample`),
so any number of DataLoader workers, any shuffling and any batch size give the
same item for the same (epoch, i). The epoch lives in shared memory: call
:meth:`BoomerangAugmented.set_epoch` before iterating each epoch and every
worker sees it, persistent workers included.
"""

from __future__ import annotations

import os
import pathlib
import posixpath
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset

from boomerang.augment.choice import check_probability, choose_sample
from boomerang.augment.cache import source_samples
from boomerang.levels import check_level

__all__ = ["SamplePicker", "BoomerangAugmented"]

MISSING_POLICIES = ("error", "original")


def _levels_tuple(level) -> tuple[float, ...]:
    items = [level] if isinstance(level, (int, float, str)) else list(level)
    if not items:
        raise ValueError("level needs at least one value in [0, 1]")
    out = tuple(check_level(v) for v in items)
    names = [f"{v:.3f}" for v in out]
    if len(set(names)) != len(names):
        raise ValueError(f"level values must differ in their first 3 decimals, got {list(out)}")
    return out


def _relative_key(key: Any, root: str | os.PathLike | None) -> str:
    text = os.fspath(key)
    if root is not None and os.path.isabs(text):
        text = os.path.relpath(text, os.fspath(root))
    rel = posixpath.normpath(text.replace(os.sep, "/"))
    if rel.startswith("/") or rel == ".." or rel.startswith("../"):
        hint = "" if root is not None else " (pass root= for absolute paths)"
        raise ValueError(f"a key must be the image's path relative to the augmented folder, got {key!r}{hint}")
    return rel


class SamplePicker:
    """Picks, per (epoch, index), an item's original (None) or the path of one of its cached samples.

    The piece of :class:`BoomerangAugmented` that needs no base dataset: use it
    directly inside a Hugging Face ``datasets`` transform (see docs/augment.md).

    Args:
        cache_dir: the folder ``boomerang augment --out`` wrote.
        keys: item i's image path relative to the folder ``boomerang augment``
            read (``"3/0042.png"``), as a sequence (``keys[i]``) of str/paths;
            absolute paths are made relative to ``root``.
        samples_per_image: K >= 1: item i chooses among its samples 0..K-1 (the
            cache may hold more).
        p: probability in [0, 1] that an item shows a sample instead of its original.
        level: a level in [0, 1] or a sequence of levels; with several, an
            item chooses uniformly among all K x (number of levels) samples.
        seed: augmentation seed (integer >= 0).
        root: folder that absolute keys are relative to.
        missing: ``"error"`` (default): every item must have K samples at every
            level; ``"original"``: items lacking some always show their original.

    Raises:
        ValueError: a bad argument (named), no sample set for a level, or items
            without their K samples (the message names the first few keys).
    """

    def __init__(self, cache_dir: str | os.PathLike, keys: Sequence, samples_per_image: int = 4, p: float = 0.5,
                 level: float | Sequence[float] = 0.3, *, seed: int = 0, root: str | os.PathLike | None = None,
                 missing: str = "error"):
        if isinstance(samples_per_image, bool) or not isinstance(samples_per_image, int) or samples_per_image < 1:
            raise ValueError(f"samples_per_image must be an integer >= 1, got {samples_per_image!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        if missing not in MISSING_POLICIES:
            raise ValueError(f"missing must be one of {', '.join(MISSING_POLICIES)}, got {missing!r}")
        self.cache_dir = pathlib.Path(cache_dir)
        self.samples_per_image = samples_per_image
        self.p = check_probability(p)
        self.levels = _levels_tuple(level)
        self.seed = seed
        by_level = [source_samples(self.cache_dir, lv) for lv in self.levels]
        self._pools: list[tuple[pathlib.Path, ...]] = []
        lacking: list[str] = []
        for k in keys:
            rel = _relative_key(k, root)
            pool = []
            for table in by_level:
                have = table.get(rel, {})
                pool += [have[j] for j in range(samples_per_image) if j in have]
            if len(pool) < samples_per_image * len(self.levels):
                lacking.append(rel)
                pool = []
            self._pools.append(tuple(pool))
        if lacking and missing == "error":
            levels = ", ".join(f"{v:g}" for v in self.levels)
            raise ValueError(
                f"{len(lacking)} of {len(self._pools)} items lack their {samples_per_image} samples at level {levels} "
                f"in {str(self.cache_dir)!r} (first: {', '.join(lacking[:3])}); run boomerang augment on their folder "
                "with --samples-per-image >= samples_per_image, or pass missing='original'"
            )
        self.lacking = lacking
        # One int64 in shared memory: DataLoader workers (forked, spawned, persistent) all read it.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def __len__(self) -> int:
        return len(self._pools)

    @property
    def epoch(self) -> int:
        """The current epoch (set with :meth:`set_epoch`; starts at 0)."""
        return int(self._epoch.item())

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` (an integer >= 0): later picks use it, in every worker.

        Call it before iterating the DataLoader for that epoch.

        Raises:
            ValueError: ``epoch`` is not an integer >= 0.
        """
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an integer >= 0, got {epoch!r}")
        self._epoch.fill_(epoch)

    def pick(self, index: int, epoch: int | None = None) -> pathlib.Path | None:
        """The sample item ``index`` shows in ``epoch`` (default: the current epoch), or None for its original.

        Raises:
            IndexError: ``index`` outside [0, len - 1].
        """
        if not 0 <= int(index) < len(self._pools):
            raise IndexError(f"index {index} out of range for {len(self._pools)} items")
        pool = self._pools[int(index)]
        j = choose_sample(self.seed, self.epoch if epoch is None else epoch, int(index), self.p, len(pool))
        return None if j is None else pool[j]


def _default_load(path: pathlib.Path):
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        return img.copy()


def _default_key(base) -> Sequence[str]:
    samples, root = getattr(base, "samples", None), getattr(base, "root", None)
    if samples is not None and root is not None:  # torchvision ImageFolder/DatasetFolder convention
        return [os.path.relpath(os.fspath(s[0]), os.fspath(root)) for s in samples]
    relpaths = getattr(base, "relpaths", None)
    if relpaths is not None:
        return relpaths
    raise ValueError(
        "pass key=: each item's image path relative to the folder boomerang augment read "
        "(a sequence or a function of the index); the base dataset has neither .samples + .root nor .relpaths"
    )


class BoomerangAugmented(Dataset):
    """A map-style Dataset: item i of ``base``, its image swapped with probability p for a cached Boomerang sample.

    The base item may be a tuple/list whose first element is the image
    (``(image, label)``), a dict with the image under ``image_key`` (Hugging
    Face style), or the image alone. Only the image is replaced; the label and
    every other field stay the source's, so a sample always carries its
    source's label. ``transform`` is then applied to the image, original or
    sample alike (give the base dataset no transform of its own).

    Args:
        base: a map-style dataset (``len(base)`` and ``base[i]``).
        cache_dir: the folder ``boomerang augment IN_DIR --out CACHE`` wrote.
        samples_per_image: K >= 1 samples per item to choose from.
        p: probability in [0, 1] of showing a sample (0: the base dataset unchanged).
        level: the level(s) of the sample set(s) to use (see :class:`SamplePicker`).
        key: item i's path relative to IN_DIR: a sequence, or a function of i.
            Default: from ``base.samples`` + ``base.root`` (torchvision's
            ImageFolder convention) or ``base.relpaths``.
        seed: augmentation seed (integer >= 0).
        root: folder that absolute keys are relative to.
        load: ``path -> image`` for a sample file (default: a PIL image, as
            stored: mode ``L`` for one-channel models, else ``RGB``).
        transform: ``image -> image`` applied after the swap (e.g. to a tensor).
        image_key: the image's key in dict items.
        missing: ``"error"`` or ``"original"`` (see :class:`SamplePicker`).

    Raises:
        ValueError: bad arguments, a level without a sample set, items without
            their K samples, or no way to get the keys.

    Example::

        train = BoomerangAugmented(base, "cache/", samples_per_image=4, p=0.5, level=0.3,
                                   key=relpaths, transform=to_tensor)
        loader = DataLoader(train, batch_size=64, shuffle=True, num_workers=4)
        for epoch in range(epochs):
            train.set_epoch(epoch)
            for x, y in loader: ...
    """

    def __init__(self, base, cache_dir: str | os.PathLike, samples_per_image: int = 4, p: float = 0.5,
                 level: float | Sequence[float] = 0.3, *, key: Sequence | Callable[[int], Any] | None = None,
                 seed: int = 0, root: str | os.PathLike | None = None,
                 load: Callable[[pathlib.Path], Any] | None = None, transform: Callable[[Any], Any] | None = None,
                 image_key: str = "image", missing: str = "error"):
        self.base = base
        n = len(base)
        if key is None:
            keys = _default_key(base)
        elif callable(key):
            keys = [key(i) for i in range(n)]
        else:
            keys = key
        if len(keys) != n:
            raise ValueError(f"key gives {len(keys)} paths for a base dataset of {n} items")
        self.picker = SamplePicker(cache_dir, keys, samples_per_image, p, level, seed=seed, root=root, missing=missing)
        self.load = load or _default_load
        self.transform = transform
        self.image_key = image_key

    def __len__(self) -> int:
        return len(self.picker)

    @property
    def epoch(self) -> int:
        """The current epoch."""
        return self.picker.epoch

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` (see :meth:`SamplePicker.set_epoch`); call it before each epoch's loop."""
        self.picker.set_epoch(epoch)

    def pick(self, index: int, epoch: int | None = None) -> pathlib.Path | None:
        """The sample file item ``index`` shows (None: the original); see :meth:`SamplePicker.pick`."""
        return self.picker.pick(index, epoch)

    def __getitem__(self, index: int):
        if isinstance(index, bool) or not isinstance(index, int):
            index = int(index)  # numpy / torch integers from samplers
        if index < 0:
            index += len(self)
        path = self.picker.pick(index)
        item = self.base[index]
        if isinstance(item, dict):
            if self.image_key not in item:
                raise KeyError(f"base item has no {self.image_key!r} field (pass image_key=)")
            out = dict(item)
            image = out[self.image_key] if path is None else self.load(path)
            out[self.image_key] = image if self.transform is None else self.transform(image)
            return out
        if isinstance(item, (tuple, list)):
            image = item[0] if path is None else self.load(path)
            rest = list(item[1:])
            image = image if self.transform is None else self.transform(image)
            return type(item)([image, *rest]) if isinstance(item, list) else (image, *rest)
        image = item if path is None else self.load(path)
        return image if self.transform is None else self.transform(image)
