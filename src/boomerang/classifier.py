"""The project's reference digit classifier (a small CNN) and ``boomerang train-classifier``.

It is the feature network for every measurement that would otherwise need
weights from the internet: class retention, Frechet distances, nearest-
neighbour checks. Input: ``[B, 1, 28, 28]`` float images in **[-1, 1]**
(0 = black background is -1, white ink is +1; MNIST convention). Output:
logits ``[B, 10]``; :meth:`DigitCNN.features` gives the 128-d penultimate
activations ``[B, 128]``.

Weights are stored as ``model.safetensors`` next to ``config.json``; no pickle.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def _module_class():
    import torch
    from torch import nn

    class DigitCNN(nn.Module):
        """Small CNN: 3 conv stages (28 -> 14 -> 7 -> 3), 128-d features, 10 logits.

        Args:
            width: channels of the first stage (doubled in the later stages).
            feature_dim: size of the penultimate feature vector.
            num_classes: number of output logits.
        """

        def __init__(self, width: int = 32, feature_dim: int = 128, num_classes: int = 10):
            super().__init__()
            w = width

            def block(cin, cout):
                return nn.Sequential(
                    nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                    nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                    nn.MaxPool2d(2),
                )

            self.body = nn.Sequential(block(1, w), block(w, 2 * w), block(2 * w, 2 * w))  # [B, 2w, 3, 3]
            self.fc = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(2 * w * 9, feature_dim),
                                    nn.ReLU(inplace=True))
            self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(feature_dim, num_classes))
            self.config = {"width": width, "feature_dim": feature_dim, "num_classes": num_classes}

        def _check(self, x: torch.Tensor) -> None:
            if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
                raise ValueError(f"expected images [B, 1, 28, 28] in [-1, 1], got shape {tuple(x.shape)}")

        def features(self, x: torch.Tensor) -> torch.Tensor:
            """``[B, 1, 28, 28]`` in [-1, 1] -> features ``[B, feature_dim]`` (ReLU, >= 0)."""
            self._check(x)
            return self.fc(self.body(x))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            """``[B, 1, 28, 28]`` in [-1, 1] -> logits ``[B, num_classes]``."""
            return self.head(self.features(x))

    return DigitCNN


def build_classifier(width: int = 32, feature_dim: int = 128, num_classes: int = 10):
    """A freshly initialised (untrained) :class:`DigitCNN` (uses the caller's torch RNG state)."""
    return _module_class()(width=width, feature_dim=feature_dim, num_classes=num_classes)


def save_classifier(model, folder) -> None:
    """Write ``config.json`` + ``model.safetensors`` into ``folder``."""
    from safetensors.torch import save_file

    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_NAME).write_text(json.dumps({"architecture": "DigitCNN", **model.config,
                                                  "input": "[B,1,28,28] float in [-1,1]"}, indent=1))
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(folder / WEIGHTS_NAME))
    from boomerang.imageio import follow_umask

    follow_umask(folder)


def load_classifier(path=None, device="cpu"):
    """Load the reference classifier in eval mode.

    Args:
        path: folder with ``config.json`` and ``model.safetensors``; ``None`` =
            the bundled ``boomerang/assets/classifier-mnist5k``.
        device: torch device for the weights.

    Returns:
        a ``torch.nn.Module`` mapping ``[B, 1, 28, 28]`` images in [-1, 1] to
        logits ``[B, 10]``, with ``.features(x) -> [B, 128]``.

    Raises:
        ValueError: the folder lacks the config or weights.
    """
    from safetensors.torch import load_file

    if path is None:
        from boomerang.assets import classifier_path

        path = classifier_path()
    folder = pathlib.Path(path)
    if not (folder / CONFIG_NAME).is_file() or not (folder / WEIGHTS_NAME).is_file():
        raise ValueError(f"{folder} has no {CONFIG_NAME} + {WEIGHTS_NAME}; train one with boomerang train-classifier")
    cfg = json.loads((folder / CONFIG_NAME).read_text())
    model = build_classifier(cfg["width"], cfg["feature_dim"], cfg["num_classes"])
    model.load_state_dict(load_file(str(folder / WEIGHTS_NAME)))
    return model.to(device).eval()


def _random_shift(x, gen, max_shift: int = 2):
    """Shift each image by up to ``max_shift`` pixels (padding with background -1). No flips."""
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


def train_step(model, opt, sched, x, y, gen, label_smoothing: float = 0.0, device="cpu") -> float:
    """One optimisation step of the reference recipe.

    Shifts each image by up to 2 pixels (from ``gen``), then cross-entropy,
    an optimiser step and a learning-rate step.

    Args:
        model: a :class:`DigitCNN` in train mode.
        opt, sched: from :func:`make_optimizer`.
        x: images ``[B, 1, 28, 28]`` in [-1, 1] (CPU).
        y: labels ``[B]`` (int64, CPU).
        gen: the CPU ``torch.Generator`` for the shifts.

    Returns:
        the batch's loss (a float).
    """
    import torch.nn.functional as F

    xb = _random_shift(x, gen).to(device)
    loss = F.cross_entropy(model(xb), y.to(device), label_smoothing=label_smoothing)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    return float(loss.detach())


def evaluate_accuracy(model, x, y, device="cpu", batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` (switched to eval mode) on images ``x`` ``[N, 1, 28, 28]`` in [-1, 1], labels ``y`` ``[N]``."""
    import torch

    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)])
    return float((pred == y).float().mean())


def classifier_accuracy(model, x, y) -> float:
    """Share of ``x`` (``[N, 1, 28, 28]`` in [-1, 1]) that ``model`` labels ``y`` (``[N]`` int), in [0, 1].

    Runs in eval mode, 500 images at a time, on the model's device.
    """
    return evaluate_accuracy(model, x, y, device=next(model.parameters()).device)


def fit_classifier(x_train, y_train, *, x_val=None, y_val=None, epochs: int = 30, batch_size: int = 64,
                   lr: float = 2e-3, seed: int = 0, width: int = 32, label_smoothing: float = 0.0,
                   device="cpu", progress: bool = False):
    """Train a fresh :class:`DigitCNN` with the reference recipe on tensors.

    The recipe of ``boomerang train-classifier``: AdamW (weight decay 1e-4)
    with a one-cycle learning rate peaking at ``lr``, random shifts of up to
    2 pixels, cross-entropy. All randomness comes from ``seed`` (the global
    torch RNG is restored afterwards).

    Args:
        x_train: float ``[N, 1, 28, 28]`` in [-1, 1]; y_train: int64 ``[N]`` in 0..9.
        x_val, y_val: optional validation set: the epoch with the best val
            accuracy is kept (ties: the later epoch); without it, the last epoch.
        epochs, batch_size, lr, seed, width, label_smoothing: the recipe's knobs.
        device: torch device (name or ``torch.device``).
        progress: print one line per epoch on stderr.

    Returns:
        ``(model, info)``: the trained model (eval mode, on ``device``) and
        ``{"val_accuracy": float | None, "best_epoch": int, "wall_time_s": float, "steps": int}``.

    Raises:
        ValueError: empty training set, or x/y of different lengths.
    """
    import copy

    import torch
    if len(x_train) == 0 or len(x_train) != len(y_train):
        raise ValueError(f"x_train and y_train must be non-empty and of one length, got {len(x_train)} and {len(y_train)}")
    dev = torch.device(device)
    xtr, ytr = x_train, y_train
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_classifier(width=width).to(dev)
        gen = torch.Generator().manual_seed(seed + 1)
        steps_per_epoch = (len(xtr) + batch_size - 1) // batch_size
        opt, sched = make_optimizer(model, lr, epochs * steps_per_epoch)

        t0 = time.monotonic()
        best = (-1.0, 0, None)
        for epoch in range(epochs):
            model.train()
            perm = torch.randperm(len(xtr), generator=gen)
            total = 0.0
            for i in range(steps_per_epoch):
                idx = perm[i * batch_size:(i + 1) * batch_size]
                total += train_step(model, opt, sched, xtr[idx], ytr[idx], gen, label_smoothing, dev)
            va = classifier_accuracy(model, x_val, y_val) if x_val is not None else None
            if va is not None and va >= best[0]:
                best = (va, epoch + 1, copy.deepcopy(model.state_dict()))
            if progress:
                val = "" if va is None else f" val_acc {va:.4f}"
                print(f"epoch {epoch + 1}/{epochs} loss {total / steps_per_epoch:.4f}{val}", file=sys.stderr)
        if best[2] is not None:
            model.load_state_dict(best[2])
        wall = time.monotonic() - t0
    model.eval()
    return model, {"val_accuracy": None if x_val is None else best[0], "best_epoch": best[1] if best[2] is not None
                   else epochs, "wall_time_s": round(wall, 1), "steps": epochs * steps_per_epoch}


def train_classifier(data: str = "mnist5k", output: str = "runs/classifier-mnist5k", epochs: int = 30,
                     batch_size: int = 64, lr: float = 2e-3, seed: int = 0, split_seed: int = 0,
                     val_fraction: float = 0.1, test_fraction: float = 0.1, width: int = 32,
                     label_smoothing: float = 0.0, device: str = "cpu", progress: bool = True) -> dict:
    """Train the reference CNN on the training split only and report accuracies.

    Training uses random shifts of up to 2 pixels (no flips: digits are not
    mirror-symmetric) and plain cross-entropy (``label_smoothing`` 0 keeps the
    softmax confidence meaningful for the "confidence >= 0.9" measurements).

    The split is the same as :func:`boomerang.train.train` uses (same data,
    split seed and fractions). The epoch with the best *val* accuracy is kept;
    the test split is only evaluated, never trained or selected on.

    Returns:
        ``{"val_accuracy", "test_accuracy", "best_epoch", "wall_time_s", ...}``,
        also written to ``output/metrics.json``.

    Raises:
        ValueError: bad arguments or a dataset that is not 28x28 grayscale with 10 classes.
    """
    import numpy as np
    import torch

    from boomerang.data import load_dataset, make_split, save_split
    from boomerang.train import resolve_device

    if epochs <= 0 or batch_size <= 0 or not lr > 0:
        raise ValueError("--epochs, --batch-size and --lr must be > 0")
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"--label-smoothing must be in [0, 1), got {label_smoothing}")
    dev = resolve_device(device)
    ds = load_dataset(data)
    if ds.images.shape[1:] != (1, 28, 28) or (ds.labels < 0).any() or ds.labels.max() >= 10:
        raise ValueError(f"the classifier needs labelled 28x28 grayscale digits (10 classes); {data!r} is not")
    split = make_split(ds.labels, seed=split_seed, val_fraction=val_fraction, test_fraction=test_fraction)

    def tensors(name):
        idx = np.asarray(split[name])
        return torch.from_numpy(ds.images[idx]).float() / 127.5 - 1.0, torch.from_numpy(ds.labels[idx])

    (xtr, ytr), (xva, yva), (xte, yte) = tensors("train"), tensors("val"), tensors("test")
    model, fit = fit_classifier(xtr, ytr, x_val=xva, y_val=yva, epochs=epochs, batch_size=batch_size, lr=lr,
                                seed=seed, width=width, label_smoothing=label_smoothing, device=dev,
                                progress=progress)
    best = (fit["val_accuracy"], fit["best_epoch"])
    wall = fit["wall_time_s"]
    test_acc = classifier_accuracy(model, xte, yte)
    out = pathlib.Path(output)
    save_classifier(model.cpu(), out)
    save_split(out / "split.json", split, dataset=data, split_seed=split_seed,
               val_fraction=val_fraction, test_fraction=test_fraction, n_total=len(ds))
    n_params = sum(p.numel() for p in model.parameters())
    metrics = {"val_accuracy": best[0], "test_accuracy": test_acc, "best_epoch": best[1], "epochs": epochs,
               "n_train": len(xtr), "n_val": len(xva), "n_test": len(xte), "n_params": n_params,
               "wall_time_s": round(wall, 1), "seed": seed, "split_seed": split_seed, "lr": lr,
               "batch_size": batch_size, "width": width, "label_smoothing": label_smoothing, "data": data, "device": str(dev),
               "torch": torch.__version__}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


def run_train_classifier(args: argparse.Namespace) -> int:
    """Run ``boomerang train-classifier``; returns the exit status (2 = bad input)."""
    from boomerang.messages import print_error, user_message
    from boomerang.threads import check_threads

    try:
        threads = check_threads(args.threads, allow_torch=False)
    except ValueError as e:
        return print_error(user_message(e))
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    try:
        m = train_classifier(data=args.data, output=args.output, epochs=args.epochs, batch_size=args.batch_size,
                             lr=args.lr, seed=args.seed, split_seed=args.split_seed, val_fraction=args.val_fraction,
                             test_fraction=args.test_fraction, width=args.width,
                             label_smoothing=args.label_smoothing, device=args.device,
                             progress=args.progress)
    except ValueError as e:
        return print_error(user_message(e))
    print(json.dumps(m))
    return 0
