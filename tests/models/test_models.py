"""boomerang.models: layouts, safe loading, hub ids offline, encode/decode, guidance; boomerang.seeds."""

from __future__ import annotations

import json
import shutil

import numpy as np

import pytest
import torch

from boomerang import seeds
from boomerang.models import load_model, read_model_info

# ----------------------------------------------------------------------------- read_model_info / layouts


def test_info_pixel(tiny_pixel_dir):
    info = read_model_info(tiny_pixel_dir)
    assert (info.kind, info.num_train_timesteps, info.image_channels, info.native_size) == ("pixel", 1000, 1, 8)
    assert info.takes_prompt is False and info.size_multiple == 2


def test_info_sd(tiny_sd_dir):
    info = read_model_info(str(tiny_sd_dir))
    assert (info.kind, info.num_train_timesteps, info.image_channels, info.native_size) == ("latent", 1000, 3, None)
    assert info.takes_prompt is True and info.size_multiple == 2


def test_bare_unet_folder_with_scheduler_config(tiny_pixel_dir, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(tiny_pixel_dir / "unet", bare)
    with pytest.raises(ValueError, match="scheduler_config.json"):
        read_model_info(bare)
    shutil.copy(tiny_pixel_dir / "scheduler" / "scheduler_config.json", bare / "scheduler_config.json")
    assert read_model_info(bare).kind == "pixel"
    model = load_model(bare)
    assert model.native_size == 8 and model.kind == "pixel"


def test_missing_and_unknown_folders(tmp_path):
    with pytest.raises(ValueError, match="no such folder"):
        read_model_info(tmp_path / "does_not_exist")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a supported diffusers model folder"):
        read_model_info(tmp_path / "empty")
    f = tmp_path / "model.ckpt"
    f.write_bytes(b"x")
    with pytest.raises(ValueError, match="got a file"):
        read_model_info(f)


def test_hub_id_offline_gives_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # empty cache
    for call in (read_model_info, load_model):
        with pytest.raises(ValueError) as err:
            call("someone/some-diffusion-model")
        msg = str(err.value)
        assert "not a local folder" in msg and "snapshot_download" in msg and "--model" in msg


def test_none_is_the_bundled_model(monkeypatch, tiny_pixel_dir):
    import boomerang.assets

    monkeypatch.setattr(boomerang.assets, "default_model_path", lambda: tiny_pixel_dir)
    assert read_model_info(None).source == str(tiny_pixel_dir)


def _pickled_copy(model_dir, tmp_path):
    """A copy of a pixel model folder whose UNet weights are a pickle (.bin) only."""
    from diffusers import UNet2DModel

    folder = tmp_path / "pickled"
    shutil.copytree(model_dir, folder)
    unet = UNet2DModel.from_pretrained(folder / "unet")
    for p in (folder / "unet").glob("*.safetensors"):
        p.unlink()
    unet.save_pretrained(folder / "unet", safe_serialization=False)
    assert list((folder / "unet").glob("*.bin"))
    return folder


def test_pickle_weights_are_refused_unless_allowed(tiny_pixel_dir, tmp_path):
    folder = _pickled_copy(tiny_pixel_dir, tmp_path)
    with pytest.raises(ValueError) as err:
        load_model(folder)
    assert "pickle" in str(err.value) and "--allow-pickle" in str(err.value)
    model = load_model(folder, allow_pickle=True)
    assert model.kind == "pixel"


def test_allowed_pickle_weights_load_without_a_stray_diffusers_line(tiny_pixel_dir, tmp_path):
    """diffusers logs an error line when it looks for .safetensors first; a pickle-only folder
    with --allow-pickle is loaded from its pickle file directly: stderr has only our lines.
    (A fresh process: diffusers' log handler keeps the stderr of the process it was made in.)"""
    import subprocess
    import sys

    from PIL import Image

    folder = _pickled_copy(tiny_pixel_dir, tmp_path)
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(img)

    def cli(out):
        code = "import sys; from boomerang.cli import main; sys.exit(main(sys.argv[1:]))"
        return subprocess.run([sys.executable, "-c", code, "sample", str(img), "--model", str(folder), "--allow-pickle",
                               "--level", "0.5", "--steps", "2", "--num-samples", "1", "--no-progress",
                               "--out", str(tmp_path / out)], capture_output=True, text=True, timeout=300)

    res = cli("out")
    assert res.returncode == 0, res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines and all(ln.startswith(("wrote ", "boomerang: warning:")) for ln in lines), res.stderr
    # a real problem still says so: a damaged pickle is one error line, nothing written
    (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"not a pickle")
    res = cli("out2")
    assert res.returncode in (1, 2) and res.stderr.startswith("boomerang: error:"), res.stderr
    assert not (tmp_path / "out2").exists()


def test_bad_device_and_dtype(tiny_pixel_dir):
    with pytest.raises(ValueError, match="dtype"):
        load_model(tiny_pixel_dir, dtype="float64")
    with pytest.raises(ValueError, match="device"):
        load_model(tiny_pixel_dir, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            load_model(tiny_pixel_dir, device="cuda")


def test_weights_hash_identifies_the_weights(tiny_pixel_dir, tiny_pixel_zero_eps_dir, tiny_pixel_model):
    h = tiny_pixel_model.weights_sha256
    assert len(h) == 64 and int(h, 16) >= 0
    assert load_model(tiny_pixel_dir).weights_sha256 == h
    assert load_model(tiny_pixel_zero_eps_dir).weights_sha256 != h


# ----------------------------------------------------------------------------- calls


def test_pixel_encode_decode_are_identity(tiny_pixel_model):
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    assert torch.equal(tiny_pixel_model.decode(tiny_pixel_model.encode(x)), x)


def test_latent_encode_is_vae_mode_times_scaling(tiny_sd_model):
    m = tiny_sd_model
    x = torch.rand(2, 3, 16, 12) * 2 - 1
    z = m.encode(x)
    assert z.shape == (2, 4, 8, 6) and z.dtype == torch.float32
    with torch.no_grad():
        ref = m.vae.encode(x).latent_dist.mode() * m.vae.config.scaling_factor
    torch.testing.assert_close(z, ref, atol=1e-5, rtol=1e-5)
    out = m.decode(z)
    assert out.shape == x.shape and out.dtype == torch.float32 and out.device.type == "cpu"


def test_nonfinite_decode_raises(tiny_sd_model, tiny_pixel_model):
    z = torch.full((1, 4, 4, 4), float("nan"))
    with pytest.raises(ValueError, match="NaN or infinite"):
        tiny_sd_model.decode(z)
    with pytest.raises(ValueError, match="float32"):
        tiny_pixel_model.decode(torch.full((1, 1, 8, 8), float("inf")))


@pytest.mark.parametrize("strategy,expected", [("kernels", [4, 2, 2]), ("per_item", [2, 2, 1, 1, 1, 1])])
def test_classifier_free_guidance(tiny_sd_model, strategy, expected, monkeypatch):
    m = tiny_sd_model
    monkeypatch.setattr(m, "invariant_strategy", strategy)
    cond, uncond = m.encode_prompt("cat", "person", 7.5)
    assert cond.shape == uncond.shape == (1, 16, 16)
    assert m.encode_prompt("cat", "", 1.0)[1] is None  # no unconditional pass
    x = torch.randn(2, 4, 8, 8)
    batches = []
    hook = m.unet.register_forward_hook(lambda mod, inp, out: batches.append(inp[0].shape[0]))
    try:
        guided = m.predict(x, 500, cond=cond, uncond=uncond, guidance_scale=7.5)
        c = m.predict(x, 500, cond=cond)
        u = m.predict(x, 500, cond=uncond)
    finally:
        hook.remove()
    # batched: one UNet call on [uncond; cond] (2B); item by item: [uncond_i; cond_i] per item
    assert batches == expected
    torch.testing.assert_close(guided, u + 7.5 * (c - u), atol=1e-5, rtol=1e-5)


def test_bfloat16_runs(tiny_pixel_dir):
    m = load_model(tiny_pixel_dir, dtype="bfloat16")
    out = m.predict(torch.randn(1, 1, 8, 8), 10)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


# ----------------------------------------------------------------------------- seeds


def test_item_seed_is_a_stable_hash():
    s = seeds.item_seed(0, 1, 2)
    assert s == seeds.item_seed(0, 1, 2) and 0 <= s < 2**63
    assert len({seeds.item_seed(0, i, j) for i in range(5) for j in range(5)} | {seeds.item_seed(1, 0, 0)}) == 26
    g1, g2 = seeds.item_generator(3, 0, 1), seeds.item_generator(3, 0, 1)
    assert torch.equal(torch.randn(4, generator=g1), torch.randn(4, generator=g2))
    for bad in (-1, 1.5, "1", True):
        with pytest.raises(ValueError):
            seeds.item_seed(bad, 0, 0)
