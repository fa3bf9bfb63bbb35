"""The tables of ``benchmarks/privacy_utility.py`` that README.md and docs/privacy.md show.

* :func:`markdown_table` (docs/privacy.md) and :func:`summary_table` (README): the
  unconditional arm beside blur at matched SSIM, real sources and synthetic samples.
* :func:`text_summary_table` (README), :func:`text_markdown_table` and
  :func:`text_variants_table` (docs/privacy.md): the text arm.

``privacy_utility.py --replot RESULTS.json [VARIANT.json ...]`` prints them all;
tests/docs/test_privacy_docs.py checks that the docs quote the committed results' tables.
"""

from __future__ import annotations


def clipped_ci(u: dict) -> tuple[float, float]:
    """A utility's 95% t-interval over seeds, clipped to [0, 1] for display (the JSON keeps the raw interval)."""
    return max(0.0, u["ci95"][0]), min(1.0, u["ci95"][1])


def _p(x: float) -> str:
    """A share in [0, 1] as a percentage with one decimal."""
    return f"{100 * x:.1f}"


def _utility(u: dict) -> str:
    """A utility's mean and clipped interval, in %: ``97.3 [95.1, 99.5]``."""
    lo, hi = clipped_ci(u)
    return f"{_p(u['mean'])} [{_p(lo)}, {_p(hi)}]"


def _rate(r: dict) -> str:
    """A re-identification rate and its Wilson interval, in %."""
    return f"{_p(r['rate'])} [{_p(r['ci95'][0])}, {_p(r['ci95'][1])}]"


def second_judge(result: dict) -> str | None:
    """The name of the second judge whose class retention the results (or a text arm) hold (runs from issue 20
    on), else None."""
    names = {j for c in result.get("conditions", []) for j in c.get("class_retention_by_judge", {})}
    return next((j for j in sorted(names) if j != "cnn"), None)


def _judged(c: dict, judge: str) -> str:
    """A condition's class retention by ``judge`` with its Wilson interval, in % (synthetic: agreement with the
    samples' CNN labels, marked so)."""
    r = c["class_retention_by_judge"][judge]
    text = f"{_p(r['accuracy'])} [{_p(r['accuracy_ci95'][0])}, {_p(r['accuracy_ci95'][1])}]"
    return text + (" (agrees with label)" if c["condition"] == "synthetic" else "")


def _kept(c: dict, second: str | None, *, ci: bool = False) -> str:
    """A condition's class retention as ``CNN / second judge`` in % (each with its Wilson interval when
    ``ci``); the CNN's alone for results without judges; empty where there is no source (synthetic)."""
    if c.get("class_retention") is None:
        return ""
    judged = c.get("class_retention_by_judge", {})
    if not second:
        return _p(c["class_retention"])
    if second not in judged:  # a row of a run from before the second judge, in a table that has one
        return f"{_p(c['class_retention'])} (CNN only)"
    show = (lambda j: _judged(c, j)) if ci else (lambda j: _p(judged[j]["accuracy"]))
    return f"{show('cnn')} / {show(second)}"


def _kept_header(second: str | None, *, ci: bool = False) -> str:
    """The header of :func:`_kept`'s column."""
    return (f"class retention %{' [95% CI]' if ci else ''} (CNN / {second})" if second
            else "class retention %")


def markdown_table(result: dict) -> str:
    """docs/privacy.md's full table: one row per condition. Class retention is given by the reference CNN
    and, where the results have one, the second judge, each with its Wilson interval (synthetic samples:
    how often each judge agrees with their CNN labels, a last column)."""
    second = second_judge(result)
    rows = ["| release | level | blur sigma | SSIM to source | top-1 re-id, pixels % [95% CI] | "
            f"top-1 re-id, classifier % [95% CI] | {_kept_header(second, ci=True)} | "
            "utility: test accuracy % [95% CI] |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in result["conditions"]:
        reid = c.get("reid")
        kept = _kept(c, second, ci=True)
        if c["condition"] == "synthetic" and second and second in c.get("class_retention_by_judge", {}):
            kept = f"n/a; {second} agrees with the CNN label on {_judged(c, second).replace(' (agrees with label)', '')}"
        rows.append("| {} | {} | {} | {} | {} | {} | {} | {} |".format(
            c["condition"], "" if c["level"] is None else f"{c['level']:g}",
            f"{c['sigma']:.2f}" if "sigma" in c else "",
            "" if c["ssim_to_source"] is None else f"{c['ssim_to_source']:.3f}",
            _rate(reid["pixels"]["top1"]) if reid else "n/a (no source)",
            _rate(reid["classifier"]["top1"]) if reid else "n/a (no source)",
            kept, _utility(c["utility"])))
    return "\n".join(rows)


def summary_table(result: dict) -> str:
    """The README's short table: Boomerang per level beside blur at matched SSIM, real and synthetic."""
    conds = result["conditions"]
    blur = {c["level"]: c for c in conds if c["condition"] == "blur"}
    second = second_judge(result)
    rows = [f"| release | top-1 re-id % (pixels / classifier) | {_kept_header(second)} | utility % [95% CI] | "
            "blur at matched SSIM: top-1 % (pixels / classifier), utility % |",
            "| --- | --- | --- | --- | --- |"]
    for c in conds:
        if c["condition"] == "blur":
            continue
        names = {"real": "real sources", "synthetic": "synthetic (global samples, classifier labels)"}
        name = names[c["condition"]] if c["condition"] in names else f"Boomerang level {c['level']:g}"
        r = c.get("reid")
        reid = f"{_p(r['pixels']['top1']['rate'])} / {_p(r['classifier']['top1']['rate'])}" if r else "n/a"
        ret = _kept(c, second)
        b = blur.get(c["level"]) if c["condition"] == "boomerang" else None
        bl = (f"{_p(b['reid']['pixels']['top1']['rate'])} / {_p(b['reid']['classifier']['top1']['rate'])}, "
              f"{_p(b['utility']['mean'])}") if b else ""
        rows.append(f"| {name} | {reid} | {ret} | {_utility(c['utility'])} | {bl} |")
    return "\n".join(rows)


def text_summary_table(result: dict) -> str:
    """The README's table of the text arm, each level beside the unconditional arm's."""
    arm = result["text_arm"]
    base = {c["level"]: c for c in result["conditions"] if c["condition"] == "boomerang"}
    what = "caption" if arm["settings"]["prompt_template"] else "empty prompt"
    second, base_second = second_judge(arm), second_judge(result)
    rows = [f"| level | text + {what}: top-1 re-id % (pixels / classifier) | {_kept_header(second)} | "
            f"utility % [95% CI] | unconditional: top-1 % (pixels / classifier), {_kept_header(base_second)}, "
            "utility % |",
            "| --- | --- | --- | --- | --- |"]
    for c in arm["conditions"]:
        r = c["reid"]
        b = base.get(c["level"])
        bl = (f"{_p(b['reid']['pixels']['top1']['rate'])} / {_p(b['reid']['classifier']['top1']['rate'])}, "
              f"{_kept(b, base_second)}, {_p(b['utility']['mean'])}") if b else ""
        name = f"{c['level']:g}" + (" (VAE round trip)" if c["level"] == 0 else "")
        rows.append(f"| {name} | {_p(r['pixels']['top1']['rate'])} / {_p(r['classifier']['top1']['rate'])} | "
                    f"{_kept(c, second)} | {_utility(c['utility'])} | {bl} |")
    return "\n".join(rows)


def text_markdown_table(result: dict) -> str:
    """docs/privacy.md's full table of the text arm: one row per level (class retention by both judges, each
    with its Wilson interval, where the arm has a second judge)."""
    arm = result["text_arm"]
    second = second_judge(arm)
    rows = ["| level | sqrt(alpha_bar): text / unconditional model | SSIM to source | top-1 re-id, pixels % [95% CI] | "
            "top-1 re-id, classifier % [95% CI] | top-5 re-id, pixels / classifier % | "
            f"{_kept_header(second, ci=True)} | utility: test accuracy % [95% CI] |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in arm["conditions"]:
        r = c["reid"]
        rows.append(f"| {c['level']:g} | {c['signal_kept']:.3f} / {c['signal_kept_unconditional']:.3f} | "
                    f"{c['ssim_to_source']:.3f} | "
                    f"{_rate(r['pixels']['top1'])} | {_rate(r['classifier']['top1'])} | "
                    f"{_p(r['pixels']['top5']['rate'])} / {_p(r['classifier']['top5']['rate'])} | "
                    f"{_kept(c, second, ci=True)} | {_utility(c['utility'])} |")
    return "\n".join(rows)


def text_variants_table(results: list[dict]) -> str:
    """docs/privacy.md's comparison of text arms (caption vs empty prompt, guidance scales): per run, the
    first level where top-1 re-identification is <= 5% with both attacks, and what is left there and at 1."""
    second = next((j for j in (second_judge(r["text_arm"]) for r in results) if j), None)
    judges = f" (CNN / {second})" if second else ""
    rows = ["| prompt | guidance | first level with top-1 <= 5% (both attacks) | top-1 there, pixels / classifier % | "
            f"class retention there %{judges} | utility there % [95% CI] | class retention at level 1 %{judges} | "
            "utility at level 1 % |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for result in results:
        arm = result["text_arm"]
        st = arm["settings"]
        prompt = f"`{st['prompt_template']}` (class caption)" if st["prompt_template"] else "empty"
        f = arm["first_level_top1_at_most_5pct"]
        last = next(c for c in arm["conditions"] if c["level"] == 1.0)
        at = None if f is None else next(c for c in arm["conditions"] if c["level"] == f["level"])
        there = ("none", "", "", "") if f is None else (
            f"{f['level']:g}", f"{_p(f['top1_pixels'])} / {_p(f['top1_classifier'])}", _kept(at, second),
            _utility({"mean": f["utility"], "ci95": f["utility_ci95"]}))
        rows.append(f"| {prompt} | {st['anonymise']['guidance_scale']:g} | " + " | ".join(there)
                    + f" | {_kept(last, second)} | {_p(last['utility']['mean'])} |")
    return "\n".join(rows)
