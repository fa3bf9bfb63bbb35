"""Inputs on their way to a model: how they are fitted, and the check before any weights load.

:class:`FitArgs` says how an input is fitted to a model (from its JSON configs,
no weights); :func:`read_input` reads one input and fits it (the one read of
the sampling pass, with bounded memory for large files); :func:`check_inputs`
is the check of ``boomerang sample`` and the API: every input read and fitted
once, before the model loads, so a bad file stops the job (exit 2) with
nothing written. What the check keeps of each input (:class:`CheckedInput`)
holds no full-size pixels. Torch-free.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

from boomerang.settings import SampleSettings

__all__ = ["FitArgs", "fit_args_for", "fit_input", "read_input", "CheckedInput", "check_inputs", "unusable_inputs"]


class FitArgs(NamedTuple):
    """How inputs are fitted to one model (``imageio.read_for_model``'s arguments).

    Attributes:
        background: (R, G, B) in 0..255 that transparent pixels are composited over.
        channels: the model's image channels (1 or 3).
        native_size: a pixel model's square input side, else ``None``.
        multiple: sides are padded to a multiple of this (latent models), else 1.
        vae_width: the model's VAE width (``ModelInfo.vae_width``) for the full-size limit, else ``None``.
        pixel_space: the model works on pixels (``ModelInfo.pixel_space``): the full-size limit's wording.
    """

    background: tuple
    channels: int
    native_size: int | None
    multiple: int
    vae_width: int | None
    pixel_space: bool = False


def fit_args_for(settings: SampleSettings, info) -> FitArgs:
    """How inputs are fitted to ``info``'s model (a ``ModelInfo`` or a loaded model). Pixel models
    with a native size get exactly that square; others pad to a multiple (and refuse inputs too
    large to run at their own size: ``imageio.check_full_size_input``)."""
    native = getattr(info, "native_size", None)
    multiple = 1 if native else int(getattr(info, "size_multiple", 1) or 1)
    vae_width = getattr(getattr(info, "info", info), "vae_width", None)  # a loaded model keeps its ModelInfo in .info
    pixel_space = bool(getattr(info, "pixel_space", False))
    return FitArgs(settings.background_rgb, int(info.image_channels), native, multiple, vae_width, pixel_space)


def fit_input(loaded, fit: FitArgs) -> tuple:
    """(reference, fitted) of an already decoded input: the input in the model's channels at its
    own size (float32 (H, W, C) in [0, 1]), and ``imageio.fit_for_model`` of it.

    Raises:
        boomerang.imageio.ImageInputError: too large for a model without a native size
            (``imageio.check_full_size_input``).
    """
    from boomerang import imageio

    h, w = loaded.pixels.shape[:2]
    imageio.check_full_size_input(loaded.name, w, h, native_size=fit.native_size, multiple_of=fit.multiple,
                                  vae_width=fit.vae_width, pixel_space=fit.pixel_space)
    ref = imageio.to_model_channels(loaded.pixels, fit.channels)
    return ref, imageio.fit_for_model(ref, native_size=fit.native_size, multiple_of=fit.multiple)


def read_input(source, fit: FitArgs) -> tuple:
    """Read one input (a path, PIL image or array) and fit it: ``(loaded, reference, fitted)`` of
    ``imageio.read_for_model`` (large files decoded at a reduced size, with bounded memory).

    Raises:
        boomerang.imageio.ImageInputError: (a ValueError) the input cannot be read or is too large.
    """
    from boomerang import imageio

    return imageio.read_for_model(source, channels=fit.channels, native_size=fit.native_size,
                                  multiple_of=fit.multiple, background=fit.background, vae_width=fit.vae_width,
                                  pixel_space=fit.pixel_space)


@dataclasses.dataclass
class CheckedInput:
    """What the check keeps of one input (no full-size pixels).

    Attributes:
        index: the input's place in the job (i of ``seeds.item_seed(seed, i, j)``).
        loaded: its ``imageio.LoadedImage`` description (size, mode, bit depth, ...; ``pixels``
            is a zero-memory array of the right shape).
        model_shape: (h, w, C) of what the model gets (``fitted.pixels.shape``).
        fit_method: ``identity``, ``resize`` or ``pad``.
        thumbnail: only when asked for: PNG bytes of the input as a contact sheet shows it
            (:func:`boomerang.sheet.input_thumbnail` of its reference), else ``None``.
    """

    index: int
    loaded: Any
    model_shape: tuple
    fit_method: str
    thumbnail: bytes | None = None

    @property
    def name(self) -> str:
        return self.loaded.name

    @property
    def path(self):
        return self.loaded.path


def check_inputs(sources: list, settings: SampleSettings, info, *, thumbnails: bool = False) -> list[CheckedInput]:
    """Read and fit every input once, before the model loads (decode 1 of 2: the sampling pass
    reads each again, :func:`read_input`). One warning per input that a small model shrinks.

    Args:
        sources: paths, PIL images or arrays (folders already expanded).
        settings: the background is read from it.
        info: the model's ``ModelInfo`` (JSON configs) or the loaded model.
        thumbnails: also keep each input's contact-sheet thumbnail (``boomerang sample``).

    Raises:
        boomerang.imageio.ImageInputError: (a ValueError) inputs that cannot be read or are too
            large for the model: every one is read first, and the one message names them all
            (one input: its own message; several: ``N inputs cannot be used: <message>; ...``).
    """
    from boomerang import imageio

    fit = fit_args_for(settings, info)
    out = []
    bad: list[str] = []
    for i, src in enumerate(sources):
        try:
            loaded, reference, fitted = read_input(src, fit)
        except imageio.ImageInputError as exc:
            bad.append(str(exc))
            continue
        if bad:
            continue  # keep reading only to name every bad input
        thumb = None
        if thumbnails:
            from boomerang.sheet import input_thumbnail, png_bytes

            thumb = png_bytes(input_thumbnail(reference))
        imageio.warn_fit(loaded, fitted, fit.channels)
        hollow = _hollow(loaded.pixels.shape)
        out.append(CheckedInput(i, dataclasses.replace(loaded, pixels=hollow), tuple(fitted.pixels.shape),
                                fitted.method, thumb))
    if bad:
        raise unusable_inputs(bad)
    return out


def unusable_inputs(messages: list[str]):
    """One :class:`~boomerang.imageio.ImageInputError` naming every unusable input: one input, its
    own message; several, ``N inputs cannot be used: <message>; <message> ...`` (one line)."""
    from boomerang.imageio import ImageInputError

    if len(messages) == 1:
        return ImageInputError(messages[0])
    return ImageInputError(f"{len(messages)} inputs cannot be used: "
                           + "; ".join(m.rstrip(".") for m in messages) + ".")


def _hollow(shape):
    """A read-only float32 array of ``shape`` that takes no memory."""
    import numpy as np

    return np.broadcast_to(np.zeros((), np.float32), shape)
