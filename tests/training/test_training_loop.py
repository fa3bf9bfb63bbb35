"""The shared training skeleton (boomerang.training): EMA, loop, checkpoints, exact resume, stopping, progress.

Toy models on the CPU, no data sets: each test runs in well under a second.
"""

from __future__ import annotations

import io

import pytest

torch = pytest.importorskip("torch")

from boomerang.training.checkpoint import check_resume, load_checkpoint, read_meta, save_checkpoint  # noqa: E402
from boomerang.training.data import batch_order  # noqa: E402
from boomerang.training.ema import ema_decay, make_ema, update_ema  # noqa: E402
from boomerang.training.loop import Stopper, run_stage, warmup_lr  # noqa: E402
from boomerang.training.progress import Progress  # noqa: E402


def _toy(seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.nn.Linear(4, 3)


def _toy_run(tmp_path, name, total, *, start_from=None, stop_after=None):
    """A Linear model fitted to noise from a checkpointed generator; returns (model, ema, result)."""
    model = _toy()
    ema = make_ema(model, lambda: torch.nn.Linear(4, 3))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(7)
    ck = tmp_path / f"{name}.safetensors"
    step = 0
    if start_from is not None:
        step = int(load_checkpoint(start_from, model, ema, opt, gen)["step"])
    indices = batch_order(3, 10, 4)
    data = torch.randn(10, 4, generator=torch.Generator().manual_seed(1))

    def loss_fn(step):
        x = data[indices(step)]
        return (model(x) - torch.randn(x.shape[0], 3, generator=gen)).pow(2).mean()

    class StopAt:  # a Stopper whose signal arrives after ``stop_after`` steps
        calls = 0

        def reason(self):
            self.calls += 1
            return "signal" if stop_after is not None and self.calls > stop_after else None

    written = []

    def checkpoint(step, last_loss):
        written.append(step)
        save_checkpoint(ck, model, ema, opt, step, gen, {"last_loss": last_loss})

    res = run_stage("toy", model=model, optimizer=opt, loss_fn=loss_fn, total_steps=total, step=step, lr=1e-2,
                    warmup_steps=3, grad_clip=0.5, ema=ema, ema_decay=0.9, checkpoint=checkpoint,
                    checkpoint_every=2, stopper=StopAt(), progress=False)
    return model, ema, res, ck, written


def test_ema_decay_and_update():
    assert ema_decay(1, 0.999) == pytest.approx(2 / 11) and ema_decay(10_000, 0.999) == 0.999
    model, ema = _toy(0), _toy(1)
    before = ema.weight.detach().clone()
    update_ema(ema, model, 1, 0.999)
    d = 2 / 11
    torch.testing.assert_close(ema.weight, d * before + (1 - d) * model.weight.detach())
    copy = make_ema(model, lambda: torch.nn.Linear(4, 3))
    assert torch.equal(copy.weight, model.weight) and not copy.weight.requires_grad


def test_warmup_lr():
    assert [warmup_lr(1.0, s, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_lr(0.1, 0, 0) == 0.1


def test_batch_order_depends_on_the_step_alone():
    a, b = batch_order(5, 10, 4), batch_order(5, 10, 4)
    seq = [a(s).tolist() for s in range(6)]
    assert [b(s).tolist() for s in (5, 0, 3)] == [seq[5], seq[0], seq[3]]
    assert not set(seq[0]) & set(seq[1]) and len(seq[0]) == 4  # two batches of one epoch are disjoint
    assert batch_order(6, 10, 4)(0).tolist() != seq[0]


def test_run_stage_checkpoints_every_n_and_at_the_end(tmp_path):
    _, _, res, ck, written = _toy_run(tmp_path, "a", 5)
    assert (res.step, res.stopped) == (5, "max_steps") and written == [2, 4, 5]
    assert read_meta(ck)["step"] == 5 and res.last_loss == read_meta(ck)["extra"]["last_loss"]


def test_stopped_and_resumed_stage_equals_an_uninterrupted_one(tmp_path):
    m1, e1, _, _, _ = _toy_run(tmp_path, "straight", 6)
    _, _, res, ck, written = _toy_run(tmp_path, "part", 6, stop_after=3)
    assert (res.step, res.stopped) == (3, "signal") and written == [2, 3]
    m2, e2, res2, _, _ = _toy_run(tmp_path, "rest", 6, start_from=ck)
    assert res2.step == 6
    for a, b in ((m1, m2), (e1, e2)):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    # ... and the comparison can fail: a different run differs
    m3, _, _, _, _ = _toy_run(tmp_path, "short", 5)
    assert not torch.equal(m3.weight, m1.weight)


def test_check_resume_names_the_changed_settings(tmp_path):
    from dataclasses import dataclass

    @dataclass
    class Cfg:
        lr: float = 1.0
        seed: int = 0
        max_steps: int = 10

    model = _toy()
    ck = tmp_path / "c.safetensors"
    save_checkpoint(ck, model, _toy(1), torch.optim.AdamW(model.parameters()), 1, torch.Generator(),
                    {"config": {"lr": 1.0, "seed": 0, "max_steps": 10}})
    check_resume(ck, Cfg(max_steps=20), ("lr", "seed"))  # max_steps may change
    with pytest.raises(ValueError, match=r"cannot resume with different settings: lr \(checkpoint 1.0, now 0.5\)"):
        check_resume(ck, Cfg(lr=0.5), ("lr", "seed"))


def test_stopper_max_minutes_and_signal(capfd):
    import os
    import signal

    with Stopper("train", max_minutes=None) as s:
        assert s.reason() is None
    with Stopper("train", max_minutes=1e-9) as s:
        assert s.reason() == "max_minutes"
    before = signal.getsignal(signal.SIGTERM)
    with Stopper("train") as s:
        os.kill(os.getpid(), signal.SIGTERM)  # handled: sets the flag, the process goes on
        assert s.reason() == "signal"
    assert signal.getsignal(signal.SIGTERM) is before
    assert "boomerang train: SIGTERM: stopping after this step" in capfd.readouterr().err


def test_progress_lines_off_a_terminal_and_nothing_when_disabled():
    out = io.StringIO()
    p = Progress("unet", total=250, enabled=True, every=100, stream=out)
    for step in range(1, 251):
        p.update(step, 1.0, 1e-3)
    p.note("epoch 1/1")
    p.close()
    lines = out.getvalue().splitlines()
    assert [ln.split(" loss")[0] for ln in lines[:2]] == ["unet step 100/250", "unet step 200/250"]
    assert lines[2] == "epoch 1/1" and len(lines) == 3
    quiet = io.StringIO()
    p = Progress("unet", total=250, enabled=False, stream=quiet)
    for step in range(1, 251):
        p.update(step, 1.0, 1e-3)
    p.note("epoch 1/1")
    assert quiet.getvalue() == ""
