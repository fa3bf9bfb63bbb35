"""``boomerang train-classifier``: the reference digit CNN's training recipe.

The recipe: AdamW (weight decay 1e-4) under a one-cycle learning rate peaking at ``lr``
(Smith & Topin 2019), random shifts of up to 2 pixels (no flips: digits are not
mirror-symmetric), cross-entropy. It runs on the shared loop
(:func:`boomerang.training.loop.run_stage`, without an EMA or checkpoints: a run is short
and is not resumed); the epoch with the best validation accuracy is kept. The network
itself (:class:`~boomerang.classifier.DigitCNN`, saving, loading, accuracy) lives in
:mod:`boomerang.classifier`, where the feature code loads it.
"""

from __future__ import annotations

import json
import pathlib
import time
from dataclasses import dataclass

from boomerang.classifier import build_classifier, classifier_accuracy, save_classifier

__all__ = ["ClassifierTrainConfig", "random_shift", "make_optimizer", "classifier_loss", "train_step",
           "fit_classifier", "train_classifier"]


@dataclass
class ClassifierTrainConfig:
    """All settings of a ``train-classifier`` run (defaults = the bundled ``classifier-mnist5k``).

    Attributes:
        data: labelled 28x28 grayscale digits in 10 classes (``mnist5k`` or such a folder).
        output: folder for ``config.json``, ``model.safetensors``, ``split.json`` and ``metrics.json``.
        epochs, batch_size, lr, width, label_smoothing, seed: the recipe's knobs
            (see :func:`fit_classifier`).
        split_seed, val_fraction, test_fraction: the train/val/test split (the same as
            ``boomerang train`` makes for the same values).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``"auto"``.
        threads: torch CPU threads (``None`` = torch's default).
        max_minutes: stop after the current step once this many minutes have passed and
            keep what was trained (``None``: no limit).
        progress: print progress (``False``: ``--no-progress``).
    """

    data: str = "mnist5k"
    output: str = "runs/classifier-mnist5k"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    width: int = 32
    label_smoothing: float = 0.0
    seed: int = 0
    split_seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    device: str = "cpu"
    threads: int | None = None
    max_minutes: float | None = None
    progress: bool = True

    def validate(self) -> None:
        """Raise ValueError (naming the flag) for bad settings."""
        from boomerang.training.config import check_training_flags

        check_training_flags(self, positive=("epochs", "batch_size", "width"))
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")


def random_shift(x, gen, max_shift: int = 2):
    """Shift each image of ``x`` (``[B, C, H, W]`` in [-1, 1]) by up to ``max_shift`` pixels in
    each direction, padding with the background -1. No flips. Offsets are drawn from ``gen``."""
    import torch
    import torch.nn.functional as F

    b = x.shape[0]
    pad = F.pad(x, (max_shift,) * 4, value=-1.0)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    out = torch.empty_like(x)
    h, w = x.shape[-2:]
    for i in range(b):
        out[i] = pad[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
    return out


def make_optimizer(model, lr: float, total_steps: int):
    """The reference recipe's optimiser: AdamW (weight decay 1e-4) under a one-cycle
    learning-rate schedule (peak ``lr``) over ``total_steps`` steps.

    Returns:
        ``(optimizer, lr_scheduler)``; call :func:`train_step` ``total_steps`` times.
    """
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total_steps)
    return opt, sched


def classifier_loss(model, x, y, gen, label_smoothing: float = 0.0, device="cpu"):
    """The recipe's loss on one batch: cross-entropy of ``model`` on ``x`` shifted by
    :func:`random_shift` (from ``gen``), with ``label_smoothing``.

    Args:
        x: images ``[B, 1, 28, 28]`` in [-1, 1] (CPU); y: labels ``[B]`` (int64, CPU).

    Returns:
        the scalar loss tensor (on ``device``).
    """
    import torch.nn.functional as F

    xb = random_shift(x, gen).to(device)
    return F.cross_entropy(model(xb), y.to(device), label_smoothing=label_smoothing)


def train_step(model, opt, sched, x, y, gen, label_smoothing: float = 0.0, device="cpu") -> float:
    """One optimisation step of the reference recipe: :func:`classifier_loss`, then
    :func:`boomerang.training.loop.optimizer_step` (an optimiser step and a learning-rate step).

    Args:
        model: a :class:`~boomerang.classifier.DigitCNN` in train mode.
        opt, sched: from :func:`make_optimizer`.
        x: images ``[B, 1, 28, 28]`` in [-1, 1] (CPU).
        y: labels ``[B]`` (int64, CPU).
        gen: the CPU ``torch.Generator`` for the shifts.

    Returns:
        the batch's loss (a float).
    """
    from boomerang.training.loop import optimizer_step

    loss = classifier_loss(model, x, y, gen, label_smoothing, device)
    optimizer_step(opt, loss, lr_scheduler=sched)
    return float(loss.detach())


def fit_classifier(x_train, y_train, *, x_val=None, y_val=None, epochs: int = 30, batch_size: int = 64,
                   lr: float = 2e-3, seed: int = 0, width: int = 32, label_smoothing: float = 0.0,
                   device="cpu", progress: bool = False, stopper=None):
    """Train a fresh :class:`~boomerang.classifier.DigitCNN` with the reference recipe on tensors.

    The recipe of ``boomerang train-classifier`` (see the module). Epoch ``e``'s batch order is
    a permutation drawn from the same generator as the shifts, seeded with ``seed + 1``; the
    weights start from ``seed``. All randomness comes from ``seed`` (the global torch RNG is
    restored afterwards).

    Args:
        x_train: float ``[N, 1, 28, 28]`` in [-1, 1]; y_train: int64 ``[N]`` in 0..9.
        x_val, y_val: optional validation set: the epoch with the best val
            accuracy is kept (ties: the later epoch); without it, the last epoch.
        epochs, batch_size, lr, seed, width, label_smoothing: the recipe's knobs.
        device: torch device (name or ``torch.device``).
        progress: show progress and one line per epoch on stderr.
        stopper: a :class:`boomerang.training.loop.Stopper` to stop early (``None``: never);
            then the best epoch so far is kept, or the weights reached if no epoch ended.

    Returns:
        ``(model, info)``: the trained model (eval mode, on ``device``) and
        ``{"val_accuracy": float | None, "best_epoch": int, "wall_time_s": float, "steps": int,
        "stopped": "max_steps" | "signal" | "max_minutes"}``.

    Raises:
        ValueError: empty training set, or x/y of different lengths.
    """
    import copy

    import torch

    from boomerang.training.loop import run_stage

    if len(x_train) == 0 or len(x_train) != len(y_train):
        raise ValueError(f"x_train and y_train must be non-empty and of one length, got {len(x_train)} and {len(y_train)}")
    dev = torch.device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_classifier(width=width).to(dev)
        gen = torch.Generator().manual_seed(seed + 1)
        steps_per_epoch = (len(x_train) + batch_size - 1) // batch_size
        opt, sched = make_optimizer(model, lr, epochs * steps_per_epoch)
        epoch = {"perm": None, "loss": 0.0, "best": (-1.0, 0, None)}

        def loss_fn(step: int):
            pos = step % steps_per_epoch
            if pos == 0:
                model.train()
                epoch.update(perm=torch.randperm(len(x_train), generator=gen), loss=0.0)
            idx = epoch["perm"][pos * batch_size:(pos + 1) * batch_size]
            return classifier_loss(model, x_train[idx], y_train[idx], gen, label_smoothing, dev)

        def after_step(step: int, loss: float) -> str | None:
            epoch["loss"] += loss
            if step % steps_per_epoch:
                return None
            va = classifier_accuracy(model, x_val, y_val) if x_val is not None else None
            if va is not None and va >= epoch["best"][0]:
                epoch["best"] = (va, step // steps_per_epoch, copy.deepcopy(model.state_dict()))
            val = "" if va is None else f" val_acc {va:.4f}"
            return f"epoch {step // steps_per_epoch}/{epochs} loss {epoch['loss'] / steps_per_epoch:.4f}{val}"

        t0 = time.monotonic()
        done = run_stage("classifier", model=model, optimizer=opt, loss_fn=loss_fn,
                         total_steps=epochs * steps_per_epoch, lr_scheduler=sched, stopper=stopper,
                         progress=progress, after_step=after_step)
        best = epoch["best"]
        if best[2] is not None:
            model.load_state_dict(best[2])
        wall = time.monotonic() - t0
    model.eval()
    return model, {"val_accuracy": None if x_val is None else best[0],
                   "best_epoch": best[1] if best[2] is not None else done.step // steps_per_epoch,
                   "wall_time_s": round(wall, 1), "steps": done.step, "stopped": done.stopped}


def train_classifier(cfg: ClassifierTrainConfig) -> dict:
    """Train the reference CNN on the training split only and report accuracies.

    Plain cross-entropy by default (``label_smoothing`` 0 keeps the softmax confidence
    meaningful for the "confidence >= 0.9" measurements). The split is the same as
    :func:`boomerang.training.ddpm.train` makes (same data, split seed and fractions). The
    epoch with the best *val* accuracy is kept; the test split is only evaluated, never
    trained or selected on. SIGINT / SIGTERM and ``max_minutes`` stop after the current step
    and keep what was trained (``stopped`` says why).

    Returns:
        ``{"val_accuracy", "test_accuracy", "best_epoch", "wall_time_s", ..., "stopped"}``,
        also written to ``output/metrics.json``.

    Raises:
        ValueError: bad settings or a dataset that is not 28x28 grayscale with 10 classes.
    """
    cfg.validate()
    import numpy as np
    import torch

    from boomerang.fileio import atomic_write_text
    from boomerang.training.config import resolve_device
    from boomerang.training.data import load_split_dataset, write_split
    from boomerang.training.loop import Stopper

    dev = resolve_device(cfg.device)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    ds, split = load_split_dataset(cfg)
    if ds.images.shape[1:] != (1, 28, 28) or (ds.labels < 0).any() or ds.labels.max() >= 10:
        raise ValueError(f"the classifier needs labelled 28x28 grayscale digits (10 classes); {cfg.data!r} is not")

    def tensors(name):
        idx = np.asarray(split[name])
        return torch.from_numpy(ds.images[idx]).float() / 127.5 - 1.0, torch.from_numpy(ds.labels[idx])

    (xtr, ytr), (xva, yva), (xte, yte) = tensors("train"), tensors("val"), tensors("test")
    with Stopper("train-classifier", cfg.max_minutes) as stopper:
        model, fit = fit_classifier(xtr, ytr, x_val=xva, y_val=yva, epochs=cfg.epochs, batch_size=cfg.batch_size,
                                    lr=cfg.lr, seed=cfg.seed, width=cfg.width, label_smoothing=cfg.label_smoothing,
                                    device=dev, progress=cfg.progress, stopper=stopper)
        test_acc = classifier_accuracy(model, xte, yte)
        out = pathlib.Path(cfg.output)
        save_classifier(model.cpu(), out)
        write_split(out, cfg, split, n_total=len(ds))
        n_params = sum(p.numel() for p in model.parameters())
        metrics = {"val_accuracy": fit["val_accuracy"], "test_accuracy": test_acc, "best_epoch": fit["best_epoch"],
                   "epochs": cfg.epochs, "n_train": len(xtr), "n_val": len(xva), "n_test": len(xte),
                   "n_params": n_params, "wall_time_s": fit["wall_time_s"], "seed": cfg.seed,
                   "split_seed": cfg.split_seed, "lr": cfg.lr, "batch_size": cfg.batch_size, "width": cfg.width,
                   "label_smoothing": cfg.label_smoothing, "data": cfg.data, "device": str(dev),
                   "torch": torch.__version__, "stopped": fit["stopped"]}
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1))
    return metrics
