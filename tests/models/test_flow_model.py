"""The bundled flow-matching model ``flow-mnist5k-text`` on its real weights: layout and card, loading by
short name as the SD3 family and in diffusers' own ``StableDiffusion3Pipeline`` offline, the same prompt
embeddings and from-noise samples as that pipeline, the flow level contract, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from boomerang.assets import named_model_path
from boomerang.training.flow_parts import TEXT_TOKENS
from boomerang.training.ldm_parts import digits_to_rgb32

NAME = "flow-mnist5k-text"
MB = 1024 * 1024


@pytest.fixture(scope="module")
def flow():
    from boomerang.models import load_model

    return load_model(NAME)


def test_layout_size_card_and_short_name():
    from boomerang.models import read_model_info

    p = named_model_path(NAME)
    for name in ("model_index.json", "transformer/config.json", "transformer/diffusion_pytorch_model.safetensors",
                 "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors",
                 "text_encoder_2/model.safetensors", "text_encoder_3/model.safetensors",
                 "tokenizer/tokenizer.json", "tokenizer_2/tokenizer.json", "tokenizer_3/tokenizer.json",
                 "scheduler/scheduler_config.json", "split.json", "train_config.json", "README.md"):
        assert (p / name).is_file(), name
    assert not list(p.rglob("*checkpoint*")) and not list(p.rglob("*.bin")) and not list(p.rglob("*.pt"))
    assert sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) <= 25 * MB
    sched = json.loads((p / "scheduler" / "scheduler_config.json").read_text())
    assert sched["_class_name"] == "FlowMatchEulerDiscreteScheduler" and sched["shift"] == 3.0
    card = (p / "README.md").read_text().lower()
    for word in ("boomerang train-flow", "--resume", "caption", "seed", "wall time", "steps",
                 "flow_model_quality", "max_sequence_length"):
        assert word in card, word
    info = read_model_info(NAME)
    assert info.family == "sd3" and info.takes_prompt and info.image_channels == 3 and info.size_multiple == 8
    assert info.default_scheduler == "euler"
    # the same split as every bundled digit model and the judges
    assert (p / "split.json").read_text() == (named_model_path("ldm-mnist5k-text") / "split.json").read_text()


def test_diffusers_pipeline_loads_offline_and_draws_what_boomerang_draws(flow):
    from diffusers import StableDiffusion3Pipeline

    from boomerang.core import boomerang_sample

    pipe = StableDiffusion3Pipeline.from_pretrained(named_model_path(NAME))
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe("a handwritten seven", height=32, width=32, num_inference_steps=8, guidance_scale=3.0,
                  max_sequence_length=TEXT_TOKENS, generator=torch.Generator().manual_seed(3), output_type="pt").images
    ours = boomerang_sample(flow, torch.zeros(1, 3, 32, 32), generators=[torch.Generator().manual_seed(3)],
                            from_noise=True, scheduler="euler", steps=8, prompt="a handwritten seven",
                            guidance_scale=3.0).samples
    torch.testing.assert_close((ours + 1) / 2, theirs.float(), atol=1e-4, rtol=0)


def test_flow_levels_on_a_real_digit(flow):
    from boomerang.core import boomerang_sample
    from boomerang.data import load_dataset, load_split

    ds = load_dataset("mnist5k")
    test = np.asarray(load_split(named_model_path(NAME) / "split.json")["test"])
    x0 = digits_to_rgb32(ds.images[[next(i for i in test if ds.labels[i] == 7)]])
    rt = boomerang_sample(flow, x0, generators=[torch.Generator().manual_seed(0)], level=0.0)
    assert rt.plan.is_identity and rt.plan.start_snr is None
    assert float((rt.samples - x0).abs().mean()) < 0.1  # the VAE round trip
    dist = {}
    for level in (0.2, 1.0):
        o = boomerang_sample(flow, x0, generators=[torch.Generator().manual_seed(0)], level=level, scheduler="euler",
                             steps=20, prompt="a handwritten seven", guidance_scale=3.0)
        assert torch.isfinite(o.samples).all() and o.plan.sigma is not None
        dist[level] = float((o.samples - x0).abs().mean())
    assert o.plan.sigma == 1.0 and o.plan.start_snr == 0.0  # level 1: pure noise, nothing of the input left
    assert dist[0.2] < dist[1.0]


def test_cli_sample_by_short_name(tmp_path):
    from boomerang.cli import main

    from _helpers import DIGIT

    out = tmp_path / "o"
    assert main(["sample", str(DIGIT), "--model", NAME, "--prompt", "a handwritten seven", "--level", "0.3",
                 "--num-samples", "1", "--steps", "10", "--out", str(out)]) == 0
    meta = json.loads((out / "metadata.json").read_text())
    s = meta["samples"][0]
    assert meta["model"]["family"] == "sd3" and s["sigma"] > 0 and s["alpha_bar"] is None and s["start_snr"] > 0
