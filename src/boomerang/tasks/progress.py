"""Progress of a job: a bar on a terminal, a plain line now and then elsewhere (torch-free).

:class:`JobProgress` counts outputs. While a batch is sampled it moves by
fractions of an output after each denoiser step (``advance``); each written
output makes its share whole (``finished``), so the count never goes back and
ends exactly at the number of outputs. On a terminal it is a tqdm bar (what the
page's ``gr.Progress(track_tqdm=True)`` follows too); off a terminal, where a
bar would print nothing useful until the end, it prints one plain line every
``interval`` seconds (30 by default): ``boomerang enhance: 3/8 outputs (37%),
1m05s elapsed, about 1m50s left``.
"""

from __future__ import annotations

import sys
import time

__all__ = ["JobProgress", "LINE_INTERVAL_S"]

#: Seconds between two plain progress lines off a terminal.
LINE_INTERVAL_S = 30.0


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class JobProgress:
    """Progress of ``total`` outputs.

    Args:
        total: outputs of the job.
        initial: outputs made before (a resumed job).
        desc: the command's name (``sample``, ``augment`` ...).
        unit: what is counted (``img``, ``sample``).
        show: ``True`` a bar wherever the stream goes, ``False`` nothing, ``None``: a bar on a
            terminal, else plain lines (``lines=False``: nothing).
        stream: where to write (default ``sys.stderr``).
        lines: whether ``show=None`` off a terminal prints plain lines.
        interval: seconds between plain lines (default :data:`LINE_INTERVAL_S`).
        clock: a monotonic clock in seconds (tests pass their own).
    """

    def __init__(self, total: int, *, initial: int = 0, desc: str = "boomerang", unit: str = "img", show=None,
                 stream=None, lines: bool = True, interval: float | None = None, clock=time.monotonic):
        self.stream = stream if stream is not None else sys.stderr
        self.total, self.desc, self.unit = int(total), desc, unit
        self.done, self.partial = int(initial), 0.0
        self._initial = int(initial)
        self.clock, self.interval = clock, float(LINE_INTERVAL_S if interval is None else interval)
        self._t0 = self._last = clock()
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.mode = "bar" if show is True or (show is None and tty) else "lines" if show is None and lines else "off"
        self.bar = None
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=self.done, unit=unit, desc=desc, file=self.stream,
                            dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} [{elapsed}<{remaining}{postfix}]")

    @property
    def value(self) -> float:
        """Outputs done, plus the share of the batch being sampled."""
        return min(float(self.total), self.done + self.partial)

    def advance(self, outputs: float) -> None:
        """A batch moved on by ``outputs`` outputs' worth of denoiser steps (not written yet)."""
        self.partial += max(0.0, float(outputs))
        self._show()

    def finished(self, n: int = 1) -> None:
        """``n`` outputs were written (their sampling share, if any, becomes whole)."""
        self.done += int(n)
        self.partial = max(0.0, self.partial - n)
        self._show()

    def _show(self) -> None:
        if self.bar is not None:
            self.bar.update(self.value - self.bar.n)
        elif self.mode == "lines":
            now = self.clock()
            if now - self._last >= self.interval and self.value < self.total:
                self._last = now
                self.stream.write(self.line(now) + "\n")
                self.stream.flush()

    def line(self, now: float | None = None) -> str:
        """The plain progress line: ``boomerang <desc>: d/N <unit>s (p%), <elapsed> elapsed, about <eta> left``."""
        now = self.clock() if now is None else now
        elapsed = now - self._t0
        v = self.value
        text = f"boomerang {self.desc}: {int(v)}/{self.total} {self.unit}s ({100 * v / max(1, self.total):.0f}%), " \
               f"{_duration(elapsed)} elapsed"
        made = v - self._initial
        if made > 0:
            text += f", about {_duration(elapsed / made * (self.total - v))} left"
        return text

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
