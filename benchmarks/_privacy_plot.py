"""The figure of ``benchmarks/privacy_utility.py``: privacy, class retention, utility and their trade-off,
for the unconditional arm, blur at matched SSIM and (when the results have one) the text arm."""

from __future__ import annotations

import pathlib

from _privacy_tables import clipped_ci


def _errbar(ax, xs, rs, **kw):
    """Rates with Wilson intervals, in %."""
    ys = [100 * r["rate"] for r in rs]
    lo = [100 * (r["rate"] - r["ci95"][0]) for r in rs]
    hi = [100 * (r["ci95"][1] - r["rate"]) for r in rs]
    ax.errorbar(xs, ys, yerr=[lo, hi], capsize=3, **{"marker": "o", **kw})


def _util(ax, xs, group, **kw):
    """Utility means with their (clipped) t-intervals, in %."""
    m = [100 * c["utility"]["mean"] for c in group]
    lo = [100 * (c["utility"]["mean"] - clipped_ci(c["utility"])[0]) for c in group]
    hi = [100 * (clipped_ci(c["utility"])[1] - c["utility"]["mean"]) for c in group]
    ax.errorbar(xs, m, yerr=[lo, hi], capsize=3, **{"marker": "o", **kw})


def plot(result: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conds = result["conditions"]
    boom = [c for c in conds if c["condition"] == "boomerang"]
    blur = [c for c in conds if c["condition"] == "blur"]
    real = next(c for c in conds if c["condition"] == "real")
    synth = next(c for c in conds if c["condition"] == "synthetic")
    text = (result.get("text_arm") or {}).get("conditions", [])
    tname = ""
    if text:
        st = result["text_arm"]["settings"]
        tname = f"{st['model']} + " + ("class caption" if st["prompt_template"] else "empty prompt")
    s = result["settings"]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9.5))
    lv = lambda group: [c["level"] for c in group]  # noqa: E731

    ax = axes[0, 0]
    for group, name, ls in ((boom, "unconditional", "-"), (blur, "blur at matched SSIM", "--")):
        _errbar(ax, lv(group), [c["reid"]["pixels"]["top1"] for c in group], ls=ls, color="C0",
                mfc="C0" if ls == "-" else "white", label=f"{name}, pixel attack")
        _errbar(ax, lv(group), [c["reid"]["classifier"]["top1"] for c in group], ls=ls, color="C1",
                mfc="C1" if ls == "-" else "white", label=f"{name}, classifier-feature attack")
    if text:
        _errbar(ax, lv(text), [c["reid"]["pixels"]["top1"] for c in text], ls="-.", color="C3", marker="s",
                label=f"{tname}, pixel attack")
        _errbar(ax, lv(text), [c["reid"]["classifier"]["top1"] for c in text], ls="-.", color="C4", marker="s",
                label=f"{tname}, classifier-feature attack")
    ax.axhline(5, color="gray", lw=0.8, ls=":")
    ax.axhline(100 / s["n_candidates"], color="black", lw=0.8, ls=":", label=f"chance (1/{s['n_candidates']})")
    ax.set(xlabel="level (blur: sigma matched to the unconditional arm's SSIM)", ylabel="top-1 re-identification %",
           title="Privacy: linkage attack (95% Wilson intervals)", ylim=(-2, 102))
    ax.legend(fontsize=7)

    ax = axes[0, 1]
    ax.plot(lv(boom), [100 * c["class_retention"] for c in boom], "o-", color="C2", label="unconditional")
    ax.plot(lv(blur), [100 * c["class_retention"] for c in blur], "o--", color="C2", mfc="white",
            label="blur at matched SSIM")
    if text:
        ax.plot(lv(text), [100 * c["class_retention"] for c in text], "s-.", color="C3", label=tname)
    ax.axhline(10, color="black", lw=0.8, ls=":", label="chance (10 classes)")
    ax.set(xlabel="level", ylabel="% classified as the source's class",
           title="Class retention (reference classifier)", ylim=(-2, 102))
    ax.legend(fontsize=7)

    ax = axes[1, 0]
    _util(ax, lv(boom), boom, color="C2", label="unconditional (source labels)")
    _util(ax, lv(blur), blur, ls="--", color="C2", mfc="white", label="blur at matched SSIM")
    if text:
        _util(ax, lv(text), text, ls="-.", color="C3", marker="s", label=f"{tname} (source labels)")
    ax.axhline(100 * real["utility"]["mean"], color="green", ls=":", label="real sources")
    ax.axhline(100 * synth["utility"]["mean"], color="red", ls=":", label="synthetic (classifier-labelled)")
    ax.set(xlabel="level (blur: sigma matched to its SSIM)", ylabel="test accuracy % (fresh CNN, seeds)",
           title="Utility (95% t-interval over seeds)")
    ax.legend(fontsize=7)

    ax = axes[1, 1]
    px = lambda group: [100 * c["reid"]["pixels"]["top1"]["rate"] for c in group]  # noqa: E731
    _util(ax, px(boom), boom, color="C2", label="unconditional")
    _util(ax, px(blur), blur, ls="--", color="C2", mfc="white", label="blur at matched SSIM")
    if text:
        _util(ax, px(text), text, ls="-.", color="C3", marker="s", label=tname)
    for group in (boom, text):
        for c in group:
            ax.annotate(f"{c['level']:g}", (100 * c["reid"]["pixels"]["top1"]["rate"], 100 * c["utility"]["mean"]),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.axhline(100 * synth["utility"]["mean"], color="red", ls=":", label="synthetic")
    ax.set(xlabel="top-1 re-identification %, pixel attack", ylabel="test accuracy %",
           title="Trade-off (labels: level)")
    ax.legend(fontsize=7)
    title = (f"{s['n_sources']} training digits released, {s['n_candidates']} candidates, "
             f"{s['scheduler']} {s['steps']}-step budget; unconditional: bundled ddpm-mnist5k")
    if text:
        title += f"; text: {tname}, guidance {result['text_arm']['settings']['anonymise']['guidance_scale']:g}"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
