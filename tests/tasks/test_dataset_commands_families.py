"""``anonymise`` and ``augment`` run on the SDXL, SD3 and FLUX families (tiny random-weight components),
with their own default scheduler and each sample's own flow timestep."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir()
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / label / "0.png")
    return root


@pytest.mark.parametrize("fixture", ["tiny_sdxl_dir", "tiny_sd3_dir", "tiny_flux_dir"])
@pytest.mark.parametrize("command", ["anonymise", "augment"])
def test_dataset_command_runs_on_the_family(fixture, command, dataset, request, tmp_path):
    from boomerang.cli import main

    out = tmp_path / "out"
    argv = [command, str(dataset), "--model", str(request.getfixturevalue(fixture)), "--level", "0.4", "--steps", "2",
            "--prompt", "cat", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    rows = [(f.parent, json.loads(line)) for f in out.rglob("metadata.jsonl") for line in f.read_text().splitlines()]
    assert len(rows) >= 2
    flow = fixture != "tiny_sdxl_dir"
    for folder, r in rows:
        assert (folder / r["file_name"]).is_file()  # a flow model's timestep is its model timestep T sigma (a float); SDXL's a training step
        assert isinstance(r["timestep"], float) == flow and r["timestep"] > 0
