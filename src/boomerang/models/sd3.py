"""The Stable Diffusion 3 / 3.5 family (part of :mod:`boomerang.models`): a flow-matching MMDiT.

Folders in diffusers' ``StableDiffusion3Pipeline`` layout: ``transformer``
(SD3Transformer2DModel), ``vae`` (AutoencoderKL, 16 latent channels, with
``shift_factor``), ``text_encoder`` and ``text_encoder_2``
(CLIPTextModelWithProjection) with ``tokenizer`` / ``tokenizer_2``,
``text_encoder_3`` (T5EncoderModel, may be null: its embeddings are then zeros,
as in diffusers) with ``tokenizer_3``, and a ``FlowMatchEulerDiscreteScheduler``.

* encode: (VAE posterior mode - ``shift_factor``) x ``scaling_factor`` (a
  posterior sample per item with generators, as diffusers' img2img pipeline);
* prompts, as diffusers' SD3 pipelines: the penultimate hidden states of both
  CLIP encoders side by side, zero-padded to T5's width and followed by T5's
  last hidden state (``max_sequence_length`` = 256 tokens, or the T5 tokenizer's
  ``model_max_length`` when that is smaller, as in ``flow-mnist5k-text``; with diffusers'
  pipeline pass that ``max_sequence_length``); the pooled
  embedding is both CLIP projections side by side; classifier-free guidance
  with the negative prompt (empty when none) for ``guidance_scale`` > 1;
* predict: the flow velocity (eps - x0) at the scheduler's timestep T sigma.

The noise level on this flow-matching model is defined in
:mod:`boomerang.planning` (``_plan_flow``) and the README's levels section.
Image sides must be multiples of the VAE factor times the patch size. Torch-free at import.
"""

from __future__ import annotations

import pathlib
from typing import Any

from boomerang.models.contract import ModelInfo
from boomerang.models.discovery import component_config
from boomerang.models.stable_diffusion import StableDiffusionModel

__all__ = ["SD3Model"]


def _entry(index: dict, name: str) -> str | None:
    entry = index.get(name)
    return entry[1] if isinstance(entry, list) and len(entry) == 2 else None


class SD3Model(StableDiffusionModel):
    """An SD3 / SD3.5 model: ``transformer``, ``vae``, ``text_encoder``, ``text_encoder_2``,
    ``text_encoder_3`` (or None), their tokenizers.

    Images [B, 3, H, W] in [-1, 1]; latents [B, 16, H/f, W/f] (f: the VAE factor).
    """

    family = "sd3"
    description = "SD3/SD3.5"
    networks = ("transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3")
    components = ("transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3")
    denoiser = "transformer"
    denoiser_label = "the transformer"
    #: T5 tokens of a prompt (diffusers' SD3 pipelines' default ``max_sequence_length``), unless
    #: the folder's T5 tokenizer has a smaller ``model_max_length`` (see :meth:`sequence_length`).
    max_sequence_length = 256

    def sequence_length(self) -> int:
        """T5 tokens of a prompt: ``min(256, tokenizer_3.model_max_length)`` (256 without T5). A model
        trained on shorter prompts (``flow-mnist5k-text``: 8) records that length in its T5 tokenizer."""
        limit = getattr(self.tokenizer_3, "model_max_length", None) if self.tokenizer_3 is not None else None
        return min(self.max_sequence_length, int(limit)) if limit else self.max_sequence_length

    def __init__(self, info: ModelInfo, *, transformer, vae, text_encoder, tokenizer, text_encoder_2, tokenizer_2,
                 text_encoder_3, tokenizer_3, **common):
        super().__init__(info, unet=None, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, **common)
        self.transformer = transformer
        self.text_encoder_2, self.tokenizer_2 = text_encoder_2, tokenizer_2
        self.text_encoder_3, self.tokenizer_3 = text_encoder_3, tokenizer_3

    # ------------------------------------------------------------------ loading

    @classmethod
    def find_layout(cls, root: pathlib.Path, index: dict | None) -> dict | None:
        if index is None or _entry(index, "transformer") != "SD3Transformer2DModel":
            return None
        for name in ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"):
            if _entry(index, name) is None:
                raise ValueError(f"{root}: model_index.json of an SD3 pipeline lists no {name}; the folder is incomplete")
        t5 = _entry(index, "text_encoder_3") is not None
        layout = {"kind": "latent", "scheduler": root / "scheduler"}
        for name in ("transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"):
            layout[name] = root / name
        layout["text_encoder_3"] = root / "text_encoder_3" if t5 else None
        layout["tokenizer_3"] = root / "tokenizer_3" if t5 else None
        return layout

    @classmethod
    def describe(cls, root: pathlib.Path, layout: dict) -> ModelInfo:
        transformer = component_config(layout["transformer"])
        sched = component_config(layout["scheduler"], "scheduler_config.json")
        vae = component_config(layout["vae"])
        factor = 2 ** (len(vae.get("block_out_channels", (1, 1, 1, 1))) - 1)
        width = int((vae.get("block_out_channels") or (128,))[0])
        multiple = factor * int(transformer.get("patch_size", 2))
        return ModelInfo(str(root), "latent", int(sched.get("num_train_timesteps", 1000)), int(vae.get("in_channels", 3)),
                         None, multiple, True, width, family=cls.family, pixel_space=False, space_factor=factor,
                         default_scheduler="euler")

    @classmethod
    def load_components(cls, layout: dict, *, load_component, device, torch_dtype) -> dict[str, Any]:
        import torch
        from diffusers import AutoencoderKL, SD3Transformer2DModel
        from transformers import CLIPTextModelWithProjection, CLIPTokenizer, T5EncoderModel, T5TokenizerFast

        # cast again below: from_pretrained(torch_dtype=...) left these transformers in float32 here
        transformer = load_component("transformer", SD3Transformer2DModel, low_cpu_mem_usage=False,
                                     torch_dtype=torch_dtype)
        vae = load_component("vae", AutoencoderKL, low_cpu_mem_usage=False, torch_dtype=torch.float32)
        out = {"transformer": transformer.to(device, torch_dtype).eval(), "vae": vae.to(device).eval(),
               "text_encoder_3": None, "tokenizer_3": None}
        for i, suffix in ((1, ""), (2, "_2")):
            te = load_component("text_encoder" + suffix, CLIPTextModelWithProjection, dtype=torch_dtype)
            out["text_encoder" + suffix] = te.to(device).eval()
            out["tokenizer" + suffix] = CLIPTokenizer.from_pretrained(layout["tokenizer" + suffix])
        if layout["text_encoder_3"] is not None:
            out["text_encoder_3"] = load_component("text_encoder_3", T5EncoderModel, dtype=torch_dtype).to(device).eval()
            out["tokenizer_3"] = T5TokenizerFast.from_pretrained(layout["tokenizer_3"])
        return out

    # ------------------------------------------------------------------ the contract

    def model_shape(self, image_shape) -> tuple[int, int, int]:
        """(latent channels, H / f, W / f). Raises ValueError unless H, W are multiples of ``size_multiple``."""
        m, f = self.size_multiple, self.space_factor
        h, w = int(image_shape[-2]), int(image_shape[-1])
        if h % m or w % m:
            raise ValueError(f"image sides must be multiples of {m} for this model, got {h}x{w}")
        return (int(self.transformer.config.in_channels), h // f, w // f)

    @property
    def prediction_channels(self) -> int:
        return int(self.transformer.config.out_channels)

    def encode_prompt(self, prompt: str = "", negative_prompt: str = "", guidance_scale: float = 1.0):
        """``(cond, uncond)``, each ``(prompt_embeds [1, L_clip + L_t5, D], pooled [1, P])`` in the
        transformer's dtype; ``uncond`` (the negative prompt, empty when none) only when
        ``guidance_scale > 1``. Cached per (prompt, negative prompt, guidance on/off)."""
        import torch
        import torch.nn.functional as F

        key = (prompt or "", negative_prompt or "", guidance_scale > 1)
        cache = self.__dict__.setdefault("_prompt_cache", {})
        if key in cache:
            return cache[key]
        width = int(self.transformer.config.joint_attention_dim)

        def embed(text: str):
            hidden, pooled = [], []
            with torch.no_grad():
                for tokenizer, name in ((self.tokenizer, "text_encoder"), (self.tokenizer_2, "text_encoder_2")):
                    ids = tokenizer(text, padding="max_length", max_length=self.tokenizer.model_max_length,
                                    truncation=True, return_tensors="pt").input_ids.to(self.device)
                    with self._resident(name):
                        out = getattr(self, name)(ids, output_hidden_states=True)
                    pooled.append(out[0])
                    hidden.append(out.hidden_states[-2])
                clip = torch.cat(hidden, dim=-1)
                if self.text_encoder_3 is None:
                    t5 = torch.zeros((1, self.sequence_length(), width), device=self.device, dtype=clip.dtype)
                else:
                    ids = self.tokenizer_3(text, padding="max_length", max_length=self.sequence_length(),
                                           truncation=True, add_special_tokens=True, return_tensors="pt").input_ids
                    with self._resident("text_encoder_3"):
                        t5 = self.text_encoder_3(ids.to(self.device))[0]
            clip = F.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))
            return (torch.cat([clip, t5.to(clip.dtype)], dim=-2).to(self.torch_dtype),
                    torch.cat(pooled, dim=-1).to(self.torch_dtype))

        cond = embed(prompt or "")
        uncond = embed(negative_prompt or "") if guidance_scale > 1 else None
        if len(cache) >= 8:
            cache.clear()
        cache[key] = (cond, uncond)
        return cond, uncond

    def _denoise(self, x, t, cond, uncond, guidance_scale, region):
        """The transformer's velocity on x at timestep t (T sigma); with ``uncond`` and w > 1,
        [uncond; cond] in one 2B batch."""
        import torch

        batch = x.shape[0]
        t = torch.as_tensor(t, device=x.device)
        with torch.no_grad():
            if uncond is not None and guidance_scale > 1:
                emb = torch.cat([uncond[0].expand(batch, -1, -1), cond[0].expand(batch, -1, -1)])
                pooled = torch.cat([uncond[1].expand(batch, -1), cond[1].expand(batch, -1)])
                out = self.transformer(hidden_states=torch.cat([x, x]), timestep=t.expand(2 * batch),
                                       encoder_hidden_states=emb, pooled_projections=pooled).sample.to(torch.float32)
                out_uncond, out_cond = out.chunk(2)
                return out_uncond + guidance_scale * (out_cond - out_uncond)
            return self.transformer(hidden_states=x, timestep=t.expand(batch),
                                    encoder_hidden_states=cond[0].expand(batch, -1, -1),
                                    pooled_projections=cond[1].expand(batch, -1)).sample.to(torch.float32)
