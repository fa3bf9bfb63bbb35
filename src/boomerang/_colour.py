"""Colour management of decoded images (part of :mod:`boomerang.imageio`, which documents the rules):
embedded ICC profiles to sRGB through LittleCMS, and CMYK to RGB.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

__all__: list[str] = []


def icc_to_srgb(img: Image.Image) -> tuple[Image.Image, str | None]:
    """RGB / RGBA / L images with an embedded ICC profile, converted to sRGB through it
    (LittleCMS, Pillow's ImageCms, perceptual intent); returns ``(image, profile
    description)``, or ``(img, None)`` when there is no profile, it already is
    sRGB, or it cannot be used (then the pixels are taken as sRGB). CMYK images
    have their own path (:func:`cmyk_to_rgb`)."""
    icc = img.info.get("icc_profile")
    if not icc or img.mode not in ("RGB", "RGBA", "L", "LA"):
        return img, None
    try:
        from PIL import ImageCms

        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        desc = (ImageCms.getProfileDescription(src) or "").strip()
        dst = ImageCms.createProfile("sRGB")
        if _is_srgb(src, dst, "L" if img.mode in ("L", "LA") else "RGB"):
            return img, None  # (an) sRGB profile: keep the pixels bit-exact
        info = dict(img.info)
        if img.mode in ("L", "LA"):
            # gray profiles map to sRGB as RGB; alpha is carried along unchanged
            alpha = img.getchannel("A") if img.mode == "LA" else None
            out = ImageCms.profileToProfile(img.convert("L"), src, dst, outputMode="RGB")
            if out is not None and alpha is not None:
                out.putalpha(alpha)
        else:
            out = ImageCms.profileToProfile(img, src, dst, outputMode=img.mode)
        if out is None:
            return img, None
        info.pop("icc_profile", None)
        out.info = info
        return out, desc or "embedded ICC profile"
    except Exception:  # noqa: BLE001 - a broken or unsupported profile: the pixels are taken as sRGB
        return img, None


def _is_srgb(src, dst, mode: str) -> bool:
    """True if the profile maps every gray level and the primaries to sRGB within 1/255
    (an sRGB profile, whatever its name): then the pixels are used as they are."""
    from PIL import ImageCms

    ramp = np.arange(256, dtype=np.uint8)
    if mode == "L":
        probe = Image.fromarray(ramp[None, :])
        want = np.repeat(ramp[None, :, None], 3, axis=-1)
    else:
        z = np.zeros(256, np.uint8)
        rows = [np.stack([ramp, ramp, ramp], -1), np.stack([ramp, z, z], -1), np.stack([z, ramp, z], -1),
                np.stack([z, z, ramp], -1)]
        want = np.stack(rows)
        probe = Image.fromarray(want)
    out = ImageCms.profileToProfile(probe, src, dst, outputMode="RGB")
    return out is not None and int(np.abs(np.asarray(out, np.int16) - want.astype(np.int16)).max()) <= 1


def cmyk_to_rgb(img: Image.Image) -> Image.Image:
    """CMYK -> RGB, through the embedded ICC profile when there is one."""
    icc = img.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            dst = ImageCms.createProfile("sRGB")
            out = ImageCms.profileToProfile(img, src, dst, outputMode="RGB")
            if out is not None:
                return out
        except Exception:  # a broken profile: fall back to the plain formula
            pass
    return img.convert("RGB")
