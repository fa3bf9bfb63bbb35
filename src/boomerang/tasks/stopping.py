"""Stopping a dataset job cleanly: SIGINT / SIGTERM end it after the current block.

The runner (:func:`boomerang.tasks.runner.run`) enters :class:`Stop` around its loop over
blocks and checks ``stop.signum`` after each journalled block; tasks that cannot resume
(``boomerang sample``) use :class:`NoStop`, which leaves the default handlers in place.
"""

from __future__ import annotations

import os
import signal
import sys

__all__ = ["Stop", "NoStop"]


def _say(text: str) -> None:
    """Write to stderr from a signal handler (no buffered-stream re-entry)."""
    try:
        os.write(sys.stderr.fileno(), text.encode())
    except (OSError, ValueError, AttributeError):  # stderr closed or replaced by an object without a fd
        pass


class Stop:
    """SIGINT / SIGTERM: finish the current block, then stop (a second Ctrl-C interrupts at once).

    The first signal prints one line saying so: a block can take minutes (one large image through
    ``enhance``), and a Ctrl-C that seems ignored invites a SIGKILL. Work of an interrupted block
    is redone by the next run (its outputs are not journalled yet), so stopping at once loses
    nothing that was journalled.
    """

    def __init__(self, name: str = "job"):
        self.name = name
        self.signum = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.signum is None:
            what = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
            _say(f"\nboomerang {self.name}: {what}: stopping after the current block (its outputs are being "
                 "written); press Ctrl-C again to stop at once (that block is redone when you rerun).\n")
        self.signum = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


class NoStop:
    """The stand-in for tasks that do not resume: no handler, never a stop request."""

    signum = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
