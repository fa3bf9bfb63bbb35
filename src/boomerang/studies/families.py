"""The cross-family level study (``benchmarks/families_levels.py``) and the flow model's text-to-image
study (``benchmarks/flow_model_quality.py``): what they share, importable by tests.

The three bundled digit models see different inputs: ``ddpm-mnist5k`` gray 1x28x28, the text
models (``ldm-mnist5k-text``, ``flow-mnist5k-text``) RGB 3x32x32 (the digit zero-padded by 2 and
repeated, :func:`boomerang.training.ldm_parts.digits_to_rgb32`). :func:`model_input` makes a model's
input from uint8 digits and :func:`as_digits` brings any model's output back to the 28x28 gray digit
the judges and SSIM see, so every figure compares like with like.

* :class:`PerItemPrompts`: one prompt per item in one ``boomerang_sample`` call (the SD 1.x
  embeddings are tensors, SD3's are ``(tokens, pooled)`` pairs: both are stacked item-wise);
* :func:`ssim_to`, :func:`pairwise_diversity`: SSIM of each sample to its input, and the
  diversity of the samples of one input (mean 1 - SSIM over pairs of samples);
* :func:`sample_level`: Boomerang samples of a set of digits at one level, with the plan's
  ``timestep``, ``sigma``, ``alpha_bar`` and ``start_snr`` (what ``metadata.json`` records).
"""

from __future__ import annotations

import itertools

import numpy as np

__all__ = ["PerItemPrompts", "model_input", "as_digits", "ssim_to", "pairwise_diversity", "sample_level"]


class PerItemPrompts:
    """A model proxy whose ``encode_prompt`` gives item i of a batch the prompt ``prompts[i]``.

    ``boomerang_sample`` takes one prompt per call; the text families' ``predict`` accepts
    per-item embeddings (``[B, L, D]`` tensors for SD 1.x, ``([B, L, D], [B, P])`` for SD3), so
    a mixed-prompt batch is one network call per reverse step. Everything else is the model's.
    """

    def __init__(self, model, prompts, negatives=None):
        self._model, self._prompts = model, list(prompts)
        self._negatives = list(negatives) if negatives is not None else [""] * len(self._prompts)

    def encode_prompt(self, prompt: str = "", negative_prompt: str = "", guidance_scale: float = 1.0):
        import torch

        pairs = [self._model.encode_prompt(p, n, guidance_scale) for p, n in zip(self._prompts, self._negatives)]

        def stack(parts):
            if parts[0] is None:
                return None
            if isinstance(parts[0], tuple):
                return tuple(torch.cat(list(group)) for group in zip(*parts))
            return torch.cat(parts)

        return stack([c for c, _ in pairs]), stack([u for _, u in pairs])

    def __getattr__(self, name):
        return getattr(self._model, name)


def model_input(model, digits):
    """uint8 digits ``[N, 1, 28, 28]`` -> the model's input in [-1, 1]: ``[N, 1, 28, 28]`` for a gray
    pixel model, else ``[N, 3, 32, 32]`` (:func:`~boomerang.training.ldm_parts.digits_to_rgb32`)."""
    import torch

    from boomerang.training.ldm_parts import digits_to_rgb32

    if model.pixel_space and model.image_channels == 1:
        return torch.as_tensor(np.asarray(digits)).float() / 127.5 - 1.0
    return digits_to_rgb32(digits)


def as_digits(x) -> np.ndarray:
    """Model images ``[N, C, 28 or 32, ...]`` in [-1, 1] -> float32 ``[N, 28, 28]`` in [-1, 1]: the channel
    mean, centre-cropped to 28x28 (what the judges and SSIM see)."""
    import torch

    x = torch.as_tensor(x).clamp(-1, 1).mean(dim=1)
    pad = (x.shape[-1] - 28) // 2
    return x[:, pad:pad + 28, pad:pad + 28].numpy().astype(np.float32)


def ssim_to(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM of each pair ``a[i]``, ``b[i]`` (``[N, 28, 28]`` in [-1, 1]; computed on [0, 1], window 7)."""
    from skimage.metrics import structural_similarity

    return np.array([structural_similarity((p + 1) / 2, (q + 1) / 2, data_range=1.0, win_size=7)
                     for p, q in zip(a, b)])


def pairwise_diversity(samples: np.ndarray) -> np.ndarray:
    """Diversity of the K samples of each input: ``samples [K, N, 28, 28]`` -> ``[N]``, the mean of
    1 - SSIM over the K (K - 1) / 2 pairs (0: identical samples). Needs K >= 2."""
    k = samples.shape[0]
    if k < 2:
        raise ValueError(f"pairwise_diversity needs at least 2 samples per input, got {k}")
    pairs = list(itertools.combinations(range(k), 2))
    return np.mean([1.0 - ssim_to(samples[i], samples[j]) for i, j in pairs], axis=0)


def sample_level(model, x0, keys, *, level: float, prompts=None, scheduler: str, steps: int,
                 guidance_scale: float, seed: int, batch: int = 250):
    """Boomerang samples of ``x0`` at ``level`` on the exact schedule, item i from
    ``item_generator(seed, *keys[i])``, text models with ``prompts[i]``.

    Returns:
        ``(samples [N, C, H, W] in [-1, 1], plan facts {"timestep", "sigma", "alpha_bar", "start_snr",
        "num_denoiser_evals"})``.
    """
    import torch

    from boomerang.core import boomerang_sample
    from boomerang.seeds import item_generator

    outs, facts = [], {}
    for i in range(0, len(x0), batch):
        sl = slice(i, i + batch)
        gens = [item_generator(seed, *k) for k in keys[sl]]
        target = model if model.pixel_space or prompts is None else PerItemPrompts(model, prompts[sl])
        with torch.no_grad():
            o = boomerang_sample(target, x0[sl], generators=gens, level=level, scheduler=scheduler, steps=steps,
                                 guidance_scale=guidance_scale)
        outs.append(o.samples)
        p = o.plan
        facts = {"timestep": getattr(p, "timestep", None), "sigma": getattr(p, "sigma", None),
                 "alpha_bar": getattr(p, "alpha_bar", None), "start_snr": p.start_snr,
                 "num_denoiser_evals": o.num_denoiser_evals}
    return torch.cat(outs), {k: (float(v) if v is not None else None) for k, v in facts.items()}
