"""Low-frequency consistency with the input: ILVR (Choi et al. 2021, Alg. 1).

ILVR conditions an unconditional reverse process on a reference image y by
replacing, after every reverse step, the low frequencies of the current
sample with those of the reference noised to the same step:

    x_{t-1} <- x_{t-1} - phi(x_{t-1}) + phi(y_{t-1}),   y_{t-1} ~ q(y_{t-1} | y)

Here D is the box average over scale x scale blocks down to the *input's*
resolution (:mod:`boomerang.enhance.resample`), and the low-resolution
reference is the input itself, so the step is

    x <- x + U(r_{t-1} - D(x)),   r_{t-1} = sqrt(alpha_bar_{t-1}) r + sqrt(1 - alpha_bar_{t-1}) D(eps')

where U lifts a low-resolution difference to a *smooth* full-resolution one
with D(U(d)) = d: bicubic upsampling refined by ``smooth_iterations`` bicubic
corrections, then a last nearest-neighbour correction of what remains (exact
for integer scales, since D of a nearest-neighbour upsampling is the
identity). Nearest-neighbour alone would satisfy D(U(d)) = d too, but leaves
visible scale x scale blocks: on the 8x benchmark sheet the mean gradient
across block borders was 1.45x that inside blocks.

with eps' ~ N(0, I) drawn at full resolution from the image's own generator
(D(eps') has exactly the statistics of D of x_{t-1}'s noise). For an integer
scale D(U(z)) = z, so after the step D(x) = r_{t-1} exactly; after the last
step (alpha_bar = 1) D(output) = input: downsampling the enhanced image gives
the input back (up to the final clamp to [-1, 1] and 8-bit rounding). For a
fractional scale the blocks of D overlap and the step is repeated
``iterations`` times (a Landweber iteration) to approach D(x) = r.

Sigma-space schedulers (Euler, Heun, LMS: samples are x_t / sqrt(alpha_bar_t),
``boomerang.schedulers.works_in_sigma_space``) use r_t = r + sigma_t D(eps')
instead. The step runs once per completed reverse step, as the hook of
:func:`boomerang.reverse.reverse_process` (a second-order step such as heun's:
after its corrector), at the alpha_bar of the timestep x has reached.
"""

from __future__ import annotations

from dataclasses import dataclass

from boomerang.enhance.resample import area_down, nearest_up

__all__ = ["Consistency"]


@dataclass
class Consistency:
    """ILVR low-frequency replacement towards a low-resolution reference.

    Attributes:
        reference: [B, C, h, w] float tensor, the input in the model's space
            (pixel models: the input image in [-1, 1] at its own resolution).
        iterations: repetitions of the replacement per step (1 is exact for
            integer scale factors; 3 by default for fractional ones).
        smooth_iterations: bicubic refinements of the lift U (0: nearest-neighbour only).
        bounds: the value range of the output (pixel models: [-1, 1]; None for latents).
            The smooth lift can overshoot it next to saturated pixels, so after the
            last step ``final_projections`` rounds of alternating projections (clamp
            to the bounds, then the orthogonal projection x + nearest_up(r - D(x))
            onto {D(x) = r}) bring x into both sets (POCS; both are convex and meet).
    """

    reference: object  # torch.Tensor [B, C, h, w]
    iterations: int = 1
    smooth_iterations: int = 3
    bounds: tuple[float, float] | None = (-1.0, 1.0)
    final_projections: int = 20

    @property
    def low_size(self) -> tuple[int, int]:
        return tuple(self.reference.shape[-2:])

    def lift(self, delta, size):
        """U(delta): a smooth [B, C, *size] u with area_down(u) == delta (exact for integer ratios)."""
        import torch.nn.functional as F

        u = None
        for _ in range(max(0, int(self.smooth_iterations))):
            rest = delta if u is None else delta - area_down(u, self.low_size)
            step = F.interpolate(rest, size=size, mode="bicubic", align_corners=False)
            u = step if u is None else u + step
        rest = delta if u is None else delta - area_down(u, self.low_size)
        step = nearest_up(rest, size)
        return step if u is None else u + step

    def band(self, region) -> "Consistency":
        """The replacement for one :class:`~boomerang.enhance.banded.BandRegion` of enhance's bounded
        path (rows [r0, r1) of one channel, a band with its halo): the reference is then a
        ``BandFile`` at the input's size (an integer scale s = height / its height), of which the
        region's channel and low-resolution rows [r0 / s, r1 / s) are read."""
        import dataclasses

        s = region.height // self.reference.shape[-2]
        if region.r0 % s or region.r1 % s:
            raise ValueError(f"a band of rows [{region.r0}, {region.r1}) does not fall on {s}-row blocks")
        ref = self.reference.read(region.r0 // s, region.r1 // s, slice(region.channel, region.channel + 1))
        return dataclasses.replace(self, reference=ref)

    def error(self, x) -> float:
        """Mean |D(x) - reference| (model units)."""
        return float((area_down(x, self.low_size) - self.reference.to(x.device)).abs().mean())

    def apply(self, x, alpha_bar: float | None, generators, *, sigma_space: bool = False,
              flow_sigma: float | None = None, noise=None):
        """One ILVR replacement of the low frequencies of x (at the step whose alpha_bar is given).

        Args:
            x: [B, C, H, W] the sample just produced by the scheduler step.
            alpha_bar: alpha_bar of the timestep x is at (1.0 for the final x0).
            generators: one torch.Generator per item; eps' is drawn from them
                (on the CPU, float32, full resolution), only when alpha_bar < 1.
            sigma_space: x is x_t / sqrt(alpha_bar_t) (Euler, Heun, LMS).
            flow_sigma: a flow-matching model (``alpha_bar`` is then ignored): x is
                x_t = (1 - sigma) x0 + sigma eps, and the low frequencies become those of
                (1 - sigma) reference + sigma eps' (0.0 for the final x0).
            noise: enhance's bounded path: ``noise()`` gives eps' for x's rows (cut from the
                whole image's draw) instead of drawing it from ``generators``.

        Returns:
            [B, C, H, W] tensor with area_down(result) == the noised reference
            (exactly for integer ratios).
        """
        import torch

        ref = self.reference.to(x.device, torch.float32)
        size = tuple(x.shape[-2:])
        if flow_sigma is not None:
            alpha_bar = 1.0 if flow_sigma <= 0 else 0.0  # below only "is there noise left" is read of it
        def draw():
            if noise is not None:
                return noise()
            return torch.cat([torch.randn((1, *x.shape[1:]), generator=g, dtype=torch.float32) for g in generators])

        if flow_sigma is not None and flow_sigma > 0:
            eps = draw()
            target = (1 - flow_sigma) * ref + flow_sigma * area_down(eps.to(x.device), self.low_size)
        elif alpha_bar < 1.0:
            eps = draw()
            eps_low = area_down(eps.to(x.device), self.low_size)
            if sigma_space:
                target = ref + ((1 - alpha_bar) / alpha_bar) ** 0.5 * eps_low
            else:
                target = alpha_bar ** 0.5 * ref + (1 - alpha_bar) ** 0.5 * eps_low
        else:
            target = ref
        for _ in range(max(1, int(self.iterations))):
            x = x + self.lift(target - area_down(x, self.low_size), size)
        if alpha_bar >= 1.0 and self.bounds is not None:
            lo, hi = self.bounds
            for _ in range(int(self.final_projections)):
                x = x.clamp(lo, hi)
                x = x + nearest_up(target - area_down(x, self.low_size), size)
        return x
