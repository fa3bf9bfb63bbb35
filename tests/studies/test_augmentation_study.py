"""boomerang.studies.augmentation: the pieces the figures of benchmarks/augmentation.py rest on (subsets,
classical augmentation, the global arm's mixing), checked fast; the study itself is a benchmark, not a test."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import numpy as np
import pytest

from boomerang.studies.augmentation import GlobalMixed, classical_augment, load_data, pool_indices, subset

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data():
    return load_data()


def test_subsets_are_fixed_per_seed_balanced_and_from_the_training_split(data):
    ds, split = data
    pool = pool_indices(ds, split, 50)
    assert pool == pool_indices(ds, split, 50)
    assert all(pool_indices(ds, split, 60)[c][:50] == pool[c] for c in range(10))  # a prefix: grows stably
    train = set(split["train"])
    for c, idx in pool.items():
        assert len(idx) == 50 and set(idx) <= train and all(ds.labels[i] == c for i in idx)
    s10, s50 = subset(pool, 3, 10), subset(pool, 3, 50)
    assert s10 == subset(pool, 3, 10) and subset(pool, 4, 10) != s10
    assert set(s10) <= {i for c in range(10) for i in pool[c][:20]}  # drawn from the first 2 x 10 per class
    assert sorted(s50) == sorted(i for c in range(10) for i in pool[c])
    assert np.bincount(ds.labels[s10], minlength=10).tolist() == [10] * 10
    assert not set(s50) & set(split["test"])
    with pytest.raises(ValueError, match="pool-per-class"):
        subset(pool, 0, 51)


def test_the_script_refuses_a_pool_smaller_than_a_regime_before_any_work(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "augmentation.py"), "--pool-per-class", "20",
                           "--work", str(tmp_path / "work")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--pool-per-class 20 is smaller than the regime 50" in proc.stderr
    assert not (tmp_path / "work").exists()


def test_classical_augmentation_is_seeded_and_keeps_size_range_and_background():
    import torch

    x = -torch.ones(64, 1, 28, 28)
    x[:, :, 6:22, 12:16] = 1.0  # a bar on the black background, [-1, 1]
    aug = classical_augment()

    def run(seed):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return aug(x + 1.0) - 1.0

    a, b, c = run(0), run(0), run(1)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= -1.0 - 1e-5 and a.max() <= 1.0 + 1e-5
    assert (a[:, :, :3, :3] == -1.0).all()  # corners stay background
    changed = (a - x).abs().flatten(1).amax(1) > 0.1
    assert 0.5 < changed.float().mean() < 1.0  # each transform has p = 0.5: about 75% of the images move


def test_global_arm_mixes_generated_images_with_their_own_labels():
    base = [(np.full((1, 2, 2), i, np.uint8), i % 10) for i in range(50)]
    images = np.arange(200 * 4, dtype=np.uint8).reshape(200, 1, 2, 2)
    labels = np.arange(200) % 7
    mixed = GlobalMixed(base, images, labels, K=4, p=0.5, seed=0)
    swapped = 0
    for i in range(50):
        img, y = mixed[i]
        if img is base[i][0]:
            assert y == base[i][1]
        else:
            k = next(k for k in range(i * 4, i * 4 + 4) if np.array_equal(images[k], img))
            assert y == labels[k]
            swapped += 1
    assert 10 < swapped < 40


def test_sample_retention_and_label_agreement_by_both_judges(data, tmp_path):
    """Class retention of cached samples: a cache whose "samples" at level 0.2 are the sources themselves and at
    0.4 another digit of the next class keeps every class at 0.2 for both judges and almost none at 0.4."""
    from PIL import Image

    from boomerang.augment.cache import level_dirname, write_manifest
    from boomerang.studies.augmentation import label_agreement, sample_retention
    from boomerang.studies.judges import reference_judge, second_judge

    ds, split = data
    judges = [reference_judge(), second_judge(500, verbose=False)]
    test = np.asarray(split["test"])
    srcs = [int(test[ds.labels[test] == c][0]) for c in range(10)]  # one test digit per class
    other = [int(test[ds.labels[test] == (c + 1) % 10][1]) for c in range(10)]
    labels = {f"{c}/{i:04d}.png": c for c, i in enumerate(srcs)}
    for level, picks in ((0.2, srcs), (0.4, other)):
        rows = []
        for (key, c), i in zip(labels.items(), picks):
            for j in range(2):
                name = f"{key[:-4]}_s{j:03d}.png"
                (tmp_path / level_dirname(level) / str(c)).mkdir(parents=True, exist_ok=True)
                Image.fromarray(ds.images[i, 0]).save(tmp_path / level_dirname(level) / name)
                rows.append({"file_name": name, "source": key, "sample_index": j})
        write_manifest(tmp_path / level_dirname(level), rows)
    out = sample_retention(tmp_path, labels, judges)
    assert set(out) == {"0.2", "0.4"}
    for name in ("cnn", "hog-svm"):
        keep, swap = out["0.2"]["by_judge"][name], out["0.4"]["by_judge"][name]
        assert out["0.2"]["n_samples"] == 20 and out["0.2"]["n_sources"] == 10 and keep["n"] == 20
        assert keep["accuracy"] >= 0.9 and swap["accuracy"] <= 0.2, (name, keep, swap)
    assert sample_retention(tmp_path, {k: v for k, v in list(labels.items())[:3]}, judges)["0.2"]["n_sources"] == 3
    with pytest.raises(ValueError, match="no samples"):
        sample_retention(tmp_path, {"9/9999.png": 9}, judges)
    agree = label_agreement(ds.images[srcs], np.arange(10), judges)
    assert agree["cnn"]["n"] == 10 and agree["cnn"]["accuracy"] >= 0.9 and agree["hog-svm"]["accuracy"] >= 0.8
