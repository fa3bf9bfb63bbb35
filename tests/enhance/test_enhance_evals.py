"""Enhance runs the plan ``sample`` runs: the same denoiser evaluations, for every scheduler (issue 18).

The tiled enhancement once had its own reverse loop: given ``core.plan``'s grid
(already listing each heun timestep twice) it doubled it again, 41 UNet calls
where ``sample`` made 21, and indexed ILVR's alpha_bar on the wrong list. Both
now run :func:`boomerang.reverse.reverse_process` on a plan from
:func:`boomerang.core.plan`; these tests count the UNet's forward calls.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from boomerang.core import boomerang_sample, plan as make_plan
from boomerang.enhance.image import enhance_image
from boomerang.errors import SettingError
from boomerang.schedulers import CUSTOM_GRID_SCHEDULERS, SCHEDULER_NAMES, make_scheduler, works_in_sigma_space

LEVEL, STEPS = 0.5, 6


@pytest.fixture
def unet_forwards(monkeypatch):
    """Counts calls of the pixel UNet's forward (whatever wraps it)."""
    from diffusers import UNet2DModel

    calls = []
    forward = UNet2DModel.forward

    def counted(self, *args, **kwargs):
        calls.append(1)
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(UNet2DModel, "forward", counted)
    return calls


def _low(seed=0, side=2):
    return np.random.default_rng(seed).uniform(0.1, 0.9, (side, side)).astype(np.float32)


@pytest.mark.parametrize("scheduler", SCHEDULER_NAMES)
def test_enhance_makes_the_plans_evaluations_for_every_scheduler(tiny_pixel_model, unet_forwards, scheduler):
    # 2x2 -> 8x8: one window of the 8x8 model, so one UNet call per denoiser evaluation
    kw = dict(scale=4, level=LEVEL, steps=STEPS, scheduler=scheduler, consistency=True,
              generator=torch.Generator().manual_seed(0))
    if scheduler not in CUSTOM_GRID_SCHEDULERS:  # pndm, kdpm2, kdpm2-ancestral: refused by core.plan, no model call
        with pytest.raises(SettingError, match=f"scheduler.? {scheduler} cannot follow the exact Boomerang grid"):
            enhance_image(tiny_pixel_model, _low(), **kw)
        assert unet_forwards == []
        return
    plan = make_plan(tiny_pixel_model, level=LEVEL, scheduler=scheduler, steps=STEPS)
    out = enhance_image(tiny_pixel_model, _low(), **kw)
    assert out.plan == plan  # the API plans with core.plan, as sample does
    assert out.num_windows == 1
    assert len(unet_forwards) == len(plan.timesteps) == out.num_denoiser_evals

    del unet_forwards[:]
    x0 = torch.zeros((1, 1, 8, 8))
    sampled = boomerang_sample(tiny_pixel_model, x0, plan, [torch.Generator().manual_seed(0)])
    assert len(unet_forwards) == sampled.num_denoiser_evals == len(plan.timesteps)


def test_heun_visits_each_timestep_after_the_first_twice_not_four_times(tiny_pixel_model, unet_forwards):
    plan = make_plan(tiny_pixel_model, level=LEVEL, scheduler="heun", steps=STEPS)
    grid = sorted(set(plan.timesteps), reverse=True)
    assert len(plan.timesteps) == 2 * len(grid) - 1  # predictor and corrector; the last step is Euler's
    enhance_image(tiny_pixel_model, _low(), scale=4, level=LEVEL, steps=STEPS, scheduler="heun",
                  generator=torch.Generator().manual_seed(0))
    assert len(unet_forwards) == 2 * len(grid) - 1


@pytest.mark.parametrize("scheduler", ["ddpm", "heun"])
def test_cli_enhance_and_sample_make_the_same_number_of_unet_calls(tmp_path, tiny_pixel_dir, tiny_pixel_model,
                                                                   unet_forwards, scheduler):
    """The issue's case, on the CLI: enhance 4x of a 2x2 image (one 8x8 window) and sample of an 8x8 image."""
    from boomerang.cli import main

    Image.fromarray((_low() * 255).astype(np.uint8)).save(tmp_path / "low.png")
    Image.fromarray((_low(side=8) * 255).astype(np.uint8)).save(tmp_path / "x.png")
    common = ["--level", str(LEVEL), "--steps", "20", "--scheduler", scheduler, "--seed", "0", "--threads", "1",
              "--model", str(tiny_pixel_dir)]
    assert main(["enhance", str(tmp_path / "low.png"), "--scale", "4", *common, "--out", str(tmp_path / "e")]) == 0
    enhance_calls = len(unet_forwards)
    del unet_forwards[:]
    assert main(["sample", str(tmp_path / "x.png"), "--num-samples", "1", *common, "--out", str(tmp_path / "s")]) == 0
    plan = make_plan(tiny_pixel_model, level=LEVEL, scheduler=scheduler, steps=20)  # the same model folder
    assert enhance_calls == len(unet_forwards) == len(plan.timesteps)
    assert len(plan.timesteps) == (21 if scheduler == "heun" else 11)  # T = 1000, t = 500: 11 grid entries


# ----------------------------------------------------------------------------- ILVR alignment


@pytest.mark.parametrize("scheduler", CUSTOM_GRID_SCHEDULERS)
def test_ilvr_acts_once_per_step_at_the_noise_level_x_sits_at(tiny_pixel_model, monkeypatch, scheduler):
    """ILVR's replacement follows each completed reverse step t_i -> t_{i+1} with alpha_bar_{t_{i+1}}
    (1 after the last step), in the scheduler's space (sigma space for euler, heun, lms)."""
    from boomerang.enhance.consistency import Consistency

    seen = []
    apply = Consistency.apply

    def record(self, x, alpha_bar, generators, *, sigma_space=False):
        seen.append((alpha_bar, sigma_space))
        return apply(self, x, alpha_bar, generators, sigma_space=sigma_space)

    monkeypatch.setattr(Consistency, "apply", record)
    plan = make_plan(tiny_pixel_model, level=LEVEL, scheduler=scheduler, steps=STEPS)
    enhance_image(tiny_pixel_model, _low(), scale=4, level=LEVEL, steps=STEPS, scheduler=scheduler, consistency=True,
                  generator=torch.Generator().manual_seed(0))
    sched = make_scheduler(scheduler, tiny_pixel_model.scheduler_config)
    ab = sched.alphas_cumprod.double()
    grid = sorted(set(plan.timesteps), reverse=True)
    assert [a for a, _ in seen] == [float(ab[t]) for t in grid[1:]] + [1.0]
    assert {s for _, s in seen} == {scheduler in ("euler", "heun", "lms")}
    assert works_in_sigma_space(sched) == (scheduler in ("euler", "heun", "lms"))
