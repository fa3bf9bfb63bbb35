"""``enhance`` on the SDXL and SD3 families (tiny random-weight components), and the flow-matching form
of ``--consistency``: the low frequencies of x_t become those of (1 - sigma) x0_low + sigma eps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from boomerang.enhance.consistency import Consistency
from boomerang.enhance.resample import area_down


def gens(indices):
    return [torch.Generator().manual_seed(int(i)) for i in indices]


@pytest.mark.parametrize("sigma", [0.7, 0.0])
def test_flow_consistency_sets_the_low_frequencies_to_the_noised_reference(sigma):
    ref = torch.rand(2, 16, 4, 4) * 2 - 1
    x = torch.randn(2, 16, 8, 8)
    out = Consistency(ref, bounds=None).apply(x, None, gens([3, 4]), flow_sigma=sigma)
    eps = torch.cat([torch.randn((1, 16, 8, 8), generator=g) for g in gens([3, 4])])
    target = (1 - sigma) * ref + sigma * area_down(eps, (4, 4)) if sigma > 0 else ref
    torch.testing.assert_close(area_down(out, (4, 4)), target, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fixture", ["tiny_sdxl_dir", "tiny_sd3_dir"])
@pytest.mark.parametrize("consistency", [False, True])
def test_cli_enhance_runs_on_the_family(fixture, consistency, request, tmp_path):
    from boomerang.cli import main

    src = tmp_path / "small.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(src)
    out = tmp_path / "out"
    argv = ["enhance", str(src), "--model", str(request.getfixturevalue(fixture)), "--scale", "2", "--level", "0.3",
            "--steps", "4", "--prompt", "cat", "--tile-size", "8", "--tile-overlap", "2", "--no-progress",
            "--out", str(out)] + (["--consistency"] if consistency else [])
    assert main(argv) == 0
    (rec,) = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert Image.open(out / rec["file_name"]).size == (24, 24) and (rec["tile_size"], rec["consistency"]) == (8, consistency)
    assert rec["start_snr"] > 0 and (rec["sigma"] is None) == (fixture == "tiny_sdxl_dir")
