"""Stopping a dataset job or a training run cleanly: SIGINT / SIGTERM end it after the current block or step.

The runner (:func:`boomerang.tasks.runner.execute_job`) enters :class:`Stop` around its loop over
blocks and checks ``stop.signum`` after each journalled block; tasks that cannot resume
(``boomerang sample``) use :class:`NoStop`, which leaves the default handlers in place. The
training commands enter it through :class:`boomerang.training.loop.Stopper` and check it
after each optimizer step.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

__all__ = ["Stop", "NoStop", "StopRequested"]


class StopRequested(BaseException):
    """Raised by :class:`Stop`'s handler inside an interruptible section (reading and sampling
    a block): the block is abandoned, unjournalled, and redone by the next run. A
    ``BaseException``, like ``KeyboardInterrupt``, so that no ``except Exception`` on the way
    (e.g. around an image decoder) can turn it into a skipped file."""


def _say(text: str) -> None:
    """Write to stderr from a signal handler (no buffered-stream re-entry)."""
    try:
        os.write(sys.stderr.fileno(), text.encode())
    except (OSError, ValueError, AttributeError):  # stderr closed or replaced by an object without a fd
        pass


class Stop:
    """SIGINT / SIGTERM: stop the job without a half-written file, leaving it resumable.

    While a block is read and sampled (inside :meth:`interruptible`) the first signal stops at
    once: it raises :class:`StopRequested`, the block is dropped (not journalled) and the next
    run redoes it. A block can take minutes (one large image through ``enhance``), so waiting
    for it would make the signal look ignored. While outputs are written the signal only sets
    ``signum``: the runner stops after the block's writes and journal entry. A second Ctrl-C
    always interrupts at once (``KeyboardInterrupt``). Either way one line on stderr says what
    happens; ``then`` replaces the words after "stopping" in the line of the second case (a
    training run says it checkpoints and that ``--resume`` continues).
    """

    def __init__(self, name: str = "job", then: str | None = None):
        self.name = name
        self.then = then or ("after the outputs being written; press Ctrl-C again to stop at once "
                             "(that block is redone when you rerun).")
        self.signum = None
        self._old = {}
        self._interruptible = False

    @contextlib.contextmanager
    def interruptible(self):
        """The section in which a stop signal abandons the block (reading and sampling, no writes)."""
        if self.signum is not None:
            raise StopRequested
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False

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
        first = self.signum is None
        self.signum = signum
        if not first:
            return
        what = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        if self._interruptible:
            self._interruptible = False
            _say(f"\nboomerang {self.name}: {what}: stopping now; the block in progress is dropped and "
                 "redone when you rerun the same command.\n")
            raise StopRequested
        _say(f"\nboomerang {self.name}: {what}: stopping {self.then}\n")

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


class NoStop:
    """The stand-in for tasks that do not resume: no handler, never a stop request."""

    signum = None

    @contextlib.contextmanager
    def interruptible(self):
        yield

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
