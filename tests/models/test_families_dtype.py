"""``--dtype bfloat16`` / ``float16`` on every family (pixel DDPM, SD 1.x, LCM, SDXL base and refiner, SD3,
FLUX; CPU, tiny random weights): the denoiser and text encoders load in that dtype (the VAE stays float32),
samples are finite and near the float32 ones. torch 2.13's CPU has the half-precision kernels these networks
use, so nothing is refused here. (GPUs were not measured here: no CUDA GPU was lent.)"""

from __future__ import annotations

import pytest
import torch

from boomerang.core import boomerang_sample
from _helpers import generators


@pytest.fixture(scope="module")
def tiny_lcm_dir(tmp_path_factory):
    from boomerang.testing.tiny_families import make_tiny_lcm

    return make_tiny_lcm(tmp_path_factory.mktemp("models") / "tiny_lcm")


FAMILIES = [("tiny_pixel_dir", "unet"), ("tiny_sd_dir", "unet"), ("tiny_lcm_dir", "unet"), ("tiny_sdxl_dir", "unet"),
            ("tiny_sdxl_refiner_dir", "unet"), ("tiny_sd3_dir", "transformer"), ("tiny_flux_dir", "transformer")]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("fixture,denoiser", FAMILIES)
def test_half_precision_loads_and_samples(fixture, denoiser, dtype, request):
    from boomerang.models import load_model

    folder = request.getfixturevalue(fixture)
    m16, m32 = load_model(folder, dtype=dtype), load_model(folder)
    half = getattr(torch, dtype)
    assert m16.dtype == dtype and {p.dtype for p in getattr(m16, denoiser).parameters()} == {half}
    encoders = [getattr(m16, n, None) for n in ("text_encoder", "text_encoder_2", "text_encoder_3")]
    for encoder in [e for e in encoders if e is not None]:
        # T5 in float16 keeps its feed-forward output ("wo") in float32: transformers' _keep_in_fp32_modules
        kept = tuple(getattr(encoder, "_keep_in_fp32_modules", None) or ()) if dtype == "float16" else ()
        assert {p.dtype for n, p in encoder.named_parameters() if not any(k in n.split(".") for k in kept)} == {half}
    if hasattr(m16, "vae"):
        assert {p.dtype for p in m16.vae.parameters()} == {torch.float32}
    side = 8 if m16.pixel_space else 16
    x = torch.rand(2, m16.image_channels, side, side, generator=torch.Generator().manual_seed(0)) * 2 - 1
    kw = dict(level=0.5, steps=3, guidance_scale=3.0, **({"prompt": "cat"} if m16.takes_prompt else {}))
    out = boomerang_sample(m16, x, generators=generators(range(2)), **kw).samples
    ref = boomerang_sample(m32, x, generators=generators(range(2)), **kw).samples
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert float((out - ref).abs().max()) < 0.25
