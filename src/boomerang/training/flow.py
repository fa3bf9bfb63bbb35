"""``boomerang train-flow``: train a small text-conditioned flow-matching model of Stable Diffusion 3's shape.

The components (:mod:`boomerang.training.flow_parts`): the frozen VAE of
``ldm-mnist5k-text`` (its latents get SD3's ``shift_factor`` and ``scaling_factor``:
the mean and 1 / std of the posterior means over the training split), three frozen text
encoders (the trained CLIP of ``ldm-mnist5k-text`` with a projection, a random CLIP, a
random T5), and an ``SD3Transformer2DModel`` trained with rectified flow matching
(Lipman et al. 2023; Liu et al. 2023; SD3: Esser et al. 2024, eq. 1-3):

    z0 = scaling_factor * (posterior sample - shift_factor),  sigma ~ U(0, 1),  eps ~ N(0, I)
    x_t = (1 - sigma) z0 + sigma eps,  loss = |v_theta(x_t, 1000 sigma, c) - (eps - z0)|^2

(uniform sigma, so every noise level Boomerang can start from is trained equally; SD3
itself samples sigma from a logit-normal). Captions as ``train-ldm``: one phrasing of the
label per item, replaced by the empty caption with probability ``empty_caption_fraction``
(classifier-free guidance). The frozen encoders' embeddings of the 71 captions are computed once.

The output folder is a diffusers ``StableDiffusion3Pipeline`` (EMA weights, safetensors;
``FlowMatchEulerDiscreteScheduler`` with shift 3.0), plus ``split.json``,
``train_config.json`` and ``checkpoint.safetensors``; ``--resume`` continues exactly.
Prompts are ``max_sequence_length`` = 8 T5 tokens (the T5 tokenizer's ``model_max_length``,
which :class:`boomerang.models.sd3.SD3Model` honours; pass ``max_sequence_length=8`` to
diffusers' pipeline).
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import asdict, dataclass

from boomerang.training.checkpoint import CHECKPOINT_NAME
from boomerang.training.flow_parts import FlowShape

__all__ = ["FlowTrainConfig", "train_flow", "export_flow", "export_checkpoint"]

_FROZEN_ON_RESUME = ("data", "ldm", "layers", "heads", "head_dim", "patch_size", "batch_size", "lr", "warmup_steps",
                     "grad_clip", "ema_decay", "empty_caption_fraction", "seed", "split_seed", "val_fraction",
                     "test_fraction", "max_train_images")


def _default_ldm() -> str:
    from boomerang.assets import asset_dir

    return str(asset_dir("ldm-mnist5k-text"))


@dataclass
class FlowTrainConfig(FlowShape):
    """All settings of a ``train-flow`` run (defaults = the shipped ``flow-mnist5k-text``).

    Attributes (besides the transformer sizes of :class:`FlowShape`):
        data: ``mnist5k`` (captions come from its labels); digits padded to 32x32 RGB.
        ldm: folder of the ``ldm-mnist5k-text`` pipeline whose VAE, CLIP text encoder and tokenizer
            are reused (default: the bundled one).
        output: output folder.
        max_steps, batch_size, lr, warmup_steps, grad_clip: AdamW steps in total, linear warm-up
            then constant, gradient-norm clip.
        ema_decay: EMA cap; effective decay ``min(ema_decay, (1 + step) / (10 + step))``.
        empty_caption_fraction: share of training captions replaced by "".
        max_minutes: stop cleanly (checkpoint + export) after this many minutes of this invocation.
        checkpoint_every: steps between atomic checkpoints.
        seed: initialisation, random encoders, batch order, captions, posterior samples, sigma, noise.
        max_train_images: train on the first N images of the training split only (tests).
        threads: torch CPU threads (``None`` = torch's default).
    """

    data: str = "mnist5k"
    ldm: str = ""
    output: str = "runs/flow-mnist5k-text"
    max_steps: int = 6000
    batch_size: int = 64
    lr: float = 5e-4
    warmup_steps: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    empty_caption_fraction: float = 0.1
    max_minutes: float | None = None
    checkpoint_every: int = 100
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
        from boomerang.training.config import check_training_flags

        self.ldm = self.ldm or ""  # --ldm not given (None): the bundled ldm-mnist5k-text

        if self.data != "mnist5k":
            raise ValueError(f"--data must be mnist5k (captions come from its digit labels), got {self.data!r}")
        if self.max_train_images is not None and int(self.max_train_images) < 1:
            raise ValueError(f"--max-train-images must be >= 1, got {self.max_train_images}")
        check_training_flags(self, positive=("batch_size", "checkpoint_every", "layers", "heads", "head_dim",
                                             "patch_size"),
                             non_negative=("max_steps", "warmup_steps"))
        if 8 % self.patch_size:
            raise ValueError(f"--patch-size must divide the 8-pixel latent side, got {self.patch_size}")
        if not 0 <= self.empty_caption_fraction < 1:
            raise ValueError(f"--empty-caption-fraction must be in [0, 1), got {self.empty_caption_fraction}")
        ldm = pathlib.Path(self.ldm or _default_ldm())
        if not (ldm / "vae").is_dir() or not (ldm / "text_encoder").is_dir():
            raise ValueError(f"--ldm {ldm} is not an ldm-mnist5k-text folder (no vae/ or text_encoder/)")


def _shape(cfg) -> FlowShape:
    return FlowShape(**{k: getattr(cfg, k) for k in FlowShape.__dataclass_fields__})


def _latent_stats(vae, x_train, device):
    """``(mean, std, std of the posterior)`` tensors of the frozen VAE over the training images."""
    import torch

    with torch.no_grad():
        dists = [vae.encode(x_train[i:i + 256].to(device)).latent_dist for i in range(0, x_train.shape[0], 256)]
    return torch.cat([d.mean for d in dists]), torch.cat([d.std for d in dists])


def build_components(cfg, out, x_train, device):
    """The frozen parts: ``(vae with shift/scaling set, encoders dict, z_mean, z_std)``."""
    from diffusers import AutoencoderKL

    from boomerang.training.flow_parts import build_text_encoders

    ldm = pathlib.Path(cfg.ldm or _default_ldm())
    vae = AutoencoderKL.from_pretrained(ldm / "vae", use_safetensors=True).to(device).eval().requires_grad_(False)
    z_mean, z_std = _latent_stats(vae, x_train, device)
    vae.register_to_config(shift_factor=float(z_mean.mean()), scaling_factor=float(1.0 / z_mean.std()))
    enc = build_text_encoders(ldm, cfg.seed + 2)
    return vae, enc, z_mean, z_std


def export_flow(output, *, vae, enc, transformer) -> None:
    """Save the components as a diffusers ``StableDiffusion3Pipeline`` folder (safetensors)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline

    from boomerang.training.flow_parts import FLOW_SCHEDULER_CONFIG

    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(**FLOW_SCHEDULER_CONFIG), vae=vae,
        text_encoder=enc["text_encoder"], tokenizer=enc["tokenizer"], text_encoder_2=enc["text_encoder_2"],
        tokenizer_2=enc["tokenizer"], text_encoder_3=enc["text_encoder_3"], tokenizer_3=enc["tokenizer_3"])
    pipe.save_pretrained(str(output), safe_serialization=True)


def train_flow(cfg: FlowTrainConfig) -> dict:
    """Train (or resume) the transformer as described by ``cfg`` and export the pipeline.

    Returns:
        a summary dict (``step``, ``wall_time_s``, ``last_loss``, ``output``, ``stopped``).

    Raises:
        ValueError: bad settings, an existing run without ``resume=True``, a resume without a
            checkpoint, or a resume whose settings differ (nothing written).
    """
    cfg.validate()
    from boomerang.training.progress import quiet_libraries

    with quiet_libraries():
        return _train_flow(cfg)


def _setup(cfg):
    """Data, frozen parts, transformer, EMA, optimizer and the loss of step ``s``."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from boomerang.training.data import batch_order, load_split_dataset
    from boomerang.training.ema import make_ema
    from boomerang.training.flow_parts import build_transformer, caption_embeddings
    from boomerang.training.ldm_parts import digits_to_rgb32
    from boomerang.training.config import resolve_device

    device = resolve_device(cfg.device)
    ds, split = load_split_dataset(cfg)
    train_idx = np.asarray(split["train"])
    if cfg.max_train_images is not None:
        train_idx = train_idx[:int(cfg.max_train_images)]
    if len(train_idx) < cfg.batch_size:
        raise ValueError(f"only {len(train_idx)} training images; lower --batch-size")
    x_train = digits_to_rgb32(ds.images[train_idx])
    y_train = torch.as_tensor(ds.labels[train_idx], device=device)
    out = pathlib.Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    vae, enc, z_mean, z_std = build_components(cfg, out, x_train, device)
    shift, scale = float(vae.config.shift_factor), float(vae.config.scaling_factor)
    tok, pool, e_tok, e_pool = (t.to(device) for t in caption_embeddings(enc))
    side = z_mean.shape[-1]

    def build():
        return build_transformer(_shape(cfg), z_mean.shape[1], side, pool.shape[-1])

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + 1)
        model = build()
    ema = make_ema(model, build)
    model.to(device).train()
    ema.to(device).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed + 12)
    indices = batch_order(cfg.seed + 1, len(train_idx), cfg.batch_size)

    def loss_fn(step):
        idx = indices(step).to(device)
        b = idx.shape[0]
        n = torch.randn(z_mean[idx].shape, generator=gen).to(device)
        z0 = scale * (z_mean[idx] + z_std[idx] * n - shift)
        which = torch.randint(0, tok.shape[1], (b,), generator=gen).to(device)
        drop = (torch.rand(b, generator=gen) < cfg.empty_caption_fraction).to(device)
        emb = torch.where(drop[:, None, None], e_tok[None], tok[y_train[idx], which])
        pooled = torch.where(drop[:, None], e_pool[None], pool[y_train[idx], which])
        eps = torch.randn(z0.shape, generator=gen).to(device)
        sigma = torch.rand(b, generator=gen).to(device)
        s = sigma.view(-1, 1, 1, 1)
        x_t = (1 - s) * z0 + s * eps
        v = model(hidden_states=x_t, timestep=1000.0 * sigma, encoder_hidden_states=emb,
                  pooled_projections=pooled).sample
        return F.mse_loss(v, eps - z0)

    return dict(device=device, split=split, n_total=len(ds), n_train=len(train_idx), vae=vae, enc=enc, model=model,
                ema=ema, opt=opt, gen=gen, loss_fn=loss_fn)


def _train_flow(cfg: FlowTrainConfig) -> dict:
    import torch

    from boomerang.fileio import atomic_write_text
    from boomerang.training.checkpoint import check_resume, resume, save_checkpoint
    from boomerang.training.config import cli_args, hardware, versions
    from boomerang.training.data import write_split
    from boomerang.training.loop import Stopper, run_stage

    out = pathlib.Path(cfg.output)
    ckpt = out / CHECKPOINT_NAME
    if ckpt.exists() and not cfg.resume:
        raise ValueError(f"{out} holds a training checkpoint; pass --resume to continue it or choose another --output")
    if cfg.resume and not ckpt.exists():
        raise ValueError(f"--resume given but {out} holds no checkpoint; drop --resume to start a new run")
    if ckpt.exists():
        check_resume(ckpt, cfg, _FROZEN_ON_RESUME)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    s = _setup(cfg)
    write_split(out, cfg, s["split"], n_total=s["n_total"])
    state = {"wall_before": 0.0, "last_loss": float("nan")}
    with Stopper("train-flow", cfg.max_minutes) as stopper:
        step = 0
        if ckpt.exists():
            from boomerang.training.checkpoint import read_meta

            state["last_loss"] = float(read_meta(ckpt)["extra"].get("last_loss", float("nan")))
            step, state["wall_before"] = resume(ckpt, s["model"], s["ema"], s["opt"], s["gen"])

        def checkpoint(step: int, last_loss: float) -> None:
            save_checkpoint(ckpt, s["model"], s["ema"], s["opt"], step, s["gen"],
                            {"config": asdict(cfg), "wall_time_s": state["wall_before"] + stopper.elapsed(),
                             "stage": "transformer", "last_loss": last_loss})

        done = run_stage("transformer", model=s["model"], optimizer=s["opt"], loss_fn=s["loss_fn"],
                         total_steps=cfg.max_steps, step=step, lr=cfg.lr, warmup_steps=cfg.warmup_steps,
                         grad_clip=cfg.grad_clip, ema=s["ema"], ema_decay=cfg.ema_decay, checkpoint=checkpoint,
                         checkpoint_every=cfg.checkpoint_every, stopper=stopper, progress=cfg.progress,
                         last_loss=state["last_loss"])
        wall = round(state["wall_before"] + stopper.elapsed(), 1)
    export_flow(out, vae=s["vae"], enc=s["enc"], transformer=s["ema"])
    summary = {"output": str(out), "step": done.step, "wall_time_s": wall, "last_loss": done.last_loss,
               "stopped": done.stopped}
    info = dict(summary, config=asdict(cfg), n_train=s["n_train"], hardware=hardware(s["device"]),
                versions=versions("diffusers", "transformers"),
                command="boomerang train-flow " + " ".join(cli_args(cfg)))
    atomic_write_text(out / "train_config.json", json.dumps(info, indent=1))
    return summary


def export_checkpoint(run_dir, dest, *, threads: int | None = None) -> dict:
    """Export the EMA weights of ``run_dir``'s latest checkpoint as a ``StableDiffusion3Pipeline`` folder
    at ``dest`` without touching the run (e.g. to measure a run that is still training).

    Returns:
        the checkpoint's metadata (``step``, ``extra``: config, wall time, last loss).
    Raises:
        ValueError: no checkpoint in ``run_dir``.
    """
    import torch
    from safetensors.torch import load_file

    from boomerang.training.checkpoint import read_meta

    ckpt = pathlib.Path(run_dir) / CHECKPOINT_NAME
    if not ckpt.exists():
        raise ValueError(f"{run_dir} holds no {CHECKPOINT_NAME}")
    meta = read_meta(ckpt)
    cfg = FlowTrainConfig(**{k: v for k, v in meta["extra"]["config"].items()
                             if k in FlowTrainConfig.__dataclass_fields__})
    cfg.output, cfg.device = str(dest), "cpu"
    if threads is not None:
        torch.set_num_threads(threads)
    from boomerang.training.progress import quiet_libraries

    with quiet_libraries():
        s = _setup(cfg)
        s["ema"].load_state_dict({k[4:]: v for k, v in load_file(str(ckpt)).items() if k.startswith("ema.")})
        export_flow(dest, vae=s["vae"], enc=s["enc"], transformer=s["ema"])
    from boomerang.fileio import atomic_write_text
    from boomerang.training.data import write_split

    write_split(dest, cfg, s["split"], n_total=s["n_total"])
    from boomerang.training.config import cli_args, hardware, versions

    extra = meta["extra"]
    info = {"output": str(dest), "step": int(meta["step"]), "wall_time_s": round(float(extra.get("wall_time_s", 0)), 1),
            "last_loss": extra.get("last_loss"), "stopped": "exported from the checkpoint of an unfinished run",
            "config": extra["config"], "n_train": int(s["n_train"]), "hardware": hardware(torch.device("cpu")),
            "versions": versions("diffusers", "transformers"),
            "command": "boomerang train-flow " + " ".join(cli_args(FlowTrainConfig(**extra["config"])))}
    atomic_write_text(pathlib.Path(dest) / "train_config.json", json.dumps(info, indent=1))
    return meta
