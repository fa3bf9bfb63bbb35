"""Distance to closest record against a holdout (``audit-privacy --holdout``, issue 21) on real digits.

REAL_DIR is ``--sources`` digits of the mnist5k training split (an equal number
per class, numpy seed 0; the digits the bundled model was trained on), written
as class folders. Each ``--levels`` level is one ``boomerang anonymise REAL_DIR
--level L --link-file LINKS`` job with the privacy-utility study's sampler
(DDIM, eta 0, 10-step budget; ``--verify-top`` not used: a plain release), and
each release is audited with ``boomerang audit-privacy REAL_DIR OUT --holdout
HOLDOUT --link-file LINKS --features pixels``, HOLDOUT being the split's 500
test digits (real digits of the same kind that were neither released nor
trained on). Per level: the released images' DCR (pixel distance to the
closest digit of REAL_DIR) beside the holdout's, the share of released images
closer to REAL_DIR than 95% of the holdout is (about 5% when the release sits as
far from the real set as fresh real digits; more with near-copies), with its
Wilson 95% interval, and the share whose nearest real digit is their own
source. The contact sheet of the closest pairs at ``--sheet-level`` is
written to ``<plots>/dcr_digits_sheet.png``.

Run (as quoted in docs/privacy.md)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dcr_digits.py --out benchmarks/results --plots docs

``--table benchmarks/results/dcr_digits.json`` prints the table of a results file again.
"""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import add_out_argument, boomerang_exe, machine, make_parser, plot_path, save_json  # noqa: E402

SAMPLING = ["--scheduler", "ddim", "--eta", "0", "--steps", "10"]


def _write(root: pathlib.Path, ds, indices) -> None:
    from PIL import Image

    for i in indices:
        p = root / str(int(ds.labels[i])) / f"mnist_{int(i):04d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(ds.images[i, 0]).save(p)


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} exited with {proc.returncode}:\n{proc.stderr}")


def table(result: dict) -> str:
    """The markdown table docs/privacy.md quotes."""
    pct = lambda r: f"{100 * r['rate']:.1f} [{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}]"  # noqa: E731
    h = result["rows"][0]["holdout"]
    rows = ["| release | DCR min / 5th pct / median | below the holdout's 5th pct % [95% CI] | "
            "nearest real digit is its own source % [95% CI] |",
            "| --- | --- | --- | --- |",
            f"| holdout (500 real test digits) | {h['min']:.2f} / {h['p5']:.2f} / {h['median']:.2f} | (5 by definition) | |"]
    for r in result["rows"]:
        d = r["released"]
        rows.append(f"| level {r['level']:g} | {d['min']:.2f} / {d['p5']:.2f} / {d['median']:.2f} | "
                    f"{pct(r['below_holdout_p5'])} | {pct(r['own_source_nearest'])} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = make_parser(__doc__)
    ap.add_argument("--sources", type=int, default=500, help="training digits released (an equal number per class)")
    ap.add_argument("--levels", default="0.5,0.7,0.8,0.9,1.0", help="comma-separated levels, one release each")
    ap.add_argument("--sheet-level", type=float, default=0.9, help="the level whose closest pairs are drawn")
    ap.add_argument("--threads", default="1", help="--threads of the commands")
    ap.add_argument("--table", metavar="JSON", help="only print the table of a results file (default: run)")
    add_out_argument(ap, plots=True)
    args = ap.parse_args(argv)
    if args.table:
        print(table(json.loads(pathlib.Path(args.table).read_text())))
        return 0

    import numpy as np

    from boomerang.assets import default_model_path
    from boomerang.data import load_dataset, load_split

    ds = load_dataset("mnist5k")
    split = load_split(default_model_path() / "split.json")
    train, test = np.asarray(split["train"]), np.asarray(split["test"])
    rng = np.random.default_rng(0)
    per_class = args.sources // 10
    sources = np.sort(np.concatenate([rng.choice(train[ds.labels[train] == c], per_class, replace=False)
                                      for c in range(10)]))
    levels = [float(v) for v in args.levels.split(",")]
    exe = boomerang_exe()
    rows, t0 = [], time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dcr_digits_") as tmp:
        tmp = pathlib.Path(tmp)
        real, hold = tmp / "real", tmp / "holdout"
        _write(real, ds, sources)
        _write(hold, ds, test)
        for level in levels:
            out, links, rep = tmp / f"anon_{level:g}", tmp / f"links_{level:g}.jsonl", tmp / f"audit_{level:g}.json"
            _run([exe, "anonymise", str(real), "--out", str(out), "--level", f"{level:g}", "--link-file", str(links),
                  "--threads", args.threads, "--no-progress", *SAMPLING])
            sheet = ["--sheet", str(tmp / "sheet.png"), "--pairs", "16"] if level == args.sheet_level else []
            _run([exe, "audit-privacy", str(real), str(out), "--holdout", str(hold), "--link-file", str(links),
                  "--features", "pixels", "--json", str(rep), *sheet])
            dcr = json.loads(rep.read_text())["dcr"]
            rows.append({"level": level, "released": dcr["released"], "holdout": dcr["holdout"],
                         "below_holdout_p5": dcr["below_holdout_p5"], "own_source_nearest": dcr["own_source_nearest"],
                         "closest_pairs": dcr["closest_pairs"][:16]})
            print(f"[{time.strftime('%H:%M:%S')}] level {level:g}: below holdout p5 "
                  f"{100 * dcr['below_holdout_p5']['rate']:.1f}%, own source nearest "
                  f"{100 * dcr['own_source_nearest']['rate']:.1f}%", flush=True)
        if (tmp / "sheet.png").is_file():
            figure = plot_path(args, "dcr_digits_sheet.png")
            figure.write_bytes((tmp / "sheet.png").read_bytes())
            print(f"wrote {figure}")
    result = {"command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dcr_digits.py "
                         + shlex.join(sys.argv[1:] if argv is None else argv),
              "settings": {"sources": int(len(sources)), "holdout": int(len(test)), "levels": levels,
                           "sampling": " ".join(SAMPLING), "features": "pixels", "sheet_level": args.sheet_level,
                           "model": "bundled ddpm-mnist5k"},
              "seconds": round(time.monotonic() - t0, 1), "machine": machine(), "rows": rows}
    print(table(result))
    save_json("dcr_digits", result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
