"""``enhance`` with the stochastic schedulers of the newer families: ``lcm`` (Latent Consistency Models)
and ``euler-stochastic`` (flow matching) run, and each step's ILVR (``--consistency``) acts at the timestep
or sigma that step lands on; SDXL windows are conditioned on their own size (crop (0, 0))."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from boomerang.enhance.consistency import Consistency
from _helpers import generators


@pytest.fixture(scope="module")
def tiny_lcm_dir(tmp_path_factory):
    from boomerang.testing.tiny_families import make_tiny_lcm

    return make_tiny_lcm(tmp_path_factory.mktemp("models") / "tiny_lcm")


def _spy_consistency(monkeypatch):
    seen = []
    original = Consistency.apply

    def apply(self, x, alpha_bar, gens, **kw):
        seen.append(kw.get("flow_sigma") if kw.get("flow_sigma") is not None else alpha_bar)
        return original(self, x, alpha_bar, gens, **kw)

    monkeypatch.setattr(Consistency, "apply", apply)
    return seen


@pytest.mark.parametrize("fixture,scheduler", [("tiny_lcm_dir", "lcm"), ("tiny_sd3_dir", "euler-stochastic"),
                                               ("tiny_flux_dir", "euler-stochastic")])
def test_ilvr_acts_at_the_level_each_step_lands_on(fixture, scheduler, request, monkeypatch):
    from boomerang.core import plan
    from boomerang.enhance.image import enhance_images
    from boomerang.models import load_model
    from boomerang.reverse import scheduler_for

    m = load_model(request.getfixturevalue(fixture))
    seen = _spy_consistency(monkeypatch)
    img = np.random.default_rng(1).random((12, 12, 3)).astype(np.float32)
    (res,) = enhance_images(m, [img], scale=2, level=0.6, generators=generators([0]), steps=4, scheduler=scheduler,
                            tile_size=8, tile_overlap=4, consistency=True, prompt="cat", guidance_scale=3.0)
    assert res.pixels.shape == (24, 24, 3) and np.isfinite(res.pixels).all()
    from boomerang.enhance.image import window_settings

    side = min(window_settings(m, 8, 4)[0] * m.space_factor, 24)  # FLUX's schedule is planned for one window
    p = plan(m, level=0.6, steps=4, scheduler=scheduler, image_shape=(3, side, side))
    assert p.scheduler == scheduler and len(p.timesteps) >= 2
    sched = scheduler_for(p, m.scheduler_config)
    if scheduler == "lcm":  # alpha_bar of the next distilled timestep, then 1 (x0)
        expected = [float(sched.alphas_cumprod.double()[t]) for t in p.timesteps[1:]] + [1.0]
    else:  # the next sigma of the flow grid, then 0 (x0)
        expected = [float(s) for s in sched.sigmas.double()[1:len(p.timesteps)]] + [0.0]
    assert seen == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("fixture,scheduler", [("tiny_lcm_dir", "lcm"), ("tiny_sd3_dir", "euler-stochastic")])
def test_cli_enhance_with_the_stochastic_schedulers(fixture, scheduler, request, tmp_path):
    from boomerang.cli import main

    src = tmp_path / "small.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(src)
    out = tmp_path / "out"
    argv = ["enhance", str(src), "--model", str(request.getfixturevalue(fixture)), "--scale", "2", "--level", "0.5",
            "--steps", "4", "--prompt", "cat", "--tile-size", "8", "--tile-overlap", "2", "--no-progress",
            "--scheduler", scheduler, "--consistency", "--out", str(out)]
    assert main(argv) == 0
    (rec,) = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert json.loads((out / ".job" / "job.json").read_text())["settings"]["scheduler"] == scheduler
    assert Image.open(out / rec["file_name"]).size == (24, 24)
    if scheduler == "lcm":
        assert rec["timestep"] == 499  # level 0.5 snapped to the distilled timestep 499


def test_pndm_is_still_refused_by_enhance(tmp_path, capsys):
    from _helpers import DIGIT, run_cli

    rc, err = run_cli(["enhance", DIGIT, "--scheduler", "pndm", "--out", tmp_path / "o"], capsys)
    assert rc == 2 and "cannot follow the exact grid" in err and "euler-stochastic" in err
    assert not (tmp_path / "o").exists()


def test_sdxl_windows_are_conditioned_on_their_own_size(tiny_sdxl_dir):
    """Each window's add_time_ids carry the window's own size in pixels and crop (0, 0): what an img2img
    call on that window alone would pass (SDXL's size conditioning of the input's own size)."""
    from boomerang.enhance.image import enhance_images
    from boomerang.models import load_model

    m = load_model(tiny_sdxl_dir)
    ids = []
    m.unet.register_forward_pre_hook(
        lambda mod, args, kwargs: ids.append((tuple(args[0].shape[-2:]), kwargs["added_cond_kwargs"]["time_ids"])),
        with_kwargs=True)
    img = np.random.default_rng(2).random((12, 16, 3)).astype(np.float32)
    (res,) = enhance_images(m, [img], scale=2, level=0.5, generators=generators([0]), steps=3, tile_size=8,
                            tile_overlap=4, prompt="cat", guidance_scale=3.0)
    assert res.pixels.shape == (24, 32, 3) and ids
    f = m.space_factor
    for (h, w), time_ids in ids:
        assert (h, w) != (24 // f, 32 // f)  # windows, not the whole image
        want = torch.tensor([h * f, w * f, 0, 0, h * f, w * f], dtype=time_ids.dtype)
        assert all(torch.equal(row, want) for row in time_ids)
