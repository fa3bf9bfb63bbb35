"""Bundled assets: the default diffusion model and the reference classifier.

This is a package (not ``assets.py``) because the asset folders live inside
it. Torch-free: these functions only return paths.

- ``ddpm-mnist5k/``: a diffusers ``DDPMPipeline`` (UNet2DModel 1x28x28,
  DDPMScheduler, EMA weights, safetensors) trained by ``boomerang train`` on
  the training split of ``mnist5k``. Pixel values in [-1, 1]. See its README.md.
- ``classifier-mnist5k/``: the reference CNN (``config.json`` +
  ``model.safetensors``); load it with :func:`boomerang.classifier.load_classifier`.
"""

from __future__ import annotations

import pathlib

_HERE = pathlib.Path(__file__).resolve().parent

DEFAULT_MODEL_NAME = "ddpm-mnist5k"
CLASSIFIER_NAME = "classifier-mnist5k"


def _existing(name: str, what: str) -> pathlib.Path:
    p = _HERE / name
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


__all__ = ["default_model_path", "classifier_path", "examples_dir", "DEFAULT_MODEL_NAME", "CLASSIFIER_NAME"]
