"""Perceptual resolution enhancement with Boomerang (``boomerang enhance``).

Upsample naively, then Boomerang at a small level restores plausible detail
(Luzi et al., Sec. 4.3), in overlapping windows blended at every reverse step
(MultiDiffusion), optionally kept consistent with the input (ILVR) and
colour-fixed. See docs/enhance.md.

Modules: :mod:`.settings` (validation, torch-free), :mod:`.resample`
(Pillow upsampling, the ILVR low-pass), :mod:`.tiling` (windows, blending),
:mod:`.consistency` (ILVR), :mod:`.colour` (colour fix), :mod:`.sampler`
(the tiled reverse process), :mod:`.image` (:func:`enhance_image`).
Importing this package imports no torch; the heavy names load on first use.
"""

from __future__ import annotations

from boomerang.enhance.options import UPSAMPLERS, check_enhance_args, output_size

__all__ = ["UPSAMPLERS", "check_enhance_args", "output_size", "enhance_image", "enhance_images", "Enhanced"]


def __getattr__(name: str):
    if name in ("enhance_image", "enhance_images", "Enhanced"):
        from boomerang.enhance import image

        return getattr(image, name)
    raise AttributeError(name)
