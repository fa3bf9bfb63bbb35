"""The project's reference digit classifier (a small CNN): build, save, load and evaluate it.

It is the feature network for every measurement that would otherwise need
weights from the internet: class retention, Frechet distances, nearest-
neighbour checks. Input: ``[B, 1, 28, 28]`` float images in **[-1, 1]**
(0 = black background is -1, white ink is +1; MNIST convention). Output:
logits ``[B, 10]``; :meth:`DigitCNN.features` gives the 128-d penultimate
activations ``[B, 128]``.

Weights are stored as ``model.safetensors`` next to ``config.json``; no pickle.
``boomerang train-classifier`` trains it (the recipe: :mod:`boomerang.training.classifier`).
"""

from __future__ import annotations

import functools

import json
import pathlib

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def __getattr__(name: str):
    """``boomerang.classifier.DigitCNN``: the network class, built on first use (torch is
    imported then, not when this module is)."""
    if name == "DigitCNN":
        return _module_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
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
    """Write ``config.json`` + ``model.safetensors`` into ``folder`` (created if missing), each atomically.

    Raises:
        OSError: the folder cannot be created or written.
    """
    from safetensors.torch import save

    from boomerang.fileio import atomic_write_bytes, atomic_write_text, follow_umask

    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / CONFIG_NAME, json.dumps({"architecture": "DigitCNN", **model.config,
                                                        "input": "[B,1,28,28] float in [-1,1]"}, indent=1))
    atomic_write_bytes(folder / WEIGHTS_NAME,
                       save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}))
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
