"""boomerang.studies.privacy_utility, the text arm of benchmarks/privacy_utility.py: captioned sources in, the
real `boomerang anonymise` with the bundled ldm-mnist5k-text, outputs read back as 28x28 digits in the sources'
order; and the rule for reusing an earlier run's unconditional arm."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from PIL import Image

from boomerang.studies import privacy_utility as pt
from boomerang.testing import console_script


def _digits(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 1, 28, 28), np.uint8)
    x[:, :, 6:22, 10:18] = rng.integers(0, 256, (n, 1, 16, 8), dtype=np.uint8)
    return x


def test_captioned_sources_are_an_imagefolder_with_class_captions(tmp_path):
    from boomerang.tasks.layout import scan

    images, labels, idx = _digits(3), np.array([7, 0, 3]), np.array([4012, 5, 77])
    names = pt.write_captioned_sources(tmp_path / "src", images, labels, idx)
    assert names == ["04012.png", "00005.png", "00077.png"]
    rows = [json.loads(line) for line in (tmp_path / "src" / "metadata.jsonl").read_text().splitlines()]
    assert [r["caption"] for r in rows] == ["a handwritten seven", "a handwritten zero", "a handwritten three"]
    assert [r["label"] for r in rows] == [7, 0, 3] and [r["file_name"] for r in rows] == names
    a = np.asarray(Image.open(tmp_path / "src" / "04012.png"))
    assert a.shape == (32, 32) and (a[2:30, 2:30] == images[0, 0]).all() and a.sum() == images[0].sum()
    layout = scan(tmp_path / "src")
    assert layout.kind == "imagefolder" and layout.items[0].caption is not None
    with pytest.raises(ValueError, match="not empty"):
        pt.write_captioned_sources(tmp_path / "src", images, labels, idx)
    with pytest.raises(ValueError, match="differ in length"):
        pt.write_captioned_sources(tmp_path / "other", images, labels[:2], idx)


def test_output_to_digit_undoes_the_padding(tmp_path):
    d = _digits(1)[0, 0]
    rgb = np.repeat(np.pad(d, 2)[..., None], 3, axis=2)
    rgb[..., 0] = np.clip(rgb[..., 0].astype(int) + 3, 0, 255)  # channels differ: the mean is rounded to 8 bits
    Image.fromarray(rgb).save(tmp_path / "o.png")
    x = pt.output_to_digit(tmp_path / "o.png")
    expect = np.rint(rgb.astype(np.float32).mean(axis=2))[2:30, 2:30]
    assert x.shape == (1, 28, 28)
    assert torch.equal(x, torch.from_numpy(expect).float().unsqueeze(0) / 127.5 - 1.0)


def test_command_carries_the_caption_template_and_sampler():
    cmd = pt.anonymise_command("boomerang", "S", "O", "L", [0.0, 0.5, 1.0], model="ldm-mnist5k-text",
                               guidance_scale=3.0, scheduler="ddim", steps=10, threads=1, batch_size=50)
    s = " ".join(cmd)
    assert cmd[:3] == ["boomerang", "anonymise", "S"] and "--level 0,0.5,1" in s
    assert "--prompt-template {caption}" in s and "--guidance-scale 3" in s
    assert "--scheduler ddim --eta 0 --steps 10" in s and "--link-file L" in s and "--batch-size 50" in s
    assert "--eta" not in " ".join(pt.anonymise_command("b", "S", "O", "L", [1.0], model="m", guidance_scale=1,
                                                         scheduler="ddpm", steps=5, threads=1))


def test_release_runs_the_real_command_and_reads_back_every_level(tmp_path):
    """Three digits at level 0 (VAE round trip) and 0.3, two steps: the whole path of the arm."""
    from boomerang.data import load_dataset

    ds = load_dataset("mnist5k")
    sources = np.array([int(np.flatnonzero(ds.labels == c)[0]) for c in (1, 4, 8)])
    args = argparse.Namespace(text_model="ldm-mnist5k-text", prompt_template="{caption}", guidance_scale=3.0,
                              scheduler="ddim", steps=2, threads=1, batch_size=None, quick=True)
    conditions, released, info = pt.release(args, {"ds": ds, "sources": sources}, [0.0, 0.3], exe=console_script())
    assert [c["level"] for c in conditions] == [0.0, 0.3] and set(released) == {"text@0", "text@0.3"}
    x_real = torch.from_numpy(ds.images[sources]).float() / 127.5 - 1.0
    for key, x in released.items():
        assert x.shape == (3, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
        v = (x + 1) * 127.5
        assert (v - torch.round(v)).abs().max() < 1e-4  # on the 8-bit grid
    # in the sources' order: each VAE round trip (level 0, no noise) is nearest its own source
    d = torch.cdist(released["text@0"].flatten(1), x_real.flatten(1))
    assert torch.equal(d.argmin(1), torch.arange(3))
    assert conditions[0]["signal_kept"] == 1.0 and 0 < conditions[1]["signal_kept"] < 1
    assert conditions[1]["signal_kept"] < conditions[1]["signal_kept_unconditional"]  # SD's schedule is noisier
    st = info["settings"]["anonymise"]
    assert st["model"] == "ldm-mnist5k-text" and st["guidance_scale"] == 3.0 and st["steps"] == 2
    assert "--prompt-template '{caption}'" in info["anonymise_command"] and "TMP/src" in info["anonymise_command"]


def test_read_release_refuses_an_unfinished_job(tmp_path):
    (tmp_path / "links.jsonl").write_text(json.dumps({"source": "a.png", "output": "x.png", "level": 0.5}) + "\n")
    with pytest.raises(ValueError, match="no output at level 0.5 for 1 sources"):
        pt.read_release(tmp_path, tmp_path / "links.jsonl", ["a.png", "b.png"], [0.5, 1.0])


def test_reuse_takes_the_unconditional_arm_only_with_the_same_settings(tmp_path):
    # the flags of `privacy_utility.py --quick` that base_settings reads
    args = argparse.Namespace(scheduler="ddim", steps=10, epochs=1, train_batch_size=32, lr=5e-3)
    settings = pt.base_settings(args, 20, 4000, 500, [0.5, 1.0], [0])
    (tmp_path / "r.json").write_text(json.dumps({"settings": {**settings, "model": "m"}, "conditions": [],
                                                 "text_arm": {"old": 1}}))
    assert pt.reuse_unconditional(tmp_path / "r.json", settings)["settings"]["model"] == "m"
    with pytest.raises(ValueError, match=r"its levels, train_epochs differ .*levels=\[0.5, 1.0\]"):
        pt.reuse_unconditional(tmp_path / "r.json", {**settings, "levels": [0.5], "train_epochs": 3})
    assert pt.text_model_setting("none") is None and pt.text_model_setting("None") is None
    assert pt.text_model_setting("ldm-mnist5k-text") == "ldm-mnist5k-text"
