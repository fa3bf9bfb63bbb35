"""What every command says to the user: the one error line and flag names (torch-free).

Library errors name *parameters* (``level``); the command line names *flags*
(``--level``). :func:`flag_of` is the one place where a parameter becomes a
flag, :func:`user_message` renders an exception for the user and
:func:`print_error` prints the one ``boomerang: error: ...`` line that every
command prints. Any module may import this one; it imports nothing of the
package but :mod:`boomerang.errors`.
"""

from __future__ import annotations

import contextlib
import sys

from boomerang.errors import BoomerangWarning, SettingError

__all__ = ["flag_of", "user_message", "print_error", "collect_warnings"]

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


@contextlib.contextmanager
def collect_warnings():
    """Collect the messages of boomerang's own warnings (:class:`boomerang.errors.BoomerangWarning`)
    raised inside, every time (not once per place: a server runs many times); yields the list.
    Every other warning (another library's ResourceWarning, DeprecationWarning ...) keeps Python's
    own filters and printing: it is never said as boomerang's. The CLI prints the collected
    messages as ``boomerang: warning: ...`` lines; the page shows them after a run. The warnings
    machinery is process-wide: callers on several threads serialise their use."""
    import warnings

    said: list[str] = []
    with warnings.catch_warnings():  # restores the filters and showwarning on exit
        warnings.simplefilter("always", BoomerangWarning)
        show = warnings.showwarning

        def collect(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, BoomerangWarning):
                said.append(str(message))
            else:
                show(message, category, filename, lineno, file, line)

        warnings.showwarning = collect
        yield said
