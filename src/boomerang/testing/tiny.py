"""Tiny diffusion models with random weights, built offline from configs.

These models exist only for the tests and the benchmarks: their weights are
random (seeded), so their samples mean nothing, and building one downloads
nothing (torch, diffusers and transformers are imported inside the builders).

``make_tiny_pixel_model(path)`` writes a DDPMPipeline folder (UNet2DModel +
DDPMScheduler, safetensors); ``make_tiny_sd(path)`` writes a Stable-Diffusion
shaped folder (UNet2DConditionModel, AutoencoderKL, CLIPTextModel, a
CLIPTokenizer written from a small vocab.json + merges.txt by
:func:`write_tokenizer_files`, PNDMScheduler with SD 1.x settings,
:data:`SD_SCHEDULER`). Both load with ``boomerang.models.load_model`` and with
diffusers' own pipelines.
"""

from __future__ import annotations

import json
import pathlib

from boomerang.training.ldm_parts import bytes_to_unicode

__all__ = ["SD_SCHEDULER", "make_tiny_pixel_model", "make_tiny_sd", "write_tokenizer_files"]

#: The noise schedule of Stable Diffusion 1.x (PNDM/DDIM config keys), for SD-shaped test models.
SD_SCHEDULER = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False, clip_sample=False,
)


def make_tiny_pixel_model(path, *, size: int = 8, channels: int = 1, eps_scale: float = 1.0, seed: int = 0,
                          attention: bool = False, fully_convolutional: bool = False):
    """Write a tiny DDPMPipeline folder to ``path`` and return the path.

    Args:
        size: image side (8 or 16 ...), channels: 1 or 3.
        eps_scale: multiplies the UNet's output layer; 0 gives a model whose
            eps prediction is exactly zero (the reverse process then only
            rescales: x0_hat = x_t / sqrt(alpha_bar_t)), which makes "level 0.05
            stays close to the input" a real, analytic assertion.
        attention: self-attention in the second level's blocks.
        fully_convolutional: no self-attention anywhere (not even diffusers' default one in
            the middle block): the model then has no native size and runs at any even size,
            like the bundled photo model (``models.pixel.fully_convolutional``).
    """
    import torch
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(seed)  # random weights, seeded (test/benchmark models only)
    unet = UNet2DModel(
        sample_size=size, in_channels=channels, out_channels=channels, layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "AttnDownBlock2D" if attention else "DownBlock2D"),
        up_block_types=("AttnUpBlock2D" if attention else "UpBlock2D", "UpBlock2D"), norm_num_groups=4,
        attention_head_dim=8 if attention else None, add_attention=not fully_convolutional,
    )
    with torch.no_grad():
        unet.conv_out.weight.mul_(eps_scale)
        unet.conv_out.bias.mul_(eps_scale)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True)
    path = pathlib.Path(path)
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(path, safe_serialization=True)
    return path


def write_tokenizer_files(folder: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """Write a byte-level BPE vocabulary in CLIP's format into ``folder`` (created if
    missing): every byte (alone and with '</w>'), the special tokens, and a few merges.

    Returns:
        ``(vocab.json, merges.txt)`` paths, for ``CLIPTokenizer(vocab=..., merges=...)``.
    """
    chars = list(bytes_to_unicode().values())
    vocab_list = chars + [c + "</w>" for c in chars]
    merges = ["c a", "ca t</w>", "p e", "pe r", "s o"]
    for m in merges:
        vocab_list.append(m.replace(" ", ""))
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    folder.mkdir(parents=True, exist_ok=True)
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab_file.write_text(json.dumps(vocab), encoding="utf-8")
    merges_file.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return vocab_file, merges_file


def make_tiny_sd(path, *, seed: int = 0, scheduler: str = "pndm"):
    """Write a tiny Stable-Diffusion-shaped folder to ``path`` and return the path.

    Images are 3-channel, any side that is a multiple of 2 (VAE factor 2);
    latents have 4 channels. Text: CLIP with hidden size 16, 16 tokens.
    """
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    path = pathlib.Path(path)
    torch.manual_seed(seed)  # random weights, seeded (test/benchmark models only)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), latent_channels=4, norm_num_groups=4, sample_size=16,
    )
    tok_dir = path.parent / (path.name + "_tokenizer_src")
    vocab_file, merges_file = write_tokenizer_files(tok_dir)
    # transformers 5: vocab=/merges= (vocab_file= is silently ignored).
    tokenizer = CLIPTokenizer(vocab=str(vocab_file), merges=str(merges_file), model_max_length=16)
    text_config = CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=2,
        vocab_size=len(tokenizer), max_position_embeddings=16, projection_dim=16,
    )
    text_encoder = CLIPTextModel(text_config)
    sched_cls = {"pndm": PNDMScheduler, "ddim": DDIMScheduler}[scheduler]
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=sched_cls.from_config(SD_SCHEDULER),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return path
