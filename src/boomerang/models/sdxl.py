"""The Stable Diffusion XL family (part of :mod:`boomerang.models`): base and refiner layouts.

Folders in diffusers' ``StableDiffusionXLPipeline`` / ``StableDiffusionXLImg2ImgPipeline``
layout: ``vae`` (AutoencoderKL), ``unet`` (UNet2DConditionModel with
``addition_embed_type='text_time'``), ``scheduler``, and

* **base**: ``text_encoder`` (CLIPTextModel) + ``tokenizer`` and ``text_encoder_2``
  (CLIPTextModelWithProjection) + ``tokenizer_2``; the prompt embedding is the
  penultimate hidden states of both encoders side by side, the pooled embedding
  the second encoder's projected text embedding;
* **refiner**: ``text_encoder_2`` + ``tokenizer_2`` only (``text_encoder`` null in
  ``model_index.json``; ``requires_aesthetics_score`` true).

Size conditioning (SDXL's micro-conditioning, Podell et al. 2023, Sec. 2.2), as
diffusers' img2img pipeline sets it by default: original size = target size =
the input image's own size (H, W in pixels), crop top-left (0, 0). Given a
``region`` (a window of a larger image), the size is the whole image's and the crop
is the window's top-left corner in pixels; ``enhance`` passes none, so each of its
windows is conditioned on its own size. The refiner's ``add_time_ids`` carry an
aesthetic score instead of the target size: 6.0 for the prompt and 2.5 for the
negative prompt (diffusers' defaults, :data:`AESTHETIC_SCORE`,
:data:`NEGATIVE_AESTHETIC_SCORE`). ``force_zeros_for_empty_prompt`` (from
``model_index.json``, true by default): with guidance and no negative prompt the
unconditional embeddings are zeros, as in diffusers.

encode / decode are Stable Diffusion's (VAE posterior mode or per-item sample
times ``scaling_factor``); the default scheduler is Euler, SDXL's own. A Latent Consistency
Model distilled from SDXL (a UNet with ``time_cond_proj_dim`` and an LCMScheduler: LCM-SDXL) takes
the guidance scale as the embedding of 1000 (w - 1) (``timestep_cond``) with no unconditional pass,
as diffusers' SDXL pipelines do for such a UNet; its default scheduler is ``lcm``. Torch-free at import.
"""

from __future__ import annotations

import pathlib
from typing import Any

from boomerang.models.contract import ModelInfo
from boomerang.models.discovery import component_config
from boomerang.models.stable_diffusion import StableDiffusionModel
from boomerang.scheduler_names import is_lcm_config

__all__ = ["SDXLModel", "AESTHETIC_SCORE", "NEGATIVE_AESTHETIC_SCORE"]

#: The refiner's aesthetic-score conditioning for the prompt and the negative prompt (diffusers' defaults).
AESTHETIC_SCORE = 6.0
NEGATIVE_AESTHETIC_SCORE = 2.5


def _present(index: dict, name: str) -> bool:
    """A component listed in ``model_index.json`` with a class (not ``[null, null]``)."""
    entry = index.get(name)
    return isinstance(entry, list) and len(entry) == 2 and entry[1] is not None


class SDXLModel(StableDiffusionModel):
    """An SDXL base or refiner model: ``unet``, ``vae``, ``text_encoder`` (None for the refiner),
    ``tokenizer`` (None for the refiner), ``text_encoder_2``, ``tokenizer_2``.

    Images [B, 3, H, W] in [-1, 1], H and W multiples of the VAE factor f; latents [B, 4, H/f, W/f].
    ``refiner`` is True for the refiner layout (aesthetic score in the time ids).
    """

    family = "sdxl"
    description = "SDXL (base and refiner)"
    networks = ("unet", "vae", "text_encoder", "text_encoder_2")
    components = ("unet", "vae", "text_encoder", "text_encoder_2")
    lcm_img2img_rule = "truncate"  # LCM-SDXL img2img runs in StableDiffusionXLImg2ImgPipeline

    def __init__(self, info: ModelInfo, *, unet, vae, text_encoder, tokenizer, text_encoder_2, tokenizer_2,
                 force_zeros_for_empty_prompt: bool = True, requires_aesthetics_score: bool = False, **common):
        super().__init__(info, unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, **common)
        self.text_encoder_2 = text_encoder_2
        self.tokenizer_2 = tokenizer_2
        self.force_zeros_for_empty_prompt = bool(force_zeros_for_empty_prompt)
        self.refiner = bool(requires_aesthetics_score)

    # ------------------------------------------------------------------ loading

    @classmethod
    def find_layout(cls, root: pathlib.Path, index: dict | None) -> dict | None:
        if index is None or "transformer" in index or not _present(index, "text_encoder_2") or "unet" not in index:
            return None
        base = _present(index, "text_encoder")
        for name in ("vae", "unet", "tokenizer_2") + (("tokenizer",) if base else ()):
            if not _present(index, name):
                raise ValueError(f"{root}: model_index.json of an SDXL pipeline lists no {name}; the folder is incomplete")
        layout = {"kind": "latent", "unet": root / "unet", "scheduler": root / "scheduler", "vae": root / "vae",
                  "text_encoder_2": root / "text_encoder_2", "tokenizer_2": root / "tokenizer_2",
                  "text_encoder": root / "text_encoder" if base else None,
                  "tokenizer": root / "tokenizer" if base else None,
                  "force_zeros_for_empty_prompt": bool(index.get("force_zeros_for_empty_prompt", True)),
                  "requires_aesthetics_score": bool(index.get("requires_aesthetics_score", False))}
        return layout

    @classmethod
    def describe(cls, root: pathlib.Path, layout: dict) -> ModelInfo:
        component_config(layout["unet"])
        component_config(layout["text_encoder_2"])
        sched = component_config(layout["scheduler"], "scheduler_config.json")
        vae = component_config(layout["vae"])
        factor = 2 ** (len(vae.get("block_out_channels", (1, 1, 1, 1))) - 1)
        width = int((vae.get("block_out_channels") or (128,))[0])
        return ModelInfo(str(root), "latent", int(sched.get("num_train_timesteps", 1000)), int(vae.get("in_channels", 3)),
                         None, factor, True, width, family=cls.family, pixel_space=False, space_factor=factor,
                         default_scheduler="lcm" if is_lcm_config(sched) else "euler")

    @classmethod
    def load_components(cls, layout: dict, *, load_component, device, torch_dtype) -> dict[str, Any]:
        import torch
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

        unet = load_component("unet", UNet2DConditionModel, low_cpu_mem_usage=False, torch_dtype=torch_dtype)
        vae = load_component("vae", AutoencoderKL, low_cpu_mem_usage=False, torch_dtype=torch.float32)
        te2 = load_component("text_encoder_2", CLIPTextModelWithProjection, dtype=torch_dtype)
        te = tok = None
        if layout["text_encoder"] is not None:
            te = load_component("text_encoder", CLIPTextModel, dtype=torch_dtype).to(device).eval()
            tok = CLIPTokenizer.from_pretrained(layout["tokenizer"])
        return {"vae": vae.to(device).eval(), "unet": unet.to(device).eval(), "text_encoder": te, "tokenizer": tok,
                "text_encoder_2": te2.to(device).eval(), "tokenizer_2": CLIPTokenizer.from_pretrained(layout["tokenizer_2"]),
                "force_zeros_for_empty_prompt": layout["force_zeros_for_empty_prompt"],
                "requires_aesthetics_score": layout["requires_aesthetics_score"]}

    # ------------------------------------------------------------------ conditioning

    def encode_prompt(self, prompt: str = "", negative_prompt: str = "", guidance_scale: float = 1.0):
        """``(cond, uncond)``, each ``(prompt_embeds [1, L, D], pooled [1, P])`` in the UNet's dtype.

        prompt_embeds: the penultimate hidden states of ``text_encoder`` and ``text_encoder_2``
        concatenated on the last axis (refiner: ``text_encoder_2`` only); pooled: the projected
        text embedding of ``text_encoder_2``. ``uncond`` is None when ``guidance_scale <= 1``;
        zeros when there is no negative prompt and ``force_zeros_for_empty_prompt`` (diffusers'
        pipelines with ``negative_prompt=None``). Cached per (prompt, negative prompt, guidance on/off).
        """
        import torch

        guided = guidance_scale > 1 and not self.guidance_embedded  # LCM: the guidance is embedded instead
        key = (prompt or "", negative_prompt or "", guided)
        cache = self.__dict__.setdefault("_prompt_cache", {})
        if key in cache:
            return cache[key]
        pairs = [(self.tokenizer, self.text_encoder, "text_encoder"),
                 (self.tokenizer_2, self.text_encoder_2, "text_encoder_2")]
        pairs = [p for p in pairs if p[1] is not None]

        def embed(text: str):
            hidden, pooled = [], None
            for tokenizer, encoder, name in pairs:
                ids = tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                                return_tensors="pt").input_ids.to(self.device)
                with torch.no_grad(), self._resident(name):
                    out = encoder(ids, output_hidden_states=True)
                if pooled is None and out[0].ndim == 2:
                    pooled = out[0]
                hidden.append(out.hidden_states[-2])
            return torch.cat(hidden, dim=-1).to(self.torch_dtype), pooled.to(self.torch_dtype)

        cond = embed(prompt or "")
        uncond = None
        if guided:
            if not negative_prompt and self.force_zeros_for_empty_prompt:
                uncond = (torch.zeros_like(cond[0]), torch.zeros_like(cond[1]))
            else:
                uncond = embed(negative_prompt or "")
        if len(cache) >= 8:
            cache.clear()
        cache[key] = (cond, uncond)
        return cond, uncond

    def time_ids(self, image_size: tuple[int, int], crop: tuple[int, int] = (0, 0), negative: bool = False) -> list[float]:
        """SDXL's ``add_time_ids`` for an image of ``image_size`` = (H, W) pixels: base
        (H, W, crop_top, crop_left, H, W); refiner (H, W, crop_top, crop_left, aesthetic score),
        the score :data:`AESTHETIC_SCORE` (``negative``: :data:`NEGATIVE_AESTHETIC_SCORE`)."""
        h, w = int(image_size[0]), int(image_size[1])
        if self.refiner:
            return [h, w, int(crop[0]), int(crop[1]), NEGATIVE_AESTHETIC_SCORE if negative else AESTHETIC_SCORE]
        return [h, w, int(crop[0]), int(crop[1]), h, w]

    def _denoise(self, x, t, cond, uncond, guidance_scale, region):
        """The UNet on x with prompt embeddings, pooled embeddings and time ids; with ``uncond`` and
        w > 1, [uncond; cond] in one 2B batch."""
        import torch

        f = self.space_factor
        if region is None:
            size, crop = (x.shape[-2] * f, x.shape[-1] * f), (0, 0)
        else:
            size, crop = (region.height * f, region.width * f), (region.top * f, region.left * f)
        batch = x.shape[0]
        dtype = cond[0].dtype

        def ids(negative):
            return torch.tensor([self.time_ids(size, crop, negative)], dtype=dtype, device=x.device).expand(batch, -1)

        with torch.no_grad():
            if uncond is not None and guidance_scale > 1:
                emb = torch.cat([uncond[0].expand(batch, -1, -1), cond[0].expand(batch, -1, -1)])
                pooled = torch.cat([uncond[1].expand(batch, -1), cond[1].expand(batch, -1)])
                added = {"text_embeds": pooled, "time_ids": torch.cat([ids(True), ids(False)])}
                out = self.unet(torch.cat([x, x]), t, encoder_hidden_states=emb,
                                added_cond_kwargs=added).sample.to(torch.float32)
                out_uncond, out_cond = out.chunk(2)
                return out_uncond + guidance_scale * (out_cond - out_uncond)
            added = {"text_embeds": cond[1].expand(batch, -1), "time_ids": ids(False)}
            extra = {"timestep_cond": self.guidance_embedding(guidance_scale, batch)} if self.guidance_embedded else {}
            return self.unet(x, t, encoder_hidden_states=cond[0].expand(batch, -1, -1),
                             added_cond_kwargs=added, **extra).sample.to(torch.float32)
