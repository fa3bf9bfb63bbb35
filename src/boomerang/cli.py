"""Command-line entry point: ``boomerang <command> ...``.

Heavy imports (torch, diffusers) happen inside the subcommands so that
``boomerang --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    from boomerang import __version__
    from boomerang.classifier import add_train_classifier_parser
    from boomerang.train import add_train_parser

    parser = argparse.ArgumentParser(
        prog="boomerang",
        description="Boomerang local sampling with diffusion models.",
    )
    parser.add_argument("--version", action="version", version=f"boomerang {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_train_parser(sub)
    add_train_classifier_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the subcommand; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
