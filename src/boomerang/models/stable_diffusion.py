"""The Stable Diffusion 1.x / 2.x family (part of :mod:`boomerang.models`): a latent, text-conditioned UNet.

Folders in diffusers' ``StableDiffusionPipeline`` layout: ``vae``
(AutoencoderKL), ``text_encoder`` (CLIPTextModel), ``tokenizer``
(CLIPTokenizer), ``unet`` (UNet2DConditionModel), ``scheduler``. encode is the
VAE posterior mode times the VAE scaling factor (as in the authors' notebook;
a posterior sample per item with generators, as diffusers' img2img pipeline);
decode inverts it. Prompts are CLIP embeddings; classifier-free guidance runs
[uncond; cond] in one batch. ``predict`` returns what the scheduler config's
``prediction_type`` says (eps for SD 1.x, v for SD 2.x 768). Torch-free at import.
"""

from __future__ import annotations

import pathlib
from typing import Any

from boomerang.models.contract import DiffusionModel, ModelInfo
from boomerang.models.discovery import component_config
from boomerang.models.invariant import per_item
from boomerang.scheduler_names import is_lcm_config

__all__ = ["StableDiffusionModel"]


class StableDiffusionModel(DiffusionModel):
    """A Stable Diffusion 1.x/2.x model: ``unet``, ``vae``, ``text_encoder``, ``tokenizer``.

    Images [B, 3, H, W] in [-1, 1] with H, W multiples of the VAE factor f
    (``space_factor``); latents [B, 4, H/f, W/f] in the UNet's scaled latent space.
    The VAE is kept in float32 (float16 VAEs overflow to NaN) and, when the model is
    batch invariant, runs item by item (the fastest invariant way measured).
    """

    family = "stable_diffusion"
    description = "Stable Diffusion 1.x/2.x"
    networks = ("unet", "vae", "text_encoder")
    components = ("unet", "vae", "text_encoder")

    def __init__(self, info: ModelInfo, *, unet, vae, text_encoder, tokenizer, **common):
        super().__init__(info, **common)
        self.unet = unet
        self.vae = vae
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer

    # ------------------------------------------------------------------ loading

    @classmethod
    def find_layout(cls, root: pathlib.Path, index: dict | None) -> dict | None:
        if index is None or "text_encoder_2" in index or "transformer" in index:
            return None  # SDXL, SD3 and transformer pipelines are other families
        if "unet" in index and "vae" in index and "text_encoder" in index and "tokenizer" in index:
            return {"kind": "latent", "unet": root / "unet", "scheduler": root / "scheduler",
                    "vae": root / "vae", "text_encoder": root / "text_encoder", "tokenizer": root / "tokenizer"}
        return None

    @classmethod
    def describe(cls, root: pathlib.Path, layout: dict) -> ModelInfo:
        component_config(layout["unet"])  # present and readable
        sched = component_config(layout["scheduler"], "scheduler_config.json")
        vae = component_config(layout["vae"])
        factor = 2 ** (len(vae.get("block_out_channels", (1, 1, 1, 1))) - 1)
        width = int((vae.get("block_out_channels") or (128,))[0])
        return ModelInfo(str(root), "latent", int(sched.get("num_train_timesteps", 1000)), int(vae.get("in_channels", 3)),
                         None, factor, True, width, family=cls.family, pixel_space=False, space_factor=factor,
                         default_scheduler="lcm" if is_lcm_config(sched) else "ddpm")

    @classmethod
    def load_components(cls, layout: dict, *, load_component, device, torch_dtype) -> dict[str, Any]:
        import torch
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        unet = load_component("unet", UNet2DConditionModel, low_cpu_mem_usage=False, torch_dtype=torch_dtype)
        vae = load_component("vae", AutoencoderKL, low_cpu_mem_usage=False, torch_dtype=torch.float32)
        text_encoder = load_component("text_encoder", CLIPTextModel, dtype=torch_dtype)
        tokenizer = CLIPTokenizer.from_pretrained(layout["tokenizer"])
        return {"vae": vae.to(device).eval(), "text_encoder": text_encoder.to(device).eval(), "tokenizer": tokenizer,
                "unet": unet.to(device).eval()}

    # ------------------------------------------------------------------ the contract

    def model_shape(self, image_shape) -> tuple[int, int, int]:
        """(latent channels, H / f, W / f). Raises ValueError unless H, W are multiples of ``size_multiple``."""
        m, f = self.size_multiple, self.space_factor
        h, w = int(image_shape[-2]), int(image_shape[-1])
        if h % m or w % m:
            raise ValueError(f"image sides must be multiples of {m} for this model, got {h}x{w}")
        return (int(self.unet.config.in_channels), h // f, w // f)

    @property
    def prediction_channels(self) -> int:
        return int(self.unet.config.out_channels)

    def _vae_per_item(self) -> bool:
        """The VAE runs item by item whenever the model is batch invariant (see the class docstring)."""
        return self._strategy() is not None

    def encode(self, x, *, generators=None):
        """Images [B, 3, H, W] in [-1, 1] -> latents [B, 4, H/f, W/f] (float32, on ``device``).

        The VAE posterior **mode** times ``scaling_factor`` (the authors' notebook);
        with ``generators`` (one per item) a posterior **sample** drawn from each
        item's generator instead (diffusers' img2img pipeline: mean_i + std_i * randn(generator_i)).

        Raises:
            ValueError: ``generators`` given with a length other than B.
            NonFiniteOutputError: the VAE encoder returned NaN/inf.
        """
        import torch

        from boomerang.models.errors import NonFiniteOutputError, nonfinite_message

        x = x.to(self.device, torch.float32)
        vae_dtype = self.vae.dtype
        with torch.no_grad(), self._resident("vae"):
            if generators is None:
                if self._vae_per_item():
                    z = per_item(lambda xi: self.vae.encode(xi.to(vae_dtype)).latent_dist.mode(), x)
                else:
                    z = self.vae.encode(x.to(vae_dtype)).latent_dist.mode()
            else:
                if len(generators) != x.shape[0]:
                    raise ValueError(f"need one generator per image: {len(generators)} generators for {x.shape[0]} images")
                # diffusers' img2img pipeline encodes item by item and draws each posterior sample
                # mean_i + std_i * randn(generator_i); the draw is the same after one batched encode.
                from diffusers.utils.torch_utils import randn_tensor

                if self._vae_per_item():
                    dists = [self.vae.encode(x[i : i + 1].to(vae_dtype)).latent_dist for i in range(x.shape[0])]
                    means = torch.cat([d.mean for d in dists])
                    stds = torch.cat([d.std for d in dists])
                else:
                    dist = self.vae.encode(x.to(vae_dtype)).latent_dist
                    means, stds = dist.mean, dist.std
                noise = torch.cat([randn_tensor((1, *means.shape[1:]), generator=g, device=means.device, dtype=means.dtype)
                                   for g in generators])
                z = means + stds * noise
        if not bool(torch.isfinite(z).all()):
            raise NonFiniteOutputError(nonfinite_message(self, "the VAE encoder"))
        shift = getattr(self.vae.config, "shift_factor", None)  # SD3 / FLUX VAEs: (z - shift) * scale
        if shift is not None:
            z = z - shift
        return (z * self.vae.config.scaling_factor).to(torch.float32)

    def decode(self, z):
        """Latents -> images [B, 3, H, W] float32 on the CPU (not clamped), with the VAE in float32.

        Raises:
            NonFiniteOutputError: (a ValueError; message from ``nonfinite_message``, naming the
                dtype in use) if the result is not finite, instead of returning NaN/black images.
        """
        import torch

        from boomerang.models.errors import NonFiniteOutputError, nonfinite_message

        z = z.to(self.vae.dtype) / self.vae.config.scaling_factor
        shift = getattr(self.vae.config, "shift_factor", None)
        if shift is not None:
            z = z + shift
        with torch.no_grad(), self._resident("vae"):
            if self._vae_per_item():
                out = per_item(lambda zi: self.vae.decode(zi).sample, z)
            else:
                out = self.vae.decode(z).sample
        out = out.to(torch.float32)
        if not torch.isfinite(out).all():
            raise NonFiniteOutputError(nonfinite_message(self, "the VAE decoder"))
        return out.cpu()

    def encode_prompt(self, prompt: str = "", negative_prompt: str = "", guidance_scale: float = 1.0):
        """CLIP embeddings of a prompt, and of the negative prompt when guidance is used.

        Returns ``(cond, uncond)``: tensors [1, L, D] in the UNet's dtype, ``uncond``
        is None when ``guidance_scale <= 1`` (no unconditional pass). Tokenised like
        diffusers' pipelines: padding to ``model_max_length``, truncation. Results are
        cached per (prompt, negative prompt, guidance on/off), so that a job run in many
        batches encodes its prompt once (the cached tensors are returned: do not modify
        them in place).
        """
        import torch

        guided = guidance_scale > 1 and not self.guidance_embedded
        key = (prompt or "", negative_prompt or "", guided)
        cache = self.__dict__.setdefault("_prompt_cache", {})
        if key in cache:
            return cache[key]

        def embed(text: str):
            ids = self.tokenizer(text, padding="max_length", max_length=self.tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt").input_ids.to(self.device)
            mask = None
            if getattr(self.text_encoder.config, "use_attention_mask", False):
                mask = torch.ones_like(ids)
            with torch.no_grad(), self._resident("text_encoder"):
                return self.text_encoder(ids, attention_mask=mask)[0].to(self.torch_dtype)

        cond = embed(prompt or "")
        uncond = embed(negative_prompt or "") if guided else None
        if len(cache) >= 8:
            cache.clear()
        cache[key] = (cond, uncond)
        return cond, uncond

    @property
    def guidance_embedded(self) -> bool:
        """The UNet takes the guidance scale as an input (``time_cond_proj_dim``: Latent Consistency
        Models): no unconditional pass, w - 1 embedded (:meth:`guidance_embedding`) instead."""
        unet = getattr(self, "unet", None)
        return unet is not None and unet.config.get("time_cond_proj_dim") is not None

    def guidance_embedding(self, guidance_scale: float, batch: int):
        """[batch, time_cond_proj_dim]: the sinusoidal embedding of 1000 (w - 1) that LCM UNets were
        distilled with (sin of the first half of the frequencies 10000^(-i / (d/2 - 1)), then cos)."""
        import torch

        dim = int(self.unet.config.time_cond_proj_dim)
        half = dim // 2
        step = torch.log(torch.tensor(10000.0)) / (half - 1)  # in float32, as the distillation computed it
        freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -step)
        w = torch.full((batch,), float(guidance_scale) - 1.0, dtype=torch.float32) * 1000.0
        angles = w[:, None] * freqs[None, :]
        emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
        if dim % 2:
            emb = torch.nn.functional.pad(emb, (0, 1))
        return emb.to(self.device, self.torch_dtype)

    def _denoise(self, x, t, cond, uncond, guidance_scale, region):
        """The UNet on x with the prompt embeddings; with ``uncond`` and w > 1, [uncond; cond] in one
        2B batch (item by item under ``invariant_strategy='per_item'``: [uncond_i; cond_i])."""
        import torch

        batch = x.shape[0]
        with torch.no_grad():
            if uncond is not None and guidance_scale > 1:
                emb = torch.cat([uncond.expand(batch, -1, -1), cond.expand(batch, -1, -1)])
                out = self.unet(torch.cat([x, x]), t, encoder_hidden_states=emb).sample.to(torch.float32)
                out_uncond, out_cond = out.chunk(2)
                return out_uncond + guidance_scale * (out_cond - out_uncond)
            if self.guidance_embedded:
                return self.unet(x, t, encoder_hidden_states=cond.expand(batch, -1, -1),
                                 timestep_cond=self.guidance_embedding(guidance_scale, batch)).sample.to(torch.float32)
            return self.unet(x, t, encoder_hidden_states=cond.expand(batch, -1, -1)).sample.to(torch.float32)
