"""Text to image on the bundled flow-matching model ``flow-mnist5k-text``: is the prompted digit drawn? Not a unit test.

For each guidance scale in ``--guidance``: ``--n`` samples from pure noise per class prompt
(``"a handwritten <word>"``, the caption the benchmarks use), the flow ODE (``euler``,
``FlowMatchEulerDiscreteScheduler`` with the model's shift) in ``--steps`` steps, all classes in
one batched call per step (per-item prompts and generators). Each sample (RGB 32x32, channel mean,
centre crop 28x28) is classified by two judges of different kinds trained on the same split
(:mod:`boomerang.studies.judges`: the reference CNN and an RBF SVM on HOG features); the figure is
the share classified as the prompted class, with 95% Wilson intervals, overall and per class.
Target: >= 90% at the best guidance (by the reference judge).

Writes ``flow_model_quality.json`` into ``--out`` and ``flow_t2i.png`` (share against guidance,
both judges) and ``flow_samples.png`` (8 samples per class at the best guidance) into ``--plots``.

    .venv/bin/python benchmarks/flow_model_quality.py --threads 1 --out benchmarks/results --plots docs
    .venv/bin/python benchmarks/flow_model_quality.py --quick --model runs/flow-early   # smoke run
"""

from __future__ import annotations

import os
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import add_out_argument, machine, make_parser, plot_path  # noqa: E402

TARGET = 0.90


def parse_args(argv=None):
    p = make_parser(__doc__)
    p.add_argument("--model", default="flow-mnist5k-text", help="model folder or short name")
    p.add_argument("--guidance", default="1,2,3,4.5,7", help="guidance scales, comma-separated")
    p.add_argument("--n", type=int, default=100, help="samples per class prompt and guidance scale")
    p.add_argument("--steps", type=int, default=20, help="flow Euler steps from pure noise")
    p.add_argument("--scheduler", default="euler", help="euler (the flow ODE) or euler-stochastic")
    p.add_argument("--batch", type=int, default=250, help="images per sampling call")
    p.add_argument("--seed", type=int, default=0, help="base seed of the samples")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--quick", action="store_true", help="tiny counts for a smoke run")
    add_out_argument(p, plots=True)
    a = p.parse_args(argv)
    if a.quick:
        a.n, a.steps = 4, min(a.steps, 8)
    a.guidance = [float(g) for g in a.guidance.split(",") if g.strip()]
    return a


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import json

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from boomerang.core import boomerang_sample
    from boomerang.models import load_model, resolve_model
    from boomerang.seeds import item_generator
    from boomerang.stats import wilson
    from boomerang.studies.families import PerItemPrompts, as_digits
    from boomerang.studies.judges import both_judges
    from boomerang.training.ldm_parts import class_prompt

    t_start = time.monotonic()
    model_dir = resolve_model(args.model, json_only=True)
    model = load_model(str(model_dir))
    model.batch_invariant = False  # batched calls: faster; per-item generators keep samples seed-defined
    judges = both_judges()
    cls = np.repeat(np.arange(10), args.n)
    keys = [(100_000 + int(c), i % args.n) for i, c in enumerate(cls)]
    prompts = [class_prompt(c) for c in cls]
    res = {"model": str(model_dir), "weights_sha256": model.weights_sha256, "target_best_share_min": TARGET,
           "settings": {k: v for k, v in vars(args).items() if k not in ("out", "plots")},
           "command": " ".join(["python benchmarks/flow_model_quality.py", *(argv if argv is not None else sys.argv[1:])]),
           "machine": machine(), "prompt_template": "a handwritten <word>",
           "judges": {j.name: {"kind": j.kind, **{k: v for k, v in j.info.items() if "accuracy" in k}} for j in judges},
           "by_guidance": {}}
    try:
        res["train_config"] = json.loads((model_dir / "train_config.json").read_text())
        res["train_config"].pop("config", None)
    except (OSError, ValueError):
        pass
    out_json = args.out / "flow_model_quality.json"
    samples_by_w = {}
    for w in args.guidance:
        t0 = time.monotonic()
        outs = []
        for i in range(0, len(cls), args.batch):
            sl = slice(i, i + args.batch)
            gens = [item_generator(args.seed, *k) for k in keys[sl]]
            with torch.no_grad():
                o = boomerang_sample(PerItemPrompts(model, prompts[sl]), torch.zeros(len(gens), 3, 32, 32),
                                     generators=gens, from_noise=True, scheduler=args.scheduler, steps=args.steps,
                                     guidance_scale=w)
            outs.append(o.samples)
        digits = as_digits(torch.cat(outs))
        samples_by_w[w] = digits
        row = {}
        for j in judges:
            ok = j(digits, signed=True) == cls
            row[j.name] = {"share": round(float(ok.mean()), 4), "ci95": wilson(int(ok.sum()), len(ok)), "n": int(len(ok)),
                           "per_class": {str(c): round(float(ok[cls == c].mean()), 4) for c in range(10)}}
        row["seconds"] = round(time.monotonic() - t0, 1)
        res["by_guidance"][str(w)] = row
        print(f"guidance {w}: " + ", ".join(f"{j.name} {row[j.name]['share']:.3f} {row[j.name]['ci95']}" for j in judges),
              flush=True)
    ref = judges[0].name
    best = max(res["by_guidance"], key=lambda k: res["by_guidance"][k][ref]["share"])
    res["best"] = {"guidance": float(best), "judge": ref, "share": res["by_guidance"][best][ref]["share"],
                   "ci95": res["by_guidance"][best][ref]["ci95"],
                   "second_judge_share": res["by_guidance"][best][judges[1].name]["share"],
                   "meets_target": res["by_guidance"][best][ref]["share"] >= TARGET}
    res["total_s"] = round(time.monotonic() - t_start, 1)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    print(f"best: guidance {best}, {res['best']}\nwrote {out_json}")
    plot(res, samples_by_w[float(best)], cls, args, plot_path(args, "flow_t2i.png"), plot_path(args, "flow_samples.png"))
    return 0


def plot(res, digits, cls, args, path_curve, path_grid) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ws = [float(k) for k in res["by_guidance"]]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name, style in zip(res["judges"], ("-o", "--s")):
        rows = [res["by_guidance"][k][name] for k in res["by_guidance"]]
        ax.plot(ws, [r["share"] for r in rows], style, label=name)
        ax.fill_between(ws, [r["ci95"][0] for r in rows], [r["ci95"][1] for r in rows], alpha=0.2)
    ax.axhline(TARGET, color="gray", lw=0.8, ls=":")
    ax.set_xlabel("guidance scale")
    ax.set_ylabel("share of the prompted class")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"flow-mnist5k-text: text to image ({args.n} per class, flow Euler {args.steps} steps)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    pathlib.Path(path_curve).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path_curve, dpi=110)
    plt.close(fig)
    k = min(8, args.n)
    grid = np.concatenate([np.concatenate(list(digits[cls == c][:k]), axis=1) for c in range(10)], axis=0)
    plt.imsave(path_grid, (grid + 1) / 2, cmap="gray", vmin=0, vmax=1)
    print(f"wrote {path_curve} and {path_grid}")


if __name__ == "__main__":
    sys.exit(main())
