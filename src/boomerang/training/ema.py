"""The exponential moving average (EMA) of a model's weights: what ``train`` and ``train-ldm`` export.

After optimizer step ``step`` (1, 2, ...) every parameter is averaged as

    theta_ema <- decay * theta_ema + (1 - decay) * theta,   decay = min(cap, (1 + step) / (10 + step))

(Polyak averaging with the warm-up of TensorFlow's ``ExponentialMovingAverage(num_updates=...)``),
so the early average is not dominated by the random initialisation. Buffers are not averaged.
"""

from __future__ import annotations

__all__ = ["ema_decay", "make_ema", "update_ema"]


def ema_decay(step: int, cap: float) -> float:
    """The decay used after optimizer step ``step`` (>= 1): ``min(cap, (1 + step) / (10 + step))``, in [0, cap]."""
    return min(cap, (1 + step) / (10 + step))


def make_ema(model, build):
    """The EMA copy of ``model``: a fresh module from ``build()`` holding ``model``'s weights, frozen.

    Args:
        model: the ``torch.nn.Module`` being trained.
        build: a function returning a module of the same architecture (its random
            initialisation is overwritten).

    Returns:
        the EMA module (``requires_grad`` off, on the CPU like ``build()`` returns it).
    """
    ema = build()
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    return ema


def update_ema(ema, model, step: int, cap: float) -> None:
    """Move every parameter of ``ema`` towards ``model``'s by ``1 - ema_decay(step, cap)``, in place.

    Args:
        ema, model: modules of one architecture on one device (parameters zipped in order).
        step: the optimizer steps taken so far, counting this one (>= 1).
        cap: the largest decay (``--ema-decay``), in [0, 1).
    """
    import torch

    decay = ema_decay(step, cap)
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters()):
            pe.lerp_(pm, 1.0 - decay)
