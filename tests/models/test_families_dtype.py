"""``--dtype bfloat16`` on the SDXL, SD3 and FLUX families (CPU, tiny random weights): the denoiser and
text encoders load in bfloat16 (the VAE stays float32), samples are finite and near the float32 ones.
(float16 and GPUs were not measured here.)"""

from __future__ import annotations

import pytest
import torch

from boomerang.core import boomerang_sample


@pytest.mark.parametrize("fixture,denoiser", [("tiny_sdxl_dir", "unet"), ("tiny_sd3_dir", "transformer"),
                                              ("tiny_flux_dir", "transformer")])
def test_bfloat16_loads_and_samples(fixture, denoiser, request):
    from boomerang.models import load_model

    folder = request.getfixturevalue(fixture)
    m16, m32 = load_model(folder, dtype="bfloat16"), load_model(folder)
    assert {p.dtype for p in getattr(m16, denoiser).parameters()} == {torch.bfloat16}
    assert {p.dtype for p in m16.text_encoder_2.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in m16.vae.parameters()} == {torch.float32}
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    kw = dict(level=0.5, steps=3, prompt="cat", guidance_scale=3.0)
    out = boomerang_sample(m16, x, generators=[torch.Generator().manual_seed(i) for i in range(2)], **kw).samples
    ref = boomerang_sample(m32, x, generators=[torch.Generator().manual_seed(i) for i in range(2)], **kw).samples
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert float((out - ref).abs().max()) < 0.25
