"""Overhead of boomerang_sample over the floor: the same network calls in a bare loop.

For batch 16, the wall time of ``boomerang.core.boomerang_sample`` is divided by
the time of exactly the network evaluations it makes, called directly in a bare
loop with the same batch, dtype and kernels (the batch-invariant kernels of
``boomerang.models`` on the CPU; the noise-free input stands in for x_t):

* pixel model (the bundled model, else its architecture with random weights):
  the UNet at each timestep of the Boomerang grid;
* a small Stable-Diffusion-shaped model (256x256 images, 32x32x4 latents,
  classifier-free guidance 7.5): VAE encode, the UNet on [uncond; cond] at each
  timestep, VAE decode (the VAE item by item, as the model runs it).

Runs are interleaved, in alternating order (ours, bare, bare, ours, ...). The
machine is shared, and other load only ever adds time, so the headline ratio is
min(ours) / min(bare) (the least-disturbed run of each); the median of the
per-pair ratios and the ratio of medians are printed beside it.
Also printed: the bare loop with PyTorch's default (not batch-invariant)
kernels, i.e. what bit-exact batch invariance costs.

    .venv/bin/python benchmarks/overhead.py [--model DIR] [--device cpu] [--dtype float32] [--repeat 5] [--out DIR]

Target: ratio <= 1.05. Writes overhead[_<device>_<dtype>].json
into --out (default benchmarks/out/; ``--out benchmarks/results`` refreshes the committed copy).
"""

from __future__ import annotations

import time

from _common import bench_parser, bundled_or_standin, machine, make_small_sd, median, save_json


def _sync(device):
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def bare_loop(model, x0, timesteps, *, cond=None, uncond=None, guidance_scale=1.0, invariant=True):
    """The floor: encode, one UNet call per timestep, decode; nothing else."""
    import contextlib

    import torch

    from boomerang.models import invariant_kernels, patchable

    dev, dt = model.device, model.torch_dtype
    ctx = invariant_kernels(patchable([model.unet])) if invariant and model.batch_invariant else contextlib.nullcontext()
    per_item_vae = invariant and model.batch_invariant
    with torch.no_grad():
        x = x0.to(dev)
        if model.kind == "latent":
            if per_item_vae:
                z = torch.cat([model.vae.encode(x[i:i + 1]).latent_dist.mode() for i in range(x.shape[0])])
            else:
                z = model.vae.encode(x).latent_dist.mode()
            x = (z * model.vae.config.scaling_factor).to(dt)
            emb = torch.cat([uncond.expand(x.shape[0], -1, -1), cond.expand(x.shape[0], -1, -1)])
        else:
            x = x.to(dt)
        with ctx:
            for t in timesteps:
                if model.kind == "latent":
                    out = model.unet(torch.cat([x, x]), t, encoder_hidden_states=emb).sample
                    u, c = out.chunk(2)
                    out = u + guidance_scale * (c - u)
                else:
                    out = model.unet(x, t).sample
        if model.kind == "latent":
            z = out.float() / model.vae.config.scaling_factor
            if per_item_vae:
                out = torch.cat([model.vae.decode(z[i:i + 1]).sample for i in range(z.shape[0])])
            else:
                out = model.vae.decode(z).sample
        _sync(dev)
    return out


def measure(model, x0, kw, *, repeat, label):
    """Interleaved medians of boomerang_sample vs the bare loop (and the plain-kernel bare loop)."""
    import torch

    from boomerang import levels
    from boomerang.core import boomerang_sample

    T = model.num_train_timesteps
    plan = levels.plan_exact(level=kw["level"], steps=kw["steps"], num_train_timesteps=T)
    ts = [torch.tensor(t, device=model.device) for t in plan.timesteps]
    cond = uncond = None
    if model.kind == "latent":
        cond, uncond = model.encode_prompt(kw.get("prompt", ""), "", kw.get("guidance_scale", 7.5))

    def ours():
        gens = [torch.Generator().manual_seed(i) for i in range(x0.shape[0])]
        boomerang_sample(model, x0, generators=gens, **kw)
        _sync(model.device)

    def bare(invariant=True):
        bare_loop(model, x0, ts, cond=cond, uncond=uncond, guidance_scale=kw.get("guidance_scale", 1.0),
                  invariant=invariant)

    runs = {"ours": [], "bare": [], "bare_plain_kernels": []}
    fns = {"ours": ours, "bare": bare, "bare_plain_kernels": lambda: bare(False)}
    ours(), bare()  # warm-up
    for r in range(repeat):
        order = list(fns) if r % 2 == 0 else list(reversed(fns))
        for name in order:
            t0 = time.perf_counter()
            fns[name]()
            runs[name].append(time.perf_counter() - t0)
    med = {k: median(v) for k, v in runs.items()}
    best = {k: min(v) for k, v in runs.items()}
    ratios = [o / b for o, b in zip(runs["ours"], runs["bare"])]
    res = {"label": label, "batch": int(x0.shape[0]), "dtype": model.dtype, "device": str(model.device),
           "settings": kw, "denoiser_evals": len(plan.timesteps), "seconds": runs, "median_s": med, "min_s": best,
           "ratio": best["ours"] / best["bare"], "ratio_median_of_pairs": median(ratios),
           "ratio_of_medians": med["ours"] / med["bare"],
           "invariance_cost": best["bare"] / best["bare_plain_kernels"]}
    print(f"{label:38s} batch {x0.shape[0]}  evals {len(plan.timesteps):2d}  ours {best['ours']:7.3f} s  "
          f"bare {best['bare']:7.3f} s  ratio {res['ratio']:.3f}  (median of pairs {res['ratio_median_of_pairs']:.3f}, "
          f"of medians {res['ratio_of_medians']:.3f})  [bare loop with plain kernels {best['bare_plain_kernels']:7.3f} s: "
          f"invariance costs x{res['invariance_cost']:.2f}]")
    return res


def run_all(*, model=None, device="cpu", dtype="float32", repeat=9, batch=16, sd_repeat=4, sd=True):
    import torch

    from boomerang.models import load_model

    pix_dir, desc = bundled_or_standin(model)
    out = {"machine": machine(), "pixel_model": desc, "results": []}
    if device.startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name(device)
    pix = load_model(pix_dir, device=device, dtype=dtype)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 1, 28, 28, generator=g) * 2 - 1
    for sched in ("ddim", "ddpm"):
        kw = dict(level=0.5, steps=20, scheduler=sched)
        out["results"].append(measure(pix, x, kw, repeat=repeat, label=f"pixel 28x28 {sched}"))
    if sd:
        m = load_model(make_small_sd(), device=device, dtype=dtype)
        x = torch.rand(batch, 3, 256, 256, generator=g) * 2 - 1
        kw = dict(level=0.5, steps=8, scheduler="ddim", prompt="cat", guidance_scale=7.5)
        out["results"].append(measure(m, x, kw, repeat=sd_repeat, label="small SD 256x256 (32x32 latents) ddim"))
    return out


def main(argv=None):
    ap = bench_parser(__doc__, repeat=9)
    ap.add_argument("--sd-repeat", type=int, default=4, help="timed repeats of the small SD model")
    ap.add_argument("--batch", type=int, default=16, help="images per call")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    out = run_all(model=args.model, device=args.device, dtype=args.dtype, repeat=args.repeat, batch=args.batch,
                  sd_repeat=args.sd_repeat)
    out["target"] = "ratio <= 1.05"
    out["met"] = all(r["ratio"] <= 1.05 for r in out["results"])
    print("target ratio <= 1.05:", "met" if out["met"] else "NOT met")
    suffix = "" if (args.device, args.dtype) == ("cpu", "float32") else f"_{args.device}_{args.dtype}"
    save_json("overhead" + suffix.replace(":", ""), out, args.out)


if __name__ == "__main__":
    main()
