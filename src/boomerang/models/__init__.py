"""Diffusion models behind one denoiser contract (Boomerang steps 1-4 building blocks).

The algorithm (``boomerang.core``, tiled enhancement, the dataset commands)
sees a model only through :class:`DiffusionModel` (:mod:`.contract`): encode
and decode, conditioning from prompts, one denoiser call in one stated
parameterisation, and the training noise schedule as data
(:class:`NoiseSchedule`, :mod:`.schedule`). Behind it, one module per family:

* :mod:`.pixel` -- a pixel-space UNet2DModel (DDPM): encode/decode are the identity;
* :mod:`.stable_diffusion` -- Stable Diffusion 1.x / 2.x: VAE, CLIP text encoder, UNet;
* :mod:`.sdxl` -- SDXL base and refiner: VAE, two CLIP text encoders (pooled), UNet with size conditioning;
* :mod:`.sd3` -- SD3 / SD3.5: 16-channel VAE with shift, CLIP x2 + T5, MMDiT transformer, flow matching;
* :mod:`.flux` -- FLUX.1: packed 2x2 latents with image ids, CLIP (pooled) + T5, embedded guidance,
  flow matching with a size-dependent (dynamic) shift.

and the parts they share: :mod:`.discovery` (finding a model: bundled, short
names, folders, hub ids; weight files and the pickle refusal), :mod:`.loading`
(which family a folder is, :func:`read_model_info` without torch,
:func:`load_model`), :mod:`.invariant` (batch-invariant kernels),
:mod:`.errors` and :mod:`.quiet` (diffusers'/transformers' logs off while loading).

Every public name is importable from here; importing this package does not import torch.
"""

from __future__ import annotations

from boomerang.models.contract import DiffusionModel, ModelInfo, Region
from boomerang.models.discovery import hub_hint, resolve_model, weights_sha256
from boomerang.models.errors import IncompleteWeightsError, NonFiniteOutputError, check_loading_info, nonfinite_message
from boomerang.models.flux import FluxModel
from boomerang.models.invariant import (
    INVARIANT_STRATEGIES,
    conv_items,
    group_norm_contiguous,
    invariant_kernels,
    linear_rows,
    patchable,
    per_item,
)
from boomerang.models.loading import FAMILIES, find_family, load_model, read_model_info
from boomerang.models.pixel import PixelModel
from boomerang.models.quiet import quiet_loading
from boomerang.models.schedule import PREDICTION_TYPES, NoiseSchedule
from boomerang.models.sd3 import SD3Model
from boomerang.models.sdxl import SDXLModel
from boomerang.models.stable_diffusion import StableDiffusionModel
from boomerang.settings import DTYPES

__all__ = [
    "DTYPES",
    "FAMILIES",
    "FluxModel",
    "INVARIANT_STRATEGIES",
    "PREDICTION_TYPES",
    "DiffusionModel",
    "IncompleteWeightsError",
    "ModelInfo",
    "NoiseSchedule",
    "NonFiniteOutputError",
    "PixelModel",
    "Region",
    "SD3Model",
    "SDXLModel",
    "StableDiffusionModel",
    "check_loading_info",
    "conv_items",
    "find_family",
    "group_norm_contiguous",
    "hub_hint",
    "invariant_kernels",
    "linear_rows",
    "load_model",
    "nonfinite_message",
    "patchable",
    "per_item",
    "quiet_loading",
    "read_model_info",
    "resolve_model",
    "weights_sha256",
]
