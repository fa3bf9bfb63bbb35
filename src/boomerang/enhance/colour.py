"""Colour fix: give the output the low-frequency colour of the upsampled input.

Diffusion upscalers drift in colour and brightness over large areas. StableSR
(Wang et al. 2023) fixes this after sampling by keeping the output's high
frequencies and taking the low frequencies from the upsampled input
("wavelet colour fix"). The same here, with a Gaussian low-pass:

    out = x - G_sigma(x) + G_sigma(reference)

G_sigma is a separable Gaussian blur (reflect padding) with sigma = the
scale factor in output pixels, so what is replaced are the frequencies the
low-resolution input actually carries. Off by default; measured in
``benchmarks/enhance.py``.
"""

from __future__ import annotations

__all__ = ["gaussian_blur", "colour_fix"]


def gaussian_blur(x, sigma: float):
    """Separable Gaussian blur of [B, C, H, W] (kernel radius ceil(3 sigma), reflect/replicate padding)."""
    import math

    import torch
    import torch.nn.functional as F

    if sigma <= 0:
        return x
    radius = max(1, math.ceil(3 * sigma))
    d = torch.arange(-radius, radius + 1, dtype=torch.float32, device=x.device)
    k = torch.exp(-0.5 * (d / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    out = x
    for dim, kernel in ((3, k.view(1, 1, 1, -1)), (2, k.view(1, 1, -1, 1))):
        pad = (radius, radius, 0, 0) if dim == 3 else (0, 0, radius, radius)
        side = out.shape[dim]
        mode = "reflect" if side > radius else "replicate"
        out = F.conv2d(F.pad(out, pad, mode=mode), kernel.expand(c, 1, *kernel.shape[2:]), groups=c)
    return out


def colour_fix(x, reference, sigma: float):
    """x - G(x) + G(reference): x's detail on the reference's low-frequency colour.

    Args:
        x: [B, C, H, W] float (the enhanced images, any range).
        reference: [B, C, H, W] (or [1, C, H, W]) the upsampled input, same range.
        sigma: blur sigma in pixels (> 0); enhancement uses the scale factor.

    Returns:
        [B, C, H, W] float tensor (not clamped).
    """
    if x.shape[-2:] != reference.shape[-2:]:
        raise ValueError(f"reference is {tuple(reference.shape)}, x is {tuple(x.shape)}")
    return x - gaussian_blur(x, sigma) + gaussian_blur(reference.to(x), sigma)
