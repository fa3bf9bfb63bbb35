"""Perceptual resolution enhancement (issue 11): tiling, consistency, colour fix, sizes.

Tiling is tested as properties: with a stand-in denoiser that acts pixel by
pixel, a tiled run equals the untiled run everywhere (blending adds no bias,
borders included); with a real (tiny) UNet the result does not depend on the
window order or the window batch. A context-dependent stand-in shows the
equality test can fail.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from boomerang.core import plan as make_plan
from boomerang.enhance import check_enhance_args, output_size
from boomerang.enhance.colour import colour_fix, gaussian_blur
from boomerang.enhance.image import enhance_image, enhance_images, window_settings
from boomerang.enhance.resample import area_down, nearest_up
from boomerang.enhance.sampler import tiled_boomerang
from boomerang.enhance.tiling import make_layout, tile_starts
from boomerang.imageio import read_image
from _helpers import generators

CASES = Path("/work/shared/cases/images")
if not CASES.is_dir():
    CASES = Path(__file__).parents[1] / "data" / "cases"


class _StandIn:
    """A duck-typed pixel model whose denoiser is ``fn(x_in, t)``; encode/decode are the identity."""

    kind = "pixel"
    pixel_space = True
    space_factor = 1
    image_channels = 1
    prediction_channels = 1
    size_multiple = 1
    num_train_timesteps = 1000
    device = torch.device("cpu")
    unet = None

    def __init__(self, fn, native_size=8):
        from diffusers import DDPMScheduler

        self.fn = fn
        self.native_size = native_size
        self.scheduler_config = dict(DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").config)
        self.calls = 0

    def predict(self, x_in, t, **_):
        self.calls += 1
        return self.fn(x_in, int(t))

    def encode(self, x, generators=None):
        return x.float()

    def decode(self, z):
        return z.float().cpu()

    def encode_prompt(self, *a, **k):
        return None, None


def _pixelwise(x, t):
    return torch.tanh(0.8 * x + 1e-3 * t) - 0.1 * x**3


def _blur(x, t):  # depends on neighbours: windows see different context at their edges
    k = torch.full((x.shape[1], 1, 3, 3), 1 / 9)
    return torch.nn.functional.conv2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=x.shape[1])


def _x0(b=2, h=21, w=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((b, 1, h, w), generator=g) * 1.8 - 0.9


def _plan(level=0.4, scheduler="ddpm", steps=20):
    """The exact plan ``boomerang sample`` makes (boomerang.core.plan) for the stand-in's schedule."""
    return make_plan(_StandIn(_pixelwise).scheduler_config, level=level, scheduler=scheduler, steps=steps)


PLAN = _plan()


# ----------------------------------------------------------------------------- windows


def test_tile_starts_cover_and_overlap():
    for length in (8, 9, 21, 30, 224, 225):
        for tile, overlap in ((8, 0), (8, 3), (8, 7), (28, 7), (28, 14)):
            starts = tile_starts(length, tile, overlap)
            assert starts[0] == 0 and starts[-1] + min(tile, length) == length
            gaps = [b - a for a, b in zip(starts, starts[1:])]
            assert all(tile - g >= overlap for g in gaps)  # neighbours overlap by >= overlap
    assert tile_starts(5, 8, 2) == [0]
    with pytest.raises(ValueError, match="tile_overlap"):
        tile_starts(30, 8, 8)


# ----------------------------------------------------------------------------- tiling properties


@pytest.mark.parametrize("scheduler", ["ddpm", "ddim", "dpmsolver++", "euler"])
@pytest.mark.parametrize("weighting", ["uniform", "feather"])
def test_tiled_equals_untiled_for_a_pixelwise_denoiser(scheduler, weighting):
    model = _StandIn(_pixelwise)
    x0 = _x0()
    plan = _plan(level=0.3, scheduler=scheduler)
    untiled = tiled_boomerang(model, x0, plan, generators(range(2)), tile=64, overlap=0)
    assert model.calls == plan.num_denoiser_evals  # one window: the whole image
    tiled = tiled_boomerang(model, x0, plan, generators(range(2)), tile=8, overlap=3, weighting=weighting)
    torch.testing.assert_close(tiled, untiled, atol=2e-6, rtol=0)  # everywhere, borders included
    assert (tiled - untiled)[..., 0, :].abs().max() <= 2e-6 and (tiled - untiled)[..., :, -1].abs().max() <= 2e-6


def test_tiled_equals_untiled_with_consistency():
    model = _StandIn(_pixelwise)
    x0 = _x0(h=24, w=32)
    low = area_down(x0, (6, 8))
    untiled = tiled_boomerang(model, x0, PLAN, generators(range(2)), tile=64, overlap=0, consistency_low=low)
    tiled = tiled_boomerang(model, x0, PLAN, generators(range(2)), tile=8, overlap=2, consistency_low=low)
    torch.testing.assert_close(tiled, untiled, atol=2e-6, rtol=0)


def test_equality_test_can_fail_for_a_context_dependent_denoiser():
    model = _StandIn(_blur)
    x0 = _x0()
    untiled = tiled_boomerang(model, x0, _plan(scheduler="ddim"), generators(range(2)), tile=64, overlap=0)
    tiled = tiled_boomerang(model, x0, _plan(scheduler="ddim"), generators(range(2)), tile=8, overlap=3)
    assert (tiled - untiled).abs().max() > 1e-3


def test_window_order_and_batch_do_not_change_the_result(tiny_pixel_model):
    x0 = _x0(b=2, h=19, w=27, seed=3)
    layout = make_layout(19, 27, 8, 3)
    n = len(layout)
    assert n > 6
    ref = tiled_boomerang(tiny_pixel_model, x0, PLAN, generators(range(2), base=7), tile=8, overlap=3, tile_batch=1)
    for batch in (3, n):
        out = tiled_boomerang(tiny_pixel_model, x0, PLAN, generators(range(2), base=7), tile=8, overlap=3, tile_batch=batch)
        assert torch.equal(out, ref), batch
    order = list(torch.randperm(n, generator=torch.Generator().manual_seed(0)))
    out = tiled_boomerang(tiny_pixel_model, x0, PLAN, generators(range(2), base=7), tile=8, overlap=3, tile_batch=4, order=order)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)


def test_a_sample_depends_only_on_its_generator(tiny_pixel_model):
    x0 = _x0(b=3, h=12, w=12, seed=1)
    both = tiled_boomerang(tiny_pixel_model, x0, PLAN, generators(range(3), base=5), tile=8, overlap=4)
    alone = tiled_boomerang(tiny_pixel_model, x0[1:2], PLAN, generators(range(3), base=5)[1:2], tile=8, overlap=4)
    assert torch.equal(both[1:2], alone)


# ----------------------------------------------------------------------------- consistency (ILVR)


def test_low_pass_pair_is_a_projection_for_integer_scales():
    z = torch.randn(2, 3, 5, 7)
    torch.testing.assert_close(area_down(nearest_up(z, (20, 28)), (5, 7)), z, atol=1e-6, rtol=0)


def _grey_oracle(x, t):
    """eps that makes DDPM's x0 estimate exactly 0 (mid-grey): eps = x_t / sqrt(1 - alpha_bar_t)."""
    from diffusers import DDPMScheduler

    ab = float(DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").alphas_cumprod[t])
    return x / (1 - ab) ** 0.5


def _down_error(pixels, img):
    h, w = img.shape
    down = area_down(torch.from_numpy(pixels[None]).permute(0, 3, 1, 2), (h, w))[0, 0].numpy()
    return np.abs(down - img)


@pytest.mark.parametrize("scale", [4, 3])
def test_consistency_downsampled_output_gives_back_the_input(scale):
    # The stand-in denoiser predicts a grey image whatever the input: only ILVR can bring the input back.
    model = _StandIn(_grey_oracle)
    img = np.random.default_rng(0).uniform(0.05, 0.95, size=(5, 6)).astype(np.float32)
    kw = dict(scale=scale, level=0.4, steps=20, generator=torch.Generator().manual_seed(0))
    on = enhance_image(model, img, consistency=True, **kw)
    off = enhance_image(model, img, consistency=False, **kw)
    assert on.pixels.shape == (5 * scale, 6 * scale, 1)
    assert _down_error(on.pixels, img).max() < 1e-4
    assert _down_error(off.pixels, img).max() > 0.1  # without ILVR: grey


def test_consistency_pulls_a_real_unet_towards_the_input(tiny_pixel_model):
    img = np.random.default_rng(0).uniform(0.2, 0.8, size=(5, 6)).astype(np.float32)
    kw = dict(scale=4, level=0.4, steps=20, generator=torch.Generator().manual_seed(0))
    on = enhance_image(tiny_pixel_model, img, consistency=True, **kw)
    off = enhance_image(tiny_pixel_model, img, consistency=False, **kw)
    # the random UNet saturates pixels, and the final clamp to [0, 1] limits exactness
    assert _down_error(on.pixels, img).mean() < 0.2 * _down_error(off.pixels, img).mean()


def test_consistency_fractional_scale_is_close():
    rng = np.random.default_rng(1)
    img = rng.uniform(0.2, 0.8, size=(6, 6)).astype(np.float32)
    out = enhance_image(_StandIn(_grey_oracle), img, scale=2.5, level=0.4, generator=torch.Generator().manual_seed(0),
                        steps=20, consistency=True)
    assert out.pixels.shape == (15, 15, 1)
    assert _down_error(out.pixels, img).mean() < 0.02


# ----------------------------------------------------------------------------- colour fix


def test_colour_fix_removes_a_low_frequency_shift_and_keeps_detail():
    g = torch.Generator().manual_seed(0)
    ref = gaussian_blur(torch.rand((1, 3, 32, 32), generator=g), 3.0)
    detail = torch.randn((1, 3, 32, 32), generator=g) * 0.05
    x = ref + detail + torch.tensor([0.2, -0.1, 0.05]).view(1, 3, 1, 1)  # a colour cast
    out = colour_fix(x, ref, sigma=4.0)
    cast = (out - ref).mean(dim=(2, 3)).abs().max()
    assert cast < 0.01 and (x - ref).mean(dim=(2, 3)).abs().max() > 0.04
    high = lambda a: a - gaussian_blur(a, 4.0)  # noqa: E731
    torch.testing.assert_close(high(out)[..., 8:-8, 8:-8], high(x)[..., 8:-8, 8:-8], atol=0.02, rtol=0)


def test_colour_fix_option_runs(tiny_pixel_model):
    img = np.random.default_rng(2).uniform(0, 1, (4, 4)).astype(np.float32)
    a = enhance_image(tiny_pixel_model, img, scale=4, level=0.3, generator=torch.Generator().manual_seed(0), steps=10)
    b = enhance_image(tiny_pixel_model, img, scale=4, level=0.3, generator=torch.Generator().manual_seed(0), steps=10,
                      colour_fix=True)
    assert a.pixels.shape == b.pixels.shape == (16, 16, 1) and not np.array_equal(a.pixels, b.pixels)
    blur = lambda p: gaussian_blur(torch.from_numpy(p[None]).permute(0, 3, 1, 2), 4.0)  # noqa: E731
    up = blur(a.upsampled)
    assert (blur(b.pixels) - up).abs().mean() < (blur(a.pixels) - up).abs().mean()


# ----------------------------------------------------------------------------- sizes, cases, parameters


def test_output_size_is_round_half_up():
    assert output_size(7, 7, 4) == (28, 28)
    assert output_size(28, 28, 8) == (224, 224)
    assert output_size(5, 3, 2.5) == (13, 8)  # 12.5 -> 13, 7.5 -> 8
    assert output_size(427, 640, 1.5) == (641, 960)
    assert output_size(1, 1, 1) == (1, 1)


@pytest.mark.parametrize("kwargs,name", [
    (dict(scale=0.5), "scale"), (dict(scale=float("nan")), "scale"), (dict(scale="x"), "scale"),
    (dict(level=1.5), "level"), (dict(tile_size=4), "tile_size"), (dict(tile_overlap=-1), "tile_overlap"),
    (dict(tile_size=16, tile_overlap=16), "tile_overlap"), (dict(tile_batch=0), "tile_batch"),
    (dict(upsampler="nearest"), "upsampler"),
])
def test_bad_parameters_name_themselves(kwargs, name):
    args = dict(scale=4, level=0.2) | kwargs
    with pytest.raises(ValueError, match=name):
        check_enhance_args(**args)


def test_pixel_model_tile_size_must_be_native(tiny_pixel_model):
    assert window_settings(tiny_pixel_model, None, None) == (8, 2)
    with pytest.raises(ValueError, match="tile_size must be the model's native size 8"):
        window_settings(tiny_pixel_model, 16, None)


def test_level_zero_returns_the_upsampled_image_without_a_model_call(tiny_pixel_model):
    img = np.random.default_rng(3).uniform(0, 1, (5, 7, 3)).astype(np.float32)
    calls = tiny_pixel_model.unet_calls
    out = enhance_image(tiny_pixel_model, img, scale=3, level=0.0, generator=torch.Generator().manual_seed(0))
    assert tiny_pixel_model.unet_calls == calls
    assert out.pixels.shape == (15, 21, 1)
    np.testing.assert_array_equal(out.pixels, out.upsampled)


@pytest.mark.parametrize("name,scale,shape", [
    ("odd_427x640.png", 1.25, (534, 800)),
    ("exif_rotate6.jpg", 2, (80, 40)),  # read upright: 20 wide x 40 high
    ("rgba_hidden_red.png", 2, None),
    ("gray16_ramp.png", 2, None),
    ("tiny_1x1.png", 4, (4, 4)),
])
def test_image_cases_give_exact_sizes(tiny_pixel_model, name, scale, shape):
    loaded = read_image(CASES / name)
    h, w = loaded.pixels.shape[:2]
    expect = shape or output_size(h, w, scale)
    level = 0.0 if h * w > 10_000 else 0.2  # the large case checks sizes only (no model call)
    out = enhance_image(tiny_pixel_model, loaded.pixels, scale=scale, level=level, steps=10,
                        generator=torch.Generator().manual_seed(0))
    assert out.pixels.shape[:2] == expect
    assert np.isfinite(out.pixels).all() and out.pixels.min() >= 0 and out.pixels.max() <= 1
    if name == "gray16_ramp.png":  # scaled by 65535: the upsampled ramp stays a ramp, nothing clips to white
        row = out.upsampled[out.upsampled.shape[0] // 2, :, 0]
        assert row[0] < 0.05 and row[-1] > 0.95 and np.all(np.diff(row) >= -1e-4)


def test_rgb_model_never_sees_the_hidden_red(tmp_path):
    from _tiny import make_tiny_pixel_model

    from boomerang.models import load_model

    model = load_model(make_tiny_pixel_model(tmp_path / "rgb", channels=3))
    loaded = read_image(CASES / "rgba_hidden_red.png")
    out = enhance_image(model, loaded.pixels, scale=2, level=0.0, generator=torch.Generator().manual_seed(0))
    px = out.pixels
    assert px.shape[-1] == 3
    assert not np.any((px[..., 0] > 0.6) & (px[..., 1] < 0.4) & (px[..., 2] < 0.4))  # no red pixel


def test_latent_model_is_encoded_denoised_and_decoded_in_windows(tiny_sd_model):
    img = np.random.default_rng(4).uniform(0, 1, (13, 19, 3)).astype(np.float32)
    calls = tiny_sd_model.unet_calls
    out = enhance_image(tiny_sd_model, img, scale=2, level=0.3, steps=10, tile_size=16, tile_overlap=4,
                        generator=torch.Generator().manual_seed(0), scheduler="ddim", guidance_scale=1.0,
                        consistency=True, colour_fix=True)
    assert out.pixels.shape == (26, 38, 3) and np.isfinite(out.pixels).all()
    assert out.num_windows > 1
    assert tiny_sd_model.unet_calls - calls == out.plan.num_denoiser_evals * -(-out.num_windows // 8)


def test_several_samples_of_one_image(tiny_pixel_model):
    img = np.random.default_rng(5).uniform(0, 1, (4, 4)).astype(np.float32)
    outs = enhance_images(tiny_pixel_model, [img, img], scale=3, level=0.3, steps=10, generators=generators(range(2)))
    assert not np.array_equal(outs[0].pixels, outs[1].pixels)
    one = enhance_image(tiny_pixel_model, img, scale=3, level=0.3, steps=10, generator=generators(range(2))[1])
    np.testing.assert_array_equal(one.pixels, outs[1].pixels)
