"""The parts of the small Stable-Diffusion-shaped model ``ldm-mnist5k-text``.

Captions built from digit labels, a CLIP byte-level BPE tokenizer whose
vocabulary and merges are written from the captions' words, and builders for
the four Stable Diffusion components (``AutoencoderKL``, ``CLIPTextModel``,
``UNet2DConditionModel``, and Stable Diffusion 1.x's own scheduler config:
scaled-linear betas 0.00085..0.012 over T = 1000 steps). Used by
:mod:`boomerang.training.ldm` and by the tests; torch/diffusers/transformers are
imported inside the builders only.

Images: MNIST digits (1x28x28, uint8) are padded by 2 pixels to 32x32 and
repeated to 3 channels (RGB, as Stable Diffusion's VAE expects), values in
[-1, 1]. The VAE downsamples by 4: latents are 4x8x8.
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass, field

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# Caption phrasings; ``{word}`` = the digit's English name, ``{digit}`` = the numeral.
CAPTION_TEMPLATES = (
    "a handwritten {word}",
    "the digit {word}",
    "the number {word}",
    "a {word}",
    "{word}",
    "the digit {digit}",
    "a handwritten {digit}",
)

# The prompt the benchmarks and the README use for class ``label``.
PROMPT_TEMPLATE = "a handwritten {word}"

MODEL_MAX_LENGTH = 16  # tokens, with <|startoftext|> and <|endoftext|>; the longest caption needs 5


def class_prompt(label: int) -> str:
    """``"a handwritten seven"`` for label 7 (the canonical class prompt)."""
    return PROMPT_TEMPLATE.format(word=DIGIT_WORDS[int(label)], digit=int(label))


def captions_for(label: int) -> list[str]:
    """Every caption phrasing of digit ``label`` (0..9), in template order."""
    return [t.format(word=DIGIT_WORDS[int(label)], digit=int(label)) for t in CAPTION_TEMPLATES]


def caption_words() -> list[str]:
    """The distinct words of all captions, in first-seen order (the tokenizer's whole-word tokens)."""
    words: dict[str, None] = {}
    for label in range(10):
        for c in captions_for(label):
            for w in c.split():
                words.setdefault(w, None)
    return list(words)


# --------------------------------------------------------------------------- tokenizer


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible table byte -> printable unicode character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def tokenizer_vocab_and_merges(words: list[str]) -> tuple[dict[str, int], list[str]]:
    """A CLIP-format byte-level BPE vocabulary: every byte (alone and word-final
    with ``</w>``), one left-to-right merge chain per word (``s e``, ``se v``,
    ..., ``seve n</w>``) so that each word becomes one token, and the special
    tokens. Any other text still tokenizes (into bytes and word pieces)."""
    b2u = bytes_to_unicode()
    chars = list(b2u.values())
    vocab_list = chars + [c + "</w>" for c in chars]
    merges: list[str] = []
    for word in words:
        symbols = [b2u[b] for b in word.encode("utf-8")]
        if len(symbols) < 2:
            continue
        prefix = symbols[0]
        for i, s in enumerate(symbols[1:], start=1):
            right = s + "</w>" if i == len(symbols) - 1 else s
            merge = f"{prefix} {right}"
            if merge not in merges:
                merges.append(merge)
            prefix = prefix + right
            vocab_list.append(prefix)
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    return vocab, merges


def build_tokenizer(workdir: pathlib.Path, words: list[str] | None = None):
    """A ``CLIPTokenizer`` for the caption words (files written under ``workdir``).

    With transformers 5 the files are passed as ``vocab=``/``merges=``
    (``vocab_file=`` is silently ignored there).
    """
    from transformers import CLIPTokenizer

    vocab, merges = tokenizer_vocab_and_merges(words if words is not None else caption_words())
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    vocab_file, merges_file = workdir / "vocab.json", workdir / "merges.txt"
    vocab_file.write_text(json.dumps(vocab), encoding="utf-8")
    merges_file.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return CLIPTokenizer(vocab=str(vocab_file), merges=str(merges_file), model_max_length=MODEL_MAX_LENGTH)


# --------------------------------------------------------------------------- components


@dataclass
class LdmShape:
    """Sizes of the components (defaults = the shipped ``ldm-mnist5k-text``).

    Attributes:
        vae_channels: AutoencoderKL ``block_out_channels``; the VAE downsamples
            by ``2 ** (len - 1)`` (32x32 images -> 8x8 latents with 3 entries).
        latent_channels: 4, as Stable Diffusion.
        unet_channels: UNet2DConditionModel ``block_out_channels``; every level
            but the last has cross-attention (Stable Diffusion's pattern).
        unet_layers: ResNet layers per UNet level.
        text_width: CLIP hidden size = the UNet's ``cross_attention_dim``.
        text_layers, text_heads: CLIP transformer depth and heads.
        unet_heads: attention heads in the UNet's transformer blocks.
    """

    vae_channels: list[int] = field(default_factory=lambda: [16, 32, 32])
    latent_channels: int = 4
    unet_channels: list[int] = field(default_factory=lambda: [32, 64, 64])
    unet_layers: int = 1
    unet_heads: int = 4
    text_width: int = 64
    text_layers: int = 2
    text_heads: int = 4


IMAGE_SIDE = 32
SD_SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False, clip_sample=False, prediction_type="epsilon",
)


def build_vae(shape: LdmShape):
    """``AutoencoderKL`` for 3x32x32 images in [-1, 1] -> 4 x (32 / 2**(levels-1))^2 latents."""
    from diffusers import AutoencoderKL

    n = len(shape.vae_channels)
    return AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=tuple(shape.vae_channels), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        latent_channels=shape.latent_channels, norm_num_groups=16, sample_size=IMAGE_SIDE,
    )


def build_unet(shape: LdmShape, latent_side: int):
    """``UNet2DConditionModel`` with cross-attention on all levels but the deepest (as SD 1.x)."""
    from diffusers import UNet2DConditionModel

    n = len(shape.unet_channels)
    down = tuple("CrossAttnDownBlock2D" if i < n - 1 else "DownBlock2D" for i in range(n))
    up = tuple("UpBlock2D" if i == 0 else "CrossAttnUpBlock2D" for i in range(n))
    return UNet2DConditionModel(
        sample_size=latent_side, in_channels=shape.latent_channels, out_channels=shape.latent_channels,
        layers_per_block=shape.unet_layers, block_out_channels=tuple(shape.unet_channels),
        down_block_types=down, up_block_types=up, cross_attention_dim=shape.text_width,
        attention_head_dim=shape.unet_heads, norm_num_groups=32,
    )


def build_text_encoder(shape: LdmShape, tokenizer):
    """A small ``CLIPTextModel`` over ``tokenizer``'s vocabulary (no dropout)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        hidden_size=shape.text_width, intermediate_size=4 * shape.text_width, num_attention_heads=shape.text_heads,
        num_hidden_layers=shape.text_layers, vocab_size=len(tokenizer), max_position_embeddings=MODEL_MAX_LENGTH,
        projection_dim=shape.text_width,
    )
    return CLIPTextModel(config)


def build_scheduler():
    """Stable Diffusion 1.x's scheduler (PNDM, scaled-linear betas 0.00085..0.012, T = 1000)."""
    from diffusers import PNDMScheduler

    return PNDMScheduler.from_config(SD_SCHEDULER_CONFIG)


def digits_to_rgb32(images):
    """uint8 digits ``[N, 1, 28, 28]`` (0..255) -> float32 tensor ``[N, 3, 32, 32]`` in [-1, 1].

    Zero-padded by 2 pixels on each side (background = -1), gray repeated to 3 channels.
    """
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(images).float() / 127.5 - 1.0
    pad = (IMAGE_SIDE - x.shape[-1]) // 2
    x = F.pad(x, (pad, pad, pad, pad), value=-1.0)
    return x.expand(-1, 3, -1, -1).contiguous()


def rgb32_to_digits(x):
    """Inverse view for the reference classifier: ``[N, 3, 32, 32]`` in [-1, 1] -> ``[N, 1, 28, 28]``
    in [-1, 1] (channel mean, centre crop of 28)."""
    pad = (x.shape[-1] - 28) // 2
    return x.mean(dim=1, keepdim=True)[..., pad:pad + 28, pad:pad + 28]
