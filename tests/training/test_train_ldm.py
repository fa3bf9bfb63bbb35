"""``boomerang train-ldm``: a tiny end-to-end run, exact resume in either stage, captions and tokenizer."""

from __future__ import annotations

import json

import pytest
import torch

from boomerang.training import ldm as tl
from boomerang.training.loop import Stopper
from boomerang.training.ldm_parts import (
    CAPTION_TEMPLATES,
    DIGIT_WORDS,
    build_tokenizer,
    caption_words,
    captions_for,
    class_prompt,
    digits_to_rgb32,
    rgb32_to_digits,
)

TINY = dict(vae_channels=[16, 16, 16], unet_channels=[32, 32], unet_layers=1, unet_heads=2, text_width=32,
            text_layers=1, text_heads=2, vae_batch_size=8, batch_size=8, warmup_steps=2, checkpoint_every=2,
            progress=False, threads=1, max_train_images=64)


def _cfg(tmp_path, name="run", **kw):
    return tl.LdmTrainConfig(output=str(tmp_path / name), **{**TINY, "vae_steps": 4, "max_steps": 4, **kw})


def _weights(folder):
    from safetensors.torch import load_file

    return {f"{c}.{k}": v for c in ("vae", "unet", "text_encoder")
            for k, v in load_file(str(next((folder / c).glob("*.safetensors")))).items()}


def test_captions_and_tokenizer(tmp_path):
    assert class_prompt(7) == "a handwritten seven"
    assert len(captions_for(3)) == len(CAPTION_TEMPLATES) and "the digit 3" in captions_for(3)
    tok = build_tokenizer(tmp_path / "tok")
    for word in caption_words():  # every caption word is one token between <|startoftext|> and <|endoftext|>
        ids = tok(word).input_ids
        assert len(ids) == 3 and tok.convert_ids_to_tokens(ids[1]) == word + "</w>", word
    ids = tok("a handwritten seven", padding="max_length", max_length=tok.model_max_length).input_ids
    assert len(ids) == 16 and tok.decode(ids, skip_special_tokens=True).strip() == "a handwritten seven"
    # words outside the captions still tokenize (as pieces)
    assert tok.decode(tok("a zebra").input_ids, skip_special_tokens=True).replace(" ", "") == "azebra"
    assert len(set(DIGIT_WORDS)) == 10


def test_digit_padding_round_trip():
    import numpy as np

    img = np.random.default_rng(0).integers(0, 256, (2, 1, 28, 28), dtype=np.uint8)
    x = digits_to_rgb32(img)
    assert x.shape == (2, 3, 32, 32) and float(x[..., 0, 0].max()) == -1.0
    torch.testing.assert_close(rgb32_to_digits(x), torch.as_tensor(img).float() / 127.5 - 1)


def test_train_ldm_end_to_end_loads_in_diffusers_and_boomerang(tmp_path):
    from diffusers import StableDiffusionPipeline

    from boomerang.models import load_model

    cfg = _cfg(tmp_path)
    summary = tl.train_ldm(cfg)
    out = tmp_path / "run"
    assert summary["stopped"] == "max_steps" and summary["step"] == 4 and summary["vae_step"] == 4
    info = json.loads((out / "train_config.json").read_text())
    assert info["step"] == 4 and info["command"].startswith("boomerang train-ldm")
    sched = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert (sched["beta_schedule"], sched["beta_start"], sched["beta_end"], sched["num_train_timesteps"]) == (
        "scaled_linear", 0.00085, 0.012, 1000)
    vae_cfg = json.loads((out / "vae" / "config.json").read_text())
    assert vae_cfg["scaling_factor"] != 0.18215  # measured on the training latents
    assert not list(out.rglob("*.bin"))
    pipe = StableDiffusionPipeline.from_pretrained(out, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    img = pipe("a handwritten seven", num_inference_steps=2, generator=torch.Generator().manual_seed(0),
               output_type="pt").images
    assert img.shape == (1, 3, 32, 32) and torch.isfinite(img).all()
    m = load_model(out)
    assert m.kind == "latent" and m.image_channels == 3
    cond, _ = m.encode_prompt("a handwritten seven")
    assert cond.shape == (1, 16, 32)


def test_train_ldm_resume_is_exact_in_both_stages(tmp_path, monkeypatch):
    tl.train_ldm(_cfg(tmp_path, "straight"))
    ref = _weights(tmp_path / "straight")

    calls = {"n": 0}
    real = Stopper.reason

    def stop_after(limit):
        def reason(self):
            calls["n"] += 1
            return "signal" if calls["n"] > limit else real(self)
        return reason

    # killed in stage 1 (after 3 VAE steps), then in stage 2 (after 1 UNet step), then finished
    monkeypatch.setattr(Stopper, "reason", stop_after(3))
    s1 = tl.train_ldm(_cfg(tmp_path, "resumed"))
    assert s1["stage"] == "vae" and s1["stopped"] == "signal" and s1["vae_step"] == 3
    assert not (tmp_path / "resumed" / "unet").exists()
    calls["n"] = 0
    monkeypatch.setattr(Stopper, "reason", stop_after(2))  # 1 remaining VAE step + 1 UNet step
    s2 = tl.train_ldm(_cfg(tmp_path, "resumed", resume=True))
    assert s2["stage"] == "unet" and s2["stopped"] == "signal" and s2["step"] == 1
    monkeypatch.setattr(Stopper, "reason", real)
    s3 = tl.train_ldm(_cfg(tmp_path, "resumed", resume=True))
    assert s3["step"] == 4 and s3["vae_step"] == 4 and s3["stopped"] == "max_steps"
    got = _weights(tmp_path / "resumed")
    assert got.keys() == ref.keys()
    for k in ref:
        assert torch.equal(got[k], ref[k]), k


def test_train_ldm_refuses_bad_settings_and_clobbering(tmp_path):
    with pytest.raises(ValueError, match="--unet-channels"):
        tl.train_ldm(_cfg(tmp_path, unet_channels=[48, 64]))
    with pytest.raises(ValueError, match="--data"):
        tl.train_ldm(_cfg(tmp_path, data="digits"))
    with pytest.raises(ValueError, match="--resume"):
        tl.train_ldm(_cfg(tmp_path, "none", resume=True))
    tl.train_ldm(_cfg(tmp_path, "once", vae_steps=1, max_steps=1))
    with pytest.raises(ValueError, match="--resume"):
        tl.train_ldm(_cfg(tmp_path, "once", vae_steps=1, max_steps=1))
    with pytest.raises(ValueError, match="different settings"):
        tl.train_ldm(_cfg(tmp_path, "once", vae_steps=1, max_steps=2, lr=5e-4, resume=True))


def test_cli_train_ldm_flags(tmp_path, capsys):
    from boomerang.cli import main

    assert main(["train-ldm", "--output", str(tmp_path / "x"), "--kl-weight", "-1", "--no-progress"]) == 2
    assert "--kl-weight" in capsys.readouterr().err
    assert main(["train-ldm", "--help"]) == 0
    assert "--empty-caption-fraction" in capsys.readouterr().out
