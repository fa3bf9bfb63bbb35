"""boomerang.studies.families: per-item prompts in one batch, the digit view of any model's output, diversity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from boomerang.studies.families import PerItemPrompts, as_digits, model_input, pairwise_diversity, sample_level


def test_per_item_prompts_equal_one_call_per_prompt_on_sd3(tiny_sd3_dir):
    from boomerang.core import boomerang_sample
    from boomerang.models import load_model
    from boomerang.seeds import item_generator

    model = load_model(str(tiny_sd3_dir))
    x0 = torch.rand(2, 3, 32, 32) * 2 - 1
    prompts = ["a photo of a cat", "a digit seven"]
    out, facts = sample_level(model, x0, [(0, 0), (1, 0)], level=0.5, prompts=prompts, scheduler="euler", steps=6,
                              guidance_scale=3.0, seed=5)
    assert facts["sigma"] is not None and facts["alpha_bar"] is None and facts["start_snr"] > 0
    for i, p in enumerate(prompts):
        one = boomerang_sample(model, x0[i:i + 1], generators=[item_generator(5, i, 0)], level=0.5, scheduler="euler",
                               steps=6, prompt=p, guidance_scale=3.0).samples
        torch.testing.assert_close(out[i:i + 1], one, atol=1e-5, rtol=0)
    # the prompts matter: swapping them changes the samples
    swapped, _ = sample_level(model, x0, [(0, 0), (1, 0)], level=0.5, prompts=prompts[::-1], scheduler="euler",
                              steps=6, guidance_scale=3.0, seed=5)
    assert not torch.allclose(swapped, out)
    cond, uncond = PerItemPrompts(model, prompts).encode_prompt(guidance_scale=3.0)
    assert cond[0].shape[0] == 2 and uncond[1].shape[0] == 2


def test_digit_view_and_diversity():
    digits = np.random.default_rng(0).integers(0, 256, (3, 1, 28, 28), dtype=np.uint8)

    class Gray:
        pixel_space, image_channels = True, 1

    class Latent:
        pixel_space, image_channels = False, 3

    gray, rgb = model_input(Gray(), digits), model_input(Latent(), digits)
    assert gray.shape == (3, 1, 28, 28) and rgb.shape == (3, 3, 32, 32)
    np.testing.assert_allclose(as_digits(gray), as_digits(rgb), atol=1e-6)  # the same digit whatever the model sees
    same = np.stack([as_digits(gray)] * 3)
    assert np.allclose(pairwise_diversity(same), 0.0, atol=1e-6)
    other = np.stack([as_digits(gray), -as_digits(gray)])
    assert (pairwise_diversity(other) > 0.5).all()
    with pytest.raises(ValueError, match="at least 2"):
        pairwise_diversity(same[:1])
