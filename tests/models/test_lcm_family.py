"""Few-step distilled models: a Latent Consistency Model (Stable Diffusion layout, UNet with the guidance
embedding, LCMScheduler) on tiny random-weight components. img2img equals diffusers'
LatentConsistencyModelImg2ImgPipeline; the exact level snaps to the nearest distilled timestep, which is
where noise is added and what is denoised first; batch invariance."""

from __future__ import annotations

import pytest
import torch

from boomerang.core import boomerang_sample, plan
from boomerang.errors import SettingError
from boomerang.reverse import per_item_noise
from boomerang.schedulers import make_scheduler
from _helpers import generators as gens


def image(b=1, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(1000 + seed)
    x = torch.rand(b, 3, h, w, generator=g) * 2 - 1
    x[:, :, 0, 0] = -1.0
    return x


@pytest.fixture(scope="module")
def lcm(tmp_path_factory):
    from boomerang.models import load_model
    from boomerang.testing.tiny_families import make_tiny_lcm

    return load_model(make_tiny_lcm(tmp_path_factory.mktemp("models") / "tiny_lcm"))


def test_an_lcm_folder_defaults_to_its_scheduler(lcm):
    assert lcm.default_scheduler == "lcm" and lcm.guidance_embedded
    assert lcm.encode_prompt("cat", "person", 8.0)[1] is None  # guidance is embedded: no unconditional pass


@pytest.mark.parametrize("strength,guidance", [(0.6, 8.0), (1.0, 1.5), (0.3, 4.0)])
def test_img2img_equals_lcm_img2img_pipeline(lcm, strength, guidance):
    from diffusers import LatentConsistencyModelImg2ImgPipeline

    m = lcm
    pipe = LatentConsistencyModelImg2ImgPipeline(
        vae=m.vae, text_encoder=m.text_encoder, tokenizer=m.tokenizer, unet=m.unet,
        scheduler=make_scheduler("lcm", m.scheduler_config), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    x = image(2, 16, 24)
    with pytest.warns(FutureWarning):
        ref = pipe(prompt=["cat"] * 2, image=x, strength=strength, num_inference_steps=4, guidance_scale=guidance,
                   generator=gens(range(2), 50), output_type="pt").images
    out = boomerang_sample(m, x, generators=gens(range(2), 50), level=strength, schedule="img2img", steps=4,
                           prompt="cat", guidance_scale=guidance)
    torch.testing.assert_close(out.samples, ref * 2 - 1, atol=1e-5, rtol=0)


@pytest.mark.parametrize("level,start,grid", [(0.3, 299, (299, 159)), (0.5, 499, (499, 259)),
                                              (1.0, 999, (999, 759, 499, 259)), (0.001, 19, (19,)),
                                              (0.01, 19, (19,)), (0.0195, 19, (19,)), (0.0205, 19, (19,))])
def test_exact_level_snaps_to_the_nearest_distilled_timestep(lcm, monkeypatch, level, start, grid):
    m = lcm
    calls = []
    original = m.predict

    def predict(x_in, t, **kw):
        calls.append((int(t), x_in.clone()))
        return original(x_in, t, **kw)

    monkeypatch.setattr(m, "predict", predict)
    p = plan(m, level=level, steps=4)
    assert (p.timestep, p.timesteps) == (start, grid) and p.scheduler == "lcm"
    x = image(2)
    out = boomerang_sample(m, x, p, generators=gens(range(2), 3), prompt="cat", guidance_scale=8.0)
    assert [t for t, _ in calls] == list(grid) and out.plan.timestep == start
    ab = m.schedule.alpha_bar(start)
    z0 = m.encode(x)
    eps = per_item_noise(gens(range(2), 3), tuple(z0.shape[1:]), "cpu")
    torch.testing.assert_close(calls[0][1], ab**0.5 * z0 + (1 - ab) ** 0.5 * eps, atol=1e-5, rtol=1e-5)


def test_level_1_at_4_steps_is_the_models_own_grid_and_reference_is_refused(lcm):
    sched = make_scheduler("lcm", lcm.scheduler_config)
    sched.set_timesteps(4)
    assert plan(lcm, level=1.0, steps=4).timesteps == tuple(int(t) for t in sched.timesteps)
    with pytest.raises(SettingError, match="lcm takes schedule exact or img2img"):
        plan(lcm, level=0.5, schedule="reference")


def test_batch_size_and_order_never_change_a_sample(lcm):
    x = image(3, seed=3)
    kw = dict(level=0.7, steps=4, prompt="cat", guidance_scale=8.0)
    full = boomerang_sample(lcm, x, generators=gens(range(3)), **kw).samples
    for i in range(3):
        assert torch.equal(boomerang_sample(lcm, x[i:i + 1], generators=gens([i]), **kw).samples[0], full[i])
    rev = boomerang_sample(lcm, x.flip(0), generators=gens([2, 1, 0]), **kw).samples
    assert torch.equal(rev.flip(0), full)
