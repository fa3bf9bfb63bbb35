"""Shared fixtures: tiny random-weight models built offline once per session.

Tests run offline (HF_HUB_OFFLINE=1) on the CPU. torch runs single-threaded:
the tiny models gain nothing from threads, and on a machine whose cores are
busy, two threads made a UNet call ~70x slower (0.97 s vs 14 ms) here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # torch at import, and boomerang's default --threads
sys.path.insert(0, str(Path(__file__).parent))  # the helpers in tests/ (_png.py, ...)


@pytest.fixture(scope="session", autouse=True)
def _single_thread_torch():
    import torch

    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def tiny_pixel_dir(tmp_path_factory) -> Path:
    """DDPMPipeline folder: UNet2DModel 8x8, 1 channel, random weights, DDPMScheduler (T=1000)."""
    from boomerang.testing.tiny import make_tiny_pixel_model

    return make_tiny_pixel_model(tmp_path_factory.mktemp("models") / "tiny_pixel")


@pytest.fixture(scope="session")
def tiny_colour_pixel_dir(tmp_path_factory) -> Path:
    """Like tiny_pixel_dir with 3 channels: a colour pixel model of native size 8."""
    from boomerang.testing.tiny import make_tiny_pixel_model

    return make_tiny_pixel_model(tmp_path_factory.mktemp("models") / "tiny_colour_pixel", size=8, channels=3)


@pytest.fixture(scope="session")
def tiny_pixel_zero_eps_dir(tmp_path_factory) -> Path:
    """Like tiny_pixel_dir, but the UNet's output layer is zero: eps prediction == 0 exactly."""
    from boomerang.testing.tiny import make_tiny_pixel_model

    return make_tiny_pixel_model(tmp_path_factory.mktemp("models") / "tiny_pixel_zero_eps", eps_scale=0.0)


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory) -> Path:
    """Stable-Diffusion-shaped folder: tiny UNet2DConditionModel, AutoencoderKL (factor 2),
    CLIPTextModel + CLIPTokenizer (from written vocab/merges), PNDMScheduler (SD 1.x settings)."""
    from boomerang.testing.tiny import make_tiny_sd

    return make_tiny_sd(tmp_path_factory.mktemp("models") / "tiny_sd")


@pytest.fixture(scope="session")
def tiny_pixel_model(tiny_pixel_dir):
    from boomerang.models import load_model

    return load_model(tiny_pixel_dir)


@pytest.fixture(scope="session")
def tiny_sd_model(tiny_sd_dir):
    from boomerang.models import load_model

    return load_model(tiny_sd_dir)
