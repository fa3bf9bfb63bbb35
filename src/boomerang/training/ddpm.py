"""``boomerang train``: train a pixel-space DDPM (diffusers ``UNet2DModel``).

The output folder is a diffusers ``DDPMPipeline`` (``model_index.json``,
``unet/``, ``scheduler/``; safetensors weights, EMA), so
``DDPMPipeline.from_pretrained(output)`` loads it unchanged. Next to it:

- ``split.json``: the fixed, seeded train/val/test split (indices into the
  dataset); only ``train`` is used for training.
- ``train_config.json``: every resolved setting, the step reached, wall time,
  hardware and library versions.
- ``checkpoint.safetensors``: model, EMA, optimizer, step and RNG state
  (:mod:`boomerang.training.checkpoint`), written atomically every
  ``--checkpoint-every`` steps. ``--resume`` continues from it exactly: a
  run that is killed (even ``kill -9``) and resumed ends with the same
  weights, bit for bit on the same machine, as one that never stopped.

Randomness: the batch order of epoch ``e`` is a permutation drawn from a
generator seeded with ``(seed, e)`` (:func:`boomerang.training.data.batch_order`);
noise and timesteps come from one generator seeded with ``seed + 1`` whose state is
checkpointed. The initial weights are drawn under ``seed`` with the global torch RNG
forked, so the caller's RNG state is left alone.

The loop itself (warm-up, clipping, EMA, checkpoints, stopping, progress) is the shared
:func:`boomerang.training.loop.run_stage`; this module holds the DDPM's own parts: its
config, network, noise schedule, loss and export.

Heavy imports (torch, diffusers) happen inside functions so that
``boomerang --help`` stays fast.
"""

from __future__ import annotations

import json
import pathlib
import sys
from dataclasses import asdict, dataclass, field

from boomerang.training.checkpoint import CHECKPOINT_NAME
from boomerang.training.data import SPLIT_NAME

__all__ = ["TrainConfig", "build_unet", "build_scheduler", "export_pipeline", "train", "CHECKPOINT_NAME",
           "SPLIT_NAME", "CONFIG_NAME"]

CONFIG_NAME = "train_config.json"

# Settings that must not change when a run is resumed.
_FROZEN_ON_RESUME = (
    "data", "image_size", "channels", "layers_per_block", "attention", "mid_attention", "norm_groups",
    "batch_size", "lr", "warmup_steps", "weight_decay", "grad_clip", "ema_decay", "seed",
    "split_seed", "val_fraction", "test_fraction", "num_train_timesteps", "beta_schedule",
)


@dataclass
class TrainConfig:
    """All settings of a training run (defaults = the bundled mnist5k model).

    Attributes:
        data: ``"mnist5k"``, ``"digits"``, ``"photos"`` (random colour patches of the photos
            that ship with scikit-image, scikit-learn and matplotlib, held-out photos excluded:
            :mod:`boomerang.training.photos`) or an image folder (see
            :func:`boomerang.data.load_dataset`).
        output: output folder (pipeline + checkpoint + split).
        image_size: folder datasets: resize to this side (pixels); ``photos``: the patch side
            (default 32).
        channels: UNet ``block_out_channels``; one entry per resolution level.
            Each halving needs the side to be divisible (28 -> 14 -> 7).
        layers_per_block: ResNet layers per level.
        attention: 1 = self-attention at that level (same length as channels);
            ``None`` (default) = attention at the second level only (the
            first downsampled one, 14x14 for 28x28 digits), or none for a
            single level: ``[0, 1, 0]`` for three levels.
        mid_attention: 1 = self-attention in the UNet's middle block (at the lowest
            resolution; diffusers' default), 0 = none, so that the network is fully
            convolutional with a local receptive field (the photo model).
        norm_groups: GroupNorm groups; must divide every entry of channels.
        batch_size: images per step.
        max_steps: optimizer steps in total (across resumes).
        max_minutes: stop (checkpoint + export) after this many minutes of
            this invocation; ``None`` = no limit.
        lr: AdamW peak learning rate, reached linearly after warmup_steps and
            then held constant (the EMA does the averaging).
        ema_decay: EMA decay cap; the effective decay is
            ``min(ema_decay, (1 + step) / (10 + step))`` so early EMA weights
            are not dominated by the random initialisation.
        checkpoint_every: steps between atomic checkpoints.
        seed: seed for initialisation, batch order, noise and timesteps.
        split_seed: seed of the train/val/test split.
        num_train_timesteps, beta_schedule: the DDPM schedule (epsilon
            prediction, clip_sample=True). ``"squaredcos_cap_v2"`` (default)
            is the cosine schedule of Nichol & Dhariwal (2021, eq. 17):
            alpha_bar falls gradually over t, so Boomerang levels spread
            evenly over how much of a small image survives (alpha_bar at
            t = 400 of 1000 is 0.65). ``"linear"`` (betas 1e-4..0.02, Ho et
            al. 2020) leaves alpha_bar(400) = 0.19 and almost nothing of a
            28x28 digit above t = 600; ``"scaled_linear"`` interpolates the
            square roots of 1e-4 and 0.02 (the shape of Stable Diffusion's).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``"auto"``.
        threads: torch CPU threads (``None`` = torch's default). On a small
            shared CPU, 1 thread degrades far less than 2 when another process
            competes for a core.
    """

    data: str = "mnist5k"
    output: str = "runs/ddpm-mnist5k"
    image_size: int | None = None
    channels: list[int] = field(default_factory=lambda: [32, 64, 64])
    layers_per_block: int = 1
    attention: list[int] | None = None
    mid_attention: int = 1
    norm_groups: int = 8
    batch_size: int = 64
    max_steps: int = 6000
    max_minutes: float | None = None
    lr: float = 1e-3
    warmup_steps: int = 200
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    checkpoint_every: int = 250
    seed: int = 0
    split_seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    device: str = "cpu"
    threads: int | None = None
    resume: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.attention is None:
            self.attention = [int(i == 1) for i in range(len(self.channels or []))]

    def validate(self) -> None:
        """Raise ValueError (saying how to fix it) for inconsistent settings."""
        if not self.channels or any(c <= 0 for c in self.channels):
            raise ValueError(f"--channels must be positive integers, e.g. 32,64,64; got {self.channels}")
        if len(self.attention) != len(self.channels) or any(a not in (0, 1) for a in self.attention):
            raise ValueError(
                f"--attention needs one 0/1 flag per --channels entry ({len(self.channels)}), got {self.attention}"
            )
        if self.mid_attention not in (0, 1):
            raise ValueError(f"--mid-attention must be 0 or 1, got {self.mid_attention}")
        if self.norm_groups <= 0 or any(c % self.norm_groups for c in self.channels):
            raise ValueError(f"--norm-groups {self.norm_groups} must divide every --channels entry {self.channels}")
        from boomerang.training.config import check_training_flags

        check_training_flags(self, positive=("batch_size", "layers_per_block", "checkpoint_every", "num_train_timesteps"),
                             non_negative=("max_steps", "warmup_steps"))
        if self.beta_schedule not in ("linear", "scaled_linear", "squaredcos_cap_v2"):
            raise ValueError(
                f"--beta-schedule must be linear, scaled_linear or squaredcos_cap_v2, got {self.beta_schedule!r}"
            )


def build_unet(cfg: TrainConfig, image_size: int, in_channels: int):
    """The diffusers ``UNet2DModel`` described by ``cfg``.

    Args:
        image_size: side of the square images (pixels); must be divisible by
            ``2 ** (len(cfg.channels) - 1)``.
        in_channels: 1 (grayscale) or 3 (RGB); output channels are the same.

    Raises:
        ValueError: the side cannot be halved that many times.
    """
    from diffusers import UNet2DModel

    levels = len(cfg.channels)
    if image_size % (2 ** (levels - 1)):
        raise ValueError(
            f"image side {image_size} is not divisible by 2**{levels - 1} (= {2 ** (levels - 1)}) "
            f"for {levels} --channels levels; use fewer levels or --image-size"
        )
    down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in cfg.attention)
    up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cfg.attention))
    return UNet2DModel(
        sample_size=image_size,
        in_channels=in_channels,
        out_channels=in_channels,
        block_out_channels=tuple(cfg.channels),
        layers_per_block=cfg.layers_per_block,
        down_block_types=down,
        up_block_types=up,
        norm_num_groups=cfg.norm_groups,
        add_attention=bool(cfg.mid_attention),
        attention_head_dim=None if not any(cfg.attention) else min(cfg.channels),
    )


def build_scheduler(cfg: TrainConfig):
    """The ``DDPMScheduler`` used for training and saved with the model."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_start=1e-4,
        beta_end=0.02,
        beta_schedule=cfg.beta_schedule,
        prediction_type="epsilon",
        clip_sample=True,
        clip_sample_range=1.0,
        variance_type="fixed_small",
    )


def export_pipeline(ema, scheduler, output) -> None:
    """Save the EMA UNet + scheduler as a diffusers DDPMPipeline (safetensors) in ``output``;
    every file and folder in it gets the mode the umask gives (like any other file written)."""
    from diffusers import DDPMPipeline

    from boomerang.fileio import follow_umask

    pipe = DDPMPipeline(unet=ema, scheduler=scheduler)
    pipe.save_pretrained(str(output), safe_serialization=True)
    follow_umask(output)  # weights are written through temporary files (mode 0600): follow the umask



# --------------------------------------------------------------------------- training


def train(cfg: TrainConfig) -> dict:
    """Train (or resume) a DDPM as described by ``cfg`` and export it.

    The loss is the epsilon objective of Ho et al. (2020, eq. 14):
    ``|eps - eps_theta(sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps, t)|^2`` with
    ``t`` uniform over the ``num_train_timesteps`` training steps, ``x0`` in [-1, 1].

    Returns:
        a summary dict (``step``, ``wall_time_s``, ``last_loss``, ``output``,
        ``stopped`` = ``"max_steps"``, ``"max_minutes"`` or ``"signal"``, ``skipped``).

    Raises:
        ValueError: bad settings, an existing checkpoint without
            ``resume=True``, or a resume whose frozen settings differ (nothing written).
    """
    cfg.validate()
    from boomerang.training.progress import quiet_libraries

    with quiet_libraries():
        return _train(cfg)


def _train(cfg: TrainConfig) -> dict:
    import torch
    import torch.nn.functional as F

    from boomerang.fileio import atomic_write_text
    from boomerang.training.checkpoint import check_resume, resume, save_checkpoint
    from boomerang.training.config import cli_args, hardware, resolve_device, versions
    from boomerang.training.ema import make_ema
    from boomerang.training.loop import Stopper, run_stage

    out = pathlib.Path(cfg.output)
    ckpt_path = out / CHECKPOINT_NAME
    if ckpt_path.exists() and not cfg.resume:
        raise ValueError(f"{ckpt_path} exists; pass --resume to continue that run or choose another --output")
    if cfg.resume and not ckpt_path.exists():
        raise ValueError(f"--resume given but {ckpt_path} does not exist; drop --resume to start a new run")
    if cfg.resume:
        check_resume(ckpt_path, cfg, _FROZEN_ON_RESUME)
    device = resolve_device(cfg.device)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)

    data = _photo_data(cfg) if cfg.data == "photos" else _array_data(cfg)
    n_train, in_ch, side = data.n_train, data.channels, data.side

    # Initialise under a local seed: fork_rng keeps the global RNG untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = build_unet(cfg, side, in_ch)
    ema = make_ema(model, lambda: build_unet(cfg, side, in_ch))
    model.to(device).train()
    ema.to(device).eval()
    scheduler = build_scheduler(cfg)
    alphas_cumprod = scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    noise_gen = torch.Generator().manual_seed(cfg.seed + 1)
    step, wall_before = resume(ckpt_path, model, ema, optimizer, noise_gen)

    out.mkdir(parents=True, exist_ok=True)
    data.write_split(out)
    n_params = sum(p.numel() for p in model.parameters())

    def loss_fn(step: int):
        x0 = data.batch(step).to(device)
        eps = torch.randn(x0.shape, generator=noise_gen).to(device)
        t = torch.randint(0, cfg.num_train_timesteps, (x0.shape[0],), generator=noise_gen).to(device)
        ab = alphas_cumprod[t].view(-1, 1, 1, 1)
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        return F.mse_loss(model(x_t, t).sample, eps)

    with Stopper("train", cfg.max_minutes) as stopper:
        def checkpoint(step: int, last_loss: float) -> None:
            save_checkpoint(ckpt_path, model, ema, optimizer, step, noise_gen,
                            {"config": asdict(cfg), "wall_time_s": wall_before + stopper.elapsed(),
                             "last_loss": last_loss, "n_params": n_params})

        done = run_stage("train", model=model, optimizer=optimizer, loss_fn=loss_fn, total_steps=cfg.max_steps,
                         step=step, lr=cfg.lr, warmup_steps=cfg.warmup_steps, grad_clip=cfg.grad_clip, ema=ema,
                         ema_decay=cfg.ema_decay, checkpoint=checkpoint, checkpoint_every=cfg.checkpoint_every,
                         stopper=stopper, progress=cfg.progress)
        export_pipeline(ema, scheduler, out)
        info = {
            "config": asdict(cfg),
            "step": done.step,
            "wall_time_s": round(wall_before + stopper.elapsed(), 1),
            "last_loss": done.last_loss,
            "n_params": n_params,
            "n_train": int(n_train),
            "image_shape": [int(in_ch), int(side), int(side)],
            "hardware": hardware(device),
            "versions": versions("diffusers"),
            "command": "boomerang train " + " ".join(cli_args(cfg)),
            "stopped": done.stopped,
            "skipped": [{"file": f, "reason": why} for f, why in data.skipped],
        }
        atomic_write_text(out / CONFIG_NAME, json.dumps(info, indent=1))
    return {"step": done.step, "wall_time_s": info["wall_time_s"], "last_loss": done.last_loss,
            "output": str(out), "stopped": done.stopped, "skipped": [f for f, _ in data.skipped]}


# --------------------------------------------------------------------------- data sources


@dataclass
class _TrainData:
    """What the loss needs from a dataset: ``batch(step)`` -> ``[batch, C, side, side]`` in [-1, 1]
    (a function of the step alone), ``write_split(folder)``, and the sizes for the record."""

    batch: object
    write_split: object
    n_train: int
    channels: int
    side: int
    skipped: list = field(default_factory=list)


def _array_data(cfg: TrainConfig) -> _TrainData:
    """A fixed dataset (mnist5k, digits, a folder): its seeded split, batches in seeded epoch order."""
    import numpy as np
    import torch

    from boomerang.training.data import batch_order, load_split_dataset, write_split

    ds, split = load_split_dataset(cfg, image_size=cfg.image_size)
    for f, why in ds.skipped:
        print(f"boomerang train: warning: skipped unreadable image {f} ({why})", file=sys.stderr)
    train_idx = np.asarray(split["train"])
    if len(train_idx) < cfg.batch_size:
        raise ValueError(
            f"only {len(train_idx)} training images but --batch-size {cfg.batch_size}; lower the batch size"
        )
    x_train = torch.from_numpy(ds.images[train_idx]).float().div_(127.5).sub_(1.0)  # [N, C, H, W] in [-1, 1]
    indices = batch_order(cfg.seed, x_train.shape[0], cfg.batch_size)
    return _TrainData(lambda step: x_train[indices(step)], lambda out: write_split(out, cfg, split, n_total=len(ds)),
                      int(x_train.shape[0]), int(x_train.shape[1]), int(x_train.shape[-1]), list(ds.skipped))


def _photo_data(cfg: TrainConfig) -> _TrainData:
    """``--data photos``: seeded random patches of the training photos (held-out photos excluded)."""
    from boomerang.training.photos import PatchSampler, write_photo_split

    side = cfg.image_size or 32
    sampler = PatchSampler(None, side, cfg.seed)
    return _TrainData(lambda step: sampler.batch(step, cfg.batch_size), lambda out: write_photo_split(out, sampler),
                      len(sampler.photos), 3, side)
