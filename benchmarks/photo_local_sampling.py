"""Local sampling on held-out photos: how close samples stay to the input, and how much they vary, by level.

    .venv/bin/python benchmarks/photo_local_sampling.py [--model ddpm-photos] [--crops 2] [--size 64]
        [--levels 0.1,0.2,0.3,0.5,0.7] [--samples 3] [--steps 20] [--sheet-size 128]
        [--sheet-levels 0,0.1,0.2,0.3,0.5,0.7,0.9] [--sheet-only] [--out DIR] [--plots DIR]

Inputs: ``--crops`` random ``--size`` squares of each held-out photo (chelsea, coffee in colour,
camera gray; ``boomerang.training.photos.HELD_OUT``: never trained on). For each crop and level,
``--samples`` Boomerang local samples (``core.boomerang_sample``, the exact schedule with the model's
own DDPM scheduler and a ``--steps`` budget, one seeded generator per sample; a gray crop is given
as three equal channels and its samples are shown and measured as luminance, as the CLI returns
gray for gray). Measures, in [0, 1]:

* SSIM to the input (mean over the crop's samples), and PSNR to the input;
* diversity: the mean over sample pairs of 1 - SSIM between two samples of the same crop, and the
  mean per-pixel standard deviation across the samples.

Each figure is the mean over crops with a 95% bootstrap interval over crops (2,000 resamples;
crops are the unit: samples of one crop are not independent). Also draws the paper's Figure 1 on a
photo: a ``--sheet-size`` centre crop of chelsea, the input, then one row per ``--sheet-levels``
level with ``--samples`` samples (``photo_local_sampling.png``), and writes ``photo_local_sampling.json``.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from _common import add_out_argument, machine, make_parser, plot_path, save_json, small_png


def _crops(n: int, size: int, seed: int):
    from boomerang.training.photos import held_out_photos

    rng = np.random.default_rng(seed)
    out = []
    for p in held_out_photos():
        h, w = p.pixels.shape[:2]
        for _ in range(n):
            y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
            out.append((p.name, p.gray, p.pixels[y:y + size, x:x + size].astype(np.float32) / 255.0))
    return out


def _samples(model, img: np.ndarray, gray: bool, level: float, k: int, steps: int, seed: int) -> np.ndarray:
    """[k, H, W, 3] samples in [0, 1], quantised to 8 bits as written (gray: luminance, three channels)."""
    import torch

    from boomerang import core

    x0 = torch.from_numpy(np.repeat(img.transpose(2, 0, 1)[None], k, axis=0).copy()) * 2 - 1
    plan = core.plan(model, level=level, steps=steps)
    gens = [torch.Generator().manual_seed(seed * 1000 + j) for j in range(k)]
    out = core.boomerang_sample(model, x0, plan, gens).samples.numpy().transpose(0, 2, 3, 1)
    out = np.rint((out + 1) * 127.5) / 255.0
    if gray:
        out = np.repeat(out @ np.array([0.299, 0.587, 0.114], np.float32)[:, None], 3, axis=-1)
        out = np.rint(out * 255) / 255.0
    return out.astype(np.float32)


def _ssim(a, b) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, channel_axis=-1, data_range=1.0))


def _psnr(a, b) -> float:
    mse = float(np.mean((a - b) ** 2))
    return 10 * np.log10(1 / max(mse, 1e-12))


def _interval(values, seed=0, n=2000) -> list[float]:
    v = np.asarray(values, np.float64)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), (n, len(v)))].mean(axis=1)
    return [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)]


def main() -> int:
    p = make_parser(__doc__)
    p.add_argument("--model", default="ddpm-photos", help="the photo model")
    p.add_argument("--crops", type=int, default=2, help="crops per held-out photo")
    p.add_argument("--size", type=int, default=64, help="crop side (pixels, multiple of 8)")
    p.add_argument("--levels", default="0.1,0.2,0.3,0.5,0.7", help="comma-separated levels")
    p.add_argument("--samples", type=int, default=3, help="samples per crop and level (>= 2)")
    p.add_argument("--steps", type=int, default=20, help="step budget of a full chain (DDPM)")
    p.add_argument("--sheet-size", type=int, default=128, help="side of the contact sheet's crop (0: no sheet)")
    p.add_argument("--sheet-levels", default="0,0.1,0.2,0.3,0.5,0.7,0.9", help="levels of the contact sheet")
    p.add_argument("--seed", type=int, default=0, help="seed of the crops and the samples")
    p.add_argument("--sheet-only", action="store_true", help="draw the contact sheet only (no table, no JSON)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    add_out_argument(p, plots=True)
    args = p.parse_args()

    import torch

    from boomerang.models import load_model

    torch.set_num_threads(args.threads)
    t0 = time.time()
    model = load_model(args.model)
    if args.sheet_only:
        _sheet(model, args, plot_path(args, "photo_local_sampling.png"))
        return 0
    crops = _crops(args.crops, args.size, args.seed)
    levels = [float(v) for v in args.levels.split(",")]
    rows = []
    print(f"model {args.model}; {len(crops)} crops of {args.size}x{args.size} from "
          f"{', '.join(sorted({n for n, _, _ in crops}))}; {args.samples} samples each; steps {args.steps}")
    print("| level | SSIM to input [95% CI] | PSNR to input | diversity 1-SSIM between samples [95% CI] | "
          "per-pixel std across samples |")
    print("|---|---|---|---|---|")
    for level in levels:
        ssim_in, psnr_in, div, std = [], [], [], []
        for i, (name, gray, img) in enumerate(crops):
            ref = np.repeat(img @ np.array([0.299, 0.587, 0.114], np.float32)[:, None], 3, -1) if gray else img
            s = _samples(model, img, gray, level, args.samples, args.steps, args.seed + i)
            ssim_in.append(np.mean([_ssim(x, ref) for x in s]))
            psnr_in.append(np.mean([_psnr(x, ref) for x in s]))
            div.append(np.mean([1 - _ssim(s[a], s[b]) for a in range(len(s)) for b in range(a + 1, len(s))]))
            std.append(float(s.std(axis=0).mean()))
        row = {"level": level, "ssim_to_input": round(float(np.mean(ssim_in)), 4), "ssim_ci": _interval(ssim_in),
               "psnr_to_input": round(float(np.mean(psnr_in)), 2), "diversity_1_minus_ssim": round(float(np.mean(div)), 4),
               "diversity_ci": _interval(div), "pixel_std": round(float(np.mean(std)), 4), "crops": len(crops)}
        rows.append(row)
        print(f"| {level} | {row['ssim_to_input']:.3f} [{row['ssim_ci'][0]:.3f}, {row['ssim_ci'][1]:.3f}] | "
              f"{row['psnr_to_input']:.2f} | {row['diversity_1_minus_ssim']:.3f} [{row['diversity_ci'][0]:.3f}, "
              f"{row['diversity_ci'][1]:.3f}] | {row['pixel_std']:.4f} |", flush=True)
    sheet = None
    if args.sheet_size:
        sheet = _sheet(model, args, plot_path(args, "photo_local_sampling.png"))
    save_json("photo_local_sampling", {
        "model": args.model, "crops_per_photo": args.crops, "size": args.size, "levels": levels,
        "samples": args.samples, "steps": args.steps, "seed": args.seed, "rows": rows, "sheet": sheet,
        "seconds": round(time.time() - t0, 1), "machine": machine(),
        "command": "python benchmarks/photo_local_sampling.py " + " ".join(sys.argv[1:]),
    }, args.out)
    return 0


def _sheet(model, args, path) -> dict:
    """The paper's Figure 1 on a held-out photo: the input, then one row of samples per level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from boomerang.training.photos import load_photo

    ph = load_photo("chelsea")
    h, w = ph.pixels.shape[:2]
    n = args.sheet_size
    y, x = (h - n) // 2, (w - n) // 2
    img = ph.pixels[y:y + n, x:x + n].astype(np.float32) / 255.0
    levels = [float(v) for v in args.sheet_levels.split(",")]
    fig, axes = plt.subplots(len(levels), args.samples, figsize=(1.25 * args.samples, 1.3 * len(levels)))
    for r, level in enumerate(levels):
        s = _samples(model, img, False, level, args.samples, args.steps, args.seed + 99)
        for c in range(args.samples):
            ax = axes[r, c]
            ax.imshow(s[c])
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel("input" if level == 0 else f"level {level:g}", fontsize=7)
    fig.suptitle(f"ddpm-photos local samples of a held-out photo (chelsea, {n}x{n})", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
    small_png(path)
    print(f"wrote {path}")
    return {"photo": "chelsea", "size": n, "levels": levels, "samples": args.samples}


if __name__ == "__main__":
    sys.exit(main())
