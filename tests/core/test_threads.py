"""The default thread count (the idle cores) and what thread counts may change (issue 13)."""

from __future__ import annotations

import multiprocessing as mp
import time

import pytest
import torch

from boomerang import threads


def _busy(stop) -> None:
    while not stop.is_set():
        pass


def test_default_follows_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.default_threads() == 3
    assert threads.resolve_threads(None) == 3


@pytest.mark.parametrize("idle,cores,expected", [(0.1, 2, 1), (0.6, 2, 1), (1.4, 2, 1), (1.6, 2, 2), (7.9, 8, 8),
                                                 (None, 4, 4)])
def test_default_is_the_idle_cores(monkeypatch, idle, cores, expected):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "idle_cores", lambda seconds=0.2: idle)
    monkeypatch.setattr(threads, "available_cores", lambda: cores)
    assert threads.default_threads() == expected


def test_resolve_threads_values():
    assert threads.resolve_threads("torch") is None and threads.resolve_threads("2") == 2
    with pytest.raises(ValueError, match="threads"):
        threads.resolve_threads("0")


def test_busy_cores_give_one_thread(monkeypatch):
    """With a busy loop on every core this process may use, the default is 1 thread."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    stop = mp.Event()
    procs = [mp.Process(target=_busy, args=(stop,), daemon=True) for _ in range(threads.available_cores())]
    for p in procs:
        p.start()
    try:
        time.sleep(0.5)
        assert threads.idle_cores() < threads.available_cores() - 0.5
        assert threads.default_threads() == 1
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=5)


def test_bundled_model_samples_do_not_depend_on_the_thread_count():
    """The README's promise across thread counts: float values within 1e-4, 8-bit pixels within
    one grey level (in practice identical: the count of differing pixels is printed)."""
    from boomerang.core import boomerang_sample
    from boomerang.models import load_model

    model = load_model(None)
    x = torch.linspace(-1, 1, 2 * 28 * 28).reshape(2, 1, 28, 28)
    before = torch.get_num_threads()
    outs = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
            outs.append(boomerang_sample(model, x, generators=gens, level=0.5, steps=6).samples)
    finally:
        torch.set_num_threads(before)
    # float values may differ in the last bits (oneDNN splits sums by thread); the written 8-bit files agree
    assert float((outs[0] - outs[1]).abs().max()) < 1e-4
    q = [torch.round((o.clamp(-1, 1) + 1) / 2 * 255) for o in outs]
    assert float((q[0] - q[1]).abs().max()) <= 1
    print("max float difference", float((outs[0] - outs[1]).abs().max()), "8-bit pixels differing",
          int((q[0] != q[1]).sum()), "of", q[0].numel())
