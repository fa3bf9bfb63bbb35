"""How much of a digit's class survives each Boomerang level, per noise schedule. Not a unit test.

The question behind the bundled model's schedule (issue 3): a Boomerang level
sets t = round(level * (T - 1)) on the model's *own* schedule, so what a level
keeps of an image depends on alpha_bar_t, before any network is involved.

For every level and schedule this script noises the mnist5k test split,
x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps, and computes the exact
posterior over the *training split* taken as the data distribution (an
"empirical-prior" ideal denoiser, a mixture of 4,000 point masses):

    p(x0 = x_i | x_t)  ∝  exp(-||x_t - sqrt(alpha_bar_t) x_i||^2 / (2 (1 - alpha_bar_t)))

and reports the expected class retention of an ideal posterior sample,
mean over inputs of p(class = true class | x_t). It is a reference, not a
bound: the empirical prior is a 1-nearest-neighbour classifier at low noise
(about 94% on this split), and a trained model generalises beyond it. What it
shows is where each schedule destroys the class information.

    .venv/bin/python benchmarks/schedule_information.py     # ~1 min on 2 CPU cores

Writes ``schedule_information.json`` into ``--out`` (default ``benchmarks/out/``,
git-ignored; ``--out benchmarks/results`` refreshes the committed copy).
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import add_out_argument, make_parser  # noqa: E402

SCHEDULES = ["linear", "scaled_linear", "squaredcos_cap_v2"]
LEVELS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


def main(argv=None) -> int:
    p = make_parser(__doc__, first_paragraph=True)
    p.add_argument("--repeats", type=int, default=3, help="noise draws per test image")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise draws")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    add_out_argument(p)
    args = p.parse_args(argv)
    import torch
    from diffusers import DDPMScheduler

    from boomerang.assets import default_model_path
    from boomerang.data import load_dataset, load_split
    from boomerang.levels import level_to_timestep

    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.monotonic()
    ds = load_dataset("mnist5k")
    split = load_split(default_model_path() / "split.json")
    flat = torch.from_numpy(ds.images.reshape(len(ds.images), -1).astype(np.float32) / 127.5 - 1)
    labels = torch.from_numpy(ds.labels.astype(np.int64))
    tr, te = (torch.as_tensor(np.asarray(split[k])) for k in ("train", "test"))
    x_train, y_train, x_test, y_test = flat[tr], labels[tr], flat[te], labels[te]
    rows = []
    for name in SCHEDULES:
        sch = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule=name)
        for level in LEVELS:
            t = level_to_timestep(level, 1000)
            ab = float(sch.alphas_cumprod[t])
            g = torch.Generator().manual_seed(args.seed)
            kept = []
            for _ in range(args.repeats):
                x_t = ab ** 0.5 * x_test + (1 - ab) ** 0.5 * torch.randn(x_test.shape, generator=g)
                logw = -(torch.cdist(x_t, ab ** 0.5 * x_train) ** 2) / (2 * (1 - ab))
                post = torch.zeros(len(x_test), 10).index_add_(1, y_train, logw.softmax(1))
                kept.append(float(post[torch.arange(len(x_test)), y_test].mean()))
            rows.append({"schedule": name, "level": level, "timestep": t, "alpha_bar": round(ab, 4),
                         "ideal_retention_empirical_prior": round(float(np.mean(kept)), 4)})
            print(json.dumps(rows[-1]), file=sys.stderr)
    result = {
        "what": "mean p(true class | x_t) under the exact posterior with the mnist5k train split as the prior",
        "inputs": f"{len(x_test)} test-split digits x {args.repeats} noise draws",
        "rows": rows,
        "wall_s": round(time.monotonic() - t_start, 1),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = args.out / "schedule_information.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    print("| level | " + " | ".join(SCHEDULES) + " |")
    print("|---|" + "---|" * len(SCHEDULES))
    for level in LEVELS:
        cells = [next(r for r in rows if r["schedule"] == s and r["level"] == level) for s in SCHEDULES]
        print(f"| {level:.1f} | " + " | ".join(f"{c['ideal_retention_empirical_prior']:.1%} "
                                               f"(alpha_bar {c['alpha_bar']:.3f})" for c in cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
