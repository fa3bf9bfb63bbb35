"""boomerang vs diffusers' StableDiffusionImg2ImgPipeline on the same work.

Both get the same small SD-shaped model (256x256 images, 32x32x4 latents),
batch 16, one prompt with classifier-free guidance 7.5, the same scheduler
class and config, the same ``strength``, steps and per-item generators:
boomerang's ``schedule='img2img'`` reproduces the pipeline's timesteps, noise
placement and VAE posterior sample, so both make the same network evaluations.
Runs are interleaved in alternating order; the figure is our throughput / theirs
from the least-disturbed (fastest) run of each (target >= 1), the ratio of
medians beside it.
boomerang is timed with its defaults (batch-invariant kernels on the CPU) and
also with ``batch_invariant=False`` (the pipeline's own kernels). Outputs are compared
(max |difference| in [0, 1] pixel units). In float16/bfloat16 the pipeline's VAE
runs in that dtype (a copy) while boomerang's stays float32, as it always does.

    .venv/bin/python benchmarks/vs_diffusers.py [--device cpu] [--dtype float32] [--repeat 3] [--out DIR]

Writes vs_diffusers[_<device>_<dtype>].json into --out (default benchmarks/out/; ``--out benchmarks/results`` refreshes the committed copy).
"""

from __future__ import annotations

import copy
import time

from _common import bench_parser, machine, make_small_sd, median, save_json


def _sync(device):
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def run_all(*, device="cpu", dtype="float32", repeat=3, batch=16, scheduler="ddim", strength=0.5, steps=8):
    import torch
    from diffusers import StableDiffusionImg2ImgPipeline

    from boomerang.core import boomerang_sample
    from boomerang.models import load_model
    from boomerang.schedulers import make_scheduler

    m = load_model(make_small_sd(), device=device, dtype=dtype)
    # boomerang keeps the VAE in float32 (float16 VAEs overflow); the pipeline runs every
    # component in the prompt embeddings' dtype, so it gets its own copy of the VAE in that dtype.
    pipe_vae = m.vae if dtype == "float32" else copy.deepcopy(m.vae).to(getattr(torch, dtype))
    pipe = StableDiffusionImg2ImgPipeline(
        vae=pipe_vae, text_encoder=m.text_encoder, tokenizer=m.tokenizer, unet=m.unet,
        scheduler=make_scheduler(scheduler, m.scheduler_config), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, 256, 256, generator=g) * 2 - 1
    gens = lambda: [torch.Generator().manual_seed(i) for i in range(batch)]  # noqa: E731
    prompt, w = "cat", 7.5

    def theirs():
        out = pipe(prompt=[prompt] * batch, image=x, strength=strength, num_inference_steps=steps, guidance_scale=w,
                   generator=gens(), output_type="pt").images
        _sync(device)
        return out.float().cpu()

    default_invariant = m.batch_invariant  # True on the CPU, False on CUDA

    def ours(invariant=None):
        m.batch_invariant = default_invariant if invariant is None else invariant
        try:
            out = boomerang_sample(m, x, generators=gens(), level=strength, schedule="img2img", scheduler=scheduler,
                                   steps=steps, prompt=prompt, guidance_scale=w)
        finally:
            m.batch_invariant = default_invariant
        _sync(device)
        return out.samples / 2 + 0.5, out.num_denoiser_evals

    ref = theirs()
    mine, evals = ours()
    mine_plain, _ = ours(False)
    diff = float((mine - ref).abs().max())
    diff_plain = float((mine_plain - ref).abs().max())
    fns = {"diffusers": theirs, "boomerang": ours, "boomerang_plain_kernels": lambda: ours(False)}
    runs = {k: [] for k in fns}
    for r in range(repeat):
        for k in (list(fns) if r % 2 == 0 else list(reversed(fns))):  # alternate the order
            t0 = time.perf_counter()
            fns[k]()
            runs[k].append(time.perf_counter() - t0)
    med = {k: median(v) for k, v in runs.items()}
    best = {k: min(v) for k, v in runs.items()}
    # Other load on a shared machine only adds time: the headline compares the least-disturbed runs.
    ratio = best["diffusers"] / best["boomerang"]
    ratio_plain = best["diffusers"] / best["boomerang_plain_kernels"]
    ratio_med = med["diffusers"] / med["boomerang"]
    res = {"machine": machine(), "device": device, "dtype": dtype, "batch": batch, "scheduler": scheduler,
           "strength": strength, "steps": steps, "guidance_scale": w, "denoiser_evals": evals, "seconds": runs,
           "median_s": med, "min_s": best, "images_per_s": {k: batch / v for k, v in best.items()},
           "throughput_ratio_ours_over_theirs": ratio, "throughput_ratio_plain_kernels": ratio_plain,
           "throughput_ratio_of_medians": ratio_med,
           "max_abs_diff_01": diff, "max_abs_diff_01_plain_kernels": diff_plain,
           "target": "throughput ratio >= 1", "met": ratio >= 1.0}
    if device.startswith("cuda"):
        res["gpu"] = torch.cuda.get_device_name(device)
    print(f"small SD img2img {device} {dtype} batch {batch} {scheduler} strength {strength} steps {steps} "
          f"({evals} evals, guidance {w})")
    for k in fns:
        print(f"  {k:24s} best {best[k]:7.3f} s  {batch / best[k]:6.2f} img/s   (median {med[k]:7.3f} s)")
    print(f"  throughput ours/theirs (best runs): {ratio:.3f} (default kernels), {ratio_plain:.3f} (plain kernels); "
          f"of medians: {ratio_med:.3f}  -> target >= 1 {'met' if res['met'] else 'NOT met'}")
    print(f"  outputs agree: max |ours - theirs| = {diff:.2e} (invariant kernels), {diff_plain:.2e} (plain) in [0, 1] units")
    return res


def main(argv=None):
    ap = bench_parser(__doc__, repeat=5, model=False)
    ap.add_argument("--batch", type=int, default=16, help="images per call")
    ap.add_argument("--scheduler", default="ddim", help="scheduler of both (a boomerang scheduler name)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    res = run_all(device=args.device, dtype=args.dtype, repeat=args.repeat, batch=args.batch, scheduler=args.scheduler)
    suffix = "" if (args.device, args.dtype) == ("cpu", "float32") else f"_{args.device}_{args.dtype}".replace(":", "")
    save_json("vs_diffusers" + suffix, res, args.out)


if __name__ == "__main__":
    main()
