"""The settings checks and run records every training command shares (torch-free at import).

:func:`check_training_flags` (one ``ValueError`` naming the flag), :func:`cli_args` (the
command that rebuilds a config, for ``train_config.json``), :func:`resolve_device`,
:func:`hardware` and :func:`versions` (what ``train_config.json`` records about the machine).
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict

from boomerang.messages import flag_of

__all__ = ["check_training_flags", "cli_args", "resolve_device", "hardware", "versions"]


def check_training_flags(cfg, *, positive=(), non_negative=(), rates=("lr",)) -> None:
    """The checks every training command shares, one ValueError naming the flag.

    Args:
        cfg: a training config (``TrainConfig``, ``LdmTrainConfig``, ``ClassifierTrainConfig``)
            with ``threads`` and ``max_minutes``, and ``ema_decay`` where it keeps an EMA.
        positive: fields that must be > 0 (sizes, counts).
        non_negative: fields that must be >= 0 (step counts).
        rates: learning rates, which must be > 0.

    Raises:
        ValueError: e.g. ``--batch-size must be > 0, got 0``; also ``ema_decay`` outside [0, 1),
            ``max_minutes`` given and not > 0, ``threads`` given and not an integer >= 1
            (``boomerang.threads.check_threads``, which also turns ``"2"`` into 2).
    """
    for name in positive:
        if getattr(cfg, name) <= 0:
            raise ValueError(f"{flag_of(name)} must be > 0, got {getattr(cfg, name)}")
    for name in non_negative:
        if getattr(cfg, name) < 0:
            raise ValueError(f"{flag_of(name)} must be >= 0, got {getattr(cfg, name)}")
    for name in rates:
        if not getattr(cfg, name) > 0:
            raise ValueError(f"{flag_of(name)} must be > 0, got {getattr(cfg, name)}")
    if hasattr(cfg, "ema_decay") and not 0 <= cfg.ema_decay < 1:
        raise ValueError(f"--ema-decay must be in [0, 1), got {cfg.ema_decay}")
    from boomerang.threads import check_threads

    cfg.threads = check_threads(cfg.threads, allow_torch=False)  # "2" from the command line -> 2
    if cfg.max_minutes is not None and not cfg.max_minutes > 0:
        raise ValueError(f"--max-minutes must be > 0, got {cfg.max_minutes}")


def cli_args(cfg) -> list[str]:
    """The flags that rebuild the training config ``cfg`` (a dataclass whose defaults are the
    command's): those whose value differs from the default, lists comma-separated (for
    ``train_config.json``'s ``command``). ``progress`` and ``resume`` are left out."""
    d = type(cfg)()
    args = []
    for k, v in asdict(cfg).items():
        if k in ("progress", "resume") or v == getattr(d, k):
            continue
        args += [flag_of(k), ",".join(map(str, v)) if isinstance(v, list) else str(v)]
    return args


def resolve_device(name: str):
    """``"auto"`` -> cuda if available, else mps, else cpu; otherwise check it exists
    (``boomerang.settings.torch_device``, the one device parser).

    Returns:
        a ``torch.device``.

    Raises:
        SettingError: (a ValueError) the device is not a device name or not available here.
    """
    from boomerang.settings import torch_device

    return torch_device(name, allow=("cpu", "cuda", "mps", "auto"))


def hardware(device) -> str:
    """One line naming what a run trained on: the CUDA device, or the CPU, its cores and torch's threads."""
    import torch

    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA)"
    return f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def versions(*libraries: str) -> dict[str, str]:
    """``{"torch": ..., <each of libraries>: ..., "python": ...}``: the versions a run records."""
    import importlib

    import torch

    out = {"torch": torch.__version__}
    for name in libraries:
        out[name] = importlib.import_module(name).__version__
    out["python"] = platform.python_version()
    return out
