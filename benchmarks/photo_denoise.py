"""The photo model's quality bar: its x0 estimate against scikit-image's best classical denoisers on held-out photo patches.

    .venv/bin/python benchmarks/photo_denoise.py [--model ddpm-photos | runs/ddpm-photos]
        [--checkpoint] [--patches 48] [--size 64] [--out DIR]

For every level alpha_bar in 0.9, 0.8, ..., 0.3 the same noisy patches
x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps (x0 in [-1, 1]) are denoised by

* the model: its x0 estimate in one call, x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps_theta(x_t, t)) /
  sqrt(alpha_bar_t) (Ho et al. 2020, eq. 15), at the training timestep t whose alpha_bar_t is nearest,
  clipped to [-1, 1];
* scikit-image's classical denoisers applied to x_t / sqrt(alpha_bar) (= x0 plus Gaussian noise of
  known sigma), each with its strength tuned per level on patches of the *training* photos (the
  best setting by mean PSNR over a grid): wavelet denoising (``denoise_wavelet``, BayesShrink, soft
  thresholds, in YCbCr; sigma times 0.5..3; it needs PyWavelets, the ``bench`` extra: without it
  the row says so), total variation (``denoise_tv_chambolle``, weight grid), non-local means
  (``denoise_nl_means``, fast mode, 5x5 patches, h = sigma times 0.4..1.6, with the sigma given),
  and a Gaussian blur (``skimage.filters.gaussian``, sigma grid in pixels) as a floor;
* the noisy input itself (x_t / sqrt(alpha_bar), clipped).

Held-out patches: ``--patches`` random ``--size`` squares of each held-out photo
(``boomerang.training.photos.HELD_OUT``: two colour photos and one gray, replicated to three
channels), at the photos' own scale; the noise is seeded. PSNR in dB on [0, 1] (peak 1), the
mean over patches; SSIM likewise. The bar (issue 20): the model beats the best classical
denoiser in PSNR at every level. Writes ``photo_denoise.json``.
"""

from __future__ import annotations

import pathlib
import sys
import time

import numpy as np

from _common import ROOT, add_out_argument, machine, make_parser, save_json

LEVELS = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
#: each classical denoiser's tuning grid (see :func:`classical` for what the number means)
GRIDS = {
    "wavelet": (0.5, 0.75, 1.0, 1.5, 2.0, 3.0),
    "tv": (0.05, 0.1, 0.2, 0.35, 0.5, 0.8, 1.2, 2.0, 3.0, 5.0, 8.0),
    "nl_means": (0.4, 0.6, 0.8, 1.0, 1.2, 1.6, 2.4),
    "gaussian": (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0),
}


def have_pywavelets() -> bool:
    try:
        import pywt  # noqa: F401
    except ImportError:
        return False
    return True


def held_out_patches(n: int, size: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """[N, size, size, 3] float in [0, 1] from the held-out photos, ``n`` per photo."""
    from boomerang.training.photos import held_out_photos

    rng = np.random.default_rng(seed)
    out, names = [], []
    for p in held_out_photos():
        h, w = p.pixels.shape[:2]
        for _ in range(n):
            y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
            out.append(p.pixels[y:y + size, x:x + size].astype(np.float32) / 255.0)
            names.append(p.name)
    return np.stack(out), names


def training_patches(n: int, size: int, seed: int) -> np.ndarray:
    """[n, size, size, 3] float in [0, 1]: plain crops (no jitter) of the training photos."""
    from boomerang.training.photos import training_photos

    rng = np.random.default_rng(seed)
    photos = [p for p in training_photos() if min(p.pixels.shape[:2]) >= size]
    out = []
    for k in range(n):
        p = photos[k % len(photos)].pixels
        y, x = rng.integers(0, p.shape[0] - size + 1), rng.integers(0, p.shape[1] - size + 1)
        out.append(p[y:y + size, x:x + size].astype(np.float32) / 255.0)
    return np.stack(out)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.clip(a, 0, 1) - b) ** 2))
    return 10 * np.log10(1.0 / max(mse, 1e-12))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(np.clip(a, 0, 1), b, channel_axis=-1, data_range=1.0))


def noisy(x0: np.ndarray, ab: float, seed: int) -> np.ndarray:
    """x_t for x0 in [0, 1] (mapped to [-1, 1]), seeded Gaussian noise."""
    eps = np.random.default_rng(seed).standard_normal(x0.shape).astype(np.float32)
    return np.sqrt(ab) * (2 * x0 - 1) + np.sqrt(1 - ab) * eps


def classical(kind: str, y01: np.ndarray, sigma01: float, param: float) -> np.ndarray:
    """One classical denoiser on one noisy image ``y01`` ([0, 1] plus noise of std ``sigma01``)."""
    from skimage.filters import gaussian
    from skimage.restoration import denoise_nl_means, denoise_tv_chambolle, denoise_wavelet

    if kind == "wavelet":
        return denoise_wavelet(y01, sigma=param * sigma01, method="BayesShrink", mode="soft", channel_axis=-1,
                               convert2ycbcr=True, rescale_sigma=True)
    if kind == "tv":
        return denoise_tv_chambolle(y01, weight=param, channel_axis=-1)
    if kind == "nl_means":
        return denoise_nl_means(y01, h=param * sigma01, sigma=sigma01, fast_mode=True, patch_size=5,
                                patch_distance=6, channel_axis=-1)
    return gaussian(y01, sigma=param, channel_axis=-1)


def tune(kind: str, params, x0: np.ndarray, ab: float, seed: int) -> tuple[float, float]:
    """(best param, its mean PSNR) on the tuning patches."""
    xt = noisy(x0, ab, seed)
    y01 = (xt / np.sqrt(ab) + 1) / 2
    sigma01 = float(np.sqrt((1 - ab) / ab) / 2)
    scores = [(np.mean([psnr(classical(kind, y, sigma01, p), x) for y, x in zip(y01, x0)]), p) for p in params]
    best = max(scores)
    return best[1], float(best[0])


def load_denoiser(model: str, checkpoint: bool):
    """(unet, alphas_cumprod, description) of a pipeline folder, or of its checkpoint's EMA weights."""
    import torch
    from diffusers import DDPMScheduler, UNet2DModel

    if checkpoint:  # a run still training: its config and EMA weights (the pipeline is exported at the end)
        from safetensors.torch import load_file

        from boomerang.training.checkpoint import read_meta
        from boomerang.training.ddpm import TrainConfig, build_scheduler, build_unet

        path = pathlib.Path(model) / "checkpoint.safetensors"
        meta = read_meta(path)
        cfg = TrainConfig(**{k: v for k, v in meta["extra"]["config"].items() if k in TrainConfig.__dataclass_fields__})
        unet = build_unet(cfg, cfg.image_size or 32, 3)
        tensors = load_file(str(path))
        unet.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
        sched = build_scheduler(cfg)
        desc = f"{model} (checkpoint EMA weights, step {meta.get('step')})"
    else:
        from boomerang.models.discovery import resolve_model

        root = resolve_model(model, json_only=False)
        sched = DDPMScheduler.from_pretrained(root / "scheduler")
        unet = UNet2DModel.from_pretrained(root / "unet")
        desc = str(model)
    unet.eval()
    return unet, sched.alphas_cumprod.to(torch.float64), desc


def model_x0(unet, alphas, xt: np.ndarray, ab: float, batch: int = 48) -> tuple[np.ndarray, int, float]:
    import torch

    t = int(torch.argmin((alphas - ab).abs()))
    abt = float(alphas[t])
    out = []
    with torch.no_grad():
        for i in range(0, len(xt), batch):
            x = torch.from_numpy(xt[i:i + batch]).permute(0, 3, 1, 2).float()
            eps = unet(x, torch.full((x.shape[0],), t)).sample
            x0 = ((x - (1 - abt) ** 0.5 * eps) / abt ** 0.5).clamp(-1, 1)
            out.append(((x0 + 1) / 2).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out), t, abt


def main() -> int:
    p = make_parser(__doc__)
    p.add_argument("--model", default="ddpm-photos", help="the photo model: a short name or a pipeline folder")
    p.add_argument("--checkpoint", action="store_true",
                   help="use the EMA weights of MODEL/checkpoint.safetensors (a run still training)")
    p.add_argument("--patches", type=int, default=48, help="held-out patches per held-out photo")
    p.add_argument("--tune-patches", type=int, default=48, help="training patches for tuning the classical denoisers")
    p.add_argument("--size", type=int, default=64, help="patch side in pixels (a multiple of the model's factor)")
    p.add_argument("--seed", type=int, default=0, help="seed of the patches and the noise")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    add_out_argument(p)
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    t0 = time.time()
    unet, alphas, desc = load_denoiser(args.model, args.checkpoint)
    test, names = held_out_patches(args.patches, args.size, args.seed)
    tunes = training_patches(args.tune_patches, args.size, args.seed + 1)
    rows = []
    print(f"model: {desc}\nheld-out patches: {len(test)} ({args.size}x{args.size}; "
          f"{', '.join(sorted(set(names)))}); tuning patches: {len(tunes)} from the training photos")
    kinds = [k for k in GRIDS if k != "wavelet" or have_pywavelets()]
    if "wavelet" not in kinds:
        print("wavelet denoising skipped: PyWavelets is not installed (pip install -e '.[bench]')")
    head = " | ".join(f"{k} (tuned)" for k in kinds)
    print(f"| alpha_bar | t | noisy | {head} | model x0 | model - best classical |")
    print("|---" * (len(kinds) + 5) + "|")
    for k, ab in enumerate(LEVELS):
        t = int(torch.argmin((alphas - ab).abs()))
        abt = float(alphas[t])  # every method sees the same noisy patches at the model's exact alpha_bar_t
        xt = noisy(test, abt, 1000 + k)
        x_model, _, _ = model_x0(unet, alphas, xt, abt)
        y01 = (xt / np.sqrt(abt) + 1) / 2
        sigma01 = float(np.sqrt((1 - abt) / abt) / 2)
        res = {"alpha_bar": round(abt, 4), "t": t, "sigma_01": round(sigma01, 4)}
        outs = {"noisy": np.clip(y01, 0, 1), "model": x_model}
        for kind in kinds:
            param, _ = tune(kind, GRIDS[kind], tunes, abt, 2000 + k)
            res[f"{kind}_param"] = param
            outs[kind] = np.stack([classical(kind, y, sigma01, param) for y in y01])
        for name, arr in outs.items():
            res[f"{name}_psnr"] = round(float(np.mean([psnr(a, b) for a, b in zip(arr, test)])), 3)
            res[f"{name}_ssim"] = round(float(np.mean([ssim(a, b) for a, b in zip(arr, test)])), 4)
            res[f"{name}_psnr_by_photo"] = {n: round(float(np.mean([psnr(a, b) for a, b, m in zip(arr, test, names)
                                                                    if m == n])), 3) for n in sorted(set(names))}
        best_kind = max(kinds, key=lambda kind: res[f"{kind}_psnr"])
        res["best_classical"] = best_kind
        res["margin_db"] = round(res["model_psnr"] - res[f"{best_kind}_psnr"], 3)
        res["model_beats_classical"] = res["margin_db"] > 0
        rows.append(res)
        cells = " | ".join(f"{res[f'{kind}_psnr']:.2f} ({res[f'{kind}_param']})" for kind in kinds)
        print(f"| {abt:.3f} | {t} | {res['noisy_psnr']:.2f} | {cells} | {res['model_psnr']:.2f} | "
              f"{res['margin_db']:+.2f} vs {best_kind} |", flush=True)
    passed = all(r["model_beats_classical"] for r in rows)
    print(f"quality bar (model beats the best classical denoiser at every level): {'MET' if passed else 'NOT MET'}")
    save_json("photo_denoise", {
        "model": desc, "checkpoint": args.checkpoint, "patches_per_photo": args.patches, "size": args.size,
        "seed": args.seed, "tune_patches": args.tune_patches, "held_out": sorted(set(names)), "denoisers": kinds,
        "grids": {k: GRIDS[k] for k in kinds}, "levels": rows,
        "bar_met": passed, "seconds": round(time.time() - t0, 1), "machine": machine(),
        "command": "python benchmarks/photo_denoise.py " + " ".join(sys.argv[1:]),
    }, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
