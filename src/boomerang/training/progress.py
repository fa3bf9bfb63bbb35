"""What a training run prints while it runs: its progress, and nothing from the libraries.

:class:`Progress`: a bar on a terminal, a plain line every ``every`` steps off one (logs
get a line now and then, never a redrawn bar), nothing with ``--no-progress``.
:func:`quiet_libraries`: diffusers' and transformers' own warnings (e.g. transformers'
"requires torchvision" lines when a Stable Diffusion pipeline is imported, diffusers'
"install accelerate" advice) and their progress bars (transformers' "Writing model shards")
are silenced while a training command runs; errors still show.
"""

from __future__ import annotations

import sys
import time

__all__ = ["Progress", "quiet_libraries"]


class Progress:
    """Progress of one training stage on stderr.

    Args:
        name: the stage's name (``train``, ``vae``, ``unet``, ``classifier``).
        total: the step the stage ends at.
        initial: the step it starts from (> 0 when resumed).
        enabled: ``False`` (``--no-progress``): print nothing at all.
        every: off a terminal, one line every this many steps.
        stream: where to write (default ``sys.stderr``).
    """

    def __init__(self, name: str, total: int, initial: int = 0, enabled: bool = True, every: int = 100,
                 stream=None):
        self.name, self.total, self.enabled, self.every = name, total, enabled, every
        self.stream = stream if stream is not None else sys.stderr
        self.smooth = None
        self.t0 = time.monotonic()
        self.bar = None
        if enabled and _isatty(self.stream):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=name, unit="step", dynamic_ncols=True,
                            file=self.stream)

    def update(self, step: int, loss: float, lr: float) -> None:
        """Record optimizer step ``step`` (its loss and learning rate); the loss shown is smoothed
        (an exponential average with weight 0.02 on the newest step)."""
        self.smooth = loss if self.smooth is None else 0.98 * self.smooth + 0.02 * loss
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{self.smooth:.4f}", lr=f"{lr:.1e}")
        elif self.enabled and step % self.every == 0:
            self.note(f"{self.name} step {step}/{self.total} loss {self.smooth:.5f} "
                      f"{time.monotonic() - self.t0:.0f}s")

    def note(self, text: str) -> None:
        """Print one line (above the bar on a terminal); nothing when disabled."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False


def quiet_libraries():
    """Within the block, diffusers and transformers log errors only and draw no progress bars;
    their previous verbosity and bar setting are restored afterwards (the models' own
    :class:`boomerang.models.quiet.quiet_loading`, one rule for both)."""
    from boomerang.models.quiet import quiet_loading

    return quiet_loading()
