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
   (:data:`boomerang.training.ldm_parts.CAPTION_TEMPLATES`), replaced by the empty
   caption with probability ``empty_caption_fraction`` so that classifier-free
   guidance (Ho & Salimans 2022) works.

The output folder is a diffusers ``StableDiffusionPipeline`` (``vae/``,
``text_encoder/``, ``tokenizer/``, ``unet/``, ``scheduler/``,
``model_index.json``; EMA weights, safetensors), plus ``split.json``,
``train_config.json``, ``vae_checkpoint.safetensors`` and
``checkpoint.safetensors`` (:mod:`boomerang.training.checkpoint`'s atomic format);
``--resume`` continues either stage exactly (same batches, captions, noise and
weights as a run that never stopped, on the same machine).

Each stage runs the shared loop (:func:`boomerang.training.loop.run_stage`: warm-up,
clipping, EMA, checkpoints, stopping, progress); this module holds the stages' models,
losses and the export.
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import asdict, dataclass

from boomerang.training.ldm_parts import LdmShape
from boomerang.training.checkpoint import CHECKPOINT_NAME

__all__ = ["LdmTrainConfig", "VAE_CHECKPOINT_NAME", "export_ldm", "train_ldm"]

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
        from boomerang.training.config import check_training_flags

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


# --------------------------------------------------------------------------- the two stages


def _run(name, cfg, ckpt_path, stopper, state, *, model, ema, optimizer, noise_gen, loss_fn, total_steps, lr):
    """One stage on the shared loop: resume from ``ckpt_path`` if it exists, then
    :func:`boomerang.training.loop.run_stage`. Returns ``(step, stopped)``; keeps
    ``state["last_loss"]`` and ``state["wall_before"]`` (the wall time of earlier invocations)."""
    from boomerang.training.checkpoint import resume, save_checkpoint
    from boomerang.training.loop import run_stage

    if ckpt_path.exists():
        step, state["wall_before"] = resume(ckpt_path, model, ema, optimizer, noise_gen)
    else:
        step = 0

    def checkpoint(step: int, last_loss: float) -> None:
        save_checkpoint(ckpt_path, model, ema, optimizer, step, noise_gen,
                        {"config": asdict(cfg), "wall_time_s": state["wall_before"] + stopper.elapsed(),
                         "stage": name, "last_loss": last_loss})

    done = run_stage(name, model=model, optimizer=optimizer, loss_fn=loss_fn, total_steps=total_steps, step=step,
                     lr=lr, warmup_steps=cfg.warmup_steps, grad_clip=cfg.grad_clip, ema=ema,
                     ema_decay=cfg.ema_decay, checkpoint=checkpoint, checkpoint_every=cfg.checkpoint_every,
                     stopper=stopper, progress=cfg.progress, last_loss=state["last_loss"])
    state["last_loss"] = done.last_loss
    return done.step, done.stopped


def _train_vae(cfg, x_train, device, stopper, state):
    """Stage 1: the VAE's loss is ``|decode(z) - x|^2 + kl_weight * KL(q(z|x) || N(0, I))``
    with ``z`` drawn from the posterior. Returns ``(EMA vae or None if stopped early, step, stopped)``."""
    import torch
    import torch.nn.functional as F

    from boomerang.training.ldm_parts import build_vae
    from boomerang.training.data import batch_order
    from boomerang.training.ema import make_ema

    out = pathlib.Path(cfg.output)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        vae = build_vae(_shape(cfg))
    ema = make_ema(vae, lambda: build_vae(_shape(cfg)))
    vae.to(device).train()
    ema.to(device).eval()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed + 11)
    indices = batch_order(cfg.seed, x_train.shape[0], cfg.vae_batch_size)

    def loss_fn(step):
        x = x_train[indices(step)].to(device)
        dist = vae.encode(x).latent_dist
        z = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=gen).to(device)
        rec = vae.decode(z).sample
        kl = 0.5 * (dist.mean.pow(2) + dist.var - 1.0 - dist.logvar).mean()
        return F.mse_loss(rec, x) + cfg.kl_weight * kl

    step, stopped = _run("vae", cfg, out / VAE_CHECKPOINT_NAME, stopper, state, model=vae, ema=ema, optimizer=opt,
                         noise_gen=gen, loss_fn=loss_fn, total_steps=cfg.vae_steps, lr=cfg.vae_lr)
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

    from boomerang.training.ldm_parts import CAPTION_TEMPLATES, captions_for

    def ids(texts):
        return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                         return_tensors="pt").input_ids

    table = torch.stack([ids(captions_for(d)) for d in range(10)])
    assert table.shape[1] == len(CAPTION_TEMPLATES)
    return table, ids([""])[0]


def _train_unet(cfg, vae, x_train, y_train, device, stopper, state):
    """Stage 2: the epsilon loss on the frozen VAE's latents with a caption per item.
    Returns ``(unet, text_encoder, tokenizer, step, stopped)`` (EMA weights)."""
    import torch
    import torch.nn.functional as F

    from boomerang.training.ldm_parts import build_scheduler, build_text_encoder, build_tokenizer, build_unet
    from boomerang.training.data import batch_order
    from boomerang.training.ema import make_ema

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
    ema = make_ema(model, build)
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
    indices = batch_order(cfg.seed + 1, x_train.shape[0], cfg.batch_size)
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

    step, stopped = _run("unet", cfg, out / CHECKPOINT_NAME, stopper, state, model=model, ema=ema, optimizer=opt,
                         noise_gen=gen, loss_fn=loss_fn, total_steps=cfg.max_steps, lr=cfg.lr)
    return ema["unet"], ema["text_encoder"], tokenizer, step, stopped


def export_ldm(output, *, vae, text_encoder, tokenizer, unet) -> None:
    """Save the components as a diffusers ``StableDiffusionPipeline`` (safetensors, no safety checker)."""
    from diffusers import StableDiffusionPipeline

    from boomerang.training.ldm_parts import build_scheduler

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
            resume without a checkpoint, or a resume whose settings differ (nothing written).
    """
    cfg.validate()
    from boomerang.training.progress import quiet_libraries

    with quiet_libraries():
        return _train_ldm(cfg)


def _train_ldm(cfg: LdmTrainConfig) -> dict:
    import numpy as np
    import torch

    from boomerang.fileio import atomic_write_text
    from boomerang.training.ldm_parts import digits_to_rgb32
    from boomerang.training.checkpoint import check_resume
    from boomerang.training.config import cli_args, hardware, resolve_device, versions
    from boomerang.training.data import load_split_dataset, write_split
    from boomerang.training.loop import Stopper

    out = pathlib.Path(cfg.output)
    ckpts = {out / VAE_CHECKPOINT_NAME: _FROZEN_VAE, out / CHECKPOINT_NAME: _FROZEN_ON_RESUME}
    if any(p.exists() for p in ckpts) and not cfg.resume:
        raise ValueError(f"{out} holds a training checkpoint; pass --resume to continue it or choose another --output")
    if cfg.resume and not any(p.exists() for p in ckpts):
        raise ValueError(f"--resume given but {out} holds no checkpoint; drop --resume to start a new run")
    for path, frozen in ckpts.items():
        if path.exists():
            check_resume(path, cfg, frozen)
    device = resolve_device(cfg.device)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    ds, split = load_split_dataset(cfg)
    train_idx = np.asarray(split["train"])
    if cfg.max_train_images is not None:
        train_idx = train_idx[:int(cfg.max_train_images)]
    if len(train_idx) < max(cfg.batch_size, cfg.vae_batch_size):
        raise ValueError(f"only {len(train_idx)} training images; lower --batch-size / --vae-batch-size")
    x_train = digits_to_rgb32(ds.images[train_idx])
    y_train = ds.labels[train_idx]
    out.mkdir(parents=True, exist_ok=True)
    write_split(out, cfg, split, n_total=len(ds))

    state: dict = {"last_loss": float("nan"), "wall_before": 0.0}
    summary: dict = {"output": str(out)}
    config_path = out / "train_config.json"

    def write_config() -> None:
        info = dict(summary, config=asdict(cfg), n_train=int(len(train_idx)), hardware=hardware(device),
                    versions=versions("diffusers", "transformers"),
                    command="boomerang train-ldm " + " ".join(cli_args(cfg)))
        atomic_write_text(config_path, json.dumps(info, indent=1))

    with Stopper("train-ldm", cfg.max_minutes) as stopper:
        def total_wall() -> float:
            return state["wall_before"] + stopper.elapsed()

        vae_dir = out / "vae"
        if (vae_dir / "config.json").exists() and (out / VAE_CHECKPOINT_NAME).exists() and config_path.exists():
            from diffusers import AutoencoderKL

            vae = AutoencoderKL.from_pretrained(vae_dir, use_safetensors=True).to(device)
            prev = json.loads(config_path.read_text())
            summary.update(vae_step=prev["vae_step"], vae_wall_time_s=prev["vae_wall_time_s"])
            state["wall_before"] = float(prev["vae_wall_time_s"])
        else:
            vae, vae_step, stopped = _train_vae(cfg, x_train, device, stopper, state)
            summary.update(stage="vae", vae_step=vae_step, vae_wall_time_s=round(total_wall(), 1), step=0,
                           wall_time_s=round(total_wall(), 1), last_loss=state["last_loss"], stopped=stopped)
            if vae is not None:
                vae.save_pretrained(vae_dir, safe_serialization=True)
            write_config()
        if vae is not None:
            unet, text_encoder, tokenizer, step, stopped = _train_unet(cfg, vae, x_train, y_train, device, stopper,
                                                                       state)
            export_ldm(out, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet)
            summary.update(stage="unet", step=step, wall_time_s=round(total_wall(), 1),
                           last_loss=state["last_loss"], stopped=stopped)
            write_config()
    return summary
