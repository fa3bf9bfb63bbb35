"""Windowed vs whole-image sampling of held-out photos: how far the windows move a sample.

    .venv/bin/python benchmarks/photo_windows.py [--model ddpm-photos] [--size 192] [--tile 128]
        [--overlaps 32,64] [--levels 0.2,0.4] [--seeds 2] [--steps 50] [--out DIR]

``sample`` denoises a fully convolutional pixel model's input in blended windows above
``boomerang.windowing.WINDOW_ABOVE_PIXELS`` (1 MP; windows of 512 with overlap 128). Such a
photo is too slow to sample whole many times on this CPU, so this measures the same thing scaled
down: a ``--size`` square crop of each held-out photo (chelsea, coffee, camera), sampled whole and
in windows of ``--tile`` with each overlap (``core.boomerang_sample(..., windows=(tile, overlap))``,
the path ``sample`` takes), with the same seed, so the only difference is the windows. Reported,
per level and overlap, over crops and seeds: PSNR (dB) and the largest 8-bit difference between
the windowed and the whole-image sample, next to the PSNR between two whole-image samples of
different seeds (the sample-to-sample spread the windows should stay far below). The windows
differ from the whole image because the UNet's GroupNorm normalises over what it sees and its
receptive field is cut at window edges; where a model's output does not depend on context the two
are bit-identical (tests/core/test_windowed_sample.py). Writes ``photo_windows.json``.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from _common import add_out_argument, machine, make_parser, save_json


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def main() -> int:
    p = make_parser(__doc__)
    p.add_argument("--model", default="ddpm-photos", help="a fully convolutional pixel model")
    p.add_argument("--size", type=int, default=192, help="crop side (pixels, multiple of 8)")
    p.add_argument("--tile", type=int, default=128, help="window side (pixels)")
    p.add_argument("--overlaps", default="32,64", help="comma-separated window overlaps")
    p.add_argument("--levels", default="0.2,0.4", help="comma-separated levels")
    p.add_argument("--seeds", type=int, default=2, help="seeds per crop (>= 2: the spread needs two)")
    p.add_argument("--steps", type=int, default=50, help="step budget of a full chain (default: %(default)s, sample's default)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    add_out_argument(p)
    args = p.parse_args()

    import torch

    from boomerang import core
    from boomerang.models import load_model
    from boomerang.training.photos import held_out_photos

    torch.set_num_threads(args.threads)
    t0 = time.time()
    model = load_model(args.model)
    crops = []
    for ph in held_out_photos():
        h, w = ph.pixels.shape[:2]
        y, x = (h - args.size) // 2, (w - args.size) // 2
        img = ph.pixels[y:y + args.size, x:x + args.size].astype(np.float32) / 255.0
        if img.shape[-1] != model.image_channels:
            img = np.repeat(img[..., :1], model.image_channels, axis=-1)
        crops.append((ph.name, img))
    overlaps = [int(v) for v in args.overlaps.split(",")]
    levels = [float(v) for v in args.levels.split(",")]
    rows = []
    print(f"model {args.model}; crops {args.size}x{args.size} of {', '.join(n for n, _ in crops)}; tile {args.tile}")
    print("| level | overlap | windowed vs whole PSNR (min .. mean) | max 8-bit diff | two seeds PSNR (mean) |")
    print("|---|---|---|---|---|")
    for level in levels:
        plan = core.plan(model, level=level, steps=args.steps)
        whole, spread = {}, []
        for name, img in crops:
            x0 = torch.from_numpy(img.transpose(2, 0, 1)[None].copy()) * 2 - 1
            for s in range(args.seeds):
                out = core.boomerang_sample(model, x0, plan, [torch.Generator().manual_seed(s)]).samples
                whole[(name, s)] = np.rint((out[0].numpy().transpose(1, 2, 0) + 1) * 127.5)
            spread += [_psnr(whole[(name, s)], whole[(name, s + 1)]) for s in range(args.seeds - 1)]
        for ov in overlaps:
            ps, worst = [], 0.0
            for name, img in crops:
                x0 = torch.from_numpy(img.transpose(2, 0, 1)[None].copy()) * 2 - 1
                for s in range(args.seeds):
                    out = core.boomerang_sample(model, x0, plan, [torch.Generator().manual_seed(s)],
                                                windows=(args.tile, ov)).samples
                    tiled = np.rint((out[0].numpy().transpose(1, 2, 0) + 1) * 127.5)
                    ps.append(_psnr(tiled, whole[(name, s)]))
                    worst = max(worst, float(np.abs(tiled - whole[(name, s)]).max()))
            row = {"level": level, "tile": args.tile, "overlap": ov, "denoiser_evals": plan.num_denoiser_evals,
                   "psnr_windowed_vs_whole_min": round(min(ps), 2), "psnr_windowed_vs_whole_mean": round(float(np.mean(ps)), 2),
                   "max_abs_diff_8bit": worst, "psnr_between_seeds_mean": round(float(np.mean(spread)), 2)}
            rows.append(row)
            print(f"| {level} | {ov} | {row['psnr_windowed_vs_whole_min']:.2f} .. {row['psnr_windowed_vs_whole_mean']:.2f} "
                  f"| {worst:.0f} | {row['psnr_between_seeds_mean']:.2f} |", flush=True)
    save_json("photo_windows", {
        "model": args.model, "size": args.size, "tile": args.tile, "overlaps": overlaps, "levels": levels,
        "seeds": args.seeds, "steps": args.steps, "crops": [n for n, _ in crops], "rows": rows,
        "seconds": round(time.time() - t0, 1), "machine": machine(),
        "command": "python benchmarks/photo_windows.py " + " ".join(sys.argv[1:]),
    }, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
