"""boomerang: local sampling on image manifolds with pretrained diffusion models.

Importing the package is cheap: heavy modules (torch, diffusers) load on first use.
"""

from boomerang._version import __version__

__all__ = ["__version__"]
