"""Image-sized arrays on disk, read and written by bands of rows, and the noise of a band.

The bounded path of enhancement (:mod:`.banded`) keeps x0, x_t and x_{t-1} of a large
image in files instead of memory; only a band of rows of each is in memory at a time.

* :class:`BandFile` -- a float32 array [B, C, H, W] in a file, read and written by rows
  with explicit file I/O (``os.preadv`` / ``os.pwritev``): nothing is memory-mapped, so
  nothing of the file counts towards the process's resident memory (the kernel's page
  cache holds it).
* :class:`NoiseCursors` -- the generators that draw exactly the (channel, band) slice of
  one whole-image draw ``torch.randn((1, C, H, W), generator=g)`` of each item. PyTorch's
  CPU normal fill makes 16 values at a time from 16 uniforms, one uniform per value, so
  consecutive draws of multiples of 16 values from one generator are one long draw
  (checked by ``tests/enhance/test_enhance_banded.py``). A draw of the whole image is
  channel-major: channel c starts c H W values in. So the bounded path needs H W and
  every band's rows x W to be multiples of 16 (:func:`band_rows`; :func:`aligned`).
"""

from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["BandFile", "NoiseCursors", "band_rows", "aligned", "skip_normal"]

#: Values drawn at a time when a generator is moved forward without using the values.
_SKIP_CHUNK = 1 << 20


def aligned(height: int, width: int) -> bool:
    """Whether an image of height x width can be drawn in bands: H W is a multiple of 16."""
    return (int(height) * int(width)) % 16 == 0


def band_rows(width: int, want: int, multiple: int = 1) -> int:
    """The rows per band: ``want`` rounded up to a multiple of 16 / gcd(W, 16), so that each
    band holds a multiple of 16 values per channel, and of ``multiple`` (ILVR's scale)."""
    step = math.lcm(16 // math.gcd(int(width), 16), int(multiple))
    return max(step, -(-int(want) // step) * step)


def skip_normal(generator, n: int) -> None:
    """Move ``generator`` on by a draw of ``n`` standard normal values (n a multiple of 16),
    in chunks: the state it ends in is the state after ``torch.randn(n, generator=...)``."""
    import torch

    if n % 16:
        raise ValueError(f"skip a multiple of 16 values, got {n}")
    buf = torch.empty(min(n, _SKIP_CHUNK), dtype=torch.float32)
    while n > 0:
        k = min(n, _SKIP_CHUNK)
        torch.randn(k, generator=generator, out=buf[:k])
        n -= k


def _clone(generator):
    import torch

    g = torch.Generator(device="cpu")
    g.set_state(generator.get_state())
    return g


class NoiseCursors:
    """One whole-image draw per item (``torch.randn((1, C, H, W), generator=g)``), drawn slice
    by slice: :meth:`generators` (c) gives, per item, a generator positioned where the next
    band of channel c starts in that draw. Bands must be asked for top to bottom, each
    drawing exactly its rows x W values (a multiple of 16) from the generators it got.

    Nothing is assumed about whether a draw happens at all (a scheduler step may draw or
    not): channel 0 draws from copies of the items' generators; channel c > 0 is positioned
    when first asked for, by skipping c H W values, only if channel 0 drew. :meth:`finish`
    leaves each item's generator where the whole draw would have left it (untouched when
    nothing was drawn).
    """

    def __init__(self, generators, channels: int, plane: int):
        self.items = list(generators)
        self.channels, self.plane = int(channels), int(plane)
        self.start = [g.get_state() for g in self.items]
        self.cursors: dict[int, list] = {0: [_clone(g) for g in self.items]}

    def drew(self) -> bool:
        """Whether channel 0's generators have drawn anything."""
        import torch

        return any(not torch.equal(c.get_state(), s) for c, s in zip(self.cursors[0], self.start))

    def generators(self, channel: int) -> list:
        """Per item, the generator for the next band of ``channel`` (see the class)."""
        import torch

        if channel not in self.cursors:
            if not self.drew():  # nothing drawn: nothing to skip
                self.cursors[channel] = [_clone(g) for g in self.cursors[0]]
            else:
                gens = [torch.Generator(device="cpu") for _ in self.start]
                for g, s in zip(gens, self.start):
                    g.set_state(s)
                    skip_normal(g, channel * self.plane)
                self.cursors[channel] = gens
        return self.cursors[channel]

    def finish(self) -> None:
        """Leave each item's generator where the whole draw would have: after channel C-1's last band."""
        if not self.drew():
            return
        last = self.generators(self.channels - 1)
        for g, c in zip(self.items, last):
            g.set_state(c.get_state())


class BandFile:
    """A float32 array of ``shape`` [B, C, H, W] in the file ``path`` (C-order), read and written
    by bands of rows with ``os.preadv`` / ``os.pwritev`` (never mapped into memory).

    Use as a context manager or call :meth:`close`; the file is not deleted (it lives in the
    caller's temporary folder)."""

    def __init__(self, path, shape: tuple[int, int, int, int]):
        self.fd = -1
        self.path, self.shape = str(path), tuple(int(v) for v in shape)
        b, c, h, w = self.shape
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.ftruncate(self.fd, b * c * h * w * 4)
        self.device = "cpu"

    def _offset(self, b: int, c: int, row: int) -> int:
        _, C, H, W = self.shape
        return ((b * C + c) * H + row) * W * 4

    def read(self, r0: int, r1: int, channels: slice | None = None):
        """Rows [r0, r1) as a float32 CPU tensor [B, C, r1 - r0, W] (``channels``: a slice of C)."""
        import torch

        B, C, H, W = self.shape
        cs = range(C)[channels] if channels is not None else range(C)
        out = np.empty((B, len(cs), r1 - r0, W), np.float32)
        for b in range(B):
            for k, c in enumerate(cs):
                view = memoryview(out[b, k]).cast("B")
                got = os.preadv(self.fd, [view], self._offset(b, c, r0))
                if got != view.nbytes:
                    raise OSError(f"{self.path}: short read ({got} of {view.nbytes} bytes)")
        return torch.from_numpy(out)

    def write(self, r0: int, rows, channels: slice | None = None, item: int | None = None) -> None:
        """Store ``rows`` [B, C, n, W] (tensor or array; C: the ``channels`` slice of C, B: 1 for one
        ``item``) at rows [r0, r0 + n)."""
        B, C, H, W = self.shape
        arr = rows.detach().to("cpu").numpy() if hasattr(rows, "detach") else np.asarray(rows)
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        cs = range(C)[channels] if channels is not None else range(C)
        for j, b in enumerate(range(B) if item is None else [item]):
            for k, c in enumerate(cs):
                data = memoryview(arr[j, k]).cast("B")
                if os.pwritev(self.fd, [data], self._offset(b, c, r0)) != data.nbytes:
                    raise OSError(f"{self.path}: short write")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self):  # an error or a stop mid-way: the descriptor is not left open
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
