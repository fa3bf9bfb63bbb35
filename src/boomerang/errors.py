"""Errors that name what the user set (torch-free).

Library code names *parameters* (``level must be ...``); the command line
names *flags* (``--level must be ...``). A :class:`SettingError` carries its
message with the parameter names marked in backticks, so one message serves
both: ``str(error)`` drops the marks (the library's wording), and
``error.render(flag_of)`` puts the CLI's flag in place of each name (done in
one place, :func:`boomerang.messages.flag_of`).
"""

from __future__ import annotations

import re
from typing import Callable

__all__ = ["SettingError", "BoomerangWarning"]

_MARK = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")


class BoomerangWarning(UserWarning):
    """A warning of boomerang's own for the user (a ``UserWarning``): an input fitted to a smaller
    model, pixel values clipped ... The commands print these, and only these, as
    ``boomerang: warning: ...`` lines (:func:`boomerang.messages.collect_warnings`); warnings of
    other libraries keep Python's own handling."""


class SettingError(ValueError):
    """A bad setting (a ``ValueError``).

    Args:
        template: the message, with every parameter name in backticks, e.g.
            ``"`level` must be a finite number in [0, 1], got 1.5"``.

    ``str(err)`` is the template with the backticks removed; :meth:`render`
    maps each marked name through a function (the CLI: ``level`` -> ``--level``).
    """

    def __init__(self, template: str):
        self.template = template
        super().__init__(self.render())

    def render(self, name_of: Callable[[str], str] = lambda name: name) -> str:
        """The message with each marked parameter name replaced by ``name_of(name)``."""
        return _MARK.sub(lambda m: name_of(m.group(1)), self.template)
