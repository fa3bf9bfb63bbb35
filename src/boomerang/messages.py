"""What every command says to the user: the one error line and flag names (torch-free).

Library errors name *parameters* (``level``); the command line names *flags*
(``--level``). :func:`flag_of` is the one place where a parameter becomes a
flag, :func:`user_message` renders an exception for the user and
:func:`print_error` prints the one ``boomerang: error: ...`` line that every
command prints. Any module may import this one; it imports nothing of the
package but :mod:`boomerang.errors`.
"""

from __future__ import annotations

import sys

from boomerang.errors import SettingError

__all__ = ["flag_of", "user_message", "print_error"]

#: Parameters whose flag is not ``--`` + the name with hyphens.
_FLAG_NAMES = {"images": "IMAGE", "input": "IN_DIR"}


def flag_of(name: str) -> str:
    """The command-line flag of a library parameter: ``num_samples`` -> ``--num-samples``.
    The one place where library parameter names become flags (see ``boomerang.errors``)."""
    return _FLAG_NAMES.get(name, "--" + name.replace("_", "-"))


def user_message(exc: BaseException) -> str:
    """The one-line message for a user error: a SettingError rendered with flags, else ``str(exc)``."""
    return exc.render(flag_of) if isinstance(exc, SettingError) else str(exc)


def print_error(message: str, status: int = 2) -> int:
    """Print the one error line of every command, ``boomerang: error: <message>``, on stderr;
    returns ``status`` (the exit status). Every command's errors go through here."""
    print(f"boomerang: error: {message}", file=sys.stderr)
    return status
