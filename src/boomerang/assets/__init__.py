"""Bundled assets: the default diffusion model and the reference classifier.

This is a package (not ``assets.py``) because the asset folders live inside
it. Torch-free: these functions only return paths.

- ``ddpm-mnist5k/``: a diffusers ``DDPMPipeline`` (UNet2DModel 1x28x28,
  DDPMScheduler, EMA weights, safetensors) trained by ``boomerang train`` on
  the training split of ``mnist5k``. Pixel values in [-1, 1]. See its README.md.
- ``ddpm-photos/``: a colour ``DDPMPipeline`` (fully convolutional UNet2DModel, no
  self-attention, so it runs at an image's own size) trained by ``boomerang train --data photos``
  on patches of the photos that ship with scikit-image, scikit-learn and matplotlib (held-out
  photos excluded). The default for inputs that are not small gray images. See its README.md.
- ``ldm-mnist5k-text/``: a small text-conditioned latent diffusion model of
  Stable Diffusion's shape (AutoencoderKL, CLIPTextModel + CLIPTokenizer,
  UNet2DConditionModel, SD 1.x scheduler) trained by ``boomerang train-ldm``
  on captioned mnist5k digits (RGB 32x32). See its README.md.
- ``flow-mnist5k-text/``: a small text-conditioned flow-matching model of Stable
  Diffusion 3's layout (SD3Transformer2DModel, CLIP x2 with projection + T5,
  FlowMatchEulerDiscreteScheduler with shift 3, the VAE of ``ldm-mnist5k-text``)
  trained by ``boomerang train-flow`` on the same captioned digits. See its README.md.
- ``classifier-mnist5k/``: the reference CNN (``config.json`` +
  ``model.safetensors``); load it with :func:`boomerang.classifier.load_classifier`.
"""

from __future__ import annotations

import pathlib

_HERE = pathlib.Path(__file__).resolve().parent

DEFAULT_MODEL_NAME = "ddpm-mnist5k"
#: The colour photo model: what a command without --model uses unless every input is a small
#: gray image (:mod:`boomerang.default_model`).
PHOTO_MODEL_NAME = "ddpm-photos"
CLASSIFIER_NAME = "classifier-mnist5k"
# Bundled diffusion models that ``--model`` accepts by short name.
MODEL_NAMES = (DEFAULT_MODEL_NAME, PHOTO_MODEL_NAME, "ldm-mnist5k-text", "flow-mnist5k-text")


def asset_dir(name: str) -> pathlib.Path:
    """Where the bundled asset ``name`` lives (tests replace this to stand a tiny model in for one)."""
    return _HERE / name


def _existing(name: str, what: str) -> pathlib.Path:
    p = asset_dir(name)
    if not p.is_dir():
        raise FileNotFoundError(
            f"the bundled {what} is missing at {p}; reinstall boomerang or pass a model folder explicitly"
        )
    return p


def default_model_path() -> pathlib.Path:
    """Folder of the bundled diffusion model (loads with ``DDPMPipeline.from_pretrained``).

    Raises:
        FileNotFoundError: the package was installed without its assets.
    """
    return _existing(DEFAULT_MODEL_NAME, "diffusion model")


def named_model_path(name: str) -> pathlib.Path | None:
    """Folder of the bundled diffusion model called ``name`` (one of :data:`MODEL_NAMES`),
    or None if ``name`` is not such a short name.

    Raises:
        FileNotFoundError: the short name is known but its folder was not installed.
    """
    if name not in MODEL_NAMES:
        return None
    return _existing(name, f"model {name!r}")


def classifier_path() -> pathlib.Path:
    """Folder of the bundled reference classifier (``config.json`` + ``model.safetensors``).

    Raises:
        FileNotFoundError: the package was installed without its assets.
    """
    return _existing(CLASSIFIER_NAME, "classifier")


def examples_dir() -> pathlib.Path | None:
    """``examples/digits`` of a source checkout (real test-split digits as PNG), or None if absent."""
    p = _HERE.parents[2] / "examples" / "digits"
    return p if p.is_dir() else None


__all__ = ["default_model_path", "named_model_path", "asset_dir", "MODEL_NAMES", "PHOTO_MODEL_NAME", "classifier_path", "examples_dir", "DEFAULT_MODEL_NAME", "CLASSIFIER_NAME"]
