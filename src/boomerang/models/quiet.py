"""Quiet loading (part of :mod:`boomerang.models`): diffusers' and transformers' own log lines off."""

from __future__ import annotations

__all__ = ["quiet_loading"]


class quiet_loading:
    """Context manager: silence diffusers' / transformers' own warnings about missing weights
    while we load (we raise one clear error for them instead), and transformers' "Loading
    weights" bars; restores the verbosity and the bars on exit."""

    def __enter__(self):
        from diffusers.utils import logging as dlog

        self._saved = [(dlog, dlog.get_verbosity())]
        dlog.set_verbosity_error()
        try:
            from transformers.utils import logging as tlog

            self._saved.append((tlog, tlog.get_verbosity()))
            tlog.set_verbosity_error()
            self._bars = tlog.is_progress_bar_enabled()
            tlog.disable_progress_bar()  # transformers 5 draws a "Loading weights" bar per model
        except ImportError:  # pragma: no cover - transformers is a dependency
            pass
        return self

    def __exit__(self, *exc):
        for mod, level in self._saved:
            mod.set_verbosity(level)
        if getattr(self, "_bars", False):
            from transformers.utils import logging as tlog

            tlog.enable_progress_bar()
        return False
