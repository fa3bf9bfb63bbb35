"""Photo patches for ``boomerang train --data photos``: the photos that ship offline with
packages the project already uses, a fixed held-out list, and a seeded patch sampler.

Sources (no network; every loader reads a file installed with its package):

- scikit-image ``skimage.data``: colour ``astronaut``, ``rocket``, ``hubble_deep_field``,
  ``immunohistochemistry``, ``retina``, ``colorwheel``, ``stereo_motorcycle`` (left view),
  and the held-out ``chelsea`` and ``coffee``; gray ``moon``, ``brick``, ``grass``,
  ``gravel``, ``coins``, ``clock``, ``page``, ``text``, ``cell`` and the held-out ``camera``.
  (``skimage.data.cat`` is the same photo as ``chelsea``: it is held out with it, and the
  content check below would drop it anyway.)
- scikit-learn ``load_sample_images``: ``china``, ``flower``.
- matplotlib sample data: ``grace_hopper`` (``grace_hopper.jpg``).

The held-out photos (:data:`HELD_OUT`) are whole photos never used for training: the
training list excludes them by name and, in case two loaders return the same picture under
two names, by content (:func:`training_photos` drops every photo whose pixels equal a
held-out photo's). Benchmarks draw their evaluation crops from them.

A training patch (:class:`PatchSampler`): pick a photo (natural colour photos weight 3,
other colour images and gray photos weight 1), a scale ``s`` in {1, 2, 3, 4} (probabilities
0.4, 0.3, 0.2, 0.1), a random ``patch * s`` square crop box-averaged down to ``patch``
pixels (so the model sees detail at several scales), a horizontal flip with probability 1/2,
and mild colour jitter (brightness gain ``exp(U(-0.15, 0.15))``, per-channel gains
``exp(N(0, 0.04))`` and saturation ``U(0.8, 1.2)`` for colour photos; brightness only for
gray ones). Gray photos are used as luminance: replicated to 3 equal channels. Every patch
of step ``s`` is drawn from a generator seeded with ``(seed, s)`` alone, so a resumed run
sees the batches a run that never stopped would see.

numpy only at import; scikit-image, scikit-learn and matplotlib are imported when a photo is
loaded.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numpy as np

__all__ = ["PHOTO_DATASET", "HELD_OUT", "PHOTOS", "Photo", "load_photo", "training_photos", "held_out_photos",
           "PatchSampler", "SCALES", "SCALE_WEIGHTS", "write_photo_split"]

#: The ``--data`` name of this dataset.
PHOTO_DATASET = "photos"

#: Whole photos never used for training (two colour photos, one gray); benchmarks use them.
HELD_OUT = ("chelsea", "coffee", "camera")

#: name -> (source, kind): kind "natural" (a colour photograph), "colour" (a colour image that
#: is not an ordinary photograph: a telescope or microscope image, a test chart) or "gray".
PHOTOS = {
    "astronaut": ("skimage", "natural"),
    "rocket": ("skimage", "natural"),
    "stereo_motorcycle": ("skimage", "natural"),
    "china": ("sklearn", "natural"),
    "flower": ("sklearn", "natural"),
    "grace_hopper": ("matplotlib", "natural"),
    "hubble_deep_field": ("skimage", "colour"),
    "immunohistochemistry": ("skimage", "colour"),
    "retina": ("skimage", "colour"),
    "colorwheel": ("skimage", "colour"),
    "moon": ("skimage", "gray"),
    "brick": ("skimage", "gray"),
    "grass": ("skimage", "gray"),
    "gravel": ("skimage", "gray"),
    "coins": ("skimage", "gray"),
    "clock": ("skimage", "gray"),
    "page": ("skimage", "gray"),
    "text": ("skimage", "gray"),
    "cell": ("skimage", "gray"),
    # held out
    "chelsea": ("skimage", "natural"),
    "cat": ("skimage", "natural"),  # the same photo as chelsea
    "coffee": ("skimage", "natural"),
    "camera": ("skimage", "gray"),
}

_SAME_AS = {"cat": "chelsea"}
_KIND_WEIGHT = {"natural": 3.0, "colour": 1.0, "gray": 1.0}
SCALES = (1, 2, 3, 4)
SCALE_WEIGHTS = (0.4, 0.3, 0.2, 0.1)


@dataclass(frozen=True)
class Photo:
    """One photo: ``pixels`` uint8 ``[H, W, 3]`` (gray photos replicated to 3 equal channels),
    ``gray`` True for a gray source, ``kind`` (see :data:`PHOTOS`) and ``digest`` (sha256 of the
    pixels, the identity the held-out check compares)."""

    name: str
    pixels: np.ndarray
    gray: bool
    kind: str
    digest: str


def _raw(name: str) -> np.ndarray:
    source = PHOTOS[name][0]
    if source == "skimage":
        import skimage.data

        img = getattr(skimage.data, name)()
        return img[0] if name == "stereo_motorcycle" else img  # (left, right, disparity): the left view
    if source == "sklearn":
        from sklearn.datasets import load_sample_images

        s = load_sample_images()
        return next(img for f, img in zip(s.filenames, s.images) if f.endswith(f"{name}.jpg"))
    import matplotlib.cbook
    import matplotlib.image

    with matplotlib.cbook.get_sample_data(f"{name}.jpg") as f:
        return matplotlib.image.imread(f, format="jpg")


@functools.lru_cache(maxsize=None)
def load_photo(name: str) -> Photo:
    """Load one photo of :data:`PHOTOS` by name (offline; cached: the same read-only object each time).

    Returns:
        a :class:`Photo` (uint8, ``[H, W, 3]``).

    Raises:
        KeyError: not a name of :data:`PHOTOS`.
    """
    if name not in PHOTOS:
        raise KeyError(f"unknown photo {name!r}; known: {', '.join(PHOTOS)}")
    img = np.asarray(_raw(name))
    if img.dtype != np.uint8:
        img = np.clip(np.rint(img * (255.0 if img.max() <= 1.0 else 1.0)), 0, 255).astype(np.uint8)
    gray = img.ndim == 2
    if gray:
        img = np.repeat(img[:, :, None], 3, axis=2)
    img = np.ascontiguousarray(img[:, :, :3])
    img.flags.writeable = False
    return Photo(name, img, gray, PHOTOS[name][1], hashlib.sha256(img.tobytes()).hexdigest())


def held_out_photos() -> list[Photo]:
    """The held-out photos (:data:`HELD_OUT`), in that order."""
    return [load_photo(n) for n in HELD_OUT]


def training_photos() -> list[Photo]:
    """Every photo of :data:`PHOTOS` that may be trained on: not held out by name, not the same
    photo as a held-out one under another name, and not equal in pixels to a held-out photo."""
    held = {p.digest for p in held_out_photos()}
    out = []
    for name in PHOTOS:
        if name in HELD_OUT or _SAME_AS.get(name) in HELD_OUT:
            continue
        p = load_photo(name)
        if p.digest not in held:
            out.append(p)
    return out


class PatchSampler:
    """Seeded random training patches from a list of photos (see the module docstring).

    Args:
        photos: the photos to crop from (``None``: :func:`training_photos`; each at least ``patch * max(SCALES)`` on its shorter
            side for every scale to be usable; smaller scales are used otherwise).
        patch: patch side in pixels.
        seed: the run's seed.

    ``batch(step, n)`` -> float32 ``[n, 3, patch, patch]`` in [-1, 1], a function of
    ``(seed, step, n)`` alone.
    """

    def __init__(self, photos: list[Photo] | None, patch: int, seed: int = 0):
        photos = training_photos() if photos is None else photos
        if not photos:
            raise ValueError("no photos to sample patches from")
        self.photos = photos
        self.patch = int(patch)
        self.seed = int(seed)
        w = np.array([_KIND_WEIGHT[p.kind] for p in photos], dtype=np.float64)
        self.photo_p = w / w.sum()
        self._float = [p.pixels.astype(np.float32) / 255.0 for p in photos]

    def patch_of(self, rng: np.random.Generator) -> np.ndarray:
        """One patch ``[3, patch, patch]`` in [0, 1] drawn with ``rng``."""
        i = int(rng.choice(len(self.photos), p=self.photo_p))
        img, photo = self._float[i], self.photos[i]
        h, w = img.shape[:2]
        s = int(rng.choice(SCALES, p=SCALE_WEIGHTS))
        while s > 1 and self.patch * s > min(h, w):
            s -= 1
        side = self.patch * s
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = img[y:y + side, x:x + side]
        if s > 1:
            crop = crop.reshape(self.patch, s, self.patch, s, 3).mean(axis=(1, 3))
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crop = crop * np.float32(np.exp(rng.uniform(-0.15, 0.15)))
        if not photo.gray:
            crop = crop * np.exp(rng.normal(0.0, 0.04, size=3)).astype(np.float32)
            lum = crop.mean(axis=2, keepdims=True)
            crop = lum + np.float32(rng.uniform(0.8, 1.2)) * (crop - lum)
        return np.clip(crop, 0.0, 1.0).transpose(2, 0, 1)

    def batch(self, step: int, n: int):
        """The ``n`` patches of training step ``step``: a torch float32 tensor ``[n, 3, patch, patch]``
        in [-1, 1]."""
        import torch

        rng = np.random.default_rng([self.seed, int(step)])
        out = np.stack([self.patch_of(rng) for _ in range(n)]).astype(np.float32)
        return torch.from_numpy(out * 2.0 - 1.0)


def write_photo_split(folder, sampler: PatchSampler) -> None:
    """Write ``folder/split.json`` for a photo run: the training photos (name, size, sampling
    weight, sha256 of the pixels) and the held-out ones (name, size, sha256), the patch side,
    scales and their weights."""
    import json
    import pathlib

    from boomerang.fileio import atomic_write_text

    def row(p: Photo, weight=None) -> dict:
        d = {"name": p.name, "source": PHOTOS[p.name][0], "kind": p.kind, "gray": p.gray,
             "height": int(p.pixels.shape[0]), "width": int(p.pixels.shape[1]), "sha256": p.digest}
        if weight is not None:
            d["weight"] = round(float(weight), 6)
        return d

    split = {"dataset": PHOTO_DATASET, "patch": sampler.patch, "scales": list(SCALES),
             "scale_weights": list(SCALE_WEIGHTS),
             "train": [row(p, w) for p, w in zip(sampler.photos, sampler.photo_p)],
             "held_out": [row(p) for p in held_out_photos()]}
    atomic_write_text(pathlib.Path(folder) / "split.json", json.dumps(split, indent=1))
