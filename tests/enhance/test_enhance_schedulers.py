"""Every scheduler ``boomerang enhance`` takes runs in its windowed loop as in ``boomerang sample``.

The scheduler names come from one registry (``boomerang.scheduler_names``); the
enhance loop (``boomerang.enhance.sampler.tiled_boomerang``) with one window
must equal core's sampler bit for bit, for each of them, and docs/enhance.md
must list each of them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from boomerang.scheduler_names import CUSTOM_GRID_SCHEDULERS, SCHEDULER_NAMES

DOC = Path(__file__).resolve().parents[2] / "docs" / "enhance.md"


@pytest.mark.parametrize("scheduler", CUSTOM_GRID_SCHEDULERS)
def test_one_window_equals_the_sample_commands_sampler(tiny_pixel_model, scheduler):
    from boomerang.core import boomerang_sample, plan
    from boomerang.enhance.sampler import tiled_boomerang

    x0 = torch.rand((2, 1, 8, 8), generator=torch.Generator().manual_seed(0)) * 1.8 - 0.9
    p = plan(tiny_pixel_model, level=0.4, steps=10, scheduler=scheduler)

    def gens():
        return [torch.Generator().manual_seed(i) for i in range(2)]

    want = boomerang_sample(tiny_pixel_model, x0, p, gens()).samples
    got = tiled_boomerang(tiny_pixel_model, x0, p, gens(), tile=8, overlap=0)
    assert torch.isfinite(got).all()
    assert torch.equal(got.float(), want.float())


def test_the_docs_list_every_scheduler_enhance_takes():
    text = DOC.read_text()
    line = re.search(r"`--scheduler` takes every scheduler that\s+follows the exact grid: ([^(]*)\(", text)
    assert line, "docs/enhance.md no longer lists the schedulers of --scheduler"
    listed = [w.strip() for w in re.split(r",\s*", " ".join(line.group(1).split()).rstrip(". ")) if w.strip()]
    assert listed == list(CUSTOM_GRID_SCHEDULERS)
    refused = [n for n in SCHEDULER_NAMES if n not in CUSTOM_GRID_SCHEDULERS]
    assert all(f"{n}" in text for n in refused)


def test_the_schedulers_module_reuses_the_torch_free_names():
    import boomerang.schedulers as s

    assert s.SCHEDULER_NAMES is SCHEDULER_NAMES and s.CUSTOM_GRID_SCHEDULERS is CUSTOM_GRID_SCHEDULERS
