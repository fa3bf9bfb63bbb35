"""``--scheduler heun`` on flow-matching models (SD3, FLUX; tiny random-weight components): diffusers'
FlowMatchHeunDiscreteScheduler on the model's own shifted (and, on FLUX, dynamically shifted) sigmas
(``scheduler_grids.GridFlowHeunScheduler``). The exact-level contract: noise added at exactly the planned
sigma and that step denoised first, each later step twice (predictor, corrector), the last once; batch
size and order never change a sample; ``enhance --consistency`` acts at the sigma each completed step
lands on; the grid on its own step count equals diffusers' own class."""

from __future__ import annotations

import pytest
import torch

from boomerang.core import boomerang_sample
from boomerang.planning import plan
from boomerang.reverse import per_item_noise
from boomerang.schedulers import make_scheduler
from _helpers import generators as gens

SD3 = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0}


def image(b=1, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(1000 + seed)
    return torch.rand(b, 3, h, w, generator=g) * 2 - 1


@pytest.fixture(scope="module", params=["tiny_sd3_dir", "tiny_flux_dir"])
def flow(request):
    from boomerang.models import load_model

    return load_model(request.getfixturevalue(request.param))


def test_own_grid_equals_diffusers_flow_heun():
    from diffusers import FlowMatchHeunDiscreteScheduler

    ours, ref = make_scheduler("heun", SD3), FlowMatchHeunDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    for n in (1, 2, 6):
        ours.set_timesteps(n)
        ref.set_timesteps(n)
        assert torch.equal(ours.timesteps, ref.timesteps) and torch.equal(ours.sigmas, ref.sigmas)


@pytest.mark.parametrize("level", [0.5, 1.0, 0.05])
def test_exact_level_noise_at_the_planned_sigma_denoised_first(flow, monkeypatch, level):
    m = flow
    calls = []
    original = m.predict

    def predict(x_in, t, **kw):
        calls.append((float(t), x_in.clone()))
        return original(x_in, t, **kw)

    monkeypatch.setattr(m, "predict", predict)
    x = image(2)
    p = plan(m, level=level, steps=6, scheduler="heun", image_shape=(3, 16, 16))
    euler = plan(m, level=level, steps=6, scheduler="euler", image_shape=(3, 16, 16))
    # the same start and the same distinct timesteps as euler's (the model's own shifted sigmas); heun
    # visits each after the first twice
    assert (p.timestep, p.sigma) == (euler.timestep, euler.sigma)
    assert p.timesteps == (euler.timesteps[0],) + tuple(t for t in euler.timesteps[1:] for _ in (0, 1))
    assert p.num_denoiser_evals == 2 * len(euler.timesteps) - 1
    if getattr(m.schedule_for((3, 16, 16)), "mu", None) is None:
        assert p.sigma == pytest.approx(m.schedule.sigma(round(level * 999)), abs=1e-6)
    out = boomerang_sample(m, x, p, generators=gens(range(2), 7), prompt="cat", guidance_scale=3.0)
    assert [t for t, _ in calls] == list(p.timesteps) and out.plan.scheduler == "heun"
    z0 = m.encode(x)
    eps = per_item_noise(gens(range(2), 7), tuple(z0.shape[1:]), "cpu")
    torch.testing.assert_close(calls[0][1], (1 - p.sigma) * z0 + p.sigma * eps, atol=1e-6, rtol=1e-6)
    assert torch.isfinite(out.samples).all()


def test_batch_size_and_order_never_change_a_sample(flow):
    x = image(3, seed=3)
    kw = dict(level=0.6, steps=4, scheduler="heun", prompt="cat", guidance_scale=3.0)
    full = boomerang_sample(flow, x, generators=gens(range(3)), **kw).samples
    for i in range(3):
        assert torch.equal(boomerang_sample(flow, x[i:i + 1], generators=gens([i]), **kw).samples[0], full[i])
    rev = boomerang_sample(flow, x.flip(0), generators=gens([2, 1, 0]), **kw).samples
    assert torch.equal(rev.flip(0), full)


def test_img2img_enters_at_a_step_start():
    p = plan(SD3, level=0.5, scheduler="heun", steps=6, schedule="img2img")
    euler = plan(SD3, level=0.5, scheduler="euler", steps=6, schedule="img2img")
    assert p.timestep == euler.timestep and p.begin_index == 2 * euler.begin_index
    assert p.timesteps == (euler.timesteps[0],) + tuple(t for t in euler.timesteps[1:] for _ in (0, 1))


def test_enhance_consistency_acts_at_each_completed_steps_sigma(tiny_sd3_dir, monkeypatch):
    import numpy as np

    from boomerang.enhance.consistency import Consistency
    from boomerang.enhance.image import enhance_images
    from boomerang.models import load_model

    m = load_model(tiny_sd3_dir)
    seen = []
    original = Consistency.apply

    def apply(self, x, alpha_bar, g, **kw):
        seen.append(kw["flow_sigma"])
        return original(self, x, alpha_bar, g, **kw)

    monkeypatch.setattr(Consistency, "apply", apply)
    img = np.random.default_rng(1).random((12, 12, 3)).astype(np.float32)
    (res,) = enhance_images(m, [img], scale=2, level=0.6, generators=gens([0]), steps=4, scheduler="heun",
                            tile_size=8, tile_overlap=4, consistency=True, prompt="cat", guidance_scale=3.0)
    assert np.isfinite(res.pixels).all()
    euler = plan(m, level=0.6, steps=4, scheduler="euler")
    assert seen == pytest.approx([t / 1000 for t in euler.timesteps[1:]] + [0.0], abs=1e-6)


def test_heun_from_the_command_line(tiny_sd3_dir, tmp_path, capsys):
    import json

    from PIL import Image

    from _helpers import run_cli

    img = tmp_path / "in.png"
    Image.new("RGB", (16, 16), (90, 120, 200)).save(img)
    out = tmp_path / "out"
    rc, err = run_cli(["sample", img, "--model", tiny_sd3_dir, "--scheduler", "heun", "--steps", "4",
                       "--num-samples", "1", "--no-progress", "--out", out], capsys)
    assert rc == 0, err
    (rec,) = json.loads((out / "metadata.json").read_text())["samples"]
    assert rec["scheduler"] == "heun" and rec["num_denoiser_evals"] == 3  # level 0.3 at 4 steps: 2 steps
