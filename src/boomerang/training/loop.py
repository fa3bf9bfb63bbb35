"""The training-loop skeleton every training command runs: one stage of optimizer steps.

:func:`run_stage` takes a model, its optimizer and the model's own ``loss_fn(step)`` and
does the rest the same way for every model: the learning rate (linear warm-up to a peak,
or a ``torch.optim.lr_scheduler``), the backward pass and gradient-norm clipping
(:func:`optimizer_step`), the EMA update (:mod:`boomerang.training.ema`), a checkpoint every
``checkpoint_every`` steps and at the end, the progress display
(:mod:`boomerang.training.progress`), and stopping early: :class:`Stopper` turns SIGINT /
SIGTERM (through :class:`boomerang.stopping.Stop`) and ``--max-minutes`` into a stop after
the current step, so the run ends with its checkpoint and export and ``--resume`` continues it.

Each step is, in this order: set the learning rate; ``loss = loss_fn(step)``; zero the
gradients; ``loss.backward()``; clip; ``optimizer.step()``; the scheduler's step; the EMA
update with the new step count. A resumed stage replays exactly the steps a run that never
stopped would take, provided ``loss_fn`` draws its randomness from checkpointed generators
and from the step number alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

__all__ = ["Stopper", "StageResult", "warmup_lr", "optimizer_step", "run_stage"]


class Stopper:
    """Why a training run stops before its last step: a signal, or the ``--max-minutes`` clock.

    A context manager: inside it, SIGINT / SIGTERM set a flag (one line on stderr says the run
    stops after this step and that ``--resume`` continues; a second Ctrl-C interrupts at
    once with ``KeyboardInterrupt``). The handlers are restored on exit; outside the main
    thread no handler is installed.

    Args:
        command: the command's name for that line (``train``, ``train-ldm``).
        max_minutes: stop after this many minutes since the Stopper was made; ``None``: no limit.
    """

    def __init__(self, command: str, max_minutes: float | None = None):
        from boomerang.stopping import Stop

        self.t0 = time.monotonic()
        self.max_minutes = max_minutes
        self._stop = Stop(command, then="after this step (checkpoint and export); rerun with --resume to "
                                        "continue. Press Ctrl-C again to stop at once.")

    def __enter__(self):
        self._stop.__enter__()
        return self

    def __exit__(self, *exc):
        return self._stop.__exit__(*exc)

    def reason(self) -> str | None:
        """``"signal"``, ``"max_minutes"``, or ``None`` to go on."""
        if self._stop.signum is not None:
            return "signal"
        if self.max_minutes is not None and self.elapsed() >= self.max_minutes * 60:
            return "max_minutes"
        return None

    def elapsed(self) -> float:
        """Seconds since the Stopper was made (this invocation's wall time)."""
        return time.monotonic() - self.t0


@dataclass
class StageResult:
    """How a stage ended: ``step`` reached, ``stopped`` (``"max_steps"``, ``"signal"`` or
    ``"max_minutes"``) and ``last_loss`` (the loss of the last step; NaN or the given
    start value when no step ran)."""

    step: int
    stopped: str
    last_loss: float


def warmup_lr(peak: float, step: int, warmup_steps: int) -> float:
    """The learning rate of step ``step`` (0-based): linear warm-up to ``peak`` over
    ``warmup_steps`` steps, then constant: ``peak * min(1, (step + 1) / max(1, warmup_steps))``."""
    return peak * min(1.0, (step + 1) / max(1, warmup_steps))


def optimizer_step(optimizer, loss, *, params=None, grad_clip: float = 0.0, lr_scheduler=None) -> None:
    """One update from ``loss``: zero the gradients, backward, clip the gradient norm of
    ``params`` to ``grad_clip`` (when > 0), ``optimizer.step()``, then ``lr_scheduler.step()``
    (when given)."""
    import torch

    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    if lr_scheduler is not None:
        lr_scheduler.step()


def run_stage(name: str, *, model, optimizer, loss_fn, total_steps: int, step: int = 0, lr: float | None = None,
              warmup_steps: int = 0, lr_scheduler=None, grad_clip: float = 0.0, ema=None, ema_decay: float = 0.0,
              checkpoint=None, checkpoint_every: int = 0, stopper: Stopper | None = None, progress: bool = True,
              after_step=None, last_loss: float = float("nan")) -> StageResult:
    """Optimise ``loss_fn(step)`` from ``step`` to ``total_steps``.

    Args:
        name: the stage's name in progress lines.
        model: the ``torch.nn.Module`` trained; its parameters with ``requires_grad`` are clipped.
        optimizer: its optimizer (already restored when resuming).
        loss_fn: ``loss_fn(step) -> scalar loss tensor`` for 0-based step ``step``.
        total_steps: the step to stop at (counted across resumes).
        step: the step to start from (the checkpoint's when resuming).
        lr, warmup_steps: set every parameter group's learning rate to
            :func:`warmup_lr` ``(lr, step, warmup_steps)`` before each step (``lr=None``: leave it).
        lr_scheduler: stepped after each optimizer step (e.g. one-cycle), or ``None``.
        grad_clip: gradient-norm clip; 0 = none.
        ema, ema_decay: the EMA module and its cap (:func:`boomerang.training.ema.update_ema`); ``None``: none.
        checkpoint: ``checkpoint(step, last_loss)`` writes one; called every ``checkpoint_every``
            steps and once when the stage ends (however it ends); ``None``: never.
        stopper: checked before every step; ``None``: run to ``total_steps``.
        progress: show progress (:class:`~boomerang.training.progress.Progress`).
        after_step: ``after_step(step, loss) -> str | None`` after each step (``step`` counts
            it); a returned line is printed with the progress.
        last_loss: reported when no step runs.

    Returns:
        a :class:`StageResult`.
    """
    from boomerang.training.ema import update_ema
    from boomerang.training.progress import Progress

    params = [p for p in model.parameters() if p.requires_grad]
    shown = Progress(name, total_steps, initial=step, enabled=progress)
    stopped = "max_steps"
    try:
        while step < total_steps:
            why = stopper.reason() if stopper is not None else None
            if why:
                stopped = why
                break
            if lr is not None:
                for group in optimizer.param_groups:
                    group["lr"] = warmup_lr(lr, step, warmup_steps)
            current_lr = optimizer.param_groups[0]["lr"]
            loss = loss_fn(step)
            optimizer_step(optimizer, loss, params=params, grad_clip=grad_clip, lr_scheduler=lr_scheduler)
            step += 1
            if ema is not None:
                update_ema(ema, model, step, ema_decay)
            last_loss = float(loss.detach())
            shown.update(step, last_loss, current_lr)
            line = after_step(step, last_loss) if after_step is not None else None
            if line:
                shown.note(line)
            if checkpoint is not None and checkpoint_every and step % checkpoint_every == 0:
                checkpoint(step, last_loss)
        if checkpoint is not None:
            checkpoint(step, last_loss)
    finally:
        shown.close()
    return StageResult(step, stopped, last_loss)
