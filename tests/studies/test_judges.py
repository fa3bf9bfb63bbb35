"""boomerang.studies.judges: the two judges every digit study reports (issue 20): the second one trains
fast and deterministically on the reference CNN's training split only, is scored on held-out digits, and
is really another kind of model (its errors are not the CNN's)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from boomerang.studies.judges import (REFERENCE, SECOND, as_unit_images, hog_features, reference_judge, retention,
                                      second_judge, train_hog_svm, training_indices)


@pytest.fixture(scope="module")
def data():
    from boomerang.assets import classifier_path
    from boomerang.data import load_dataset, load_split

    return load_dataset("mnist5k"), load_split(classifier_path() / "split.json")


@pytest.fixture(scope="module")
def small(data):
    """The hog-svm judge on the first 400 training digits (about a second)."""
    return second_judge(400, verbose=False)


def _box_bicubic(images_u8: np.ndarray, factor: int) -> np.ndarray:
    """uint8 [N, 1, 28, 28] -> box-downsampled by ``factor`` and bicubic back to 28x28, float [N, 28, 28] in [0, 1]."""
    from PIL import Image

    x = images_u8[:, 0].astype(np.float32) / 255.0
    n, s = len(x), 28 // factor
    low = x.reshape(n, s, factor, s, factor).mean(axis=(2, 4))
    return np.clip(np.stack([np.asarray(Image.fromarray(a).resize((28, 28), Image.BICUBIC)) for a in low]), 0, 1)


def test_trains_on_the_cnn_training_split_only(data):
    from boomerang.assets import classifier_path, default_model_path

    ds, split = data
    idx = training_indices(split, ds.labels)
    assert list(idx) == list(split["train"]) and len(idx) == 4000
    assert not set(idx) & (set(split["test"]) | set(split["val"]))
    few = training_indices(split, ds.labels, 50)  # class-balanced (mnist5k is sorted by class), from the same split
    assert len(set(few)) == 50 and set(few) <= set(split["train"]) and np.bincount(ds.labels[few]).tolist() == [5] * 10
    assert list(training_indices(split, ds.labels, 60)[:50]) == list(few)  # a prefix: grows stably
    # the split is the one the CNN and the diffusion model were trained on
    cnn = json.loads((classifier_path() / "split.json").read_text())
    ddpm = json.loads((default_model_path() / "split.json").read_text())
    assert all(cnn[k] == ddpm[k] for k in ("train", "val", "test"))


def test_small_judge_is_scored_on_held_out_digits(small):
    assert small.name == SECOND and small.info["n_train"] == 400
    assert "classifier-mnist5k" in small.info["train_split"]
    # 400 digits are enough for a fair judge; the test split was never seen
    assert 0.8 < small.info["test_accuracy"] < 1.0 and 0.8 < small.info["val_accuracy"] <= 1.0


def test_training_is_deterministic(data):
    ds, split = data
    idx = training_indices(split, ds.labels, 300)
    test = np.asarray(split["test"])
    a = train_hog_svm(ds.images[idx, 0], ds.labels[idx])(ds.images[test])
    b = train_hog_svm(ds.images[idx, 0], ds.labels[idx])(ds.images[test])
    assert np.array_equal(a, b)
    # a different training set gives a different judge (the data matter)
    idx2 = training_indices(split, ds.labels, 600)[300:]
    c = train_hog_svm(ds.images[idx2, 0], ds.labels[idx2])(ds.images[test])
    assert not np.array_equal(a, c)


def test_interface_accepts_every_form_and_refuses_bad_input(data, small):
    ds, split = data
    test = np.asarray(split["test"])[:40]
    u8 = ds.images[test]  # uint8 [40, 1, 28, 28]
    f01 = u8[:, 0].astype(np.float32) / 255.0
    signed = torch.from_numpy(f01[:, None] * 2 - 1)
    cnn = reference_judge()
    for judge in (small, cnn):
        want = judge(f01)
        assert want.dtype == np.int64 and want.shape == (40,) and set(want) <= set(range(10))
        assert np.array_equal(judge(u8), want) and np.array_equal(judge(signed, signed=True), want)
        assert judge(np.zeros((0, 28, 28), np.float32)).shape == (0,)
    with pytest.raises(ValueError, match="signed=True"):
        small(signed.numpy())
    with pytest.raises(ValueError, match=r"\[N, 28, 28\]"):
        cnn(np.zeros((2, 32, 32), np.float32))
    assert as_unit_images(signed, signed=True).max() <= 1.0
    assert hog_features(f01[:3]).shape == (3, 324)


def test_it_is_another_kind_of_model(data):
    """The two judges disagree on some digits and make different mistakes: on clean test digits each gets some
    right that the other gets wrong, and on blurred ones (4x box-downsampled, bicubic back) they disagree often."""
    ds, split = data
    judge = second_judge(1000, verbose=False)
    cnn = reference_judge()
    test = np.asarray(split["test"])
    y = ds.labels[test]
    ok_svm, ok_cnn = judge(ds.images[test]) == y, cnn(ds.images[test]) == y
    assert (ok_svm & ~ok_cnn).sum() >= 1 and (ok_cnn & ~ok_svm).sum() >= 1
    blurred = _box_bicubic(ds.images[test], 4)
    disagree = (judge(blurred) != cnn(blurred)).mean()
    assert disagree > 0.1, disagree


def test_retention_scores_every_judge(data, small):
    ds, split = data
    test = np.asarray(split["test"])[:50]
    out = retention([reference_judge(), small], ds.images[test], ds.labels[test])
    assert set(out) == {REFERENCE, SECOND}
    for r in out.values():
        assert r["n"] == 50 and len(r["correct_by_digit"]) == 50 and r["correct"] == r["correct_by_digit"].count("1")
        assert r["accuracy"] == r["correct"] / 50 and r["accuracy_ci95"][0] <= r["accuracy"] <= r["accuracy_ci95"][1]
    wrong = retention([small], ds.images[test], (ds.labels[test] + 1) % 10)[SECOND]
    assert wrong["correct"] <= 50 - out[SECOND]["correct"]


def test_judges_by_name_and_the_pixel_judge(data):
    from boomerang.studies.judges import NAMES, judges_named, pixel_judge

    ds, split = data
    px = pixel_judge(400, verbose=False)
    assert px.name == "pixel-svm" and 0.8 < px.info["test_accuracy"] < 1.0
    test = np.asarray(split["test"])
    # no features: its answers differ from the HOG judge's on some test digits
    assert (px(ds.images[test]) != second_judge(400, verbose=False)(ds.images[test])).any()
    assert [j.name for j in judges_named(["cnn"])] == ["cnn"] and NAMES == ("cnn", "hog-svm", "pixel-svm")
    with pytest.raises(ValueError, match="unknown judge 'svm'; known: cnn, hog-svm, pixel-svm"):
        judges_named(["cnn", "svm"])
