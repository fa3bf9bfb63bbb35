"""Which bundled model a command uses when no model is given: chosen once per command from its inputs.

Rule: when every input is a *small gray image* (a single colour channel, or three equal ones, and
both sides at most :data:`DIGIT_MAX_SIDE` pixels: what the digit model was made for, such as
``examples/digits``), the digit model ``ddpm-mnist5k`` (``settings.model`` stays ``None``, the
bundled default, exactly as before the photo model existed); anything else (one colour or larger
image among the inputs) -> the photo model ``ddpm-photos``, a fully convolutional colour model that
runs at the input's own size. A command without inputs keeps the digit model. If the photo model
is not installed, the digit model is used and the reason says so.

Torch-free: inputs are read with :func:`boomerang.imageio.read_image` (a file larger than
:data:`DIGIT_MAX_SIDE` is rejected from its header alone, never decoded).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DIGIT_MAX_SIDE", "DefaultChoice", "choose_default_model", "is_small_gray"]

#: The largest side (pixels) of an input that still counts as digit-like.
DIGIT_MAX_SIDE = 64


@dataclass(frozen=True)
class DefaultChoice:
    """The model chosen for a command without one.

    Attributes:
        name: the bundled model's short name (``ddpm-mnist5k`` or ``ddpm-photos``).
        model: what ``settings.model`` becomes: ``None`` for the digit model (the bundled
            default), the short name ``"ddpm-photos"`` for the photo model.
        reason: one sentence, for stderr and metadata.
    """

    name: str
    model: str | None
    reason: str

    def record(self) -> dict:
        """What metadata records: ``{"model": name, "reason": ...}``."""
        return {"model": self.name, "reason": self.reason}


def _size_of(source) -> tuple[int, int] | None:
    """(W, H) of a file from its header (a PNG's IHDR, else PIL without decoding); None when it cannot be
    read that way."""
    import os

    if not isinstance(source, (str, os.PathLike)):
        return None
    from pathlib import Path

    from boomerang._imfit import _peek_size

    return _peek_size(Path(source), None)


def _file_is_small_gray(path, background) -> bool:
    """:func:`is_small_gray` of a file whose header size is small: decoded once, as ``read_image`` decodes
    it (every check, so a damaged file is not gray); an ``L``/``LA`` file is gray without its float pixels."""
    from pathlib import Path

    from boomerang._image import DEFAULT_MAX_PIXELS, ImageInputError, check_background
    from boomerang._imread import open_file
    from boomerang._pixels import from_pil

    try:
        bg = check_background(background)
        img, name, path = open_file(Path(path), DEFAULT_MAX_PIXELS)
        if max(img.size) > DIGIT_MAX_SIDE:
            return False
        if img.mode in ("L", "LA"):  # read_image calls these gray whatever their ICC profile
            return True
        loaded = from_pil(img, name, path, bg)
    except (ImageInputError, ValueError):
        return None  # unreadable: the command's own input checks skip or refuse it
    return _gray(loaded)


def _gray(loaded) -> bool:
    if loaded.is_grayscale:
        return True
    px = loaded.pixels
    return bool((px[..., 0] == px[..., 1]).all() and (px[..., 1] == px[..., 2]).all())


def _small_gray_verdict(source, background):
    """True / False as :func:`is_small_gray`; None when ``source`` cannot be read as an image."""
    import os

    from boomerang import imageio

    size = _size_of(source)
    if size is not None and max(size) > DIGIT_MAX_SIDE:
        return False
    if isinstance(source, (str, os.PathLike)):
        return _file_is_small_gray(source, background)
    try:
        loaded = imageio.read_image(source, background=background)
    except ValueError:
        return None
    w, h = loaded.size
    if max(w, h) > DIGIT_MAX_SIDE:
        return False
    return _gray(loaded)


def is_small_gray(source, background=(255, 255, 255)) -> bool:
    """True when ``source`` (a path, PIL image or array) is at most :data:`DIGIT_MAX_SIDE` pixels
    on both sides and gray (one colour channel, or three equal ones after decoding; alpha is
    composited over ``background``). An unreadable file counts as not gray here; the default-model
    choice leaves such files out (the command's own input checks name them). A file is decoded
    once (a larger one not at all: its header says)."""
    return bool(_small_gray_verdict(source, background))


_NONE = object()


def choose_default_model(sources, background=(255, 255, 255)) -> DefaultChoice:
    """The model for a command without one, from its inputs (see the module docstring).

    Args:
        sources: the command's inputs (paths, PIL images or arrays), any iterable (read once, in
            order, up to the first that is not a small gray image); may be empty. Inputs that cannot
            be read as images are left out of the choice (a dataset job skips them).
        background: what alpha is composited over (the command's ``--background``).

    Returns:
        a :class:`DefaultChoice`.
    """
    import itertools

    from boomerang import assets

    digit = assets.DEFAULT_MODEL_NAME
    sources = iter(sources)  # streamed: a dataset's millions of paths are never held in a list
    first = next(sources, _NONE)
    if first is _NONE:
        return DefaultChoice(digit, None, "the command has no input images")
    verdicts = (_small_gray_verdict(s, background) for s in itertools.chain([first], sources))
    if all(v is not False for v in verdicts):  # unreadable inputs (None) are skipped by the command: left out
        return DefaultChoice(digit, None, f"every readable input is a small gray image, at most {DIGIT_MAX_SIDE}x"
                                          f"{DIGIT_MAX_SIDE} pixels; pass --model {assets.PHOTO_MODEL_NAME} for "
                                          "the photo model")
    try:
        assets.named_model_path(assets.PHOTO_MODEL_NAME)
    except FileNotFoundError:
        return DefaultChoice(digit, None, "not every input is a small gray image, but the photo model "
                                          f"{assets.PHOTO_MODEL_NAME} is not installed")
    return DefaultChoice(assets.PHOTO_MODEL_NAME, assets.PHOTO_MODEL_NAME,
                         f"not every input is a small gray image (one is in colour or larger than "
                         f"{DIGIT_MAX_SIDE} pixels on a side); pass --model {digit} for the digit model")
