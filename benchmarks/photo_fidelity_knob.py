"""The perception-distortion curve of enhance's fidelity knob on held-out photo crops.

    .venv/bin/python benchmarks/photo_fidelity_knob.py [--model ddpm-photos] [--crops 2] [--size 96]
        [--scale 4] [--downsampler bicubic] [--levels 0.3] [--knob 0,0.25,0.5,0.75,1] [--steps 20]
        [--out DIR] [--plots DIR]

The knob: ``enhance --consistency-until F`` (``enhance_images(..., consistency=True,
consistency_until=F)``) applies ILVR after the first ceil(F n) of the n reverse steps only
(ILVR's conditioning range, Choi et al. 2021): F = 1 is ``--consistency``, F = 0 no consistency.
For each level and F the same held-out crops (``photo_enhance.crops``: chelsea, coffee, camera;
never trained on), downsampled by ``--scale`` with ``--downsampler``, are enhanced with the same
seeds. Distortion: PSNR and SSIM to the ground truth, and the consistency error (RMSE of the
output downsampled against the input). Perception proxies (no perceptual network can be
downloaded here): the gradient-energy ratio to the ground truth (mean Sobel magnitude of the
output over the original's; 1 = as much edge energy) and the high-frequency energy ratio (the
image minus its Gaussian blur, sigma 1). Bicubic and Lanczos are the reference points. Means over
crops with 95% bootstrap intervals. Writes ``photo_fidelity_knob.json`` and
``photo_fidelity_knob.png`` (PSNR against the gradient ratio, one curve per level, F marked).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from _common import add_out_argument, machine, make_parser, plot_path, save_json, small_png
from photo_enhance import crops, down, interval, measure, resize, to_gray


def main() -> int:
    p = make_parser(__doc__)
    p.add_argument("--model", default="ddpm-photos", help="the photo model")
    p.add_argument("--crops", type=int, default=2, help="crops per held-out photo")
    p.add_argument("--size", type=int, default=96, help="crop side (divisible by the scale)")
    p.add_argument("--scale", type=int, default=4, help="enhancement factor")
    p.add_argument("--downsampler", default="bicubic", help="box or bicubic: how the inputs are made")
    p.add_argument("--levels", default="0.3", help="comma-separated enhance levels")
    p.add_argument("--knob", default="0,0.25,0.5,0.75,1", help="comma-separated consistency_until values F")
    p.add_argument("--steps", type=int, default=20, help="step budget (DDPM)")
    p.add_argument("--seed", type=int, default=0, help="seed of the crops and the generators")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    add_out_argument(p, plots=True)
    args = p.parse_args()

    import torch

    from boomerang.enhance.image import enhance_images
    from boomerang.models import load_model

    torch.set_num_threads(args.threads)
    t0 = time.time()
    model = load_model(args.model)
    gt, names, gray = crops(args.crops, args.size, args.seed)
    s, kind = args.scale, args.downsampler
    low = np.stack([down(x, s, kind) for x in gt])
    knobs = [float(v) for v in args.knob.split(",")]
    levels = [float(v) for v in args.levels.split(",")]

    def summarise(name, outs, **extra):
        per = [measure(o, g, lo, s, kind) for o, g, lo in zip(outs, gt, low)]
        row = {"method": name, **extra, **{k: round(float(np.mean([q[k] for q in per])), 4) for k in per[0]},
               "psnr_ci95": interval([q["psnr"] for q in per]),
               "gradient_ratio_ci95": interval([q["gradient_ratio"] for q in per])}
        print(f"| {name} | {row['psnr']:.2f} [{row['psnr_ci95'][0]:.2f}, {row['psnr_ci95'][1]:.2f}] | {row['ssim']:.3f} "
              f"| {row['consistency_rmse']:.4f} | {row['gradient_ratio']:.2f} | {row['hf_energy_ratio']:.2f} |", flush=True)
        return row

    print(f"model {args.model}; {len(gt)} crops of {args.size}x{args.size}; {s}x {kind}; steps {args.steps}")
    print("| method | PSNR [95% CI] | SSIM | consistency RMSE | gradient ratio | HF energy ratio |")
    print("|---|---|---|---|---|---|")
    rows = [summarise(m, np.stack([resize(x, args.size, args.size, m) for x in low])) for m in ("bicubic", "lanczos")]
    for level in levels:
        for f in knobs:
            gens = [torch.Generator().manual_seed(args.seed * 1000 + i) for i in range(len(low))]
            res = enhance_images(model, list(low), scale=s, level=level, generators=gens, steps=args.steps,
                                 consistency=True, consistency_until=f)
            outs = np.stack([to_gray(r.pixels) if g else r.pixels for r, g in zip(res, gray)])
            rows.append(summarise(f"enhance {level} until {f:g}", outs, level=level, consistency_until=f))
    _plot(rows, levels, plot_path(args, "photo_fidelity_knob.png"), f"{s}x {kind}-downsampled held-out crops")
    save_json("photo_fidelity_knob", {
        "model": args.model, "crops_per_photo": args.crops, "size": args.size, "scale": s, "downsampler": kind,
        "levels": levels, "knob": knobs, "steps": args.steps, "seed": args.seed, "held_out": sorted(set(names)),
        "rows": rows, "seconds": round(time.time() - t0, 1), "machine": machine(),
        "command": "python benchmarks/photo_fidelity_knob.py " + " ".join(sys.argv[1:]),
    }, args.out)
    return 0


def _plot(rows, levels, path, title) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(7.5, 3.0))
    for ax, key, label in ((axes[0], "psnr", "PSNR to ground truth (dB)"), (axes[1], "ssim", "SSIM to ground truth")):
        for level in levels:
            pts = [r for r in rows if r.get("level") == level]
            ax.plot([r["gradient_ratio"] for r in pts], [r[key] for r in pts], "o-", label=f"enhance level {level}")
            for r in pts:
                ax.annotate(f"F={r['consistency_until']:g}", (r["gradient_ratio"], r[key]), fontsize=6,
                            xytext=(3, 3), textcoords="offset points")
        for r in rows:
            if "level" not in r:
                ax.plot(r["gradient_ratio"], r[key], "s", label=r["method"])
        ax.axvline(1.0, color="0.7", lw=0.8, ls="--")
        ax.set_xlabel("gradient-energy ratio to ground truth (1 = as sharp)")
        ax.set_ylabel(label)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=6)
    fig.suptitle(f"fidelity knob --consistency-until F: {title}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    small_png(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
