"""Every model family at full size on a CUDA GPU (random weights), then items 1-3 of the suite.

Families (``benchmarks/configs/gpu_families.json``: SD 1.5, SDXL base, SD 3.5
medium, FLUX.1-dev, an LCM on the SD 1.5 layout), each built at its public
checkpoint's size from the published configs with seeded random weights
(``boomerang.testing.random_families``; nothing is downloaded), per dtype
(default float16 and bfloat16), with and without ``--cpu-offload``:

* denoiser evaluations per second: ``model.predict`` on one image at the
  family's native size (512 or 1024 pixels) with its usual guidance (SD 1.5 /
  SDXL / SD 3.5: classifier-free, so one evaluation is a batch of 2; FLUX.1-dev
  and LCM: embedded guidance, batch 1), after one warm-up call, median of
  ``--repeat`` timed calls;
* peak GPU memory of a Boomerang run (level 0.5, 4 steps, batch 1:
  encode, prompt, denoiser, decode), ``torch.cuda.max_memory_allocated``;
* finiteness: whether that run's output is finite in the dtype (random
  weights at full depth: a NaN here says the dtype's range was exceeded by
  random activations, not that the real checkpoint would overflow);
* the parameters of every component (checked against the public sizes).

Then, unless ``--families-only``, the suite's items 1-3 as before (overhead.py,
vs_diffusers.py, batching.py). Without a CUDA GPU it says so and exits with
status 2, writing nothing. ``--tiny`` runs the same code on the tiny configs
on any device (the CPU here; float32 and bfloat16 by default; offload there
moves nothing but runs the same hooks): a test runs it end to end. ``--count`` prints the full-size parameter counts (meta device, no
memory, no GPU) and exits.

    .venv/bin/python benchmarks/gpu.py [--device cuda] [--dtypes float16,bfloat16] [--families sd15,sdxl,...]
                                       [--cpu-offload both|on|off] [--families-only] [--tiny] [--count] [--out DIR]

Writes gpu.json into --out (default benchmarks/out/; ``--out benchmarks/results``
refreshes the committed copy). No GPU was lent to this project: it has never run
at full size here.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

from _common import add_out_argument, machine, make_parser, save_json

CONFIGS = Path(__file__).resolve().parent / "configs" / "gpu_families.json"


def _sync(device):
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def measure_family(name: str, spec: dict, *, device: str, dtype: str, offload: bool, repeat: int) -> dict:
    """One family in one dtype (with or without CPU offload): parameters, denoiser evaluations per
    second, peak memory of a 4-step run at level 0.5 and its finiteness."""
    import torch

    from boomerang.core import boomerang_sample
    from boomerang.testing.random_families import build_random_model

    cuda = str(device).startswith("cuda")
    t0 = time.perf_counter()
    model = build_random_model(spec, device=device, dtype=dtype)
    build_s = time.perf_counter() - t0
    params = {n: sum(p.numel() for p in getattr(model, n).parameters()) for n in spec["components"]}
    if offload:
        model.enable_cpu_offload()  # networks to CPU memory; each moves to the GPU while it runs
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    size = int(spec["image_size"])
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, size, size, generator=g) * 2 - 1
    w = float(spec["guidance_scale"])
    with torch.no_grad():
        cond, uncond = model.encode_prompt("a photo of a cat", "", w)
        c, h, wd = model.model_shape(x.shape[1:])
        z = torch.randn(1, c, h, wd, generator=g).to(model.device)
        t = 500 if model.schedule.kind == "vp" else 500.0
        model.predict(z, t, cond=cond, uncond=uncond, guidance_scale=w)  # warm-up
        times = []
        for _ in range(repeat):
            _sync(device)
            t1 = time.perf_counter()
            model.predict(z, t, cond=cond, uncond=uncond, guidance_scale=w)
            _sync(device)
            times.append(time.perf_counter() - t1)
        out = boomerang_sample(model, x, level=0.5, steps=4, generators=[torch.Generator().manual_seed(1)],
                               prompt="a photo of a cat", guidance_scale=w)
    finite = bool(torch.isfinite(out.samples).all())
    row = {"public": spec["public"], "family": spec["family"], "dtype": dtype, "cpu_offload": offload,
           "image_size": size, "guidance_scale": w, "parameters": params, "build_s": round(build_s, 2),
           "denoiser_evals_per_s": round(1.0 / statistics.median(times), 4),
           "evals_timed": repeat, "run_finite": finite, "run_denoiser_evals": out.plan.num_denoiser_evals,
           "peak_memory_gib": (round(torch.cuda.max_memory_allocated(device) / 2**30, 3) if cuda else None)}
    if offload:
        row["offload_moves"] = list(model._offload.moves)
    del model, out
    if cuda:
        torch.cuda.empty_cache()
    return row


def run_families(*, tiny: bool, device: str, dtypes, families, offload_modes, repeat: int) -> list[dict]:
    specs = json.loads(CONFIGS.read_text(encoding="utf-8"))["tiny" if tiny else "full"]
    rows = []
    for name in families:
        for dtype in dtypes:
            for offload in offload_modes:
                try:
                    row = measure_family(name, specs[name], device=device, dtype=dtype, offload=offload,
                                         repeat=repeat)
                except Exception as exc:  # e.g. out of memory at full size: recorded, the others go on
                    row = {"public": specs[name]["public"], "dtype": dtype, "cpu_offload": offload,
                           "error": f"{type(exc).__name__}: {exc}"[:500]}
                row["name"] = name
                rows.append(row)
                print(f"{name:9s} {dtype:9s} offload={'on ' if offload else 'off'} "
                      + (row["error"] if "error" in row else
                         f"{row['denoiser_evals_per_s']:.3f} evals/s, peak {row['peak_memory_gib']} GiB, "
                         f"finite={row['run_finite']}"), flush=True)
    return rows


def main(argv=None):
    ap = make_parser(__doc__)
    ap.add_argument("--device", default=None, help="cuda or cuda:N (default: cuda; with --tiny: cpu)")
    ap.add_argument("--dtypes", default=None, help="comma-separated precisions (default: float16,bfloat16; "
                    "--tiny: float32,bfloat16)")
    ap.add_argument("--families", default="sd15,sdxl,sd35m,flux_dev,lcm", help="comma-separated (default: all five)")
    ap.add_argument("--cpu-offload", default="both", choices=("both", "on", "off"),
                    help="measure with model CPU offload, without, or both (default: both)")
    ap.add_argument("--repeat", type=int, default=5, help="timed repeats per measurement (the median is reported)")
    ap.add_argument("--families-only", action="store_true", help="skip the suite's items 1-3")
    ap.add_argument("--model", default=None, metavar="DIR",
                    help="items 1-3: pixel model folder (default: the bundled model, else a stand-in with its architecture)")
    ap.add_argument("--tiny", action="store_true", help="the tiny configs, on any device (a check that this runs)")
    ap.add_argument("--count", action="store_true", help="print the full-size parameter counts and exit")
    add_out_argument(ap)
    args = ap.parse_args(argv)
    specs = json.loads(CONFIGS.read_text(encoding="utf-8"))
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [f for f in families if f not in specs["full"]]
    if unknown:
        print(f"benchmarks/gpu.py: unknown --families {', '.join(unknown)}; choose from "
              f"{', '.join(specs['full'])}", file=sys.stderr)
        return 2
    if args.count:
        from boomerang.testing.random_families import count_parameters

        for name in families:
            counts = count_parameters(specs["full"][name])
            print(json.dumps({"name": name, "public": specs["full"][name]["public"], "parameters": counts}))
        return 0
    import torch

    device = args.device or ("cpu" if args.tiny else "cuda")
    if not args.tiny and not (device.startswith("cuda") and torch.cuda.is_available()):
        print("benchmarks/gpu.py: no CUDA GPU is available (torch.cuda.is_available() is "
              f"{torch.cuda.is_available()}, --device {device}; this torch is {torch.__version__}); nothing was "
              "measured or written. Run it on a machine with a CUDA GPU and a CUDA build of torch, or pass --tiny "
              "to check that it runs.", file=sys.stderr)
        return 2
    dtypes = (args.dtypes or ("float32,bfloat16" if args.tiny else "float16,bfloat16")).split(",")
    offload_modes = {"both": (False, True), "on": (True,), "off": (False,)}[args.cpu_offload]
    out = {"machine": machine(), "device": device, "tiny": bool(args.tiny),
           "gpu": torch.cuda.get_device_name(device) if device.startswith("cuda") else None,
           "families": run_families(tiny=args.tiny, device=device, dtypes=dtypes, families=families,
                                    offload_modes=offload_modes, repeat=args.repeat),
           "results": {}}
    if not args.tiny and not args.families_only:
        import batching
        import overhead
        import vs_diffusers

        for dtype in dtypes:
            print(f"\n=== suite, {dtype} ===")
            out["results"][dtype] = {
                "overhead": overhead.run_all(model=args.model, device=device, dtype=dtype, repeat=args.repeat,
                                             sd_repeat=args.repeat),
                "vs_diffusers": vs_diffusers.run_all(device=device, dtype=dtype, repeat=args.repeat),
                "batching": batching.run_all(model=args.model, device=device, dtype=dtype, repeat=args.repeat)}
    save_json("gpu_tiny" if args.tiny else "gpu", out, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
