"""Privacy-utility curve of Boomerang anonymisation on the bundled model (issue 9).

What it measures, on the training split of ``mnist5k`` (the split the bundled
model and classifier were trained on; ``split.json`` of the model):

* **sources**: ``--n-sources`` training digits (an equal number per class,
  drawn with numpy seed 0). Each is replaced by one Boomerang sample
  (``boomerang_sample``, bundled model, ``--scheduler`` with a step budget of
  ``--steps``, seed 0, sample j = 0 of the digit's dataset index) at each
  level in ``--levels``; samples are quantised to 8 bits as a written PNG is.
  Defaults: 100 sources (10 per class), DDIM with eta 0 and a 10-step budget
  (a start at level L takes about 10 L denoiser evaluations). DDIM with eta 0
  is fast and deterministic: all the randomness is the forward noise, which
  makes it the cautious choice for a privacy estimate (a stochastic reverse
  process such as ``ddpm`` adds more noise and, if anything, lowers
  re-identification).
* **privacy**: a linkage attack (``boomerang.privacy.linkage_attack``): each
  released image ranks all 4000 real training digits (the sources and 3900
  distractors) by distance in pixel space and in the reference classifier's
  feature space; top-1 / top-5 re-identification with Wilson 95% intervals,
  chance = 1/4000 and 5/4000.
* **utility**: test-split accuracy (500 real test digits) of a fresh reference
  CNN (``boomerang.training.classifier.fit_classifier``: the recipe of
  ``boomerang train-classifier`` with a short budget: 12 epochs of batch 32 (48 steps),
  one-cycle peak lr 5e-3 instead of 2e-3 to suit the short budget, last epoch
  kept, no validation data) trained only on the released images with their
  sources' labels; ``--seeds`` training seeds (0, 1, 2); mean with a 95%
  t-interval over the seeds.
* **beside them**: ``real`` (the sources themselves, the ceiling),
  ``synthetic`` (the same number of global samples from pure noise with the
  same scheduler and budget, labelled by the bundled reference classifier's
  argmax, because the model is unconditional), and ``blur`` (a Gaussian blur
  of the sources whose sigma is chosen per level so that the mean SSIM to
  the sources matches Boomerang's at that level: the classical anonymiser at
  matched SSIM).
* also: class retention (the reference classifier's accuracy on the released
  images against the sources' labels) and the mean SSIM to the sources. Class
  retention is given by two judges (``class_retention_by_judge``; issue 20): the
  reference CNN and a classifier of another kind trained on the same training
  split (an RBF SVM on HOG features, :mod:`boomerang.studies.judges`); for the
  synthetic samples, how often each judge agrees with their CNN labels.
* **text arm** (``--text-model``, default ``ldm-mnist5k-text``; ``none``
  skips it): the same sources released through the command users run,
  ``boomerang anonymise SRC --model ldm-mnist5k-text --prompt-template
  "{caption}" --guidance-scale 3 --scheduler ddim --eta 0 --steps 10``, where
  SRC is an ``imagefolder`` whose ``caption`` column holds each digit's class
  caption ("a handwritten seven"); one job for level 0 (the VAE round trip)
  and every level; the outputs (32x32 RGB) are turned back into 28x28 gray
  digits and measured with the same attacks, class retention and utility
  (:mod:`boomerang.studies.privacy_utility`). Its samples are seeded by the job's secret key, as
  for any user, so they differ between runs.

Run (what produced benchmarks/results/privacy_utility.json and docs/privacy_utility.png)::

    OMP_NUM_THREADS=1 nohup .venv/bin/python benchmarks/privacy_utility.py --out benchmarks/results --plots docs > privacy_utility.log 2>&1 &

``--reuse benchmarks/results/privacy_utility.json`` takes the unconditional
arm, real, synthetic and blur from an earlier run with the same sources,
levels, sampler and training recipe, and computes only the text arm.
It writes ``privacy_utility.json`` into ``--out`` (default ``benchmarks/out/``,
git-ignored) and ``privacy_utility.png`` into ``--plots`` (default: the
``--out`` folder); ``--name`` names a variant run's files. ``--quick`` runs a
small smoke version, written as ``privacy_utility_quick`` unless ``--name`` is given.
"""

from __future__ import annotations

import json
import math
import pathlib
import shlex
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import add_out_argument, boomerang_exe, machine, make_parser, plot_path, save_json  # noqa: E402
from _privacy_tables import (  # noqa: E402
    markdown_table, summary_table, text_markdown_table, text_summary_table, text_variants_table)

from boomerang.studies.privacy_utility import (  # noqa: E402
    PROMPT_TEMPLATE, base_settings, reuse_unconditional, text_model_setting)
from boomerang.studies.privacy_utility import release as release_text_arm  # noqa: E402

T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def mean_ci(xs: list[float]) -> dict:
    """Mean and 95% t-interval over seeds."""
    n = len(xs)
    m = sum(xs) / n
    if n < 2:
        return {"mean": m, "ci95": [m, m], "values": xs}
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    h = T975.get(n - 1, 1.96) * sd / math.sqrt(n)
    return {"mean": m, "ci95": [m - h, m + h], "values": xs}


def boomerang_batch(model, x0, level, gens, scheduler, steps, from_noise=False):
    """One call of the library's sampler on a batch: float [B, 1, 28, 28] in [-1, 1] -> same."""
    from boomerang.core import boomerang_sample

    if from_noise:
        return boomerang_sample(model, x0, generators=gens, from_noise=True, scheduler=scheduler, steps=steps).samples
    return boomerang_sample(model, x0, generators=gens, level=level, scheduler=scheduler, steps=steps).samples


def quantise(x):
    """[-1, 1] float -> uint8 0..255 -> back to [-1, 1] (what a written 8-bit PNG holds)."""
    import torch

    q = torch.round((x.clamp(-1, 1) + 1) * 127.5).to(torch.uint8)
    return q.float() / 127.5 - 1.0


def gaussian_blur(x, sigma: float):
    """Gaussian blur of [B, 1, H, W] in [-1, 1] (kernel radius 3 sigma, reflect padding), quantised to 8 bits."""
    import torch
    import torch.nn.functional as F

    if sigma <= 0:
        return x.clone()
    r = max(1, int(math.ceil(3 * sigma)))
    r = min(r, x.shape[-1] - 1)
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-t * t / (2 * sigma * sigma))
    k = k / k.sum()
    y = F.pad(x, (r, r, r, r), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1))
    y = F.conv2d(y, k.view(1, 1, -1, 1))
    return quantise(y)


def mean_ssim(a, b) -> float:
    from boomerang.privacy.features import paired_ssim

    return float(paired_ssim((a + 1) / 2, (b + 1) / 2).mean())


def match_blur(x, target: float, lo: float = 0.05, hi: float = 20.0, iters: int = 22) -> tuple[float, float]:
    """The sigma whose blur has mean SSIM ``target`` to ``x`` (bisection; SSIM falls as sigma grows).
    Returns (sigma, achieved mean SSIM); clamps to [lo, hi] when the target is out of reach."""
    s_lo, s_hi = mean_ssim(gaussian_blur(x, lo), x), mean_ssim(gaussian_blur(x, hi), x)
    if target >= s_lo:
        return lo, s_lo
    if target <= s_hi:
        return hi, s_hi
    for _ in range(iters):
        mid = math.sqrt(lo * hi)
        if mean_ssim(gaussian_blur(x, mid), x) > target:
            lo = mid
        else:
            hi = mid
    sigma = math.sqrt(lo * hi)
    return sigma, mean_ssim(gaussian_blur(x, sigma), x)


def parse_args(argv=None):
    ap = make_parser(__doc__, first_paragraph=True)
    ap.add_argument("--n-sources", type=int, default=100, help="training digits replaced (an equal number per class)")
    ap.add_argument("--levels", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0",
                    help="comma-separated Boomerang levels of the released images")
    ap.add_argument("--scheduler", default="ddim", help="Boomerang reverse process (ddim: eta 0)")
    ap.add_argument("--steps", type=int, default=10, help="step budget of a full chain")
    ap.add_argument("--epochs", type=int, default=12, help="training epochs of the utility classifier")
    ap.add_argument("--train-batch-size", type=int, default=32, help="batch of the utility classifier's training")
    ap.add_argument("--lr", type=float, default=5e-3, help="peak one-cycle learning rate of the utility classifier")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds of the utility classifier")
    ap.add_argument("--batch-size", type=int, default=100, help="images per sampling call")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--text-model", type=text_model_setting, default="ldm-mnist5k-text",
                    help="text arm: the text-conditioned model given to `boomerang anonymise --model` "
                         "(each source's class caption as its prompt); `none` skips the arm")
    ap.add_argument("--guidance-scale", type=float, default=3.0, help="text arm: classifier-free guidance scale")
    ap.add_argument("--prompt-template", default=PROMPT_TEMPLATE,
                    help="text arm: anonymise's --prompt-template over the sources' label/caption columns "
                         "(default: %(default)s, the class caption); '' gives every item the empty prompt (a control)")
    ap.add_argument("--reuse", metavar="JSON",
                    help="take the unconditional arm (and real, synthetic, blur) from this results file instead of "
                         "recomputing it; refused unless its sources, levels, sampler and training recipe are these "
                         "(default: compute it)")
    ap.add_argument("--verified", action="store_true",
                    help="instead of the curve: plain vs verified release (anonymise --verify-top, pixel features, "
                         "the 4000 real digits as the attacker's set) at --verified-levels, for the unconditional "
                         "and the text model, written as <--name>_verified.json (default: the curve)")
    ap.add_argument("--verified-levels", default="0.7,0.8,0.9", help="--verified: the levels compared")
    ap.add_argument("--verify-top", type=int, default=1, help="--verified: anonymise --verify-top K")
    ap.add_argument("--verify-max-level", type=float, default=None,
                    help="--verified: anonymise --max-level (default: none, redraws only reseed)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 20 sources, 2 levels, 1 seed, 1 epoch")
    ap.add_argument("--replot", metavar="JSON", nargs="+",
                    help="only redraw the plot (into --plots, as <--name>.png) and print the tables from a results "
                         "file (a --verified run's file: print its table); with more files (runs with other --prompt-template / --guidance-scale), also the "
                         "table that compares their text arms (default: run the measurement)")
    add_out_argument(ap, plots=True, name="privacy_utility")
    args = ap.parse_args(argv)
    if args.quick:
        args.n_sources, args.levels, args.seeds, args.epochs = 20, "0.5,1.0", "0", 1
        if args.name == "privacy_utility":  # a smoke run never takes the main run's file names
            args.name = "privacy_utility_quick"
    return args


def evaluate(conditions: list[dict], released: dict, data: dict, seeds: list[int], args) -> dict:
    """Fill in each condition's SSIM to source, class retention, re-identification (both attacks) and
    utility (``--seeds`` fresh reference CNNs trained on ``released[c["key"]]``), in place.
    Returns ``{"attack_s": ..., "utility_s": ...}``."""
    import torch

    from boomerang.classifier import classifier_accuracy
    from boomerang.training.classifier import fit_classifier

    clf, x_real, y_src = data["clf"], data["x_real"], data["y_src"]
    t0 = time.monotonic()
    for c in conditions:
        x = released[c["key"]]
        c["ssim_to_source"] = None if c["condition"] == "synthetic" else mean_ssim(x, x_real)
        with torch.no_grad():
            pred = torch.cat([clf(x[i:i + 500]).argmax(1) for i in range(0, len(x), 500)])
        c["class_retention"] = None if c["condition"] == "synthetic" else float((pred == y_src).float().mean())
        # both judges (the reference CNN and the hog-svm judge trained on the same split; issue 20): class
        # retention against the sources' classes, or for synthetic samples agreement with their (CNN) labels
        c["class_retention_by_judge"] = judge_retention(
            data["judges"], x, data["y_synth"] if c["condition"] == "synthetic" else y_src)
        if c["condition"] != "synthetic":  # synthetic images have no source to find
            c["reid"] = {}
            for feats in ("pixels", "classifier"):
                rep = data["attacks"][feats].run(x, data["src_pos"])
                c["reid"][feats] = {**{f"top{k}": rep.top[k].to_dict() for k in (1, 5)},
                                    "chance_top1": rep.chance(1), "chance_top5": rep.chance(5),
                                    "median_rank": rep.median_rank}
    timings = {"attack_s": round(time.monotonic() - t0, 1)}
    log(f"attacks done in {timings['attack_s']} s")
    t0 = time.monotonic()
    for c in conditions:
        x = released[c["key"]]
        y = data["y_synth"] if c["condition"] == "synthetic" else y_src
        accs = []
        for s in seeds:
            net, info = fit_classifier(x, y, epochs=args.epochs, batch_size=args.train_batch_size, lr=args.lr, seed=s)
            accs.append(classifier_accuracy(net, data["x_test"], data["y_test"]))
        c["utility"] = mean_ci(accs)
        c["train_steps"] = info["steps"]
        log(f"{c['key']}: utility {c['utility']['mean']:.3f} {accs}"
            + (f", top-1 pixels {c['reid']['pixels']['top1']['rate']:.3f} classifier "
               f"{c['reid']['classifier']['top1']['rate']:.3f}" if "reid" in c else ""))
    timings["utility_s"] = round(time.monotonic() - t0, 1)
    return timings


def judge_retention(judges, x, y) -> dict:
    """Each judge's share of ``x`` (``[N, 1, 28, 28]`` in [-1, 1]) labelled ``y``: ``{name: {"accuracy",
    "accuracy_ci95", "correct", "n"}}`` (boomerang.studies.judges.retention without the per-digit string)."""
    from boomerang.studies.judges import retention

    return {j: {k: v for k, v in r.items() if k != "correct_by_digit"}
            for j, r in retention(judges, x, y.numpy(), signed=True).items()}


def first_level(conditions: list[dict], condition: str):
    """The first level of ``condition`` where top-1 re-identification is <= 5% with both attacks (or None)."""
    first = next((c for c in conditions if c["condition"] == condition
                  and c["reid"]["pixels"]["top1"]["rate"] <= 0.05 and c["reid"]["classifier"]["top1"]["rate"] <= 0.05),
                 None)
    return None if first is None else {
        "level": first["level"], "utility": first["utility"]["mean"], "utility_ci95": first["utility"]["ci95"],
        "class_retention": first["class_retention"],
        "top1_pixels": first["reid"]["pixels"]["top1"]["rate"],
        "top1_classifier": first["reid"]["classifier"]["top1"]["rate"]}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.replot:
        results = [json.loads(pathlib.Path(p).read_text()) for p in args.replot]
        result = results[0]
        if result.get("study") == "plain vs verified release":  # a --verified run: its table only
            from _privacy_verified import verified_table

            print(verified_table(result))
            return 0
        print(markdown_table(result))
        print()
        print(summary_table(result))
        if result.get("text_arm"):
            print()
            print(text_markdown_table(result))
            print()
            print(text_summary_table(result))
        if len(results) > 1:
            print()
            print(text_variants_table([r for r in results if r.get("text_arm")]))
        plot(result, plot_path(args, f"{args.name}.png"))
        return 0

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from boomerang.assets import default_model_path
    from boomerang.classifier import load_classifier
    from boomerang.data import load_dataset, load_split
    from boomerang.privacy.attack import LinkageAttack
    from boomerang.studies.judges import both_judges

    t_start = time.monotonic()
    levels = [float(v) for v in args.levels.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    ds = load_dataset("mnist5k")
    split = load_split(default_model_path() / "split.json")
    train_idx, test_idx = np.asarray(split["train"]), np.asarray(split["test"])
    per_class = args.n_sources // 10
    rng = np.random.default_rng(0)
    sources = np.sort(np.concatenate([rng.choice(train_idx[ds.labels[train_idx] == c], per_class, replace=False)
                                      for c in range(10)]))
    to_x = lambda idx: torch.from_numpy(ds.images[idx]).float() / 127.5 - 1.0  # noqa: E731
    cand_pos = {int(d): i for i, d in enumerate(train_idx)}
    data = {"ds": ds, "sources": sources, "train_idx": train_idx,
            "x_real": to_x(sources), "y_src": torch.from_numpy(ds.labels[sources]),
            "candidates": to_x(train_idx),  # the attacker holds every real training digit
            "src_pos": np.array([cand_pos[int(d)] for d in sources]),
            "x_test": to_x(test_idx), "y_test": torch.from_numpy(ds.labels[test_idx]), "clf": load_classifier(),
            "judges": both_judges()}
    settings = base_settings(args, int(len(sources)), int(len(train_idx)), int(len(test_idx)), levels, seeds)
    log(f"{len(sources)} sources, {len(train_idx)} candidates, {len(test_idx)} test digits; levels {levels}")
    data["attacks"] = {feats: LinkageAttack(data["candidates"], feats) for feats in ("pixels", "classifier")}

    command = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/privacy_utility.py " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    if args.verified:
        from _privacy_verified import verified_arm, verified_table

        result = verified_arm(args, data, seeds, log, evaluate)
        result.update(command=command, settings=settings, machine=machine())
        print(verified_table(result))
        save_json(f"{args.name}_verified", result, args.out)
        log(f"total {time.monotonic() - t_start:.0f} s")
        return 0
    if args.reuse:
        try:
            result = reuse_unconditional(args.reuse, settings)
        except ValueError as e:
            raise SystemExit(str(e)) from None
        log(f"unconditional arm taken from {args.reuse} (run {result['machine']['utc']})")
    else:
        result = unconditional_arm(args, data, settings, levels, seeds)
        result["command"] = command
    result.pop("text_arm", None)
    if args.text_model:
        result["text_arm"] = text_arm(args, data, levels, seeds)
        result["text_arm"]["command"] = command
    print(markdown_table(result))
    if result.get("text_arm"):
        print()
        print(text_markdown_table(result))
    save_json(args.name, result, args.out)
    plot(result, plot_path(args, f"{args.name}.png"))
    log(f"total {time.monotonic() - t_start:.0f} s")
    return 0


def unconditional_arm(args, data: dict, settings: dict, levels, seeds) -> dict:
    """The bundled unconditional model at each level, synthetic and blur at matched SSIM, real: the rows of
    ``result["conditions"]``."""
    import torch

    from boomerang.models import load_model
    from boomerang.seeds import item_generator

    timings: dict[str, float] = {}
    t_start = time.monotonic()
    model = load_model(None, device="cpu", dtype="float32")
    sources, x_real, clf = data["sources"], data["x_real"], data["clf"]

    def release(level=None, from_noise=False):
        outs = []
        for i in range(0, len(sources), args.batch_size):
            idx = sources[i:i + args.batch_size]
            gens = [item_generator(0, int(d), 0) for d in idx]
            outs.append(quantise(boomerang_batch(model, x_real[i:i + len(idx)], level, gens, args.scheduler,
                                                 args.steps, from_noise)))
        return torch.cat(outs)

    conditions: list[dict] = []
    released: dict[str, torch.Tensor] = {}

    t0 = time.monotonic()
    for level in levels:
        t1 = time.monotonic()
        x = release(level)
        released[f"boomerang@{level:g}"] = x
        conditions.append({"condition": "boomerang", "level": level, "key": f"boomerang@{level:g}",
                           "sample_s": round(time.monotonic() - t1, 1)})
        log(f"level {level:g}: sampled in {time.monotonic() - t1:.0f} s")
    t1 = time.monotonic()
    synth = release(from_noise=True)
    with torch.no_grad():
        data["y_synth"] = torch.cat([clf(synth[i:i + 500]).argmax(1) for i in range(0, len(synth), 500)])
    released["synthetic"] = synth
    log(f"synthetic: sampled in {time.monotonic() - t1:.0f} s")
    timings["sampling_s"] = round(time.monotonic() - t0, 1)

    t0 = time.monotonic()
    for c in list(conditions):
        target = mean_ssim(released[c["key"]], x_real)
        sigma, achieved = match_blur(x_real, target)
        key = f"blur@{c['level']:g}"
        released[key] = gaussian_blur(x_real, sigma)
        conditions.append({"condition": "blur", "level": c["level"], "key": key, "sigma": round(sigma, 4),
                           "target_ssim": target})
        log(f"blur for level {c['level']:g}: sigma {sigma:.3f}, SSIM {achieved:.3f} (target {target:.3f})")
    timings["blur_matching_s"] = round(time.monotonic() - t0, 1)
    released["real"] = x_real
    conditions = ([{"condition": "real", "level": 0.0, "key": "real"}] + conditions
                  + [{"condition": "synthetic", "level": None, "key": "synthetic",
                      "labels": "reference classifier argmax (the model is unconditional)"}])

    timings.update(evaluate(conditions, released, data, seeds, args))
    timings["total_s"] = round(time.monotonic() - t_start, 1)
    return {
        "settings": {**settings, "model": "bundled ddpm-mnist5k", "classifier": "bundled classifier-mnist5k",
                     "threads": args.threads, "quick": args.quick},
        "machine": machine(),
        "timings": timings,
        "first_level_top1_at_most_5pct": first_level(conditions, "boomerang"),
        "conditions": [{k: v for k, v in c.items() if k != "key"} for c in conditions],
    }


def text_arm(args, data: dict, levels, seeds) -> dict:
    """The same sources released by ``boomerang anonymise --model TEXT_MODEL --prompt-template "{caption}"``
    (:func:`boomerang.studies.privacy_utility.release`; level 0 = the VAE round trip, then ``levels``),
    evaluated as the unconditional arm: the ``text_arm`` part of the results."""
    t_start = time.monotonic()
    conditions, released, info = release_text_arm(args, data, [0.0] + [v for v in levels if v != 0],
                                                  exe=boomerang_exe())
    timings = {"anonymise_s": info.pop("anonymise_s")}
    timings.update(evaluate(conditions, released, data, seeds, args))
    timings["total_s"] = round(time.monotonic() - t_start, 1)
    return {**info, "machine": machine(), "timings": timings,
            "first_level_top1_at_most_5pct": first_level(conditions, "boomerang_text"),
            "conditions": [{k: v for k, v in c.items() if k != "key"} for c in conditions]}


def plot(result: dict, path: pathlib.Path) -> None:
    """The figure (:func:`_privacy_plot.plot`), written to ``path``."""
    from _privacy_plot import plot as draw

    draw(result, path)
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


if __name__ == "__main__":
    raise SystemExit(main())
