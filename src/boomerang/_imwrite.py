"""Writing images and files (part of :mod:`boomerang.imageio`): metadata-free PNGs, atomic writes, the
write journal a failed run rolls back, file modes that follow the umask, and the output-folder check.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from boomerang._fit import to_model_channels
from boomerang.errors import SettingError
from boomerang.fileio import OutputWriteError, atomic_write_bytes, follow_umask  # noqa: F401  (re-exported)

__all__ = [
    "save_image",
    "atomic_write_bytes",
    "OutputWriteError",
    "WriteJournal",
    "follow_umask",
    "check_output_dir",
]

# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def save_image(
    pixels: np.ndarray,
    path: str | os.PathLike[str],
    *,
    bit_depth: int = 8,
    grayscale: bool | None = None,
) -> None:
    """Write an image as a metadata-free PNG, atomically.

    The file is written to a temporary file in the destination folder and
    moved into place with ``os.replace``; on any error the temporary file is
    removed and ``path`` is left as it was (absent, or the old file).

    Args:
        pixels: float ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)``, values in
            ``[0, 1]`` (clipped; NaN is an error), quantised with rounding; or
            uint8 values 0..255, written as they are (8-bit output).
        path: destination; should end in ``.png`` (the format is PNG whatever
            the suffix). The folder must exist.
        bit_depth: 8 or 16 bits per sample.
        grayscale: ``None`` (default) writes a gray PNG (``L`` / 16-bit gray)
            for single-channel input and for three-channel input whose
            channels are exactly equal after quantisation, else RGB.
            ``True`` forces gray (three channels are reduced to Rec. 601
            luminance); ``False`` forces RGB.

    Raises:
        ValueError: bad shape, bit depth, or non-finite values.
        OutputWriteError: (an OSError and a ValueError) the folder does not
            exist or is not writable, the disk is full ...: one line naming
            ``path`` and the cause; nothing is left behind.
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
    x = np.asarray(pixels)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[-1] not in (1, 3) or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"pixels must be (H, W), (H, W, 1) or (H, W, 3), got shape {np.shape(pixels)}")
    if x.dtype == np.uint8 and bit_depth == 8 and grayscale is None:  # already the bytes to write
        _write_quantized(x, path, grayscale)
        return
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / np.float32(255)
    elif not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"pixels must be float in [0, 1] or uint8, got {x.dtype}")
    else:
        x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        raise ValueError("pixels hold NaN or infinite values; refusing to write them as an image")
    if grayscale is True:
        x = to_model_channels(x, 1)
    elif grayscale is False:
        x = to_model_channels(x, 3)

    top = 255 if bit_depth == 8 else 65535
    q = np.empty(x.shape, np.uint8 if bit_depth == 8 else np.uint16)
    for y in range(0, x.shape[0], 1024):  # in strips: no full-size float temporaries
        q[y:y + 1024] = np.rint(np.clip(x[y:y + 1024], 0.0, 1.0) * top)
    _write_quantized(q, path, grayscale)


def _write_quantized(q: np.ndarray, path, grayscale: bool | None) -> None:
    """Encode (H, W, 1 | 3) uint8 / uint16 values as PNG and write them atomically."""
    bit_depth = 8 if q.dtype == np.uint8 else 16
    if q.shape[-1] == 3 and grayscale is None and np.array_equal(q[..., 0], q[..., 1]) and np.array_equal(
        q[..., 1], q[..., 2]
    ):
        q = q[..., :1]

    if q.shape[-1] == 1:
        if bit_depth == 8:  # an L image over the array's bytes (no copy when they are contiguous)
            data = _encode_with_pillow(Image.frombuffer("L", (q.shape[1], q.shape[0]), np.ascontiguousarray(q),
                                                        "raw", "L", 0, 1))
        else:
            img = Image.frombytes("I;16", (q.shape[1], q.shape[0]), np.ascontiguousarray(q[..., 0]).astype("<u2").tobytes())
            data = _encode_with_pillow(img)
    elif bit_depth == 8:
        data = _encode_with_pillow(Image.fromarray(np.ascontiguousarray(q)))
    else:
        data = _encode_png16_rgb(q)
    atomic_write_bytes(path, data)


def _encode_with_pillow(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    # A fresh image carries no info; pnginfo=None, no exif, no icc, no dpi.
    img.info.clear()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def _encode_png16_rgb(q: np.ndarray) -> bytes:
    """16-bit RGB PNG (Pillow has no 48-bit mode to write from). No metadata."""
    h, w = q.shape[:2]
    rows = np.ascontiguousarray(q.astype(">u2")).view(np.uint8).reshape(h, w * 6)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()  # filter 0 per row

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


class WriteJournal:
    """Remembers the files (and folders) one run writes, so that a failed run can
    take them back: no image is ever left without the metadata that describes it.

    Use :meth:`save_image` instead of :func:`save_image` (it creates missing
    folders and records them) and :meth:`rollback` when the run fails.
    """

    def __init__(self) -> None:
        self.files: list[Path] = []
        self.folders: list[Path] = []

    def save_image(self, pixels: np.ndarray, path: str | os.PathLike[str], **kwargs) -> None:
        """:func:`save_image` into ``path``, creating and recording its missing folders."""
        path = Path(path)
        missing = []
        folder = path.parent
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for f in reversed(missing):
            f.mkdir()
            self.folders.append(f)
        save_image(pixels, path, **kwargs)
        self.files.append(path)

    def rollback(self) -> None:
        """Delete the recorded files, then the recorded folders that are empty (deepest first)."""
        for f in self.files:
            try:
                f.unlink()
            except OSError:
                pass
        for d in sorted(self.folders, key=lambda p: len(p.parts), reverse=True):
            try:
                d.rmdir()
            except OSError:
                pass
        self.files, self.folders = [], []



def check_output_dir(
    out_dir: str | os.PathLike[str],
    input_paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    output_names: Iterable[str] = (),
) -> Path:
    """Refuse an output folder that would write into the inputs or cannot be written.

    Checked before any work, so a bad folder costs nothing: ``out_dir`` must
    be a folder or creatable as one (no part of its path a file), and the
    folder itself (or, when it does not exist yet, its nearest existing parent)
    must take a new file: a temporary file is created in it and deleted again,
    which also catches read-only file systems and access rules that
    permission bits do not show. A disk that fills up later is reported by the
    writer (:class:`~boomerang.fileio.OutputWriteError`).

    Args:
        out_dir: the folder outputs go to (need not exist yet).
        input_paths: input files and/or folders, as given by the user.
        output_names: file names (no folder) that will be written into
            ``out_dir``; each is checked against the input files.

    Returns:
        ``out_dir`` resolved (symlinks followed) as a :class:`pathlib.Path`.

    Raises:
        ValueError: ``out_dir`` is an input folder or lies inside one; or
            ``out_dir`` is an input file; or ``out_dir / name`` for one of
            ``output_names`` is an input file (it would be overwritten).
        SettingError: (a ValueError naming ``out``) ``out_dir`` exists and is
            not a folder, lies under a file, or cannot be written.
    """
    if isinstance(input_paths, (str, os.PathLike)):
        input_paths = [input_paths]
    out = Path(out_dir).resolve()
    input_files: set[Path] = set()
    for p in input_paths:
        src = Path(p).resolve()
        if src.is_dir():
            if out == src or src in out.parents:
                raise ValueError(
                    f"output folder {out_dir} is inside the input folder {p}; outputs could be read back "
                    "as inputs or overwrite them. Choose an output folder outside the inputs."
                )
        else:
            if out == src:
                raise ValueError(f"output folder {out_dir} is the input file {p}; choose another output folder.")
            input_files.add(src)
    for name in output_names if input_files else ():  # a folder input: nothing to overwrite by name
        target = (out / name).resolve()
        if target in input_files:
            raise ValueError(
                f"writing {name} into {out_dir} would overwrite the input file {target}; "
                "choose another output folder."
            )
    _check_writable(Path(out_dir))
    return out


def _check_writable(out_dir: Path) -> None:
    """Refuse (SettingError) an output folder that is not a folder, cannot be created or cannot be written."""
    if os.path.lexists(out_dir) and not out_dir.is_dir():
        raise SettingError(f"`out` {out_dir} exists and is not a folder; choose another output folder")
    folder = Path(os.path.abspath(out_dir))
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise SettingError(f"`out` {out_dir} cannot be created: {folder} is a file, not a folder; "
                           "choose another output folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".boomerang-probe-", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        what = "is not writable" if folder == Path(os.path.abspath(out_dir)) else f"cannot be created in {folder}"
        raise SettingError(f"`out` {out_dir} {what} ({exc.strerror or exc}); choose another output folder") from None
