"""Calibrate the anonymisation level to a re-identification target on the user's own data.

``boomerang calibrate-privacy IN_DIR --target-top1 0.05 --out OUT``: N sources
drawn from IN_DIR (a fixed draw: ``numpy.random.default_rng(seed).choice``,
sorted) are released by the ``anonymise`` task at probed levels, through the
executor's one block function (:func:`boomerang.tasks.blocks.sample_block`),
and attacked with every image of IN_DIR (plus a reference pool) as candidates:
sources included, as an attacker holding the real set has them, so the rate
carries over to the release of the whole folder. The attack, the comparison
grid and the feature spaces are those of ``audit-privacy``
(:mod:`boomerang.privacy.realset`, :mod:`boomerang.privacy.attack`).

**The search.** A level *meets the target* when the Wilson 95% upper bound of
its top-1 re-identification rate (:func:`boomerang.metrics.wilson_interval`,
the interval :func:`boomerang.stats.wilson` rounds for reports) is at most the
target. Probes, a fixed budget of ``2 + bisections``:

1. ``max_level`` (default 1). If it does not meet the target, there is no
   recommendation (and, when no source was found at all, the number of sources
   needed to certify the target is given: with 0 hits the upper bound falls
   below 5% only from 73 sources).
2. ``min_level`` (default 0). If it meets the target, it is the recommendation.
3. ``bisections`` (default 6) halvings of the bracket [lo failing, hi meeting]:
   the middle (rounded to 4 decimals) replaces the end whose verdict it shares.
   The recommendation is the final ``hi``; the resolution is the final width
   (1/64 with the defaults).

Every probe uses the same sources and the same seeds (each sample's seed comes
from ``seed``, the source's path and the sample index), so the levels differ
only by their level. Bisection assumes that the rate falls with the level;
the report checks it on the probes and says so when it does not
(``monotone: false`` and the pairs that break it).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
import numpy as np

from boomerang.errors import SettingError

__all__ = ["Probe", "Calibration", "calibrate_privacy", "sources_needed", "DEFAULT_SOURCES", "DEFAULT_BISECTIONS"]

DEFAULT_SOURCES = 200
DEFAULT_BISECTIONS = 6


def sources_needed(target: float, hits: int = 0) -> int:
    """The smallest N whose Wilson 95% upper bound of ``hits / N`` is at most ``target``."""
    from boomerang.metrics import wilson_interval

    if not 0 < target < 1:
        raise ValueError(f"target must lie in (0, 1), got {target}")
    lo, hi = max(1, hits), 1
    while wilson_interval(hits, max(hi, hits))[1] > target:
        hi *= 2
        if hi > 10 ** 9:
            raise ValueError(f"no N certifies {target} with {hits} hits")
    lo = max(lo, hi // 2)
    while lo < hi:
        mid = (lo + hi) // 2
        if wilson_interval(hits, mid)[1] <= target:
            hi = mid
        else:
            lo = mid + 1
    return hi


@dataclass
class Probe:
    """One probed level: top-k rates (:class:`~boomerang.privacy.attack.Rate`), mean SSIM of each
    release to its source (on the comparison grid), class retention (or None), seconds taken.
    ``sqrt_alpha_bar`` is the signal the level keeps (the plan's ``signal_kept``: 1 - sigma on a
    flow-matching model)."""

    level: float
    timestep: int | None
    sqrt_alpha_bar: float
    top1: object
    top5: object
    ssim: float
    class_retention: float | None
    seconds: float
    meets: bool

    def to_dict(self) -> dict:
        from boomerang.stats import wilson

        return {"level": self.level, "timestep": self.timestep, "sqrt_alpha_bar": self.sqrt_alpha_bar,
                "top1": {"hits": self.top1.hits, "n": self.top1.n, "rate": self.top1.rate,
                         "ci95": wilson(self.top1.hits, self.top1.n)},
                "top5": {"hits": self.top5.hits, "n": self.top5.n, "rate": self.top5.rate,
                         "ci95": wilson(self.top5.hits, self.top5.n)},
                "ssim_to_source": self.ssim, "class_retention": self.class_retention,
                "meets_target": self.meets, "seconds": round(self.seconds, 2)}


@dataclass
class Calibration:
    """The result of :func:`calibrate_privacy`.

    Attributes:
        target: the top-1 target (a share in (0, 1)).
        recommended: the smallest probed level meeting it (None: none did).
        resolution: width of the final bracket (the recommendation is at most this far above
            the true threshold, if the rate falls with the level).
        probes: every :class:`Probe`, in the order probed.
        monotone: the top-1 rate never rose with the level among the probes; ``violations``
            lists the pairs ``[lower level, higher level]`` where it did.
        sources_needed: with no hit at max_level but too few sources: how many would certify the target.
        message: one sentence for the user.
    """

    target: float
    recommended: float | None
    resolution: float | None
    probes: list[Probe]
    monotone: bool
    violations: list
    n_sources: int
    num_candidates: int
    features: str
    sources_needed: int | None
    message: str
    settings: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"target_top1": self.target, "recommended_level": self.recommended, "resolution": self.resolution,
                "message": self.message, "monotone": self.monotone, "violations": self.violations,
                "n_sources": self.n_sources, "num_candidates": self.num_candidates, "features": self.features,
                "chance_top1": 1.0 / self.num_candidates if self.num_candidates else None,
                "sources_needed": self.sources_needed,
                "probes": [p.to_dict() for p in self.probes], "settings": self.settings, **self.info}

    def format_table(self) -> str:
        """The table ``boomerang calibrate-privacy`` prints: probes sorted by level."""
        from boomerang.stats import wilson

        lines = [f"calibrate-privacy: {self.n_sources} sources, {self.num_candidates} real candidates, features "
                 f"{self.features}, target top-1 <= {100 * self.target:g}% (Wilson 95% upper bound)",
                 f"{'level':>7} {'sqrt(ab)':>8} {'top-1 % [95% CI]':>22} {'top-5 % [95% CI]':>22} {'SSIM':>6}"
                 f"{'  class kept %' if any(p.class_retention is not None for p in self.probes) else ''}  meets"]
        for p in sorted(self.probes, key=lambda p: p.level):
            def rate(r):
                lo, hi = wilson(r.hits, r.n)
                return f"{100 * r.rate:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"
            kept = "" if p.class_retention is None else f"  {100 * p.class_retention:12.1f}"
            lines.append(f"{p.level:7.4g} {p.sqrt_alpha_bar:8.3f} {rate(p.top1):>22} {rate(p.top5):>22} "
                         f"{p.ssim:6.3f}{kept}  {'yes' if p.meets else 'no'}")
        if not self.monotone:
            lines.append("warning: the top-1 rate does not fall with the level between levels "
                         + ", ".join(f"{a:g} and {b:g}" for a, b in self.violations)
                         + "; bisection assumes it does, so check the levels around the recommendation")
        lines.append(self.message)
        return "\n".join(lines)


def _calibration_key(seed: int) -> str:
    """The anonymise job key of calibration releases: public (nothing is published), from the seed."""
    return hashlib.sha256(f"boomerang calibrate-privacy\0{seed}".encode()).hexdigest()


def _draw_sources(items: list, n: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(items), size=min(n, len(items)), replace=False))
    return [items[int(i)] for i in pick]


def _meets(rate, target: float) -> bool:
    from boomerang.metrics import wilson_interval

    return wilson_interval(rate.hits, rate.n)[1] <= target


def calibrate_privacy(in_dir, target_top1: float = 0.05, *, features="pixels", sources: int = DEFAULT_SOURCES,
                      reference_pool=None, settings=None, prompt_template: str | None = None, layout: str = "auto",
                      min_level: float = 0.0, max_level: float = 1.0, bisections: int = DEFAULT_BISECTIONS,
                      size: int | None = None, classifier=None, model=None, log=None) -> Calibration:
    """Find the smallest level whose top-1 re-identification meets ``target_top1`` on ``in_dir``.

    Args:
        in_dir: the real images (an ``anonymise`` input folder: plain, class folders or imagefolder).
        target_top1: the target share in (0, 1), e.g. 0.05.
        features: the attack's feature space (``pixels``, ``ssim``, ``classifier``, a module or callable).
        sources: N, the sources released at each probe (default 200; at most the folder's size).
        reference_pool: a folder of more real images, added to the candidates (names ``pool:...``).
        settings: :class:`~boomerang.settings.SampleSettings` of the release (its level is ignored;
            ``num_samples`` 1): use those ``anonymise`` will run with.
        prompt_template: text models: the per-item prompt, as ``anonymise --prompt-template``.
        layout: input layout (``auto``, ``folder``, ``classes``, ``imagefolder``).
        min_level, max_level: the bracket, 0 <= min_level < max_level <= 1.
        bisections: halvings of the bracket (probe budget 2 + bisections).
        size: comparison grid side (``audit-privacy --size``), None: automatic.
        classifier: a digit classifier folder, ``"bundled"``, or None: with item labels, report the
            share of releases it classifies as their source's label (class retention).
        model: an already loaded model (else ``settings.model`` is loaded once).
        log: ``log(str)`` after each probe (None: quiet).

    Returns:
        :class:`Calibration`.

    Raises:
        SettingError: (a ValueError) a bad target, bracket, source count or setting; a prompt
            template field missing; ``from_noise`` (no level to calibrate).
        ValueError: no readable images, a model that cannot be loaded.
    """
    import torch

    from boomerang.privacy.attack import LinkageAttack
    from boomerang.privacy.features import paired_ssim
    from boomerang.privacy.realset import load_real_set, to_comparison
    from boomerang.settings import SampleSettings
    from boomerang.tasks.anonymise import AnonymiseOptions, AnonymiseTask
    from boomerang.tasks.blocks import attach_model, blocks_of, default_block_size, sample_block
    from boomerang.tasks.job import JobSettings
    from boomerang.tasks.layout import scan
    from boomerang.tasks.runner import plan_job

    target = float(target_top1)
    if not 0.0 < target < 1.0:
        raise SettingError(f"`target_top1` must lie in (0, 1), e.g. 0.05 for 5%, got {target_top1}")
    if not 0.0 <= float(min_level) < float(max_level) <= 1.0:
        raise SettingError(f"need 0 <= `min_level` < `max_level` <= 1, got {min_level} and {max_level}")
    if isinstance(sources, bool) or not isinstance(sources, int) or sources < 1:
        raise SettingError(f"`sources` must be an integer >= 1, got {sources!r}")
    if isinstance(bisections, bool) or not isinstance(bisections, int) or not 0 <= bisections <= 20:
        raise SettingError(f"`bisections` must be an integer in 0..20, got {bisections!r}")
    settings = (settings or SampleSettings()).replace(num_samples=1)
    if settings.from_noise or settings.timestep is not None:
        raise SettingError("calibrate-privacy searches the level: drop `from_noise` and `timestep`")
    in_dir = Path(in_dir)
    if not in_dir.is_dir():
        raise SettingError(f"IN_DIR {str(in_dir)!r} is not a folder")
    items = scan(in_dir, layout).items
    chosen = _draw_sources(items, sources, settings.seed)
    task = AnonymiseTask()
    options = AnonymiseOptions(prompt_template=prompt_template, key=_calibration_key(settings.seed))
    js = JobSettings(inputs=(str(in_dir),), layout=layout, progress=False)
    first = plan_job(task, settings.replace(level=max_level), options, js, items=chosen, model=model)  # checks
    if model is None:
        attach_model(first)
        model = first.model
    folders = [("", in_dir)] + ([("pool:", Path(reference_pool))] if reference_pool else [])
    real = load_real_set(folders, size=size, background=settings.background_rgb,
                         released_gray=int(model.image_channels) == 1)
    # sources only among the images the attack could read (an unreadable file is a skipped candidate)
    chosen = _draw_sources([it for it in items if it.relpath in real.index], sources, settings.seed)
    attack = LinkageAttack(real.images, features, device=settings.device, candidates=real.names)
    clf = None
    if classifier is not None and all(it.label is not None for it in chosen):
        from boomerang.classifier import load_classifier
        from boomerang.privacy.features import to_digit_input

        net = load_classifier(None if classifier == "bundled" else classifier, device="cpu")
        clf = (net, to_digit_input)
    probes: list[Probe] = []

    def probe(level: float) -> Probe:
        t0 = time.perf_counter()
        job = plan_job(task, settings.replace(level=level), options, js, items=chosen, model=model)
        job.block_size = default_block_size(job)
        queries, src, labels = [], [], []
        for block in blocks_of(job).values():
            skipped: list = []
            for s in sample_block(job, block, dtype=np.uint8, skipped=skipped):
                if s.output.item.relpath not in real.index:
                    continue  # unreadable by the attack's reader too
                queries.append(to_comparison(s.pixels, real.grid, real.channels))
                src.append(real.index[s.output.item.relpath])
                labels.append(s.output.item.label)
        if not queries:
            raise ValueError(f"none of the {len(chosen)} sources could be read")
        q = torch.stack(queries)
        report = attack.run(q, src, top_k=(1, 5))
        s01 = lambda x: (x + 1.0) / 2.0  # noqa: E731
        ssim = float(paired_ssim(s01(q), s01(real.images[torch.as_tensor(src)])).mean())
        kept = None
        if clf is not None:
            net, prep = clf
            with torch.no_grad():
                pred = net(prep(q)).argmax(1)
            kept = float((pred == torch.tensor([int(lb) for lb in labels])).float().mean())
        plan = job.plans[0]
        p = Probe(float(level), plan.timestep, plan.signal_kept, report.top[1], report.top[5],
                  ssim, kept, time.perf_counter() - t0, _meets(report.top[1], target))
        probes.append(p)
        if log is not None:
            log(f"level {p.level:g}: top-1 {p.top1.hits}/{p.top1.n}, top-5 {p.top5.hits}/{p.top5.n}, "
                f"{'meets' if p.meets else 'misses'} the target ({p.seconds:.1f} s)")
        return p

    hi_probe = probe(float(max_level))
    recommended, resolution, needed = None, None, None
    if not hi_probe.meets:
        if hi_probe.top1.hits == 0:
            needed = sources_needed(target, 0)
            message = (f"not certified: at level {max_level:g} no source was found, but {hi_probe.top1.n} sources "
                       f"cannot bound top-1 below {100 * target:g}% (Wilson 95% upper bound "
                       f"{100 * _upper(hi_probe.top1):.1f}%); use at least {needed} sources (--sources {needed})")
        else:
            message = (f"no level up to {max_level:g} meets top-1 <= {100 * target:g}%: at {max_level:g}, "
                       f"{hi_probe.top1.hits} of {hi_probe.top1.n} sources were found "
                       f"(upper bound {100 * _upper(hi_probe.top1):.1f}%)")
    else:
        lo_probe = probe(float(min_level))
        if lo_probe.meets:
            recommended, resolution = float(min_level), 0.0
        else:
            lo, hi = float(min_level), float(max_level)
            for _ in range(bisections):
                mid = round((lo + hi) / 2, 4)
                if mid <= lo or mid >= hi:
                    break
                if probe(mid).meets:
                    hi = mid
                else:
                    lo = mid
            recommended, resolution = hi, round(hi - lo, 6)
        message = (f"recommended level {recommended:g}: the smallest probed level whose top-1 re-identification "
                   f"meets {100 * target:g}% with its Wilson 95% upper bound (resolution {resolution:g})")
    ordered = sorted(probes, key=lambda p: p.level)
    violations = [[a.level, b.level] for a, b in zip(ordered, ordered[1:]) if b.top1.rate > a.top1.rate]
    name = features if isinstance(features, str) else attack.space.name
    return Calibration(target, recommended, resolution, probes, not violations, violations, hi_probe.top1.n, len(real), name, needed, message,
                       settings=settings.to_dict(),
                       info={"in_dir": str(in_dir), "reference_pool": None if reference_pool is None else
                             str(reference_pool), "sources": [it.relpath for it in chosen],
                             "grid": {"width": real.grid[0], "height": real.grid[1], "channels": real.channels},
                             "skipped_candidates": real.skipped, "prompt_template": prompt_template,
                             "bisections": bisections, "min_level": float(min_level), "max_level": float(max_level)})


def _upper(rate) -> float:
    from boomerang.metrics import wilson_interval

    return wilson_interval(rate.hits, rate.n)[1]
