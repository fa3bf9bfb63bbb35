"""Batch invariance on the CPU: which design is bit-exact, and what it costs.

Four ways to run a network on a batch (float32, CPU), see boomerang/models/invariant.py:

  a  per_item   -- the networks run item by item (a batch of one each)
  b  kernels    -- the default: batched, but each Conv2d per item, Linear as bmm,
                   contiguous GroupNorm inputs (the VAE runs item by item)
  b0 native     -- batched with oneDNN and NNPACK disabled (the native convolution
                   loops over the batch), 2-D Linear as bmm, contiguous conv/GroupNorm
                   inputs: the first candidate, kept for the record
  c  plain      -- batched with PyTorch's default kernels: not invariant

For each, on the bundled model's architecture (UNet2DModel 1x28x28) and on a
small SD-shaped model (UNet2DConditionModel on 32x32x4 latents with guidance,
and its VAE decoder at 256x256), the script checks that item i of a batch of 7
equals the item run alone and in reversed order (bit for bit), and times one
denoiser call (median of interleaved repeats) at batch 1, 4, 16, 64.

    .venv/bin/python benchmarks/batch_invariance.py [--model DIR] [--threads 1] [--repeat 3] [--out DIR]

Prints a table; writes batch_invariance.json into --out (default benchmarks/out/; ``--out benchmarks/results`` refreshes the committed copy).
"""

from __future__ import annotations

import time

from _common import add_out_argument, bundled_or_standin, machine, make_parser, make_small_sd, median, save_json

MODES = {"a_per_item": (True, "per_item"), "b_kernels": (True, "kernels"), "b0_native": (False, "kernels"),
         "c_plain": (False, "kernels")}


def set_mode(model, mode):
    model.batch_invariant, model.invariant_strategy = MODES[mode]


def _native_patches(module):
    import torch.nn as nn

    from boomerang.models import group_norm_contiguous, linear_rows

    def conv(self, x):
        return self._conv_forward(x.contiguous(), self.weight, self.bias)

    out = []
    for m in module.modules():
        if type(m) is nn.Linear:
            out.append((m, linear_rows))
        elif type(m) is nn.Conv2d:
            out.append((m, conv))
        elif type(m) is nn.GroupNorm:
            out.append((m, group_norm_contiguous))
    return out


class native:
    """Mode b0: oneDNN/NNPACK off for the block, plus the patches above."""

    def __init__(self, module):
        from boomerang.models import invariant_kernels

        self.inner = invariant_kernels(_native_patches(module))

    def __enter__(self):
        import torch

        self.saved = torch._C._get_mkldnn_enabled(), torch._C._get_nnpack_enabled()
        torch._C._set_mkldnn_enabled(False)
        torch._C._set_nnpack_enabled(False)
        self.inner.__enter__()

    def __exit__(self, *exc):
        import torch

        self.inner.__exit__(*exc)
        torch._C._set_mkldnn_enabled(self.saved[0])
        torch._C._set_nnpack_enabled(self.saved[1])


def wrap(fn, module):
    """fn run in mode b0 when the model is set to it (batch_invariant False is shared with c)."""
    import contextlib

    state = {"b0": False}

    def call(x):
        with native(module) if state["b0"] else contextlib.nullcontext():
            return fn(x)

    return call, state


def main(argv=None):
    ap = make_parser(__doc__)
    ap.add_argument("--model", default=None, help="pixel model folder (default: bundled, else a stand-in)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved timed repeats per call (the median is reported)")
    ap.add_argument("--batches", default="1,4,16,64", help="comma-separated batch sizes to time")
    ap.add_argument("--sd-max-batch", type=int, default=16, help="largest batch timed for the SD UNet (time)")
    add_out_argument(ap)
    args = ap.parse_args(argv)
    import torch

    from boomerang.models import load_model

    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    pix_dir, pix_desc = bundled_or_standin(args.model)
    pix = load_model(pix_dir)
    sd = load_model(make_small_sd())
    cond, uncond = sd.encode_prompt("cat", "", 7.5)
    g = torch.Generator().manual_seed(0)
    xs = {"pixel_unet": torch.randn(64, 1, 28, 28, generator=g), "sd_unet_cfg": torch.randn(64, 4, 32, 32, generator=g)}
    xs["sd_vae_decode"] = xs["sd_unet_cfg"]
    raw = {
        "pixel_unet": (pix, lambda x: pix.predict(x, 500), pix.unet),
        "sd_unet_cfg": (sd, lambda x: sd.predict(x, 500, cond=cond, uncond=uncond, guidance_scale=7.5), sd.unet),
        "sd_vae_decode": (sd, lambda x: sd.decode(x), sd.vae),
    }
    calls, states = {}, {}
    for name, (model, fn, module) in raw.items():
        call, states[name] = wrap(fn, module)
        calls[name] = (model, call)

    def use(model, mode, name):
        set_mode(model, mode)
        states[name]["b0"] = mode == "b0_native"

    result = {"machine": machine(), "pixel_model": pix_desc, "threads": args.threads, "repeat": args.repeat,
              "invariance": {}, "seconds_per_call": {}, "images_per_s": {}}

    # 1. Bit-exactness: item i of a batch of 7 vs alone, and the batch reversed.
    for name, (model, fn) in calls.items():
        x = xs[name][:7]
        for mode in MODES:
            use(model, mode, name)
            full = fn(x)
            alone = torch.cat([fn(x[i:i + 1]) for i in range(7)])
            rev = fn(x.flip(0)).flip(0)
            ok = bool(torch.equal(full, alone) and torch.equal(full, rev))
            maxdiff = float(max((full - alone).abs().max(), (full - rev).abs().max()))
            result["invariance"].setdefault(name, {})[mode] = {"bit_exact": ok, "max_abs_diff": maxdiff}
            print(f"invariance {name:14s} {mode:11s} bit-exact={ok!s:5s} max|diff|={maxdiff:.3g}")

    # 2. Time per call, modes interleaved within each repeat (the machine is shared and noisy).
    for name, (model, fn) in calls.items():
        for b in batches:
            if name == "sd_vae_decode" and b > 16:
                continue  # 64 x 256x256 decodes take minutes on two cores
            if name == "sd_unet_cfg" and b > args.sd_max_batch:
                continue
            x = xs[name][:b]
            times = {m: [] for m in MODES}
            for mode in MODES:  # warm-up
                use(model, mode, name)
                fn(x)
            for _ in range(args.repeat):
                for mode in MODES:
                    use(model, mode, name)
                    t0 = time.perf_counter()
                    fn(x)
                    times[mode].append(time.perf_counter() - t0)
            row = {m: median(t) for m, t in times.items()}
            result["seconds_per_call"].setdefault(name, {})[str(b)] = row
            result["images_per_s"].setdefault(name, {})[str(b)] = {m: b / s for m, s in row.items()}
            print(f"time {name:14s} batch {b:3d}: " + "  ".join(
                f"{m} {row[m] * 1e3:8.1f} ms ({b / row[m]:7.1f} img/s)" for m in MODES)
                + f"   a/b={row['a_per_item'] / row['b_kernels']:.2f} b0/b={row['b0_native'] / row['b_kernels']:.2f}"
                + f" b/c={row['b_kernels'] / row['c_plain']:.2f}")
    set_mode(pix, "b_kernels")
    set_mode(sd, "b_kernels")
    save_json("batch_invariance", result, args.out)


if __name__ == "__main__":
    main()
