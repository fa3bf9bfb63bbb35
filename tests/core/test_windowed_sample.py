"""Large photos: ``sample`` denoises a fully convolutional pixel model's input in windows (boomerang.windowing)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _helpers import generators, run_cli

from boomerang import core, imageio, windowing
from boomerang.models import load_model


@pytest.fixture(scope="module")
def conv_model(tmp_path_factory):
    from boomerang.testing.tiny import make_tiny_pixel_model

    path = make_tiny_pixel_model(tmp_path_factory.mktemp("models") / "conv", size=8, channels=3,
                                 fully_convolutional=True)
    return path, load_model(str(path))


class _Pointwise:
    """A model whose prediction at a pixel depends only on that pixel (no context): windows
    then cannot change anything, so windowed and whole-image samples must be equal."""

    def __init__(self, model):
        self._m, self.shapes = model, []

    def __getattr__(self, name):
        return getattr(self._m, name)

    def predict(self, x, t, **kw):
        self.shapes.append(tuple(x.shape[-2:]))
        return torch.tanh(1.7 * x) * 0.3 + 0.01 * float(t) / 1000.0


def _x0(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, h, w, generator=g) * 2 - 1


def test_window_rule_is_size_only(conv_model):
    _, model = conv_model
    assert model.native_size is None and model.pixel_space
    side = int(windowing.WINDOW_ABOVE_PIXELS ** 0.5)
    assert windowing.sample_windows(model, side, side) is None
    tile, overlap = windowing.sample_windows(model, side + 8, side)
    assert tile == windowing.SAMPLE_TILE and overlap == windowing.SAMPLE_OVERLAP
    assert tile % model.size_multiple == 0


def test_window_rule_skips_native_size_and_latent(tiny_pixel_model, tiny_sd_model):
    assert windowing.sample_windows(tiny_pixel_model, 4096, 4096) is None  # native size: resized, never windowed
    assert windowing.sample_windows(tiny_sd_model, 4096, 4096) is None  # latent: whole-image path


@pytest.mark.parametrize("scheduler", ["ddpm", "ddim"])
def test_pointwise_model_windowed_equals_whole_image_bytes(conv_model, scheduler):
    _, model = conv_model
    pw = _Pointwise(model)
    x0 = _x0(40, 56)
    plan = core.plan(model, level=0.4, scheduler=scheduler, steps=10)
    whole = core.boomerang_sample(pw, x0, plan, generators([1, 2]))
    n_whole = len(pw.shapes)
    tiled = core.boomerang_sample(pw, x0, plan, generators([1, 2]), windows=(16, 6), tile_batch=3)
    assert set(pw.shapes[n_whole:]) == {(16, 16)}  # the model only ever saw windows
    assert tiled.windows == (16, 6) and whole.windows is None
    assert torch.equal(whole.samples, tiled.samples)


def test_one_window_is_the_whole_image_exactly(conv_model):
    _, model = conv_model
    x0 = _x0(24, 32)
    plan = core.plan(model, level=0.5, steps=8)
    whole = core.boomerang_sample(model, x0, plan, generators([3, 4]))
    one = core.boomerang_sample(model, x0, plan, generators([3, 4]), windows=(32, 8))
    assert one.windows is None and torch.equal(whole.samples, one.samples)


def test_windowed_sample_does_not_depend_on_tile_batch_or_batch(conv_model):
    _, model = conv_model
    x0 = _x0(32, 40)
    plan = core.plan(model, level=0.3, steps=6)
    a = core.boomerang_sample(model, x0, plan, generators([5, 6]), windows=(16, 4), tile_batch=1).samples
    b = core.boomerang_sample(model, x0, plan, generators([5, 6]), windows=(16, 4), tile_batch=7).samples
    c = core.boomerang_sample(model, x0[1:], plan, generators([6]), windows=(16, 4)).samples
    assert torch.equal(a, b) and torch.equal(a[1:], c)


def test_sample_command_windows_large_photo(conv_model, tmp_path, capsys, monkeypatch):
    """``boomerang sample`` above the (here lowered) limit: windowed, recorded in metadata, the
    input's own size, and the same as the library's windowed sample of the padded input."""
    path, _ = conv_model
    monkeypatch.setattr(windowing, "WINDOW_ABOVE_PIXELS", 20 * 20)
    monkeypatch.setattr(windowing, "SAMPLE_TILE", 16)
    monkeypatch.setattr(windowing, "SAMPLE_OVERLAP", 4)
    rng = np.random.default_rng(0)
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(rng.integers(0, 256, (30, 44, 3), dtype=np.uint8)).save(src / "photo.png")
    rc, err = run_cli(["sample", src / "photo.png", "--model", path, "--level", "0.3", "--steps", "6",
                       "--num-samples", "1", "--seed", "0", "--out", tmp_path / "out"], capsys)
    assert rc == 0, err
    (written,) = [p for p in (tmp_path / "out").rglob("*.png") if p.name != "contact_sheet.png"]
    out = imageio.read_image(written).pixels
    assert out.shape == (30, 44, 3)
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())
    (row,) = meta["samples"]
    assert (row["window_tile"], row["window_overlap"]) == (16, 4)


def test_refusal_worded_per_model_kind():
    with pytest.raises(imageio.ImageInputError) as pixel:
        imageio.check_full_size_input("big.png", 8000, 6000, native_size=None, multiple_of=8, pixel_space=True)
    msg = str(pixel.value)
    assert "VAE" not in msg and "attention" not in msg
    assert "windows of 512x512" in msg and "at most 16 MP" in msg and "resize" in msg
    assert "over all 336 of them" in msg  # 21 x 16 windows of 512 with 128 overlap over 8000x6000
    with pytest.raises(imageio.ImageInputError) as latent:
        imageio.check_full_size_input("big.png", 8000, 6000, native_size=None, multiple_of=8, vae_width=128)
    assert "VAE alone would need" in str(latent.value) and "self-attention" in str(latent.value)
    imageio.check_full_size_input("ok.png", 4000, 4000, native_size=None, multiple_of=8, pixel_space=True)


def test_dataset_command_windows_large_photos(conv_model, tmp_path, capsys, monkeypatch):
    """``augment`` (a dataset command, the same batch function) windows a photo above the limit,
    records it per output row, and leaves a photo within the limit whole (no ``windows`` key)."""
    path, _ = conv_model
    monkeypatch.setattr(windowing, "WINDOW_ABOVE_PIXELS", 20 * 20)
    monkeypatch.setattr(windowing, "SAMPLE_TILE", 16)
    monkeypatch.setattr(windowing, "SAMPLE_OVERLAP", 4)
    from PIL import Image

    rng = np.random.default_rng(1)
    src = tmp_path / "data"
    src.mkdir()
    Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)).save(src / "large.png")
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(src / "small.png")
    rc, err = run_cli(["augment", src, "--model", path, "--level", "0.3", "--steps", "4", "--samples-per-image", "1",
                       "--out", tmp_path / "out"], capsys)
    assert rc == 0, err
    (meta,) = (tmp_path / "out").rglob("metadata.jsonl")  # OUT/level0.300/metadata.jsonl
    rows = [json.loads(ln) for ln in meta.read_text().splitlines()]
    by_source = {r["source"]: r for r in rows}
    assert (by_source["large.png"]["window_tile"], by_source["large.png"]["window_overlap"]) == (16, 4)
    assert "window_tile" not in by_source["small.png"]
