"""The inputs of a job's blocks: one item read, transformed and fitted (:func:`read_item`), and the
decoded inputs kept across blocks (:class:`InputCache`). Used by :mod:`.blocks` (which re-exports
these names). Torch-free at import.

Decoding: an input is read once per job and process as long as it is needed again
(:class:`InputCache`, bounded by :data:`INPUT_CACHE_BYTES`): a job with several levels touches each
input in one block per level.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from boomerang.tasks.base import Task
from boomerang.tasks.job import DecodedInput, Job

__all__ = ["read_item", "identity_only", "identity_fit", "InputCache", "INPUT_CACHE_BYTES"]

#: Decoded inputs kept for later blocks of the same job, at most this many bytes per process.
INPUT_CACHE_BYTES = 1 << 30


def identity_fit(job: Job):
    """The job's ``inputs.FitArgs`` when its 8-bit outputs may be read as uint8 (no task read hooks and
    every output is its input: :func:`identity_only`), else ``None``; worked out once per block."""
    from boomerang.inputs import fit_args_for

    plain = type(job.task).transform is Task.transform and type(job.task).fit is Task.fit
    return fit_args_for(job.settings, job.model) if plain and identity_only(job) else None


def read_item(job: Job, item, identity_u8: bool = False, *, fast_fit=False) -> DecodedInput:
    """Read, transform and fit (task hooks) one item: the one read of the sampling pass.

    ``identity_u8``: the caller writes 8-bit outputs; when every output of the job is the input
    itself (:func:`identity_only`), an 8-bit gray file at the model's size is read without the float
    round trip (``imageio.read_for_identity``: uint8 reference, the bytes written are the same).
    ``fast_fit``: :func:`identity_fit` of the job when the caller has it (default: worked out here).

    Raises:
        boomerang.imageio.ImageInputError: a file that cannot be read (or is too large for the model).
    """
    from boomerang import imageio
    from boomerang.inputs import fit_args_for, read_input

    if item.member is not None:  # an image inside a shard (tar member or Parquet row)
        from boomerang.tasks.shards import open_source

        source = open_source(item)
    else:
        source = item.path if item.path is not None else item.source
    plain = type(job.task).transform is Task.transform and type(job.task).fit is Task.fit
    fast = None
    if identity_u8 and item.member is None and isinstance(source, (str, Path)):
        fit = identity_fit(job) if fast_fit is False else fast_fit
        if fit is not None:
            fast = imageio.read_for_identity(source, channels=fit.channels, native_size=fit.native_size,
                                             multiple_of=fit.multiple, vae_width=fit.vae_width)
    if fast is not None:
        loaded, reference, fitted = fast
    elif plain:  # no task hooks: large files are decoded at a reduced size, with bounded memory
        loaded, reference, fitted = read_input(source, fit_args_for(job.settings, job.model))
    else:
        loaded = imageio.read_image(source, background=job.settings.background_rgb)
        pixels = job.task.transform(job, item, loaded.pixels)
        if pixels is not loaded.pixels:
            loaded = dataclasses.replace(loaded, pixels=pixels, size=(int(pixels.shape[1]), int(pixels.shape[0])))
        reference, fitted = job.task.fit(job, loaded)
    if not job.inputs:  # inputs checked up front were warned about then
        imageio.warn_fit(loaded, fitted, int(job.model.image_channels))
    # the decoded RGB is not needed once fitted: keep its description only
    if any(loaded.pixels.strides):
        from boomerang._image import hollow

        loaded = dataclasses.replace(loaded, pixels=hollow(loaded.pixels.shape))
    return DecodedInput(loaded, reference, fitted)


def identity_only(job: Job) -> bool:
    """Every output of the job is its input itself: each noise level's plan is the identity of a
    pixel model (``core.returns_input_pixels``; level 0), so the model never sees the inputs."""
    from boomerang import core

    if job.model is None or not job.plans:
        return False
    return all(core.returns_input_pixels(job.model, p) for p in job.plans)


class InputCache:
    """The decoded inputs of one job in one process, kept while a later block still needs them.

    An item is dropped after the block holding its last output (:meth:`done_with`); an input
    that does not fit in ``max_bytes`` is read again by the next block that needs it. A file
    that cannot be read is remembered as its reason (resumable tasks skip it in every block).
    """

    def __init__(self, job: Job, max_bytes: int = INPUT_CACHE_BYTES):
        self.job, self.max_bytes, self.bytes = job, int(max_bytes), 0
        self.kept: dict[int, Any] = {}
        self._fast_fit = False  # identity_fit(job), once the model is attached and an item is read

    def _last(self, index: int) -> int:
        """The index of item ``index``'s last output (closed form for an OutputList)."""
        outputs = self.job.outputs
        if hasattr(outputs, "last_of_item"):
            return outputs.last_of_item(index)
        return max(o.index for o in outputs if o.item.index == index)

    @staticmethod
    def _size(d) -> int:
        return sum(int(getattr(a, "nbytes", 0)) for a in (d.reference, getattr(d.fitted, "pixels", None)))

    def get(self, item, identity_u8: bool = False) -> DecodedInput:
        """The item decoded (read now, or kept from an earlier block); ``identity_u8`` as :func:`read_item`.

        Raises:
            boomerang.imageio.ImageInputError: the file cannot be read (now or before).
        """
        from boomerang.imageio import ImageInputError

        if item.index in self.kept:
            got = self.kept[item.index]
            if isinstance(got, str):
                raise ImageInputError(got)
            return got
        if identity_u8 and self._fast_fit is False:
            self._fast_fit = identity_fit(self.job)
        try:
            decoded = read_item(self.job, item, identity_u8, fast_fit=self._fast_fit)
        except ImageInputError as exc:
            self.kept[item.index] = str(exc)
            raise
        size = self._size(decoded)
        if self.bytes + size <= self.max_bytes:
            self.kept[item.index] = decoded
            self.bytes += size
        return decoded

    def done_with(self, last_output: int) -> None:
        """Forget every item whose last output has an index <= ``last_output``."""
        for index in [i for i in self.kept if self._last(i) <= last_output]:
            got = self.kept.pop(index)
            if not isinstance(got, str):
                self.bytes -= self._size(got)
