"""Contact sheets: an input beside its local samples, one row per level (torch-free).

This is the paper's Figure 1 as a single PNG: each row starts with the input
image, followed by its samples at one noise level, under a text label such as
``level 0.500  t=500  25 evals`` drawn with Pillow's default font.

Layout (all sizes in pixels): every tile is the input size scaled up by the
integer factor ``k = max(1, ceil(MIN_TILE / max(w, h)))`` with nearest
neighbour (so 28x28 digits stay crisp and readable); images larger than
``MAX_TILE`` are shrunk to fit it (Lanczos), so a sheet stays small whatever
the input size; tiles are separated by ``PAD``; each row has a label strip of
``LABEL_H`` above its tiles. See :func:`sheet_size`.
"""

from __future__ import annotations

import math
from typing import Sequence

__all__ = ["MIN_TILE", "MAX_TILE", "PAD", "LABEL_H", "BACKGROUND", "tile_scale", "tile_size", "thumbnail",
           "input_thumbnail", "png_bytes", "sheet_size", "contact_sheet"]

MIN_TILE = 96  # small images are upscaled (integer factor) to at least this many pixels on the long side
MAX_TILE = 512  # large images are shown shrunk (Lanczos) to at most this many pixels on the long side
PAD = 4  # gap between tiles and around the sheet
LABEL_H = 16  # height of the text strip above each row
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)


def tile_scale(width: int, height: int) -> int:
    """Integer upscaling factor for a tile of ``width`` x ``height`` (>= 1)."""
    return max(1, math.ceil(MIN_TILE / max(width, height, 1)))


def tile_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) of the tile of a ``width`` x ``height`` image: enlarged by
    :func:`tile_scale`, or shrunk to fit ``MAX_TILE`` (aspect kept, sides >= 1)."""
    if max(width, height) > MAX_TILE:
        f = MAX_TILE / max(width, height)
        return max(1, round(width * f)), max(1, round(height * f))
    k = tile_scale(width, height)
    return width * k, height * k


def thumbnail(image):
    """``image`` (PIL) at its tile size when that is smaller (for large images: load
    samples shrunk so that a sheet never holds them at full size)."""
    from PIL import Image

    tw, th = tile_size(*image.size)
    if (tw, th) >= image.size:
        return image
    return image.resize((tw, th), Image.Resampling.LANCZOS, reducing_gap=3.0)


def input_thumbnail(reference):
    """An input as its contact sheet shows it, at most at its tile size: ``reference`` (float
    in [0, 1] or uint8, (H, W, C) with C = 1 or 3) quantised to 8 bits as a PIL image (``L`` or
    ``RGB``), shrunk by :func:`thumbnail`. :func:`contact_sheet` draws it exactly as it draws the
    full-size input (pass the input's own size as ``size``), so it can be kept instead of the input."""
    from PIL import Image

    from boomerang.metrics import quantize8

    q = quantize8(reference)  # float or uint8 (large inputs): no full-size float temporaries
    return thumbnail(Image.fromarray(q[..., 0] if q.shape[-1] == 1 else q))


def png_bytes(image) -> bytes:
    """A PIL image as PNG bytes (lossless: reopening it gives the same pixels)."""
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def sheet_size(width: int, height: int, n_samples: int, n_rows: int) -> tuple[int, int]:
    """(width, height) of a sheet for inputs of ``width`` x ``height`` pixels,
    ``n_samples`` samples per row (plus the input) and ``n_rows`` levels."""
    tw, th = tile_size(width, height)
    return PAD + (n_samples + 1) * (tw + PAD), PAD + n_rows * (LABEL_H + th + PAD)


def contact_sheet(image, rows: Sequence[tuple[str, Sequence]], *, size: tuple[int, int] | None = None):
    """Draw a contact sheet.

    Args:
        image: the input as a PIL image (any mode; converted to RGB), size w x h, or its
            :func:`thumbnail` when ``size`` gives (w, h).
        rows: one ``(label, samples)`` pair per level; ``samples`` are PIL images
            of the same size as ``image`` (or already at its :func:`tile_size`,
            see :func:`thumbnail`); every row must hold the same number.

    Returns:
        An RGB PIL image of size :func:`sheet_size`.

    Raises:
        ValueError: if rows are empty, uneven, or a sample's size differs from the input's.
    """
    from PIL import Image, ImageDraw, ImageFont

    if not rows:
        raise ValueError("contact_sheet needs at least one row")
    n = len(rows[0][1])
    w, h = size if size is not None else image.size
    tw, th = tile_size(w, h)
    for label, samples in rows:
        if len(samples) != n:
            raise ValueError("every row of a contact sheet must have the same number of samples")
        for s in samples:
            if s.size not in ((w, h), (tw, th)):
                raise ValueError(f"sample size {s.size} differs from the input size {(w, h)}")
    sheet = Image.new("RGB", sheet_size(w, h, n, len(rows)), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()

    def tile(im):
        if im.size == (tw, th):
            return im.convert("RGB")
        if tw < im.size[0]:  # large: shrink (smooth); small: enlarge (crisp, integer factor)
            return thumbnail(im).convert("RGB")
        return im.convert("RGB").resize((tw, th), Image.Resampling.NEAREST)

    first = tile(image)
    y = PAD
    for label, samples in rows:  # "input" over the first column, the row's label over its samples
        draw.text((PAD, y + 2), "input", fill=TEXT, font=font)
        draw.text((PAD + tw + PAD, y + 2), label, fill=TEXT, font=font)
        y += LABEL_H
        x = PAD
        for im in [first, *map(tile, samples)]:
            sheet.paste(im, (x, y))
            x += tw + PAD
        y += th + PAD
    return sheet
