"""The one image input/output layer of boomerang (torch-free; numpy + Pillow).

Every command and the Python API read images with :func:`read_image`, map them
to the model with :func:`to_model_channels` and :func:`fit_for_model`, and write
results with :func:`save_image`. The rules below are also written up for users
in ``docs/input.md``; keep the two in step.

Reading (:func:`read_image`)
    * Sources: a path (``str`` / ``os.PathLike``; spaces and non-ASCII names
      work), a ``PIL.Image.Image``, or a numpy array ``(H, W)`` / ``(H, W, C)``
      with ``C`` in 1..4 (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA), dtype ``bool``,
      ``uint8``, ``uint16`` or float.
    * The result is always ``float32`` RGB ``(H, W, 3)`` in ``[0, 1]``;
      grayscale sources are replicated to three equal channels and flagged
      ``is_grayscale``.
    * EXIF orientation is applied (``ImageOps.exif_transpose``) for files and
      for in-memory PIL images alike; ``size`` is the upright size.
    * Transparency (RGBA, LA, PA, palette or ``L``/``RGB`` images with a
      ``transparency`` entry) is composited over ``background`` (default white,
      ``(255, 255, 255)``): out = a * colour + (1 - a) * background, computed in
      float. Colours hidden under fully transparent pixels never get through.
    * Bit depth: 8-bit data is divided by 255, 16-bit data (``I;16``,
      ``I;16B``, ``I;16L``, ``I`` and ``uint16`` arrays) by 65535, float data is
      taken as already in ``[0, 1]``; float values outside are clipped with a
      :class:`UserWarning`, non-finite values are an error. 32-bit integer
      images (mode ``I``) are treated as 16-bit; values outside 0..65535 are
      clipped with a warning. Pillow reads 16-bit *colour* PNGs at 8-bit
      precision (it keeps the high byte, so the range is still right).
    * CMYK: Pillow decodes every CMYK JPEG with Adobe (inverted) polarity,
      which is right for files carrying the Adobe APP14 marker (Photoshop,
      Pillow and libjpeg write it; the case file ``cmyk.jpg`` has it). A CMYK
      JPEG *without* that marker stores plain CMYK, so the inversion is undone
      for it. An embedded ICC profile is honoured through LittleCMS (to sRGB);
      without one the plain formula R = (1 - C)(1 - K) etc. is used.
    * Colour profiles: an RGB, RGBA or gray image with an embedded ICC profile
      is converted to sRGB through it (LittleCMS via ``PIL.ImageCms``); an
      sRGB profile is left alone (bit-exact). An image tagged with a linear
      (gamma 1.0) profile whose pixels are 128 reads as about 188. Outputs are
      sRGB and carry no profile. A profile LittleCMS cannot use is ignored.
    * Multi-frame files (GIF, APNG, TIFF): the first frame is used.
    * Size limits: at least 1 x 1 pixel; at most ``max_pixels`` pixels
      (default :data:`DEFAULT_MAX_PIXELS`, 50 megapixels), checked from the
      file header before anything is decoded. Pillow's decompression-bomb
      error becomes an :class:`ImageInputError` as well.
    * The whole file is decoded inside ``read_image``, so a truncated file
      fails here, never later in the sampler. Truncated images are never
      accepted (``ImageFile.LOAD_TRUNCATED_IMAGES`` is not touched).

Listing (:func:`iter_image_files`, the project's one image lister)
    * A file is taken as given; a folder is walked for files whose suffix
      (any case) is in :data:`IMAGE_SUFFIXES`, hidden files and folders
      skipped, in the order of their relative POSIX paths. Paths are yielded
      as they are found (one directory's entries are sorted at a time), so a
      folder of millions of files is never held in memory.

Model mapping
    * Channels (:func:`to_model_channels`): one-channel models get the Rec. 601
      luminance 0.299 R + 0.587 G + 0.114 B; three-channel models get RGB
      (grayscale is replicated).
    * Size (:func:`fit_for_model`): pixel models with a native sample size get
      the image resized (stretched, both axes independently) to ``native_size``
      x ``native_size`` with Lanczos in float (mode ``F``, one channel at a
      time) and resized back to the exact input size afterwards. Models that
      need sides divisible by ``multiple_of`` (latent models: 8, or 64 for a
      full SD UNet) get the image reflect-padded on the bottom and right (a 1-pixel side is repeated) and
      cropped back exactly. Nothing of the user's image is ever cropped. Any
      image of at least 1 x 1 is handled (a 1 x 1 input gives a 1 x 1 output).

Writing (:func:`save_image`)
    * PNG only, written to a temporary file in the destination folder and
      moved into place with ``os.replace`` (atomic on one file system); on any
      failure nothing is left behind, and a failed write (a full disk) raises
      :class:`OutputWriteError`: one line naming the file and the cause.
    * No metadata at all is written: no EXIF (so no orientation, camera, GPS),
      no text chunks, no ICC profile, no DPI.
    * Mode: ``L`` (8-bit) or ``I;16`` (16-bit) for single-channel or exactly
      gray content, ``RGB`` (8-bit) or 16-bit RGB otherwise, so reading the file
      back gives the same values (to the written precision).

The code lives in private modules, one job each: :mod:`boomerang._image` (what a
read image is: :class:`LoadedImage`, :class:`ImageInputError`, limits and
defaults), :mod:`boomerang._listing` (the one image lister,
:func:`iter_image_files`, and :data:`IMAGE_SUFFIXES`), :mod:`boomerang._imread`
(opening and decoding files, :func:`read_image`), :mod:`boomerang._pixels`
(decoded pixels to float RGB), :mod:`boomerang._colour` (ICC profiles and CMYK
to sRGB), :mod:`boomerang._fit` (fitting to a model and the fit warning),
:mod:`boomerang._imfit` (reading for a model with bounded memory) and
:mod:`boomerang._imwrite` (writing); this module is the public face, and every
name above is importable from here.
"""

from __future__ import annotations

from boomerang import _fit, _image, _imfit, _imread, _imwrite, _listing
from boomerang._fit import *  # noqa: F401,F403
from boomerang._image import *  # noqa: F401,F403
from boomerang._imfit import *  # noqa: F401,F403
from boomerang._imread import *  # noqa: F401,F403
from boomerang._imwrite import *  # noqa: F401,F403
from boomerang._listing import *  # noqa: F401,F403

__all__ = [*_image.__all__, *_listing.__all__, *_imread.__all__, *_fit.__all__, *_imfit.__all__, *_imwrite.__all__]
