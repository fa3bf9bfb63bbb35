"""``enhance`` on the SDXL, SD3 and FLUX families (tiny random-weight components), and the flow-matching form
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


@pytest.mark.parametrize("fixture", ["tiny_sdxl_dir", "tiny_sd3_dir", "tiny_flux_dir"])
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


def test_flux_windows_carry_their_place_in_the_whole_image(tiny_flux_dir, monkeypatch):
    from boomerang.enhance.image import enhance_images
    from boomerang.models import load_model

    m = load_model(tiny_flux_dir)
    seen = []
    original = m.predict

    def predict(x_in, t, **kw):
        seen.append((tuple(x_in.shape[-2:]), kw.get("region")))
        return original(x_in, t, **kw)

    monkeypatch.setattr(m, "predict", predict)
    img = np.random.default_rng(1).random((12, 12, 3)).astype(np.float32)
    (res,) = enhance_images(m, [img], scale=2, level=0.3, generators=gens([0]), steps=2, scheduler="euler",
                            tile_size=8, tile_overlap=4, prompt="cat", guidance_scale=3.5)
    regions = {r for _, r in seen}
    assert None not in regions and len(regions) > 1  # one predict per window, each with its own Region
    assert all((r.height, r.width) == (12, 12) and shape == (4, 4) for shape, r in seen)
    assert res.pixels.shape == (24, 24, 3)
