"""enhance takes --timestep instead of its default --level (a default level is not a given one)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from _helpers import run_cli


def _img(path, h=5, w=7):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w), dtype=np.uint8)).save(path)
    return path


def test_enhance_runs_at_a_timestep(tmp_path, tiny_pixel_dir, capsys):
    src = _img(tmp_path / "a.png")
    out = tmp_path / "out"
    rc, err = run_cli(["enhance", src, "--timestep", "50", "--scale", "2", "--steps", "5", "--model", tiny_pixel_dir,
                       "--threads", "1", "--out", out], capsys)
    assert rc == 0, err
    assert '"timestep": 50' in (out / "metadata.jsonl").read_text()


def test_enhance_names_the_timestep_range(tmp_path, tiny_pixel_dir, capsys):
    src = _img(tmp_path / "a.png")
    rc, err = run_cli(["enhance", src, "--timestep", "5000", "--scale", "2", "--model", tiny_pixel_dir,
                       "--threads", "1", "--out", tmp_path / "out"], capsys)
    assert rc == 2 and "--timestep" in err and "999" in err and "not both" not in err, err
    assert not (tmp_path / "out").exists()
