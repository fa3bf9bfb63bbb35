"""The SDXL family (base and refiner layouts) on tiny random-weight components: img2img equal to
diffusers' StableDiffusionXLImg2ImgPipeline, the exact schedule's noise placement, batch invariance,
and ``boomerang sample`` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from boomerang.core import boomerang_sample
from boomerang.reverse import per_item_noise
from boomerang.schedulers import make_scheduler
from _helpers import generators as gens


def image(b=1, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(1000 + seed)
    x = torch.rand(b, 3, h, w, generator=g) * 2 - 1
    x[:, :, 0, 0] = -1.0  # a [-1, 1] tensor: the pipelines do not renormalise it
    return x


@pytest.fixture(scope="module")
def sdxl(tiny_sdxl_dir):
    from boomerang.models import load_model

    return load_model(tiny_sdxl_dir)


@pytest.fixture(scope="module")
def refiner(tiny_sdxl_refiner_dir):
    from boomerang.models import load_model

    return load_model(tiny_sdxl_refiner_dir)


def _pipe(m, scheduler):
    from diffusers import StableDiffusionXLImg2ImgPipeline

    pipe = StableDiffusionXLImg2ImgPipeline(
        vae=m.vae, text_encoder=m.text_encoder, text_encoder_2=m.text_encoder_2, tokenizer=m.tokenizer,
        tokenizer_2=m.tokenizer_2, unet=m.unet, scheduler=make_scheduler(scheduler, m.scheduler_config),
        requires_aesthetics_score=m.refiner, force_zeros_for_empty_prompt=m.force_zeros_for_empty_prompt,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_layouts_are_read_from_the_folders(sdxl, refiner, tiny_sdxl_dir):
    from boomerang.models import read_model_info

    info = read_model_info(tiny_sdxl_dir)
    assert (info.family, info.default_scheduler, info.takes_prompt, info.space_factor) == ("sdxl", "euler", True, 2)
    assert not sdxl.refiner and sdxl.text_encoder is not None and sdxl.force_zeros_for_empty_prompt
    assert refiner.refiner and refiner.text_encoder is None and refiner.tokenizer is None
    assert sdxl.time_ids((24, 16)) == [24, 16, 0, 0, 24, 16]
    assert refiner.time_ids((24, 16)) == [24, 16, 0, 0, 6.0] and refiner.time_ids((24, 16), negative=True)[-1] == 2.5


@pytest.mark.parametrize("which,scheduler,strength,guidance,negative", [
    ("base", "euler", 0.6, 7.5, "person"),  # SDXL's own scheduler
    ("base", "euler", 0.45, 5.0, ""),  # no negative prompt: zero unconditional embeddings (force_zeros)
    ("base", "ddim", 1.0, 1.0, ""),
    ("base", "dpmsolver++", 0.75, 7.5, "person"),
    ("refiner", "euler", 0.3, 7.5, "person"),  # aesthetic score 6.0 / 2.5 in the time ids
    ("refiner", "ddpm", 0.5, 3.0, ""),
])
def test_img2img_equals_sdxl_img2img_pipeline(sdxl, refiner, which, scheduler, strength, guidance, negative):
    m = sdxl if which == "base" else refiner
    x = image(2, 16, 24)
    with pytest.warns(FutureWarning):
        ref = _pipe(m, scheduler)(prompt=["cat"] * 2, negative_prompt=[negative] * 2 if negative else None, image=x,
                                  strength=strength, num_inference_steps=10, guidance_scale=guidance,
                                  generator=gens(range(2), 50), output_type="pt").images
    out = boomerang_sample(m, x, generators=gens(range(2), 50), level=strength, schedule="img2img",
                           scheduler=scheduler, steps=10, prompt="cat", negative_prompt=negative,
                           guidance_scale=guidance)
    torch.testing.assert_close(out.samples, ref * 2 - 1, atol=1e-5, rtol=0)
    sched = make_scheduler(scheduler, m.scheduler_config)
    sched.set_timesteps(10)
    init = min(int(10 * strength), 10)
    assert out.plan.timesteps == tuple(int(t) for t in sched.timesteps[10 - init:])


@pytest.mark.parametrize("scheduler", ["euler", "ddpm", "dpmsolver++", "heun"])
def test_exact_schedule_adds_noise_at_the_planned_timestep_and_denoises_it_first(sdxl, monkeypatch, scheduler):
    from boomerang.core import plan

    m = sdxl
    calls = []
    original = m.predict

    def predict(x_in, t, **kw):
        calls.append((float(t), x_in.clone()))
        return original(x_in, t, **kw)

    monkeypatch.setattr(m, "predict", predict)
    x = image(2)
    p = plan(m, level=0.37, scheduler=scheduler, steps=8)
    assert p.timestep == round(0.37 * 999) and p.timesteps[0] == p.timestep
    out = boomerang_sample(m, x, p, generators=gens(range(2), 7), prompt="cat", guidance_scale=3.0)
    assert [int(t) for t, _ in calls] == list(p.timesteps) == list(out.plan.timesteps)
    # the first denoiser input is the forward jump at t itself (in the VP scale, after scale_model_input)
    ab = m.schedule.alpha_bar(p.timestep)
    assert p.alpha_bar == pytest.approx(ab, rel=1e-6) and p.start_snr == pytest.approx(ab / (1 - ab), rel=1e-6)
    z0 = m.encode(x)
    eps = per_item_noise(gens(range(2), 7), tuple(z0.shape[1:]), "cpu")
    torch.testing.assert_close(calls[0][1], ab**0.5 * z0 + (1 - ab) ** 0.5 * eps, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("which", ["base", "refiner"])
def test_batch_size_and_order_never_change_a_sample(sdxl, refiner, which):
    m = sdxl if which == "base" else refiner
    x = image(3, 16, 16, seed=3)
    kw = dict(level=0.6, scheduler="euler", steps=6, prompt="cat", negative_prompt="person", guidance_scale=4.0)
    full = boomerang_sample(m, x, generators=gens(range(3)), **kw).samples
    for i in range(3):
        one = boomerang_sample(m, x[i:i + 1], generators=gens([i]), **kw).samples
        assert torch.equal(one[0], full[i])
    rev = boomerang_sample(m, x.flip(0), generators=gens([2, 1, 0]), **kw).samples
    assert torch.equal(rev.flip(0), full)


def test_cli_sample_on_sdxl_end_to_end(tiny_sdxl_dir, tmp_path):
    from boomerang.cli import main

    src = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 14, 3), dtype=np.uint8)).save(src)
    out = tmp_path / "out"
    rc = main(["sample", str(src), "--model", str(tiny_sdxl_dir), "--level", "0,0.4", "--num-samples", "2",
               "--steps", "5", "--prompt", "cat", "--out", str(out)])
    assert rc == 0
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["settings"]["scheduler"] == "auto" and meta["model"]["family"] == "sdxl"
    recs = meta["samples"]
    assert len(recs) == 4
    for rec in recs:
        assert Image.open(out / rec["file"]).size == (14, 20)
        if rec["level"] == 0:
            assert rec["timestep"] is None and rec["start_snr"] is None and rec["num_denoiser_evals"] == 0
        else:
            assert rec["scheduler"] == "euler" and rec["timestep"] == round(0.4 * 999)
            assert rec["sigma"] is None and rec["start_snr"] == pytest.approx(rec["alpha_bar"] / (1 - rec["alpha_bar"]))
