"""Feature spaces for the linkage attack: how far is an anonymised image from each real one.

Every feature space takes images as float32 tensors ``[B, C, H, W]`` with
values in **[-1, 1]** (the x0 convention of the models; C = 1 or 3) and
defines a distance between two sets of images, ``[n, m]`` (smaller = more
alike). Built in:

* ``pixels``: Euclidean distance between the flattened pixel vectors
  (values in [-1, 1], so the distance lies in [0, 2 sqrt(C H W)]).
* ``ssim``: 1 - SSIM (Wang et al. 2004) with scikit-image's default settings
  (7x7 uniform window, or the largest odd window that fits a smaller image;
  K1 = 0.01, K2 = 0.03, sample covariance, the border where the window does
  not fit left out, mean over channels), on values in [0, 1]. It is computed
  for all n x m pairs at once with torch (``skimage.metrics.structural_similarity``
  pair by pair would take minutes for thousands of images); a test checks it
  against scikit-image to 1e-5. Range [0, 2].
* ``classifier``: Euclidean distance between the bundled reference digit
  classifier's 128-d penultimate features (:mod:`boomerang.classifier`).
  Images are turned to gray (Rec. 601 luminance) and resized to 28x28
  (bilinear, antialiased) first. It is meaningful for MNIST-like digits
  (white ink on black) only.

Any other embedding: pass a ``torch.nn.Module`` or a callable mapping
``[B, C, H, W]`` in [-1, 1] to features ``[B, ...]`` (flattened to ``[B, D]``,
Euclidean distance) to :func:`resolve_feature_space`, or subclass
:class:`FeatureSpace` for another distance. A module is switched to eval mode
and called under ``torch.no_grad()``.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from boomerang.privacy.spaces import FEATURE_SPACES  # the names accepted here and by --features (torch-free)

__all__ = [
    "FEATURE_SPACES",
    "FeatureSpace",
    "EmbeddingSpace",
    "SSIMSpace",
    "classifier_space",
    "pairwise_ssim",
    "paired_ssim",
    "resolve_feature_space",
]


_LUMA = (0.299, 0.587, 0.114)  # Rec. 601, as boomerang.imageio.to_model_channels


def _check_images(x: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] not in (1, 3):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{what} must be a float tensor [B, C, H, W] with C = 1 or 3, got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"{what} must be a float tensor in [-1, 1], got dtype {x.dtype}")
    return x


class FeatureSpace:
    """A representation of images and a distance between representations.

    Subclasses implement :meth:`represent` (images ``[B, C, H, W]`` in
    [-1, 1] -> anything indexable along the first axis; called on batches,
    results concatenated with :meth:`concat`) and :meth:`distances`.

    Attributes:
        name: shown in reports (``"pixels"``, ``"ssim"``, ``"classifier"``,
            or the user function's name).
    """

    name = "custom"

    def represent(self, x: torch.Tensor):
        """Images ``[B, C, H, W]`` in [-1, 1] -> representation of the batch."""
        raise NotImplementedError

    def concat(self, parts: list):
        """Join batch representations (default: ``torch.cat`` along dim 0)."""
        return torch.cat(parts, dim=0)

    def distances(self, a, b) -> torch.Tensor:
        """Distances ``[n, m]`` (float, >= 0, smaller = more alike) between representations a (n) and b (m)."""
        raise NotImplementedError


class EmbeddingSpace(FeatureSpace):
    """Euclidean distance between embeddings ``fn(x)`` (flattened to ``[B, D]``).

    Args:
        fn: callable ``[B, C, H, W]`` in [-1, 1] -> ``[B, ...]`` features; a
            ``torch.nn.Module`` is put in eval mode.
        name: name for reports (default: the function's or class's name).

    Distances are computed without the matrix-product shortcut of
    ``torch.cdist`` (exact zero for identical features, so copies rank first).
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], name: str | None = None):
        if not callable(fn):
            raise ValueError(f"features must be a name in {FEATURE_SPACES}, a torch module or a callable, got {fn!r}")
        if isinstance(fn, torch.nn.Module):
            fn.eval()
        self.fn = fn
        self.name = name or getattr(fn, "__name__", None) or type(fn).__name__

    def represent(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            f = self.fn(x)
        if not isinstance(f, torch.Tensor) or f.ndim < 1 or f.shape[0] != x.shape[0]:
            got = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
            raise ValueError(f"feature function {self.name!r} must return a tensor [B, ...] with B = {x.shape[0]}, got {got}")
        f = f.reshape(f.shape[0], -1).float()
        if not torch.isfinite(f).all():
            raise ValueError(f"feature function {self.name!r} returned NaN or inf features")
        return f

    def distances(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.cdist(a[None], b[None], compute_mode="donot_use_mm_for_euclid_dist")[0]


def _flatten(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def _ssim_window(h: int, w: int) -> int:
    side = min(h, w)
    win = min(7, side if side % 2 == 1 else side - 1)
    if win < 3:
        raise ValueError(f"SSIM needs images of at least 3x3 pixels, got {h}x{w}; use features='pixels'")
    return win


def _ssim_terms(x01: torch.Tensor, win: int):
    """Local means and (sample) variances of images in [0, 1]: ``(mu, var)``, each ``[B, C, h', w']``."""
    x = x01.double()
    mu = F.avg_pool2d(x, win, stride=1)
    cov_norm = win * win / (win * win - 1.0)
    var = cov_norm * (F.avg_pool2d(x * x, win, stride=1) - mu * mu)
    return x, mu, var


_C1 = (0.01 * 1.0) ** 2
_C2 = (0.03 * 1.0) ** 2


def _ssim_from_terms(mu_a, var_a, mu_b, var_b, mu_ab, win) -> torch.Tensor:
    cov_norm = win * win / (win * win - 1.0)
    cov = cov_norm * (mu_ab - mu_a * mu_b)
    s = ((2 * mu_a * mu_b + _C1) * (2 * cov + _C2)) / ((mu_a * mu_a + mu_b * mu_b + _C1) * (var_a + var_b + _C2))
    return s.flatten(-3).mean(-1)


def paired_ssim(a01: torch.Tensor, b01: torch.Tensor) -> torch.Tensor:
    """SSIM of image i of ``a`` with image i of ``b``.

    Args:
        a01, b01: float tensors ``[B, C, H, W]`` with values in **[0, 1]**, same shape.

    Returns:
        float64 ``[B]`` in [-1, 1], equal to scikit-image's
        ``structural_similarity(..., data_range=1)`` with the window of
        :mod:`boomerang.metrics` (mean over channels).

    Raises:
        ValueError: shapes differ, or a side is under 3 pixels.
    """
    if a01.shape != b01.shape or a01.ndim != 4:
        raise ValueError(f"paired_ssim needs two [B, C, H, W] tensors of one shape, got {tuple(a01.shape)} and {tuple(b01.shape)}")
    win = _ssim_window(a01.shape[-2], a01.shape[-1])
    a, mu_a, var_a = _ssim_terms(a01, win)
    b, mu_b, var_b = _ssim_terms(b01, win)
    mu_ab = F.avg_pool2d(a * b, win, stride=1)
    return _ssim_from_terms(mu_a, var_a, mu_b, var_b, mu_ab, win)


def pairwise_ssim(a01: torch.Tensor, b01: torch.Tensor, *, max_elements: int = 2 ** 24) -> torch.Tensor:
    """SSIM of every image of ``a`` with every image of ``b``.

    Args:
        a01: ``[n, C, H, W]`` in [0, 1]; b01: ``[m, C, H, W]`` in [0, 1].
        max_elements: memory bound: at most this many float64 values per
            intermediate pair tensor (the work is split into blocks of pairs).

    Returns:
        float64 ``[n, m]`` in [-1, 1] (see :func:`paired_ssim`).

    Raises:
        ValueError: channel or size mismatch, or a side under 3 pixels.
    """
    if a01.ndim != 4 or b01.ndim != 4 or a01.shape[1:] != b01.shape[1:]:
        raise ValueError(f"pairwise_ssim needs [n, C, H, W] and [m, C, H, W] of one C, H, W; got "
                         f"{tuple(a01.shape)} and {tuple(b01.shape)}")
    win = _ssim_window(a01.shape[-2], a01.shape[-1])
    a, mu_a, var_a = _ssim_terms(a01, win)
    b, mu_b, var_b = _ssim_terms(b01, win)
    n, m = a.shape[0], b.shape[0]
    per_pair = a[0].numel()
    block = max(1, max_elements // per_pair)
    rows = max(1, min(n, int(block ** 0.5)))
    cols = max(1, block // rows)
    out = torch.empty(n, m, dtype=torch.float64)
    for i in range(0, n, rows):
        ai = a[i:i + rows]
        for j in range(0, m, cols):
            bj = b[j:j + cols]
            prod = (ai[:, None] * bj[None]).flatten(0, 1)  # [r*c, C, H, W]
            mu_ab = F.avg_pool2d(prod, win, stride=1).unflatten(0, (ai.shape[0], bj.shape[0]))
            out[i:i + rows, j:j + cols] = _ssim_from_terms(
                mu_a[i:i + rows, None], var_a[i:i + rows, None], mu_b[None, j:j + cols], var_b[None, j:j + cols],
                mu_ab, win)
    return out


class SSIMSpace(FeatureSpace):
    """Distance 1 - SSIM (scikit-image's definition, see :func:`paired_ssim`), range [0, 2]."""

    name = "ssim"

    def represent(self, x: torch.Tensor) -> torch.Tensor:
        _ssim_window(x.shape[-2], x.shape[-1])
        return ((x.float() + 1.0) / 2.0).clamp(0.0, 1.0)

    def distances(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return 1.0 - pairwise_ssim(a, b)


def to_digit_input(x: torch.Tensor) -> torch.Tensor:
    """Images ``[B, C, H, W]`` in [-1, 1] -> the classifier's input ``[B, 1, 28, 28]`` in [-1, 1]
    (Rec. 601 luminance for colour; bilinear antialiased resize when not 28x28)."""
    x = x.float()
    if x.shape[1] == 3:
        w = torch.tensor(_LUMA, dtype=x.dtype).view(1, 3, 1, 1)
        x = ((x + 1.0) / 2.0 * w).sum(1, keepdim=True).clamp(0.0, 1.0) * 2.0 - 1.0
    if tuple(x.shape[-2:]) != (28, 28):
        x = F.interpolate(x, size=(28, 28), mode="bilinear", antialias=True, align_corners=False).clamp(-1.0, 1.0)
    return x


def classifier_space(path=None, device: str = "cpu") -> EmbeddingSpace:
    """The reference digit classifier's penultimate features (128-d) as a feature space.

    Args:
        path: classifier folder (``None``: the bundled ``classifier-mnist5k``).
        device: ``cpu``, ``cuda`` or ``cuda:N`` (checked by :func:`boomerang.settings.torch_device`,
            the one device check of every command).

    Raises:
        SettingError: (a ValueError) a bad device name, or CUDA asked for where there is none.
        ValueError: the folder has no classifier (see :func:`boomerang.classifier.load_classifier`).
    """
    from boomerang.classifier import load_classifier
    from boomerang.settings import torch_device

    dev = torch_device(device)
    net = load_classifier(path, device=dev)

    def classifier_features(x: torch.Tensor) -> torch.Tensor:
        return net.features(to_digit_input(x).to(dev)).cpu()

    return EmbeddingSpace(classifier_features, name="classifier")


def resolve_feature_space(features="pixels", *, device: str = "cpu") -> FeatureSpace:
    """Turn a name, module or callable into a :class:`FeatureSpace`.

    Args:
        features: ``"pixels"``, ``"ssim"``, ``"classifier"``, a
            :class:`FeatureSpace`, a ``torch.nn.Module`` or a callable
            ``[B, C, H, W]`` in [-1, 1] -> ``[B, ...]``.
        device: device of the bundled classifier (``"classifier"`` only).

    Raises:
        ValueError: an unknown name or a non-callable object.
    """
    if isinstance(features, FeatureSpace):
        return features
    if isinstance(features, str):
        if features == "pixels":
            return EmbeddingSpace(_flatten, name="pixels")
        if features == "ssim":
            return SSIMSpace()
        if features == "classifier":
            return classifier_space(device=device)
        raise ValueError(f"features must be one of {', '.join(FEATURE_SPACES)} (or a callable), got {features!r}")
    return EmbeddingSpace(features)
