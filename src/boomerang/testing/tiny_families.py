"""Tiny random-weight SDXL, SD3 and FLUX.1 folders, built offline from configs (tests and benchmarks only).

Like :mod:`boomerang.testing.tiny`: seeded random weights, so samples mean
nothing; nothing is downloaded; tokenizers are written locally (CLIP from a
vocab and merges, :func:`boomerang.testing.tiny.write_tokenizer_files`; T5 from a
small ``tokenizers`` Unigram model, :func:`write_t5_tokenizer`). Every folder
loads with ``boomerang.models.load_model`` and with diffusers' own pipelines
(``StableDiffusionXLImg2ImgPipeline``, ``StableDiffusion3Img2ImgPipeline``, ``FluxImg2ImgPipeline``).
"""

from __future__ import annotations

import json
import pathlib

from boomerang.testing.tiny import write_tokenizer_files

__all__ = ["SDXL_SCHEDULER", "SD3_SCHEDULER", "FLUX_SCHEDULER", "LCM_SDXL_SCHEDULER", "TURBO_SCHEDULER",
           "make_tiny_sdxl", "make_tiny_sd3", "make_tiny_flux", "make_tiny_lcm", "make_tiny_turbo", "write_t5_tokenizer"]

#: SDXL's noise schedule and its default scheduler (EulerDiscreteScheduler, leading spacing).
SDXL_SCHEDULER = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    steps_offset=1, timestep_spacing="leading", interpolation_type="linear", prediction_type="epsilon",
)
#: SD3's flow-matching schedule (FlowMatchEulerDiscreteScheduler, static shift 3.0).
SD3_SCHEDULER = dict(num_train_timesteps=1000, shift=3.0)


def _clip_tokenizer(path: pathlib.Path, max_length: int = 16):
    from transformers import CLIPTokenizer

    vocab_file, merges_file = write_tokenizer_files(path.parent / (path.name + "_tokenizer_src"))
    return CLIPTokenizer(vocab=str(vocab_file), merges=str(merges_file), model_max_length=max_length)


def _clip_config(tokenizer, hidden: int = 16, projection: int = 16):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        hidden_size=hidden, intermediate_size=2 * hidden, num_attention_heads=2, num_hidden_layers=2,
        vocab_size=len(tokenizer), max_position_embeddings=16, projection_dim=projection,
    )


def _vae(latent_channels: int = 4, **extra):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), latent_channels=latent_channels, norm_num_groups=4,
        sample_size=16, **extra,
    )


#: LCM-SDXL's LCMScheduler (SDXL's betas, 50 distilled steps: 999, 979, ..., 19).
LCM_SDXL_SCHEDULER = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    original_inference_steps=50, steps_offset=1, timestep_spacing="leading", prediction_type="epsilon",
    clip_sample=False, set_alpha_to_one=True,
)
#: SD-Turbo's / SDXL-Turbo's scheduler: Euler ancestral with trailing spacing (their few steps start at 999).
TURBO_SCHEDULER = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    steps_offset=1, timestep_spacing="trailing", prediction_type="epsilon",
)


def make_tiny_sdxl(path, *, seed: int = 0, refiner: bool = False, lcm: bool = False):
    """Write a tiny SDXL folder (base layout, or with ``refiner`` the refiner layout) and return the path.

    Base: two CLIP text encoders (hidden 16 each; the second with a 16-d projection: the
    pooled embedding), cross-attention 32; refiner: ``text_encoder_2`` only (cross-attention
    16) and ``requires_aesthetics_score``. UNet with ``addition_embed_type='text_time'``
    (time-id embedding 4: 6 ids for the base, 5 for the refiner), VAE factor 2 (any side that
    is a multiple of 2), EulerDiscreteScheduler with :data:`SDXL_SCHEDULER`. ``lcm``: an LCM-SDXL-shaped
    base (UNet with ``time_cond_proj_dim`` 8, LCMScheduler with :data:`LCM_SDXL_SCHEDULER`).
    """
    import torch
    from diffusers import (
        EulerDiscreteScheduler,
        LCMScheduler,
        StableDiffusionXLImg2ImgPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    path = pathlib.Path(path)
    torch.manual_seed(seed)  # random weights, seeded (test/benchmark models only)
    tokenizer = _clip_tokenizer(path)
    text_encoder_2 = CLIPTextModelWithProjection(_clip_config(tokenizer))
    text_encoder = None if refiner else CLIPTextModel(_clip_config(tokenizer))
    n_ids = 5 if refiner else 6
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16 if refiner else 32, attention_head_dim=2, norm_num_groups=4, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=4,
        projection_class_embeddings_input_dim=4 * n_ids + 16, time_cond_proj_dim=8 if lcm else None,
    )
    scheduler = LCMScheduler(**LCM_SDXL_SCHEDULER) if lcm else EulerDiscreteScheduler(**SDXL_SCHEDULER)
    if refiner:
        pipe = StableDiffusionXLImg2ImgPipeline(
            vae=_vae(), text_encoder=None, text_encoder_2=text_encoder_2, tokenizer=None, tokenizer_2=tokenizer,
            unet=unet, scheduler=scheduler, requires_aesthetics_score=True, force_zeros_for_empty_prompt=False,
        )
    else:
        pipe = StableDiffusionXLPipeline(
            vae=_vae(), text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
            tokenizer_2=tokenizer, unet=unet, scheduler=scheduler, force_zeros_for_empty_prompt=True,
        )
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def write_t5_tokenizer(folder=None, *, words=("cat", "person", "a", "photo", "of", "digit", "seven", "two")):
    """A T5 tokenizer on a small Unigram model (``tokenizers``), built locally: ``<pad>`` (0),
    ``</s>`` (1), ``<unk>`` (2), the metaspace ``▁``, the lowercase letters and digits, and a few
    whole words (``▁cat`` ...), each with a log-probability score; no extra ids. Saved to
    ``folder`` when given. Returns the ``T5TokenizerFast``.
    """
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -3.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    pieces += [("\u2581" + w, -1.0) for w in words]
    tokenizer = T5TokenizerFast(vocab=pieces, extra_ids=0)
    if folder is not None:
        tokenizer.save_pretrained(str(folder))
    return tokenizer


def make_tiny_sd3(path, *, seed: int = 0, t5: bool = True):
    """Write a tiny SD3-shaped folder and return the path.

    SD3Transformer2DModel (patch 2, 1 layer, 4 heads of 8, joint attention 32, pooled 32),
    AutoencoderKL with 16 latent channels, ``shift_factor`` 0.0609 and ``scaling_factor`` 1.5305
    (SD3's), VAE factor 2 (sides multiples of 4), two CLIPTextModelWithProjection (hidden 16,
    projection 16), T5EncoderModel (d_model 32; ``t5=False``: none, diffusers then uses zeros) with
    the Unigram tokenizer of :func:`write_t5_tokenizer`, FlowMatchEulerDiscreteScheduler with
    :data:`SD3_SCHEDULER` (shift 3).
    """
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection, T5Config, T5EncoderModel

    path = pathlib.Path(path)
    torch.manual_seed(seed)  # random weights, seeded (test/benchmark models only)
    tokenizer = _clip_tokenizer(path)
    text_encoder = CLIPTextModelWithProjection(_clip_config(tokenizer))
    text_encoder_2 = CLIPTextModelWithProjection(_clip_config(tokenizer))
    t5_tokenizer = write_t5_tokenizer() if t5 else None
    text_encoder_3 = None
    if t5:
        text_encoder_3 = T5EncoderModel(T5Config(
            vocab_size=len(t5_tokenizer), d_model=32, d_ff=37, d_kv=8, num_heads=4, num_layers=1,
            relative_attention_num_buckets=8, pad_token_id=t5_tokenizer.pad_token_id,
            eos_token_id=t5_tokenizer.eos_token_id, decoder_start_token_id=0,
        ))
    transformer = SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=16, num_layers=1, attention_head_dim=8, num_attention_heads=4,
        joint_attention_dim=32, caption_projection_dim=32, pooled_projection_dim=32, out_channels=16,
        pos_embed_max_size=16,
    )
    vae = _vae(latent_channels=16, shift_factor=0.0609, scaling_factor=1.5305, use_quant_conv=False,
               use_post_quant_conv=False)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(**SD3_SCHEDULER), vae=vae,
        text_encoder=text_encoder, tokenizer=tokenizer, text_encoder_2=text_encoder_2, tokenizer_2=tokenizer,
        text_encoder_3=text_encoder_3, tokenizer_3=t5_tokenizer,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return path


#: FLUX.1's flow-matching schedule: dynamic shifting from the image's token count.
FLUX_SCHEDULER = dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_image_seq_len=256,
                      max_image_seq_len=4096, base_shift=0.5, max_shift=1.15)


def make_tiny_flux(path, *, seed: int = 0, guidance_embeds: bool = True):
    """Write a tiny FLUX.1-shaped folder and return the path.

    FluxTransformer2DModel (64 packed channels = 16 latent x 2x2, 1 double + 1 single block, 2 heads
    of 16, rope axes (4, 6, 6), joint attention 32, pooled 16, ``guidance_embeds`` as asked: dev-like
    or schnell-like), AutoencoderKL with 16 latent channels, ``shift_factor`` 0.1159 and
    ``scaling_factor`` 0.3611 (FLUX's), VAE factor 2 (sides multiples of 4), CLIPTextModel (hidden
    16), T5EncoderModel (d_model 32) with the Unigram tokenizer of :func:`write_t5_tokenizer`,
    FlowMatchEulerDiscreteScheduler with :data:`FLUX_SCHEDULER` (dynamic shift).
    """
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5Config, T5EncoderModel

    path = pathlib.Path(path)
    torch.manual_seed(seed)  # random weights, seeded (test/benchmark models only)
    tokenizer = _clip_tokenizer(path)
    text_encoder = CLIPTextModel(_clip_config(tokenizer))
    t5_tokenizer = write_t5_tokenizer()
    text_encoder_2 = T5EncoderModel(T5Config(
        vocab_size=len(t5_tokenizer), d_model=32, d_ff=37, d_kv=8, num_heads=4, num_layers=1,
        relative_attention_num_buckets=8, pad_token_id=t5_tokenizer.pad_token_id,
        eos_token_id=t5_tokenizer.eos_token_id, decoder_start_token_id=0,
    ))
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, pooled_projection_dim=16, guidance_embeds=guidance_embeds, axes_dims_rope=(4, 6, 6),
    )
    vae = _vae(latent_channels=16, shift_factor=0.1159, scaling_factor=0.3611, use_quant_conv=False,
               use_post_quant_conv=False)
    pipe = FluxPipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER), vae=vae,
        text_encoder=text_encoder, tokenizer=tokenizer, text_encoder_2=text_encoder_2, tokenizer_2=t5_tokenizer,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def make_tiny_lcm(path, *, seed: int = 0):
    """Write a tiny Latent-Consistency-Model-shaped Stable Diffusion folder and return the path: the tiny SD
    layout of :func:`boomerang.testing.tiny.make_tiny_sd` with a UNet that takes the guidance embedding
    (``time_cond_proj_dim`` 8) and an LCMScheduler (SD 1.x's betas, 50 distilled steps: 999, 979, ..., 19)."""
    import torch
    from diffusers import LatentConsistencyModelPipeline, LCMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    from boomerang.testing.tiny import SD_SCHEDULER

    path = pathlib.Path(path)
    torch.manual_seed(seed)  # random weights, seeded (test/benchmark models only)
    tokenizer = _clip_tokenizer(path)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4, time_cond_proj_dim=8,
    )
    config = {k: v for k, v in SD_SCHEDULER.items() if k not in ("skip_prk_steps",)}
    pipe = LatentConsistencyModelPipeline(
        vae=_vae(), text_encoder=CLIPTextModel(_clip_config(tokenizer)), tokenizer=tokenizer, unet=unet,
        scheduler=LCMScheduler(**config, original_inference_steps=50), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def make_tiny_turbo(path, *, base: str = "sdxl", seed: int = 0):
    """Write a tiny Turbo-style folder (SD-Turbo / SDXL-Turbo: adversarially distilled for 1-4 steps
    without guidance) and return the path: the tiny SD (``base='sd'``,
    :func:`boomerang.testing.tiny.make_tiny_sd`) or SDXL base layout with their scheduler replaced by
    Turbo's EulerAncestralDiscreteScheduler, trailing spacing (:data:`TURBO_SCHEDULER`)."""
    from diffusers import EulerAncestralDiscreteScheduler

    from boomerang.testing.tiny import make_tiny_sd

    path = pathlib.Path(path)
    if base == "sd":
        make_tiny_sd(path, seed=seed)
    elif base == "sdxl":
        make_tiny_sdxl(path, seed=seed)
    else:
        raise ValueError(f"base must be 'sd' or 'sdxl', got {base!r}")
    EulerAncestralDiscreteScheduler(**TURBO_SCHEDULER).save_pretrained(path / "scheduler")
    index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
    index["scheduler"] = ["diffusers", "EulerAncestralDiscreteScheduler"]
    (path / "model_index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
    return path
