"""The FLUX.1 family (part of :mod:`boomerang.models`): a flow-matching transformer on packed latents.

Folders in diffusers' ``FluxPipeline`` layout: ``transformer``
(FluxTransformer2DModel), ``vae`` (AutoencoderKL, 16 latent channels, with
``shift_factor``), ``text_encoder`` (CLIPTextModel: its pooled output) with
``tokenizer``, ``text_encoder_2`` (T5EncoderModel) with ``tokenizer_2``, and a
``FlowMatchEulerDiscreteScheduler`` with dynamic shifting.

* The model's space stays a grid [B, 16, h, w]: ``predict`` packs 2x2 latent
  patches into tokens [B, h/2 w/2, 64], numbers them with image ids (row,
  column of the patch; for a window of a tiled image, its position in the whole
  image), calls the transformer at timestep T sigma / 1000 and unpacks. Noise,
  schedulers and tiling never see tokens; diffusers' FLUX pipelines, too, draw
  their noise on the grid and pack it, and every flow-matching step is
  element-wise, so packing commutes with it.
* Guidance: guidance-distilled models (``guidance_embeds``, FLUX.1-dev) take
  ``guidance_scale`` as the embedded guidance, with no unconditional pass
  (``--guidance-scale`` means that there); models without it (schnell-like)
  ignore it. No classifier-free guidance and no negative prompt.
* Schedule: sigma depends on the image's size: mu = the linear map of the
  image's token count (h/2 x w/2) from (``base_image_seq_len``, ``base_shift``)
  to (``max_image_seq_len``, ``max_shift``), sigma = exp(mu) / (exp(mu) + (1/s - 1))
  (diffusers' ``time_shift``); :meth:`FluxModel.schedule_for`. Inference grid
  (img2img, from noise): unshifted linspace(1, 1/steps, steps), as the pipelines.

Image sides must be multiples of twice the VAE factor. Torch-free at import.
"""

from __future__ import annotations

import math
import pathlib
from typing import Any

from boomerang.models.contract import ModelInfo
from boomerang.models.discovery import component_config
from boomerang.models.sd3 import _entry
from boomerang.models.stable_diffusion import StableDiffusionModel

__all__ = ["FluxModel"]


class FluxModel(StableDiffusionModel):
    """A FLUX.1 model: ``transformer``, ``vae``, ``text_encoder`` + ``tokenizer`` (CLIP),
    ``text_encoder_2`` + ``tokenizer_2`` (T5).

    Images [B, 3, H, W] in [-1, 1]; latents [B, 16, H/f, W/f] on the grid (packed only inside ``predict``).
    """

    family = "flux"
    description = "FLUX.1"
    networks = ("transformer", "vae", "text_encoder", "text_encoder_2")
    components = ("transformer", "vae", "text_encoder", "text_encoder_2")
    denoiser = "transformer"
    denoiser_label = "the transformer"
    window_positions = True  # enhance: each window's tokens get the image ids of its place in the whole image
    #: T5 tokens of a prompt (diffusers' FLUX pipelines' default ``max_sequence_length``).
    max_sequence_length = 512

    def __init__(self, info: ModelInfo, *, transformer, vae, text_encoder, tokenizer, text_encoder_2, tokenizer_2,
                 **common):
        super().__init__(info, unet=None, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, **common)
        self.transformer = transformer
        self.text_encoder_2, self.tokenizer_2 = text_encoder_2, tokenizer_2

    # ------------------------------------------------------------------ loading

    @classmethod
    def find_layout(cls, root: pathlib.Path, index: dict | None) -> dict | None:
        if index is None or _entry(index, "transformer") != "FluxTransformer2DModel":
            return None
        for name in ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"):
            if _entry(index, name) is None:
                raise ValueError(f"{root}: model_index.json of a FLUX pipeline lists no {name}; the folder is incomplete")
        layout = {"kind": "latent", "scheduler": root / "scheduler"}
        for name in ("transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"):
            layout[name] = root / name
        return layout

    @classmethod
    def describe(cls, root: pathlib.Path, layout: dict) -> ModelInfo:
        component_config(layout["transformer"])
        sched = component_config(layout["scheduler"], "scheduler_config.json")
        vae = component_config(layout["vae"])
        factor = 2 ** (len(vae.get("block_out_channels", (1, 1, 1, 1))) - 1)
        width = int((vae.get("block_out_channels") or (128,))[0])
        return ModelInfo(str(root), "latent", int(sched.get("num_train_timesteps", 1000)), int(vae.get("in_channels", 3)),
                         None, 2 * factor, True, width, family=cls.family, pixel_space=False, space_factor=factor,
                         default_scheduler="euler")

    @classmethod
    def load_components(cls, layout: dict, *, load_component, device, torch_dtype) -> dict[str, Any]:
        import torch
        from diffusers import AutoencoderKL, FluxTransformer2DModel
        from transformers import CLIPTextModel, CLIPTokenizer, T5EncoderModel, T5TokenizerFast

        # cast again below: from_pretrained(torch_dtype=...) left these transformers in float32 here
        transformer = load_component("transformer", FluxTransformer2DModel, low_cpu_mem_usage=False,
                                     torch_dtype=torch_dtype)
        vae = load_component("vae", AutoencoderKL, low_cpu_mem_usage=False, torch_dtype=torch.float32)
        te = load_component("text_encoder", CLIPTextModel, dtype=torch_dtype)
        te2 = load_component("text_encoder_2", T5EncoderModel, dtype=torch_dtype)
        return {"transformer": transformer.to(device, torch_dtype).eval(), "vae": vae.to(device).eval(),
                "text_encoder": te.to(device).eval(), "tokenizer": CLIPTokenizer.from_pretrained(layout["tokenizer"]),
                "text_encoder_2": te2.to(device).eval(),
                "tokenizer_2": T5TokenizerFast.from_pretrained(layout["tokenizer_2"])}

    # ------------------------------------------------------------------ the schedule

    def token_count(self, image_shape) -> int:
        """Tokens of an image of ([C,] H, W) pixels: (H / f / 2) (W / f / 2)."""
        f = self.space_factor
        return (int(image_shape[-2]) // f // 2) * (int(image_shape[-1]) // f // 2)

    def shift_mu(self, image_shape) -> float:
        """mu of diffusers' dynamic shift for this image size (FLUX pipelines' ``calculate_shift``)."""
        c = self.scheduler_config
        base_len, max_len = c.get("base_image_seq_len", 256), c.get("max_image_seq_len", 4096)
        base_shift, max_shift = c.get("base_shift", 0.5), c.get("max_shift", 1.15)
        m = (max_shift - base_shift) / (max_len - base_len)
        return self.token_count(image_shape) * m + (base_shift - m * base_len)

    def schedule_for(self, image_shape):
        """The training schedule for images of ([C,] H, W): sigma_k = exp(mu) / (exp(mu) + (1/s_k - 1)),
        s_k = (k + 1) / T, mu = :meth:`shift_mu` (recorded as ``.mu``); the static one without dynamic shifting."""
        if not self.scheduler_config.get("use_dynamic_shifting"):
            return self.schedule
        mu = self.shift_mu(image_shape)
        T = self.num_train_timesteps
        sigmas = [math.exp(mu) / (math.exp(mu) + (1 / ((k + 1) / T) - 1)) for k in range(T)]
        return self.schedule.with_sigmas(sigmas, mu=mu)

    @staticmethod
    def flow_sigma_grid(steps: int) -> list[float]:
        """The unshifted inference sigmas of FLUX's pipelines: linspace(1, 1/steps, steps)."""
        import numpy as np

        return [float(s) for s in np.linspace(1.0, 1 / steps, steps)]

    # ------------------------------------------------------------------ the contract

    def model_shape(self, image_shape) -> tuple[int, int, int]:
        """(16, H / f, W / f). Raises ValueError unless H, W are multiples of ``size_multiple`` (2 f)."""
        m, f = self.size_multiple, self.space_factor
        h, w = int(image_shape[-2]), int(image_shape[-1])
        if h % m or w % m:
            raise ValueError(f"image sides must be multiples of {m} for this model, got {h}x{w}")
        return (int(self.transformer.config.in_channels) // 4, h // f, w // f)

    @property
    def prediction_channels(self) -> int:
        return int(self.transformer.config.in_channels) // 4

    def encode_prompt(self, prompt: str = "", negative_prompt: str = "", guidance_scale: float = 1.0):
        """``(cond, None)``: cond = (T5 embeddings [1, 512, D], CLIP pooled [1, P]) in the transformer's
        dtype. FLUX takes no negative prompt (no unconditional pass). Cached per prompt."""
        import torch

        cache = self.__dict__.setdefault("_prompt_cache", {})
        key = prompt or ""
        if key not in cache:
            with torch.no_grad():
                ids = self.tokenizer(key, padding="max_length", max_length=self.tokenizer.model_max_length,
                                     truncation=True, return_tensors="pt").input_ids.to(self.device)
                with self._resident("text_encoder"):
                    pooled = self.text_encoder(ids, output_hidden_states=False).pooler_output
                ids = self.tokenizer_2(key, padding="max_length", max_length=self.max_sequence_length,
                                       truncation=True, return_tensors="pt").input_ids.to(self.device)
                with self._resident("text_encoder_2"):
                    t5 = self.text_encoder_2(ids, output_hidden_states=False)[0]
            if len(cache) >= 8:
                cache.clear()
            cache[key] = ((t5.to(self.torch_dtype), pooled.to(self.torch_dtype)), None)
        return cache[key]

    def _denoise(self, x, t, cond, uncond, guidance_scale, region):
        """Pack x into 2x2 patch tokens with their image ids (``region``: offset by the window's place
        in the whole image), the transformer at t / 1000 with the embedded guidance, unpack."""
        import torch

        b, c, h, w = x.shape
        top, left = (region.top // 2, region.left // 2) if region is not None else (0, 0)
        tokens = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)
        img_ids = torch.zeros(h // 2, w // 2, 3)
        img_ids[..., 1] += torch.arange(top, top + h // 2)[:, None]
        img_ids[..., 2] += torch.arange(left, left + w // 2)[None, :]
        img_ids = img_ids.reshape(-1, 3).to(x.device, x.dtype)
        emb, pooled = cond
        txt_ids = torch.zeros(emb.shape[1], 3, device=x.device, dtype=emb.dtype)
        guidance = None
        if self.transformer.config.guidance_embeds:
            guidance = torch.full([1], float(guidance_scale), device=x.device, dtype=torch.float32).expand(b)
        t = torch.as_tensor(t, device=x.device).expand(b).to(x.dtype)
        with torch.no_grad():
            out = self.transformer(hidden_states=tokens, timestep=t / 1000, guidance=guidance,
                                   pooled_projections=pooled.expand(b, -1), encoder_hidden_states=emb.expand(b, -1, -1),
                                   txt_ids=txt_ids, img_ids=img_ids).sample
        out = out.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)
        return out.to(torch.float32)
