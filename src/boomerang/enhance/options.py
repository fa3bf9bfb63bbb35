"""Parameters of perceptual resolution enhancement, checked in one place (torch-free).

The CLI calls :func:`check_enhance_args` before any model is loaded; the
library calls it again. Errors name the library parameter (``scale``,
``tile_size``, ...); the CLI maps them to its flags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from boomerang import levels
from boomerang.errors import SettingError

__all__ = ["UPSAMPLERS", "MAX_SCALE", "EnhanceArgs", "check_enhance_args", "output_size"]

#: Pillow resampling filters offered for the naive upsampling (step 1 of enhancement).
UPSAMPLERS: tuple[str, ...] = ("bicubic", "lanczos")
#: Largest accepted scale factor (a 1x1 input becomes at most 64x64 per side unit).
MAX_SCALE: float = 64.0


@dataclass(frozen=True)
class EnhanceArgs:
    """Validated enhancement parameters (see :func:`check_enhance_args`)."""

    scale: float
    level: float
    tile_size: int | None
    tile_overlap: int | None
    tile_batch: int
    upsampler: str
    consistency_until: float | None = None


def _check_int(value, name: str, minimum: int) -> int:
    try:
        f = float(value)
    except (TypeError, ValueError):
        f = math.nan
    if not math.isfinite(f) or f != int(f) or f < minimum:
        raise SettingError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    return int(f)


def check_enhance_args(
    *,
    scale,
    level,
    tile_size=None,
    tile_overlap=None,
    tile_batch=8,
    upsampler: str = "bicubic",
    consistency_until=None,
) -> EnhanceArgs:
    """Validate the enhancement knobs without a model.

    Args:
        scale: the upsampling factor, a finite number in [1, ``MAX_SCALE``]
            (integer or fractional; each side becomes round(scale x side)).
        level: the Boomerang noise level in [0, 1] (0: the upsampled image
            comes back unchanged).
        tile_size: window side in pixels, or None for the model's default
            (pixel models: their native size; latent models: 512).
        tile_overlap: overlap of neighbouring windows in pixels, in
            [0, tile_size - 1]; None: a quarter of the window.
        tile_batch: windows per model call (>= 1); bounds memory, never
            changes the result.
        upsampler: ``'bicubic'`` (default) or ``'lanczos'`` (Pillow filters).
        consistency_until: the fidelity knob, a number in [0, 1] (the fraction of the reverse
            steps that ILVR acts after), or None (not given).

    Raises:
        SettingError: (a ValueError) naming the parameter that is wrong and the
            range that works (the CLI renders the names as flags).
    """
    try:
        s = float(scale)
    except (TypeError, ValueError):
        s = math.nan
    if not math.isfinite(s) or not 1.0 <= s <= MAX_SCALE:
        raise SettingError(f"`scale` must be a number in [1, {MAX_SCALE:g}] (e.g. 4 or 8 or 2.5), got {scale!r}")
    lvl = levels.check_level(level)
    ts = None if tile_size is None else _check_int(tile_size, "tile_size", 8)
    to = None if tile_overlap is None else _check_int(tile_overlap, "tile_overlap", 0)
    if ts is not None and to is not None and to >= ts:
        raise SettingError(f"`tile_overlap` must be smaller than `tile_size` ({ts}), got {to}")
    tb = _check_int(tile_batch, "tile_batch", 1)
    if upsampler not in UPSAMPLERS:
        raise SettingError(f"`upsampler` must be one of {', '.join(UPSAMPLERS)}, got {upsampler!r}")
    cu = None
    if consistency_until is not None:
        try:
            cu = float(consistency_until)
        except (TypeError, ValueError):
            cu = math.nan
        if not (math.isfinite(cu) and 0.0 <= cu <= 1.0):
            raise SettingError(f"`consistency_until` must be a number in [0, 1] (the fraction of the reverse steps "
                               f"with consistency; 1 is plain `consistency`), got {consistency_until!r}")
    return EnhanceArgs(s, lvl, ts, to, tb, upsampler, cu)


def output_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """The enhanced image's (height, width): round(scale x side), halves rounded up, at least 1.

    ``floor(scale * side + 0.5)``, so a 7-pixel side at scale 2.5 gives 18
    (Python's ``round`` would give 18 too, but 2.5 x 5 = 12.5 gives 13 here,
    not the banker's 12).
    """
    if height < 1 or width < 1:
        raise ValueError(f"image sides must be >= 1, got {height}x{width}")
    s = float(scale)
    return max(1, math.floor(s * height + 0.5)), max(1, math.floor(s * width + 0.5))
