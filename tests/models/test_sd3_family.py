"""The SD3 family and the noise level on a flow-matching model, on tiny random-weight components:
img2img equal to diffusers' StableDiffusion3Img2ImgPipeline, the exact level (one training step of the
model's own shifted schedule, noise added at that sigma and that step denoised first; level 0 the VAE
round trip, level 1 pure noise), batch invariance, and ``boomerang sample`` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from boomerang.core import boomerang_sample, plan
from boomerang.errors import SettingError
from boomerang.reverse import per_item_noise
from boomerang.schedulers import make_scheduler
from _helpers import generators as gens


def image(b=1, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(1000 + seed)
    x = torch.rand(b, 3, h, w, generator=g) * 2 - 1
    x[:, :, 0, 0] = -1.0  # a [-1, 1] tensor: the pipeline does not renormalise it
    return x


@pytest.fixture(scope="module")
def sd3(tiny_sd3_dir):
    from boomerang.models import load_model

    return load_model(tiny_sd3_dir)


class Spy:
    """Records (t, x_in) of every denoiser call."""

    def __init__(self, model, monkeypatch):
        self.calls = []
        original = model.predict

        def predict(x_in, t, **kw):
            self.calls.append((float(t), x_in.clone()))
            return original(x_in, t, **kw)

        monkeypatch.setattr(model, "predict", predict)


def test_layout_and_flow_schedule(sd3, tiny_sd3_dir):
    from boomerang.models import read_model_info

    info = read_model_info(tiny_sd3_dir)
    assert (info.family, info.default_scheduler, info.size_multiple, info.space_factor) == ("sd3", "euler", 4, 2)
    s = sd3.schedule
    assert (s.kind, s.prediction_type, s.shift) == ("flow", "flow", 3.0)
    assert s.sigmas[-1] == 1.0 and all(a < b for a, b in zip(s.sigmas, s.sigmas[1:]))
    assert sd3.model_shape((3, 16, 24)) == (16, 8, 12)
    with pytest.raises(ValueError, match="multiples of 4"):
        sd3.model_shape((3, 18, 16))


@pytest.mark.parametrize("strength,guidance,negative", [(0.6, 7.0, "person"), (0.45, 1.0, ""), (1.0, 3.0, ""),
                                                         (0.05, 7.0, "person")])
def test_img2img_equals_sd3_img2img_pipeline(sd3, strength, guidance, negative):
    from diffusers import StableDiffusion3Img2ImgPipeline

    m = sd3
    pipe = StableDiffusion3Img2ImgPipeline(
        transformer=m.transformer, scheduler=make_scheduler("euler", m.scheduler_config), vae=m.vae,
        text_encoder=m.text_encoder, tokenizer=m.tokenizer, text_encoder_2=m.text_encoder_2,
        tokenizer_2=m.tokenizer_2, text_encoder_3=m.text_encoder_3, tokenizer_3=m.tokenizer_3,
    )
    pipe.set_progress_bar_config(disable=True)
    x = image(2, 16, 24)
    with pytest.warns(FutureWarning):
        ref = pipe(prompt=["cat"] * 2, negative_prompt=[negative] * 2 if negative else None, image=x, height=16,
                   width=24, strength=strength, num_inference_steps=10, guidance_scale=guidance,
                   generator=gens(range(2), 50), output_type="pt").images
    out = boomerang_sample(m, x, generators=gens(range(2), 50), level=strength, schedule="img2img", steps=10,
                           prompt="cat", negative_prompt=negative, guidance_scale=guidance)
    torch.testing.assert_close(out.samples, ref * 2 - 1, atol=1e-5, rtol=0)
    sched = make_scheduler("euler", m.scheduler_config)
    sched.set_timesteps(10)
    t_start = int(max(10 - 10 * strength, 0))  # the SD3 / FLUX img2img rule: any strength > 0 keeps a step
    assert out.plan.timesteps == tuple(float(t) for t in sched.timesteps[t_start:])
    assert out.plan.sigma == pytest.approx(float(sched.sigmas[t_start]))


@pytest.mark.parametrize("level", [0.05, 0.37, 0.8, 1.0])
def test_exact_level_is_one_training_step_of_the_shifted_schedule(sd3, monkeypatch, level):
    m = sd3
    spy = Spy(m, monkeypatch)
    x = image(2)
    p = plan(m, level=level, steps=8)
    k = round(level * 999)
    # sigma is the model's own shifted sigma of training step k, the model timestep T sigma
    assert p.sigma == pytest.approx(m.schedule.sigma(k), abs=1e-6) and p.timestep == pytest.approx(1000 * p.sigma)
    assert p.alpha_bar is None and p.start_snr == (pytest.approx(((1 - p.sigma) / p.sigma) ** 2) if p.sigma < 1 else 0.0)
    out = boomerang_sample(m, x, p, generators=gens(range(2), 7), prompt="cat", guidance_scale=3.0)
    assert [t for t, _ in spy.calls] == list(p.timesteps) == list(out.plan.timesteps) and p.timesteps[0] == p.timestep
    z0 = m.encode(x)
    eps = per_item_noise(gens(range(2), 7), tuple(z0.shape[1:]), "cpu")
    # noise added at exactly that sigma (x_t = (1 - sigma) x0 + sigma eps), that step denoised first
    torch.testing.assert_close(spy.calls[0][1], (1 - p.sigma) * z0 + p.sigma * eps, atol=1e-6, rtol=1e-6)
    if level == 1.0:
        assert p.sigma == 1.0 and torch.equal(spy.calls[0][1], eps)  # level 1: pure noise, nothing of x0 left


def test_level_0_is_the_vae_round_trip_and_a_timestep_maps_to_its_training_step(sd3, monkeypatch):
    m = sd3
    spy = Spy(m, monkeypatch)
    x = image(1)
    out = boomerang_sample(m, x, generators=gens([0]), level=0.0, steps=8)
    assert spy.calls == [] and out.plan.timestep is None and out.plan.start_snr is None
    torch.testing.assert_close(out.samples, m.decode(m.encode(x)).clamp(-1, 1), atol=0, rtol=0)
    p = plan(m, timestep=400, steps=8)
    assert p.sigma == pytest.approx(m.schedule.sigma(400), abs=1e-6)


def test_flow_model_refuses_ddpm_schedulers_and_the_reference_schedule(sd3):
    with pytest.raises(SettingError, match="flow-matching model takes euler"):
        plan(sd3, level=0.5, scheduler="ddpm")
    with pytest.raises(SettingError, match="reference"):
        plan(sd3, level=0.5, schedule="reference")


def test_batch_size_and_order_never_change_a_sample(sd3):
    m = sd3
    x = image(3, seed=3)
    kw = dict(level=0.6, steps=6, prompt="cat", negative_prompt="person", guidance_scale=4.0)
    full = boomerang_sample(m, x, generators=gens(range(3)), **kw).samples
    for i in range(3):
        assert torch.equal(boomerang_sample(m, x[i:i + 1], generators=gens([i]), **kw).samples[0], full[i])
    rev = boomerang_sample(m, x.flip(0), generators=gens([2, 1, 0]), **kw).samples
    assert torch.equal(rev.flip(0), full)


def test_cli_sample_on_sd3_records_sigma_and_start_snr(tiny_sd3_dir, tmp_path):
    from boomerang.cli import main

    src = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 16, 3), dtype=np.uint8)).save(src)
    out = tmp_path / "out"
    rc = main(["sample", str(src), "--model", str(tiny_sd3_dir), "--level", "0,0.4,1", "--num-samples", "1",
               "--steps", "5", "--prompt", "cat", "--out", str(out)])
    assert rc == 0
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["model"]["family"] == "sd3"
    by_level = {rec["level"]: rec for rec in meta["samples"]}
    assert by_level[0.0]["timestep"] is None and by_level[0.0]["start_snr"] is None
    rec = by_level[0.4]
    assert rec["scheduler"] == "euler" and rec["alpha_bar"] is None and 0 < rec["sigma"] < 1
    assert rec["timestep"] == pytest.approx(1000 * rec["sigma"]) and rec["start_snr"] == pytest.approx(
        ((1 - rec["sigma"]) / rec["sigma"]) ** 2)
    assert by_level[1.0]["sigma"] == 1.0 and by_level[1.0]["start_snr"] == 0.0
    for r in meta["samples"]:
        assert Image.open(out / r["file"]).size == (16, 20)


def test_stochastic_flow_process_draws_from_each_items_generator(sd3, monkeypatch):
    """``euler-stochastic`` (diffusers' stochastic_sampling): same start as euler (the same x_t at the same
    sigma, denoised first), then a fresh draw at each next sigma from the item's generator: reproducible
    per seed, batch invariant, and unlike the deterministic flow ODE."""
    m = sd3
    x = image(3, seed=5)
    kw = dict(level=0.7, steps=6, prompt="cat", guidance_scale=1.0)
    spy = Spy(m, monkeypatch)
    ode = boomerang_sample(m, x, generators=gens(range(3)), scheduler="euler", **kw)
    first_ode = spy.calls[0]
    spy.calls.clear()
    sde = boomerang_sample(m, x, generators=gens(range(3)), scheduler="euler-stochastic", **kw)
    assert sde.plan.timesteps == ode.plan.timesteps and sde.plan.sigma == ode.plan.sigma
    assert spy.calls[0][0] == first_ode[0] and torch.equal(spy.calls[0][1], first_ode[1])
    assert not torch.allclose(sde.samples, ode.samples, atol=1e-3)
    again = boomerang_sample(m, x[1:2], generators=gens([1]), scheduler="euler-stochastic", **kw)
    assert torch.equal(again.samples[0], sde.samples[1])
    with pytest.raises(SettingError, match="offered on flow-matching models"):  # not on a DDPM-type model
        plan({"_class_name": "DDPMScheduler", "num_train_timesteps": 1000}, level=0.5, scheduler="euler-stochastic")


def test_the_api_reports_sigma_and_start_snr(sd3):
    from PIL import Image

    from boomerang import api
    from boomerang.settings import SampleSettings

    im = Image.fromarray(np.zeros((16, 16, 3), np.uint8))
    job = api.prepare([im], SampleSettings(level=(0.0, 0.4), prompt="cat", num_samples=1, steps=2), model=sd3)
    zero, s = list(api.run(job))
    assert zero.sigma == 0.0 and zero.start_snr is None
    assert s.alpha_bar is None and s.sigma == pytest.approx(sd3.schedule.sigma(round(0.4 * 999)), abs=1e-6)
    assert s.timestep == pytest.approx(1000 * s.sigma) and s.start_snr == pytest.approx(((1 - s.sigma) / s.sigma) ** 2)
