"""boomerang: local sampling on image manifolds with pretrained diffusion models.

Importing the package is cheap: heavy modules (torch, diffusers) load on first use.
"""

from boomerang._version import __version__

# Lazy exports: name -> module that defines it (imported on first attribute access).
_LAZY = {
    "sample": "boomerang.api",
    "load": "boomerang.api",
    "SampleSettings": "boomerang.api",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'boomerang' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
