"""Does Boomerang augmentation help a classifier in low-data regimes? (issue 10). Not a unit test.

Data: the real MNIST digits of ``mnist5k`` with the project's fixed split (the
one the bundled diffusion model and reference classifier were trained with).
Regimes of 10 and 50 labelled training images per class: a fixed pool of
--pool-per-class (50) training images per class; for each training seed s, a
fixed subset drawn with ``numpy.random.default_rng(s)`` from the pool's first
2 x n images per class (so the 50-image regime uses the whole pool for every
seed, and seeds differ in initialisation, order and augmentation draws). The
Boomerang samples are computed once for the pool. Every model is evaluated on
the whole real test split (500 digits).

Arms, all with the reference classifier's architecture (``DigitCNN``; at
--width 16 by default, half the reference's channels, to fit the shared CPU) and its
training recipe (``boomerang.training.classifier.make_optimizer`` / ``train_step``:
AdamW, one-cycle LR, random shifts of up to 2 pixels in every arm), the same
number of optimisation steps and the same batch size:

* ``real``: the subset only;
* ``classical``: kornia ``RandomAffine`` + ``RandomElasticTransform`` on every batch;
* ``boomerang-L`` (L = 0.2, 0.4, 0.6): ``BoomerangAugmented`` over the subset,
  K = 4 cached samples per image, p = 0.5;
* ``boomerang-0.4+classical``: both;
* ``global``: each image's place is taken with p = 0.5 by one of K global
  samples (pure noise -> image, the same model, scheduler and step budget),
  labelled by the bundled reference classifier: the same number of generated
  images (K per real image) without locality. Regime r uses the first r x 10 x K
  global samples (one pool for every seed, assigned to the items in a
  seed-dependent order). Note: that classifier was
  trained on all 4,000 labelled training digits, so this arm borrows label
  knowledge the low-data regime does not have; the diffusion model (all arms
  with generated data) was trained on the same 4,000 digits without labels.

Stages (all resumable; --work keeps the cache and per-run results):

    .venv/bin/python benchmarks/augmentation.py --stage precompute   # Boomerang + global samples (timed)
    .venv/bin/python benchmarks/augmentation.py --stage train        # every (regime, arm, seed) not yet done
    .venv/bin/python benchmarks/augmentation.py --stage report       # JSON, table, augmentation.png
    .venv/bin/python benchmarks/augmentation.py                      # all three
    .venv/bin/python benchmarks/augmentation.py --stage retention    # class retention of the samples, both judges

Class retention (issue 20): ``--stage retention`` scores the cached Boomerang samples against their
source's class, and the global samples against the labels they were given, with two judges of different
kinds trained on the same training split (the reference CNN and an RBF SVM on HOG features,
:mod:`boomerang.studies.judges`); ``--stage precompute --no-global`` makes only the samples it needs.

The report writes ``augmentation.json`` into ``--out`` (default
``benchmarks/out/``, git-ignored) and ``augmentation.png`` into ``--plots``
(default: the ``--out`` folder); ``--stage report --out benchmarks/results
--plots docs`` refreshes the committed copies from the runs in ``--work``.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import add_out_argument, make_parser, plot_path  # noqa: E402

from boomerang.studies.augmentation import (  # noqa: E402
    GlobalMixed, classical_augment, load_data, pool_indices, subset)

LEVELS = (0.2, 0.4, 0.6)
REGIMES = (10, 50)
ARMS = ("real", "classical", "boomerang-0.2", "boomerang-0.4", "boomerang-0.6", "boomerang-0.4+classical", "global")
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def parse_args(argv=None):
    p = make_parser(__doc__, first_paragraph=True)
    p.add_argument("--stage", choices=("precompute", "train", "report", "retention", "all"), default="all",
                   help="precompute: the Boomerang and global samples; train: every (regime, arm, seed) not yet done; "
                        "report: JSON, table and figure; retention: class retention of the cached samples by both "
                        "judges (augmentation_retention.json); all: precompute, train, report")
    p.add_argument("--no-global", action="store_true",
                   help="precompute only the Boomerang samples (enough for --stage retention)")
    p.add_argument("--work", default=str(ROOT / "runs" / "augmentation"), help="cache and per-run results")
    p.add_argument("--seeds", type=int, default=20, help="training seeds (= subsets) per arm and regime")
    p.add_argument("--pool-per-class", type=int, default=50, help="images per class the subsets are drawn from")
    p.add_argument("--samples-per-image", type=int, default=4, help="K: Boomerang samples per image and level")
    p.add_argument("--p", type=float, default=0.5, help="probability that an item shows a generated image")
    p.add_argument("--sample-steps", type=int, default=10,
                   help="step budget of a full chain for the samples (ddpm; level L uses about L x this)")
    p.add_argument("--scheduler", default="ddpm", help="boomerang scheduler of the samples")
    p.add_argument("--train-steps", type=int, default=120, help="optimisation steps per model (every arm)")
    p.add_argument("--batch-size", type=int, default=32, help="training images per optimisation step")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (one-cycle AdamW)")
    # DigitCNN at width 16 costs about a third of the reference classifier's width 32 per step:
    # the size that fitted this shared 2-core CPU (same layers, half the channels).
    p.add_argument("--width", type=int, default=16, help="DigitCNN width (the reference classifier's is 32)")
    p.add_argument("--arms", default=",".join(ARMS), help="comma-separated subset of the arms to train")
    p.add_argument("--regimes", default=",".join(map(str, REGIMES)),
                   help="comma-separated labelled training images per class")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--chunk", type=int, default=4, help="images per model call while precomputing (x K samples)")
    add_out_argument(p, plots=True)
    a = p.parse_args(argv)
    regimes = [int(r) for r in a.regimes.split(",")]
    if max(regimes) > a.pool_per_class:  # each regime's subsets are drawn from the pool
        p.error(f"--pool-per-class {a.pool_per_class} is smaller than the regime {max(regimes)}")
    return a


# --------------------------------------------------------------------------- data


def relpath(ds, index: int) -> str:
    return f"{int(ds.labels[index])}/{index:04d}.png"


# --------------------------------------------------------------------------- precompute


def precompute(args, ds, split, work: pathlib.Path) -> dict:
    """Boomerang samples of every pool image at every level (the ``augment`` command), then
    the global samples; timed. Resumable: finished files are kept and skipped.
    """
    import torch
    from PIL import Image

    import boomerang
    from boomerang import core, seeds
    from boomerang.classifier import load_classifier

    K = args.samples_per_image
    pool = pool_indices(ds, split, args.pool_per_class)
    regimes = [int(r) for r in args.regimes.split(",")]
    first = sorted({i for s in range(args.seeds) for i in subset(pool, s, min(regimes))})
    rest = sorted({i for c in range(10) for i in pool[c]} - set(first))
    n_global = max(regimes) * 10 * K  # as many as the largest regime uses (50 per class x 10 classes x K)
    in_dir, cache = work / "in", work / "cache"
    for i in first + rest:  # the augment command's input: class folders of PNGs
        p = in_dir / relpath(ds, i)
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(ds.images[i, 0]).save(p)
    timing_path = work / "precompute_timing.json"
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {"boomerang_s": 0.0, "global_s": 0.0}

    def local() -> None:
        """Every pool image's K samples at every level, with the command users run:
        ``boomerang augment IN --level 0.2,0.4,0.6 --samples-per-image K --out CACHE`` (resumable:
        a rerun continues the job; sample j of an image is seeded by (0, its relative path, j),
        the same noise at every level)."""
        import subprocess

        cmd = [sys.executable, "-m", "boomerang.cli", "augment", str(in_dir), "--out", str(cache),
               "--level", ",".join(str(lv) for lv in LEVELS), "--samples-per-image", str(K),
               "--steps", str(args.sample_steps), "--scheduler", args.scheduler, "--seed", "0",
               "--batch-size", str(args.chunk * K), "--threads", str(args.threads), "--no-progress"]
        print("+", " ".join(cmd[2:]), file=sys.stderr, flush=True)
        t0 = time.monotonic()
        proc = subprocess.run(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if proc.returncode != 0:
            raise SystemExit(f"boomerang augment failed (exit {proc.returncode})")
        timing["boomerang_s"] += time.monotonic() - t0
        timing["boomerang_images"] = len(first) + len(rest)
        timing["boomerang_command"] = "boomerang " + " ".join(cmd[3:])
        timing_path.write_text(json.dumps(timing, indent=1))

    def global_(start_at, stop):
        model = boomerang.load()
        clf = load_classifier()
        gdir = work / "global"
        gdir.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        step = 16
        for start in range(start_at, stop, step):
            f = gdir / f"{start:05d}.npz"
            if f.exists():
                continue
            n = min(step, stop - start)
            gens = [seeds.item_generator(1, start + k, 0) for k in range(n)]
            out = core.boomerang_sample(model, torch.zeros(n, 1, 28, 28), generators=gens, from_noise=True,
                                        steps=args.sample_steps, scheduler=args.scheduler)
            x = out.samples.clamp(-1, 1)
            with torch.no_grad():
                prob = clf(x).softmax(1)
            pix = ((x + 1) * 127.5).round().to(torch.uint8).numpy()
            np.savez(f.with_suffix(".tmp.npz"), images=pix, labels=prob.argmax(1).numpy(),
                     confidence=prob.max(1).values.numpy())
            os.replace(f.with_suffix(".tmp.npz"), f)
            print(f"global: {start + n}/{stop}, {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
        timing["global_s"] += time.monotonic() - t0
        timing["global_samples"] = stop
        timing_path.write_text(json.dumps(timing, indent=1))

    local()
    if not args.no_global:
        global_(0, n_global)
    return timing


def load_global(work: pathlib.Path):
    files = sorted((work / "global").glob("[0-9]*.npz"))
    parts = [np.load(f) for f in files]
    return (np.concatenate([p["images"] for p in parts]), np.concatenate([p["labels"] for p in parts]),
            np.concatenate([p["confidence"] for p in parts]))


# --------------------------------------------------------------------------- training


class _Subset:
    """(uint8 [1, 28, 28] image, label) of the chosen training digits, keyed by relative path."""

    def __init__(self, ds, indices):
        self.images, self.labels = ds.images[indices], ds.labels[indices]
        self.relpaths = [relpath(ds, i) for i in indices]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


def train_one(args, ds, split, pool, work, regime: int, arm: str, seed: int, global_data=None) -> dict:
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    from boomerang.augment import BoomerangAugmented
    from boomerang.classifier import build_classifier, evaluate_accuracy
    from boomerang.training.classifier import make_optimizer, train_step

    K = args.samples_per_image
    idx = subset(pool, seed, regime)
    base = _Subset(ds, idx)
    if arm.startswith("boomerang"):
        level = float(arm.split("-")[1].split("+")[0])
        cache_images: dict = {}

        def load(path):  # decoded once per run, from the cache the precompute stage wrote
            if path not in cache_images:
                from PIL import Image

                with Image.open(path) as im:
                    cache_images[path] = np.array(im, dtype=np.uint8)[None]  # writable: no torch warning
            return cache_images[path]

        data = BoomerangAugmented(base, work / "cache", samples_per_image=K, p=args.p, level=level, load=load,
                                  seed=seed)
    elif arm == "global":
        g_images, g_labels, _ = global_data
        # regime r uses the first r x 10 x K global samples, assigned to its items in a seed-dependent order
        avail = len(base) * K
        if len(g_labels) < avail:
            raise SystemExit(f"only {len(g_labels)} of the {avail} global samples regime {regime} needs exist; "
                             "run --stage precompute to the end")
        order = np.random.default_rng(seed).permutation(avail)[:len(base) * K]
        data = GlobalMixed(base, g_images[order], g_labels[order], K, args.p, seed)
    else:
        data = base
    classical = classical_augment() if "classical" in arm else None

    xte = torch.from_numpy(ds.images[split["test"]]).float() / 127.5 - 1.0
    yte = torch.from_numpy(ds.labels[split["test"]])
    t0 = time.monotonic()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # init and kornia's draws
        model = build_classifier(width=args.width)
        opt, sched = make_optimizer(model, args.lr, args.train_steps)
        gen = torch.Generator().manual_seed(seed + 1)  # shifts
        sampler = RandomSampler(data, generator=torch.Generator().manual_seed(seed + 2))
        loader = DataLoader(data, batch_size=args.batch_size, sampler=sampler, drop_last=True)
        step, epoch, losses = 0, 0, []
        model.train()
        while step < args.train_steps:
            if hasattr(data, "set_epoch"):
                data.set_epoch(epoch)
            for xb, yb in loader:
                x = xb.float() / 127.5 - 1.0
                if classical is not None:
                    x = classical(x + 1.0) - 1.0  # background 0 while warping, then back to -1
                losses.append(train_step(model, opt, sched, x, yb.long(), gen))
                step += 1
                if step == args.train_steps:
                    break
            epoch += 1
        acc = evaluate_accuracy(model, xte, yte)
    return {"regime": regime, "arm": arm, "seed": seed, "test_accuracy": acc, "n_train": len(base),
            "epochs": epoch, "final_loss": float(np.mean(losses[-10:])), "wall_s": round(time.monotonic() - t0, 1)}


def train_all(args, ds, split, work: pathlib.Path) -> None:
    pool = pool_indices(ds, split, args.pool_per_class)
    results = work / "runs.jsonl"
    done = set()
    if results.exists():
        for line in results.read_text().splitlines():
            r = json.loads(line)
            done.add((r["regime"], r["arm"], r["seed"]))
    arms = [a for a in args.arms.split(",") if a]
    for a in arms:
        if a not in ARMS:
            raise SystemExit(f"--arms: unknown arm {a!r}; choose from {', '.join(ARMS)}")
    global_data = load_global(work) if "global" in arms else None
    for regime in [int(r) for r in args.regimes.split(",")]:
        for arm in arms:
            for seed in range(args.seeds):
                if (regime, arm, seed) in done:
                    continue
                r = train_one(args, ds, split, pool, work, regime, arm, seed, global_data)
                r.update(train_steps=args.train_steps, batch_size=args.batch_size, width=args.width)
                with open(results, "a", encoding="utf-8") as f:
                    f.write(json.dumps(r) + "\n")
                print(json.dumps(r), file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- report


def mean_ci(xs):
    xs = np.asarray(xs, dtype=float)
    n = len(xs)
    m = float(xs.mean())
    if n < 2:
        return m, None, None
    h = T_975.get(n - 1, 1.96) * float(xs.std(ddof=1)) / np.sqrt(n)
    return m, m - h, m + h


def report(args, work: pathlib.Path) -> dict:
    from _common import machine, save_json

    runs, seen = [], set()
    for line in (work / "runs.jsonl").read_text().splitlines():
        r = json.loads(line)
        if (r["regime"], r["arm"], r["seed"]) not in seen:  # the first record of a run counts
            seen.add((r["regime"], r["arm"], r["seed"]))
            runs.append(r)
    timing_path = work / "precompute_timing.json"
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
    table = []
    for regime in sorted({r["regime"] for r in runs}):
        base = {r["seed"]: r["test_accuracy"] for r in runs if r["regime"] == regime and r["arm"] == "real"}
        for arm in ARMS:
            rs = sorted((r for r in runs if r["regime"] == regime and r["arm"] == arm), key=lambda r: r["seed"])
            if not rs:
                continue
            m, lo, hi = mean_ci([r["test_accuracy"] for r in rs])
            paired = [r["test_accuracy"] - base[r["seed"]] for r in rs if r["seed"] in base]
            dm, dlo, dhi = mean_ci(paired) if len(paired) >= 2 else (None, None, None)
            table.append({"regime": regime, "arm": arm, "seeds": len(rs), "mean": m, "ci95": [lo, hi],
                          "diff_vs_real": dm, "diff_ci95": [dlo, dhi],
                          "accuracies": [r["test_accuracy"] for r in rs],
                          "train_wall_s": round(sum(r["wall_s"] for r in rs), 1)})
    settings = {k: getattr(args, k) for k in ("seeds", "pool_per_class", "samples_per_image", "p", "sample_steps",
                                              "scheduler", "train_steps", "batch_size", "lr", "width")}
    not_run = [{"regime": rg, "arm": a} for rg in REGIMES for a in ARMS
                if not any(r["regime"] == rg and r["arm"] == a for r in runs)]
    out = {"settings": settings, "levels": list(LEVELS), "regimes": list(REGIMES), "table": table, "not_run": not_run,
           "precompute": timing, "train_wall_s_total": round(sum(r["wall_s"] for r in runs), 1),
           "runs": runs, "machine": machine()}
    save_json("augmentation", out, args.out)
    _plot(table, plot_path(args, "augmentation.png"))
    print(markdown_table(table))
    if not_run:
        print("not run: " + ", ".join(f"{r['arm']} at {r['regime']} per class" for r in not_run))
    return out


def markdown_table(table) -> str:
    lines = ["| regime (per class) | arm | test accuracy, mean [95% CI] | vs real, paired [95% CI] |",
             "| --- | --- | --- | --- |"]
    for row in table:
        lo, hi = row["ci95"]
        acc = f"{100 * row['mean']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]" if lo is not None else f"{100 * row['mean']:.1f}%"
        if row["arm"] == "real" or row["diff_vs_real"] is None:
            diff = "-"
        else:
            dlo, dhi = row["diff_ci95"]
            diff = f"{100 * row['diff_vs_real']:+.1f} pp [{100 * dlo:+.1f}, {100 * dhi:+.1f}]"
        lines.append(f"| {row['regime']} | {row['arm']} | {acc} | {diff} |")
    return "\n".join(lines)


def _plot(table, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regimes = sorted({r["regime"] for r in table})
    fig, axes = plt.subplots(1, len(regimes), figsize=(5.5 * len(regimes), 4.2), squeeze=False)
    for ax, regime in zip(axes[0], regimes):
        by_arm = {r["arm"]: r for r in table if r["regime"] == regime}
        rows = [by_arm[a] for a in ARMS if a in by_arm]
        ys_all = np.arange(len(ARMS))[::-1]  # one slot per arm in every panel
        ys = [y for y, a in zip(ys_all, ARMS) if a in by_arm]
        for y, r in zip(ys, rows):
            lo, hi = r["ci95"]
            colour = "black" if r["arm"] == "real" else ("tab:blue" if r["arm"].startswith("boomerang") else "tab:grey")
            ax.errorbar(100 * r["mean"], y, xerr=None if lo is None else [[100 * (r["mean"] - lo)], [100 * (hi - r["mean"])]],
                        fmt="o", color=colour, capsize=3)
            ax.scatter([100 * a for a in r["accuracies"]], [y] * len(r["accuracies"]), s=8, color=colour, alpha=0.35)
        base = [r for r in rows if r["arm"] == "real"]
        if base and base[0]["ci95"][0] is not None:
            ax.axvspan(100 * base[0]["ci95"][0], 100 * base[0]["ci95"][1], color="black", alpha=0.08)
        ax.set_yticks(ys_all, [a if a in by_arm else f"{a} (not run)" for a in ARMS])
        ax.set_xlabel("test accuracy (%), 500 real test digits")
        ax.set_title(f"{regime} training images per class")
    fig.suptitle("Augmentation on mnist5k: mean and 95% interval over seeds (dots: single seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def retention_report(args, ds, split, work: pathlib.Path) -> dict:
    """Class retention of the cached Boomerang samples of the pool at each level, and agreement with the global
    arm's labels, by both judges (the reference CNN and the hog-svm judge trained on the same training split;
    boomerang.studies.judges). Writes ``augmentation_retention.json`` into ``--out`` and prints a table."""
    from _common import machine, save_json

    from boomerang.studies.augmentation import label_agreement, sample_retention
    from boomerang.studies.judges import both_judges

    if not (work / "cache").is_dir():
        raise SystemExit(f"no Boomerang samples in {work / 'cache'}: run --stage precompute (--no-global) first")
    judges = both_judges()
    pool = pool_indices(ds, split, args.pool_per_class)
    sources = {relpath(ds, i): int(ds.labels[i]) for c in range(10) for i in pool[c]}
    out = {"judges": {j.name: {"kind": j.kind, **j.info} for j in judges},
           "settings": {k: getattr(args, k) for k in ("pool_per_class", "samples_per_image", "sample_steps", "scheduler")},
           "boomerang_samples": sample_retention(work / "cache", sources, judges)}
    if (work / "global").is_dir() and any((work / "global").glob("[0-9]*.npz")):
        g_images, g_labels, _ = load_global(work)
        out["global_label_agreement"] = {"n": int(len(g_labels)), "by_judge": label_agreement(g_images, g_labels, judges)}
    out["machine"] = machine()
    save_json("augmentation_retention", out, args.out)
    print(retention_table(out))
    return out


def retention_table(out: dict) -> str:
    """README's table: per level, each judge's class retention of the Boomerang samples [95% Wilson CI]."""
    names = list(out["judges"])
    lines = ["| samples | " + " | ".join(f"{j}: keeps the source's class % [95% CI]" for j in names) + " |",
             "|" + " --- |" * (1 + len(names))]

    def cell(r):
        return f"{100 * r['accuracy']:.1f} [{100 * r['accuracy_ci95'][0]:.1f}, {100 * r['accuracy_ci95'][1]:.1f}]"

    for level, r in out["boomerang_samples"].items():
        lines.append(f"| Boomerang L={level} ({r['n_samples']} samples of {r['n_sources']} digits) | "
                     + " | ".join(cell(r["by_judge"][j]) for j in names) + " |")
    g = out.get("global_label_agreement")
    if g:
        lines.append(f"| global samples: agree with their (CNN) label ({g['n']}) | "
                     + " | ".join(cell(g["by_judge"][j]) for j in names) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    work = pathlib.Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    ds, split = load_data()
    if args.stage in ("precompute", "all"):
        print(json.dumps(precompute(args, ds, split, work)), file=sys.stderr)
    if args.stage in ("train", "all"):
        train_all(args, ds, split, work)
    if args.stage in ("report", "all"):
        report(args, work)
    if args.stage == "retention":
        retention_report(args, ds, split, work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
