"""Model cases of ../shared/cases/README.md and the failure messages of issue 13.

* weights lacking tensors (UNet, VAE, text encoder) or holding unexpected ones:
  one error naming them, exit status 2, nothing written; never random layers;
* a network that returns NaN/inf: one message naming the dtype in use and what
  to try; no image left without its metadata (the run's images are removed);
* hints that name commands that exist (``hf download``, ``pip install -e ".[train]"``);
* weights written by ``train`` / ``train-classifier`` follow the umask.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from _tiny import make_tiny_pixel_model

from _helpers import run_cli
from boomerang.models import IncompleteWeightsError, NonFiniteOutputError, load_model, nonfinite_message

COMMON = ["--steps", "2", "--num-samples", "2", "--seed", "0", "--no-progress"]


def _edit_weights(folder: Path, edit) -> None:
    """Rewrite the one safetensors file in ``folder`` with ``edit(dict) -> dict`` (which must change it)."""
    (path,) = sorted(folder.glob("*.safetensors"))
    tensors = load_file(str(path))
    edited = edit(dict(tensors))
    assert sorted(edited) != sorted(tensors) or any(not torch.equal(edited[k], tensors[k]) for k in tensors)
    save_file(edited, str(path))


def _drop(prefix: str):
    return lambda t: {k: v for k, v in t.items() if not k.startswith(prefix)}


@pytest.fixture()
def digit(tmp_path) -> Path:
    path = tmp_path / "in" / "digit.png"
    path.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)).save(path)
    return path


def _run(args, capsys) -> tuple[int, str]:
    return run_cli(["sample", *args], capsys)


# ----------------------------------------------------------------------------- missing / unexpected tensors


def test_unet_without_conv_out_is_refused_naming_the_parameters(tiny_pixel_dir, tmp_path, digit, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_pixel_dir, broken)
    _edit_weights(broken / "unet", _drop("conv_out."))
    with pytest.raises(IncompleteWeightsError) as err:
        load_model(broken)
    msg = str(err.value)
    assert "conv_out.weight" in msg and "conv_out.bias" in msg and "2 missing" in msg and "unet" in msg

    out = tmp_path / "out"
    rc, err_text = _run([str(digit), "--model", str(broken), "--out", str(out), *COMMON], capsys)
    assert rc == 2
    lines = err_text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("boomerang: error: ") and "conv_out.weight" in lines[0], err_text
    assert not out.exists()


def test_unexpected_and_misshaped_tensors_are_refused(tiny_pixel_dir, tmp_path):
    extra = tmp_path / "extra"
    shutil.copytree(tiny_pixel_dir, extra)
    _edit_weights(extra / "unet", lambda t: {**t, "leftover.weight": torch.zeros(3)})
    with pytest.raises(IncompleteWeightsError, match=r"1 unexpected parameter\(s\): leftover.weight"):
        load_model(extra)

    wrong = tmp_path / "wrong"
    shutil.copytree(tiny_pixel_dir, wrong)
    _edit_weights(wrong / "unet", lambda t: {**t, "conv_out.bias": torch.zeros(t["conv_out.bias"].numel() + 1)})
    with pytest.raises(IncompleteWeightsError, match=r"1 parameter\(s\) of the wrong shape: conv_out.bias"):
        load_model(wrong)


@pytest.mark.parametrize("component,prefix,name", [
    ("vae", "decoder.conv_out.", "decoder.conv_out.weight"),
    ("text_encoder", "final_layer_norm.", "final_layer_norm.weight"),
    ("unet", "conv_out.", "conv_out.bias"),
])
def test_sd_components_missing_tensors_are_refused(tiny_sd_dir, tmp_path, component, prefix, name):
    broken = tmp_path / "sd"
    shutil.copytree(tiny_sd_dir, broken)
    _edit_weights(broken / component, _drop(prefix))
    with pytest.raises(IncompleteWeightsError) as err:
        load_model(broken)
    assert name in str(err.value) and component in str(err.value)


def test_complete_weights_load_without_library_warnings(tiny_sd_dir, capsys):
    load_model(tiny_sd_dir)
    captured = capsys.readouterr()
    assert "were not initialized" not in captured.err + captured.out


# ----------------------------------------------------------------------------- NaN / inf


def test_nan_weights_exit_2_name_the_dtype_and_the_tensor_and_leave_no_image(tiny_pixel_dir, tmp_path, digit,
                                                                                capsys):
    nan = tmp_path / "nan"
    shutil.copytree(tiny_pixel_dir, nan)
    _edit_weights(nan / "unet", lambda t: {**t, "conv_out.bias": torch.full_like(t["conv_out.bias"], float("nan"))})
    out = tmp_path / "out"
    # Level 0 is written first (no model call); the failure at 0.5 must take those images back.
    rc, err = _run([str(digit), "--model", str(nan), "--level", "0,0.5", "--out", str(out), *COMMON], capsys)
    assert rc == 2, err
    line = err.strip()
    assert len(line.splitlines()) == 1 and "--dtype float32" in line and "unet.conv_out.bias" in line
    assert "run again with --dtype float32" not in line  # already float32
    assert not out.exists()
    # in bfloat16 too, the damaged tensor is named (float32 would not help)
    rc, err = _run([str(digit), "--model", str(nan), "--level", "0.5", "--dtype", "bfloat16", "--out", str(out),
                    *COMMON], capsys)
    assert rc == 2 and "--dtype bfloat16" in err and "unet.conv_out.bias" in err and "run again with" not in err


def test_overflow_in_float32_says_float32_is_already_in_use(tiny_pixel_dir, tmp_path, digit, capsys):
    big = tmp_path / "big"
    shutil.copytree(tiny_pixel_dir, big)
    # finite weights whose sum overflows float32 (max 3.4e38): silu outputs summed with weight 3e38
    _edit_weights(big / "unet", lambda t: {**t, "conv_out.bias": torch.full_like(t["conv_out.bias"], 3e38),
                                           "conv_out.weight": torch.full_like(t["conv_out.weight"], 3e38)})
    model = load_model(big)
    with pytest.raises(NonFiniteOutputError) as err:
        model.predict(torch.rand(1, 1, 8, 8), 10)
    msg = str(err.value)
    assert "dtype float32" in msg and "widest dtype" in msg and "run again with dtype float32" not in msg
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier file")
    rc, err_text = _run([str(digit), "--model", str(big), "--level", "0,0.5", "--out", str(out), *COMMON], capsys)
    assert rc == 2 and "float32" in err_text
    assert sorted(p.name for p in out.rglob("*")) == ["keep.txt"]  # the run's images are gone, nothing else


def test_half_precision_messages_suggest_float32():
    assert "`dtype` float16" in nonfinite_message("float16") and "`dtype` float32" in nonfinite_message("float16")
    assert "run again with `dtype` float32" in nonfinite_message("bfloat16")


def test_vae_nan_is_named(tiny_sd_dir, tmp_path):
    broken = tmp_path / "sd"
    shutil.copytree(tiny_sd_dir, broken)
    _edit_weights(broken / "vae", lambda t: {**t, "decoder.conv_out.bias": torch.full_like(t["decoder.conv_out.bias"],
                                                                                          float("inf"))})
    model = load_model(broken)
    with pytest.raises(NonFiniteOutputError, match="the VAE decoder .*dtype float32.*vae.decoder.conv_out.bias"):
        model.decode(torch.zeros(1, 4, 4, 4))


# ----------------------------------------------------------------------------- hints


def test_offline_hub_hint_names_a_command_that_exists(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ValueError) as err:
        load_model("someone/some-model")
    msg = str(err.value)
    assert "hf download someone/some-model" in msg and "huggingface-cli" not in msg
    assert Path(sys.executable).with_name("hf").exists()  # installed with huggingface_hub


def test_missing_train_extra_hint_is_the_checkout_command(monkeypatch):
    import builtins

    from boomerang import data

    real = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError("no sklearn")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    with pytest.raises(ValueError) as err:
        data.load_dataset("digits")
    assert 'pip install -e ".[train]"' in str(err.value) and "boomerang[train]" not in str(err.value)


# ----------------------------------------------------------------------------- file modes


def test_train_and_classifier_weights_follow_the_umask(tmp_path):
    from boomerang.classifier import build_classifier, save_classifier
    from boomerang.training.ddpm import TrainConfig, train

    old = os.umask(0o022)
    try:
        out = tmp_path / "run"
        train(TrainConfig(data="digits", output=str(out), channels=[8, 16], attention=[0, 0], norm_groups=4,
                          batch_size=8, max_steps=1, checkpoint_every=1, warmup_steps=1, threads=1, progress=False))
        save_classifier(build_classifier(width=4, feature_dim=8), tmp_path / "clf")
    finally:
        os.umask(old)
    files = [p for p in [*out.rglob("*"), *(tmp_path / "clf").rglob("*")] if p.is_file()]
    assert any(p.name.endswith(".safetensors") for p in files)
    modes = {p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode & 0o777) for p in files}
    assert set(modes.values()) == {oct(0o644)}, modes


def test_weights_that_overflow_float16_say_so_and_not_that_the_file_is_damaged(tiny_pixel_dir, tmp_path, digit,
                                                                                 capsys):
    """Finite float32 weights beyond float16's range become inf when cast: the advice is a wider dtype
    (found by a new-user trial: the message said the weights file was damaged)."""
    big = tmp_path / "f16inf"
    shutil.copytree(tiny_pixel_dir, big)
    _edit_weights(big / "unet", lambda t: {**t, "conv_out.weight": t["conv_out.weight"] * 1e6 + 1e5})
    out = tmp_path / "out"
    rc, err = _run([str(digit), "--model", str(big), "--level", "0.5", "--dtype", "float16", "--out", str(out),
                    *COMMON], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "unet.conv_out.weight" in err and "--dtype float32" in err and "damaged" not in err
    assert not out.exists()
