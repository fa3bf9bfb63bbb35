"""Enhance's memory savings change no byte (issue 22).

``enhance_images`` maps its input to [-1, 1] in place, ``tiled_boomerang`` clamps the decode in
place and the reverse loop drops each step's model output early. Here a multi-window, multi-step
enhancement with ILVR and the colour fix is rebuilt from the out-of-place formulas of before
(x0 = stack * 2.0 - 1.0, clamp, (s + 1) / 2, clip) around the same ``tiled_boomerang``: the bytes
must be equal, and the caller's x0 (which the colour fix reads afterwards) must be untouched
although a pixel model's encode returns x0 itself.
"""

from __future__ import annotations

import numpy as np
import torch

from boomerang.enhance.colour import colour_fix
from boomerang.enhance.image import enhance_image, window_settings
from boomerang.enhance.resample import upsample
from boomerang.enhance.sampler import tiled_boomerang
from boomerang.enhance.tiling import make_layout
from boomerang.planning import plan as make_plan, resolve_scheduler


def test_in_place_enhance_equals_the_out_of_place_path(tiny_pixel_model):
    model = tiny_pixel_model
    img = np.random.default_rng(4).uniform(0, 1, (6, 9, 1)).astype(np.float32)
    scale, level, steps = 3, 0.3, 10
    new = enhance_image(model, img, scale=scale, level=level, generator=torch.Generator().manual_seed(11), steps=steps,
                        consistency=True, colour_fix=True)

    tile, overlap = window_settings(model, None, None)
    up = upsample(img, 18, 27)
    assert len(make_layout(18, 27, tile, overlap)) > 4  # several windows
    scheduler = resolve_scheduler(model, "auto")
    plan = make_plan(model, level=level, schedule="exact", scheduler=scheduler, steps=steps,
                     image_shape=(1, min(tile, 18), min(tile, 27)))
    assert plan.num_denoiser_evals > 1  # several reverse steps
    x0 = torch.from_numpy(np.stack([up])).permute(0, 3, 1, 2).float() * 2.0 - 1.0
    kept = x0.clone()
    low = torch.from_numpy(np.stack([img])).permute(0, 3, 1, 2).float() * 2.0 - 1.0
    samples = tiled_boomerang(model, x0, plan, [torch.Generator().manual_seed(11)], tile=tile, overlap=overlap,
                              tile_batch=8, weighting="feather", consistency_low=low, consistency_iterations=1)
    assert torch.equal(x0, kept)  # the in-place clamp never reaches the caller's x0
    samples = colour_fix(samples, x0.to(samples), sigma=float(scale)).clamp(-1.0, 1.0)
    old = np.clip((samples.permute(0, 2, 3, 1).numpy() + 1.0) / 2.0, 0.0, 1.0)[0]
    assert new.pixels.dtype == old.dtype and new.pixels.tobytes() == old.tobytes()
