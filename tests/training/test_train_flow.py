"""``boomerang train-flow``: a tiny run that loads as the SD3 family and in diffusers' own pipeline, exact resume."""

from __future__ import annotations

import json

import pytest
import torch

from boomerang.training import flow as tf
from boomerang.training.loop import Stopper

TINY = dict(layers=1, heads=2, head_dim=16, batch_size=8, warmup_steps=2, checkpoint_every=2, progress=False,
            threads=1, max_train_images=32)


def _cfg(tmp_path, name="run", **kw):
    return tf.FlowTrainConfig(output=str(tmp_path / name), **{**TINY, "max_steps": 4, **kw})


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "transformer" / "diffusion_pytorch_model.safetensors"))


def test_train_flow_end_to_end_loads_as_sd3_in_boomerang_and_diffusers(tmp_path):
    from diffusers import StableDiffusion3Pipeline

    from boomerang.models import load_model
    from boomerang.training.flow_parts import TEXT_TOKENS

    summary = tf.train_flow(_cfg(tmp_path))
    out = tmp_path / "run"
    assert summary["stopped"] == "max_steps" and summary["step"] == 4
    info = json.loads((out / "train_config.json").read_text())
    assert info["step"] == 4 and info["command"].startswith("boomerang train-flow")
    assert json.loads((out / "scheduler" / "scheduler_config.json").read_text())["shift"] == 3.0
    vae = json.loads((out / "vae" / "config.json").read_text())
    assert vae["shift_factor"] is not None and vae["scaling_factor"] > 0 and vae["latent_channels"] == 4
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pt"))

    pipe = StableDiffusion3Pipeline.from_pretrained(out)  # offline: everything is in the folder
    pipe.set_progress_bar_config(disable=True)
    img = pipe("a handwritten seven", height=32, width=32, num_inference_steps=2, guidance_scale=3.0,
               max_sequence_length=TEXT_TOKENS, generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert img.shape == (1, 3, 32, 32) and torch.isfinite(img).all()

    m = load_model(out)
    assert m.info.family == "sd3" and m.sequence_length() == TEXT_TOKENS
    assert m.model_shape((3, 32, 32)) == (4, 8, 8)
    (emb, pooled), (u_emb, u_pooled) = m.encode_prompt("a handwritten seven", guidance_scale=3.0)
    ref = pipe.encode_prompt("a handwritten seven", None, None, do_classifier_free_guidance=True,
                             max_sequence_length=TEXT_TOKENS)
    assert emb.shape == (1, 2 * TEXT_TOKENS, 128)
    for got, want in zip((emb, u_emb, pooled, u_pooled), ref):  # the same embeddings as diffusers builds
        torch.testing.assert_close(got, want)


def test_train_flow_resume_is_exact(tmp_path, monkeypatch):
    tf.train_flow(_cfg(tmp_path, "straight"))
    ref = _weights(tmp_path / "straight")
    calls = {"n": 0}
    real = Stopper.reason

    def reason(self):
        calls["n"] += 1
        return "signal" if calls["n"] > 3 else real(self)

    monkeypatch.setattr(Stopper, "reason", reason)
    first = tf.train_flow(_cfg(tmp_path, "resumed"))
    assert first["stopped"] == "signal" and first["step"] == 3
    monkeypatch.setattr(Stopper, "reason", real)
    second = tf.train_flow(_cfg(tmp_path, "resumed", resume=True))
    assert second["step"] == 4 and second["stopped"] == "max_steps"
    got = _weights(tmp_path / "resumed")
    assert got.keys() == ref.keys()
    for k in ref:
        assert torch.equal(got[k], ref[k]), k
    # a checkpoint exports without touching the run
    meta = tf.export_checkpoint(tmp_path / "resumed", tmp_path / "exported")
    assert meta["step"] == 4
    for k, v in _weights(tmp_path / "exported").items():
        assert torch.equal(v, ref[k]), k


def test_train_flow_refuses_bad_settings_and_clobbering(tmp_path, capsys):
    from boomerang.cli import main

    with pytest.raises(ValueError, match="--patch-size"):
        tf.train_flow(_cfg(tmp_path, patch_size=3))
    with pytest.raises(ValueError, match="--resume"):
        tf.train_flow(_cfg(tmp_path, "none", resume=True))
    with pytest.raises(ValueError, match="--ldm"):
        tf.train_flow(_cfg(tmp_path, ldm=str(tmp_path)))
    tf.train_flow(_cfg(tmp_path, "once", max_steps=1))
    with pytest.raises(ValueError, match="--resume"):
        tf.train_flow(_cfg(tmp_path, "once", max_steps=1))
    with pytest.raises(ValueError, match="different settings"):
        tf.train_flow(_cfg(tmp_path, "once", max_steps=2, lr=1e-4, resume=True))
    assert main(["train-flow", "--output", str(tmp_path / "x"), "--batch-size", "0", "--no-progress"]) == 2
    assert "--batch-size" in capsys.readouterr().err
    assert main(["train-flow", "--help"]) == 0
    assert "--empty-caption-fraction" in capsys.readouterr().out
