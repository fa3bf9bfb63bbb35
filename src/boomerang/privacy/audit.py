"""Audit a released folder against the real one: the work of ``boomerang audit-privacy``.

Reads the link file (:mod:`boomerang.privacy.links`), every real image (the
candidates: all images under REAL_DIR, searched recursively, whether linked or
not; unlinked real images act as distractors) and every linked anonymised
image (the queries), and runs :func:`boomerang.privacy.attack.linkage_attack`.

Reading follows :func:`boomerang.imageio.read_image` (EXIF orientation, alpha
over white, 16-bit scaled by 65535, CMYK and ICC to sRGB). Images that cannot
be read are skipped and listed, as are links whose output or source is
missing; the attack runs on what is left.

Comparison grid: all images are compared at one size and channel count.
Channels: 1 (Rec. 601 luminance) when every real image or every anonymised
image is grayscale (a one-channel model's outputs are compared with the
luminance of colour sources, which is what the model saw), else 3 (RGB, gray
replicated).
Size: ``size`` x ``size`` when given; otherwise the images' own size when all
of them share it and it is at most 256 x 256 pixels, else 64 x 64. Resizing
is bilinear with antialiasing and ignores the aspect ratio.
"""

from __future__ import annotations

import os
import pathlib
from collections import Counter
from typing import Sequence

import numpy as np

from boomerang.privacy.links import LinkFileError, read_links
from boomerang.privacy.realset import header_size, luma, rgb_to_grid

__all__ = ["AuditInputError", "audit_folders", "DEFAULT_RESIZE", "MAX_NATIVE_PIXELS", "MAX_SIZE",
           "check_size"]

#: Side used when images differ in size (or are larger than MAX_NATIVE_PIXELS).
DEFAULT_RESIZE = 64
#: Largest image (in pixels) compared at its own size.
MAX_NATIVE_PIXELS = 256 * 256
#: Largest comparison grid side ``size``: every image, real and anonymised, is held at
#: size x size x 3 float32 values (12 MiB each at 1024; 112 GiB each at 100000).
MAX_SIZE = 1024


def _gib(side: int) -> str:
    n = side * side * 3 * 4
    return f"{n / 2**30:.0f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def check_size(size, name: str = "size") -> int | None:
    """``size`` checked before anything is read: None, or an int in 1..:data:`MAX_SIZE`.

    Raises:
        AuditInputError: not a positive integer, or above :data:`MAX_SIZE` (the message says
            the memory it would take and the bound).
    """
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise AuditInputError(f"{name} must be a positive integer, got {size!r}")
    if size > MAX_SIZE:
        raise AuditInputError(
            f"{name} {size} is too large: at most {MAX_SIZE}. Every image is held at {name} x {name} pixels, "
            f"3 float32 values each: {_gib(size)} per image at {size} ({_gib(MAX_SIZE)} at {MAX_SIZE})")
    return size


class AuditInputError(ValueError):
    """The audit cannot run (missing folder, bad link file, nothing left to compare)."""


def _relpaths(folder: pathlib.Path) -> dict[str, pathlib.Path]:
    from boomerang.imageio import list_image_files

    return {p.relative_to(folder).as_posix(): p for p in list_image_files(folder)}


# One copy of the comparison rules, shared with calibration and verification.
_header_size, _to_grid, _luma = header_size, rgb_to_grid, luma


def audit_folders(real_dir, anon_dir, link_file, features="pixels", *, size: int | None = None,
                  top_k: Sequence[int] = (1, 5), batch_size: int = 256, device: str = "cpu",
                  background: Sequence[int] = (255, 255, 255)):
    """Run the linkage attack on a real folder, an anonymised folder and their link file.

    Args:
        real_dir: folder of the real images (searched recursively); paths in
            the link file's ``source`` are relative to it.
        anon_dir: folder of the anonymised images; ``output`` paths are relative to it.
        link_file: the JSONL link file (:mod:`boomerang.privacy.links`).
        features: feature space (name, module or callable; see
            :func:`boomerang.privacy.features.resolve_feature_space`).
        size: compare at ``size`` x ``size`` pixels (1..:data:`MAX_SIZE`); None: see the module docstring.
        top_k, batch_size, device: as in :func:`boomerang.privacy.attack.linkage_attack`.
        background: colour transparent pixels are composited over (R, G, B in 0..255).

    Returns:
        :class:`boomerang.privacy.attack.LinkageReport` with ``queries`` (output
        paths), ``candidates`` (real paths), ``skipped`` (unreadable files and
        broken links with reasons) and ``info`` (folders, grid size, channels,
        link counts).

    Raises:
        AuditInputError: a folder missing, a bad link file, ``size`` not in
            1..:data:`MAX_SIZE`, no readable real image, or no usable link.
    """
    from boomerang.imageio import ImageInputError, read_image
    from boomerang.privacy.attack import linkage_attack

    real_dir, anon_dir = pathlib.Path(real_dir), pathlib.Path(anon_dir)
    for flag, d in (("REAL_DIR", real_dir), ("ANON_DIR", anon_dir)):
        if not d.is_dir():
            raise AuditInputError(f"{flag} {str(d)!r} is not a folder")
    size = check_size(size)  # before anything is read or allocated
    try:
        links = read_links(link_file)
    except LinkFileError as e:
        raise AuditInputError(str(e)) from None

    real_files = _relpaths(real_dir)
    anon_files = {ln.output: anon_dir / ln.output for ln in links}
    skipped: list[dict] = []

    if size is not None:
        grid = (size, size)
    else:
        sizes = Counter(s for p in [*real_files.values(), *anon_files.values()] if p.is_file()
                        for s in [_header_size(p)] if s is not None)
        only = next(iter(sizes)) if len(sizes) == 1 else None
        grid = only if only is not None and only[0] * only[1] <= MAX_NATIVE_PIXELS else (DEFAULT_RESIZE,) * 2

    def read_all(files: dict[str, pathlib.Path], where: str):
        out: dict[str, tuple[np.ndarray, bool]] = {}
        for rel, path in files.items():
            if not path.is_file():
                continue
            try:
                img = read_image(path, background=background)
            except ImageInputError as e:
                skipped.append({"file": f"{where}/{rel}", "reason": str(e)})
                continue
            out[rel] = (_to_grid(img.pixels, grid), img.is_grayscale)  # keep only the small grid copy
        return out

    real_imgs = read_all(real_files, "REAL_DIR")
    if not real_imgs:
        raise AuditInputError(f"no readable images in REAL_DIR {str(real_dir)!r}")
    anon_imgs = read_all(anon_files, "ANON_DIR")
    all_gray = lambda imgs: bool(imgs) and all(g for _, g in imgs.values())  # noqa: E731
    channels = 1 if all_gray(real_imgs) or all_gray(anon_imgs) else 3

    def grid_channels(x):
        return x if channels == 3 else _luma(x)

    import torch

    cand_names = list(real_imgs)
    cand_index = {n: i for i, n in enumerate(cand_names)}
    real = torch.stack([grid_channels(real_imgs[n][0]) for n in cand_names])
    del real_imgs
    q_names, q_src, q_tensors = [], [], []
    for ln in links:
        if not anon_files[ln.output].is_file():
            skipped.append({"file": f"ANON_DIR/{ln.output}", "reason": "linked output not found in ANON_DIR"})
            continue
        if ln.output not in anon_imgs:
            continue  # unreadable, already listed
        if ln.source not in cand_index:
            why = ("source not found in REAL_DIR" if ln.source not in real_files
                   else "source could not be read (listed above)")
            skipped.append({"file": f"ANON_DIR/{ln.output}", "reason": f"{why}: {ln.source}"})
            continue
        q_names.append(ln.output)
        q_src.append(cand_index[ln.source])
        q_tensors.append(grid_channels(anon_imgs[ln.output][0]))
    if not q_names:
        raise AuditInputError(f"none of the {len(links)} links in {link_file} leads from a readable real image "
                              "to a readable anonymised image; check REAL_DIR, ANON_DIR and --link-file")
    report = linkage_attack(real, torch.stack(q_tensors), q_src, features, top_k=top_k, batch_size=batch_size,
                            device=device, queries=q_names, candidates=cand_names)
    report.skipped = skipped
    report.info = {"real_dir": os.fspath(real_dir), "anon_dir": os.fspath(anon_dir),
                   "link_file": os.fspath(link_file), "links": len(links), "grid": {"width": grid[0],
                   "height": grid[1], "channels": channels}}
    return report
