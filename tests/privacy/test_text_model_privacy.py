"""Calibration and verification with a text model and per-item prompts (the tiny SD-shaped model, whose
scaled-linear schedule keeps sqrt(alpha_bar_999) = 0.068 of the input at level 1, as SD 1.x)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from boomerang.cli import main
from boomerang.errors import SettingError
from boomerang.privacy.calibrate import calibrate_privacy
from boomerang.settings import SampleSettings

FAST = ["--steps", "2", "--scheduler", "ddim", "--no-progress", "--threads", "1", "--guidance-scale", "1"]


@pytest.fixture
def captioned(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    rng = np.random.default_rng(3)
    rows = []
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(inp / f"p{i}.png")
        rows.append({"file_name": f"p{i}.png", "caption": ["a cat", "a person"][i % 2]})
    (inp / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return inp


def test_report_records_the_signal_a_level_keeps_on_a_model_that_keeps_signal(captioned, tiny_sd_dir, tmp_path):
    out = tmp_path / "out"
    assert main(["anonymise", str(captioned), "--level", "0.7,1", "--out", str(out), "--model", str(tiny_sd_dir),
                 "--prompt-template", "a photo of {caption}", *FAST]) == 0
    kept = json.loads((out / ".job" / "report.json").read_text())["signal_kept"]
    assert [k["level"] for k in kept] == [0.7, 1.0] and [k["timestep"] for k in kept] == [699, 999]
    assert kept[0]["signal_kept"] == pytest.approx(0.2883, abs=1e-3)
    assert kept[1]["signal_kept"] == pytest.approx(0.0683, abs=1e-3)  # level 1 still holds 6.8% of the latent


def test_verify_and_calibrate_with_per_item_prompts(captioned, tiny_sd_dir, tmp_path):
    out = tmp_path / "v"
    assert main(["anonymise", str(captioned), "--level", "0.5", "--out", str(out), "--model", str(tiny_sd_dir),
                 "--prompt-template", "a photo of {caption}", "--verify-top", "2", "--max-level", "0.6", *FAST]) == 0
    v = json.loads((out / ".job" / "report.json").read_text())["verification"]
    assert v["released"] + v["withheld"] == 6
    settings = SampleSettings(model=str(tiny_sd_dir), scheduler="ddim", steps=2, guidance_scale=1.0)
    cal = calibrate_privacy(captioned, 0.5, sources=6, settings=settings, prompt_template="a photo of {caption}",
                            bisections=1)
    assert cal.probes[0].level == 1.0 and cal.probes[0].sqrt_alpha_bar == pytest.approx(0.0683, abs=1e-3)
    assert cal.n_sources == 6 and cal.num_candidates == 6
    with pytest.raises(SettingError, match="label"):
        calibrate_privacy(captioned, 0.5, sources=6, settings=settings, prompt_template="a photo of a {label}")


def test_signal_kept_is_sqrt_alpha_bar_or_one_minus_sigma():
    from boomerang.levels import NoisePlan

    assert NoisePlan(0.0, None, (), 1000, alpha_bar=1.0).signal_kept == 1.0  # the identity
    assert NoisePlan(0.5, 499, (499,), 1000, alpha_bar=0.25).signal_kept == pytest.approx(0.5)
    assert NoisePlan(0.5, 500.0, (500.0,), 1000, sigma=0.8).signal_kept == pytest.approx(0.2)  # flow: 1 - sigma
    assert NoisePlan(1.0, 999, (999,), 1000, schedule="global", sigma=1.0).signal_kept == 0.0  # from noise
    assert NoisePlan(1.0, 999, (999,), 1000, schedule="global").signal_kept == 0.0


def test_flow_model_report_and_calibration_give_one_minus_sigma(captioned, tiny_sd3_dir, tmp_path):
    """A flow-matching model (SD3-shaped, x_t = (1 - sigma) x0 + sigma eps) keeps 1 - sigma of its input:
    anonymise's report says so and calibrate-privacy probes it (the plan's model timestep is T sigma)."""
    out = tmp_path / "out"
    assert main(["anonymise", str(captioned), "--level", "0.5,1", "--out", str(out), "--model", str(tiny_sd3_dir),
                 "--prompt-template", "a photo of {caption}", "--steps", "2", "--no-progress", "--threads", "1"]) == 0
    kept = json.loads((out / ".job" / "report.json").read_text())["signal_kept"]
    assert [k["level"] for k in kept] == [0.5, 1.0]
    for k in kept:
        assert k["signal_kept"] == pytest.approx(1.0 - k["timestep"] / 1000, abs=1e-6)
    assert 0.0 < kept[0]["signal_kept"] < 0.5 and kept[1]["signal_kept"] < kept[0]["signal_kept"]
    cal = calibrate_privacy(captioned, 0.5, sources=6, settings=SampleSettings(model=str(tiny_sd3_dir), steps=2),
                            prompt_template="a photo of {caption}", bisections=0)
    assert cal.probes[0].level == 1.0
    assert cal.probes[0].sqrt_alpha_bar == pytest.approx(kept[1]["signal_kept"], abs=1e-6)
