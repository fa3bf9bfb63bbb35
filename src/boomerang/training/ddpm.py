"""``boomerang train``: train a pixel-space DDPM (diffusers ``UNet2DModel``).

The output folder is a diffusers ``DDPMPipeline`` (``model_index.json``,
``unet/``, ``scheduler/``; safetensors weights, EMA), so
``DDPMPipeline.from_pretrained(output)`` loads it unchanged. Next to it:

- ``split.json``: the fixed, seeded train/val/test split (indices into the
  dataset); only ``train`` is used for training.
- ``train_config.json``: every resolved setting, the step reached, wall time,
  hardware and library versions.
- ``checkpoint.safetensors``: model, EMA, optimizer, step and RNG state,
  written atomically (temp file, then ``os.replace``) every
  ``--checkpoint-every`` steps. ``--resume`` continues from it exactly: a
  run that is killed (even ``kill -9``) and resumed ends with the same
  weights, bit for bit on the same machine, as one that never stopped.

Randomness: the batch order of epoch ``e`` is a permutation drawn from a
generator seeded with ``(seed, e)``; noise and timesteps come from one
generator seeded with ``seed`` whose state is checkpointed. The global torch
RNG is never used.

Heavy imports (torch, diffusers) happen inside functions so that
``boomerang --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import signal
import sys
import time
from dataclasses import asdict, dataclass, field

CHECKPOINT_NAME = "checkpoint.safetensors"
SPLIT_NAME = "split.json"
CONFIG_NAME = "train_config.json"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_training_flags(cfg, *, positive=(), non_negative=(), rates=("lr",)) -> None:
    """The checks every training command shares (``train``, ``train-ldm``), one ValueError naming the flag.

    Args:
        cfg: a training config (``TrainConfig``, ``LdmTrainConfig``) with ``ema_decay``,
            ``threads`` and ``max_minutes``.
        positive: fields that must be > 0 (sizes, counts).
        non_negative: fields that must be >= 0 (step counts).
        rates: learning rates, which must be > 0.

    Raises:
        ValueError: e.g. ``--batch-size must be > 0, got 0``; also ``ema_decay`` outside [0, 1),
            ``max_minutes`` given and not > 0, ``threads`` given and not an integer >= 1
            (``boomerang.threads.check_threads``, which also turns ``"2"`` into 2).
    """
    for name in positive:
        if getattr(cfg, name) <= 0:
            raise ValueError(f"{_flag(name)} must be > 0, got {getattr(cfg, name)}")
    for name in non_negative:
        if getattr(cfg, name) < 0:
            raise ValueError(f"{_flag(name)} must be >= 0, got {getattr(cfg, name)}")
    for name in rates:
        if not getattr(cfg, name) > 0:
            raise ValueError(f"{_flag(name)} must be > 0, got {getattr(cfg, name)}")
    if not 0 <= cfg.ema_decay < 1:
        raise ValueError(f"--ema-decay must be in [0, 1), got {cfg.ema_decay}")
    from boomerang.threads import check_threads

    cfg.threads = check_threads(cfg.threads, allow_torch=False)  # "2" from the command line -> 2
    if cfg.max_minutes is not None and not cfg.max_minutes > 0:
        raise ValueError(f"--max-minutes must be > 0, got {cfg.max_minutes}")


def add_training_run_arguments(p: argparse.ArgumentParser, d, *, resume_help: str,
                               no_progress_help: str = "no progress bar") -> None:
    """The flags of a training run that ``train`` and ``train-ldm`` share (defaults from the
    config ``d``): the data split, --device, --threads, --resume and --no-progress."""
    p.add_argument("--split-seed", type=int, default=d.split_seed, help="seed of the train/val/test split")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction, help="share of the data held out for validation")
    p.add_argument("--test-fraction", type=float, default=d.test_fraction, help="share of the data held out for testing")
    p.add_argument("--device", default=d.device, help="cpu, cuda, cuda:N, mps or auto (default cpu)")
    p.add_argument("--threads", default=None, metavar="N", help="torch CPU threads (default: torch's choice)")
    p.add_argument("--resume", action="store_true", help=resume_help)
    p.add_argument("--no-progress", dest="progress", action="store_false", help=no_progress_help)

# Settings that must not change when a run is resumed.
_FROZEN_ON_RESUME = (
    "data", "image_size", "channels", "layers_per_block", "attention", "norm_groups",
    "batch_size", "lr", "warmup_steps", "weight_decay", "grad_clip", "ema_decay", "seed",
    "split_seed", "val_fraction", "test_fraction", "num_train_timesteps", "beta_schedule",
)


@dataclass
class TrainConfig:
    """All settings of a training run (defaults = the bundled mnist5k model).

    Attributes:
        data: ``"mnist5k"``, ``"digits"`` or an image folder (see
            :func:`boomerang.data.load_dataset`).
        output: output folder (pipeline + checkpoint + split).
        image_size: folder datasets only: resize to this side (pixels).
        channels: UNet ``block_out_channels``; one entry per resolution level.
            Each halving needs the side to be divisible (28 -> 14 -> 7).
        layers_per_block: ResNet layers per level.
        attention: 1 = self-attention at that level (same length as channels);
            ``None`` (default) = attention at the second level only (the
            first downsampled one, 14x14 for 28x28 digits), or none for a
            single level: ``[0, 1, 0]`` for three levels.
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
        if self.norm_groups <= 0 or any(c % self.norm_groups for c in self.channels):
            raise ValueError(f"--norm-groups {self.norm_groups} must divide every --channels entry {self.channels}")
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


def resolve_device(name: str):
    """``"auto"`` -> cuda if available, else mps, else cpu; otherwise check it exists
    (``boomerang.settings.torch_device``, the one device parser).

    Raises:
        SettingError: (a ValueError) the device is not a device name or not available here.
    """
    from boomerang.settings import torch_device

    return torch_device(name, allow=("cpu", "cuda", "mps", "auto"))


# --------------------------------------------------------------------------- checkpoint I/O


def _atomic_write_text(path: pathlib.Path, text: str) -> None:
    from boomerang.imageio import atomic_write_bytes

    atomic_write_bytes(path, text.encode())


def save_checkpoint(path, model, ema, optimizer, step: int, noise_gen, extra: dict) -> None:
    """Write model, EMA, optimizer, step and RNG state to one safetensors file, atomically.

    Tensors go into the safetensors payload; the step, optimizer param groups
    and ``extra`` (config, wall time) go into its JSON metadata.
    """
    import torch
    from safetensors.torch import save

    tensors = {}
    for k, v in model.state_dict().items():
        tensors[f"model.{k}"] = v.detach().cpu().contiguous()
    for k, v in ema.state_dict().items():
        tensors[f"ema.{k}"] = v.detach().cpu().contiguous()
    osd = optimizer.state_dict()
    for pid, st in osd["state"].items():
        for k, v in st.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            tensors[f"optim.{pid}.{k}"] = t.detach().cpu().contiguous()
    tensors["rng.noise"] = noise_gen.get_state().clone()
    meta = {
        "step": step,
        "param_groups": osd["param_groups"],
        "extra": extra,
        "format": "boomerang-train-checkpoint/1",
    }
    data = save(tensors, metadata={"boomerang": json.dumps(meta)})
    from boomerang.imageio import atomic_write_bytes

    atomic_write_bytes(path, data)


def load_checkpoint(path, model, ema, optimizer, noise_gen) -> dict:
    """Restore a checkpoint written by :func:`save_checkpoint` in place.

    Returns:
        the metadata dict (``step``, ``extra``).

    Raises:
        ValueError: the file is not such a checkpoint.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        md = f.metadata() or {}
    if "boomerang" not in md:
        raise ValueError(f"{path} is not a boomerang training checkpoint")
    meta = json.loads(md["boomerang"])
    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    noise_gen.set_state(tensors["rng.noise"])
    return meta


def export_pipeline(ema, scheduler, output) -> None:
    """Save the EMA UNet + scheduler as a diffusers DDPMPipeline (safetensors) in ``output``;
    every file and folder in it gets the mode the umask gives (like any other file written)."""
    from diffusers import DDPMPipeline

    from boomerang.imageio import follow_umask

    pipe = DDPMPipeline(unet=ema, scheduler=scheduler)
    pipe.save_pretrained(str(output), safe_serialization=True)
    follow_umask(output)  # weights are written through temporary files (mode 0600): follow the umask


# --------------------------------------------------------------------------- training


def _hardware(device) -> str:
    import torch

    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA)"
    return f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def train(cfg: TrainConfig) -> dict:
    """Train (or resume) a DDPM as described by ``cfg`` and export it.

    Returns:
        a summary dict (``step``, ``wall_time_s``, ``last_loss``, ``output``,
        ``stopped`` = ``"max_steps"``, ``"max_minutes"`` or ``"signal"``).

    Raises:
        ValueError: bad settings, an existing checkpoint without
            ``resume=True``, or a resume whose frozen settings differ.
    """
    cfg.validate()
    import numpy as np
    import torch
    import torch.nn.functional as F

    from boomerang.data import load_dataset, make_split, save_split

    out = pathlib.Path(cfg.output)
    ckpt_path = out / CHECKPOINT_NAME
    if ckpt_path.exists() and not cfg.resume:
        raise ValueError(f"{ckpt_path} exists; pass --resume to continue that run or choose another --output")
    if cfg.resume and not ckpt_path.exists():
        raise ValueError(f"--resume given but {ckpt_path} does not exist; drop --resume to start a new run")
    device = resolve_device(cfg.device)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)

    ds = load_dataset(cfg.data, image_size=cfg.image_size)
    for f, why in ds.skipped:
        print(f"boomerang train: warning: skipped unreadable image {f} ({why})", file=sys.stderr)
    split = make_split(ds.labels, seed=cfg.split_seed, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction)
    train_idx = np.asarray(split["train"])
    if len(train_idx) < cfg.batch_size:
        raise ValueError(
            f"only {len(train_idx)} training images but --batch-size {cfg.batch_size}; lower the batch size"
        )
    x_train = torch.from_numpy(ds.images[train_idx]).float().div_(127.5).sub_(1.0)  # [N, C, H, W] in [-1, 1]
    n_train, in_ch, side = x_train.shape[0], x_train.shape[1], x_train.shape[-1]

    # Initialise under a local seed: fork_rng keeps the global RNG untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = build_unet(cfg, side, in_ch)
    ema = build_unet(cfg, side, in_ch)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    model.to(device).train()
    ema.to(device).eval()
    scheduler = build_scheduler(cfg)
    alphas_cumprod = scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    noise_gen = torch.Generator().manual_seed(cfg.seed + 1)

    step, wall_before = 0, 0.0
    if cfg.resume:
        meta = load_checkpoint(ckpt_path, model, ema, optimizer, noise_gen)
        old = meta["extra"].get("config", {})
        changed = [k for k in _FROZEN_ON_RESUME if k in old and old[k] != asdict(cfg)[k]]
        if changed:
            raise ValueError(
                "cannot resume with different settings: "
                + ", ".join(f"{k} (checkpoint {old[k]!r}, now {asdict(cfg)[k]!r})" for k in changed)
            )
        step = int(meta["step"])
        wall_before = float(meta["extra"].get("wall_time_s", 0.0))

    out.mkdir(parents=True, exist_ok=True)
    save_split(out / SPLIT_NAME, split, dataset=cfg.data, split_seed=cfg.split_seed,
               val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, n_total=len(ds))
    n_params = sum(p.numel() for p in model.parameters())

    steps_per_epoch = n_train // cfg.batch_size
    perm_cache: dict[int, torch.Tensor] = {}

    def batch_indices(s: int) -> torch.Tensor:
        epoch, pos = divmod(s, steps_per_epoch)
        if epoch not in perm_cache:
            perm_cache.clear()
            g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
            perm_cache[epoch] = torch.randperm(n_train, generator=g)
        return perm_cache[epoch][pos * cfg.batch_size:(pos + 1) * cfg.batch_size]

    stop_signal = {"sig": None}

    def _on_signal(signum, frame):  # finish the step, checkpoint, export, exit
        stop_signal["sig"] = signum

    old_handlers = {}
    for s in (signal.SIGTERM, signal.SIGINT):
        try:
            old_handlers[s] = signal.signal(s, _on_signal)
        except ValueError:  # not in the main thread
            pass

    t0 = time.monotonic()
    last_loss = float("nan")
    smooth = None

    def extra() -> dict:
        return {"config": asdict(cfg), "wall_time_s": wall_before + time.monotonic() - t0,
                "last_loss": last_loss, "n_params": n_params}

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, model, ema, optimizer, step, noise_gen, extra())

    def write_config(stopped: str | None) -> dict:
        import diffusers

        info = {
            "config": asdict(cfg),
            "step": step,
            "wall_time_s": round(wall_before + time.monotonic() - t0, 1),
            "last_loss": last_loss,
            "n_params": n_params,
            "n_train": int(n_train),
            "image_shape": [int(in_ch), int(side), int(side)],
            "hardware": _hardware(device),
            "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                         "python": platform.python_version()},
            "command": "boomerang train " + " ".join(cli_args(cfg)),
            "stopped": stopped,
            "skipped": [{"file": f, "reason": why} for f, why in ds.skipped],
        }
        _atomic_write_text(out / CONFIG_NAME, json.dumps(info, indent=1))
        return info

    bar = None
    if cfg.progress and sys.stderr.isatty():  # never drawn into redirected logs
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.max_steps, initial=step, desc="train", unit="step", dynamic_ncols=True)
    stopped = "max_steps"
    try:
        while step < cfg.max_steps:
            if stop_signal["sig"] is not None:
                stopped = "signal"
                break
            if cfg.max_minutes is not None and time.monotonic() - t0 >= cfg.max_minutes * 60:
                stopped = "max_minutes"
                break
            lr = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
            for group in optimizer.param_groups:
                group["lr"] = lr
            x0 = x_train[batch_indices(step)].to(device)
            eps = torch.randn(x0.shape, generator=noise_gen).to(device)
            t = torch.randint(0, cfg.num_train_timesteps, (x0.shape[0],), generator=noise_gen).to(device)
            ab = alphas_cumprod[t].view(-1, 1, 1, 1)
            x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
            pred = model(x_t, t).sample
            loss = F.mse_loss(pred, eps)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            step += 1
            decay = min(cfg.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.lerp_(pm, 1.0 - decay)
            last_loss = float(loss.detach())
            smooth = last_loss if smooth is None else 0.98 * smooth + 0.02 * last_loss
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{smooth:.4f}", lr=f"{lr:.1e}")
            if step % cfg.checkpoint_every == 0:
                checkpoint()
        checkpoint()
        export_pipeline(ema, scheduler, out)
        info = write_config(stopped)
    finally:
        if bar is not None:
            bar.close()
        for s, h in old_handlers.items():
            signal.signal(s, h)
    return {"step": step, "wall_time_s": info["wall_time_s"], "last_loss": last_loss,
            "output": str(out), "stopped": stopped, "skipped": [f for f, _ in ds.skipped]}


# --------------------------------------------------------------------------- CLI


def cli_args(cfg) -> list[str]:
    """The flags that rebuild the training config ``cfg`` (a ``TrainConfig`` or ``LdmTrainConfig``):
    those whose value differs from the default, lists comma-separated (for train_config.json's command)."""
    d = type(cfg)()
    args = []
    for k, v in asdict(cfg).items():
        if k in ("progress", "resume") or v == getattr(d, k):
            continue
        args += [_flag(k), ",".join(map(str, v)) if isinstance(v, list) else str(v)]
    return args


def run_config_command(config_class, train_fn, args: argparse.Namespace) -> int:
    """Build ``config_class`` from the parsed flags it has fields for, run ``train_fn(cfg)``
    and print its summary as JSON; a ValueError becomes one ``boomerang: error: ...``
    line. Returns the exit status (0 done, 2 bad input). Shared by ``train`` and ``train-ldm``."""
    names = set(config_class.__dataclass_fields__)
    cfg = config_class(**{k: v for k, v in vars(args).items() if k in names})
    try:
        summary = train_fn(cfg)
    except ValueError as e:
        from boomerang.messages import print_error, user_message

        return print_error(user_message(e))
    print(json.dumps(summary))
    return 0


def run_train(args: argparse.Namespace) -> int:
    """Run ``boomerang train`` from parsed arguments; returns the exit status (2 = bad input)."""
    return run_config_command(TrainConfig, train, args)
