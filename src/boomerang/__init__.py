"""boomerang: local sampling on image manifolds with pretrained diffusion models.

Importing the package is cheap: heavy modules (torch, diffusers) load on first use.
"""

from boomerang._version import __version__

# Lazy exports: name -> module that defines it (imported on first attribute access).
_LAZY = {
    "sample": "boomerang.api",
    "load": "boomerang.api",
    "SampleSettings": "boomerang.settings",
    # algorithm core (boomerang.core / models / seeds; torch loads on first use)
    "plan": "boomerang.core",
    "boomerang_sample": "boomerang.core",
    "BoomerangOutput": "boomerang.core",
    "SCHEDULER_NAMES": "boomerang.core",
    "SCHEDULES": "boomerang.core",
    "load_model": "boomerang.models",
    "read_model_info": "boomerang.models",
    "item_seed": "boomerang.seeds",
    "item_generator": "boomerang.seeds",
    # the noise-level contract (torch-free)
    "check_level": "boomerang.levels",
    "parse_levels": "boomerang.levels",
    "level_to_timestep": "boomerang.levels",
    "timestep_to_level": "boomerang.levels",
    "num_denoiser_evals": "boomerang.levels",
    "reverse_timesteps": "boomerang.levels",
    "NoisePlan": "boomerang.levels",
    "plan_exact": "boomerang.levels",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        import importlib
        import importlib.util

        if not name.startswith("_") and importlib.util.find_spec(f"boomerang.{name}") is not None:
            return importlib.import_module(f"boomerang.{name}")  # a submodule: boomerang.api, boomerang.seeds ...
        raise AttributeError(f"module 'boomerang' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
