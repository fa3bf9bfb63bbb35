"""The bounded path of enhancement: x0, x_t and x_{t-1} of a large image in files, stepped band by band.

``enhance --scale 1`` on a 48 MP image held several image-sized float buffers through the
reverse process (BENCHMARKS.md section 12). On this path the same reverse process
(:func:`boomerang.reverse.reverse_process`, the one loop) runs with the :class:`Banded`
execution instead of :class:`~boomerang.reverse.WholeImage`:

* x_t lives in a :class:`~boomerang.enhance.bands.BandFile`; the windowed denoiser
  (:func:`boomerang.enhance.tiling.windowed_denoiser`) reads its windows through a
  :class:`RowSource` (the scheduler's ``scale_model_input`` applied per band) and hands the
  blended model output over band by band as its rows become final;
* the scheduler's step is applied to each band of final rows, one channel at a time, into a
  second file (x_{t-1}); the two files swap at every step;
* the forward jump (:func:`add_noise_banded`) and the per-step hook (ILVR) run per band too;
  ILVR at a scale s > 1 (a power of two) sees each band with :data:`ILVR_HALO` input rows of
  halo above and below and writes its band's rows into the other file.

Every output byte is the one of the in-memory path: the steps taken here are elementwise
(ddpm, ddim, euler: :data:`BANDED_SCHEDULERS`), and the fresh noise of the whole image (the
forward eps, ddpm's and ddim eta > 0's step noise) is drawn slice by slice in the whole draw's
order (:class:`~boomerang.enhance.bands.NoiseCursors`); ILVR's eps', which a band's halo reads
beyond the band, is drawn whole into a file on first use (:class:`StepNoise`). A scheduler that keeps
image-sized history (dpm++, unipc, deis, heun, lms ...) stays on the in-memory path
(:func:`can_band`). ``tests/enhance/test_enhance_banded.py`` compares both paths byte for byte.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from boomerang.enhance.bands import BandFile, NoiseCursors, aligned, band_rows

__all__ = ["BANDED_SCHEDULERS", "BANDED_MIN_PIXELS", "BAND_ROWS", "ILVR_SCALES", "can_band", "Banded", "BandRegion",
           "StepNoise", "RowSource", "add_noise_banded"]

#: Schedulers whose step is elementwise and keeps no image-sized state between steps.
BANDED_SCHEDULERS: tuple[str, ...] = ("ddpm", "ddim", "euler")
#: Images (per item, model space) of at least this many pixels take the bounded path; below it the
#: in-memory path costs well under 100 MB more (BENCHMARKS.md section 12).
BANDED_MIN_PIXELS = 1 << 20
#: Rows of a band of the step, the forward jump and the hook (rounded by ``bands.band_rows``).
BAND_ROWS = 256
#: Scales at which ILVR runs band by band: 1 (pixel by pixel) and powers of two, where the
#: bicubic lift computes the same source positions and weights on a band as on the whole image
#: (1/s exact in binary); its taps reach 2 input rows per pass: a halo of :data:`ILVR_HALO` input rows.
ILVR_SCALES: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
#: Input (low-resolution) rows of halo around a band for ILVR at a scale above 1 (3 bicubic
#: passes of 2 rows each: 6, plus margin).
ILVR_HALO = 8


def can_band(model, scheduler: str, height: int, width: int, *, consistency_scale: float | None = None) -> str | None:
    """Why an image of height x width (model space) cannot take the bounded path, or None if it can.

    The path needs: a pixel model on the CPU (the model space is the image; decode is the
    identity), a scheduler in :data:`BANDED_SCHEDULERS` without dynamic thresholding (a
    per-image quantile), a model output of C or (ddpm, learned variance) 2C channels, H W a
    multiple of 16 (the noise is drawn slice by slice), and for ILVR (``consistency_scale``:
    output side / input side, exactly) a scale in :data:`ILVR_SCALES`.
    """
    import torch

    if not model.pixel_space:
        return "latent model"
    if torch.device(getattr(model, "device", "cpu")).type != "cpu":
        return "not on the CPU"
    if scheduler not in BANDED_SCHEDULERS:
        return f"scheduler {scheduler} keeps image-sized state"
    if bool((model.scheduler_config or {}).get("thresholding", False)):
        return "dynamic thresholding"
    c, oc = int(model.image_channels), int(model.prediction_channels)
    if not (oc == c or (oc == 2 * c and scheduler == "ddpm")):
        return f"{oc} prediction channels for {c} image channels"
    if not aligned(height, width):
        return "H x W is not a multiple of 16"
    if consistency_scale is not None and consistency_scale not in ILVR_SCALES:
        return f"ILVR at scale {consistency_scale:g} (band by band: 1 or a power of two)"
    return None


@dataclass(frozen=True)
class BandRegion:
    """Where a hook call of the bounded path acts: one channel of rows [r0, r1) of an image of
    ``height`` rows (a band with its halo), and ``noise()``: the rows' slice [B, 1, r1 - r0, W]
    of one whole-image draw per item, as ``torch.randn((1, C, H, W), generator=g)`` would give it
    (drawn on first use, see :class:`StepNoise`)."""

    channel: int
    r0: int
    r1: int
    height: int
    noise: object


class StepNoise:
    """One whole-image draw per item (``torch.randn((1, C, H, W), generator=g)``), made into a file
    in ``folder`` when first asked for: each item's generator draws its channels and rows in
    that order in chunks of whole rows (multiples of 16 values: the same numbers as the one
    draw, and the generator ends where the one draw leaves it). Nothing is drawn unless asked."""

    def __init__(self, folder, shape, generators, rows: int):
        from pathlib import Path

        self.path, self.shape, self.generators, self.rows = Path(folder) / "noise.f32", tuple(shape), generators, rows
        self.file = None

    def rows_of(self, channel: int, r0: int, r1: int):
        """[B, 1, r1 - r0, W] of the draw."""
        import torch

        B, C, H, W = self.shape
        if self.file is None:
            self.file = BandFile(self.path, self.shape)
            for b, g in enumerate(self.generators):
                for c in range(C):
                    for a in range(0, H, self.rows):
                        n = min(H, a + self.rows) - a
                        self.file.write(a, torch.randn((1, 1, n, W), generator=g), slice(c, c + 1), item=b)
        return self.file.read(r0, r1, slice(channel, channel + 1))

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.path.unlink(missing_ok=True)


class RowSource:
    """x_in of one step as the windows need it: rows of a :class:`BandFile` read when a window
    reaches them (tops never decrease in the canonical order), ``transform`` (the scheduler's
    ``scale_model_input``, elementwise) applied to each band read. Holds at most the rows of
    the windows in flight."""

    def __init__(self, store: BandFile, transform, device="cpu"):
        self.store, self.transform, self.device = store, transform, device
        self.shape = store.shape
        self.lo = self.hi = 0
        self.rows = None

    def crop(self, r: int, q: int, h: int, w: int):
        """x_in[..., r:r+h, q:q+w] (a view of the rows held)."""
        import torch

        if r < self.lo:
            raise ValueError("windows must come top to bottom (the canonical order)")
        if r + h > self.hi:
            keep = self.rows[..., r - self.lo:, :] if self.rows is not None and r < self.hi else None
            fresh = self.transform(self.store.read(max(self.hi, r), r + h).to(self.device))
            self.rows = fresh if keep is None else torch.cat([keep, fresh], dim=2)
            self.lo, self.hi = r, r + h
        return self.rows[..., r - self.lo:r - self.lo + h, q:q + w]


def _bands(height: int, rows: int):
    return [(r0, min(height, r0 + rows)) for r0 in range(0, height, rows)]


def _prediction_slice(out, channels: int, c: int):
    """Channel c of a model output [B, C or 2C, n, W] as the scheduler reads it for one image
    channel: [eps_c] or, with learned variance, [eps_c, var_c]."""
    if out.shape[1] == channels:
        return out[:, c:c + 1]
    return out[:, [c, channels + c]]


class _StepBands:
    """The scheduler's step on the model output's final rows as the blend hands them over, in bands of
    ``rows`` rows, one channel at a time, from x_t's file into x_{t-1}'s file."""

    def __init__(self, sched, t, x_t: BandFile, x_prev: BandFile, kwargs: dict, generators, rows: int, device):
        _, self.C, self.H, W = x_t.shape
        self.sched, self.t, self.x_t, self.x_prev, self.kwargs = sched, t, x_t, x_prev, kwargs
        self.rows, self.device = rows, device
        self.noise = NoiseCursors(generators, self.C, self.H * W)
        self.pending, self.held, self.done = [], 0, 0  # output rows waiting for a full band, from row `done`
        self.last = None

    def add(self, r0: int, r1: int, out) -> None:
        import torch

        assert r0 == self.done + self.held, "rows arrive in order"
        self.pending.append(out)
        self.held += r1 - r0
        while self.held >= self.rows or (self.held and self.done + self.held == self.H):
            n = min(self.rows, self.held)
            rows = torch.cat(self.pending, dim=2) if len(self.pending) > 1 else self.pending[0]
            self._step(self.done, self.done + n, rows[:, :, :n])
            rest = rows[:, :, n:]
            self.pending = [rest] if rest.shape[2] else []
            self.held -= n
            self.done += n

    def _step(self, r0: int, r1: int, out) -> None:
        x = self.x_t.read(r0, r1).to(self.device)
        for c in range(self.C):
            kw = dict(self.kwargs)
            if "generator" in kw:
                kw["generator"] = self.noise.generators(c)
            sub = copy.copy(self.sched)  # schedulers count their steps: each band starts from the same state
            prev = sub.step(_prediction_slice(out, self.C, c), self.t, x[:, c:c + 1], **kw).prev_sample
            self.x_prev.write(r0, prev, channels=slice(c, c + 1))
            self.last = sub

    def close(self) -> None:
        assert self.done == self.H and not self.held, "every row was stepped"
        self.noise.finish()
        self.sched.__dict__.update(self.last.__dict__)  # the state one whole-image step leaves


class Banded:
    """The bounded execution of :func:`boomerang.reverse.reverse_process`: x_t is a
    :class:`BandFile`; each step reads it window by window and writes x_{t-1} band by band into
    a second file in ``folder`` (the two swap), the hook runs per channel and band
    (``hook(i, t, x, region)`` with a :class:`BandRegion`).

    Args:
        folder: a private temporary folder for the second file.
        shape: [B, C, H, W] of x_t.
        generators: one per item (the steps' and the hook's fresh noise).
        rows: rows per band (``bands.band_rows``: each band a multiple of 16 values per channel,
            and of ``multiple``).
        halo: rows above and below a band that the hook also sees (ILVR at a scale s > 1: its
            lift is a bicubic resize, whose taps reach 2 input rows per pass); only the band's
            own rows of the hook's result are kept.
        multiple: the bands start on multiples of it (ILVR's s-row blocks).
    """

    def __init__(self, folder, shape, generators, rows: int = BAND_ROWS, device="cpu", halo: int = 0,
                 multiple: int = 1):
        from pathlib import Path

        self.folder, self.shape, self.generators, self.device = folder, tuple(shape), list(generators), device
        self.rows, self.halo = band_rows(self.shape[-1], rows, multiple), int(halo)
        self.spare = BandFile(Path(folder) / "x_next.f32", self.shape)

    def step(self, denoiser, sched, t, x_t: BandFile, kwargs: dict) -> BandFile:
        scale = getattr(sched, "scale_model_input", None)
        source = RowSource(x_t, (lambda rows: scale(rows, t)) if scale is not None else (lambda rows: rows),
                           self.device)
        stepper = _StepBands(sched, t, x_t, self.spare, kwargs, self.generators, self.rows, self.device)
        denoiser(source, t, sink=stepper.add)
        stepper.close()
        self.spare = x_t
        return stepper.x_prev

    def after(self, hook, i: int, t, x_t: BandFile) -> BandFile:
        B, C, H, W = x_t.shape
        noise = StepNoise(self.folder, self.shape, self.generators, self.rows)
        out = self.spare  # bands are read with their halo from x_t: results go to the other file
        for r0, r1 in _bands(H, self.rows):
            a, b = max(0, r0 - self.halo), min(H, r1 + self.halo)
            x = x_t.read(a, b).to(self.device)
            done = x[:, :, r0 - a:r1 - a].clone()
            for c in range(C):
                region = BandRegion(c, a, b, H, lambda c=c, a=a, b=b: noise.rows_of(c, a, b).to(self.device))
                done[:, c:c + 1] = hook(i, t, x[:, c:c + 1], region)[:, :, r0 - a:r1 - a]
            out.write(r0, done)
        noise.close()
        self.spare = x_t
        return out

    def close(self) -> None:
        self.spare.close()


def add_noise_banded(sched, plan, z0: BandFile, x_t: BandFile, generators, rows: int = BAND_ROWS, device="cpu"):
    """The forward jump (:func:`boomerang.reverse.add_noise`) band by band from ``z0``'s file into
    ``x_t``'s, eps drawn slice by slice in the order of the whole draw ``per_item_noise``.

    Returns:
        ``x_t``.
    """
    from boomerang.reverse import add_noise, per_item_noise

    B, C, H, W = z0.shape
    noise = NoiseCursors(generators, C, H * W)
    for r0, r1 in _bands(H, band_rows(W, rows)):
        z = z0.read(r0, r1).to(device)
        for c in range(C):
            eps = per_item_noise(noise.generators(c), (1, r1 - r0, W), device)
            x_t.write(r0, add_noise(sched, plan, z[:, c:c + 1], eps, device), channels=slice(c, c + 1))
    noise.finish()
    return x_t
