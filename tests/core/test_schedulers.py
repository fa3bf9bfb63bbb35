"""Every scheduler a diffusers user has (issue 13): equality with diffusers' own full-chain
sampling from pure noise, the exact grid where diffusers allows it, clear refusals where it
does not, and sigma-spacing configs (Karras ...) honoured or refused, never changed.

The level x steps grid over every scheduler is ``tests/core/test_core.py::test_parameter_grid``
(parametrised over ``SCHEDULER_NAMES``, so it covers every name here).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from boomerang.core import boomerang_sample
from boomerang.models import load_model
from boomerang.schedulers import (
    CUSTOM_GRID_SCHEDULERS,
    SCHEDULER_NAMES,
    entry_index,
    is_stochastic,
    make_scheduler,
    set_grid,
)
from _helpers import generators as gens

NEW = ("heun", "dpmsolver", "lms", "unipc", "deis", "kdpm2", "kdpm2-ancestral")


def test_the_schedulers_users_expect_are_there():
    assert set(NEW) <= set(SCHEDULER_NAMES)
    assert set(CUSTOM_GRID_SCHEDULERS) == set(SCHEDULER_NAMES) - {"pndm", "kdpm2", "kdpm2-ancestral"}
    assert is_stochastic("kdpm2-ancestral") and not is_stochastic("heun")


@pytest.mark.parametrize("name", SCHEDULER_NAMES)
def test_from_noise_equals_stable_diffusion_pipeline(tiny_sd_model, name, monkeypatch):
    """Level 1 from pure noise: our loop and diffusers' StableDiffusionPipeline with the same
    scheduler, generator and prompt give the same image (no guidance: w = 1)."""
    from diffusers import StableDiffusionPipeline

    m = tiny_sd_model
    monkeypatch.setattr(m, "batch_invariant", False)  # the pipeline runs plain batched kernels
    steps = 6
    pipe = StableDiffusionPipeline(vae=m.vae, text_encoder=m.text_encoder, tokenizer=m.tokenizer, unet=m.unet,
                                   scheduler=make_scheduler(name, m.scheduler_config), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(prompt="cat", height=16, width=16, num_inference_steps=steps, guidance_scale=1.0,
               generator=gens([11]), output_type="np").images
    ref = torch.from_numpy(np.asarray(ref)).permute(0, 3, 1, 2)
    out = boomerang_sample(m, torch.zeros(1, 3, 16, 16), generators=gens([11]), from_noise=True, scheduler=name,
                           steps=steps, prompt="cat", guidance_scale=1.0)
    assert torch.isfinite(out.samples).all()
    torch.testing.assert_close(out.samples / 2 + 0.5, ref.clamp(0, 1), atol=2e-5, rtol=0)


@pytest.mark.parametrize("name", [n for n in CUSTOM_GRID_SCHEDULERS if n in NEW])
def test_new_schedulers_follow_the_exact_grid(tiny_pixel_model, name):
    out = boomerang_sample(tiny_pixel_model, torch.zeros(1, 1, 8, 8), generators=gens([0]), level=0.5, steps=10,
                           scheduler=name)
    from boomerang.levels import reverse_timesteps

    visited = list(out.plan.timesteps)
    grid = sorted(set(visited), reverse=True)
    assert visited[0] == round(0.5 * 999) and grid == list(reverse_timesteps(500, 10, 1000))  # the exact grid
    if name == "heun":  # second order: every grid timestep after the first twice (predictor, corrector)
        assert visited == [grid[0]] + [t for t in grid[1:] for _ in range(2)]
    else:
        assert visited == grid
    assert out.num_denoiser_evals == len(visited) and torch.isfinite(out.samples).all()


@pytest.mark.parametrize("name", ["pndm", "kdpm2", "kdpm2-ancestral"])
def test_schedulers_without_a_custom_grid_are_refused_clearly_on_the_exact_schedule(tiny_pixel_model, name):
    with pytest.raises(ValueError, match=f"{name}.*cannot follow the exact"):
        boomerang_sample(tiny_pixel_model, torch.zeros(1, 1, 8, 8), generators=gens([0]), level=0.5, steps=10,
                         scheduler=name)
    for schedule in ("img2img", "reference"):
        out = boomerang_sample(tiny_pixel_model, torch.zeros(1, 1, 8, 8), generators=gens([0]), level=0.5,
                               steps=10, scheduler=name, schedule=schedule)
        assert torch.isfinite(out.samples).all() and out.num_denoiser_evals > 0


def test_second_order_reference_entry_is_a_step_start(tiny_pixel_model):
    for name in ("heun", "kdpm2"):
        sched = make_scheduler(name, tiny_pixel_model.scheduler_config)
        sched.set_timesteps(10)
        ts = [int(t) for t in sched.timesteps]
        for t_ref in (950, 612, 300, 57):
            kept = [i for i, t in enumerate(ts) if t <= t_ref]
            i = entry_index(sched, kept)
            assert i % 2 == 0 and (i == len(ts) or ts[i] <= t_ref), (name, t_ref, i)


@pytest.fixture()
def karras_pixel_dir(tiny_pixel_dir, tmp_path):
    folder = tmp_path / "karras"
    shutil.copytree(tiny_pixel_dir, folder)
    cfg_path = folder / "scheduler" / "scheduler_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["use_karras_sigmas"] = True
    cfg_path.write_text(json.dumps(cfg))
    return folder


@pytest.mark.parametrize("name", ["euler", "dpmsolver++", "heun", "lms", "dpmsolver", "unipc", "deis"])
def test_karras_config_refused_on_the_exact_grid_honoured_on_the_schedulers_own(karras_pixel_dir, name):
    model = load_model(karras_pixel_dir)
    x = torch.zeros(1, 1, 8, 8)
    with pytest.raises(ValueError, match="use_karras_sigmas=true"):
        boomerang_sample(model, x, generators=gens([0]), level=0.5, steps=10, scheduler=name)
    sched = make_scheduler(name, model.scheduler_config)
    assert sched.config.use_karras_sigmas  # never switched off
    sched.set_timesteps(10)
    plain = make_scheduler(name, {**model.scheduler_config, "use_karras_sigmas": False})
    plain.set_timesteps(10)
    assert [int(t) for t in sched.timesteps] != [int(t) for t in plain.timesteps]  # Karras spacing in effect
    out = boomerang_sample(model, x, generators=gens([0]), level=1.0, steps=10, scheduler=name, schedule="img2img")
    assert list(out.plan.timesteps) == [int(t) for t in sched.timesteps]  # the config's own grid, all of it
    assert out.scheduler_config["use_karras_sigmas"] is True


@pytest.mark.parametrize("name,schedule", [("ddpm", "img2img"), ("ddim", "reference"), ("pndm", "img2img"),
                                           ("ddpm", "exact")])
def test_karras_config_is_refused_by_schedulers_that_ignore_it(karras_pixel_dir, name, schedule):
    """diffusers keeps use_karras_sigmas in any scheduler's config but only some use it: the
    others are refused by name instead of sampling silently on their plain grid."""
    from boomerang.core import plan

    model = load_model(karras_pixel_dir)
    with pytest.raises(ValueError, match=f"use_karras_sigmas=true, which `?scheduler`? {name} does not use"):
        plan(model, level=0.5, steps=10, scheduler=name, schedule=schedule)
    with pytest.raises(ValueError, match="use_karras_sigmas=true"):
        plan(model, steps=10, scheduler=name, from_noise=True)
