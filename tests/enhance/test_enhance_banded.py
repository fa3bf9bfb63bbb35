"""Enhance's bounded path (issue 22): x_t in files, the step, the forward jump and ILVR band by band,
the noise drawn slice by slice. It must give exactly the in-memory path's numbers: here with bands
forced small (2-4 rows) on images of several bands and many windows, on 1 and 3 channels, with ILVR
and with fresh noise at every step (ddpm, ddim eta > 0)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from boomerang.enhance import banded
from boomerang.enhance import bounded as bounded_module
from boomerang.enhance.bands import BandFile, NoiseCursors, band_rows
from boomerang.enhance.image import enhance_image, window_settings
from boomerang.enhance.sampler import tiled_boomerang
from boomerang.models import load_model
from boomerang.planning import plan as make_plan


@pytest.fixture(scope="module")
def colour_model(tiny_colour_pixel_dir):
    return load_model(tiny_colour_pixel_dir)


def test_consecutive_draws_of_multiples_of_16_are_one_draw():
    """The PyTorch property the path rests on (CPU normal fill, 16 values from 16 uniforms)."""
    whole = torch.randn((1, 3, 20, 24), generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    parts = torch.cat([torch.randn(k, generator=g) for k in (16, 464, 32, 912, 16)])
    assert torch.equal(whole.flatten(), parts)
    g2 = torch.Generator().manual_seed(5)
    odd = torch.cat([torch.randn(k, generator=g2) for k in (8, 1432)])  # not multiples of 16: other numbers
    assert not torch.equal(whole.flatten(), odd)


def test_noise_cursors_draw_the_whole_draw_slice_by_slice():
    C, H, W = 3, 20, 24
    want = torch.randn((1, C, H, W), generator=torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(9)
    cursors = NoiseCursors([g], C, H * W)
    got = torch.empty_like(want)
    rows = band_rows(W, 3)  # 4 rows: 96 values, a multiple of 16
    for r0 in range(0, H, rows):
        for c in range(C):
            got[:, c:c + 1, r0:r0 + rows] = torch.randn((1, 1, min(H, r0 + rows) - r0, W),
                                                        generator=cursors.generators(c)[0])
    cursors.finish()
    assert torch.equal(got, want)
    assert torch.equal(g.get_state(), torch.Generator().manual_seed(9).get_state()) is False
    after = torch.Generator().manual_seed(9)
    torch.randn((1, C, H, W), generator=after)
    assert torch.equal(g.get_state(), after.get_state())  # left where the whole draw leaves it


def _both_paths(model, tmp_path, *, scheduler, eta=0.0, ilvr=False, batch=1, band=2, until=1.0):
    C = model.image_channels
    H, W = 20, 24  # several bands, many 8-pixel windows
    x0 = torch.rand((batch, C, H, W), generator=torch.Generator().manual_seed(3)) * 2 - 1
    tile, overlap = window_settings(model, None, None)
    plan = make_plan(model, level=0.4, schedule="exact", scheduler=scheduler, steps=10, image_shape=(C, tile, tile))
    assert plan.num_denoiser_evals >= 3
    gens = lambda: [torch.Generator().manual_seed(11 + i) for i in range(batch)]  # noqa: E731
    low = x0.clone() if ilvr else None
    kw = dict(tile=tile, overlap=overlap, tile_batch=3, weighting="feather", eta=eta, consistency_until=until)
    g_mem = gens()
    want = tiled_boomerang(model, x0.clone(), plan, g_mem, consistency_low=low, **kw)
    g_band = gens()
    with BandFile(tmp_path / "x0.f32", x0.shape) as f0, BandFile(tmp_path / "low.f32", x0.shape) as fl:
        f0.write(0, x0)
        fl.write(0, x0)
        out = tiled_boomerang(model, f0, plan, g_band, consistency_low=fl if ilvr else None, band=band, **kw)
        got = out.read(0, H)
        out.close()
    return want, got, g_mem, g_band


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("scheduler,eta,ilvr,until", [
    ("ddpm", 0.0, True, 0.6),   # fresh noise at every step, ILVR's eps', then unconditioned steps
    ("ddpm", 0.0, True, 1.0),   # ILVR to the end (its final projections)
    ("ddpm", 0.0, False, 1.0),
    ("ddim", 0.7, False, 1.0),  # eta > 0: fresh noise
    ("ddim", 0.0, True, 0.6),
    ("euler", 0.0, True, 0.6),  # sigma space; the scheduler counts its steps
])
def test_banded_tiled_boomerang_equals_the_in_memory_path(tiny_pixel_model, colour_model, tmp_path, channels,
                                                          scheduler, eta, ilvr, until):
    model = tiny_pixel_model if channels == 1 else colour_model
    want, got, g_mem, g_band = _both_paths(model, tmp_path, scheduler=scheduler, eta=eta, ilvr=ilvr, batch=2,
                                           until=until)
    assert got.dtype == want.dtype and got.numpy().tobytes() == want.numpy().tobytes()
    for a, b in zip(g_mem, g_band):  # and the generators end where they did
        assert torch.equal(a.get_state(), b.get_state())


def test_a_changed_noise_order_is_caught(tiny_pixel_model, colour_model, tmp_path, monkeypatch):
    """The comparison above is sensitive to the order of the draw: drawing each band's channels
    one after the other (band-major, not the whole draw's channel-major order) changes the output."""
    want, got, _, _ = _both_paths(colour_model, tmp_path, scheduler="ddpm", ilvr=True, until=0.6)
    assert torch.equal(want, got)
    monkeypatch.setattr(NoiseCursors, "generators", lambda self, c: self.cursors[0])
    want, got, _, _ = _both_paths(colour_model, tmp_path, scheduler="ddpm", ilvr=True, until=0.6)
    assert not torch.equal(want, got)


def _count_bounded(monkeypatch) -> list:
    calls = []
    real = bounded_module.enhance_bounded
    monkeypatch.setattr(bounded_module, "enhance_bounded", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


@pytest.mark.parametrize("channels,scale,consistency", [(1, 1, True), (3, 1, True), (3, 2, False), (1, 2, True),
                                                        (3, 2, True), (1, 4, True)])
def test_enhance_images_bounded_path_same_bytes(tiny_pixel_model, colour_model, monkeypatch, channels, scale,
                                                consistency):
    model = tiny_pixel_model if channels == 1 else colour_model
    side = (40, 48) if scale == 4 else (20, 24)  # ILVR's halo (8 input rows) spans several bands of 2-4 rows
    img = np.random.default_rng(7).uniform(0, 1, (side[0] // scale, side[1] // scale, channels)).astype(np.float32)
    kw = dict(scale=scale, level=0.4, steps=10, consistency=consistency, consistency_until=0.6)
    calls = _count_bounded(monkeypatch)
    monkeypatch.setattr(banded, "BANDED_MIN_PIXELS", 10 ** 9)
    mem = enhance_image(model, img, generator=torch.Generator().manual_seed(2), **kw)
    assert not calls
    monkeypatch.setattr(banded, "BANDED_MIN_PIXELS", 0)
    monkeypatch.setattr(banded, "BAND_ROWS", 2)
    bounded = enhance_image(model, img, generator=torch.Generator().manual_seed(2), **kw)
    assert calls  # the bounded path ran
    assert bounded.pixels.tobytes() == mem.pixels.tobytes()
    assert np.asarray(bounded.upsampled).tobytes() == mem.upsampled.tobytes()


@pytest.mark.parametrize("scheduler,scale", [("ddpm", 1), ("ddim", 1), ("ddpm", 2)])
def test_enhance_command_bounded_path_same_png_bytes(tiny_pixel_dir, tiny_colour_pixel_dir, tmp_path, monkeypatch,
                                                     capsys, scheduler, scale):
    from PIL import Image

    from _helpers import run_cli

    calls, made = _count_bounded(monkeypatch), []
    real_tmp = bounded_module.tempfile.TemporaryDirectory
    monkeypatch.setattr(bounded_module.tempfile, "TemporaryDirectory",
                        lambda *a, **k: made.append(k.get("dir")) or real_tmp(*a, **k))
    for name, model, mode, shape in (("gray", tiny_pixel_dir, "L", (20 // scale, 24 // scale)),
                                     ("rgb", tiny_colour_pixel_dir, "RGB", (20 // scale, 24 // scale, 3))):
        src = tmp_path / f"{name}.png"
        Image.fromarray(np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8), mode).save(src)
        outs = {}
        for path, threshold in (("memory", 10 ** 9), ("bounded", 0)):
            monkeypatch.setattr(banded, "BANDED_MIN_PIXELS", threshold)
            monkeypatch.setattr(banded, "BAND_ROWS", 4)
            out = tmp_path / f"{name}-{path}"
            rc, err = run_cli(["enhance", src, "--out", out, "--model", model, "--scale", scale, "--level", "0.4",
                               "--steps", "10", "--scheduler", scheduler, "--eta", "0.5", "--consistency-until",
                               "0.6", "--seed", "3"], capsys)
            assert rc == 0, err
            outs[path] = (out / f"{name}.png").read_bytes()
            assert len(calls) == (path == "bounded")
            assert made == ([out / ".job" / "scratch"] if path == "bounded" else [])  # on the output's disk, private
            assert not list((out / ".job").rglob("enhance-bands-*"))  # and gone
            calls.clear()
            made.clear()
        assert outs["bounded"] == outs["memory"]


def test_ilvr_at_scale_3_keeps_the_in_memory_path(tiny_pixel_model, monkeypatch):
    """A scale that is not a power of two: the bicubic lift would round differently on a band."""
    calls = _count_bounded(monkeypatch)
    monkeypatch.setattr(banded, "BANDED_MIN_PIXELS", 0)
    img = np.random.default_rng(7).uniform(0, 1, (8, 8, 1)).astype(np.float32)
    enhance_image(tiny_pixel_model, img, scale=3, level=0.4, steps=10, consistency=True,
                  generator=torch.Generator().manual_seed(2))
    assert not calls
    enhance_image(tiny_pixel_model, img, scale=3, level=0.4, steps=10, generator=torch.Generator().manual_seed(2))
    assert calls  # without ILVR it is bounded
