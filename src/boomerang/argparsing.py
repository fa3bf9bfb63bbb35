"""argparse pieces shared by every command's parser (torch-free).

:class:`OneLineErrorParser` makes usage errors one line with exit status 2,
:func:`int_list` parses ``32,64,64``, and :func:`with_defaults` makes every
option's ``--help`` text state its default.
"""

from __future__ import annotations

import argparse

__all__ = ["OneLineErrorParser", "int_list", "with_defaults", "subparser"]


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse parser whose usage errors are one line (``boomerang: error: ...``,
    exit status 2) instead of the usage text followed by the error; subparsers
    inherit the class."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # --lev is an error, never a silent --level
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"boomerang: error: {message} (see '{self.prog} --help')\n")


def int_list(text: str) -> list[int]:
    """argparse type: comma-separated integers (``"32,64,64"`` -> ``[32, 64, 64]``).

    Raises:
        argparse.ArgumentTypeError: when an entry is not an integer.
    """
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 32,64,64, got {text!r}")


def subparser(parser: argparse.ArgumentParser, name):
    """The parser of subcommand ``name`` (``parser`` itself when there is none)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            return action.choices[name]
    return parser


def with_defaults(parser: argparse.ArgumentParser) -> None:
    """Every option of every subcommand says its default in --help (added where its text does not):
    ``(required)`` for a required option, ``(default: empty)`` for an empty string."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                with_defaults(sub)
            continue
        if not action.option_strings or action.help == argparse.SUPPRESS or action.nargs == 0:
            continue  # positionals, flags (store_true/false), --help, --version
        text = action.help or ""
        if action.required:
            shown = "(required)"
        elif "default" in text:
            continue
        elif action.default is None:
            shown = "(default none)"
        elif action.default == "":
            shown = "(default: empty)"
        else:
            shown = "(default %(default)s)"
        if shown not in text:
            action.help = (text + " " if text else "") + shown
