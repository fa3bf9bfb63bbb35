"""The data side of a training run: the dataset's fixed split and the seeded batch order.

The dataset and the split itself come from :mod:`boomerang.data`; here a run loads both
(:func:`load_split_dataset`), records the split next to its outputs (:func:`write_split`) and
draws its batches (:func:`batch_order`) from seeds alone, so that a resumed run sees the same
batches as one that never stopped.
"""

from __future__ import annotations

__all__ = ["SPLIT_NAME", "batch_order", "load_split_dataset", "write_split"]

SPLIT_NAME = "split.json"


def batch_order(seed: int, n: int, batch: int):
    """The batches of a run over ``n`` training items, ``batch`` at a time.

    Epoch ``e`` is ``torch.randperm(n)`` drawn from a generator seeded with
    ``seed * 1_000_003 + e``; step ``s`` takes the ``s % (n // batch)``-th slice of
    epoch ``s // (n // batch)`` (a last partial batch is dropped). Depends on the
    step alone, never on what ran before.

    Args:
        seed: the run's seed.
        n: number of training items (>= ``batch``).
        batch: items per step (> 0).

    Returns:
        ``indices(step) -> LongTensor [batch]``, indices into the training items.
    """
    import torch

    per_epoch = n // batch
    cache: dict[int, torch.Tensor] = {}

    def indices(step: int):
        epoch, pos = divmod(step, per_epoch)
        if epoch not in cache:
            cache.clear()
            cache[epoch] = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        return cache[epoch][pos * batch:(pos + 1) * batch]

    return indices


def load_split_dataset(cfg, **load):
    """Load ``cfg.data`` (:func:`boomerang.data.load_dataset` with ``load``) and its seeded split.

    Args:
        cfg: a training config with ``data``, ``split_seed``, ``val_fraction`` and ``test_fraction``.
        load: further arguments of ``load_dataset`` (``image_size``).

    Returns:
        ``(dataset, split)``; ``split`` is ``{"train": [...], "val": [...], "test": [...]}``.

    Raises:
        ValueError: an unknown dataset, unreadable folder or bad fractions.
    """
    from boomerang.data import load_dataset, make_split

    ds = load_dataset(cfg.data, **load)
    split = make_split(ds.labels, seed=cfg.split_seed, val_fraction=cfg.val_fraction,
                       test_fraction=cfg.test_fraction)
    return ds, split


def write_split(folder, cfg, split, n_total: int) -> None:
    """Write ``folder/split.json``: the split with the dataset's name, seed, fractions and size."""
    import pathlib

    from boomerang.data import save_split

    save_split(pathlib.Path(folder) / SPLIT_NAME, split, dataset=cfg.data, split_seed=cfg.split_seed,
               val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, n_total=n_total)
