"""The data of the augmentation study (``benchmarks/augmentation.py``, issue 10) (torch at call time only).

* :func:`load_data`: mnist5k with the bundled classifier's split.
* :func:`pool_indices`: a fixed pool of training images per class (numpy seed
  :data:`POOL_SEED`); :func:`subset`: each training seed's class-balanced subset of it.
* :func:`classical_augment`: the ``classical`` arm (kornia affine + elastic).
* :class:`GlobalMixed`: the ``global`` arm: each image replaced with probability p by
  one of its K generated global samples, with the classifier's label.
* :func:`sample_retention`: class retention of the cached Boomerang samples per level, and
  :func:`label_agreement`: how often each judge agrees with the global arm's labels; both by the
  two judges of :mod:`boomerang.studies.judges`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["POOL_SEED", "load_data", "pool_indices", "subset", "classical_augment", "GlobalMixed",
           "sample_retention", "label_agreement"]

POOL_SEED = 2026  # the pool of images the subsets are drawn from (fixed)


def load_data():
    """(dataset, split) of mnist5k with the bundled classifier's split."""
    from boomerang.assets import classifier_path
    from boomerang.data import load_dataset, load_split

    return load_dataset("mnist5k"), load_split(classifier_path() / "split.json")


def pool_indices(ds, split, per_class: int) -> dict[int, list[int]]:
    """The fixed pool: per class, ``per_class`` training indices (rng(POOL_SEED))."""
    rng = np.random.default_rng(POOL_SEED)
    train = np.asarray(split["train"])
    return {c: [int(i) for i in rng.permutation(train[ds.labels[train] == c])[:per_class]] for c in range(10)}


def subset(pool: dict[int, list[int]], seed: int, n_per_class: int) -> list[int]:
    """Seed ``seed``'s training subset: per class, ``n_per_class`` images drawn with
    ``default_rng(seed)`` from the first ``2 n_per_class`` images of the pool (all of the
    pool when it is smaller). With the default pool of 50 per class, the 50-image regime
    uses the whole pool for every seed (seeds differ in initialisation, order and
    augmentation draws) and the 10-image subsets come from the first 20 per class.

    Raises:
        ValueError: the pool holds fewer than ``n_per_class`` images of a class.
    """
    rng = np.random.default_rng(seed)
    out = []
    for c in range(10):
        if n_per_class > len(pool[c]):
            raise ValueError(f"--pool-per-class {len(pool[c])} is smaller than the regime {n_per_class}")
        candidates = pool[c][:2 * n_per_class]
        out += [int(i) for i in sorted(rng.permutation(candidates)[:n_per_class])]
    return out


def classical_augment():
    """kornia affine + elastic deformation (each with probability 0.5), on [B, 1, 28, 28] in [0, 2]."""
    import kornia.augmentation as KA
    import torch

    return torch.nn.Sequential(
        KA.RandomAffine(degrees=12.0, translate=(0.08, 0.08), scale=(0.9, 1.1), shear=8.0, p=0.5),
        KA.RandomElasticTransform(kernel_size=(15, 15), sigma=(4.0, 4.0), alpha=(1.0, 1.0), p=0.5),
    )


class GlobalMixed:
    """Item i: the real image, or with probability p one of its K assigned global samples with the
    classifier's label; the same choice function as BoomerangAugmented (boomerang.augment.choose_sample).

    Args:
        base: the real items, ``base[i] = (image, label)``.
        images, labels: the generated samples and their labels; item i's are ``[i * K, (i + 1) * K)``.
        K: samples per item; p: probability that an item shows a sample; seed: the choice's seed
            (with the epoch set by :meth:`set_epoch`).
    """

    def __init__(self, base, images, labels, K, p, seed):
        self.base, self.images, self.labels, self.K, self.p, self.seed, self.epoch = base, images, labels, K, p, seed, 0

    def set_epoch(self, e):
        self.epoch = e

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        from boomerang.augment import choose_sample

        j = choose_sample(self.seed, self.epoch, i, self.p, self.K)
        if j is None:
            return self.base[i]
        return self.images[i * self.K + j], int(self.labels[i * self.K + j])


def sample_retention(cache_dir, labels_by_source: dict[str, int], judges) -> dict[str, dict]:
    """Class retention of the cached Boomerang samples, by every judge (issue 20: two judges per study).

    A sample is trained on with its source's label, so the share of samples that a judge still
    assigns to that class says how often the augmentation feeds a wrong label.

    Args:
        cache_dir: the ``boomerang augment`` output (:mod:`boomerang.augment.cache` layout).
        labels_by_source: source key (the manifest's ``source``, e.g. ``"7/0123.png"``) -> true class;
            samples of other sources are skipped.
        judges: :class:`boomerang.studies.judges.Judge` objects.

    Returns:
        ``{"<level>": {"n_sources", "n_samples", "by_judge": {name: {"accuracy", "accuracy_ci95",
        "correct", "n"}}}}`` per cached level (Wilson intervals over samples, which are not independent
        across the K samples of a source: read them as a lower bound on the uncertainty).

    Raises:
        ValueError: a cache without levels, or no sample of a listed source.
    """
    from PIL import Image

    from boomerang.augment.cache import available_levels, source_samples
    from boomerang.studies.judges import retention

    levels = available_levels(cache_dir)
    if not levels:
        raise ValueError(f"{cache_dir}: no cached levels")
    out = {}
    for level in levels:
        images, labels, sources = [], [], set()
        for source, samples in sorted(source_samples(cache_dir, level).items()):
            if source not in labels_by_source:
                continue
            sources.add(source)
            for _, path in sorted(samples.items()):
                with Image.open(path) as im:
                    images.append(np.asarray(im.convert("L"), dtype=np.uint8))
                labels.append(int(labels_by_source[source]))
        if not images:
            raise ValueError(f"{cache_dir}: no samples at level {level:g} of the {len(labels_by_source)} sources")
        by = retention(judges, np.stack(images), np.asarray(labels))
        out[f"{level:g}"] = {"n_sources": len(sources), "n_samples": len(labels),
                             "by_judge": {j: {k: v for k, v in r.items() if k != "correct_by_digit"}
                                          for j, r in by.items()}}
    return out


def label_agreement(images, labels, judges) -> dict[str, dict]:
    """How often each judge gives generated images (uint8 ``[N, 1, 28, 28]``) the ``labels`` they were
    given (the ``global`` arm's labels are the reference CNN's argmax: the CNN agrees with itself by
    construction, the second judge says how trustworthy those labels are).
    Returns ``{name: {"accuracy", "accuracy_ci95", "correct", "n"}}``."""
    from boomerang.studies.judges import retention

    by = retention(judges, images, labels)
    return {j: {k: v for k, v in r.items() if k != "correct_by_digit"} for j, r in by.items()}
