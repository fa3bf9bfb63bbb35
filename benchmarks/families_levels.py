"""The Boomerang level sweep of the three bundled digit models side by side: do equal levels mean equal closeness? Not a unit test.

The same class-balanced test digits of mnist5k (the split every bundled digit model and the judges
share: none of them trained on these) go through Boomerang on the exact schedule at each level
of ``--levels`` on each run of ``--runs`` (``model:scheduler``; by default the pixel DDPM
``ddpm-mnist5k`` and the latent ``ldm-mnist5k-text`` with the paper's ancestral ``ddpm`` process,
and the flow-matching ``flow-mnist5k-text`` with its default flow ODE ``euler`` and with the
stochastic ``euler-stochastic``), ``--steps`` budget for a full chain, ``--samples`` samples per
digit (per-item seeds). The text models get each digit's own caption ``"a handwritten <word>"`` at
``--guidance``. Every output is brought back to the 28x28 gray digit (channel mean, centre crop)
and measured:

* class retention: the share of samples still classified as the input's class by each of two
  judges of different kinds (:mod:`boomerang.studies.judges`: the reference CNN, an RBF SVM on HOG
  features), 95% Wilson intervals;
* closeness: SSIM of each sample to its input (mean, 95% bootstrap interval over samples);
* diversity: mean 1 - SSIM between the samples of one digit (95% bootstrap interval over digits);
* where the run starts: the plan's timestep, alpha_bar or sigma and the start SNR (as
  ``metadata.json`` records them), so the figures can be read against the start SNR too.

Writes ``families_levels.json`` into ``--out`` and ``families_levels.png`` into ``--plots``, and prints
the tables the README quotes.

    .venv/bin/python benchmarks/families_levels.py --threads 1 --out benchmarks/results --plots docs
    .venv/bin/python benchmarks/families_levels.py --quick      # a smoke run
"""

from __future__ import annotations

import os
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import add_out_argument, machine, make_parser, plot_path  # noqa: E402

RUNS = "ddpm-mnist5k:ddpm,ldm-mnist5k-text:ddpm,flow-mnist5k-text:euler,flow-mnist5k-text:euler-stochastic"
LEVELS = "0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0"


def parse_args(argv=None):
    p = make_parser(__doc__)
    p.add_argument("--runs", default=RUNS, help="model:scheduler pairs, comma-separated")
    p.add_argument("--levels", default=LEVELS, help="Boomerang levels, comma-separated")
    p.add_argument("--n", type=int, default=100, help="class-balanced test digits")
    p.add_argument("--samples", type=int, default=2, help="samples per digit (>= 2: diversity)")
    p.add_argument("--steps", type=int, default=50, help="step budget of a full chain (exact schedule)")
    p.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance of the text models")
    p.add_argument("--batch", type=int, default=200, help="images per sampling call")
    p.add_argument("--seed", type=int, default=0, help="base seed of the samples")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--reuse", nargs="*", default=[], metavar="JSON",
                   help="earlier families_levels.json files: a run found there with the same settings, test digits "
                        "and weights is copied, not sampled again (runs split over processes, then merged)")
    p.add_argument("--quick", action="store_true", help="tiny counts for a smoke run")
    add_out_argument(p, plots=True, name="families_levels")
    a = p.parse_args(argv)
    if a.quick:
        a.n, a.steps, a.levels = 10, min(a.steps, 10), "0.2,0.5,1.0"
    a.runs = [tuple(r.split(":", 1)) for r in a.runs.split(",") if r.strip()]
    a.levels = [float(v) for v in a.levels.split(",") if v.strip()]
    if a.samples < 2:
        p.error("--samples must be >= 2 (diversity compares the samples of one digit)")
    return a


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import json

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from boomerang.assets import asset_dir
    from boomerang.data import load_dataset, load_split
    from boomerang.models import load_model, resolve_model
    from boomerang.stats import bootstrap_mean, wilson
    from boomerang.studies.families import as_digits, model_input, pairwise_diversity, sample_level, ssim_to
    from boomerang.studies.judges import both_judges
    from boomerang.training.ldm_parts import class_prompt

    t_start = time.monotonic()
    judges = both_judges()
    ds = load_dataset("mnist5k")
    split = load_split(asset_dir("classifier-mnist5k") / "split.json")
    test = np.asarray(split["test"])
    per = [list(test[ds.labels[test] == c]) for c in range(10)]
    idx = np.asarray([per[c][i] for i in range(max(map(len, per))) for c in range(10) if i < len(per[c])][:args.n])
    labels = ds.labels[idx]
    inputs28 = ds.images[idx, 0].astype(np.float32) / 127.5 - 1.0
    res = {"settings": {k: v for k, v in vars(args).items() if k not in ("out", "plots")},
           "command": " ".join(["python benchmarks/families_levels.py", *(argv if argv is not None else sys.argv[1:])]),
           "machine": machine(), "n_digits": int(len(idx)), "test_indices": idx.tolist(),
           "judges": {j.name: j.kind for j in judges}, "runs": {}}
    out_json = args.out / f"{args.name}.json"
    same = ("levels", "n", "samples", "steps", "guidance", "seed")
    earlier = {}
    for path in args.reuse:
        prev = json.loads(pathlib.Path(path).read_text())
        if all(prev["settings"][k] == res["settings"][k] for k in same) and prev["test_indices"] == res["test_indices"]:
            earlier.update(prev["runs"])
        else:
            print(f"not reusing {path}: other settings or test digits", flush=True)
    for name, scheduler in args.runs:
        t0 = time.monotonic()
        model_dir = resolve_model(name, json_only=True)
        trained = set(load_split(model_dir / "split.json")["train"]) if (model_dir / "split.json").exists() else set()
        if trained & set(idx.tolist()):
            raise SystemExit(f"{name} trained on some of the test digits; use a model trained on the shared split")
        model = load_model(str(model_dir))
        model.batch_invariant = False
        key = f"{name}:{scheduler}"
        if key in earlier and earlier[key]["weights_sha256"] == model.weights_sha256:
            res["runs"][key] = earlier[key]
            print(f"{key}: reused", flush=True)
            continue
        x0 = model_input(model, ds.images[idx])
        text = not model.pixel_space
        rows = {}
        for level in args.levels:
            digits = []
            for k in range(args.samples):
                out, facts = sample_level(model, x0, [(int(i), k) for i in idx], level=level,
                                          prompts=[class_prompt(c) for c in labels] if text else None,
                                          scheduler=scheduler, steps=args.steps, guidance_scale=args.guidance,
                                          seed=args.seed, batch=args.batch)
                digits.append(as_digits(out))
            digits = np.stack(digits)  # [K, N, 28, 28]
            flat, y = digits.reshape(-1, 28, 28), np.tile(labels, args.samples)
            row = dict(facts)
            for j in judges:
                ok = j(flat, signed=True) == y
                row[f"retention_{j.name}"] = {"share": round(float(ok.mean()), 4), "ci95": wilson(int(ok.sum()), len(ok)),
                                              "n": int(len(ok))}
            row["ssim_to_input"] = bootstrap_mean(np.concatenate([ssim_to(d, inputs28) for d in digits]))
            row["diversity"] = bootstrap_mean(pairwise_diversity(digits))
            rows[str(level)] = row
            print(f"{name}:{scheduler} level {level}: snr {facts['start_snr']}, "
                  + ", ".join(f"{j.name} {row[f'retention_{j.name}']['share']:.3f}" for j in judges)
                  + f", ssim {row['ssim_to_input']['mean']:.3f}, diversity {row['diversity']['mean']:.3f}", flush=True)
        res["runs"][f"{name}:{scheduler}"] = {"model": name, "family": model.info.family, "scheduler": scheduler,
                                              "weights_sha256": model.weights_sha256,
                                              "prompt": "own caption" if text else None,
                                              "guidance_scale": args.guidance if text else None,
                                              "by_level": rows, "seconds": round(time.monotonic() - t0, 1)}
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    res["total_s"] = round(time.monotonic() - t_start, 1)
    out_json.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out_json}")
    print(tables(res))
    plot(res, plot_path(args, f"{args.name}.png"))
    return 0


def tables(res: dict) -> str:
    """The README's markdown tables: one per measure, levels as rows, runs as columns."""
    runs = list(res["runs"])
    levels = list(next(iter(res["runs"].values()))["by_level"])
    cnn, hog = list(res["judges"])
    measures = (("start SNR", lambda r: "none (no noise)" if r["start_snr"] is None else f"{r['start_snr']:.3g}"),
                (f"class retention ({cnn} / {hog})", lambda r: f"{100 * r[f'retention_{cnn}']['share']:.0f}% / "
                 f"{100 * r[f'retention_{hog}']['share']:.0f}%"),
                ("SSIM to the input", lambda r: f"{r['ssim_to_input']['mean']:.3f} [{r['ssim_to_input']['ci95'][0]:.3f}, "
                 f"{r['ssim_to_input']['ci95'][1]:.3f}]"),
                ("diversity (1 - SSIM between samples)", lambda r: f"{r['diversity']['mean']:.3f}"))
    out = []
    snrs = (10.0, 1.0, 0.1, 0.01)
    out.append("\nat equal start SNR (interpolated in log SNR between the measured levels): level / SSIM to the input / "
               f"{cnn} retention\n\n| start SNR | " + " | ".join(runs) + " |\n|---|" + "---|" * len(runs))
    for snr in snrs:
        cells = []
        for r in runs:
            got = at_snr(res["runs"][r]["by_level"], snr, cnn)
            cells.append("n/a" if got is None else f"{got['level']:.2f} / {got['ssim']:.3f} / {100 * got['retention']:.0f}%")
        out.append(f"| {snr:g} | " + " | ".join(cells) + " |")
    for title, cell in measures:
        out.append(f"\n{title}\n\n| level | " + " | ".join(runs) + " |\n|---|" + "---|" * len(runs))
        for lv in levels:
            out.append(f"| {lv} | " + " | ".join(cell(res["runs"][r]["by_level"][lv]) for r in runs) + " |")
    return "\n".join(out)


def at_snr(by_level: dict, snr: float, judge: str) -> dict | None:
    """Level, mean SSIM to the input and ``judge``'s retention at start SNR ``snr``, linearly interpolated
    in log10 SNR between the two measured levels around it; ``None`` outside the measured range."""
    pts = sorted((np.log10(r["start_snr"]), float(lv), r["ssim_to_input"]["mean"], r[f"retention_{judge}"]["share"])
                 for lv, r in by_level.items() if r["start_snr"])
    x = [p[0] for p in pts]
    t = np.log10(snr)
    if len(pts) < 2 or not x[0] <= t <= x[-1]:
        return None
    return {"level": float(np.interp(t, x, [p[1] for p in pts])), "ssim": float(np.interp(t, x, [p[2] for p in pts])),
            "retention": float(np.interp(t, x, [p[3] for p in pts]))}


def plot(res: dict, path: str) -> None:
    """families_levels.png: retention (both judges), SSIM to the input and diversity, against the level
    (top row) and against the start SNR (bottom row, log scale; SNR 0 of a flow level 1 is left out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cnn, hog = list(res["judges"])
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    for ri, (run, r) in enumerate(res["runs"].items()):
        color = f"C{ri}"
        lv = [float(k) for k in r["by_level"]]
        rows = list(r["by_level"].values())
        snr = [row["start_snr"] for row in rows]
        for row_i, xs in enumerate((lv, snr)):
            keep = [i for i, x in enumerate(xs) if x is not None and x > 0]
            x = [xs[i] for i in keep]
            sub = [rows[i] for i in keep]
            for key, style, label in ((f"retention_{cnn}", "-o", run), (f"retention_{hog}", ":", None)):
                axes[row_i, 0].plot(x, [s[key]["share"] for s in sub], style, color=color, label=label, ms=3)
            for col, key in ((1, "ssim_to_input"), (2, "diversity")):
                axes[row_i, col].plot(x, [s[key]["mean"] for s in sub], "-o", color=color, ms=3, label=run)
                axes[row_i, col].fill_between(x, [s[key]["ci95"][0] for s in sub], [s[key]["ci95"][1] for s in sub],
                                              color=color, alpha=0.15)
    for row_i, xlabel in enumerate(("Boomerang level", "start SNR (log; noisier to the left)")):
        for col, ylabel in enumerate((f"class retention ({cnn} solid, {hog} dotted)", "SSIM to the input",
                                      "diversity: 1 - SSIM between samples")):
            ax = axes[row_i, col]
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.grid(alpha=0.3)
            if row_i == 1:
                ax.set_xscale("log")
    axes[0, 1].legend(fontsize=7)
    fig.suptitle(f"Boomerang on the three bundled digit models: {res['n_digits']} test digits x "
                 f"{res['settings']['samples']} samples, {res['settings']['steps']}-step budget, text models with "
                 f"their own caption at guidance {res['settings']['guidance']}", fontsize=9)
    fig.tight_layout()
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
