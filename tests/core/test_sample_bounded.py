"""``sample``'s bounded path (boomerang.bounded_sample): a windowed large photo's x0 and x_t in files,
stepped band by band with the noise drawn in the whole draw's order. It must give exactly the
in-memory path's samples: here with windows and bands forced small (16-pixel windows, 4-row bands)
on 1 and 3 channels, with fresh noise at every step (ddpm, ddim eta > 0)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _helpers import generators, run_cli

from boomerang import bounded_sample, core, windowing
from boomerang.enhance import banded
from boomerang.models import load_model


@pytest.fixture(scope="module")
def conv_models(tmp_path_factory):
    from boomerang.testing.tiny import make_tiny_pixel_model

    root = tmp_path_factory.mktemp("models")
    paths = {c: make_tiny_pixel_model(root / f"conv{c}", size=8, channels=c, fully_convolutional=True) for c in (1, 3)}
    return {c: (p, load_model(str(p))) for c, p in paths.items()}


def _spy(monkeypatch):
    calls, made = [], []
    real, real_tmp = bounded_sample.sample_bounded, bounded_sample.tempfile.TemporaryDirectory
    monkeypatch.setattr(bounded_sample, "sample_bounded", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(bounded_sample.tempfile, "TemporaryDirectory",
                        lambda *a, **k: made.append(k.get("dir")) or real_tmp(*a, **k))
    return calls, made


def _both(model, monkeypatch, *, scheduler, eta=0.0, from_noise=False, shape=(40, 56)):
    C = model.image_channels
    x0 = torch.rand((2, C, *shape), generator=torch.Generator().manual_seed(4)) * 2 - 1
    kw = dict(from_noise=True) if from_noise else dict(level=0.4)
    plan = core.plan(model, scheduler=scheduler, steps=10, **kw)
    calls, _ = _spy(monkeypatch)
    monkeypatch.setattr(banded, "BANDED_MIN_PIXELS", 10 ** 9)
    mem = core.boomerang_sample(model, x0, plan, generators([1, 2]), eta=eta, windows=(16, 4), tile_batch=3)
    assert not calls
    monkeypatch.setattr(banded, "BANDED_MIN_PIXELS", 0)
    monkeypatch.setattr(banded, "BAND_ROWS", 4)
    gens = generators([1, 2])
    got = core.boomerang_sample(model, x0, plan, gens, eta=eta, windows=(16, 4), tile_batch=3)
    assert calls and got.windows == mem.windows == (16, 4)
    return mem.samples, got.samples, gens


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("scheduler,eta,from_noise", [
    ("ddpm", 0.0, False), ("ddim", 0.0, False), ("ddim", 0.5, False), ("euler", 0.0, False), ("ddpm", 0.0, True)])
def test_bounded_sample_equals_in_memory(conv_models, monkeypatch, channels, scheduler, eta, from_noise):
    _, model = conv_models[channels]
    mem, got, gens = _both(model, monkeypatch, scheduler=scheduler, eta=eta, from_noise=from_noise)
    assert torch.equal(mem, got)
    after = generators([1, 2])  # the generators end where the in-memory path leaves them
    core.boomerang_sample(model, torch.zeros(2, channels, 40, 56), core.plan(model, scheduler=scheduler, steps=10,
                          **(dict(from_noise=True) if from_noise else dict(level=0.4))), after, eta=eta)
    assert all(torch.equal(a.get_state(), b.get_state()) for a, b in zip(gens, after))


def test_bounded_sample_fails_with_band_major_noise(conv_models, monkeypatch):
    """The check above is sharp: noise drawn band by band in the band's own order (not the whole
    draw's channel-major order) gives another sample."""
    _, model = conv_models[3]

    class BandMajor(banded.NoiseCursors):
        def generators(self, channel):
            return self.items  # every channel's band straight from the item's generator

        def finish(self):
            pass

    monkeypatch.setattr(banded, "NoiseCursors", BandMajor)
    mem, got, _ = _both(model, monkeypatch, scheduler="ddpm")
    assert not torch.equal(mem, got)


def test_small_or_unbandable_stays_in_memory(conv_models, tiny_pixel_model, monkeypatch):
    _, model = conv_models[3]
    plan = core.plan(model, level=0.4, scheduler="dpmsolver++", steps=10)
    assert bounded_sample.bounded_reason(model, plan, 2048, 2048) is not None  # keeps image-sized history
    ddpm = core.plan(model, level=0.4, scheduler="ddpm", steps=10)
    assert bounded_sample.bounded_reason(model, ddpm, 2048, 2048) is None
    assert bounded_sample.bounded_reason(model, ddpm, 512, 512) == "small image"
    calls, _ = _spy(monkeypatch)
    monkeypatch.setattr(banded, "BANDED_MIN_PIXELS", 0)
    core.boomerang_sample(model, torch.zeros(1, 3, 40, 56), plan, generators([1]), windows=(16, 4))
    core.boomerang_sample(model, torch.zeros(1, 3, 40, 56), ddpm, generators([1]))  # not windowed
    assert not calls


def _photo(path, channels, seed):
    from PIL import Image

    shape = (32, 44) if channels == 1 else (32, 44, 3)  # H W a multiple of 16 (the tiny model pads to 2)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)).save(path)


def _small_windows(monkeypatch) -> None:
    """Windows of 16 (overlap 4) above 20x20 pixels and bands of 4 rows: many windows and bands on a tiny photo."""
    monkeypatch.setattr(windowing, "WINDOW_ABOVE_PIXELS", 20 * 20)
    monkeypatch.setattr(windowing, "SAMPLE_TILE", 16)
    monkeypatch.setattr(windowing, "SAMPLE_OVERLAP", 4)
    monkeypatch.setattr(banded, "BAND_ROWS", 4)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("scheduler", ["ddpm", "ddim"])
def test_sample_command_bounded_path_same_png_bytes(conv_models, tmp_path, monkeypatch, capsys, channels, scheduler):
    path, _ = conv_models[channels]
    _small_windows(monkeypatch)
    calls, made = _spy(monkeypatch)
    src = tmp_path / "photo.png"
    _photo(src, channels, channels)
    outs = {}
    for kind, threshold in (("memory", 10 ** 9), ("bounded", 0)):
        monkeypatch.setattr(banded, "BANDED_MIN_PIXELS", threshold)
        out = tmp_path / kind
        rc, err = run_cli(["sample", src, "--model", path, "--level", "0.4", "--steps", "8", "--scheduler", scheduler,
                           "--eta", "0.5", "--num-samples", "2", "--seed", "3", "--out", out], capsys)
        assert rc == 0, err
        assert len(calls) == (kind == "bounded") and made == ([None] if kind == "bounded" else [])  # TMPDIR
        calls.clear()
        made.clear()
        outs[kind] = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*.png"))}
    assert len(outs["memory"]) >= 2 and outs["bounded"] == outs["memory"]


def test_dataset_command_bounded_work_files_in_job_scratch(conv_models, tmp_path, monkeypatch, capsys):
    path, _ = conv_models[3]
    _small_windows(monkeypatch)
    calls, made = _spy(monkeypatch)
    src = tmp_path / "data"
    src.mkdir()
    _photo(src / "large.png", 3, 5)
    outs = {}
    for kind, threshold in (("memory", 10 ** 9), ("bounded", 0)):
        monkeypatch.setattr(banded, "BANDED_MIN_PIXELS", threshold)
        out = tmp_path / kind
        rc, err = run_cli(["augment", src, "--model", path, "--level", "0.3", "--steps", "4", "--samples-per-image",
                           "1", "--out", out], capsys)
        assert rc == 0, err
        assert made == ([out / ".job" / "scratch"] if kind == "bounded" else [])
        assert not list((out / ".job").rglob("sample-bands-*"))  # and gone
        outs[kind] = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*.png"))}
        made.clear()
    assert calls == [1] and outs["bounded"] == outs["memory"]
