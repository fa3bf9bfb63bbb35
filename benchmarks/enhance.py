"""Perceptual resolution enhancement vs bicubic on test digits (issue 11). Not a unit test.

Two settings, both on the *test* split of mnist5k (never seen by the bundled
diffusion model or the reference classifier in training):

* **4x**: each 28x28 test digit is box-downsampled to 7x7 and brought back to
  28x28 (one model window).
* **8x, tiled**: 8 x 8 test digits make a 224x224 sheet, box-downsampled to
  28x28 and enhanced 8x back to 224x224 with the bundled 28x28 model in
  overlapping 28x28 windows (MultiDiffusion blending at every reverse step);
  each digit's 28x28 cell is then cut out and scored.

Methods: Pillow bicubic and Lanczos; ``enhance`` (bicubic upsampling, then
Boomerang with the ``--scheduler`` reverse process) at ``--levels``; the same
with ILVR consistency (``--consistency``) at ``--consistency-levels``; and with
the colour fix at ``--colour-fix-levels``. Metrics per method: accuracy of the
bundled reference classifier against the true labels (95% Wilson interval), and
of every judge in ``--judges`` (default: that CNN and ``hog-svm``, an RBF SVM on
HOG features trained on the same training split; :mod:`boomerang.studies.judges`),
PSNR and SSIM to the ground truth (mean and 95% interval over digits),
consistency error (mean |box-downsampled 8-bit output - input| in 8-bit
units) and, for 8x, the seam score (mean |gradient| across window borders /
mean |gradient| elsewhere; 1.0 = no seam). Every method is scored on the same
digits, so each is also compared with bicubic digit by digit
(:func:`boomerang.stats.paired_difference`): the accuracy difference with a 95% paired
bootstrap interval over digits, the discordant counts and the exact McNemar
p-value (``vs_bicubic`` in the JSON; ``--table`` prints a second table).

Digits: the test split in class-balanced order (0, 1, ..., 9, 0, 1, ...;
500 digits). 4x takes the first ``--n-digits``; the 8x sheets take the next
``64 * --sheets`` from position ``--first-sheet-digit`` (default: right after
the 4x digits, so the README's sheet is positions 150-213). ``--no-4x`` runs
only the 8x part (the sheets still start at ``--n-digits`` unless
``--first-sheet-digit`` says otherwise); ``--no-8x`` only the 4x part.

Writes ``enhance.json`` into ``--out`` (default ``benchmarks/out/``, git-ignored)
and ``enhance.png`` into ``--plots`` (default: the ``--out`` folder); ``--name``
names a variant run's files instead (``enhance_high_levels.json``, ...).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/enhance.py        # the run in README (see JSON for the time)
    .venv/bin/python benchmarks/enhance.py --quick                  # 40 digits, 1 sheet
    .venv/bin/python benchmarks/enhance.py --table --out benchmarks/results   # README's table
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/enhance.py --no-4x --first-sheet-digit 22 --sheets 7 \
        --levels 0.3,0.4,0.5 --consistency-levels 0.5 --colour-fix-levels "" \
        --out benchmarks/results --name enhance_8x_sheets      # README's 8x run on 448 digits (+ --seed 1)

``--out benchmarks/results --plots docs`` refreshes the committed results and figure.
``--save-cells NPZ`` also keeps every scored output (uint8 28x28 cells); ``--rejudge NPZ --judges
cnn,hog-svm,pixel-svm --out DIR --name NAME`` scores them again with other judges (no sampling).
The README's two-judge 8x run (issue 20)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/enhance.py --no-4x --first-sheet-digit 22 --sheets 7 \
        --levels 0.3,0.4,0.5 --consistency-levels 0.5 --colour-fix-levels "" --threads 1 \
        --out benchmarks/results --name enhance_8x_judges --save-cells benchmarks/out/enhance_8x_judges_cells.npz
"""

from __future__ import annotations

import os
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import add_out_argument, make_parser, plot_path  # noqa: E402

from boomerang.stats import paired_difference  # noqa: E402


def parse_args(argv=None):
    p = make_parser(__doc__, first_paragraph=True)
    p.add_argument("--n-digits", type=int, default=150, help="test digits for 4x (class-balanced)")
    p.add_argument("--sheets", type=int, default=1, help="8x8 sheets of test digits for 8x")
    p.add_argument("--first-sheet-digit", type=int, default=None,
                   help="position in the class-balanced test order where the 8x sheets start (default: --n-digits)")
    p.add_argument("--n-boot", type=int, default=10_000, help="bootstrap resamples of the paired comparison with bicubic")
    p.add_argument("--levels", default="0.1,0.2,0.3,0.4,0.5", help="comma-separated levels of plain enhance")
    p.add_argument("--consistency-levels", default="0.3,0.5",
                   help="comma-separated levels of enhance with ILVR consistency (empty: none)")
    p.add_argument("--colour-fix-levels", default="0.3",
                   help="comma-separated levels of enhance with the colour fix (empty: none)")
    p.add_argument("--steps", type=int, default=25, help="step budget of a full chain (25: half the usual 50, to fit the run in ~25 min)")
    p.add_argument("--scheduler", default="ddpm", help="Boomerang reverse process")
    p.add_argument("--tile-overlap", type=int, default=None, help="8x window overlap in pixels (default: 7)")
    p.add_argument("--tile-batch", type=int, default=64, help="windows per model call")
    p.add_argument("--weighting", default="feather", choices=["feather", "uniform"], help="window blending")
    p.add_argument("--seed", type=int, default=0, help="base seed of the samples")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--quick", action="store_true", help="40 digits, 1 sheet")
    p.add_argument("--no-8x", action="store_true", help="run only the 4x part")
    p.add_argument("--no-4x", action="store_true", help="run only the 8x part")
    p.add_argument("--save-cells", type=pathlib.Path, default=None, metavar="NPZ",
                   help="also write every method's scored 28x28 cells (uint8) and the true labels to this .npz, "
                        "so that another judge can score the same outputs later (default: none, not kept)")
    p.add_argument("--judges", default="cnn,hog-svm",
                   help="comma-separated judges of the digits' class (boomerang.studies.judges: cnn, hog-svm, "
                        "pixel-svm); the first must be cnn (the reference classifier, the table's first columns)")
    p.add_argument("--rejudge", type=pathlib.Path, default=None, metavar="NPZ",
                   help="score the outputs a run saved with --save-cells again with --judges, rewriting the judge "
                        "fields of <--out>/<--name>.json (no sampling; default: none, a normal run)")
    p.add_argument("--table", action="store_true", help="only print the Markdown table of <--out>/<--name>.json (for README)")
    p.add_argument("--without", default=None, metavar="START-END",
                   help="with --table: also compare with bicubic on the 8x digits outside these positions of the "
                        "class-balanced order (e.g. 150-213, the sheet the levels were chosen on; default: none)")
    add_out_argument(p, plots=True, name="enhance")
    a = p.parse_args(argv)
    if a.quick:
        a.n_digits, a.sheets = min(a.n_digits, 40), min(a.sheets, 1)
    if a.no_4x and a.no_8x:
        p.error("--no-4x and --no-8x leave nothing to run; drop one of them")
    if a.first_sheet_digit is None:
        a.first_sheet_digit = a.n_digits
    if a.sheets < 1 or a.first_sheet_digit < 0 or a.first_sheet_digit + 64 * a.sheets > N_TEST:
        p.error(f"--sheets {a.sheets} from --first-sheet-digit {a.first_sheet_digit} needs digits "
                f"{a.first_sheet_digit}-{a.first_sheet_digit + 64 * a.sheets - 1} of the {N_TEST} test digits; "
                "use fewer sheets or an earlier start")
    a.judges = [j for j in a.judges.split(",") if j]
    from boomerang.studies.judges import NAMES  # torch-free

    if not a.judges or a.judges[0] != "cnn" or any(j not in NAMES for j in a.judges) or len(set(a.judges)) != len(a.judges):
        p.error(f"--judges {','.join(a.judges)!r}: give cnn first, then any of {', '.join(NAMES[1:])}, each once")
    if a.n_boot < 100:
        p.error("--n-boot must be at least 100")
    if a.without is not None:
        try:
            lo, hi = (int(v) for v in a.without.split("-"))
        except ValueError:
            p.error(f"--without {a.without!r}: give two positions as START-END, e.g. 150-213")
        if not 0 <= lo <= hi < N_TEST:
            p.error(f"--without {a.without}: need 0 <= START <= END < {N_TEST}")
        a.without = (lo, hi)
    return a


N_TEST = 500  # test digits of mnist5k's split (50 per class); checked against the split at run time


def mean_ci(v) -> dict:
    v = np.asarray(v, dtype=np.float64)
    if not np.isfinite(v).all():  # PSNR of an identical image (the ground-truth row)
        return {"mean": None, "ci95": None}
    se = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
    return {"mean": round(float(v.mean()), 4), "ci95": [round(float(v.mean() - 1.96 * se), 4), round(float(v.mean() + 1.96 * se), 4)]}


def box_down(a: np.ndarray, factor: int) -> np.ndarray:
    """[N, H, W] -> [N, H/f, W/f] block means (the degradation, and the consistency check)."""
    n, h, w = a.shape
    return a.reshape(n, h // factor, factor, w // factor, factor).mean(axis=(2, 4))


def seam_score(imgs: np.ndarray, starts: list[int], tile: int) -> float:
    """Mean |horizontal and vertical finite difference| across window borders / elsewhere, over [N, H, W]."""
    h, w = imgs.shape[1:]
    edges = sorted({s for s in starts if 0 < s < w} | {s + tile for s in starts if 0 < s + tile < w})
    gx = np.abs(np.diff(imgs, axis=2))  # gx[..., c-1] is across the line between columns c-1 and c
    gy = np.abs(np.diff(imgs, axis=1))
    mask = np.zeros(w - 1, bool)
    mask[[e - 1 for e in edges]] = True
    across = np.concatenate([gx[..., mask].ravel(), gy[:, mask, :].ravel()])
    inside = np.concatenate([gx[..., ~mask].ravel(), gy[:, ~mask, :].ravel()])
    return float(across.mean() / inside.mean())


def table(results: dict, without: tuple[int, int] | None = None, n_boot: int = 10_000, seed: int = 0) -> str:
    """The README table: one row per method and setting; then, where the results have them, each
    method's paired comparison with bicubic, and with ``without = (start, end)`` the 8x comparison
    again on the digits outside those class-balanced-order positions (inclusive)."""
    def pct(r):
        lo, hi = r["accuracy_ci95"]
        return f"{100 * r['accuracy']:.1f} [{100 * lo:.0f}, {100 * hi:.0f}]"

    def num(d, fmt):
        return "-" if d["mean"] is None else format(d["mean"], fmt)

    lines = ["| setting | method | accuracy % [95% CI] | PSNR dB | SSIM | consistency error (8-bit) | seam score |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for key, label in (("x4", "4x (7->28)"), ("x8", "8x tiled (28->224)")):
        for name, r in results.get(key, {}).get("methods", {}).items():
            seam = r.get("seam_score")
            lines.append(f"| {label} | {name} | {pct(r)} | {num(r['psnr_db'], '.2f')} | {num(r['ssim'], '.3f')} | "
                         f"{num(r['consistency_error_8bit'], '.2f')} | {'-' if seam is None else f'{seam:.3f}'} |")
    paired = [(label, name, r["vs_bicubic"]) for key, label in (("x4", "4x (7->28)"), ("x8", "8x tiled (28->224)"))
              for name, r in results.get(key, {}).get("methods", {}).items() if r.get("vs_bicubic")]
    if paired:  # runs before the paired comparison was added have none
        lines += ["", "| setting | method vs bicubic (same digits) | right by both | method only | bicubic only | "
                  "difference, points [95% CI] | exact McNemar p |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for label, name, d in paired:
            lo, hi = d["ci95"]
            lines.append(f"| {label} | {name} | {d['both']} | {d['a_only']} | {d['b_only']} | "
                         f"{100 * d['difference']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] | {d['mcnemar_p']:.2g} |")
    lines += judges_table(results)
    x8 = results.get("x8", {})
    if without is not None and "order_positions" in x8 and "bicubic" in x8["methods"]:
        pos = np.arange(*x8["order_positions"])
        keep = (pos < without[0]) | (pos > without[1])
        base = np.array([c == "1" for c in x8["methods"]["bicubic"]["correct_by_digit"]])[keep]
        lines += ["", f"8x digits outside positions {without[0]}-{without[1]} ({int(keep.sum())} digits; "
                  f"bicubic {100 * base.mean():.1f}%):", "",
                  "| method | accuracy % | method only | bicubic only | difference, points [95% CI] | exact McNemar p |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for name, r in x8["methods"].items():
            if name in ("bicubic", "ground truth"):
                continue
            c = np.array([v == "1" for v in r["correct_by_digit"]])[keep]
            d = paired_difference(c, base, n_boot=n_boot, seed=seed)
            lo, hi = d["ci95"]
            lines.append(f"| {name} | {100 * c.mean():.1f} | {d['a_only']} | {d['b_only']} | "
                         f"{100 * d['difference']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] | {d['mcnemar_p']:.2g} |")
    return "\n".join(lines)


def pair_with_bicubic(block: dict, n_boot: int, seed: int) -> None:
    """Add each method's paired comparison with bicubic (same digits) to its entry: ``vs_bicubic`` (the
    reference CNN's, as in earlier runs) and ``vs_bicubic_by_judge`` (every judge's)."""
    base = block["methods"].get("bicubic")
    for name, r in block["methods"].items():
        if base is not None and name not in ("bicubic", "ground truth"):
            r["vs_bicubic"] = paired_difference([c == "1" for c in r["correct_by_digit"]],
                                                [c == "1" for c in base["correct_by_digit"]], n_boot=n_boot, seed=seed)
            r["vs_bicubic_by_judge"] = {
                j: paired_difference([c == "1" for c in r["judges"][j]["correct_by_digit"]],
                                     [c == "1" for c in base["judges"][j]["correct_by_digit"]], n_boot=n_boot, seed=seed)
                for j in r["judges"]}


def rejudge(args) -> int:
    """``--rejudge NPZ``: score the outputs a run saved with ``--save-cells`` again with ``--judges`` and rewrite
    ``<--out>/<--name>.json``'s judge fields (``judges``, ``vs_bicubic_by_judge``); nothing else changes."""
    import json

    from _common import save_json

    from boomerang.studies.judges import judges_named, retention

    path = args.out / f"{args.name}.json"
    if not path.is_file() or not args.rejudge.is_file():
        raise SystemExit(f"enhance.py --rejudge: need {path} and {args.rejudge} (written by a run with --save-cells)")
    results = json.loads(path.read_text())
    judges = judges_named(args.judges)
    cells = np.load(args.rejudge)
    for key in ("x4", "x8"):
        if key not in results:
            continue
        labels = cells[f"{key}/labels"]
        for name, r in results[key]["methods"].items():
            r["judges"] = retention(judges, cells[f"{key}/{name}"], labels)
            if r["judges"]["cnn"]["correct_by_digit"] != r["correct_by_digit"]:  # cnn is always the first judge
                raise SystemExit(f"enhance.py --rejudge: {args.rejudge} does not hold the outputs of {path} "
                                 f"({key} {name}: the reference CNN scores them differently)")
        pair_with_bicubic(results[key], results["settings"]["n_boot"], results["settings"]["seed"])
    results["judges"] = {j.name: {"kind": j.kind, **j.info} for j in judges}
    results["settings"]["judges"] = list(args.judges)
    save_json(args.name, results, args.out)
    print(table(results))
    return 0


def judges_table(results: dict) -> list[str]:
    """Where the results have both judges' figures (runs from issue 20 on): one row per method with each
    judge's accuracy [95% Wilson CI] and its paired difference with bicubic [95% bootstrap CI] (McNemar p)."""
    names = list(results.get("judges", {}))
    rows = [(label, name, r) for key, label in (("x4", "4x (7->28)"), ("x8", "8x tiled (28->224)"))
            for name, r in results.get(key, {}).get("methods", {}).items() if "judges" in r]
    if not names or not rows:
        return []
    head = "| setting | method | " + " | ".join(f"{j}: accuracy % [95% CI] | {j}: vs bicubic, points [95% CI] (p)"
                                               for j in names) + " |"
    lines = ["", f"Every judge ({', '.join(names)}: the reference CNN first, the others trained on its training split; "
             "paired differences with bicubic on the same digits, exact McNemar p):", "", head,
             "|" + " --- |" * (2 + 2 * len(names))]
    for label, name, r in rows:
        cells = []
        for j in names:
            a = r["judges"][j]
            lo, hi = a["accuracy_ci95"]
            cells.append(f"{100 * a['accuracy']:.1f} [{100 * lo:.0f}, {100 * hi:.0f}]")
            d = r.get("vs_bicubic_by_judge", {}).get(j)
            cells.append("-" if d is None else f"{100 * d['difference']:+.1f} [{100 * d['ci95'][0]:+.1f}, "
                         f"{100 * d['ci95'][1]:+.1f}] ({d['mcnemar_p']:.2g})")
        lines.append(f"| {label} | {name} | " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.rejudge is not None:
        return rejudge(args)
    if args.table:
        import json

        path = args.out / f"{args.name}.json"
        if not path.is_file():
            raise SystemExit(f"enhance.py --table: no {path}; run the benchmark first, or pass "
                             "--out benchmarks/results for the committed results")
        print(table(json.loads(path.read_text()), without=args.without, n_boot=args.n_boot, seed=args.seed))
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    torch.set_num_threads(args.threads)
    from boomerang.assets import default_model_path
    from boomerang.data import load_dataset, load_split
    from boomerang.enhance.image import enhance_images
    from boomerang.enhance.resample import upsample
    from boomerang.enhance.tiling import tile_starts
    from boomerang.models import load_model
    from boomerang.seeds import item_generator
    from boomerang.studies.judges import REFERENCE, judges_named, retention

    t_start = time.monotonic()
    model_dir = default_model_path()
    model = load_model(str(model_dir))
    judges = judges_named(args.judges)  # the reference CNN and the judges trained on the same split (print their accuracy)
    ds = load_dataset("mnist5k")
    split = load_split(model_dir / "split.json")
    test = np.asarray(split["test"])
    labels_all = ds.labels[test]
    # class-balanced order: 0,1,...,9,0,1,... over the test split
    per = [test[labels_all == c] for c in range(10)]
    order = [int(per[c][i]) for i in range(min(len(x) for x in per)) for c in range(10)]
    if len(order) != N_TEST:
        raise SystemExit(f"enhance.py: the split has {len(order)} class-balanced test digits, not {N_TEST}")
    imgs01 = ds.images[:, 0].astype(np.float32) / 255.0

    levels = [float(x) for x in args.levels.split(",") if x]
    c_levels = [float(x) for x in args.consistency_levels.split(",") if x]
    f_levels = [float(x) for x in args.colour_fix_levels.split(",") if x]
    methods = [("ground truth", None), ("bicubic", None), ("lanczos", None)]
    methods += [(f"enhance L={lv:g}", dict(level=lv)) for lv in levels]
    methods += [(f"enhance+consistency L={lv:g}", dict(level=lv, consistency=True)) for lv in c_levels]
    methods += [(f"enhance+colour fix L={lv:g}", dict(level=lv, colour_fix=True)) for lv in f_levels]

    def score(out: np.ndarray, gt: np.ndarray, low: np.ndarray, factor: int, cells_fn, labels) -> dict:
        """out, gt: [N, H, W] in [0, 1]; low: [N, h, w] the input."""
        q = np.rint(out * 255.0) / 255.0  # as written to an 8-bit file
        cons = np.abs(box_down(q, factor) - low).mean(axis=(1, 2)) * 255.0
        co, cg = cells_fn(q), cells_fn(gt)
        by_judge = retention(judges, co, labels)
        ref = by_judge[REFERENCE]
        with np.errstate(divide="ignore"):  # identical images (the ground-truth row): PSNR inf, reported as null
            psnr = [peak_signal_noise_ratio(g, o, data_range=1.0) for g, o in zip(cg, co)]
        ssim = [structural_similarity(g, o, data_range=1.0, win_size=7) for g, o in zip(cg, co)]
        # the top-level accuracy fields are the reference CNN's (as in earlier runs); "judges" has both judges'
        return {**{k: ref[k] for k in ("accuracy", "accuracy_ci95", "correct", "n", "correct_by_digit")},
                "judges": by_judge, "psnr_db": mean_ci(psnr), "ssim": mean_ci(ssim),
                "consistency_error_8bit": mean_ci(cons)}

    def run(name, kw, gt: np.ndarray, low: np.ndarray, factor: int, tile_overlap=None, first_index=0):
        h, w = gt.shape[1:]
        t0 = time.monotonic()
        if name == "ground truth":  # the classifier's ceiling
            out, evals = gt.copy(), 0
        elif kw is None:
            out = np.stack([upsample(x, h, w, name) for x in low])
            evals = 0
        else:
            gens = [item_generator(args.seed, first_index + i, 0) for i in range(len(low))]
            res = enhance_images(model, list(low), scale=factor, generators=gens, steps=args.steps,
                                 scheduler=args.scheduler, tile_overlap=tile_overlap, tile_batch=args.tile_batch,
                                 weighting=args.weighting, **kw)
            out = np.stack([r.pixels[..., 0] for r in res])
            evals = res[0].num_denoiser_evals
        return out, round(time.monotonic() - t0, 1), evals

    settings = {k: v for k, v in vars(args).items() if k not in ("out", "plots", "save_cells")}  # where files go is no setting
    results: dict = {"settings": settings | {"model": str(model_dir.name), "upsampler": "bicubic (Pillow)",
                                                 "degradation": "box average (Pillow-equivalent block mean)"},
                     "judges": {j.name: {"kind": j.kind, **j.info} for j in judges}}
    outputs: dict = {}
    saved: dict = {}  # --save-cells: "x8/<method>" -> uint8 [N, 28, 28]

    def vs_bicubic(block: dict) -> None:
        pair_with_bicubic(block, args.n_boot, args.seed)

    # ---- 4x: 28 -> 7 -> 28
    idx = np.array(order[: args.n_digits])
    gt4 = imgs01[idx]
    lab4 = ds.labels[idx]
    low4 = box_down(gt4, 4)
    if not args.no_4x:
        results["x4"] = {"n_digits": len(idx), "order_positions": [0, len(idx)],
                         "test_indices": [int(i) for i in idx], "methods": {}}
        for name, kw in methods:
            out, secs, evals = run(name, kw, gt4, low4, 4)
            r = score(out, gt4, low4, 4, lambda a: a, lab4) | {"seconds": secs, "window_evals_per_image": evals}
            results["x4"]["methods"][name] = r
            saved[f"x4/{name}"] = np.rint(out * 255.0).astype(np.uint8)
            outputs[("x4", name)] = out[:8]
            print(f"4x {name:32s} acc " + " ".join(f"{j} {a['accuracy']:.3f} {a['accuracy_ci95']}" for j, a in r["judges"].items())
                  + f" psnr {r['psnr_db']['mean'] or float('inf'):.2f} "
                  f"ssim {r['ssim']['mean']:.3f} cons {r['consistency_error_8bit']['mean']:.2f} ({secs}s)", flush=True)
        vs_bicubic(results["x4"])

    # ---- 8x tiled: 224x224 sheets of 8x8 digits -> 28x28 -> 224x224
    if not args.no_8x:
        n_sheet = 64
        first = args.first_sheet_digit
        sidx = np.array(order[first: first + n_sheet * args.sheets])  # length checked in parse_args
        digits = imgs01[sidx].reshape(args.sheets, 8, 8, 28, 28)
        gt8 = digits.transpose(0, 1, 3, 2, 4).reshape(args.sheets, 224, 224)
        lab8 = ds.labels[sidx]
        low8 = box_down(gt8, 8)

        def cells(a):  # [S, 224, 224] -> [S*64, 28, 28] in the digits' order
            return a.reshape(len(a), 8, 28, 8, 28).transpose(0, 1, 3, 2, 4).reshape(-1, 28, 28)

        overlap = 7 if args.tile_overlap is None else args.tile_overlap
        starts = tile_starts(224, 28, overlap)
        results["x8"] = {"n_sheets": args.sheets, "n_digits": len(sidx), "order_positions": [first, first + len(sidx)],
                         "test_indices": [int(i) for i in sidx], "tile": 28, "overlap": overlap,
                         "windows_per_step": len(starts) ** 2, "methods": {}}
        for name, kw in methods:
            out, secs, evals = run(name, kw, gt8, low8, 8, tile_overlap=overlap, first_index=10_000)
            r = score(out, gt8, low8, 8, cells, lab8) | {"seconds": secs, "window_evals_per_image": evals,
                                                        "seam_score": round(seam_score(out, starts, 28), 4)}
            results["x8"]["methods"][name] = r
            saved[f"x8/{name}"] = np.rint(cells(out) * 255.0).astype(np.uint8)
            outputs[("x8", name)] = out[:1]
            print(f"8x {name:32s} acc " + " ".join(f"{j} {a['accuracy']:.3f} {a['accuracy_ci95']}" for j, a in r["judges"].items())
                  + f" psnr {r['psnr_db']['mean'] or float('inf'):.2f} "
                  f"ssim {r['ssim']['mean']:.3f} cons {r['consistency_error_8bit']['mean']:.2f} "
                  f"seam {r['seam_score']:.3f} ({secs}s)", flush=True)
        vs_bicubic(results["x8"])
        for name, r in results["x8"]["methods"].items():
            if "vs_bicubic" in r:
                d = r["vs_bicubic"]
                for j, d in r["vs_bicubic_by_judge"].items():
                    print(f"8x {name:32s} {j:8s} vs bicubic {100 * d['difference']:+.1f} points [{100 * d['ci95'][0]:+.1f}, "
                          f"{100 * d['ci95'][1]:+.1f}] ({d['a_only']} only by it, {d['b_only']} only by bicubic; "
                          f"McNemar p {d['mcnemar_p']:.3g})")
        outputs[("x8", "input")], outputs[("x8", "truth")] = low8[:1], gt8[:1]
    if not args.no_4x:
        outputs[("x4", "input")], outputs[("x4", "truth")] = low4[:8], gt4[:8]

    results["wall_seconds"] = round(time.monotonic() - t_start, 1)
    from _common import machine, save_json

    results["machine"] = machine()
    save_json(args.name, results, args.out)
    if args.save_cells is not None:
        if "x4" in results:
            saved["x4/labels"] = lab4
        if "x8" in results:
            saved["x8/labels"] = lab8
        args.save_cells.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.save_cells, **saved)
        print(f"wrote {args.save_cells}")
    plot(outputs, results, args, c_levels, levels)
    return 0


def plot(outputs, results, args, c_levels, levels):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # columns: input, bicubic, two enhanced settings, truth
    key = "x4" if "x4" in results else "x8"  # the setting that picks the consistency level shown
    best_c = max(c_levels, key=lambda lv: results[key]["methods"][f"enhance+consistency L={lv:g}"]["accuracy"]) if c_levels else None
    cols = [("input", "input (7x7)"), ("bicubic", "bicubic")]
    lo = min(levels) if levels else None
    if lo is not None:
        cols.append((f"enhance L={lo:g}", f"enhance L={lo:g}"))
    if best_c is not None:
        cols.append((f"enhance+consistency L={best_c:g}", f"+consistency L={best_c:g}"))
    cols.append(("truth", "ground truth"))
    n = outputs[("x4", "bicubic")].shape[0] if ("x4", "bicubic") in outputs else 0
    has8 = ("x8", "bicubic") in outputs
    fig = plt.figure(figsize=(2.0 * len(cols), 1.1 * n / 2 + (2.6 if has8 else 0)))
    rows4 = (n + 1) // 2
    gs = fig.add_gridspec(rows4 + (3 if has8 else 0), len(cols) * 2)
    for j, (key, title) in enumerate(cols):
        for i in range(n):
            ax = fig.add_subplot(gs[i // 2, 2 * j + (i % 2)])
            ax.imshow(outputs[("x4", key)][i], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=7, loc="left")
        if has8:
            ax = fig.add_subplot(gs[rows4:, 2 * j:2 * j + 2])
            ax.imshow(outputs[("x8", key)][0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(("8x: " if j == 0 else "") + title.replace("7x7", "28x28"), fontsize=7, loc="left")
    fig.suptitle("4x (7->28, top) and tiled 8x (28->224, bottom) enhancement of test digits" if n else
                 "tiled 8x (28->224) enhancement of test digits (first sheet)", fontsize=8)
    png = plot_path(args, f"{args.name}.png")
    fig.savefig(png, dpi=110, bbox_inches="tight")
    print(f"wrote {png}")


if __name__ == "__main__":
    raise SystemExit(main())
