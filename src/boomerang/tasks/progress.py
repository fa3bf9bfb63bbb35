"""Progress of a job: a tqdm bar over its outputs on stderr (torch-free).

:class:`JobProgress` counts outputs as they are written (``finished``); the
runner, its Ray engine and the API share it.
"""

from __future__ import annotations

import sys

__all__ = ["JobProgress"]


class JobProgress:
    """Progress of ``total`` outputs.

    Args:
        total: outputs of the job.
        initial: outputs made before (a resumed job).
        desc: the command's name (``sample``, ``augment`` ...).
        unit: what is counted (``img``, ``sample``).
        show: ``True`` a bar wherever the stream goes, ``False`` nothing, ``None``: a bar on a terminal.
        stream: where to write (default ``sys.stderr``).
    """

    def __init__(self, total: int, *, initial: int = 0, desc: str = "boomerang", unit: str = "img", show=None,
                 stream=None):
        from tqdm.auto import tqdm

        self.stream = stream if stream is not None else sys.stderr
        show = self.stream.isatty() if show is None else bool(show)
        self.bar = tqdm(total=int(total), initial=int(initial), unit=unit, desc=desc, disable=not show,
                        file=self.stream, dynamic_ncols=True)

    def finished(self, n: int = 1) -> None:
        """``n`` outputs were written."""
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()
