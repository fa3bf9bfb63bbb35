"""The three training commands' flags and how they run: ``train``, ``train-ldm``, ``train-classifier``.

Torch-free at import (``boomerang --help`` stays fast): each command's defaults come from
its config dataclass, the work from its module, imported when the command runs. Every
command takes the same run flags (:func:`add_training_run_arguments`): the split,
``--device``, ``--threads``, ``--max-minutes`` and ``--no-progress`` (``train-classifier``
also keeps its old ``--quiet``, hidden), and ``--resume`` where a run can be continued.
"""

from __future__ import annotations

import argparse
import json

from boomerang.argparsing import int_list

__all__ = ["add_train_parser", "add_train_ldm_parser", "add_train_flow_parser", "run_train_flow", "add_train_classifier_parser", "add_training_run_arguments",
           "run_config_command", "run_train", "run_train_ldm", "run_train_classifier"]

_NO_PROGRESS = "print no progress at all (default: a bar on a terminal, a line every 100 steps otherwise)"


def add_training_run_arguments(p: argparse.ArgumentParser, d, *, resume_help: str | None,
                               max_minutes_help: str) -> None:
    """The flags of a training run that every training command shares (defaults from the
    config ``d``): the data split, --device, --threads, --max-minutes, --resume (when
    ``resume_help`` is given) and --no-progress."""
    p.add_argument("--split-seed", type=int, default=d.split_seed, help="seed of the train/val/test split")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction, help="share of the data held out for validation")
    p.add_argument("--test-fraction", type=float, default=d.test_fraction, help="share of the data held out for testing")
    p.add_argument("--device", default=d.device, help="cpu, cuda, cuda:N, mps or auto (default cpu)")
    p.add_argument("--threads", default=None, metavar="N", help="torch CPU threads (default: torch's choice)")
    p.add_argument("--max-minutes", type=float, default=None, help=max_minutes_help)
    if resume_help is not None:
        p.add_argument("--resume", action="store_true", help=resume_help)
    p.add_argument("--no-progress", dest="progress", action="store_false", help=_NO_PROGRESS)


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``train`` subcommand on an argparse ``subparsers`` object."""
    from boomerang.training.ddpm import TrainConfig

    d = TrainConfig()
    p = subparsers.add_parser(
        "train",
        help="train a pixel-space DDPM (diffusers UNet2DModel) on digits or an image folder",
        description="Train a diffusers UNet2DModel with a DDPM schedule. The output folder loads with "
        "DDPMPipeline.from_pretrained; it also holds split.json, train_config.json and an atomic "
        "checkpoint that --resume continues exactly.",
    )
    p.add_argument("--data", default=d.data, help="mnist5k, digits, photos (colour patches of the photos that ship "
                   "with scikit-image, scikit-learn and matplotlib; held-out photos excluded), or a folder of images "
                   "(class sub-folders allowed)")
    p.add_argument("--output", "-o", default=d.output, help="output folder (default %(default)s)")
    p.add_argument("--image-size", type=int, default=None,
                   help="folders: resize images to this side (default: the images' own size); photos: the patch "
                   "side (default 32)")
    p.add_argument("--channels", type=int_list, default=d.channels, help="UNet channels per level (default 32,64,64)")
    p.add_argument("--attention", type=int_list, default=None,
                   help="0/1 self-attention per level (default: at the second level only, e.g. 0,1,0)")
    p.add_argument("--mid-attention", type=int, default=d.mid_attention, choices=(0, 1),
                   help="1: self-attention in the UNet's middle block (default); 0: none (fully convolutional)")
    p.add_argument("--layers-per-block", type=int, default=d.layers_per_block, help="ResNet layers per UNet level")
    p.add_argument("--norm-groups", type=int, default=d.norm_groups, help="GroupNorm groups (must divide every channel count)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="images per optimizer step")
    p.add_argument("--max-steps", type=int, default=d.max_steps, help="total optimizer steps (default %(default)s)")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate of AdamW (after warm-up)")
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps, help="steps of linear learning-rate warm-up")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay")
    p.add_argument("--grad-clip", type=float, default=d.grad_clip, help="gradient norm clip")
    p.add_argument("--ema-decay", type=float, default=d.ema_decay, help="largest EMA decay of the exported weights")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between atomic checkpoints")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the weights and the training noise")
    p.add_argument("--num-train-timesteps", type=int, default=d.num_train_timesteps, help="T of the noise schedule")
    p.add_argument("--beta-schedule", default=d.beta_schedule,
                   help="squaredcos_cap_v2 (cosine, default), linear or scaled_linear")
    add_training_run_arguments(p, d, resume_help="continue from OUTPUT/checkpoint.safetensors",
                               max_minutes_help="stop cleanly (checkpoint + export) after this many minutes of this "
                               "invocation (--resume continues)")
    p.set_defaults(func=run_train)
    return p


def add_train_ldm_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``train-ldm`` subcommand on an argparse ``subparsers`` object."""
    from boomerang.training.ldm import LdmTrainConfig

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
    p.add_argument("--grad-clip", type=float, default=d.grad_clip, help="gradient-norm clip of either stage")
    p.add_argument("--ema-decay", type=float, default=d.ema_decay, help="EMA decay cap of the exported weights")
    p.add_argument("--empty-caption-fraction", type=float, default=d.empty_caption_fraction, help="share of captions replaced by \"\" (for classifier-free guidance)")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between atomic checkpoints")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of initialisation, batch order, captions and noise")
    p.add_argument("--max-train-images", type=int, default=None,
                   help="train on only the first N images of the training split (default: all)")
    add_training_run_arguments(p, d, resume_help="continue from the checkpoints in --output",
                               max_minutes_help="stop cleanly after this many minutes of this invocation "
                               "(--resume continues)")
    p.set_defaults(func=run_train_ldm)
    return p


def add_train_flow_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``train-flow`` subcommand on an argparse ``subparsers`` object."""
    from boomerang.training.flow import FlowTrainConfig

    d = FlowTrainConfig()
    p = subparsers.add_parser(
        "train-flow",
        help="train a small text-conditioned flow-matching model (Stable Diffusion 3's shape) on captioned digits",
        description="Trains an SD3Transformer2DModel with rectified flow matching on the latents of the "
        "ldm-mnist5k-text VAE, with frozen CLIP x2 + T5 text encoders, on captions built from the digit labels. "
        "The output folder loads with StableDiffusion3Pipeline.from_pretrained and with boomerang --model; "
        "--resume continues exactly.",
    )
    p.add_argument("--data", default=d.data, help="mnist5k (captions come from its labels)")
    p.add_argument("--ldm", default=None, help="ldm-mnist5k-text folder whose VAE, CLIP encoder and tokenizer are "
                   "reused (default: the bundled one)")
    p.add_argument("--output", "-o", default=d.output, help="output folder (default %(default)s)")
    p.add_argument("--layers", type=int, default=d.layers, help="joint transformer blocks (default %(default)s)")
    p.add_argument("--heads", type=int, default=d.heads, help="attention heads (default %(default)s)")
    p.add_argument("--head-dim", type=int, default=d.head_dim, help="width of one head (default %(default)s)")
    p.add_argument("--patch-size", type=int, default=d.patch_size, help="latent patch side (default %(default)s)")
    p.add_argument("--max-steps", type=int, default=d.max_steps, help="optimizer steps (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="images per step (default %(default)s)")
    p.add_argument("--lr", type=float, default=d.lr, help="AdamW learning rate after warm-up (default %(default)s)")
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps, help="linear learning-rate warm-up steps")
    p.add_argument("--grad-clip", type=float, default=d.grad_clip, help="gradient-norm clip")
    p.add_argument("--ema-decay", type=float, default=d.ema_decay, help="EMA decay cap of the exported weights")
    p.add_argument("--empty-caption-fraction", type=float, default=d.empty_caption_fraction,
                   help="share of captions replaced by \"\" (for classifier-free guidance)")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between atomic checkpoints")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of initialisation, batch order, captions and noise")
    p.add_argument("--max-train-images", type=int, default=None,
                   help="train on only the first N images of the training split (default: all)")
    add_training_run_arguments(p, d, resume_help="continue from the checkpoint in --output",
                               max_minutes_help="stop cleanly (checkpoint + export) after this many minutes of this "
                               "invocation (--resume continues)")
    p.set_defaults(func=run_train_flow)
    return p


def add_train_classifier_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``train-classifier`` subcommand on an argparse ``subparsers`` object."""
    from boomerang.training.classifier import ClassifierTrainConfig

    d = ClassifierTrainConfig()
    p = subparsers.add_parser(
        "train-classifier",
        help="train the reference digit CNN (feature network for the benchmarks)",
        description="Train the small reference CNN on the training split of mnist5k (the test split is "
        "never used for training or model selection). Writes config.json + model.safetensors + metrics.json.",
    )
    p.add_argument("--data", default=d.data, help="labelled 28x28 digits: mnist5k (default) or a folder")
    p.add_argument("--output", "-o", default=d.output,
                   help="folder for config.json, model.safetensors and metrics.json")
    p.add_argument("--epochs", type=int, default=d.epochs, help="passes over the training split")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="images per optimizer step")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate of the one-cycle schedule")
    p.add_argument("--width", type=int, default=d.width, help="channels of the first convolution")
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing, help="label smoothing of the loss")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the weights and batches")
    add_training_run_arguments(p, d, resume_help=None,
                               max_minutes_help="stop after this many minutes of this invocation and keep the "
                               "best epoch so far")
    p.add_argument("--quiet", dest="progress", action="store_false", help=argparse.SUPPRESS)  # old name of --no-progress
    p.set_defaults(func=run_train_classifier)
    return p


def run_config_command(config_class, train_fn, args: argparse.Namespace) -> int:
    """Build ``config_class`` from the parsed flags it has fields for, run ``train_fn(cfg)``
    and print its summary as JSON; a ValueError becomes one ``boomerang: error: ...``
    line. Returns the exit status (0 done, also when stopped early (the summary says why);
    2 bad input; 130 interrupted by a second Ctrl-C)."""
    from boomerang.messages import print_error, user_message

    names = set(config_class.__dataclass_fields__)
    cfg = config_class(**{k: v for k, v in vars(args).items() if k in names})
    try:
        summary = train_fn(cfg)
    except ValueError as e:
        return print_error(user_message(e))
    except KeyboardInterrupt:
        return print_error("interrupted", 130)
    print(json.dumps(summary))
    return 0


def run_train(args: argparse.Namespace) -> int:
    """Run ``boomerang train`` from parsed arguments; returns the exit status (2 = bad input)."""
    from boomerang.training.ddpm import TrainConfig, train

    return run_config_command(TrainConfig, train, args)


def run_train_ldm(args: argparse.Namespace) -> int:
    """Run ``boomerang train-ldm`` from parsed arguments; returns the exit status (2 = bad input)."""
    from boomerang.training.ldm import LdmTrainConfig, train_ldm

    return run_config_command(LdmTrainConfig, train_ldm, args)


def run_train_flow(args: argparse.Namespace) -> int:
    """Run ``boomerang train-flow`` from parsed arguments; returns the exit status (2 = bad input)."""
    from boomerang.training.flow import FlowTrainConfig, train_flow

    return run_config_command(FlowTrainConfig, train_flow, args)


def run_train_classifier(args: argparse.Namespace) -> int:
    """Run ``boomerang train-classifier`` from parsed arguments; returns the exit status (2 = bad input)."""
    from boomerang.training.classifier import ClassifierTrainConfig, train_classifier

    return run_config_command(ClassifierTrainConfig, train_classifier, args)
