"""The fidelity knob of enhance: ILVR during the first fraction F of the reverse steps (``consistency_until``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _helpers import run_cli

from boomerang.enhance import enhance_image
from boomerang.enhance.resample import area_down


def _img(seed=0, h=5, w=6):
    return np.random.default_rng(seed).uniform(0.2, 0.8, size=(h, w)).astype(np.float32)


def _down_error(pixels, img) -> float:
    h, w = img.shape
    down = area_down(torch.from_numpy(pixels[None]).permute(0, 3, 1, 2), (h, w))[0, 0].numpy()
    return float(np.abs(down - img).mean())


def _run(model, img, **kw):
    return enhance_image(model, img, scale=4, level=0.4, steps=20, generator=torch.Generator().manual_seed(3), **kw)


def test_until_one_is_consistency_and_zero_is_none_bytes(tiny_pixel_model):
    img = _img()
    on = _run(tiny_pixel_model, img, consistency=True)
    off = _run(tiny_pixel_model, img, consistency=False)
    one = _run(tiny_pixel_model, img, consistency=True, consistency_until=1.0)
    zero = _run(tiny_pixel_model, img, consistency=True, consistency_until=0.0)
    assert on.pixels.tobytes() == one.pixels.tobytes()
    assert off.pixels.tobytes() == zero.pixels.tobytes()
    assert on.pixels.tobytes() != off.pixels.tobytes()


def test_partial_consistency_lies_between(tiny_pixel_model):
    """Fewer conditioned steps: the output explains the input less well (ILVR's conditioning range)."""
    img = _img(1)
    errs = [_down_error(_run(tiny_pixel_model, img, consistency=True, consistency_until=f).pixels, img)
            for f in (1.0, 0.5, 0.0)]
    assert errs[0] < errs[1] < errs[2], errs


@pytest.mark.parametrize("value", ["2", "-0.1", "nan", "x"])
def test_cli_refuses_a_bad_knob(value, tmp_path, capsys):
    from _helpers import DIGIT

    rc, err = run_cli(["enhance", DIGIT, "--consistency-until", value, "--out", tmp_path / "o"], capsys)
    assert rc == 2 and "--consistency-until" in err and "[0, 1]" in err
    assert not (tmp_path / "o").exists()


def test_cli_knob_is_recorded(tiny_pixel_dir, tmp_path, capsys):
    import json

    from _helpers import DIGIT

    rc, err = run_cli(["enhance", DIGIT, "--model", tiny_pixel_dir, "--scale", "2", "--level", "0.3", "--steps", "6",
                       "--consistency-until", "0.5", "--out", tmp_path / "o"], capsys)
    assert rc == 0, err
    rows = [json.loads(line) for line in (tmp_path / "o" / "metadata.jsonl").read_text().splitlines()]
    assert rows[0]["consistency"] is True and rows[0]["consistency_until"] == 0.5
