"""Copy a finished `boomerang train --data photos` run into the package as ddpm-photos and write its card.

    .venv/bin/python benchmarks/bundle_photo_model.py --run runs/ddpm-photos \
        [--denoise benchmarks/results/photo_denoise.json]

Copies only the diffusers pipeline files (model_index.json, unet/, scheduler/), split.json and
train_config.json -- never the training checkpoint -- into ``src/boomerang/assets/ddpm-photos``
and writes its README.md (model card) from the recorded settings, the split (training and
held-out photos) and, when given, the quality-bar table of ``benchmarks/photo_denoise.py``.

Not a benchmark, and so without ``--out``: it writes into src/boomerang/assets on purpose
(that is its job); run it only to ship a new photo model.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import sys

from _common import make_parser

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEST = ROOT / "src" / "boomerang" / "assets" / "ddpm-photos"
FILES = ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
         "scheduler/scheduler_config.json", "split.json", "train_config.json"]


def denoise_section(d: dict) -> list[str]:
    kinds = d["denoisers"]
    lines = [
        "## Quality bar: denoising held-out patches",
        "",
        f"Measured by `{d['command']}` (results: `benchmarks/results/photo_denoise.json`) on "
        f"{len(d['held_out']) * d['patches_per_photo']} patches of {d['size']}x{d['size']} pixels from the held-out "
        f"photos ({', '.join(d['held_out'])}; model: {d['model']}). The model's one-call x0 estimate against "
        "scikit-image's classical denoisers, each tuned per level on patches of the training photos; PSNR in dB "
        "(mean over patches; higher is better). The bar: the model beats the best classical denoiser at every "
        f"level from alpha_bar 0.9 to 0.3. **{'Met' if d['bar_met'] else 'Not met'}.**",
        "",
        "| alpha_bar | t | noisy input | " + " | ".join(kinds) + " | model x0 | margin over the best |",
        "|---" * (len(kinds) + 5) + "|",
    ]
    for r in d["levels"]:
        cells = " | ".join(f"{r[f'{k}_psnr']:.2f}" for k in kinds)
        lines.append(f"| {r['alpha_bar']:.3f} | {r['t']} | {r['noisy_psnr']:.2f} | {cells} | "
                     f"**{r['model_psnr']:.2f}** | {r['margin_db']:+.2f} ({r['best_classical']}) |")
    if "wavelet" not in kinds:
        lines += ["", "Wavelet denoising was not measured: PyWavelets, which `skimage.restoration.denoise_wavelet` "
                  "needs, is not installed here (it is in the `bench` extra)."]
    return lines + [""]


def card(run: pathlib.Path, denoise: dict | None) -> str:
    info = json.loads((run / "train_config.json").read_text())
    split = json.loads((run / "split.json").read_text())
    unet = json.loads((run / "unet" / "config.json").read_text())
    cfg = info["config"]
    train = split["train"]
    held = split["held_out"]
    mins = info["wall_time_s"] / 60
    rows = [f"| {r['name']} | {r['source']} | {r['kind']} | {r['width']}x{r['height']} | {r['weight']:.3f} |"
            for r in train]
    lines = [
        "# ddpm-photos: the bundled colour photo model of boomerang",
        "",
        "A small pixel-space DDPM (diffusers `UNet2DModel` + `DDPMScheduler`, EMA weights, safetensors) trained "
        "by this project on random patches of the photos that ship offline with scikit-image, scikit-learn and "
        "matplotlib. Every boomerang command uses it when `--model` is omitted and not every input is a small "
        "gray image (`boomerang.default_model`); `--model ddpm-photos` picks it explicitly.",
        "",
        f"- **Images**: RGB, pixel values in [-1, 1]; trained on {split['patch']}x{split['patch']} patches but "
        "**fully convolutional**: no self-attention anywhere (no attention blocks, `add_attention: false` in the "
        f"middle block), so it runs at an image's own size, any side a multiple of "
        f"{2 ** (len(unet['block_out_channels']) - 1)} (other sides are padded and cropped back). Gray inputs are "
        "given to it as three equal channels and come back gray (the output's luminance).",
        f"- **Architecture**: UNet2DModel, block_out_channels {unet['block_out_channels']}, layers_per_block "
        f"{unet['layers_per_block']}, GroupNorm groups {unet['norm_num_groups']}; {info['n_params']:,} parameters. "
        "GroupNorm averages over the whole image, so the statistics of a large image are those of all its patches.",
        f"- **Schedule**: {cfg['num_train_timesteps']} training timesteps, {cfg['beta_schedule']} betas, epsilon "
        "prediction, clip_sample=True (see `scheduler/scheduler_config.json`).",
        "",
        "## What it can and cannot represent",
        "",
        "It is a **patch prior**: it has seen local texture, edges, colour statistics and noise-free detail at "
        f"several scales, within a receptive field of a few tens of pixels, from only {len(train)} pictures, about "
        "half a dozen of them ordinary photographs. It knows nothing about objects, faces, text layout or scene "
        "composition beyond that window: global samples from pure noise are texture, not pictures. What it is for "
        "is what boomerang does at low and middle levels: local resampling of a photo's detail and enhancement "
        "(upsample, then boomerang at a small level). At high levels (little of the input left) it invents "
        "plausible local texture and colour, not content.",
        "",
        "## Data and split",
        "",
        "`boomerang train --data photos` (`boomerang.training.photos`). Held out, never trained on (whole photos; "
        "`skimage.data.cat` is the same photo as `chelsea` and is held out with it; the training list also drops "
        "any photo whose pixels equal a held-out one's, and a test checks it):",
        "",
        "| held-out photo | source | kind | size |",
        "|---|---|---|---|",
        *[f"| {r['name']} | {r['source']} | {r['kind']} | {r['width']}x{r['height']} |" for r in held],
        "",
        "Training photos (weight = share of the patches drawn from it; natural colour photos weigh 3, others 1; "
        "gray photos are used as luminance, replicated to three channels):",
        "",
        "| photo | source | kind | size | weight |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"A patch: a photo by weight, a scale s in {split['scales']} (probabilities {split['scale_weights']}), a "
        f"random {split['patch']}s x {split['patch']}s crop box-averaged to {split['patch']}x{split['patch']}, a "
        "horizontal flip with probability 1/2, and mild colour jitter (brightness, per-channel gains, saturation "
        "0.8..1.2; brightness only for gray photos). The patches of step k are drawn from a generator seeded with "
        "(seed, k) alone, so a resumed run sees the same batches. `split.json` records every photo with the "
        "sha256 of its pixels.",
        "",
        "## Training",
        "",
        "Exact command (run from the repository root; `--resume` added to it continues the run exactly):",
        "",
        "```",
        info["command"],
        "```",
        "",
        f"- steps: **{info['step']}** optimizer steps, batch {cfg['batch_size']} patches (stopped by: {info['stopped']}; "
        "the learning rate is constant after warm-up, so the step budget does not change the trajectory)",
        f"- wall time: **{info['wall_time_s']:.0f} s ({mins:.1f} min)** on {info['hardware']}, the two cores shared "
        "with other work (the step rate varied with it)",
        f"- seed: {cfg['seed']} (initialisation, patches, noise and timesteps; the global torch RNG is not used)",
        f"- optimiser: AdamW, lr {cfg['lr']} (linear warm-up over {cfg['warmup_steps']} steps, then constant), "
        f"weight decay {cfg['weight_decay']}, gradient clipping {cfg['grad_clip']}",
        f"- EMA: decay min({cfg['ema_decay']}, (1 + step) / (10 + step)); the exported weights are the EMA weights",
        f"- final training loss (one batch): {info['last_loss']:.4f}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in info['versions'].items())}",
        "",
        "`train_config.json` holds every resolved setting.",
        "",
    ]
    if denoise is not None:
        lines += denoise_section(denoise)
    return "\n".join(lines)


def main() -> int:
    p = make_parser(__doc__)
    p.add_argument("--run", type=pathlib.Path, default=ROOT / "runs" / "ddpm-photos",
                   help="the finished training run (its exported pipeline)")
    p.add_argument("--denoise", type=pathlib.Path, default=None,
                   help="results of benchmarks/photo_denoise.py for the card's quality table (default: none)")
    args = p.parse_args()
    for f in FILES:
        if not (args.run / f).is_file():
            raise SystemExit(f"missing {args.run / f}")
    denoise = json.loads(args.denoise.read_text()) if args.denoise else None
    if DEST.exists():
        shutil.rmtree(DEST)
    for f in FILES:
        (DEST / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(args.run / f, DEST / f)
    (DEST / "README.md").write_text(card(args.run, denoise) + "\n", encoding="utf-8")
    print(f"wrote {DEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
