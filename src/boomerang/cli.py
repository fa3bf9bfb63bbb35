"""Command-line entry point: ``boomerang <command> ...``: a thin shell.

Commands: the tasks of :data:`boomerang.tasks.TASKS` (``sample``, the main
job, and the dataset commands), each a module of :mod:`boomerang.tasks` on the
shared runner; ``train``, ``train-ldm`` and ``train-classifier``
(:mod:`boomerang.training.commands`); ``audit-privacy`` and ``serve``.
Building the parser imports no torch, so ``boomerang --help`` and ``boomerang
sample --help`` answer at once; torch, diffusers and the model load inside the
commands. Library errors name parameters (``level``); :func:`flag_of` turns
them into flags (``--level``) here, in one place.

Exit status: 0 success; 2 bad input (bad parameter, missing or unreadable
input, missing model), reported as one ``boomerang: error: ...`` line on
stderr before any model loads, with nothing written; 1 an unexpected failure
while sampling; 130 interrupted. Dataset commands also: 3 done, but some input
files were skipped (listed in ``OUT/report.json``). ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import sys

from boomerang.argparsing import OneLineErrorParser, subparser, with_defaults


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered (imports no torch)."""
    from boomerang import __version__
    from boomerang.privacy.command import add_audit_privacy_parser
    from boomerang.serve import add_serve_parser
    from boomerang.tasks import add_task_parsers
    from boomerang.training.commands import add_train_classifier_parser, add_train_ldm_parser, add_train_parser

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


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the subcommand.

    Returns:
        The exit status (0 ok, 2 bad input, 1 unexpected failure, 130 interrupted);
        argparse's own exits (``--help``, usage errors) are returned, not raised.
    """
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
    import warnings

    said: list[str] = []
    with warnings.catch_warnings():  # library warnings: one line each, "boomerang: warning: ...", printed when
        warnings.showwarning = lambda message, *a, **k: said.append(str(message))  # the command ends, unless
        rc = int(_run_task(args) if getattr(args, "task", None) is not None else args.func(args))
    if rc != 2:  # it stopped on bad input (exit 2: its one error line is all that is said)
        for message in dict.fromkeys(said):
            print(f"boomerang: warning: {message}", file=sys.stderr)
    return rc


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
