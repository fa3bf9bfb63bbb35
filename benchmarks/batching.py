"""Throughput against batch size, and the automatic batch size of ``boomerang sample``.

On the bundled model (else its architecture with random weights), 64 samples of
one 28x28 image (level 0.5, 20-step budget = 11 denoiser evaluations, ddpm) go
through the Python API that the CLI uses (``boomerang.api.sample``) with
``batch_size`` 1, 4, 16, 64 and with the automatic choice
(``api.auto_batch_size``: memory-aware, capped). Runs are interleaved; images/s
from the median time. Target: auto is no slower than the best fixed batch by
more than 10% (auto / best >= 0.90).

    .venv/bin/python benchmarks/batching.py [--model DIR] [--device cpu] [--dtype float32] [--repeat 3] [--out DIR]

Writes batching[_<device>_<dtype>].json into --out (default benchmarks/out/; ``--out benchmarks/results`` refreshes the committed copy).
"""

from __future__ import annotations

import time

from _common import bench_parser, bundled_or_standin, machine, median, save_json


def _sync(device):
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def run_all(*, model=None, device="cpu", dtype="float32", repeat=3, n=64, batches=(1, 4, 16, 64)):
    import numpy as np

    from boomerang import api

    folder, desc = bundled_or_standin(model)
    m = api.load(folder, device=device, dtype=dtype)
    rng = np.random.default_rng(0)
    img = (rng.random((28, 28)) * 255).astype(np.uint8)
    auto = api.auto_batch_size(n, device, m, (1, 28, 28))
    configs = {str(b): b for b in batches}
    configs["auto"] = None

    def go(b):
        api.sample(img, model=m, level=0.5, steps=20, num_samples=n, seed=0, batch_size=b, device=device, dtype=dtype)
        _sync(device)

    go(4)  # warm-up
    runs = {k: [] for k in configs}
    for _ in range(repeat):
        for k, b in configs.items():
            t0 = time.perf_counter()
            go(b)
            runs[k].append(time.perf_counter() - t0)
    ips = {k: n / median(v) for k, v in runs.items()}
    fixed = {k: v for k, v in ips.items() if k != "auto"}
    best = max(fixed, key=fixed.get)
    ratio = ips["auto"] / fixed[best]
    res = {"machine": machine(), "model": desc, "device": device, "dtype": dtype, "samples": n,
           "settings": {"level": 0.5, "steps": 20, "scheduler": "ddpm", "denoiser_evals": 11},
           "seconds": runs, "images_per_s": ips, "auto_batch_size": auto, "best_fixed_batch": int(best),
           "auto_over_best": ratio, "target": "auto / best >= 0.90", "met": ratio >= 0.90}
    if device.startswith("cuda"):
        import torch

        res["gpu"] = torch.cuda.get_device_name(device)
    print(f"{desc}: {n} samples, 11 denoiser evaluations each, {device} {dtype}")
    for k, v in ips.items():
        print(f"  batch {k:>4s}{f' (= {auto})' if k == 'auto' else '':8s} {v:7.1f} images/s")
    print(f"  auto ({auto}) / best fixed ({best}) = {ratio:.3f} -> target >= 0.90 {'met' if res['met'] else 'NOT met'}")
    return res


def main(argv=None):
    ap = bench_parser(__doc__, repeat=3)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    res = run_all(model=args.model, device=args.device, dtype=args.dtype, repeat=args.repeat)
    suffix = "" if (args.device, args.dtype) == ("cpu", "float32") else f"_{args.device}_{args.dtype}".replace(":", "")
    save_json("batching" + suffix, res, args.out)


if __name__ == "__main__":
    main()
