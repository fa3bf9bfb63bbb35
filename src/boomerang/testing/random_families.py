"""Models of every family built from configs with random weights, in memory (benchmarks only).

``benchmarks/gpu.py`` measures each family at its public checkpoint's full size
without any weights (none can be downloaded here): the component classes are
built from the configs in ``benchmarks/configs/gpu_families.json`` (written from
the published ``config.json`` files) with seeded random initialisation, straight
on the device and in the dtype asked for (no float32 copy on the way), and put
behind the family's :class:`~boomerang.models.DiffusionModel` class, so that the
denoiser contract (``predict``, ``encode``, offload ...) is what is timed.
Tokenizers are the small local ones of :mod:`boomerang.testing.tiny` /
:mod:`boomerang.testing.tiny_families` (a prompt's ids are then small numbers:
the embeddings are random anyway). Samples mean nothing.

A spec (one family of the JSON file)::

    {"family": "sdxl", "image_size": 1024, "scheduler": {...scheduler config...}, "guidance_scale": 5.0,
     "components": {"unet": {"class": "UNet2DConditionModel", "config": {...}}, ...}}
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

__all__ = ["count_parameters", "build_random_model", "FAMILY_CLASSES"]

#: The family module class of each ``family`` name.
FAMILY_CLASSES = {"stable_diffusion": "StableDiffusionModel", "sdxl": "SDXLModel", "sd3": "SD3Model",
                  "flux": "FluxModel"}


def _component_class(name: str):
    import diffusers
    import transformers

    return getattr(diffusers, name, None) or getattr(transformers, name)


def _build(entry: dict, tokenizer=None):
    """One component from its class name and config (transformers configs get the tokenizer's special ids)."""
    cls = _component_class(entry["class"])
    config = dict(entry["config"])
    if hasattr(cls, "config_class") and cls.__module__.startswith("transformers"):
        if tokenizer is not None and "CLIP" in entry["class"]:
            config.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                          pad_token_id=tokenizer.pad_token_id)
        if tokenizer is not None and "T5" in entry["class"]:
            config.update(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                          decoder_start_token_id=0)
        return cls(cls.config_class(**config))
    return cls(**config)


@contextlib.contextmanager
def _defaults(device, dtype):
    """New tensors on ``device`` in ``dtype`` inside the block (parameters are created there directly)."""
    import torch

    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(before)


def count_parameters(spec: dict) -> dict[str, int]:
    """Parameters of each component of ``spec``, built on the ``meta`` device (no memory, no weights)."""
    import torch

    out = {}
    with torch.device("meta"):
        for name, entry in spec["components"].items():
            out[name] = sum(p.numel() for p in _build(entry).parameters())
    return out


def build_random_model(spec: dict, *, device="cpu", dtype: str = "float32", seed: int = 0):
    """The family's model with random weights built from ``spec`` (see the module docstring).

    Args:
        spec: one family of ``benchmarks/configs/gpu_families.json``.
        device: where the networks are created (``cpu``, ``cuda``).
        dtype: the denoiser's and text encoders' dtype; the VAE is float32 (as ``load_model``).
        seed: torch's seed for the random initialisation.

    Returns:
        A :class:`boomerang.models.DiffusionModel` of the spec's family.
    """
    import torch

    import boomerang.models as models
    from boomerang.models import ModelInfo
    from boomerang.scheduler_names import is_lcm_config
    from boomerang.testing.tiny import write_tokenizer_files
    from boomerang.testing.tiny_families import write_t5_tokenizer
    from transformers import CLIPTokenizer

    torch.manual_seed(seed)
    dev = torch.device(device)
    half = getattr(torch, dtype)
    with tempfile.TemporaryDirectory() as tmp:
        vocab, merges = write_tokenizer_files(Path(tmp) / "clip")
        clip_tok = CLIPTokenizer(vocab=str(vocab), merges=str(merges), model_max_length=77)
    t5_tok = write_t5_tokenizer()
    nets = {}
    for name, entry in spec["components"].items():
        tok = t5_tok if "T5" in entry["class"] else clip_tok
        with _defaults(dev, torch.float32 if name == "vae" else half):
            net = _build(entry, tok)
        nets[name] = net.to(dev, torch.float32 if name == "vae" else half).eval()
    family = spec["family"]
    cls = getattr(models, FAMILY_CLASSES[family])
    vae = spec["components"]["vae"]["config"]
    factor = 2 ** (len(vae["block_out_channels"]) - 1)
    denoiser = spec["components"].get("transformer", {}).get("config", {})
    multiple = factor * (2 if family == "flux" else int(denoiser.get("patch_size", 1)))
    default = "lcm" if is_lcm_config(spec["scheduler"]) else ("ddpm" if family == "stable_diffusion" else "euler")
    info = ModelInfo(f"random:{family}", "latent", int(spec["scheduler"].get("num_train_timesteps", 1000)), 3, None,
                     multiple, True, int(vae["block_out_channels"][0]), family=family, pixel_space=False,
                     space_factor=factor, default_scheduler=default)
    common = dict(scheduler_config=spec["scheduler"], device=dev, dtype=dtype, weights_sha256="random")
    kw = {"vae": nets["vae"], "text_encoder": nets["text_encoder"], "tokenizer": clip_tok}
    if family in ("stable_diffusion", "sdxl"):
        kw["unet"] = nets["unet"]
    else:
        kw["transformer"] = nets["transformer"]
    if family in ("sdxl", "sd3", "flux"):
        kw.update(text_encoder_2=nets["text_encoder_2"], tokenizer_2=t5_tok if family == "flux" else clip_tok)
    if family == "sd3":
        kw.update(text_encoder_3=nets.get("text_encoder_3"), tokenizer_3=t5_tok if "text_encoder_3" in nets else None)
    return cls(info, **kw, **common)
