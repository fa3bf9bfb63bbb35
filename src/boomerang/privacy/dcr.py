"""Distance to closest record (DCR): are released images closer to the real set than fresh real images are?

For each released image, its **DCR** is the distance (in the audit's feature
space, on the audit's comparison grid: :mod:`boomerang.privacy.realset`) to
the nearest image of REAL_DIR; no link file is needed. The baseline is the DCR
of a **holdout**: real images of the same kind that were *not* released (not
in REAL_DIR), measured against the same REAL_DIR. A release that copies its
sources sits closer to REAL_DIR than fresh real images do; a release that
does not sits about as far. Reported: each set's DCR quantiles (5%, 50%), the
share of released images whose DCR is below the holdout's 5th percentile
(about 5% when the two are alike), and the closest pairs (near-copies), drawn
as a contact sheet (released | its nearest real image, distance below).

With links, also the share of released images whose nearest real record is
their own source (a top-1 hit with ties going to the lowest index, so it can
differ from the linkage attack's top-1, where ties count against the attacker).
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass, field

import numpy as np

__all__ = ["DCRReport", "closest_records", "audit_dcr", "pair_sheet"]


def closest_records(space, real_rep, query_rep, batch_size: int = 256):
    """Distance to, and index of, the nearest real record of each query (blocks of ``batch_size`` queries).

    Returns:
        ``(dcr float64 [N], nearest int64 [N])`` (lowest index on ties).
    """
    import torch

    n = int(query_rep.shape[0])
    dist = torch.empty(n, dtype=torch.float64)
    near = torch.empty(n, dtype=torch.int64)
    for i in range(0, n, batch_size):
        d = space.distances(query_rep[i:i + batch_size], real_rep)
        m, j = d.min(1)
        dist[i:i + batch_size] = m.double()
        near[i:i + batch_size] = j
    return dist.numpy(), near.numpy()


def _summary(x: np.ndarray) -> dict:
    if x.size == 0:
        return {"n": 0}
    q = np.quantile(x, [0.05, 0.5])
    return {"n": int(x.size), "min": float(x.min()), "p5": float(q[0]), "median": float(q[1]), "mean": float(x.mean())}


@dataclass
class DCRReport:
    """DCR of the released images (and of a holdout) against REAL_DIR.

    Attributes:
        released, holdout: ``{"n", "min", "p5", "median", "mean"}`` of each set's DCR (holdout: None without one).
        below_holdout_p5: share of released images whose DCR is below the holdout's 5th percentile, with
            its Wilson 95% interval (None without a holdout).
        closest: the closest pairs, nearest first: ``{"released", "real", "distance"}``.
        own_source_nearest: with links, ``{"hits", "n", "rate", "ci95"}``: released images whose nearest
            real record is their own source.
    """

    features: str
    num_real: int
    released: dict
    holdout: dict | None
    below_holdout_p5: dict | None
    closest: list[dict]
    own_source_nearest: dict | None = None
    per_image: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"features": self.features, "num_real": self.num_real, "released": self.released,
                "holdout": self.holdout, "below_holdout_p5": self.below_holdout_p5, "closest_pairs": self.closest,
                "own_source_nearest": self.own_source_nearest, "per_image": self.per_image}

    def format_table(self) -> str:
        lines = [f"distance to closest real record (DCR), features {self.features}, {self.num_real} real records:"]
        for name, s in (("released", self.released), ("holdout", self.holdout)):
            if s and s.get("n"):
                lines.append(f"  {name:<9} n {s['n']:>5}   5% {s['p5']:.4g}   median {s['median']:.4g}   "
                             f"min {s['min']:.4g}")
        if self.below_holdout_p5 is not None:
            b = self.below_holdout_p5
            lines.append(f"  released closer than the holdout's 5th percentile: {100 * b['rate']:.1f}% "
                         f"[{100 * b['ci95'][0]:.1f}, {100 * b['ci95'][1]:.1f}] ({b['hits']}/{b['n']}; about 5% "
                         "when the release sits as far from the real set as fresh real images)")
        if self.own_source_nearest is not None:
            o = self.own_source_nearest
            lines.append(f"  nearest real record is its own source: {100 * o['rate']:.1f}% "
                         f"[{100 * o['ci95'][0]:.1f}, {100 * o['ci95'][1]:.1f}] ({o['hits']}/{o['n']})")
        if self.closest:
            c = self.closest[0]
            lines.append(f"  closest pair: {c['released']} - {c['real']} at {c['distance']:.4g}")
        return "\n".join(lines)


def _rate(hits: int, n: int) -> dict:
    from boomerang.stats import wilson

    return {"hits": int(hits), "n": int(n), "rate": hits / n if n else float("nan"), "ci95": wilson(hits, n)}


def audit_dcr(real_dir, anon_dir, *, holdout_dir=None, links=None, features="pixels", size: int | None = None,
              background=(255, 255, 255), pairs: int = 16, device: str = "cpu"):
    """DCR of every image of ``anon_dir`` (and ``holdout_dir``) against ``real_dir``.

    Args:
        real_dir, anon_dir: the real and the released folders (searched recursively, hidden folders skipped).
        holdout_dir: real images not released, or None.
        links: :class:`~boomerang.privacy.links.Link` list, or None: adds ``own_source_nearest``.
        features: feature space (name, module or callable).
        size: comparison grid side, None: the audit's rule over all three folders.
        background: colour transparent pixels are composited over.
        pairs: closest pairs kept.

    Returns:
        ``(DCRReport, sets)``: ``sets`` holds the loaded :class:`~boomerang.privacy.realset.RealSet` objects
        (``real``, ``released``), for :func:`pair_sheet`.

    Raises:
        ValueError: a folder missing or without a readable image.
    """
    from boomerang.privacy.attack import _represent
    from boomerang.privacy.features import resolve_feature_space
    from boomerang.privacy.realset import comparison_grid, list_folders, load_real_set, luma

    folders = [("", real_dir), ("", anon_dir)] + ([("", holdout_dir)] if holdout_dir else [])
    grid = comparison_grid([p for f in folders for _, p in list_folders([f])], size)
    real = load_real_set([("", real_dir)], grid=grid, channels=3, background=background)
    rel = load_real_set([("", anon_dir)], grid=grid, channels=3, background=background)
    hold = load_real_set([("", holdout_dir)], grid=grid, channels=3, background=background) if holdout_dir else None
    channels = 1 if real.all_gray or rel.all_gray else 3
    if channels == 1:
        import torch

        for s in (real, rel, hold):
            if s is not None:
                s.images = torch.stack([luma(x) for x in s.images])
                s.channels = 1
    space = resolve_feature_space(features, device=device)
    real_rep = _represent(space, real.images, 256)
    d_rel, n_rel = closest_records(space, real_rep, _represent(space, rel.images, 256))
    d_hold = None
    if hold is not None:
        d_hold, _ = closest_records(space, real_rep, _represent(space, hold.images, 256))
    below = None
    if d_hold is not None and d_hold.size:
        p5 = float(np.quantile(d_hold, 0.05))
        below = {**_rate(int((d_rel < p5).sum()), d_rel.size), "holdout_p5": p5}
    order = np.argsort(d_rel, kind="stable")[:max(0, int(pairs))]
    closest = [{"released": rel.names[i], "real": real.names[n_rel[i]], "distance": float(d_rel[i])} for i in order]
    own = None
    if links is not None:
        hits = n = 0
        for ln in links:
            if ln.output in rel.index and ln.source in real.index:
                n += 1
                hits += int(n_rel[rel.index[ln.output]] == real.index[ln.source])
        own = _rate(hits, n)
    name = features if isinstance(features, str) else space.name
    report = DCRReport(name, len(real), _summary(d_rel), None if d_hold is None else _summary(d_hold), below, closest,
                       own, [{"released": rel.names[i], "dcr": float(d_rel[i]), "nearest": real.names[n_rel[i]]}
                             for i in range(len(rel))])
    return report, {"real": real, "released": rel, "grid": grid, "channels": channels}


def pair_sheet(report: DCRReport, sets: dict, path, *, scale: int | None = None) -> None:
    """The closest pairs as a contact sheet (PNG, written atomically): one row per pair, the released
    image, its nearest real image, and the distance, nearest first."""
    import io

    from PIL import Image, ImageDraw, ImageFont

    from boomerang.fileio import atomic_write_bytes

    real, rel = sets["real"], sets["released"]
    w, h = sets["grid"]
    scale = scale or max(1, 96 // max(w, h))
    tw, th = w * scale, h * scale
    pad, label = 6, 14
    rows = report.closest
    sheet = Image.new("RGB", (pad + 2 * (tw + pad) + 110, pad + max(1, len(rows)) * (th + pad) + label), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    draw.text((pad, 2), "released", fill="black", font=font)
    draw.text((pad + tw + pad, 2), "nearest real", fill="black", font=font)

    def tile(x):
        a = ((x.numpy() + 1.0) * 127.5).round().clip(0, 255).astype(np.uint8)
        a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
        return Image.fromarray(a).convert("RGB").resize((tw, th), Image.Resampling.NEAREST)

    for r, pair in enumerate(rows):
        y = label + pad + r * (th + pad)
        sheet.paste(tile(rel.images[rel.index[pair["released"]]]), (pad, y))
        sheet.paste(tile(real.images[real.index[pair["real"]]]), (pad + tw + pad, y))
        draw.text((pad + 2 * (tw + pad), y + th // 2 - 6), f"d = {pair['distance']:.4g}", fill="black", font=font)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    atomic_write_bytes(pathlib.Path(os.fspath(path)), buf.getvalue())
