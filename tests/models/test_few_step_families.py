"""Few-step distilled models beyond SD 1.x's LCM (tiny random-weight components, float32 CPU):

* LCM-SDXL (an SDXL UNet with ``time_cond_proj_dim`` and an LCMScheduler): img2img equals diffusers'
  ``StableDiffusionXLImg2ImgPipeline`` with the LCMScheduler to 1e-5; the exact level snaps to the
  nearest distilled timestep, where noise is added and which is denoised first; batch invariance.
* Turbo-style models (SD-Turbo / SDXL-Turbo: trailing spacing, 1-4 steps, guidance 0): img2img with
  ``--scheduler euler`` equals diffusers' ``StableDiffusionImg2ImgPipeline`` /
  ``StableDiffusionXLImg2ImgPipeline`` with EulerDiscreteScheduler on the folder's own (trailing) config.
"""

from __future__ import annotations

import pytest
import torch

from boomerang.core import boomerang_sample, plan
from boomerang.reverse import per_item_noise
from boomerang.schedulers import make_scheduler
from _helpers import generators as gens


def image(b=1, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(1000 + seed)
    x = torch.rand(b, 3, h, w, generator=g) * 2 - 1
    x[:, :, 0, 0] = -1.0  # a [-1, 1] tensor: the pipelines do not renormalise it
    return x


@pytest.fixture(scope="module")
def lcm_sdxl(tmp_path_factory):
    from boomerang.models import load_model
    from boomerang.testing.tiny_families import make_tiny_sdxl

    return load_model(make_tiny_sdxl(tmp_path_factory.mktemp("models") / "tiny_lcm_sdxl", lcm=True))


def _sdxl_pipe(m, scheduler):
    from diffusers import StableDiffusionXLImg2ImgPipeline

    pipe = StableDiffusionXLImg2ImgPipeline(
        vae=m.vae, text_encoder=m.text_encoder, text_encoder_2=m.text_encoder_2, tokenizer=m.tokenizer,
        tokenizer_2=m.tokenizer_2, unet=m.unet, scheduler=make_scheduler(scheduler, m.scheduler_config),
        requires_aesthetics_score=m.refiner, force_zeros_for_empty_prompt=m.force_zeros_for_empty_prompt,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_lcm_sdxl_defaults_to_lcm_and_embeds_the_guidance(lcm_sdxl):
    from boomerang.models import read_model_info

    assert lcm_sdxl.family == "sdxl" and lcm_sdxl.default_scheduler == "lcm" and lcm_sdxl.guidance_embedded
    assert read_model_info(lcm_sdxl.source).default_scheduler == "lcm"
    assert lcm_sdxl.encode_prompt("cat", "person", 8.0)[1] is None  # no unconditional pass
    assert plan(lcm_sdxl, level=0.5, steps=4).scheduler == "lcm"


@pytest.mark.parametrize("strength,guidance,steps", [(0.6, 8.0, 4), (1.0, 1.5, 4), (0.5, 4.0, 2)])
def test_lcm_sdxl_img2img_equals_sdxl_img2img_pipeline_with_lcm(lcm_sdxl, strength, guidance, steps):
    m = lcm_sdxl
    x = image(2, 16, 24)
    with pytest.warns(FutureWarning):
        ref = _sdxl_pipe(m, "lcm")(prompt=["cat"] * 2, image=x, strength=strength, num_inference_steps=steps,
                                   guidance_scale=guidance, generator=gens(range(2), 50), output_type="pt").images
    out = boomerang_sample(m, x, generators=gens(range(2), 50), level=strength, schedule="img2img", steps=steps,
                           prompt="cat", guidance_scale=guidance)
    assert out.plan.scheduler == "lcm"
    torch.testing.assert_close(out.samples, ref * 2 - 1, atol=1e-5, rtol=0)


@pytest.mark.parametrize("level,start,grid", [(0.3, 299, (299, 159)), (1.0, 999, (999, 759, 499, 259)),
                                              (0.001, 19, (19,))])
def test_lcm_sdxl_exact_level_snaps_and_is_denoised_first(lcm_sdxl, monkeypatch, level, start, grid):
    m = lcm_sdxl
    calls = []
    original = m.predict

    def predict(x_in, t, **kw):
        calls.append((int(t), x_in.clone()))
        return original(x_in, t, **kw)

    monkeypatch.setattr(m, "predict", predict)
    p = plan(m, level=level, steps=4)
    assert (p.timestep, p.timesteps) == (start, grid)
    x = image(2)
    out = boomerang_sample(m, x, p, generators=gens(range(2), 3), prompt="cat", guidance_scale=8.0)
    assert [t for t, _ in calls] == list(grid) and out.plan.timestep == start
    ab = m.schedule.alpha_bar(start)
    z0 = m.encode(x)
    eps = per_item_noise(gens(range(2), 3), tuple(z0.shape[1:]), "cpu")
    torch.testing.assert_close(calls[0][1], ab**0.5 * z0 + (1 - ab) ** 0.5 * eps, atol=1e-5, rtol=1e-5)


def test_lcm_sdxl_batch_size_and_order_never_change_a_sample(lcm_sdxl):
    x = image(3, seed=3)
    kw = dict(level=0.7, steps=4, prompt="cat", guidance_scale=8.0)
    full = boomerang_sample(lcm_sdxl, x, generators=gens(range(3)), **kw).samples
    for i in range(3):
        assert torch.equal(boomerang_sample(lcm_sdxl, x[i:i + 1], generators=gens([i]), **kw).samples[0], full[i])
    rev = boomerang_sample(lcm_sdxl, x.flip(0), generators=gens([2, 1, 0]), **kw).samples
    assert torch.equal(rev.flip(0), full)


@pytest.fixture(scope="module")
def turbo(tmp_path_factory):
    from boomerang.models import load_model
    from boomerang.testing.tiny_families import make_tiny_turbo

    root = tmp_path_factory.mktemp("models")
    return {base: load_model(make_tiny_turbo(root / f"turbo_{base}", base=base)) for base in ("sd", "sdxl")}


@pytest.mark.parametrize("base", ["sd", "sdxl"])
@pytest.mark.parametrize("steps,strength", [(1, 1.0), (2, 0.5), (4, 0.75), (4, 1.0)])
def test_turbo_img2img_equals_diffusers_img2img(turbo, base, steps, strength):
    from diffusers import StableDiffusionImg2ImgPipeline

    m = turbo[base]
    assert m.scheduler_config["timestep_spacing"] == "trailing"
    x = image(2, 16, 24)
    if base == "sdxl":
        pipe = _sdxl_pipe(m, "euler")
    else:
        pipe = StableDiffusionImg2ImgPipeline(
            vae=m.vae, text_encoder=m.text_encoder, tokenizer=m.tokenizer, unet=m.unet,
            scheduler=make_scheduler("euler", m.scheduler_config), safety_checker=None, feature_extractor=None,
            requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
    with pytest.warns(FutureWarning):
        ref = pipe(prompt=["cat"] * 2, image=x, strength=strength, num_inference_steps=steps, guidance_scale=0.0,
                   generator=gens(range(2), 50), output_type="pt").images
    out = boomerang_sample(m, x, generators=gens(range(2), 50), level=strength, schedule="img2img", steps=steps,
                           scheduler="euler", prompt="cat", guidance_scale=0.0)
    assert len(out.plan.timesteps) == int(steps * strength) and out.plan.timesteps[0] <= 999
    torch.testing.assert_close(out.samples, ref * 2 - 1, atol=1e-5, rtol=0)
