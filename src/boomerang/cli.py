"""Command-line entry point: ``boomerang <command> ...``: a thin shell.

Commands: the tasks of :data:`boomerang.tasks.TASKS` (``sample``, the main
job, and the dataset commands), each a module of :mod:`boomerang.tasks` on the
shared runner; ``train`` and ``train-classifier``, whose flags are parsed here.
Building the parser imports no torch, so ``boomerang --help`` and ``boomerang
sample --help`` answer at once; torch, diffusers and the model load inside the
commands. Library errors name parameters (``level``); :func:`flag_of` turns
them into flags (``--level``) here, in one place.

Exit status: 0 success; 2 bad input (bad parameter, missing or unreadable
input, missing model), reported as one ``boomerang: error: ...`` line on
stderr before any model loads, with nothing written; 1 an unexpected failure
while sampling; 130 interrupted; 141 (128 + SIGPIPE, as a program the pipe
stopped) the reader of the output went away (``boomerang ... | head``), said
by nothing. Dataset commands also: 3 done, but some input files were skipped
(listed in ``OUT/report.json``). ``--debug`` shows the traceback instead.
Warnings: boomerang's own (:class:`boomerang.errors.BoomerangWarning`), one
``boomerang: warning: ...`` line each when the command ends; other libraries'
warnings keep Python's own handling.
"""

from __future__ import annotations

import argparse
import sys

from boomerang.argparsing import OneLineErrorParser, int_list, subparser, with_defaults


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered (imports no torch)."""
    from boomerang import __version__
    from boomerang.privacy.command import add_audit_privacy_parser
    from boomerang.serve import add_serve_parser
    from boomerang.tasks import add_task_parsers
    from boomerang.train_ldm import add_train_ldm_parser

    parser = OneLineErrorParser(
        prog="boomerang",
        description="Boomerang: local sampling on image manifolds with pretrained diffusion models.",
    )
    parser.add_argument("--version", action="version", version=f"boomerang {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_task_parsers(sub)  # sample and the dataset commands: boomerang.tasks.TASKS
    add_train_parser(sub)
    add_train_classifier_parser(sub)
    add_audit_privacy_parser(sub)
    add_serve_parser(sub)
    add_train_ldm_parser(sub)
    with_defaults(parser)
    return parser


def _run_task(args) -> int:
    from boomerang.tasks.command import run_task_command

    return run_task_command(args)


def _lazy(module: str, name: str):
    """A command function imported only when the command runs (keeps torch off the start-up path)."""

    def call(args):
        import importlib

        return getattr(importlib.import_module(module), name)(args)

    return call


# --------------------------------------------------------------------------- train, train-classifier


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``train`` subcommand on an argparse ``subparsers`` object."""
    from boomerang.train import TrainConfig, add_training_run_arguments

    d = TrainConfig()
    p = subparsers.add_parser(
        "train",
        help="train a pixel-space DDPM (diffusers UNet2DModel) on digits or an image folder",
        description="Train a diffusers UNet2DModel with a DDPM schedule. The output folder loads with "
        "DDPMPipeline.from_pretrained; it also holds split.json, train_config.json and an atomic "
        "checkpoint that --resume continues exactly.",
    )
    p.add_argument("--data", default=d.data, help="mnist5k, digits, or a folder of images (class sub-folders allowed)")
    p.add_argument("--output", "-o", default=d.output, help="output folder (default %(default)s)")
    p.add_argument("--image-size", type=int, default=None,
                   help="folders only: resize images to this side (default: the images' own size)")
    p.add_argument("--channels", type=int_list, default=d.channels, help="UNet channels per level (default 32,64,64)")
    p.add_argument("--attention", type=int_list, default=None,
                   help="0/1 self-attention per level (default: at the second level only, e.g. 0,1,0)")
    p.add_argument("--layers-per-block", type=int, default=d.layers_per_block, help="ResNet layers per UNet level")
    p.add_argument("--norm-groups", type=int, default=d.norm_groups, help="GroupNorm groups (must divide every channel count)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="images per optimizer step")
    p.add_argument("--max-steps", type=int, default=d.max_steps, help="total optimizer steps (default %(default)s)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop cleanly (checkpoint + export) after this many minutes of this invocation")
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
    add_training_run_arguments(p, d, resume_help="continue from OUTPUT/checkpoint.safetensors")
    p.set_defaults(func=_lazy("boomerang.train", "run_train"))
    return p


def add_train_classifier_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``train-classifier`` subcommand."""
    p = subparsers.add_parser(
        "train-classifier",
        help="train the reference digit CNN (feature network for the benchmarks)",
        description="Train the small reference CNN on the training split of mnist5k (the test split is "
        "never used for training or model selection). Writes config.json + model.safetensors + metrics.json.",
    )
    p.add_argument("--data", default="mnist5k", help="labelled 28x28 digits: mnist5k (default) or a folder")
    p.add_argument("--output", "-o", default="runs/classifier-mnist5k",
                   help="folder for config.json, model.safetensors and metrics.json")
    p.add_argument("--epochs", type=int, default=30, help="passes over the training split")
    p.add_argument("--batch-size", type=int, default=64, help="images per optimizer step")
    p.add_argument("--lr", type=float, default=2e-3, help="learning rate")
    p.add_argument("--width", type=int, default=32, help="channels of the first convolution")
    p.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing of the loss")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and batches")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/val/test split")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share held out for validation")
    p.add_argument("--test-fraction", type=float, default=0.1, help="share held out for testing")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", default=None, metavar="N", help="torch CPU threads (default: torch's choice)")
    p.add_argument("--quiet", dest="progress", action="store_false", help="no progress output")
    p.set_defaults(func=_lazy("boomerang.classifier", "run_train_classifier"))
    return p


#: Exit status when the reader of stdout went away (128 + SIGPIPE, what a shell reports for a
#: program that a closed pipe stopped).
EXIT_PIPE = 141


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the subcommand.

    Returns:
        The exit status (0 ok, 2 bad input, 1 unexpected failure, 130 interrupted,
        141 stdout's reader went away); argparse's own exits (``--help``, usage errors)
        are returned, not raised.
    """
    try:
        rc = _main(argv)
        sys.stdout.flush()  # a closed pipe shows here, not as a message at interpreter exit
        return rc
    except BrokenPipeError:  # `boomerang ... | head`: the reader has all it wanted; stop quietly
        return _reader_gone()


def _reader_gone() -> int:
    """Python's recipe for a closed stdout (docs: "Note on SIGPIPE"): point stdout at devnull,
    so that the flush at interpreter exit cannot fail again, and return :data:`EXIT_PIPE`."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # a stdout without a file descriptor (in-process tests)
        pass
    return EXIT_PIPE


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # named by the subcommand's parser, whose --help lists its flags
            subparser(parser, getattr(args, "command", None)).error("unrecognized arguments: " + " ".join(extra))
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    args._argv = list(sys.argv[1:] if argv is None else argv)
    if getattr(args, "func", None) is None and getattr(args, "task", None) is None:
        parser.print_help(sys.stderr)
        return 2
    from boomerang.messages import collect_warnings

    with collect_warnings() as said:  # boomerang's own warnings: one line each, "boomerang: warning: ...",
        rc = int(_run_task(args) if getattr(args, "task", None) is not None else args.func(args))
    if rc != 2:  # printed when the command ends, unless it stopped on bad input (its one error line is all)
        for message in dict.fromkeys(said):
            print(f"boomerang: warning: {message}", file=sys.stderr)
    return rc


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
