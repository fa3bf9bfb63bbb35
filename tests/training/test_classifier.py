"""boomerang.training.classifier.fit_classifier: the reference recipe on tensors (used by the utility benchmarks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from boomerang.classifier import classifier_accuracy
from boomerang.training.classifier import fit_classifier


@pytest.fixture(scope="module")
def small_digits():
    from boomerang.data import load_dataset

    ds = load_dataset("mnist5k")
    idx = np.concatenate([np.flatnonzero(ds.labels == c)[:20] for c in range(10)])
    test = np.concatenate([np.flatnonzero(ds.labels == c)[100:130] for c in range(10)])
    x = lambda i: torch.from_numpy(ds.images[i]).float() / 127.5 - 1.0  # noqa: E731
    return x(idx), torch.from_numpy(ds.labels[idx]), x(test), torch.from_numpy(ds.labels[test])


def test_fit_classifier_learns_and_is_reproducible(small_digits):
    x, y, xt, yt = small_digits
    state = torch.random.get_rng_state()
    net, info = fit_classifier(x, y, epochs=6, batch_size=32, lr=5e-3, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    assert info["steps"] == 6 * 7 and info["val_accuracy"] is None and info["best_epoch"] == 6
    assert not net.training
    acc = classifier_accuracy(net, xt, yt)
    assert acc > 0.5, acc  # 200 digits, 42 steps: far above chance (0.1)
    net2, _ = fit_classifier(x, y, epochs=6, batch_size=32, lr=5e-3, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), net2.state_dict().values()))
    assert classifier_accuracy(net2, xt, yt) == acc


def test_fit_classifier_keeps_the_best_val_epoch_and_checks_input(small_digits):
    x, y, xt, yt = small_digits
    _, info = fit_classifier(x, y, x_val=xt, y_val=yt, epochs=3, batch_size=64, seed=0)
    assert 1 <= info["best_epoch"] <= 3 and 0.0 <= info["val_accuracy"] <= 1.0
    with pytest.raises(ValueError, match="one length"):
        fit_classifier(x, y[:-1])
