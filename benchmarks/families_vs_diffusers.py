"""Each model family's ``--schedule img2img`` against diffusers' own img2img pipeline, tiny random weights.

For SDXL (base and refiner), SD3, FLUX.1, a Latent Consistency Model (SD 1.x
layout), an LCM-SDXL (SDXL UNet with ``time_cond_proj_dim``, LCMScheduler) and
Turbo-style SD and SDXL folders (trailing spacing, guidance 0, 1-4 steps, run
with ``--scheduler euler``), a tiny random-weight folder is built offline from
configs (``boomerang.testing.tiny_families``) and one batch of two 16x24 images
is run through diffusers' pipeline (``StableDiffusionXLImg2ImgPipeline``,
``StableDiffusion3Img2ImgPipeline``, ``FluxImg2ImgPipeline``,
``LatentConsistencyModelImg2ImgPipeline``, ``StableDiffusionImg2ImgPipeline``) and
through ``boomerang_sample`` with the same scheduler, level (strength) 0.6, steps
and per-item generators,
float32 on the CPU (boomerang with its batch-invariant kernels). Prints and
writes the max |difference| in [-1, 1] pixel units. The weights are random:
this checks the schedule, conditioning and noise, not image quality.

    .venv/bin/python benchmarks/families_vs_diffusers.py [--out DIR]

Writes families_vs_diffusers.json into --out (default benchmarks/out/).
"""

from __future__ import annotations

import sys
import tempfile
import warnings

from _common import add_out_argument, machine, make_parser, save_json


def _cases(root):
    from diffusers import (
        FluxImg2ImgPipeline,
        LatentConsistencyModelImg2ImgPipeline,
        StableDiffusion3Img2ImgPipeline,
        StableDiffusionImg2ImgPipeline,
        StableDiffusionXLImg2ImgPipeline,
    )

    from boomerang.schedulers import make_scheduler
    from boomerang.testing import tiny_families as tf

    def sdxl(m, scheduler="euler"):
        return StableDiffusionXLImg2ImgPipeline(
            vae=m.vae, text_encoder=m.text_encoder, text_encoder_2=m.text_encoder_2, tokenizer=m.tokenizer,
            tokenizer_2=m.tokenizer_2, unet=m.unet, scheduler=make_scheduler(scheduler, m.scheduler_config),
            requires_aesthetics_score=m.refiner, force_zeros_for_empty_prompt=m.force_zeros_for_empty_prompt)

    def sd(m):
        return StableDiffusionImg2ImgPipeline(
            vae=m.vae, text_encoder=m.text_encoder, tokenizer=m.tokenizer, unet=m.unet,
            scheduler=make_scheduler("euler", m.scheduler_config), safety_checker=None, feature_extractor=None,
            requires_safety_checker=False)

    def sd3(m):
        return StableDiffusion3Img2ImgPipeline(
            transformer=m.transformer, scheduler=make_scheduler("euler", m.scheduler_config), vae=m.vae,
            text_encoder=m.text_encoder, tokenizer=m.tokenizer, text_encoder_2=m.text_encoder_2,
            tokenizer_2=m.tokenizer_2, text_encoder_3=m.text_encoder_3, tokenizer_3=m.tokenizer_3)

    def flux(m):
        return FluxImg2ImgPipeline(
            transformer=m.transformer, scheduler=make_scheduler("euler", m.scheduler_config), vae=m.vae,
            text_encoder=m.text_encoder, tokenizer=m.tokenizer, text_encoder_2=m.text_encoder_2,
            tokenizer_2=m.tokenizer_2)

    def lcm(m):
        return LatentConsistencyModelImg2ImgPipeline(
            vae=m.vae, text_encoder=m.text_encoder, tokenizer=m.tokenizer, unet=m.unet,
            scheduler=make_scheduler("lcm", m.scheduler_config), safety_checker=None, feature_extractor=None,
            requires_safety_checker=False)

    neg = dict(negative_prompt="person")
    size = dict(height=16, width=24)
    return [
        ("SDXL base", tf.make_tiny_sdxl(root / "sdxl"), sdxl, 10, dict(guidance_scale=7.5, **neg), {}),
        ("SDXL refiner", tf.make_tiny_sdxl(root / "sdxlr", refiner=True), sdxl, 10, dict(guidance_scale=7.5, **neg), {}),
        ("SD3", tf.make_tiny_sd3(root / "sd3"), sd3, 10, dict(guidance_scale=7.0, **neg), size),
        ("FLUX.1", tf.make_tiny_flux(root / "flux"), flux, 10, dict(guidance_scale=3.5), size),
        ("LCM", tf.make_tiny_lcm(root / "lcm"), lcm, 4, dict(guidance_scale=8.0), {}),
        ("LCM-SDXL", tf.make_tiny_sdxl(root / "lcmxl", lcm=True), lambda m: sdxl(m, "lcm"), 4,
         dict(guidance_scale=8.0), {}),
        ("SD-Turbo", tf.make_tiny_turbo(root / "sdt", base="sd"), sd, 4, dict(guidance_scale=0.0),
         {"scheduler": "euler"}),
        ("SDXL-Turbo", tf.make_tiny_turbo(root / "sdxlt", base="sdxl"), sdxl, 4, dict(guidance_scale=0.0),
         {"scheduler": "euler"}),
    ]


def run_all(level: float = 0.6) -> dict:
    import pathlib

    import torch

    from boomerang.core import boomerang_sample
    from boomerang.models import load_model

    x = torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(1)) * 2 - 1
    gens = lambda: [torch.Generator().manual_seed(50 + i) for i in range(2)]  # noqa: E731
    results = {}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, folder, make_pipe, steps, kw, extra in _cases(pathlib.Path(tmp)):
            size = {k: v for k, v in extra.items() if k in ("height", "width")}
            ours = {k: v for k, v in extra.items() if k not in size}  # boomerang's own settings (Turbo: euler)
            m = load_model(folder)
            pipe = make_pipe(m)
            pipe.set_progress_bar_config(disable=True)
            pkw = {k: ([v] * 2 if k == "negative_prompt" else v) for k, v in kw.items()}
            ref = pipe(prompt=["cat"] * 2, image=x, strength=level, num_inference_steps=steps, generator=gens(),
                       output_type="pt", **pkw, **size).images * 2 - 1
            out = boomerang_sample(m, x, generators=gens(), level=level, schedule="img2img", steps=steps, prompt="cat",
                                   **kw, **ours).samples
            diff = float((out - ref).abs().max())
            results[name] = {"steps": steps, "level": level, "max_abs_diff": diff, **kw}
            print(f"{name:13s} img2img level {level}, {steps} steps, batch 2: max |diff| = {diff:.2e}")
    return results


def main(argv=None) -> int:
    ap = make_parser(__doc__)
    add_out_argument(ap)
    args = ap.parse_args(argv)
    save_json("families_vs_diffusers", {"machine": machine(), "results": run_all()}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
