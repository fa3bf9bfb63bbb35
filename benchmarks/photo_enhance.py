"""Enhancement of held-out photo crops with the photo model: bicubic, Lanczos and boomerang enhance against the ground truth.

    .venv/bin/python benchmarks/photo_enhance.py [--model ddpm-photos] [--crops 4] [--size 128]
        [--scales 2,4,8] [--downsamplers box,bicubic] [--levels 0.1,0.3] [--knob 0.5] [--knob-level 0.3]
        [--colour-fix-level 0.3] [--steps 20] [--out DIR] [--plots DIR]

Ground truth: ``--crops`` random ``--size`` squares of each held-out photo
(``boomerang.training.photos.HELD_OUT``: chelsea, coffee in colour, camera gray), never trained on.
Each is downsampled by ``scale`` with a box filter (the mean of each scale x scale block) and
with Pillow's antialiased bicubic, then brought back to full size by

* ``bicubic`` and ``lanczos`` (Pillow), the classical baselines;
* ``enhance`` at each level (``boomerang.enhance.image.enhance_images``: bicubic upsampling,
  then boomerang at that level with the photo model; ``--steps`` budget, DDPM scheduler,
  one seeded generator per crop), without and with ``consistency`` (the output's downsampling
  is pulled back to the input at every step);
* ``enhance`` at ``--knob-level`` with the fidelity knob ``consistency_until`` = each ``--knob``
  value (ILVR during that fraction of the reverse steps only, ``enhance --consistency-until``);
* ``enhance`` at ``--colour-fix-level`` with the colour fix (``enhance --colour-fix``: the
  output's low frequencies of colour matched to the upsampled input), without consistency.

Measures against the ground truth (values in [0, 1]): PSNR (dB) and SSIM; the consistency error
(RMSE between the output downsampled with the degradation's own filter and the input: 0 means
the output explains the input exactly); and sharpness: the mean gradient magnitude (Sobel) of the
output over the ground truth's (1 = as much edge energy as the original; below 1 blurrier, above
1 more edges or noise than the original), and the same ratio for the high-frequency energy
(the image minus its Gaussian blur with sigma 1). No perceptual network (LPIPS, FID) can be
downloaded here: PSNR and SSIM reward blur, the sharpness ratios reward detail whether or not it
is the right detail; neither says whether the invented detail looks real. Writes
``photo_enhance.json`` and, ``photo_enhance.png`` (one crop side by side).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from _common import add_out_argument, machine, make_parser, plot_path, save_json, small_png


def crops(n: int, size: int, seed: int) -> tuple[np.ndarray, list[str], list[bool]]:
    from boomerang.training.photos import held_out_photos

    rng = np.random.default_rng(seed)
    out, names, gray = [], [], []
    for p in held_out_photos():
        h, w = p.pixels.shape[:2]
        for _ in range(n):
            y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
            out.append(p.pixels[y:y + size, x:x + size].astype(np.float32) / 255.0)
            names.append(p.name)
            gray.append(p.gray)
    return np.stack(out), names, gray


def down(x: np.ndarray, s: int, kind: str) -> np.ndarray:
    if kind == "box":
        h, w, c = x.shape
        return x.reshape(h // s, s, w // s, s, c).mean(axis=(1, 3))
    return resize(x, x.shape[0] // s, x.shape[1] // s, "bicubic")


def resize(x: np.ndarray, h: int, w: int, kind: str) -> np.ndarray:
    from PIL import Image

    f = {"bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}[kind]
    chans = [np.asarray(Image.fromarray(x[..., c].astype(np.float32), "F").resize((w, h), f)) for c in range(x.shape[-1])]
    return np.clip(np.stack(chans, axis=-1), 0, 1)


def to_gray(x: np.ndarray) -> np.ndarray:
    """Rec. 601 luminance, replicated to three channels."""
    from boomerang.imageio import to_model_channels

    return np.repeat(to_model_channels(x, 1), 3, axis=-1)


def sharpness(x: np.ndarray) -> tuple[float, float]:
    """(mean Sobel gradient magnitude, mean high-frequency energy) of the luminance."""
    from scipy.ndimage import gaussian_filter
    from skimage.filters import sobel

    y = x.mean(axis=-1)
    return float(sobel(y).mean()), float(((y - gaussian_filter(y, 1.0)) ** 2).mean())


def measure(out: np.ndarray, gt: np.ndarray, low: np.ndarray, s: int, kind: str) -> dict:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    out = np.clip(out, 0, 1)
    g_out, hf_out = sharpness(out)
    g_gt, hf_gt = sharpness(gt)
    return {
        "psnr": float(peak_signal_noise_ratio(gt, out, data_range=1.0)),
        "ssim": float(structural_similarity(gt, out, channel_axis=-1, data_range=1.0)),
        "consistency_rmse": float(np.sqrt(np.mean((down(out, s, kind) - low) ** 2))),
        "gradient_ratio": g_out / max(g_gt, 1e-12),
        "hf_energy_ratio": hf_out / max(hf_gt, 1e-12),
    }


def interval(values, n: int = 2000, seed: int = 0) -> list[float]:
    """95% percentile bootstrap interval of the mean over crops (crops resampled with replacement)."""
    v = np.asarray(values, np.float64)
    means = v[np.random.default_rng(seed).integers(0, len(v), (n, len(v)))].mean(axis=1)
    return [round(float(np.percentile(means, 2.5)), 3), round(float(np.percentile(means, 97.5)), 3)]


def main() -> int:
    p = make_parser(__doc__)
    p.add_argument("--model", default="ddpm-photos", help="the photo model: short name or pipeline folder")
    p.add_argument("--crops", type=int, default=4, help="crops per held-out photo")
    p.add_argument("--size", type=int, default=128, help="crop side in pixels (divisible by every scale)")
    p.add_argument("--scales", default="2,4,8", help="comma-separated enhancement factors")
    p.add_argument("--downsamplers", default="box,bicubic", help="how the inputs are made: box and/or bicubic")
    p.add_argument("--levels", default="0.1,0.3", help="comma-separated enhance levels (each without and with "
                   "consistency)")
    p.add_argument("--knob", default="0.5", help="comma-separated consistency_until values F (empty: none)")
    p.add_argument("--knob-level", type=float, default=0.3, help="the level of the knob's runs")
    p.add_argument("--colour-fix-level", default="0.3", help="level of a run with the colour fix (empty: none)")
    p.add_argument("--steps", type=int, default=20, help="step budget of enhance (DDPM scheduler)")
    p.add_argument("--seed", type=int, default=0, help="seed of the crops and of every enhance generator")
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
    scales = [int(v) for v in args.scales.split(",")]
    levels = [float(v) for v in args.levels.split(",")]
    kinds = args.downsamplers.split(",")
    knobs = [float(v) for v in args.knob.split(",") if v.strip()]
    variants = []  # (name, level, enhance_images keywords)
    for level in levels:
        variants += [(f"enhance {level}", level, {}), (f"enhance {level} +consistency", level, {"consistency": True})]
    for f in knobs:
        variants.append((f"enhance {args.knob_level} +consistency until {f:g}", args.knob_level,
                         {"consistency": True, "consistency_until": f}))
    for v in [float(v) for v in args.colour_fix_level.split(",") if v.strip()]:
        variants.append((f"enhance {v} +colour fix", v, {"colour_fix": True}))
    rows, pictures = [], {}
    print(f"model: {args.model}; {len(gt)} crops of {args.size}x{args.size} from {', '.join(sorted(set(names)))}")
    print("| scale | input | method | PSNR | PSNR - Lanczos [95% CI] | SSIM | consistency RMSE | gradient ratio | "
          "HF energy ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s in scales:
        for kind in kinds:
            low = np.stack([down(x, s, kind) for x in gt])
            methods = {m: np.stack([resize(x, args.size, args.size, m) for x in low]) for m in ("bicubic", "lanczos")}
            for name, level, kw in variants:
                gens = [torch.Generator().manual_seed(args.seed * 1000 + i) for i in range(len(low))]
                res = enhance_images(model, list(low), scale=s, level=level, generators=gens, steps=args.steps, **kw)
                # a gray crop comes back gray, as from the CLI: the output's luminance
                methods[name] = np.stack([to_gray(r.pixels) if g else r.pixels for r, g in zip(res, gray)])
            lanczos = [measure(o, g, lo, s, kind)["psnr"] for o, g, lo in zip(methods["lanczos"], gt, low)]
            for m, outs in methods.items():
                per = [measure(o, g, lo, s, kind) for o, g, lo in zip(outs, gt, low)]
                diff = [q["psnr"] - b for q, b in zip(per, lanczos)]
                row = {"scale": s, "input": kind, "method": m,
                       **{k: round(float(np.mean([q[k] for q in per])), 4) for k in per[0]},
                       "psnr_minus_lanczos": round(float(np.mean(diff)), 3), "psnr_minus_lanczos_ci95": interval(diff),
                       "gradient_ratio_ci95": interval([q["gradient_ratio"] for q in per])}
                rows.append(row)
                ci = row["psnr_minus_lanczos_ci95"]
                print(f"| {s}x | {kind} | {m} | {row['psnr']:.2f} | {row['psnr_minus_lanczos']:+.2f} [{ci[0]:+.2f}, "
                      f"{ci[1]:+.2f}] | {row['ssim']:.3f} | {row['consistency_rmse']:.4f} | "
                      f"{row['gradient_ratio']:.2f} | {row['hf_energy_ratio']:.2f} |", flush=True)
            pictures[(s, kind)] = (low[0], {m: o[0] for m, o in methods.items()})
    _figure(gt[0], pictures, plot_path(args, "photo_enhance.png"))
    save_json("photo_enhance", {
        "model": args.model, "crops_per_photo": args.crops, "size": args.size, "scales": scales, "levels": levels,
        "downsamplers": kinds, "knob": knobs, "knob_level": args.knob_level,
        "colour_fix_level": args.colour_fix_level, "steps": args.steps, "seed": args.seed, "held_out": sorted(set(names)), "rows": rows,
        "seconds": round(time.time() - t0, 1), "machine": machine(),
        "command": "python benchmarks/photo_enhance.py " + " ".join(sys.argv[1:]),
    }, args.out)
    return 0


def _figure(truth, pictures, path) -> None:
    """One row per scale (bicubic-downsampled inputs; else every (scale, input)): the input (nearest),
    each method, the ground truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in pictures if k[1] == "bicubic"] or list(pictures)  # box rows look the same: one row per scale
    shown = ["bicubic", "lanczos"] + [m for m in pictures[keys[0]][1] if m.startswith("enhance")]
    fig, axes = plt.subplots(len(keys), len(shown) + 2, figsize=(1.6 * (len(shown) + 2), 1.8 * len(keys)))
    axes = np.atleast_2d(axes)
    for r, key in enumerate(keys):
        low, outs = pictures[key]
        panels = [("input", np.kron(low, np.ones((truth.shape[0] // low.shape[0], truth.shape[1] // low.shape[1], 1))))]
        panels += [(m, outs[m]) for m in shown] + [("ground truth", truth)]
        for c, (title, img) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(np.clip(img, 0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title.replace(" +", "\n+") if r == 0 else "", fontsize=5)
        axes[r, 0].set_ylabel(f"{key[0]}x {key[1]}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=64)
    small_png(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
