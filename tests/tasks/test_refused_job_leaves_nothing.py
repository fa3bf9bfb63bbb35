"""A dataset job refused by the model before any output leaves no job folder behind: the corrected
rerun starts afresh (found by a new-user trial: it used to need --restart)."""

from __future__ import annotations

import shutil

import numpy as np
from PIL import Image
from safetensors.torch import load_file, save_file

from _helpers import run_cli


def _nan_model(src, dst):
    shutil.copytree(src, dst)
    path = next(dst.rglob("*.safetensors"))
    tensors = load_file(path)
    name = next(k for k in tensors if k.endswith("conv_out.weight"))
    tensors[name] = tensors[name] * float("nan")
    save_file(tensors, path)
    return dst


def test_augment_refused_for_a_nan_model_leaves_nothing(tmp_path, tiny_pixel_dir, capsys):
    data = tmp_path / "in"
    data.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (8, 8), dtype=np.uint8)).save(data / f"{i}.png")
    bad = _nan_model(tiny_pixel_dir, tmp_path / "nan_model")
    out = tmp_path / "out"
    args = ["augment", data, "--level", "0.3", "--steps", "5", "--threads", "1", "--out", out]
    rc, err = run_cli([*args, "--model", bad], capsys)
    assert rc == 2, err
    assert not out.exists(), sorted(p.name for p in out.rglob("*"))
    rc, err = run_cli([*args, "--model", tiny_pixel_dir], capsys)
    assert rc == 0, err
