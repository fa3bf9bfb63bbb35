"""Quality bar of the bundled diffusion model (issue 3). Not a unit test.

Measures, with the bundled reference classifier as the only feature network
(no weights from the internet):

* global samples from pure noise (DDIM, eta 0, --global-steps steps):
  share classified with confidence >= 0.9, per-class shares (argmax), share of
  near-copies (SSIM >= 0.95 with the nearest training image; the nearest is
  searched among the --nn-candidates nearest training images by L2, then SSIM
  is taken as the max over those);
* Boomerang (``boomerang.core.boomerang_sample``, exact schedule, the
  stochastic ``ddpm`` reverse process of the paper, --steps budget) on a
  class-balanced subset of the *test* split at levels 0.1 .. 1.0: class
  retention (classifier's label of the sample == the input's true label),
  mean SSIM to the input, and the mean pairwise RMSE (pixels in [0, 1])
  between --variety-samples samples of the same input; retention comes with a
  95% Wilson interval, SSIM and variety with standard errors, and the
  monotonicity checks are reported both strictly (on the sample means) and
  within noise (no reversal larger than 2 standard errors of the difference);
* Frechet distance in the classifier's 128-d feature space between the test
  split and the global samples, with the same distance between the test
  split and the held-out *val* split (real vs real) as the floor.

Writes ``model_quality.json`` (all figures, counts, settings, targets and wall
times) into ``--out`` (default ``benchmarks/out/``, git-ignored) and
``model_quality.png`` into ``--plots`` (default: the ``--out`` folder);
``--out benchmarks/results --plots docs`` refreshes the committed copies.

    .venv/bin/python benchmarks/model_quality.py            # full run (18 min on the 2-core CPU, --threads 2)
    .venv/bin/python benchmarks/model_quality.py --quick    # smaller counts, recorded in the JSON
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import add_out_argument, make_parser, plot_path  # noqa: E402

from boomerang.stats import wilson  # noqa: E402

LEVELS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
TARGETS = {
    "global_confident_share_min": 0.85,
    "global_class_share_range": [0.05, 0.15],
    "global_near_copy_share_max": 0.01,
    "retention_at_0.2_min": 0.97,
    "retention_at_0.4_min": 0.90,
    "retention_at_1.0": "near chance (0.10)",
}


def parse_args(argv=None):
    p = make_parser(__doc__, first_paragraph=True)
    p.add_argument("--model", default=None, help="diffusers DDPMPipeline folder (default: the bundled model)")
    p.add_argument("--classifier", default=None, help="classifier folder (default: the bundled one)")
    p.add_argument("--quick", action="store_true", help="smaller counts (200 global, 50 inputs, 5 variety inputs)")
    p.add_argument("--n-global", type=int, default=1000, help="global samples from pure noise")
    p.add_argument("--n-inputs", type=int, default=500,
                   help="test digits for retention/SSIM (class-balanced; 500 = the whole test split)")
    p.add_argument("--n-variety-inputs", type=int, default=20, help="test digits whose samples' variety is measured")
    p.add_argument("--variety-samples", type=int, default=8, help="samples per variety input (at least 2)")
    p.add_argument("--global-steps", type=int, default=25, help="ddim steps of the global samples")
    p.add_argument("--steps", type=int, default=50, help="Boomerang step budget of a full chain")
    p.add_argument("--scheduler", default="ddpm", help="Boomerang reverse process (default: ddpm, the paper's)")
    p.add_argument("--nn-candidates", type=int, default=10,
                   help="nearest training images by L2 among which the near-copy SSIM is taken")
    p.add_argument("--batch", type=int, default=250, help="images per sampling call")
    p.add_argument("--seed", type=int, default=0, help="base seed of the samples")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    add_out_argument(p, plots=True)
    a = p.parse_args(argv)
    if a.quick:
        a.n_global, a.n_inputs, a.n_variety_inputs = min(a.n_global, 200), min(a.n_inputs, 50), min(a.n_variety_inputs, 5)
    for name in ("n_global", "n_inputs", "n_variety_inputs", "variety_samples", "global_steps", "steps", "batch"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if a.variety_samples < 2:
        p.error("--variety-samples must be >= 2")
    return a


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets ``[N, D]``."""
    from scipy import linalg

    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        off = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + off) @ (s2 + off))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def ssim01(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two [H, W] images in [0, 1] (scikit-image, 7x7 window, data_range 1)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, data_range=1.0, win_size=7))


def nearest_ssim(queries: np.ndarray, train: np.ndarray, k: int) -> np.ndarray:
    """Max SSIM of each query [N, H, W] against its k L2-nearest images of ``train`` [M, H, W] (all in [0, 1])."""
    q = queries.reshape(len(queries), -1).astype(np.float64)
    t = train.reshape(len(train), -1).astype(np.float64)
    d = (q**2).sum(1)[:, None] + (t**2).sum(1)[None] - 2 * q @ t.T
    nn = np.argpartition(d, kth=min(k, len(t) - 1) - 1, axis=1)[:, :k]
    return np.array([max(ssim01(queries[i], train[j]) for j in nn[i]) for i in range(len(queries))])


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from boomerang.assets import default_model_path
    from boomerang.classifier import load_classifier
    from boomerang.core import boomerang_sample
    from boomerang.data import load_dataset, load_split
    from boomerang.models import load_model
    from boomerang.levels import level_to_timestep
    from boomerang.seeds import item_generator

    t_start = time.monotonic()
    timings: dict[str, float] = {}
    model_dir = pathlib.Path(args.model) if args.model else default_model_path()
    model = load_model(str(model_dir))
    from diffusers import DDPMScheduler

    T = int(model.info.num_train_timesteps)
    alpha_bar = DDPMScheduler.from_config(model.scheduler_config).alphas_cumprod.numpy()
    model.batch_invariant = False  # batched UNet calls: faster; per-item generators keep samples seed-defined
    clf = load_classifier(args.classifier)
    ds = load_dataset("mnist5k")
    split = load_split(model_dir / "split.json")
    imgs01 = ds.images[:, 0].astype(np.float32) / 255.0  # [N, 28, 28] in [0, 1]
    labels = ds.labels
    train_idx, val_idx, test_idx = (np.asarray(split[k]) for k in ("train", "val", "test"))

    def to_model(a01: np.ndarray) -> torch.Tensor:  # [N, 28, 28] in [0,1] -> [N, 1, 28, 28] in [-1, 1]
        return torch.from_numpy(a01[:, None] * 2.0 - 1.0).float()

    @torch.no_grad()
    def classify(x: torch.Tensor):
        logits = torch.cat([clf(x[i:i + 500]) for i in range(0, len(x), 500)])
        p = logits.softmax(1)
        feats = torch.cat([clf.features(x[i:i + 500]) for i in range(0, len(x), 500)])
        return p.max(1).values.numpy(), p.argmax(1).numpy(), feats.numpy().astype(np.float64)

    def run(x0: torch.Tensor, gens, **kw) -> torch.Tensor:
        outs = []
        for i in range(0, len(x0), args.batch):
            with torch.no_grad():
                outs.append(boomerang_sample(model, x0[i:i + args.batch], generators=gens[i:i + args.batch], **kw).samples)
        return torch.cat(outs)

    # Reference figures on real data.
    t0 = time.monotonic()
    test_conf, test_pred, test_feat = classify(to_model(imgs01[test_idx]))
    val_conf, val_pred, val_feat = classify(to_model(imgs01[val_idx]))
    real_ref = {
        "test_accuracy": float((test_pred == labels[test_idx]).mean()),
        "test_confident_share": float((test_conf >= 0.9).mean()),
        "val_nearest_train_ssim_mean": None,
        "val_near_copy_share": None,
    }
    val_nn = nearest_ssim(imgs01[val_idx], imgs01[train_idx], args.nn_candidates)
    real_ref["val_nearest_train_ssim_mean"] = float(val_nn.mean())
    real_ref["val_near_copy_share"] = float((val_nn >= 0.95).mean())
    timings["real_reference_s"] = time.monotonic() - t0

    # 1. Global samples from pure noise.
    t0 = time.monotonic()
    n = args.n_global
    gens = [item_generator(args.seed, i, 0) for i in range(n)]
    g = run(torch.zeros(n, 1, 28, 28), gens, from_noise=True, scheduler="ddim", steps=args.global_steps, eta=0.0)
    g01 = ((g[:, 0].numpy() + 1) / 2).clip(0, 1)
    timings["global_sampling_s"] = time.monotonic() - t0
    g_conf, g_pred, g_feat = classify(g)
    g_nn = nearest_ssim(g01, imgs01[train_idx], args.nn_candidates)
    shares = np.bincount(g_pred, minlength=10) / n
    conf_shares = np.bincount(g_pred[g_conf >= 0.9], minlength=10) / max(1, int((g_conf >= 0.9).sum()))
    fd_1000 = frechet_distance(test_feat, g_feat)
    fd_500 = frechet_distance(test_feat, g_feat[: len(val_idx)])
    fd_floor = frechet_distance(test_feat, val_feat)
    fd_train = frechet_distance(test_feat, classify(to_model(imgs01[train_idx]))[2])
    global_res = {
        "n": n,
        "sampler": f"DDIM eta=0, {args.global_steps} steps (boomerang.core.boomerang_sample from_noise=True)",
        "confident_share": float((g_conf >= 0.9).mean()),
        "mean_confidence": float(g_conf.mean()),
        "class_shares": shares.round(4).tolist(),
        "class_shares_of_confident": conf_shares.round(4).tolist(),
        "near_copy_share": float((g_nn >= 0.95).mean()),
        "nearest_train_ssim_mean": float(g_nn.mean()),
        "nearest_train_ssim_max": float(g_nn.max()),
    }
    frechet = {
        "feature_space": "reference classifier penultimate layer (128-d)",
        "test_vs_global_samples": fd_1000,
        "n_test": len(test_idx), "n_samples": n,
        "test_vs_global_samples_first_500": fd_500,
        "floor_test_vs_val_real": fd_floor, "n_val": len(val_idx),
        "test_vs_train_real": fd_train, "n_train": len(train_idx),
    }
    timings["global_total_s"] = time.monotonic() - t0

    # 2. Boomerang on test digits (class-balanced subset).
    t0 = time.monotonic()
    rng = np.random.default_rng(args.seed)
    per_class = max(1, args.n_inputs // 10)
    chosen = np.concatenate([rng.permutation(test_idx[labels[test_idx] == c])[:per_class] for c in range(10)])
    var_per_class = max(1, args.n_variety_inputs // 10)
    var_chosen = np.concatenate([rng.permutation(test_idx[labels[test_idx] == c])[:var_per_class] for c in range(10)])
    var_chosen = var_chosen[: args.n_variety_inputs] if args.n_variety_inputs >= 10 else \
        rng.permutation(test_idx)[: args.n_variety_inputs]
    x_in = to_model(imgs01[chosen])
    k = args.variety_samples
    x_var = to_model(np.repeat(imgs01[var_chosen], k, axis=0))
    gens_var_spec = [(int(i), j) for i in var_chosen for j in range(k)]
    per_level = []
    example_rows = []  # for the figure: 5 inputs x levels
    for level in LEVELS:
        tl = time.monotonic()
        gens = [item_generator(args.seed + 1, int(i), 0) for i in chosen]
        s = run(x_in, gens, level=level, scheduler=args.scheduler, steps=args.steps)
        conf, pred, _ = classify(s)
        s01 = ((s[:, 0].numpy() + 1) / 2).clip(0, 1)
        ssim = np.array([ssim01(imgs01[chosen[i]], s01[i]) for i in range(len(chosen))])
        gens_v = [item_generator(args.seed + 2, i, j) for i, j in gens_var_spec]
        sv = run(x_var, gens_v, level=level, scheduler=args.scheduler, steps=args.steps)
        v01 = ((sv[:, 0].numpy() + 1) / 2).clip(0, 1).reshape(len(var_chosen), k, -1)
        pair = []
        for grp in v01:
            d = np.sqrt(((grp[:, None] - grp[None]) ** 2).mean(-1))
            pair.append(d[np.triu_indices(k, 1)].mean())
        per_level.append({
            "level": level,
            "timestep": int(level_to_timestep(level, T)),
            "alpha_bar": round(float(alpha_bar[level_to_timestep(level, T)]), 4),
            "retention": float((pred == labels[chosen]).mean()),
            "retention_ci95": wilson(int((pred == labels[chosen]).sum()), len(chosen)),
            "confident_share": float((conf >= 0.9).mean()),
            "ssim_to_input_mean": float(ssim.mean()),
            "ssim_to_input_se": float(ssim.std(ddof=1) / np.sqrt(len(ssim))) if len(ssim) > 1 else 0.0,
            "pairwise_rmse_mean": float(np.mean(pair)),
            "pairwise_rmse_se": float(np.std(pair, ddof=1) / np.sqrt(len(pair))) if len(pair) > 1 else 0.0,
            "wall_s": round(time.monotonic() - tl, 1),
        })
        example_rows.append(s01[[np.flatnonzero(labels[chosen] == c)[0] for c in (0, 2, 4, 7, 9)]])
        print(json.dumps(per_level[-1]), file=sys.stderr)
    timings["boomerang_s"] = time.monotonic() - t0

    by = {r["level"]: r for r in per_level}
    checks = {
        "global_confident_share>=0.85": global_res["confident_share"] >= 0.85,
        "global_each_class_in_[0.05,0.15]": bool(((shares >= 0.05) & (shares <= 0.15)).all()),
        "global_near_copy_share<=0.01": global_res["near_copy_share"] <= 0.01,
        "retention@0.2>=0.97": by[0.2]["retention"] >= 0.97,
        "retention@0.4>=0.90": by[0.4]["retention"] >= 0.90,
        "retention@1.0_near_chance(<=0.2)": by[1.0]["retention"] <= 0.2,
        "ssim_decreasing": all(a["ssim_to_input_mean"] >= b["ssim_to_input_mean"] for a, b in zip(per_level, per_level[1:])),
        "variety_increasing": all(a["pairwise_rmse_mean"] <= b["pairwise_rmse_mean"] for a, b in zip(per_level, per_level[1:])),
        "ssim_decreasing_within_2se": all(
            b["ssim_to_input_mean"] - a["ssim_to_input_mean"] <= 2 * np.hypot(a["ssim_to_input_se"], b["ssim_to_input_se"])
            for a, b in zip(per_level, per_level[1:])),
        "variety_increasing_within_2se": all(
            a["pairwise_rmse_mean"] - b["pairwise_rmse_mean"] <= 2 * np.hypot(a["pairwise_rmse_se"], b["pairwise_rmse_se"])
            for a, b in zip(per_level, per_level[1:])),
        "frechet_global_within_3x_floor": fd_500 <= 3 * fd_floor,
    }
    timings["total_s"] = time.monotonic() - t_start
    train_info = {}
    if (model_dir / "train_config.json").is_file():
        ti = json.loads((model_dir / "train_config.json").read_text())
        train_info = {k: ti.get(k) for k in ("step", "wall_time_s", "command", "hardware")}
    result = {
        "model": str(model_dir.relative_to(ROOT) if model_dir.is_relative_to(ROOT) else model_dir),
        "model_weights_sha256": model.weights_sha256,
        "model_training": train_info,
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "plots")},
        "boomerang_sampler": f"boomerang.core.boomerang_sample, schedule exact, scheduler {args.scheduler}, "
                             f"steps budget {args.steps} (about level x {args.steps} denoiser calls)",
        "counts": {"global": n, "boomerang_inputs": int(len(chosen)), "variety_inputs": int(len(var_chosen)),
                   "variety_samples_per_input": k},
        "real_reference": real_ref,
        "global": global_res,
        "frechet": frechet,
        "boomerang": per_level,
        "targets": TARGETS,
        "checks": checks,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()},
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out_json = args.out / "model_quality.json"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(result, indent=1))
    png = plot_path(args, "model_quality.png")
    plot(result, g01[:64], np.stack(example_rows, 1), imgs01[[chosen[np.flatnonzero(labels[chosen] == c)[0]] for c in (0, 2, 4, 7, 9)]],
         png)
    print(json.dumps({"checks": checks, "json": str(out_json), "plot": str(png)}, indent=1))
    return 0


def plot(result: dict, global_samples: np.ndarray, rows: np.ndarray, inputs: np.ndarray, path: pathlib.Path) -> None:
    """Retention / SSIM / variety against level, global samples, and Boomerang rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lv = [r["level"] for r in result["boomerang"]]
    fig = plt.figure(figsize=(13, 8.5))
    ax1 = fig.add_subplot(2, 3, 1)
    ret = np.array([r["retention"] for r in result["boomerang"]])
    ci = np.array([r.get("retention_ci95", [r["retention"]] * 2) for r in result["boomerang"]])
    ax1.errorbar(lv, ret, yerr=[ret - ci[:, 0], ci[:, 1] - ret], fmt="o-", capsize=3,
                 label="class retention (95% CI)")
    ax1.plot(lv, [r["ssim_to_input_mean"] for r in result["boomerang"]], "s-", label="mean SSIM to input")
    ax1.axhline(0.1, color="gray", ls=":", label="chance (0.1)")
    ax1.plot([0.2, 0.4], [0.97, 0.90], "rv", label="targets (>=)")
    ax1.set_xlabel("Boomerang level (t / (T-1))")
    ax1.set_ylim(0, 1.02)
    ax1.legend(fontsize=8)
    ax1.set_title(f"{result['counts']['boomerang_inputs']} test digits")
    ax2 = fig.add_subplot(2, 3, 2)
    ax2.plot(lv, [r["pairwise_rmse_mean"] for r in result["boomerang"]], "o-", color="C2")
    ax2.set_xlabel("Boomerang level")
    ax2.set_ylabel("mean pairwise RMSE (pixels in [0,1])")
    ax2.set_title(f"variety: {result['counts']['variety_samples_per_input']} samples of "
                  f"{result['counts']['variety_inputs']} inputs")
    ax3 = fig.add_subplot(2, 3, 3)
    gsh = result["global"]["class_shares"]
    ax3.bar(range(10), gsh)
    ax3.axhspan(0.05, 0.15, color="green", alpha=0.1)
    ax3.set_xticks(range(10))
    ax3.set_title(f"global samples: class shares (n={result['global']['n']})\n"
                  f"confident>=0.9: {result['global']['confident_share']:.1%}, "
                  f"near-copies: {result['global']['near_copy_share']:.1%}", fontsize=9)
    ax4 = fig.add_subplot(2, 3, 4)
    gs = np.zeros((64, 28, 28), dtype=np.float32)
    gs[: min(64, len(global_samples))] = global_samples[:64]
    grid = gs.reshape(8, 8, 28, 28).transpose(0, 2, 1, 3).reshape(8 * 28, 8 * 28)
    ax4.imshow(grid, cmap="gray", vmin=0, vmax=1)
    ax4.set_title("global samples (DDIM from pure noise)", fontsize=9)
    ax4.axis("off")
    ax5 = fig.add_subplot(2, 3, (5, 6))
    cols = [inputs] + [rows[:, i] for i in range(rows.shape[1])]
    strip = np.concatenate([np.concatenate(list(c), 0) for c in cols], 1)
    ax5.imshow(strip, cmap="gray", vmin=0, vmax=1)
    ax5.set_xticks([14 + 28 * i for i in range(len(cols))])
    ax5.set_xticklabels(["input"] + [f"{v:g}" for v in lv], fontsize=8)
    ax5.set_yticks([])
    ax5.set_title("Boomerang samples of test digits by level", fontsize=9)
    fig.suptitle(f"bundled model quality (model step {result['model_training'].get('step')}); "
                 f"Frechet (classifier features): samples {result['frechet']['test_vs_global_samples_first_500']:.2f} "
                 f"vs real floor {result['frechet']['floor_test_vs_val_real']:.2f}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
