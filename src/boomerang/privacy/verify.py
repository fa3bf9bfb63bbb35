"""Per-item verification of a release: ``boomerang anonymise --verify-top K``.

After a block is sampled (:func:`boomerang.tasks.blocks.sample_block`), every
released item is attacked as ``audit-privacy`` would attack it
(:mod:`boomerang.privacy.realset`: the same reader, grid and channels; the
8-bit pixels that are written): its source's rank among every image of IN_DIR
(plus ``--reference-pool``) in the verified feature space. An item whose
source ranks within the top K is **redrawn** along a fixed ladder, and
**withheld** (not written) when no rung passes:

* rungs 1..R (R = ``verify_seeds``, default 3): the same level, new noise
  (attempt a's seed is HMAC(job key, seed, path, sample, a); attempt 0 is the
  ordinary sample);
* then the level raised in steps of :data:`LEVEL_STEP` (0.05) up to
  ``max_level`` (the last rung is ``max_level`` itself), one draw each, new
  noise each.

Each rung is sampled as one batch per block (the failing items of the block),
so a block is redrawn identically on every run: a rerun or a resumed job
writes the same bytes. The real set's features are computed once per job and
process and kept in ``OUT/.job/verify_features.npy`` (with a JSON key: the
feature space, grid, channels and every candidate's name and size), so later
runs and Ray actors read them instead.

What it guarantees: no released item has its own source within its top K *in
the verified feature space*, *against the real images given* (IN_DIR and the
pool; adding more real images can only push a source further down). What it
does not: another feature space, other auxiliary data, or membership (that an
image was in the set) are not checked; see docs/privacy.md.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np

__all__ = ["LEVEL_STEP", "ladder", "Verifier", "verify_block", "check_verify_options", "write_verification",
           "verification_counts"]

#: Step by which the ladder raises the level after the reseeds.
LEVEL_STEP = 0.05
#: Redraws at the same level before the level rises (``verify_seeds``), when not given.
DEFAULT_RESEEDS = 3
FEATURES_FILE = "verify_features.npy"
#: The key of a record's private verification detail (journal only; stripped from the metadata).
PRIVATE_KEY = "_verify"


def ladder(level: float, reseeds: int, max_level: float) -> list[tuple[float, int]]:
    """The redraw rungs of an item released at ``level``: ``[(level, attempt), ...]`` (attempt >= 1).

    ``reseeds`` rungs at ``level``, then ``level + i * LEVEL_STEP`` while below ``max_level``, then
    ``max_level`` (if above ``level``). Levels are rounded to 6 decimals.
    """
    rungs = [(float(level), a) for a in range(1, reseeds + 1)]
    i = 1
    while max_level > level + 1e-9:
        nxt = round(level + i * LEVEL_STEP, 6)
        if nxt >= max_level - 1e-9:
            rungs.append((float(max_level), len(rungs) + 1))
            break
        rungs.append((nxt, len(rungs) + 1))
        i += 1
    return rungs


class Verifier:
    """The attacker of one job: the real set's features (computed once), and ranks of released items.

    Args:
        job: a planned anonymise job with its model (``job.options``: ``verify_features``,
            ``reference_pool``; ``job.items``; the input folder ``job.job_settings.inputs[0]``).
    """

    def __init__(self, job):
        from boomerang.privacy.features import resolve_feature_space
        from boomerang.privacy.realset import load_real_set

        o = job.options
        folders = [("", Path(job.job_settings.inputs[0]))]
        if o.reference_pool:
            folders.append(("pool:", Path(o.reference_pool)))
        self.real = load_real_set(folders, background=job.settings.background_rgb,
                                  released_gray=int(job.model.image_channels) == 1)
        self.features = o.verify_features or "pixels"
        self.space = resolve_feature_space(self.features, device=str(job.settings.device))
        self.real_rep = self._features(job)
        self.real.images = None  # only the representation is needed from here on

    def _key(self) -> dict:
        return {"features": self.features, "grid": list(self.real.grid), "channels": self.real.channels,
                "names": hashlib.sha256("\n".join(self.real.names).encode()).hexdigest(),
                "pixels": hashlib.sha256(self.real.images.numpy().tobytes()).hexdigest()}

    def _features(self, job):
        """The real set's representation: read from ``OUT/.job`` when its key matches, else computed and kept."""
        import torch

        from boomerang.privacy.attack import _represent

        key = self._key()
        folder = None if job.out is None else job.out / ".job"
        if folder is not None and (folder / FEATURES_FILE).is_file():
            try:
                if json.loads((folder / (FEATURES_FILE + ".json")).read_text()) == key:
                    return torch.from_numpy(np.load(folder / FEATURES_FILE, allow_pickle=False))
            except (OSError, ValueError):
                pass
        rep = _represent(self.space, self.real.images, 256)
        if folder is not None and isinstance(rep, torch.Tensor):
            import io

            from boomerang.fileio import atomic_write_bytes

            folder.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            np.save(buf, rep.numpy(), allow_pickle=False)
            atomic_write_bytes(folder / FEATURES_FILE, buf.getvalue())
            atomic_write_bytes(folder / (FEATURES_FILE + ".json"), json.dumps(key).encode())
        return rep

    def ranks(self, samples) -> list[int]:
        """The rank of each sample's own source (1 = nearest; ties count against the attacker).

        Args:
            samples: :class:`~boomerang.tasks.blocks.BlockSample` objects (uint8 pixels as written).
        """
        import torch

        from boomerang.privacy.attack import source_ranks
        from boomerang.privacy.realset import to_comparison

        if not samples:
            return []
        missing = [s.output.item.relpath for s in samples if s.output.item.relpath not in self.real.index]
        if missing:
            raise ValueError(f"the verifier cannot read the source {missing[0]} (skipped by its reader)")
        q = torch.stack([to_comparison(s.pixels, self.real.grid, self.real.channels) for s in samples])
        src = torch.tensor([self.real.index[s.output.item.relpath] for s in samples], dtype=torch.int64)
        ranks, _ = source_ranks(self.space, self.real_rep, self.space.represent(q), src)
        return [int(r) for r in ranks]


def _rung_job(job, task, rung: int, ladders: dict):
    """A copy of ``job`` whose plan k is rung ``rung`` of level k's ladder (None when it has no such rung),
    seeded by attempt ``rung``."""
    from boomerang.tasks.job_plan import NoiseLevel, make_plans

    cache = job.state.rung_plans
    plans = []
    for k, plan in enumerate(job.plans):
        steps = ladders[k]
        if rung > len(steps):
            plans.append(None)
            continue
        level = steps[rung - 1][0]
        if (k, level) not in cache:
            if level == job.noise_levels[k][0]:
                cache[(k, level)] = plan
            else:
                from boomerang.levels import level_to_timestep

                s = job.settings.replace(timestep=None, level=level)
                nl = NoiseLevel(level, level_to_timestep(level, int(job.model.num_train_timesteps)))
                cache[(k, level)] = make_plans(s, job.model, [nl])[0]
        plans.append(cache[(k, level)])
    rj = copy.copy(job)
    rj.plans = plans
    rj.task = task.redraw(rung)
    return rj


def verify_block(job, task, outputs, *, cache=None, dtype=None, skipped=None, progress=None, stop=None):
    """Sample a block, verify every output, redraw along the ladder; yields the samples released.

    Each yielded :class:`~boomerang.tasks.blocks.BlockSample` carries the output's own plan (the
    level it was asked at: the published record names no rung); what happened to each output
    (rank, attempts, the level released) is put in ``job.state.verified[output.index]`` for the
    job's private report, ``None`` for a withheld output.
    """
    from boomerang.tasks.blocks import BlockSample, sample_block

    o = job.options
    if job.state.verifier is None:
        job.state.verifier = Verifier(job)
    verifier = job.state.verifier
    k_top = int(o.verify_top)
    first = list(sample_block(job, outputs, cache=cache, dtype=dtype, skipped=skipped, progress=progress, stop=stop))
    ranks = verifier.ranks(first)
    final: dict[int, BlockSample] = {}
    info: dict[int, dict | None] = {}
    pending = []
    for s, r in zip(first, ranks):
        if r > k_top:
            final[s.output.index] = s
            info[s.output.index] = {"attempts": 0, "level": job.noise_levels[s.output.level_index][0], "rank": r}
        else:
            pending.append(s.output)
    max_level = o.max_level
    reseeds = DEFAULT_RESEEDS if o.verify_seeds is None else int(o.verify_seeds)
    ladders = {k: ladder(nl[0], reseeds, nl[0] if max_level is None else max(float(max_level), nl[0]))
               for k, nl in enumerate(job.noise_levels)}
    rung = 0
    while pending:
        rung += 1
        rj = _rung_job(job, task, rung, ladders)
        todo = [out for out in pending if rj.plans[out.level_index] is not None]
        for out in pending:
            if rj.plans[out.level_index] is None:
                info[out.index] = None  # withheld: no rung left
                if progress is not None:
                    progress.finished(1)  # accounted for: the bar still reaches its total
        if not todo:
            break
        got = list(sample_block(rj, todo, cache=cache, dtype=dtype, stop=stop))
        pending = []
        for s, r in zip(got, verifier.ranks(got)):
            if r > k_top:
                final[s.output.index] = BlockSample(s.output, s.pixels, s.decoded, job.plans[s.output.level_index],
                                                    s.result)
                info[s.output.index] = {"attempts": rung, "level": ladders[s.output.level_index][rung - 1][0],
                                        "rank": r}
            else:
                pending.append(s.output)
    job.state.verified.update(info)
    for s in first:
        if s.output.index in final:
            yield final[s.output.index]


def check_verify_options(job) -> None:
    """Refuse verification options that cannot work with this job (before the model loads).

    Raises:
        SettingError: the pool is not a folder or holds OUT; ``max_level`` below a level of the job,
            or given with ``from_noise``.
    """
    from boomerang.errors import SettingError

    o = job.options
    if o.reference_pool is not None:
        pool = Path(o.reference_pool)
        if not pool.is_dir():
            raise SettingError(f"`reference_pool` {pool} is not a folder")
        if job.out is not None:
            out = job.out.resolve()
            if out == pool.resolve() or pool.resolve() in out.parents:
                raise SettingError(f"`out` {job.out} lies inside `reference_pool` {pool}")
    if o.max_level is not None:
        if job.settings.from_noise:
            raise SettingError("`max_level` does not apply with `from_noise` (redraws only reseed)")
        levels = [nl[0] for nl in job.noise_levels] if job.noise_levels else list(job.settings.level or ())
        low = [lv for lv in levels if lv > o.max_level + 1e-12]
        if low:
            raise SettingError(f"`max_level` {o.max_level:g} lies below `level` {low[0]:g}; give a max level "
                               "at or above every level")


def write_verification(job, records: list[dict], skipped: list[dict]) -> dict:
    """Write ``OUT/.job/verification.json`` (private: per output its source, rank, attempts and the
    level released; the withheld outputs and their sources) and keep the counts in ``job.state.counts``.

    Returns:
        The counts: ``released``, ``first_draw``, ``redrawn``, ``withheld`` (outputs), with ``verify_top``,
        ``features``, ``verify_seeds``, ``max_level`` and ``level_step``.
    """
    from boomerang.fileio import write_json

    o = job.options
    bad = {s["file"] for s in skipped}
    by_unit = {int(r["_unit"]): r for r in records}
    rows, counts = [], {"released": 0, "first_draw": 0, "redrawn": 0, "withheld": 0}
    for out in job.outputs:
        if out.item.relpath in bad:
            continue
        r = by_unit.get(out.index)
        level = job.noise_levels[out.level_index][0]
        if r is None:
            counts["withheld"] += 1
            rows.append({"source": out.item.relpath, "sample": out.sample, "level_asked": level, "withheld": True})
            continue
        v = r.get(PRIVATE_KEY) or {}
        counts["released"] += 1
        counts["redrawn" if v.get("attempts") else "first_draw"] += 1
        rows.append({"source": out.item.relpath, "sample": out.sample, "output": r["file_name"], "level_asked": level,
                     "attempts": v.get("attempts"), "level_released": v.get("level"), "rank": v.get("rank")})
    counts.update({"verify_top": o.verify_top, "features": o.verify_features or "pixels",
                   "verify_seeds": DEFAULT_RESEEDS if o.verify_seeds is None else o.verify_seeds,
                   "max_level": o.max_level, "level_step": LEVEL_STEP})
    job.state.counts = counts
    write_json(job.out / ".job" / "verification.json", {**counts, "outputs": rows})
    import sys

    print(f"boomerang anonymise: verified against top-{o.verify_top} ({counts['features']}): {counts['first_draw']} "
          f"released at the first draw, {counts['redrawn']} redrawn, {counts['withheld']} withheld "
          "(per item: OUT_DIR/.job/verification.json, private)", file=sys.stderr)
    return counts


def verification_counts(job, records) -> dict:
    """The counts :func:`write_verification` kept (for the job's report)."""
    return dict(getattr(job.state, "counts", None) or {})
