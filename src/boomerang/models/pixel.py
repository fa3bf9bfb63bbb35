"""The pixel-space DDPM family (part of :mod:`boomerang.models`): a UNet2DModel that denoises images.

Folders: a ``DDPMPipeline``/``DDIMPipeline`` folder (``model_index.json``,
``unet/``, ``scheduler/``) or a bare ``UNet2DModel`` folder (``config.json`` +
weights) with a ``scheduler_config.json`` beside it or in ``scheduler/``.
The model's space is pixel space: encode and decode are the identity, the
denoiser is the UNet, ``predict`` returns what the scheduler config's
``prediction_type`` says (eps for the bundled model). Torch-free at import.
"""

from __future__ import annotations

import pathlib
from typing import Any

from boomerang.models.contract import DiffusionModel, ModelInfo
from boomerang.models.discovery import component_config, read_json

__all__ = ["PixelModel", "fully_convolutional"]


def _side(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise ValueError(f"non-square UNet sample_size {value} is not supported")
        value = value[0]
    return int(value)


def fully_convolutional(unet_config: dict) -> bool:
    """True when a ``UNet2DModel`` config has no self-attention: no ``Attn*`` down/up block and
    ``add_attention`` false (diffusers' default is true: attention in the middle block). Such a
    UNet is convolutions, GroupNorm and the timestep embedding only, so it runs at any size that
    is a multiple of ``2 ** (len(block_out_channels) - 1)`` (its receptive field is local; GroupNorm
    still averages over the whole image)."""
    blocks = list(unet_config.get("down_block_types") or ()) + list(unet_config.get("up_block_types") or ())
    if not blocks:
        return False  # diffusers' defaults include attention blocks
    mid_attention = unet_config.get("add_attention", True) and unet_config.get("mid_block_type", "UNetMidBlock2D")
    return not mid_attention and not any("Attn" in str(b) for b in blocks)


class PixelModel(DiffusionModel):
    """A pixel-space diffusion model (DDPM, Ho et al. 2020): ``unet`` (UNet2DModel) on images
    [B, C, H, W] in [-1, 1], H = W = ``native_size`` when it has one; a fully convolutional UNet
    (:func:`fully_convolutional`) takes any H, W that are multiples of ``size_multiple``."""

    family = "pixel"
    description = "pixel-space UNet pipelines (DDPMPipeline/DDIMPipeline layout)"
    networks = ("unet",)
    components = ("unet",)

    def __init__(self, info: ModelInfo, *, unet, **common):
        super().__init__(info, **common)
        self.unet = unet

    # ------------------------------------------------------------------ loading

    @classmethod
    def find_layout(cls, root: pathlib.Path, index: dict | None) -> dict | None:
        if index is not None:
            if "unet" in index and "scheduler" in index and "vae" not in index and "transformer" not in index:
                return {"kind": "pixel", "unet": root / "unet", "scheduler": root / "scheduler"}
            return None
        config = root / "config.json"
        if config.is_file() and read_json(config).get("_class_name") == "UNet2DModel":
            for sched in (root / "scheduler_config.json", root / "scheduler" / "scheduler_config.json"):
                if sched.is_file():
                    return {"kind": "pixel", "unet": root, "scheduler": sched.parent}
            raise ValueError(f"{root}: a UNet2DModel folder needs a scheduler_config.json beside config.json (or in scheduler/)")
        return None

    @classmethod
    def describe(cls, root: pathlib.Path, layout: dict) -> ModelInfo:
        """The model's :class:`ModelInfo` from its configs. A UNet with self-attention anywhere
        (an ``Attn*`` block or the middle block's, diffusers' default) has a ``native_size``: its
        ``sample_size``, the only side it runs at. A UNet without any (:func:`fully_convolutional`)
        has a local receptive field and no ``native_size``: it runs at the image's own size,
        padded to a multiple of its downsampling factor (``size_multiple``)."""
        unet = component_config(layout["unet"])
        sched = component_config(layout["scheduler"], "scheduler_config.json")
        n_down = len(unet.get("block_out_channels", (64,)))
        native = None if fully_convolutional(unet) else _side(unet.get("sample_size"))
        return ModelInfo(str(root), "pixel", int(sched.get("num_train_timesteps", 1000)), int(unet.get("in_channels", 3)),
                         native, 2 ** (n_down - 1), False,
                         family=cls.family, pixel_space=True, space_factor=1)

    @classmethod
    def load_components(cls, layout: dict, *, load_component, device, torch_dtype) -> dict[str, Any]:
        from diffusers import UNet2DModel

        unet = load_component("unet", UNet2DModel, low_cpu_mem_usage=False, torch_dtype=torch_dtype)
        return {"unet": unet.to(device).eval()}

    # ------------------------------------------------------------------ the contract

    def model_shape(self, image_shape) -> tuple[int, int, int]:
        """The image's own (C, H, W): the model works on pixels."""
        return tuple(int(v) for v in image_shape[-3:])

    @property
    def learned_variance(self) -> bool:
        return self.unet.config.out_channels != self.unet.config.in_channels

    @property
    def prediction_channels(self) -> int:
        return int(self.unet.config.out_channels)

    def encode(self, x, *, generators=None):
        """The identity (x as float32 on ``device``); ``generators`` are ignored (nothing is drawn)."""
        import torch

        return x.to(self.device, torch.float32)

    def decode(self, z):
        """The identity (float32 on the CPU). Raises NonFiniteOutputError for NaN/inf values."""
        import torch

        from boomerang.models.errors import NonFiniteOutputError, nonfinite_message

        out = z.to(torch.float32)
        if not torch.isfinite(out).all():
            raise NonFiniteOutputError(nonfinite_message(self, "the model"))
        return out.cpu()

    def _denoise(self, x, t, cond, uncond, guidance_scale, region):
        import torch

        with torch.no_grad():
            return self.unet(x, t).sample.to(torch.float32)
