"""``privacy_utility.py --verified``: plain vs verified release of the same sources (issue 21).

For each model (the bundled unconditional ``ddpm-mnist5k``; the text model with each digit's class
caption), the study's 100 sources are released at each level twice with one job key, so that the
first draws are the same samples (:func:`boomerang.studies.privacy_utility.release_pair`): plainly,
and with ``--verify-top K --features pixels --reference-pool POOL``, where IN_DIR (the 100 sources)
plus POOL (the other 3900 training digits) are the study's 4000 real candidates. Both releases are
then measured as every row of the study (``evaluate``: both attacks over the 4000 candidates, class
retention, utility over the training seeds) on the items each one released; withheld items are left
out of the attack and of the utility training. For the unconditional model the verified pixel space
is the study's pixel attack (28x28 gray, the same 8-bit values), so its top-1 is 0 by construction;
the text model is verified on its own 32x32 outputs (luminance) and attacked as the study does
(channel mean, centre crop), a close but not identical space.
"""

from __future__ import annotations

import json
import pathlib
import secrets
import tempfile
import time


def verified_arm(args, data: dict, seeds, log, evaluate) -> dict:
    """Run the comparison; returns the ``*_verified.json`` result (rows, per-level counts, timings)."""
    import numpy as np

    from boomerang.settings import SampleSettings
    from boomerang.studies.privacy_utility import (PAD, read_partial_release, release_pair, write_captioned_sources,
                                                   write_digits)

    levels = [float(v) for v in args.verified_levels.split(",")]
    ds, sources = data["ds"], data["sources"]
    in_sources = set(int(i) for i in sources)
    pool_idx = np.array([int(i) for i in data["train_idx"] if int(i) not in in_sources])
    models = [("unconditional", None, None, 0)]
    if args.text_model:
        models.append(("text", args.text_model, args.prompt_template or None, PAD))
    rows, counts, timings = [], {}, {}
    for name, model, template, pad in models:
        with tempfile.TemporaryDirectory(prefix="privacy_verified_") as tmp:
            tmp = pathlib.Path(tmp)
            if pad:
                names = write_captioned_sources(tmp / "src", ds.images[sources], ds.labels[sources], sources)
            else:
                names = write_digits(tmp / "src", ds.images[sources], sources)
            write_digits(tmp / "pool", ds.images[pool_idx], pool_idx, pad=pad)
            settings = SampleSettings(model=model, scheduler=args.scheduler, eta=0.0, steps=args.steps,
                                      guidance_scale=args.guidance_scale, batch_size=args.batch_size)
            log(f"{name}: releasing {len(names)} sources at {levels}, plain and verified (top-{args.verify_top})")
            pair = release_pair(tmp / "src", tmp / "pool", tmp, levels, settings, key=secrets.token_hex(32),
                                verify_top=args.verify_top, features="pixels", max_level=args.verify_max_level,
                                prompt_template=template, threads=args.threads)
            timings[name] = {arm: pair[arm]["seconds"] for arm in pair}
            log(f"{name}: anonymise took {timings[name]['plain']} s plain, {timings[name]['verified']} s verified")
            detail = json.loads((pair["verified"]["out"] / ".job" / "verification.json").read_text())
            for level in levels:
                outs = [r for r in detail["outputs"] if abs(r["level_asked"] - level) < 1e-9]
                counts[f"{name}@{level:g}"] = {
                    "n": len(outs), "withheld": sum(1 for r in outs if r.get("withheld")),
                    "redrawn": sum(1 for r in outs if not r.get("withheld") and r["attempts"]),
                    "attempts_of_redrawn": sorted(r["attempts"] for r in outs if not r.get("withheld") and r["attempts"])}
            for arm in ("plain", "verified"):
                released = read_partial_release(pair[arm]["out"], pair[arm]["links"], names, levels)
                for level in levels:
                    kept, x = released[level]
                    c = {"condition": f"{name}_{arm}", "model": name, "release": arm, "level": level,
                         "key": f"{name}_{arm}@{level:g}", "released": len(kept)}
                    if kept:
                        sub = {**data, "x_real": data["x_real"][kept], "y_src": data["y_src"][kept],
                               "src_pos": data["src_pos"][kept]}
                        evaluate([c], {c["key"]: x}, sub, seeds, args)
                    rows.append({k: v for k, v in c.items() if k != "key"})
    return {"study": "plain vs verified release", "levels": levels, "verify_top": args.verify_top,
            "verify_features": "pixels", "verify_max_level": args.verify_max_level, "verify_seeds": 3,
            "rows": rows, "counts": counts, "anonymise_s": timings, "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                        time.gmtime())}


def _pct(rate: dict) -> str:
    lo, hi = rate["ci95"]
    return f"{100 * rate['rate']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def verified_table(result: dict) -> str:
    """The markdown table of the comparison (docs/privacy.md quotes it; ``privacy_utility.py --replot
    <name>_verified.json`` prints it again). Class retention by both judges where the rows have them."""
    from _privacy_tables import _kept, _kept_header, _utility, second_judge

    second = second_judge({"conditions": result["rows"]})
    lines = ["| model | level | release | released / sources | redrawn / withheld | top-1 re-id, pixels % [95% CI] | "
             f"top-1 re-id, classifier % [95% CI] | {_kept_header(second)} | utility: test accuracy % [95% CI] |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        cnt = result["counts"][f"{r['model']}@{r['level']:g}"]
        moved = f"{cnt['redrawn']} / {cnt['withheld']}" if r["release"] == "verified" else ""
        if "reid" not in r:
            lines.append(f"| {r['model']} | {r['level']:g} | {r['release']} | 0 / {cnt['n']} | {moved} | | | | |")
            continue
        u = r["utility"]
        lines.append(f"| {r['model']} | {r['level']:g} | {r['release']} | {r['released']} / {cnt['n']} | {moved} | "
                     f"{_pct(r['reid']['pixels']['top1'])} | {_pct(r['reid']['classifier']['top1'])} | "
                     f"{_kept(r, second)} | {_utility(u)} |")
    cost = ", ".join(f"{m}: {t['plain']:.0f} s plain, {t['verified']:.0f} s verified"
                     for m, t in result["anonymise_s"].items())
    return "\n".join(lines) + f"\n\nanonymise wall time (all levels): {cost}"
