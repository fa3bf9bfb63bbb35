"""One training checkpoint file: model, EMA, optimizer, step and RNG state, written atomically.

Format (``boomerang-train-checkpoint/1``): one safetensors file whose tensors are
``model.<name>``, ``ema.<name>``, ``optim.<param id>.<state name>`` and ``rng.noise`` (the
state of the run's noise generator), and whose JSON metadata key ``boomerang`` holds
``step``, the optimizer's ``param_groups``, ``format`` and ``extra`` (the run's config, wall
time, last loss...). It is written through :func:`boomerang.fileio.atomic_write_bytes`, so a
run killed at any moment (even ``kill -9``) leaves the previous checkpoint intact, and
``--resume`` continues exactly: the same batches, noise and weights as a run that never stopped.
"""

from __future__ import annotations

import json
from dataclasses import asdict

__all__ = ["CHECKPOINT_NAME", "FORMAT", "save_checkpoint", "load_checkpoint", "read_meta", "check_resume",
           "resume"]

CHECKPOINT_NAME = "checkpoint.safetensors"
FORMAT = "boomerang-train-checkpoint/1"


def save_checkpoint(path, model, ema, optimizer, step: int, noise_gen, extra: dict) -> None:
    """Write model, EMA, optimizer, step and RNG state to one safetensors file, atomically.

    Tensors go into the safetensors payload; the step, optimizer param groups
    and ``extra`` (config, wall time) go into its JSON metadata.

    Args:
        path: the file to write (its folder must exist).
        model, ema: ``torch.nn.Module`` s (their ``state_dict`` is saved, on the CPU).
        optimizer: a ``torch.optim.Optimizer``.
        step: optimizer steps taken.
        noise_gen: the CPU ``torch.Generator`` of the run's noise (its state is saved).
        extra: JSON-serialisable details (the config, wall time, last loss).

    Raises:
        OSError: the folder is missing or not writable (the previous file is left as it was).
    """
    import torch
    from safetensors.torch import save

    from boomerang.fileio import atomic_write_bytes

    tensors = {}
    for k, v in model.state_dict().items():
        tensors[f"model.{k}"] = v.detach().cpu().contiguous()
    for k, v in ema.state_dict().items():
        tensors[f"ema.{k}"] = v.detach().cpu().contiguous()
    osd = optimizer.state_dict()
    for pid, st in osd["state"].items():
        for k, v in st.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            tensors[f"optim.{pid}.{k}"] = t.detach().cpu().contiguous()
    tensors["rng.noise"] = noise_gen.get_state().clone()
    meta = {
        "step": step,
        "param_groups": osd["param_groups"],
        "extra": extra,
        "format": FORMAT,
    }
    atomic_write_bytes(path, save(tensors, metadata={"boomerang": json.dumps(meta)}))


def read_meta(path) -> dict:
    """The metadata of a checkpoint written by :func:`save_checkpoint` (``step``, ``extra``, ...),
    without loading its tensors.

    Raises:
        ValueError: the file is not such a checkpoint.
    """
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        md = f.metadata() or {}
    if "boomerang" not in md:
        raise ValueError(f"{path} is not a boomerang training checkpoint")
    return json.loads(md["boomerang"])


def load_checkpoint(path, model, ema, optimizer, noise_gen) -> dict:
    """Restore a checkpoint written by :func:`save_checkpoint` in place.

    Returns:
        the metadata dict (``step``, ``extra``).

    Raises:
        ValueError: the file is not such a checkpoint.
    """
    from safetensors.torch import load_file

    meta = read_meta(path)
    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    noise_gen.set_state(tensors["rng.noise"])
    return meta


def check_resume(path, cfg, frozen) -> None:
    """Refuse to resume the checkpoint at ``path`` with settings that would change its run.

    Args:
        path: an existing checkpoint.
        cfg: the new run's config (a dataclass).
        frozen: the config fields that must equal the checkpoint's.

    Raises:
        ValueError: ``cannot resume with different settings: lr (checkpoint 0.001, now 0.5)``;
            or the file is not a checkpoint.
    """
    old = read_meta(path)["extra"].get("config", {})
    now = asdict(cfg)
    changed = [k for k in frozen if k in old and old[k] != now[k]]
    if changed:
        raise ValueError("cannot resume with different settings: " + ", ".join(
            f"{k} (checkpoint {old[k]!r}, now {now[k]!r})" for k in changed))


def resume(path, model, ema, optimizer, noise_gen) -> tuple[int, float]:
    """Load the checkpoint at ``path`` if it exists (see :func:`load_checkpoint`).

    Returns:
        ``(step, wall_time_s)`` recorded in it, or ``(0, 0.0)`` when there is no file.
    """
    import pathlib

    if not pathlib.Path(path).exists():
        return 0, 0.0
    meta = load_checkpoint(path, model, ema, optimizer, noise_gen)
    return int(meta["step"]), float(meta["extra"].get("wall_time_s", 0.0))
