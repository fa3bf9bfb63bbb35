"""The linkage attack: can the source of an anonymised image be found again?

For each anonymised image (a *query*) every real image (a *candidate*) is
ranked by its distance to the query in a feature space
(:mod:`boomerang.privacy.features`). The *rank* of the query's true source is
1 + the number of other candidates at a distance less than **or equal** to
the source's: ties count against the attacker, so a feature function that
cannot tell images apart re-identifies nothing (instead of everything).

Reported, as in the linkage-attack literature on released data sets:

* top-k re-identification rate = share of queries whose source has rank <= k,
  with a 95% Wilson score interval (Wilson 1927). Queries are treated as
  independent trials; with several samples per source they are not quite, so
  the interval is then somewhat too narrow.
* the chance rate k / M of guessing among M candidates;
* a histogram of the source's rank (bins 1, 2-5, 6-10, 11-50, 51-100,
  101-500, 501-1000, 1001-5000, ...), and the median rank.

This measures one attacker with one feature space; a low rate under one
space is no guarantee under another (see docs/privacy.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from boomerang.metrics import wilson_interval  # noqa: F401  (re-exported)
from boomerang.privacy.features import FeatureSpace, _check_images, resolve_feature_space

__all__ = ["Rate", "LinkageReport", "LinkageAttack", "wilson_interval", "source_ranks", "linkage_attack", "rank_histogram"]


@dataclass
class Rate:
    """A re-identification rate: ``hits`` of ``n`` queries, with its 95% Wilson interval."""

    hits: int
    n: int

    @property
    def rate(self) -> float:
        return self.hits / self.n if self.n else float("nan")

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(self.hits, self.n)

    def to_dict(self) -> dict:
        lo, hi = self.ci95
        return {"hits": self.hits, "n": self.n, "rate": self.rate, "ci95": [lo, hi]}


def _bin_edges(m: int) -> list[tuple[int, int]]:
    bins = [(1, 1), (2, 5), (6, 10)]
    lo, mult = 11, 50
    while lo <= m:
        hi = mult
        bins.append((lo, hi))
        lo = hi + 1
        mult = mult * 2 if str(mult)[0] == "5" else mult * 5
    return [(a, min(b, m)) for a, b in bins if a <= m]


def rank_histogram(ranks: Sequence[int], num_candidates: int) -> list[dict]:
    """Counts of ranks in bins 1, 2-5, 6-10, 11-50, 51-100, 101-500, ... up to ``num_candidates``.

    Returns:
        ``[{"from": a, "to": b, "count": c}, ...]`` covering 1..num_candidates.
    """
    r = np.asarray(ranks, dtype=np.int64)
    return [{"from": a, "to": b, "count": int(((r >= a) & (r <= b)).sum())} for a, b in _bin_edges(num_candidates)]


@dataclass
class LinkageReport:
    """Result of a linkage attack.

    Attributes:
        features: name of the feature space.
        num_queries: anonymised images attacked (N).
        num_candidates: real images ranked for each query (M).
        top: ``{k: Rate}`` for each k asked (1 and 5 by default).
        ranks: rank of the true source for each query (1 = found), list of N ints.
        nearest: index (into the candidates) of the nearest candidate per query.
        queries: names of the queries (output paths for a folder audit), or ``[]``.
        candidates: names of the candidates, or ``[]``.
        skipped: ``[{"file": ..., "reason": ...}]``: images or links left out.
        info: anything else to keep (folders, sizes, settings).
    """

    features: str
    num_queries: int
    num_candidates: int
    top: dict[int, Rate]
    ranks: list[int]
    nearest: list[int] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def chance(self, k: int) -> float:
        """The top-k rate of a random guess: min(k, M) / M."""
        return min(k, self.num_candidates) / self.num_candidates if self.num_candidates else float("nan")

    @property
    def median_rank(self) -> float:
        return float(np.median(self.ranks)) if self.ranks else float("nan")

    @property
    def histogram(self) -> list[dict]:
        return rank_histogram(self.ranks, self.num_candidates)

    def to_dict(self, per_query: bool = True) -> dict:
        """A JSON-ready dict (``per_query``: include each query's rank and nearest candidate)."""
        d = {
            "attack": "linkage (nearest neighbour ranking; ties count against the attacker)",
            "features": self.features,
            "num_queries": self.num_queries,
            "num_candidates": self.num_candidates,
            **{f"top{k}": r.to_dict() for k, r in sorted(self.top.items())},
            **{f"chance_top{k}": self.chance(k) for k in sorted(self.top)},
            "median_rank": self.median_rank,
            "rank_histogram": self.histogram,
            "skipped": list(self.skipped),
            **self.info,
        }
        if per_query:
            d["per_query"] = [
                {"query": self.queries[i] if self.queries else i,
                 "rank": self.ranks[i],
                 "nearest": (self.candidates[self.nearest[i]] if self.candidates else self.nearest[i])
                 if self.nearest else None}
                for i in range(self.num_queries)
            ]
        return d

    def format_table(self) -> str:
        """The human-readable summary ``boomerang audit-privacy`` prints."""
        lines = [f"linkage attack, features {self.features}: {self.num_queries} anonymised images, "
                 f"{self.num_candidates} real candidates each",
                 f"{'':8}{'rate':>8}  {'95% CI':<17}{'chance':>9}"]
        for k, r in sorted(self.top.items()):
            lo, hi = r.ci95
            lines.append(f"{'top-' + str(k):<8}{_pct(r.rate):>8}  {'[' + _pct(lo) + ', ' + _pct(hi) + ']':<17}"
                         f"{_pct(self.chance(k)):>9}   ({r.hits}/{r.n})")
        lines.append(f"rank of the true source (median {self.median_rank:g}):")
        for b in self.histogram:
            label = str(b["from"]) if b["from"] == b["to"] else f"{b['from']}-{b['to']}"
            lines.append(f"  {label:>12}: {b['count']}")
        if self.skipped:
            names = ", ".join(str(sk["file"]) for sk in self.skipped[:5]) + (" ..." if len(self.skipped) > 5 else "")
            lines.append(f"skipped: {len(self.skipped)} ({names}; reasons in the --json report)")
        return "\n".join(lines)


def _pct(x: float) -> str:
    if x != x:
        return "n/a"
    if x == 0 or x >= 0.01:
        return f"{100 * x:.1f}%"
    return f"{100 * x:.2g}%"


def _as_images(x, what: str) -> torch.Tensor:
    """uint8 (0..255) array/tensor or float tensor in [-1, 1] -> float32 tensor [B, C, H, W] in [-1, 1]."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if isinstance(x, torch.Tensor) and x.dtype == torch.uint8:
        x = x.float() / 127.5 - 1.0
    return _check_images(x, what).float()


def _represent(space: FeatureSpace, x: torch.Tensor, batch_size: int):
    return space.concat([space.represent(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])


def source_ranks(space: FeatureSpace, real_rep, query_rep, source_index: torch.Tensor,
                 batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank of each query's true source among all candidates.

    Args:
        space: the feature space whose ``distances`` compare representations.
        real_rep, query_rep: representations of the M candidates and N queries.
        source_index: int64 ``[N]``, the candidate index of each query's source.
        batch_size: queries per distance block (``[batch_size, M]`` in memory).

    Returns:
        ``(ranks, nearest)``: int64 ``[N]`` each; rank = number of candidates
        at a distance <= the source's (so 1 = uniquely nearest), nearest = the
        index of the closest candidate (lowest index on ties).
    """
    n = source_index.shape[0]
    ranks = torch.empty(n, dtype=torch.int64)
    nearest = torch.empty(n, dtype=torch.int64)
    for i in range(0, n, batch_size):
        d = space.distances(query_rep[i:i + batch_size], real_rep)  # [b, M]
        if not torch.isfinite(d).all():
            raise ValueError(f"feature space {space.name!r} gave NaN or inf distances")
        src = source_index[i:i + batch_size]
        d_true = d.gather(1, src[:, None])
        ranks[i:i + batch_size] = (d <= d_true).sum(1)
        nearest[i:i + batch_size] = d.argmin(1)
    return ranks, nearest


class LinkageAttack:
    """An attacker who holds the real images: their features are computed once, then any number of
    releases can be attacked with :meth:`run`.

    Args:
        real: the M candidate (real) images: a uint8 array/tensor ``[M, C, H, W]``
            (0..255) or a float tensor in [-1, 1].
        features: ``"pixels"``, ``"ssim"``, ``"classifier"``, a
            :class:`~boomerang.privacy.features.FeatureSpace`, a torch module or a
            callable (see :func:`~boomerang.privacy.features.resolve_feature_space`).
        batch_size: images per feature batch and queries per distance block.
        device: device of the bundled classifier.
        candidates: optional names of the real images, kept in reports.

    Raises:
        ValueError: no images, a bad shape or ``batch_size``, an unknown feature space.
    """

    def __init__(self, real, features="pixels", *, batch_size: int = 256, device: str = "cpu",
                 candidates: Sequence[str] = ()):
        real = _as_images(real, "real")
        if real.shape[0] == 0:
            raise ValueError("the attack needs at least one real image")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.space = resolve_feature_space(features, device=device)
        self.batch_size = batch_size
        self.image_shape = tuple(real.shape[1:])
        self.num_candidates = int(real.shape[0])
        self.candidates = list(candidates)
        self.real_rep = _represent(self.space, real, batch_size)

    def run(self, anonymised, source_index, *, top_k: Sequence[int] = (1, 5), queries: Sequence[str] = ()
            ) -> LinkageReport:
        """Attack one release.

        Args:
            anonymised: the N released images, same format and C, H, W as ``real``.
            source_index: ``[N]`` ints in [0, M): the real image each one came from.
            top_k: the k of the top-k rates (each >= 1).
            queries: optional names of the released images, kept in the report.

        Returns:
            :class:`LinkageReport`.

        Raises:
            ValueError: shapes that do not match, ``source_index`` out of range or
                of the wrong length, a bad ``top_k``.
        """
        anonymised = _as_images(anonymised, "anonymised")
        if tuple(anonymised.shape[1:]) != self.image_shape:
            raise ValueError(f"real images {self.image_shape} and anonymised images {tuple(anonymised.shape[1:])} "
                             "must have the same channels and size")
        if anonymised.shape[0] == 0:
            raise ValueError("the attack needs at least one anonymised image")
        src = torch.as_tensor(np.asarray(source_index), dtype=torch.int64).reshape(-1)
        if src.shape[0] != anonymised.shape[0]:
            raise ValueError(f"source_index has {src.shape[0]} entries for {anonymised.shape[0]} anonymised images")
        if (src < 0).any() or (src >= self.num_candidates).any():
            raise ValueError(f"source_index must lie in [0, {self.num_candidates}) (an index into real)")
        ks = sorted({int(k) for k in top_k})
        if not ks or ks[0] < 1:
            raise ValueError(f"top_k must be integers >= 1, got {list(top_k)}")
        query_rep = _represent(self.space, anonymised, self.batch_size)
        ranks, nearest = source_ranks(self.space, self.real_rep, query_rep, src, self.batch_size)
        n = int(ranks.shape[0])
        top = {k: Rate(int((ranks <= k).sum()), n) for k in ks}
        return LinkageReport(self.space.name, n, self.num_candidates, top, ranks.tolist(), nearest.tolist(),
                             list(queries), self.candidates)


def linkage_attack(real, anonymised, source_index, features="pixels", *, top_k: Sequence[int] = (1, 5),
                   batch_size: int = 256, device: str = "cpu", queries: Sequence[str] = (),
                   candidates: Sequence[str] = ()) -> LinkageReport:
    """Linkage attack on in-memory images (the library form of ``boomerang audit-privacy``).

    ``LinkageAttack(real, features, ...).run(anonymised, source_index, ...)`` in one call; use
    :class:`LinkageAttack` to attack several releases against the same real images.

    Args:
        real: the M candidate (real) images: a uint8 array/tensor ``[M, C, H, W]``
            (0..255) or a float tensor in [-1, 1].
        anonymised: the N released images, same format and C, H, W as ``real``.
        source_index: ``[N]`` ints in [0, M): the candidate each query came from.
        features: ``"pixels"``, ``"ssim"``, ``"classifier"``, a
            :class:`~boomerang.privacy.features.FeatureSpace`, a torch module or a
            callable (see :func:`~boomerang.privacy.features.resolve_feature_space`).
        top_k: the k of the top-k rates (each >= 1).
        batch_size: images per feature batch and queries per distance block.
        device: device of the bundled classifier.
        queries, candidates: optional names, kept in the report.

    Returns:
        :class:`LinkageReport`.

    Raises:
        ValueError: shapes that do not match, ``source_index`` out of range or
            of the wrong length, a bad ``top_k`` or ``batch_size``, an unknown
            feature space.
    """
    attack = LinkageAttack(real, features, batch_size=batch_size, device=device, candidates=candidates)
    return attack.run(anonymised, source_index, top_k=top_k, queries=queries)
