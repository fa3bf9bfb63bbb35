"""Text-conditioned behaviour of the bundled latent model ``ldm-mnist5k-text`` (issue 12). Not a unit test.

The reference classifier (``boomerang.classifier``, 28x28 gray in [-1, 1]) is
the only feature network: model images (RGB 32x32) are averaged over the
channels and centre-cropped to 28x28 (:func:`boomerang.training.ldm_parts.rgb32_to_digits`).
Class prompts are ``"a handwritten <word>"`` (``boomerang.training.ldm_parts.class_prompt``).

1. ``vae``: round trip (posterior mode, then decode) of the test split: PSNR
   (pixels in [0, 1], 32x32 RGB) and the classifier's accuracy on the
   originals and on the round trips.
2. ``text_to_image``: global samples (``from_noise``, ddim eta 0, --t2i-steps)
   for each class prompt at each --guidance; share classified as the prompted
   class (95% Wilson intervals), per class and overall.
3. ``boomerang_own_caption``: Boomerang (exact schedule, the paper's
   stochastic ddpm reverse process, --steps budget) on class-balanced test
   digits with their own class prompt: class retention and SSIM to the input
   at levels 0.1 .. 1.0.
4. ``guided``: test digits of class a with the prompt of class b != a (b runs
   over the 9 other classes): share classified as b, share still a and SSIM to
   the input against the level; the first level at which b wins over a.
   Plot: latent_guided.png.
5. ``reference``: the authors' notebook schedule (noise at int(T level),
   dpmsolver++ with --reference-steps and pndm with twice that, posterior mode) at
   every level: that it runs, evaluations, finite output, class retention.
6. ``negative_prompt``: share of the prompted class at guidance 1, 3, 7.5, 12
   without and with a negative prompt (the prompt of the class that the model
   confused most often with the prompted one at guidance 3 in part 2); the same seeds as part 2, whose
   samples are reused for the cells without a negative prompt.

Writes ``latent_quality.json`` into ``--out`` (default ``benchmarks/out/``,
git-ignored; rewritten after every part) and ``latent_guided.png`` into
``--plots`` (default: the ``--out`` folder); ``--out benchmarks/results --plots
docs`` refreshes the committed copies.

    .venv/bin/python benchmarks/latent_quality.py --threads 1          # the sizes recorded in the JSON
    .venv/bin/python benchmarks/latent_quality.py --quick              # tiny counts (smoke run)
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

from boomerang.stats import wilson  # noqa: E402

LEVELS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
TARGETS = {"text_to_image_best_share_min": 0.90}


def parse_args(argv=None):
    p = make_parser(__doc__, first_paragraph=True)
    p.add_argument("--model", default="ldm-mnist5k-text", help="model folder or short name")
    p.add_argument("--classifier", default=None, help="classifier folder (default: the bundled one)")
    p.add_argument("--quick", action="store_true", help="tiny counts for a smoke run")
    p.add_argument("--guidance", default="1,3,7.5", help="guidance scales of part 2")
    p.add_argument("--n-t2i", type=int, default=100, help="global samples per class prompt and guidance")
    p.add_argument("--t2i-steps", type=int, default=25, help="ddim steps of the global samples of part 2")
    p.add_argument("--n-inputs", type=int, default=500, help="test digits of part 3 (500 = the whole test split)")
    p.add_argument("--n-guided", type=int, default=100, help="test digits of part 4")
    p.add_argument("--n-reference", type=int, default=20, help="test digits of part 5")
    p.add_argument("--n-negative", type=int, default=20, help="samples per class and cell of part 6")
    p.add_argument("--steps", type=int, default=50, help="Boomerang step budget of a full chain")
    p.add_argument("--reference-steps", type=int, default=50,
                   help="part 5: dpmsolver++ steps; pndm gets twice as many (the notebook: 50 and 100)")
    p.add_argument("--boomerang-guidance", type=float, default=7.5, help="guidance of parts 3-5")
    p.add_argument("--batch", type=int, default=250, help="images per sampling call")
    p.add_argument("--seed", type=int, default=0, help="base seed of the samples")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    add_out_argument(p, plots=True)
    a = p.parse_args(argv)
    if a.quick:
        a.n_t2i, a.n_inputs, a.n_guided, a.n_reference, a.n_negative = 4, 20, 10, 2, 2
        a.t2i_steps, a.steps, a.reference_steps = min(a.t2i_steps, 5), min(a.steps, 10), min(a.reference_steps, 5)
    a.guidance = [float(g) for g in a.guidance.split(",") if g.strip()]
    return a


def share(hits) -> dict:
    hits = np.asarray(hits, dtype=bool)
    return {"share": round(float(hits.mean()), 4) if len(hits) else None, "n": int(len(hits)),
            "ci95": wilson(int(hits.sum()), len(hits))}


def mean_ci(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    half = 1.96 * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
    return {"mean": round(float(v.mean()), 4), "ci95": [round(float(v.mean() - half), 4), round(float(v.mean() + half), 4)],
            "n": int(len(v))}


def balanced(labels: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` indices of ``idx``, round-robin over the classes (class-balanced, in split order)."""
    per = [list(idx[labels[idx] == c]) for c in range(10)]
    out: list[int] = []
    while len(out) < n and any(per):
        for c in range(10):
            if per[c] and len(out) < n:
                out.append(per[c].pop(0))
    return np.asarray(out)


class PerItemPrompts:
    """A model proxy that gives every item of one ``boomerang_sample`` call its own prompt.

    ``boomerang_sample`` takes one prompt per call; the model's ``predict``
    accepts embeddings ``[B, L, D]`` as well as ``[1, L, D]``. This proxy's
    ``encode_prompt`` stacks the per-item embeddings (each from the real
    model's ``encode_prompt``), so a mixed-prompt batch is one batched call
    per reverse step instead of one call per class: the same samples as one
    call per prompt (up to float summation order, ``batch_invariant`` is off
    here), about 10x fewer network calls on this CPU. Everything else is the
    real model's.
    """

    def __init__(self, model, prompts, negatives):
        self._model, self._prompts, self._negatives = model, list(prompts), list(negatives)

    def encode_prompt(self, prompt: str = "", negative_prompt: str = "", guidance_scale: float = 1.0):
        import torch

        pairs = [self._model.encode_prompt(p, n, guidance_scale) for p, n in zip(self._prompts, self._negatives)]
        cond = torch.cat([c for c, _ in pairs])
        uncond = None if pairs[0][1] is None else torch.cat([u for _, u in pairs])
        return cond, uncond

    def __getattr__(self, name):
        return getattr(self._model, name)


def main(argv=None) -> int:  # noqa: C901 - one figure after another, in the order of the docstring
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from skimage.metrics import structural_similarity

    from boomerang.classifier import load_classifier
    from boomerang.core import boomerang_sample
    from boomerang.data import load_dataset, load_split
    from boomerang.training.ldm_parts import class_prompt, digits_to_rgb32, rgb32_to_digits
    from boomerang.models import load_model, resolve_model
    from boomerang.seeds import item_generator

    t_start = time.monotonic()
    timings: dict[str, float] = {}
    model_dir = resolve_model(args.model, json_only=True)
    model = load_model(str(model_dir))
    model.batch_invariant = False  # batched UNet calls: faster; per-item generators keep samples seed-defined
    clf = load_classifier(args.classifier)
    ds = load_dataset("mnist5k")
    split = load_split(model_dir / "split.json")
    labels = ds.labels
    test_idx = np.asarray(split["test"])
    x_all = digits_to_rgb32(ds.images)  # [N, 3, 32, 32] in [-1, 1]

    @torch.no_grad()
    def classify(x: torch.Tensor) -> np.ndarray:
        d = rgb32_to_digits(x.clamp(-1, 1))
        return torch.cat([clf(d[i:i + 500]).argmax(1) for i in range(0, len(d), 500)]).numpy()

    def ssim(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
        a01 = ((rgb32_to_digits(a.clamp(-1, 1))[:, 0] + 1) / 2).numpy()
        b01 = ((rgb32_to_digits(b.clamp(-1, 1))[:, 0] + 1) / 2).numpy()
        return np.array([structural_similarity(p, q, data_range=1.0, win_size=7) for p, q in zip(a01, b01)])

    def run(x0: torch.Tensor, keys, prompts, negatives=None, **kw) -> tuple[torch.Tensor, int]:
        """Samples of x0 [N, 3, 32, 32] with prompts[i] (and negatives[i]), item i from
        item_generator(seed, *keys[i]); and the evaluations per sample."""
        outs, evals = [], 0
        negatives = negatives if negatives is not None else [""] * len(prompts)
        for i in range(0, len(x0), args.batch):
            sl = slice(i, i + args.batch)
            gens = [item_generator(args.seed, a, b) for a, b in keys[sl]]
            with torch.no_grad():
                o = boomerang_sample(PerItemPrompts(model, prompts[sl], negatives[sl]), x0[sl], generators=gens, **kw)
            outs.append(o.samples)
            evals = o.num_denoiser_evals
        return torch.cat(outs), evals

    res: dict = {"model": str(model_dir), "weights_sha256": model.weights_sha256, "targets": TARGETS,
                 "settings": {k: v for k, v in vars(args).items() if k not in ("out", "plots")},
                 "command": " ".join(["python benchmarks/latent_quality.py", *(argv if argv is not None else sys.argv[1:])]),
                 "machine": machine(), "prompt_template": class_prompt(7).replace("seven", "<word>")}

    out_json = args.out / "latent_quality.json"

    def save() -> None:  # after every part, so that a failure later keeps the figures so far
        import json

        res["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")

    # 1. VAE round trip on the test split.
    t0 = time.monotonic()
    x_test = x_all[test_idx]
    with torch.no_grad():
        rec = torch.cat([model.decode(model.encode(x_test[i:i + 250])) for i in range(0, len(x_test), 250)]).clamp(-1, 1)
    mse = (((rec + 1) / 2 - (x_test + 1) / 2) ** 2).flatten(1).mean(1).numpy()
    psnr = 10 * np.log10(1.0 / np.maximum(mse, 1e-12))
    res["vae"] = {"psnr_db": mean_ci(psnr), "n": int(len(test_idx)),
                  "classifier_accuracy_original": share(classify(x_test) == labels[test_idx]),
                  "classifier_accuracy_round_trip": share(classify(rec) == labels[test_idx])}
    timings["vae_s"] = time.monotonic() - t0
    save()
    print("vae", res["vae"], flush=True)

    # 2. Text to image at each guidance scale: all class prompts in one batched call.
    t0 = time.monotonic()
    t2i: dict = {}
    preds: dict[float, np.ndarray] = {}
    cls2 = np.repeat(np.arange(10), args.n_t2i)
    keys2 = [(100_000 + int(c), i % args.n_t2i) for i, c in enumerate(cls2)]
    prompts2 = [class_prompt(c) for c in cls2]
    for w in args.guidance:
        out, _ = run(torch.zeros(len(cls2), 3, 32, 32), keys2, prompts2, from_noise=True, scheduler="ddim",
                     steps=args.t2i_steps, eta=0.0, guidance_scale=w)
        pred = classify(out)
        preds[w] = pred
        t2i[str(w)] = {"overall": share(pred == cls2),
                       "per_class": {str(c): share(pred[cls2 == c] == c) for c in range(10)},
                       "confusion": [np.bincount(pred[cls2 == c], minlength=10).tolist() for c in range(10)]}
        print("t2i", w, t2i[str(w)]["overall"], flush=True)
    best = max(t2i, key=lambda k: t2i[k]["overall"]["share"])
    res["text_to_image"] = {"by_guidance": t2i, "best_guidance": float(best),
                            "best_share": t2i[best]["overall"]["share"],
                            "meets_target": t2i[best]["overall"]["share"] >= TARGETS["text_to_image_best_share_min"],
                            "scheduler": "ddim", "eta": 0.0, "steps": args.t2i_steps,
                            "samples_per_class": args.n_t2i}
    timings["text_to_image_s"] = time.monotonic() - t0
    save()

    # 3. Boomerang with the input's own caption.
    t0 = time.monotonic()
    idx3 = balanced(labels, test_idx, args.n_inputs)
    own: dict = {}
    for level in LEVELS:
        out, _ = run(x_all[idx3], [(int(i), 0) for i in idx3], [class_prompt(c) for c in labels[idx3]], level=level,
                     scheduler="ddpm", steps=args.steps, guidance_scale=args.boomerang_guidance)
        own[str(level)] = {"retention": share(classify(out) == labels[idx3]), "ssim": mean_ci(ssim(out, x_all[idx3]))}
        print("own", level, own[str(level)]["retention"], flush=True)
    res["boomerang_own_caption"] = {"by_level": own, "scheduler": "ddpm", "schedule": "exact", "steps": args.steps,
                                    "guidance_scale": args.boomerang_guidance, "n_inputs": int(len(idx3))}
    timings["boomerang_own_caption_s"] = time.monotonic() - t0
    save()

    # 4. Guided local sampling: class a with the prompt of class b.
    t0 = time.monotonic()
    idx4 = balanced(labels, test_idx, args.n_guided)
    a4 = labels[idx4]
    b4 = (a4 + 1 + np.arange(len(idx4)) % 9) % 10  # the 9 other classes in turn
    guided: dict = {}
    for level in LEVELS:
        out, _ = run(x_all[idx4], [(int(i), 1) for i in idx4], [class_prompt(b) for b in b4], level=level,
                     scheduler="ddpm", steps=args.steps, guidance_scale=args.boomerang_guidance)
        p = classify(out)
        guided[str(level)] = {"share_prompted_b": share(p == b4), "share_input_a": share(p == a4),
                              "ssim": mean_ci(ssim(out, x_all[idx4]))}
        print("guided", level, guided[str(level)]["share_prompted_b"], flush=True)
    wins = [lv for lv in LEVELS if guided[str(lv)]["share_prompted_b"]["share"] > guided[str(lv)]["share_input_a"]["share"]]
    res["guided"] = {"by_level": guided, "prompt_wins_from_level": wins[0] if wins else None,
                     "n_inputs": int(len(idx4)), "scheduler": "ddpm", "steps": args.steps,
                     "guidance_scale": args.boomerang_guidance}
    timings["guided_s"] = time.monotonic() - t0
    save()

    # 5. The reference (notebook) schedule with dpmsolver++ and pndm.
    t0 = time.monotonic()
    idx5 = balanced(labels, test_idx, args.n_reference)
    ref: dict = {}
    for sched, steps in (("dpmsolver++", args.reference_steps), ("pndm", 2 * args.reference_steps)):
        rows = {}
        for level in LEVELS:
            out, evals = run(x_all[idx5], [(int(i), 2) for i in idx5], [class_prompt(c) for c in labels[idx5]],
                             level=level, schedule="reference", scheduler=sched, steps=steps,
                             guidance_scale=args.boomerang_guidance)
            rows[str(level)] = {"ran": True, "finite": bool(torch.isfinite(out).all()), "denoiser_evals": evals,
                                "retention": share(classify(out) == labels[idx5])}
        ref[sched] = {"steps": steps, "by_level": rows}
    res["reference"] = {"by_scheduler": ref, "n_inputs": int(len(idx5)), "guidance_scale": args.boomerang_guidance}
    timings["reference_s"] = time.monotonic() - t0
    save()

    # 6. Negative prompt and guidance scale (the same seeds with and without the negative prompt).
    t0 = time.monotonic()
    w_conf = 3.0 if 3.0 in preds else args.guidance[0]
    neg_class = {}
    for c in range(10):
        p = preds[w_conf][cls2 == c]
        wrong = np.bincount(p[p != c], minlength=10)
        neg_class[c] = int(np.argmax(wrong)) if wrong.sum() else (c + 1) % 10
    table: dict = {}
    cls6 = np.repeat(np.arange(10), args.n_negative)
    keys6 = [(100_000 + int(c), i % args.n_negative) for i, c in enumerate(cls6)]  # part 2's first seeds per class
    first = np.concatenate([np.arange(c * args.n_t2i, c * args.n_t2i + args.n_negative) for c in range(10)])
    for w in (1.0, 3.0, 7.5, 12.0):
        for with_neg in (False, True):
            if w <= 1 and with_neg:  # no unconditional pass: the negative prompt is never encoded
                table[f"{w}|negative"] = table[f"{w}|none"]
                continue
            if not with_neg and w in preds and args.n_negative <= args.n_t2i:  # the same samples as part 2
                table[f"{w}|none"] = share(preds[w][first] == cls6)
                continue
            negs = [class_prompt(neg_class[c]) if with_neg else "" for c in cls6]
            out, _ = run(torch.zeros(len(cls6), 3, 32, 32), keys6, [class_prompt(c) for c in cls6], negs,
                         from_noise=True, scheduler="ddim", steps=args.t2i_steps, eta=0.0, guidance_scale=w)
            table[f"{w}|{'negative' if with_neg else 'none'}"] = share(classify(out) == cls6)
        print("neg", w, table[f"{w}|none"], table[f"{w}|negative"], flush=True)
    res["negative_prompt"] = {"table": table, "negative_of_class": {str(c): class_prompt(n) for c, n in neg_class.items()},
                              "note": "at guidance <= 1 there is no unconditional pass, so the negative prompt has "
                                      "no effect (the same samples)",
                              "samples_per_class": args.n_negative, "steps": args.t2i_steps}
    timings["negative_prompt_s"] = time.monotonic() - t0

    timings["total_s"] = time.monotonic() - t_start
    save()
    print(f"wrote {out_json}")
    plot(res, plot_path(args, "latent_guided.png"))
    return 0


def plot(res: dict, path: str) -> None:
    """latent_guided.png (docs/ shows it): guided local sampling (class a, prompt b) and own-caption retention vs level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = res["guided"]["by_level"]
    o = res["boomerang_own_caption"]["by_level"]
    lv = [float(k) for k in g]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for key, label, style in (("share_prompted_b", "prompt b wins (share classified b)", "-o"),
                              ("share_input_a", "input a kept (share classified a)", "-s")):
        y = [g[k][key]["share"] for k in g]
        lo = [g[k][key]["ci95"][0] for k in g]
        hi = [g[k][key]["ci95"][1] for k in g]
        ax.plot(lv, y, style, label=label)
        ax.fill_between(lv, lo, hi, alpha=0.2)
    ax.plot(lv, [g[k]["ssim"]["mean"] for k in g], "-^", label="SSIM to the input (prompt b)")
    ax.plot([float(k) for k in o], [o[k]["retention"]["share"] for k in o], "--", color="gray",
            label="own caption: class retention")
    ax.set_xlabel("Boomerang level (t / T)")
    ax.set_ylabel("share / SSIM")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"ldm-mnist5k-text: digit a, prompt of b != a (n={res['guided']['n_inputs']}, "
                 f"guidance {res['guided']['guidance_scale']})", fontsize=9)
    ax.legend(fontsize=8, loc="center left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
