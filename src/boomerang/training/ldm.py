"""``boomerang train-ldm``: train a small Stable-Diffusion-shaped latent diffusion model.

Two stages, as Stable Diffusion was built (Rombach et al. 2022, sec. 3):

1. the VAE (``AutoencoderKL``): pixel reconstruction (mean squared error in
   [-1, 1]) plus ``kl_weight`` times the KL divergence of the diagonal
   Gaussian posterior from N(0, I). At the end the latent scaling factor is
   set to 1 / std of the posterior means over the training split (SD 1.x's
   0.18215 was found the same way), and the EMA VAE is written to ``vae/``;
2. the UNet (``UNet2DConditionModel``, cross-attention) and the CLIP text
   encoder together, on latents z0 = scaling_factor * (mean + std * n) drawn
   from the frozen VAE's posterior, with the epsilon loss
   ``|eps - eps_theta(sqrt(alpha_bar_t) z0 + sqrt(1 - alpha_bar_t) eps, t, c)|^2``
   under Stable Diffusion's scaled-linear schedule (Ho et al. 2020, eq. 14).
   Captions: one phrasing of the label drawn per item
   (:data:`boomerang.ldm_parts.CAPTION_TEMPLATES`), replaced by the empty
   caption with probability ``empty_caption_fraction`` so that classifier-free
   guidance (Ho & Salimans 2022) works.

The output folder is a diffusers ``StableDiffusionPipeline`` (``vae/``,
``text_encoder/``, ``tokenizer/``, ``unet/``, ``scheduler/``,
``model_index.json``; EMA weights, safetensors), plus ``split.json``,
``train_config.json``, ``vae_checkpoint.safetensors`` and
``checkpoint.safetensors``. Checkpoints reuse :mod:`boomerang.train`'s atomic
format; ``--resume`` continues either stage exactly (same batches, captions,
noise and weights as a run that never stopped, on the same machine).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import signal
import sys
import time
from dataclasses import asdict, dataclass

from boomerang.ldm_parts import LdmShape

VAE_CHECKPOINT_NAME = "vae_checkpoint.safetensors"
# Settings that must not change when a stage is resumed (stage-2 settings may change while stage 1 runs).
_FROZEN_VAE = ("data", "vae_channels", "vae_batch_size", "vae_lr", "kl_weight", "warmup_steps", "grad_clip",
               "ema_decay", "seed", "split_seed", "val_fraction", "test_fraction")
_FROZEN_ON_RESUME = _FROZEN_VAE + ("vae_steps", "unet_channels", "unet_layers", "unet_heads", "text_width",
                                   "text_layers", "text_heads", "batch_size", "lr", "empty_caption_fraction")


@dataclass
class LdmTrainConfig(LdmShape):
    """All settings of a ``train-ldm`` run (defaults = the shipped ``ldm-mnist5k-text``).

    Attributes (besides the component sizes of :class:`LdmShape`):
        data: a labelled built-in dataset (``mnist5k``); 28x28 digits, padded to 32x32.
        output: output folder.
        vae_steps, vae_batch_size, vae_lr, kl_weight: stage 1.
        max_steps, batch_size, lr: stage 2 (UNet + text encoder), optimizer steps in total.
        warmup_steps: linear learning-rate warm-up of either stage (then constant).
        empty_caption_fraction: share of training captions replaced by "".
        ema_decay: EMA cap; effective decay ``min(ema_decay, (1 + step) / (10 + step))``.
        max_minutes: stop cleanly (checkpoint, export what is complete) after
            this many minutes of this invocation; ``--resume`` continues.
        checkpoint_every: steps between atomic checkpoints (both stages).
        seed: initialisation, batch order, captions, posterior samples, noise and timesteps.
        max_train_images: train on only the first N images of the training split
            (``None``: all of it; small runs and tests).
        threads: torch CPU threads (``None`` = torch's default).
    """

    data: str = "mnist5k"
    output: str = "runs/ldm-mnist5k-text"
    vae_steps: int = 700
    vae_batch_size: int = 32
    vae_lr: float = 1e-3
    kl_weight: float = 1e-5
    max_steps: int = 2000
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    empty_caption_fraction: float = 0.1
    max_minutes: float | None = None
    checkpoint_every: int = 250
    seed: int = 0
    split_seed: int = 0
    max_train_images: int | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    device: str = "cpu"
    threads: int | None = None
    resume: bool = False
    progress: bool = True

    def validate(self) -> None:
        """Raise ValueError (naming the flag and how to fix it) for bad settings."""
        if self.max_train_images is not None and int(self.max_train_images) < 1:
            raise ValueError(f"--max-train-images must be >= 1, got {self.max_train_images}")
        if self.data != "mnist5k":
            raise ValueError(f"--data must be mnist5k (captions come from its digit labels), got {self.data!r}")
        for name in ("vae_channels", "unet_channels"):
            v = getattr(self, name)
            if not v or any(c <= 0 or c % 16 for c in v):
                raise ValueError(f"--{name.replace('_', '-')} must be multiples of 16, e.g. 32,64,64; got {v}")
        if any(c % 32 for c in self.unet_channels):
            raise ValueError(f"--unet-channels must be multiples of 32 (GroupNorm of 32 groups), got {self.unet_channels}")
        if 32 % (2 ** (len(self.vae_channels) - 1)):
            raise ValueError(f"--vae-channels: {len(self.vae_channels)} levels do not divide the 32-pixel side")
        side = 32 // (2 ** (len(self.vae_channels) - 1))
        if side % (2 ** (len(self.unet_channels) - 1)):
            raise ValueError(f"--unet-channels: {len(self.unet_channels)} levels do not divide the {side}-pixel latent")
        from boomerang.train import check_training_flags

        check_training_flags(self, positive=("vae_batch_size", "batch_size", "checkpoint_every", "unet_layers",
                                             "text_width", "text_layers", "text_heads", "unet_heads"),
                             non_negative=("vae_steps", "max_steps", "warmup_steps", "kl_weight"),
                             rates=("vae_lr", "lr"))
        if self.text_width % self.text_heads:
            raise ValueError(f"--text-width {self.text_width} must be divisible by --text-heads {self.text_heads}")
        if not 0 <= self.empty_caption_fraction < 1:
            raise ValueError(f"--empty-caption-fraction must be in [0, 1), got {self.empty_caption_fraction}")


def _shape(cfg: LdmTrainConfig) -> LdmShape:
    return LdmShape(**{k: getattr(cfg, k) for k in LdmShape.__dataclass_fields__})


# --------------------------------------------------------------------------- the shared loop


class _Stopper:
    """Signals (SIGTERM/SIGINT finish the step, checkpoint, export) and the --max-minutes clock."""

    def __init__(self, max_minutes: float | None):
        self.t0 = time.monotonic()
        self.max_minutes = max_minutes
        self.sig = None
        self._old = {}

    def __enter__(self):
        for s in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[s] = signal.signal(s, self._on_signal)
            except ValueError:  # not in the main thread
                pass
        return self

    def _on_signal(self, signum, frame):
        self.sig = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)

    def reason(self) -> str | None:
        if self.sig is not None:
            return "signal"
        if self.max_minutes is not None and time.monotonic() - self.t0 >= self.max_minutes * 60:
            return "max_minutes"
        return None

    def elapsed(self) -> float:
        return time.monotonic() - self.t0


def _ema_update(ema, model, step: int, cap: float) -> None:
    import torch

    decay = min(cap, (1 + step) / (10 + step))
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters()):
            pe.lerp_(pm, 1.0 - decay)


def _run_stage(name, *, model, ema, optimizer, noise_gen, ckpt_path, loss_fn, total_steps, lr, cfg, stopper,
               state, extra, frozen=_FROZEN_ON_RESUME) -> tuple[int, str]:
    """Optimise ``loss_fn(step) -> loss`` from the checkpointed step to ``total_steps``.

    Loads ``ckpt_path`` if it exists (exact resume), checkpoints every
    ``cfg.checkpoint_every`` steps and at the end. Returns ``(step, stopped)``.
    """
    import torch

    from boomerang.train import load_checkpoint, save_checkpoint

    step = 0
    if ckpt_path.exists():
        meta = load_checkpoint(ckpt_path, model, ema, optimizer, noise_gen)
        old = meta["extra"].get("config", {})
        changed = [k for k in frozen if k in old and old[k] != asdict(cfg)[k]]
        if changed:
            raise ValueError("cannot resume with different settings: " + ", ".join(
                f"{k} (checkpoint {old[k]!r}, now {asdict(cfg)[k]!r})" for k in changed))
        step = int(meta["step"])
        state["wall_before"] = float(meta["extra"].get("wall_time_s", 0.0))
    params = [p for p in model.parameters() if p.requires_grad]
    bar = None
    if cfg.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=step, desc=name, unit="step", dynamic_ncols=True)
    stopped, smooth = "max_steps", None
    try:
        while step < total_steps:
            why = stopper.reason()
            if why:
                stopped = why
                break
            cur = lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
            for group in optimizer.param_groups:
                group["lr"] = cur
            loss = loss_fn(step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            step += 1
            _ema_update(ema, model, step, cfg.ema_decay)
            state["last_loss"] = float(loss.detach())
            smooth = state["last_loss"] if smooth is None else 0.98 * smooth + 0.02 * state["last_loss"]
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{smooth:.4f}", lr=f"{cur:.1e}")
            elif step % 100 == 0:
                print(f"{name} step {step}/{total_steps} loss {smooth:.5f} "
                      f"{stopper.elapsed():.0f}s", file=sys.stderr, flush=True)
            if step % cfg.checkpoint_every == 0:
                save_checkpoint(ckpt_path, model, ema, optimizer, step, noise_gen, extra())
        save_checkpoint(ckpt_path, model, ema, optimizer, step, noise_gen, extra())
    finally:
        if bar is not None:
            bar.close()
    return step, stopped


def _batches(seed: int, n: int, batch: int):
    """``indices(step)``: the batch of ``step``; epoch ``e`` is a permutation seeded with ``(seed, e)``."""
    import torch

    per_epoch = n // batch
    cache: dict[int, torch.Tensor] = {}

    def indices(step: int):
        epoch, pos = divmod(step, per_epoch)
        if epoch not in cache:
            cache.clear()
            cache[epoch] = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        return cache[epoch][pos * batch:(pos + 1) * batch]

    return indices


# --------------------------------------------------------------------------- the two stages


def _train_vae(cfg, x_train, device, stopper, state, extra):
    """Stage 1. Returns ``(vae or None if stopped early, step, stopped)``."""
    import torch
    import torch.nn.functional as F

    from boomerang.ldm_parts import build_vae

    out = pathlib.Path(cfg.output)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        vae = build_vae(_shape(cfg))
    ema = build_vae(_shape(cfg))
    ema.load_state_dict(vae.state_dict())
    ema.requires_grad_(False)
    vae.to(device).train()
    ema.to(device).eval()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed + 11)
    indices = _batches(cfg.seed, x_train.shape[0], cfg.vae_batch_size)

    def loss_fn(step):
        x = x_train[indices(step)].to(device)
        dist = vae.encode(x).latent_dist
        z = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=gen).to(device)
        rec = vae.decode(z).sample
        kl = 0.5 * (dist.mean.pow(2) + dist.var - 1.0 - dist.logvar).mean()
        return F.mse_loss(rec, x) + cfg.kl_weight * kl

    state["stage"] = "vae"
    step, stopped = _run_stage("vae", model=vae, ema=ema, optimizer=opt, noise_gen=gen,
                               ckpt_path=out / VAE_CHECKPOINT_NAME, loss_fn=loss_fn, total_steps=cfg.vae_steps,
                               lr=cfg.vae_lr, cfg=cfg, stopper=stopper, state=state, extra=extra,
                               frozen=_FROZEN_VAE)
    if stopped != "max_steps":
        return None, step, stopped
    with torch.no_grad():
        means = torch.cat([ema.encode(x_train[i:i + 256].to(device)).latent_dist.mean.cpu()
                           for i in range(0, x_train.shape[0], 256)])
    ema.register_to_config(scaling_factor=float(1.0 / means.std()))
    return ema, step, stopped


def _caption_table(tokenizer):
    """Token ids ``[10, n_templates, L]`` of every caption and ``[L]`` of the empty caption."""
    import torch

    from boomerang.ldm_parts import CAPTION_TEMPLATES, captions_for

    def ids(texts):
        return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                         return_tensors="pt").input_ids

    table = torch.stack([ids(captions_for(d)) for d in range(10)])
    assert table.shape[1] == len(CAPTION_TEMPLATES)
    return table, ids([""])[0]


def _train_unet(cfg, vae, x_train, y_train, device, stopper, state, extra):
    """Stage 2. Returns ``(unet, text_encoder, tokenizer, step, stopped)`` (EMA weights)."""
    import torch
    import torch.nn.functional as F

    from boomerang.ldm_parts import build_scheduler, build_text_encoder, build_tokenizer, build_unet

    out = pathlib.Path(cfg.output)
    shape = _shape(cfg)
    tokenizer = build_tokenizer(out / "tokenizer")
    latent_side = 32 // 2 ** (len(vae.config.block_out_channels) - 1)

    def build():
        return torch.nn.ModuleDict({"unet": build_unet(shape, latent_side),
                                    "text_encoder": build_text_encoder(shape, tokenizer)})

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + 1)
        model = build()
    ema = build()
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    model.to(device).train()
    ema.to(device).eval()
    vae.to(device).eval().requires_grad_(False)
    with torch.no_grad():  # the frozen VAE's posterior over the training split, once
        dists = [vae.encode(x_train[i:i + 256].to(device)).latent_dist for i in range(0, x_train.shape[0], 256)]
        z_mean = torch.cat([d.mean for d in dists])
        z_std = torch.cat([d.std for d in dists])
    scale = float(vae.config.scaling_factor)
    table, empty = _caption_table(tokenizer)
    table, empty = table.to(device), empty.to(device)
    y_train = torch.as_tensor(y_train, device=device)
    alphas_cumprod = build_scheduler().alphas_cumprod.to(device=device, dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed + 12)
    indices = _batches(cfg.seed + 1, x_train.shape[0], cfg.batch_size)
    T = alphas_cumprod.shape[0]

    def loss_fn(step):
        idx = indices(step).to(device)
        b = idx.shape[0]
        n = torch.randn(z_mean[idx].shape, generator=gen).to(device)
        z0 = scale * (z_mean[idx] + z_std[idx] * n)
        which = torch.randint(0, table.shape[1], (b,), generator=gen).to(device)
        drop = (torch.rand(b, generator=gen) < cfg.empty_caption_fraction).to(device)
        ids = torch.where(drop[:, None], empty[None], table[y_train[idx], which])
        eps = torch.randn(z0.shape, generator=gen).to(device)
        t = torch.randint(0, T, (b,), generator=gen).to(device)
        ab = alphas_cumprod[t].view(-1, 1, 1, 1)
        x_t = ab.sqrt() * z0 + (1 - ab).sqrt() * eps
        cond = model["text_encoder"](ids)[0]
        return F.mse_loss(model["unet"](x_t, t, encoder_hidden_states=cond).sample, eps)

    state["stage"] = "unet"
    step, stopped = _run_stage("unet", model=model, ema=ema, optimizer=opt, noise_gen=gen,
                               ckpt_path=out / "checkpoint.safetensors", loss_fn=loss_fn, total_steps=cfg.max_steps,
                               lr=cfg.lr, cfg=cfg, stopper=stopper, state=state, extra=extra)
    return ema["unet"], ema["text_encoder"], tokenizer, step, stopped


def export_ldm(output, *, vae, text_encoder, tokenizer, unet) -> None:
    """Save the components as a diffusers ``StableDiffusionPipeline`` (safetensors, no safety checker)."""
    from diffusers import StableDiffusionPipeline

    from boomerang.ldm_parts import build_scheduler

    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=build_scheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(str(output), safe_serialization=True)


def train_ldm(cfg: LdmTrainConfig) -> dict:
    """Train (or resume) both stages as described by ``cfg`` and export the pipeline.

    Returns:
        a summary dict (``stage``, ``vae_step``, ``step``, ``wall_time_s``,
        ``last_loss``, ``output``, ``stopped``).

    Raises:
        ValueError: bad settings, an existing run without ``resume=True``, a
            resume without a checkpoint, or a resume whose settings differ.
    """
    cfg.validate()
    import numpy as np
    import torch

    from boomerang.data import load_dataset, make_split, save_split
    from boomerang.ldm_parts import digits_to_rgb32
    from boomerang.train import _atomic_write_text, _hardware, cli_args, resolve_device

    out = pathlib.Path(cfg.output)
    ckpts = [out / VAE_CHECKPOINT_NAME, out / "checkpoint.safetensors"]
    if any(p.exists() for p in ckpts) and not cfg.resume:
        raise ValueError(f"{out} holds a training checkpoint; pass --resume to continue it or choose another --output")
    if cfg.resume and not any(p.exists() for p in ckpts):
        raise ValueError(f"--resume given but {out} holds no checkpoint; drop --resume to start a new run")
    device = resolve_device(cfg.device)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    ds = load_dataset(cfg.data)
    split = make_split(ds.labels, seed=cfg.split_seed, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction)
    train_idx = np.asarray(split["train"])
    if cfg.max_train_images is not None:
        train_idx = train_idx[:int(cfg.max_train_images)]
    if len(train_idx) < max(cfg.batch_size, cfg.vae_batch_size):
        raise ValueError(f"only {len(train_idx)} training images; lower --batch-size / --vae-batch-size")
    x_train = digits_to_rgb32(ds.images[train_idx])
    y_train = ds.labels[train_idx]
    out.mkdir(parents=True, exist_ok=True)
    save_split(out / "split.json", split, dataset=cfg.data, split_seed=cfg.split_seed,
               val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, n_total=len(ds))

    state: dict = {"last_loss": float("nan"), "wall_before": 0.0}
    summary: dict = {"output": str(out)}
    config_path = out / "train_config.json"

    def write_config() -> None:
        import diffusers
        import transformers

        info = dict(summary, config=asdict(cfg), n_train=int(len(train_idx)), hardware=_hardware(device),
                    versions={"torch": torch.__version__, "diffusers": diffusers.__version__,
                              "transformers": transformers.__version__, "python": platform.python_version()},
                    command="boomerang train-ldm " + " ".join(cli_args(cfg)))
        _atomic_write_text(config_path, json.dumps(info, indent=1))

    with _Stopper(cfg.max_minutes) as stopper:
        def total_wall() -> float:
            return state["wall_before"] + stopper.elapsed()

        def extra():
            return {"config": asdict(cfg), "wall_time_s": total_wall(), "stage": state.get("stage"),
                    "last_loss": state["last_loss"]}

        vae_dir = out / "vae"
        if (vae_dir / "config.json").exists() and (out / VAE_CHECKPOINT_NAME).exists() and config_path.exists():
            from diffusers import AutoencoderKL

            vae = AutoencoderKL.from_pretrained(vae_dir, use_safetensors=True).to(device)
            prev = json.loads(config_path.read_text())
            summary.update(vae_step=prev["vae_step"], vae_wall_time_s=prev["vae_wall_time_s"])
            state["wall_before"] = float(prev["vae_wall_time_s"])
        else:
            vae, vae_step, stopped = _train_vae(cfg, x_train, device, stopper, state, extra)
            summary.update(stage="vae", vae_step=vae_step, vae_wall_time_s=round(total_wall(), 1), step=0,
                           wall_time_s=round(total_wall(), 1), last_loss=state["last_loss"], stopped=stopped)
            if vae is not None:
                vae.save_pretrained(vae_dir, safe_serialization=True)
            write_config()
        if vae is not None:
            unet, text_encoder, tokenizer, step, stopped = _train_unet(
                cfg, vae, x_train, y_train, device, stopper, state, extra)
            export_ldm(out, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet)
            summary.update(stage="unet", step=step, wall_time_s=round(total_wall(), 1),
                           last_loss=state["last_loss"], stopped=stopped)
            write_config()
    return summary


# --------------------------------------------------------------------------- CLI


def add_train_ldm_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``train-ldm`` subcommand on an argparse ``subparsers`` object."""
    from boomerang.argparsing import int_list
    from boomerang.train import add_training_run_arguments

    d = LdmTrainConfig()
    p = subparsers.add_parser(
        "train-ldm",
        help="train a small text-conditioned latent diffusion model (Stable Diffusion's shape) on captioned digits",
        description="Stage 1 trains an AutoencoderKL, stage 2 a UNet2DConditionModel and a CLIPTextModel together "
        "on captions built from the digit labels. The output folder loads with StableDiffusionPipeline.from_pretrained "
        "and with boomerang --model; --resume continues either stage exactly.",
    )
    p.add_argument("--data", default=d.data, help="mnist5k (captions come from its labels)")
    p.add_argument("--output", "-o", default=d.output, help="output folder (default %(default)s)")
    p.add_argument("--vae-channels", type=int_list, default=d.vae_channels, help="default 16,32,32 (32x32 -> 8x8)")
    p.add_argument("--unet-channels", type=int_list, default=d.unet_channels, help="default 32,64,64")
    p.add_argument("--unet-layers", type=int, default=d.unet_layers, help="ResNet layers per UNet block")
    p.add_argument("--unet-heads", type=int, default=d.unet_heads, help="attention heads of the UNet's cross-attention")
    p.add_argument("--text-width", type=int, default=d.text_width, help="hidden width of the CLIP text encoder")
    p.add_argument("--text-layers", type=int, default=d.text_layers, help="transformer layers of the text encoder")
    p.add_argument("--text-heads", type=int, default=d.text_heads, help="attention heads of the text encoder")
    p.add_argument("--vae-steps", type=int, default=d.vae_steps, help="stage-1 steps (default %(default)s)")
    p.add_argument("--vae-batch-size", type=int, default=d.vae_batch_size, help="stage-1 (VAE) batch size")
    p.add_argument("--vae-lr", type=float, default=d.vae_lr, help="stage-1 learning rate")
    p.add_argument("--kl-weight", type=float, default=d.kl_weight, help="weight of the VAE's KL term")
    p.add_argument("--max-steps", type=int, default=d.max_steps, help="stage-2 steps (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="stage-2 (UNet + text encoder) batch size")
    p.add_argument("--lr", type=float, default=d.lr, help="stage-2 learning rate")
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps, help="linear learning-rate warm-up steps of either stage")
    p.add_argument("--grad-clip", type=float, default=d.grad_clip, help="gradient-norm clip of stage 2")
    p.add_argument("--ema-decay", type=float, default=d.ema_decay, help="EMA decay cap of the exported weights")
    p.add_argument("--empty-caption-fraction", type=float, default=d.empty_caption_fraction, help="share of captions replaced by \"\" (for classifier-free guidance)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop cleanly after this many minutes of this invocation (--resume continues)")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between atomic checkpoints")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of initialisation, batch order, captions and noise")
    p.add_argument("--max-train-images", type=int, default=None,
                   help="train on only the first N images of the training split (default: all)")
    add_training_run_arguments(p, d, resume_help="continue from the checkpoints in --output",
                               no_progress_help="log lines instead of a progress bar")
    p.set_defaults(func=run_train_ldm)
    return p


def run_train_ldm(args: argparse.Namespace) -> int:
    """Run ``boomerang train-ldm`` from parsed arguments; returns the exit status (2 = bad input)."""
    from boomerang.train import run_config_command

    return run_config_command(LdmTrainConfig, train_ldm, args)
