"""The FLUX.1 family on tiny random-weight components: img2img equal to diffusers' FluxImg2ImgPipeline
(guidance-distilled and schnell-like), the exact level on the size-dependent (dynamically shifted)
schedule, packed tokens with their image ids, batch invariance, and ``boomerang sample`` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from boomerang.core import boomerang_sample, plan
from boomerang.reverse import per_item_noise
from boomerang.schedulers import make_scheduler
from _helpers import generators as gens


def image(b=1, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(1000 + seed)
    x = torch.rand(b, 3, h, w, generator=g) * 2 - 1
    x[:, :, 0, 0] = -1.0  # a [-1, 1] tensor: the pipeline does not renormalise it
    return x


@pytest.fixture(scope="module")
def flux(tiny_flux_dir):
    from boomerang.models import load_model

    return load_model(tiny_flux_dir)


@pytest.fixture(scope="module")
def schnell(tmp_path_factory):
    from boomerang.models import load_model
    from boomerang.testing.tiny_families import make_tiny_flux

    return load_model(make_tiny_flux(tmp_path_factory.mktemp("models") / "tiny_flux_schnell", guidance_embeds=False))


def test_size_dependent_schedule(flux, tiny_flux_dir):
    from boomerang.models import read_model_info

    info = read_model_info(tiny_flux_dir)
    assert (info.family, info.default_scheduler, info.size_multiple) == ("flux", "euler", 4)
    small, large = flux.schedule_for((3, 16, 16)), flux.schedule_for((3, 64, 96))
    assert flux.token_count((3, 64, 96)) == 16 * 24 and small.mu < large.mu
    assert small.sigmas[-1] == pytest.approx(1.0) and all(a < b for a, b in zip(small.sigmas[:-1], large.sigmas[:-1]))
    # items of different sizes get their own plans
    p_small, p_large = plan(flux, level=0.5, steps=6, image_shape=(3, 16, 16)), plan(flux, level=0.5, steps=6,
                                                                                     image_shape=(3, 64, 96))
    assert p_small.mu == small.mu and p_large.mu == large.mu and p_large.sigma > p_small.sigma
    with pytest.raises(ValueError, match="depends on the image's size"):
        plan(flux.scheduler_config, level=0.5)


@pytest.mark.parametrize("which,strength,guidance", [("dev", 0.6, 3.5), ("dev", 1.0, 1.0), ("dev", 0.05, 5.0),
                                                     ("schnell", 0.75, 0.0)])
def test_img2img_equals_flux_img2img_pipeline(flux, schnell, which, strength, guidance):
    from diffusers import FluxImg2ImgPipeline

    m = flux if which == "dev" else schnell
    pipe = FluxImg2ImgPipeline(
        transformer=m.transformer, scheduler=make_scheduler("euler", m.scheduler_config), vae=m.vae,
        text_encoder=m.text_encoder, tokenizer=m.tokenizer, text_encoder_2=m.text_encoder_2, tokenizer_2=m.tokenizer_2,
    )
    pipe.set_progress_bar_config(disable=True)
    x = image(2, 16, 24)
    with pytest.warns(FutureWarning):
        ref = pipe(prompt=["cat"] * 2, image=x, height=16, width=24, strength=strength, num_inference_steps=8,
                   guidance_scale=guidance, generator=gens(range(2), 50), output_type="pt").images
    out = boomerang_sample(m, x, generators=gens(range(2), 50), level=strength, schedule="img2img", steps=8,
                           prompt="cat", guidance_scale=guidance)
    torch.testing.assert_close(out.samples, ref * 2 - 1, atol=1e-5, rtol=0)
    assert out.plan.mu == pytest.approx(m.shift_mu((3, 16, 24)))


@pytest.mark.parametrize("level", [0.1, 0.5, 1.0])
def test_exact_level_on_the_dynamically_shifted_schedule(flux, monkeypatch, level):
    m = flux
    calls = []
    original = m.predict

    def predict(x_in, t, **kw):
        calls.append((float(t), x_in.clone()))
        return original(x_in, t, **kw)

    monkeypatch.setattr(m, "predict", predict)
    x = image(2, 16, 24)
    out = boomerang_sample(m, x, generators=gens(range(2), 7), level=level, steps=6, prompt="cat", guidance_scale=3.5)
    p = out.plan
    k = round(level * 999)
    assert p.sigma == pytest.approx(m.schedule_for((3, 16, 24)).sigma(k), abs=1e-6)
    assert [t for t, _ in calls] == list(p.timesteps) and p.timesteps[0] == p.timestep == pytest.approx(1000 * p.sigma)
    z0 = m.encode(x)
    eps = per_item_noise(gens(range(2), 7), tuple(z0.shape[1:]), "cpu")
    torch.testing.assert_close(calls[0][1], (1 - p.sigma) * z0 + p.sigma * eps, atol=1e-6, rtol=1e-6)


def test_a_window_gets_the_image_ids_of_its_place_in_the_whole_image(flux):
    from boomerang.models import Region

    m = flux
    x = torch.randn(1, 16, 8, 12)
    cond, uncond = m.encode_prompt("cat")
    whole = m.predict(x, torch.tensor(500.0), cond=cond, uncond=uncond, guidance_scale=3.5)
    window = m.predict(x[..., 4:8, 4:12], torch.tensor(500.0), cond=cond, uncond=uncond, guidance_scale=3.5,
                       region=Region(4, 4, 8, 12))
    plain = m.predict(x[..., 4:8, 4:12], torch.tensor(500.0), cond=cond, uncond=uncond, guidance_scale=3.5)
    assert window.shape == (1, 16, 4, 8) and not torch.equal(window, plain)  # the ids (rope positions) count
    assert torch.isfinite(whole).all()


def test_batch_size_and_order_never_change_a_sample(flux):
    x = image(3, seed=3)
    kw = dict(level=0.6, steps=5, prompt="cat", guidance_scale=3.5)
    full = boomerang_sample(flux, x, generators=gens(range(3)), **kw).samples
    for i in range(3):
        assert torch.equal(boomerang_sample(flux, x[i:i + 1], generators=gens([i]), **kw).samples[0], full[i])
    rev = boomerang_sample(flux, x.flip(0), generators=gens([2, 1, 0]), **kw).samples
    assert torch.equal(rev.flip(0), full)


def test_cli_sample_plans_each_image_size_on_its_own(tiny_flux_dir, tmp_path):
    from boomerang.cli import main

    rng = np.random.default_rng(0)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(a)
    Image.fromarray(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(b)
    out = tmp_path / "out"
    rc = main(["sample", str(a), str(b), "--model", str(tiny_flux_dir), "--level", "0.5", "--num-samples", "1",
               "--steps", "4", "--prompt", "cat", "--guidance-scale", "3.5", "--out", str(out)])
    assert rc == 0
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["model"]["family"] == "flux"
    recs = sorted(meta["samples"], key=lambda r: r["image_index"])
    from boomerang.models import load_model

    m = load_model(tiny_flux_dir)
    for rec, shape in zip(recs, [(3, 16, 16), (3, 32, 48)]):
        assert rec["sigma"] == pytest.approx(m.schedule_for(shape).sigma(round(0.5 * 999)), abs=1e-6)
        assert rec["timestep"] == pytest.approx(1000 * rec["sigma"]) and rec["scheduler"] == "euler"
    assert recs[1]["sigma"] > recs[0]["sigma"]  # the larger image: more tokens, a larger shift
