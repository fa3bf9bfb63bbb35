"""Cost against level: denoiser evaluations and wall time for levels 0.1 .. 1.0.

For each level the script counts the UNet calls boomerang_sample makes
(``model.unet_calls``) and checks them against the rule documented in
boomerang/levels.py, computed here independently:

    t = round(level (T - 1)),   n = min(t + 1, max(1, ceil(steps (t + 1) / T)))

and times the call (bundled model or its architecture, batch 4, 50-step budget,
ddpm). Wall time should be proportional to n. Plots both to cost_vs_level.png.

    .venv/bin/python benchmarks/cost_vs_level.py [--model DIR] [--steps 50] [--batch 4] [--out DIR] [--plots DIR]

Writes cost_vs_level.json into --out (default benchmarks/out/) and
cost_vs_level.png into --plots (default: the --out folder); ``--out
benchmarks/results --plots docs`` refreshes the committed copies.
"""

from __future__ import annotations

import math
import time

from _common import add_out_argument, bundled_or_standin, machine, make_parser, plot_path, save_json


def main(argv=None):
    ap = make_parser(__doc__)
    ap.add_argument("--model", default=None, metavar="DIR",
                    help="pixel model folder (default: the bundled model, else a stand-in with its architecture)")
    ap.add_argument("--steps", type=int, default=50, help="step budget of a full chain")
    ap.add_argument("--batch", type=int, default=4, help="images per timed call")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    add_out_argument(ap, plots=True)
    args = ap.parse_args(argv)
    import torch

    from boomerang.core import boomerang_sample
    from boomerang.models import load_model

    torch.set_num_threads(args.threads)
    folder, desc = bundled_or_standin(args.model)
    m = load_model(folder)
    T = m.num_train_timesteps
    x = torch.rand(args.batch, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    gens = lambda: [torch.Generator().manual_seed(i) for i in range(args.batch)]  # noqa: E731
    boomerang_sample(m, x, generators=gens(), level=0.1, steps=args.steps)  # warm-up
    rows = []
    print(f"{desc}: batch {args.batch}, steps {args.steps}, T {T}")
    print(" level     t   rule n  calls  evals/step-budget  seconds  ms/eval")
    for k in range(1, 11):
        level = k / 10
        t = round(level * (T - 1))
        n_rule = min(t + 1, max(1, math.ceil(args.steps * (t + 1) / T)))
        before = m.unet_calls
        t0 = time.perf_counter()
        out = boomerang_sample(m, x, generators=gens(), level=level, steps=args.steps)
        secs = time.perf_counter() - t0
        calls = m.unet_calls - before
        ok = calls == n_rule == out.num_denoiser_evals and out.plan.timestep == t
        rows.append({"level": level, "timestep": t, "rule_n": n_rule, "unet_calls": calls,
                     "reported_evals": out.num_denoiser_evals, "seconds": secs, "rule_holds": ok})
        print(f" {level:4.1f}  {t:4d}  {n_rule:6d}  {calls:5d}  {calls / args.steps:17.2f}  {secs:7.3f}  "
              f"{1e3 * secs / calls:7.1f}  {'ok' if ok else 'MISMATCH'}")
    holds = all(r["rule_holds"] for r in rows)
    per_eval = [r["seconds"] / r["unet_calls"] for r in rows]
    print(f"rule n = min(t+1, max(1, ceil(steps (t+1) / T))) holds at every level: {holds}")
    print(f"seconds per evaluation: min {min(per_eval) * 1e3:.1f} ms, max {max(per_eval) * 1e3:.1f} ms "
          "(constant = wall time proportional to evaluations)")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    lv = [r["level"] for r in rows]
    ax.plot(lv, [r["unet_calls"] for r in rows], "o-", label="denoiser evaluations (measured)")
    ax.plot(lv, [r["rule_n"] for r in rows], "x--", label="rule: min(t+1, max(1, ceil(steps(t+1)/T)))")
    ax.set_xlabel("level")
    ax.set_ylabel(f"evaluations (steps = {args.steps})")
    ax2 = ax.twinx()
    ax2.plot(lv, [r["seconds"] for r in rows], "s:", color="tab:red", label="wall time")
    ax2.set_ylabel(f"seconds (batch {args.batch}, CPU)", color="tab:red")
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title("Boomerang cost against level", fontsize=9)
    fig.tight_layout()
    png = plot_path(args, "cost_vs_level.png")
    fig.savefig(png)
    print(f"wrote {png}")
    save_json("cost_vs_level", {"machine": machine(), "model": desc, "batch": args.batch, "steps": args.steps,
                                "T": T, "rows": rows, "rule_holds": holds, "plot": png.name}, args.out)


if __name__ == "__main__":
    main()
