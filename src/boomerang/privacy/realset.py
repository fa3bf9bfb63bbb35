"""The real set an attacker holds, on the comparison grid of ``boomerang audit-privacy``.

Calibration (:mod:`boomerang.privacy.calibrate`) and per-item verification
(``anonymise --verify-top``) attack released images against the real images
exactly as ``audit-privacy`` (:mod:`boomerang.privacy.audit`) compares them:

* every image is read with :func:`boomerang.imageio.read_image` (EXIF, alpha
  over the background, 16-bit, CMYK, ICC);
* one **grid**: ``size`` x ``size`` when given, else the images' own size when
  all share one of at most 256 x 256 pixels, else 64 x 64 (bilinear,
  antialiased);
* one **channel count**: 1 (Rec. 601 luminance; a gray image keeps its values)
  when every real image or every released image is gray, else RGB.

A released image is converted from the 8-bit pixels it is written with
(:func:`to_comparison`), which is what the audit reads back from its PNG. So a
rank measured here is the rank ``audit-privacy`` measures on the written files
(with the same real images; more real images can only raise a rank).
"""

from __future__ import annotations

import os
import pathlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

__all__ = ["RealSet", "comparison_grid", "load_real_set", "to_comparison", "DEFAULT_RESIZE", "MAX_NATIVE_PIXELS"]

#: Side used when images differ in size (or are larger than MAX_NATIVE_PIXELS).
DEFAULT_RESIZE = 64
#: Largest image (in pixels) compared at its own size.
MAX_NATIVE_PIXELS = 256 * 256


def header_size(path) -> tuple[int, int] | None:
    """(W, H) upright, from the header only; None when the header cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - unreadable files are reported by read_image later
        return None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def comparison_grid(paths: Sequence, size: int | None = None) -> tuple[int, int]:
    """The grid ``(W, H)`` the images are compared on (rule in the module docstring)."""
    if size is not None:
        return (int(size), int(size))
    sizes = Counter(s for p in paths if pathlib.Path(p).is_file() for s in [header_size(p)] if s is not None)
    only = next(iter(sizes)) if len(sizes) == 1 else None
    return only if only is not None and only[0] * only[1] <= MAX_NATIVE_PIXELS else (DEFAULT_RESIZE,) * 2


def rgb_to_grid(pixels: np.ndarray, grid: tuple[int, int]):
    """(H, W, 3) float RGB in [0, 1] -> float32 tensor [3, h, w] in [-1, 1] on ``grid`` (W, H)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).permute(2, 0, 1)[None]
    if grid is not None and tuple(x.shape[-2:]) != (grid[1], grid[0]):
        x = F.interpolate(x, size=(grid[1], grid[0]), mode="bilinear", antialias=True, align_corners=False)
    return (x[0].clamp(0.0, 1.0) * 2.0 - 1.0).contiguous()


def luma(x):
    """[3, h, w] in [-1, 1] -> [1, h, w]: Rec. 601 luminance (a gray image keeps its values)."""
    if bool((x[0] == x[1]).all() and (x[1] == x[2]).all()):
        return x[:1].clone()
    w = x.new_tensor((0.299, 0.587, 0.114)).view(3, 1, 1)
    return (((x + 1.0) / 2.0 * w).sum(0, keepdim=True).clamp(0.0, 1.0) * 2.0 - 1.0)


def to_comparison(pixels: np.ndarray, grid: tuple[int, int], channels: int):
    """A released image as written (uint8 (H, W, C), C = 1 or 3; or float in [0, 1], quantised to
    8 bits first) -> tensor [channels, h, w] in [-1, 1].

    The same values ``audit-privacy`` gets when it reads the PNG back (8-bit / 255, gray replicated).
    """
    p = np.asarray(pixels)
    if p.dtype != np.uint8:  # float in [0, 1] (a level-0 output): quantised as the PNG writer does
        p = np.rint(np.clip(p.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
    if p.ndim == 2:
        p = p[..., None]
    rgb = p.astype(np.float32) / 255.0
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
    x = rgb_to_grid(rgb, grid)
    return x if channels == 3 else luma(x)


@dataclass
class RealSet:
    """Real images on one comparison grid.

    Attributes:
        images: float32 tensor ``[M, C, h, w]`` in [-1, 1].
        names: one name per image: its path relative to its folder, prefixed by the folder's
            prefix (``""`` for IN_DIR, e.g. ``"pool:"`` for a reference pool).
        grid: ``(W, H)``; channels: 1 or 3.
        skipped: ``[{"file", "reason"}]`` unreadable images (left out).
    """

    images: object
    names: list[str]
    grid: tuple[int, int]
    channels: int
    skipped: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.index = {n: i for i, n in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)


def list_folders(folders: Sequence[tuple[str, str | os.PathLike]]) -> list[tuple[str, pathlib.Path]]:
    """``[(name, path), ...]`` of every image under each ``(prefix, folder)``; name = prefix + relpath.

    Raises:
        ValueError: a folder missing.
    """
    from boomerang.imageio import list_image_files

    files: list[tuple[str, pathlib.Path]] = []
    for prefix, folder in folders:
        folder = pathlib.Path(folder)
        if not folder.is_dir():
            raise ValueError(f"{str(folder)!r} is not a folder")
        files += [(prefix + p.relative_to(folder).as_posix(), p) for p in list_image_files(folder)]
    return files


def load_real_set(folders: Sequence[tuple[str, str | os.PathLike]], *, size: int | None = None,
                  background=(255, 255, 255), released_gray: bool = False, grid: tuple[int, int] | None = None,
                  channels: int | None = None) -> RealSet:
    """Read every image under each folder (recursively) onto the comparison grid.

    Args:
        folders: ``[(prefix, folder), ...]``; a name is ``prefix + relpath`` (POSIX).
        size: grid side, or None (module docstring).
        background: colour transparent pixels are composited over (R, G, B in 0..255).
        released_gray: the released images are all gray (a one-channel model): compare in one channel.
        grid, channels: a grid and channel count decided elsewhere (over several folders), instead of
            this folder set's own.

    Raises:
        ValueError: a folder missing, or no readable image at all.
    """
    import torch

    from boomerang.imageio import ImageInputError, read_image

    files = list_folders(folders)
    grid = grid or comparison_grid([p for _, p in files], size)
    names, tensors, gray, skipped = [], [], [], []
    for name, path in files:
        try:
            img = read_image(path, background=background)
        except ImageInputError as exc:
            skipped.append({"file": name, "reason": str(exc)})
            continue
        names.append(name)
        tensors.append(rgb_to_grid(img.pixels, grid))
        gray.append(bool(img.is_grayscale))
    if not names:
        raise ValueError(f"no readable images in {', '.join(str(f) for _, f in folders)}")
    all_gray = all(gray)
    channels = channels or (1 if released_gray or all_gray else 3)
    images = torch.stack([t if channels == 3 else luma(t) for t in tensors])
    out = RealSet(images, names, grid, channels, skipped)
    out.all_gray = all_gray
    return out
