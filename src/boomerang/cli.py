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

from boomerang.argparsing import OneLineErrorParser, subparser, with_defaults


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered (imports no torch)."""
    from boomerang import __version__
    from boomerang.privacy.calibrate_command import add_calibrate_privacy_parser
    from boomerang.privacy.command import add_audit_privacy_parser
    from boomerang.serve import add_serve_parser
    from boomerang.tasks import add_task_parsers
    from boomerang.training.commands import (add_train_classifier_parser, add_train_flow_parser,
                                              add_train_ldm_parser, add_train_parser)

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
    add_calibrate_privacy_parser(sub)
    add_serve_parser(sub)
    add_train_ldm_parser(sub)
    add_train_flow_parser(sub)
    with_defaults(parser)
    return parser


def _run_task(args) -> int:
    from boomerang.tasks.command import run_task_command

    return run_task_command(args)


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
