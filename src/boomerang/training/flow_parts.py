"""The parts of the small SD3-shaped flow-matching model ``flow-mnist5k-text``.

Stable Diffusion 3's layout and component classes (Esser et al. 2024), sized for
32x32 digits, as built by :mod:`boomerang.training.flow`:

* ``vae``: the trained ``AutoencoderKL`` of ``ldm-mnist5k-text`` (4 latent channels,
  32x32 -> 8x8), reused frozen, with ``shift_factor`` = the mean and ``scaling_factor``
  = 1 / std of its posterior means over the training split (SD3's VAE has both);
* ``text_encoder``: ``CLIPTextModelWithProjection`` holding the trained CLIP text
  encoder of ``ldm-mnist5k-text`` plus a seeded random projection; ``text_encoder_2``:
  a seeded random ``CLIPTextModelWithProjection`` of the same shape; both share the
  caption tokenizer of ``ldm-mnist5k-text`` (``model_max_length`` :data:`TEXT_TOKENS`);
* ``text_encoder_3``: a seeded random one-layer ``T5EncoderModel`` (width
  :data:`JOINT_WIDTH`) with a T5 tokenizer on a small Unigram model of the caption words
  (``model_max_length`` :data:`TEXT_TOKENS`); all three encoders are frozen;
* ``transformer``: ``SD3Transformer2DModel`` (MMDiT), trained;
* ``scheduler``: ``FlowMatchEulerDiscreteScheduler`` with SD3's ``shift`` 3.0.

Torch, diffusers and transformers are imported inside the builders only.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

__all__ = ["FlowShape", "TEXT_TOKENS", "JOINT_WIDTH", "FLOW_SCHEDULER_CONFIG", "build_transformer",
           "build_text_encoders", "build_t5_tokenizer", "caption_embeddings", "embed_prompts"]

#: Tokens of a prompt for each tokenizer (the longest caption needs 5 with CLIP's start/end tokens).
TEXT_TOKENS = 8
#: T5 width = the transformer's ``joint_attention_dim`` (>= the two CLIP widths side by side).
JOINT_WIDTH = 128
#: SD3's flow-matching schedule (FlowMatchEulerDiscreteScheduler, static shift 3.0, T = 1000).
FLOW_SCHEDULER_CONFIG = dict(num_train_timesteps=1000, shift=3.0)


@dataclass
class FlowShape:
    """Sizes of the transformer (defaults = the shipped ``flow-mnist5k-text``).

    Attributes:
        layers: joint (MMDiT) blocks.
        heads, head_dim: attention heads and their width (inner width = heads * head_dim).
        patch_size: latent patch side (2, as SD3: 8x8 latents -> 16 image tokens).
    """

    layers: int = 6
    heads: int = 4
    head_dim: int = 32
    patch_size: int = 2


def build_transformer(shape: FlowShape, latent_channels: int, latent_side: int, pooled_width: int):
    """``SD3Transformer2DModel`` for ``[B, latent_channels, side, side]`` latents, text tokens of
    width :data:`JOINT_WIDTH` and pooled embeddings of ``pooled_width``."""
    from diffusers import SD3Transformer2DModel

    inner = shape.heads * shape.head_dim
    return SD3Transformer2DModel(
        sample_size=latent_side, patch_size=shape.patch_size, in_channels=latent_channels,
        out_channels=latent_channels, num_layers=shape.layers, attention_head_dim=shape.head_dim,
        num_attention_heads=shape.heads, joint_attention_dim=JOINT_WIDTH, caption_projection_dim=inner,
        pooled_projection_dim=pooled_width, pos_embed_max_size=max(8, latent_side // shape.patch_size * 2),
    )


def build_t5_tokenizer(folder, words):
    """A ``T5TokenizerFast`` on a Unigram model built here: ``<pad>`` (0), ``</s>`` (1), ``<unk>`` (2),
    the metaspace, lowercase letters and digits, and each of ``words`` whole (``model_max_length``
    :data:`TEXT_TOKENS`); saved to ``folder``."""
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -3.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    pieces += [("\u2581" + w, -1.0) for w in words]
    tokenizer = T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=TEXT_TOKENS)
    tokenizer.save_pretrained(str(folder))
    return tokenizer


def build_text_encoders(ldm_dir, seed: int):
    """The frozen text side: ``{"text_encoder", "text_encoder_2", "text_encoder_3", "tokenizer",
    "tokenizer_3"}`` (``tokenizer`` serves both CLIP encoders). Random parts are drawn from ``seed``
    without touching the global RNG."""
    import tempfile

    import torch
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer, T5Config, T5EncoderModel

    from boomerang.training.ldm_parts import caption_words

    ldm_dir = pathlib.Path(ldm_dir)
    tokenizer = CLIPTokenizer.from_pretrained(ldm_dir / "tokenizer", model_max_length=TEXT_TOKENS)
    config = CLIPTextConfig.from_pretrained(ldm_dir / "text_encoder")
    from safetensors.torch import load_file

    trained = load_file(str(ldm_dir / "text_encoder" / "model.safetensors"))
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer_3 = build_t5_tokenizer(tmp, caption_words())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = CLIPTextModelWithProjection(config)
        text_encoder_2 = CLIPTextModelWithProjection(config)
        text_encoder_3 = T5EncoderModel(T5Config(
            vocab_size=len(tokenizer_3), d_model=JOINT_WIDTH, d_ff=2 * JOINT_WIDTH, d_kv=32, num_heads=4,
            num_layers=1, relative_attention_num_buckets=8, pad_token_id=tokenizer_3.pad_token_id,
            eos_token_id=tokenizer_3.eos_token_id, decoder_start_token_id=0, dropout_rate=0.0,
        ))
    trained = {k.removeprefix("text_model."): v for k, v in trained.items()}
    missing, unexpected = text_encoder.text_model.load_state_dict(trained, strict=False)
    if unexpected or missing:
        raise ValueError(f"{ldm_dir}/text_encoder does not fit CLIPTextModelWithProjection: "
                         f"missing {missing}, unexpected {unexpected}")
    for m in (text_encoder, text_encoder_2, text_encoder_3):
        m.eval().requires_grad_(False)
    return {"text_encoder": text_encoder, "text_encoder_2": text_encoder_2, "text_encoder_3": text_encoder_3,
            "tokenizer": tokenizer, "tokenizer_3": tokenizer_3}


def embed_prompts(texts, enc) -> tuple:
    """SD3's prompt embeddings, as diffusers' ``StableDiffusion3Pipeline`` and
    :class:`boomerang.models.sd3.SD3Model` build them with ``max_sequence_length`` = :data:`TEXT_TOKENS`:
    the penultimate hidden states of both CLIP encoders side by side, zero-padded to T5's width, then
    T5's last hidden state -> ``[N, 2 * TEXT_TOKENS, JOINT_WIDTH]``; pooled: both CLIP projections side
    by side -> ``[N, 2 * CLIP width]``."""
    import torch
    import torch.nn.functional as F

    hidden, pooled = [], []
    with torch.no_grad():
        ids = enc["tokenizer"](list(texts), padding="max_length", max_length=TEXT_TOKENS, truncation=True,
                               return_tensors="pt").input_ids
        for name in ("text_encoder", "text_encoder_2"):
            out = enc[name](ids, output_hidden_states=True)
            pooled.append(out[0])
            hidden.append(out.hidden_states[-2])
        clip = torch.cat(hidden, dim=-1)
        ids3 = enc["tokenizer_3"](list(texts), padding="max_length", max_length=TEXT_TOKENS, truncation=True,
                                  add_special_tokens=True, return_tensors="pt").input_ids
        t5 = enc["text_encoder_3"](ids3)[0]
    clip = F.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))
    return torch.cat([clip, t5], dim=-2), torch.cat(pooled, dim=-1)


def caption_embeddings(enc):
    """Embeddings of every training caption and of the empty caption, once (the encoders are frozen):
    ``(tokens [10, n_templates, 2L, W], pooled [10, n_templates, P], empty_tokens [2L, W], empty_pooled [P])``."""
    import torch

    from boomerang.training.ldm_parts import captions_for

    tok, pool = zip(*(embed_prompts(captions_for(d), enc) for d in range(10)))
    e_tok, e_pool = embed_prompts([""], enc)
    return torch.stack(tok), torch.stack(pool), e_tok[0], e_pool[0]
