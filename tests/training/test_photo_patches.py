"""`boomerang train --data photos`: the held-out photos never reach a training batch, patches are
seeded by the step alone, gray photos are luminance, and a photo run resumes exactly."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("skimage")
pytest.importorskip("sklearn")

from boomerang.training import photos  # noqa: E402
from boomerang.training.ddpm import TrainConfig, train  # noqa: E402


@pytest.fixture(scope="module")
def train_photos():
    return photos.training_photos()


@pytest.fixture(scope="module")
def held_out():
    return photos.held_out_photos()


def test_held_out_list_is_fixed_and_has_colour_and_gray(held_out):
    assert photos.HELD_OUT == ("chelsea", "coffee", "camera")
    assert sum(not p.gray for p in held_out) >= 2 and sum(p.gray for p in held_out) >= 1


def test_no_held_out_photo_is_trained_on_under_any_name(train_photos, held_out):
    names = {p.name for p in train_photos}
    assert not names & set(photos.HELD_OUT)
    assert "cat" not in names  # skimage's cat is chelsea again
    held = {p.digest for p in held_out}
    assert not held & {p.digest for p in train_photos}


def test_the_sampler_only_draws_from_training_photos(train_photos, held_out):
    s = photos.PatchSampler(None, 16, seed=0)
    assert [p.digest for p in s.photos] == [p.digest for p in train_photos]
    assert abs(s.photo_p.sum() - 1) < 1e-9 and (s.photo_p > 0).all()


def test_a_held_out_patch_never_appears_in_a_batch(held_out):
    """Exact 16x16 crops of the held-out photos at scale 1 vs every scale-1 patch of 20 batches
    (without jitter the match would be exact; the point is that the source list excludes them)."""
    s = photos.PatchSampler(None, 16, seed=3)
    batches = torch.cat([s.batch(k, 32) for k in range(20)])
    assert batches.shape == (640, 3, 16, 16)
    for h in held_out:
        crop = torch.from_numpy(h.pixels[:16, :16].astype(np.float32) / 127.5 - 1).permute(2, 0, 1)
        assert (batches - crop).abs().amax(dim=(1, 2, 3)).min() > 0.02


def test_batches_depend_on_seed_and_step_only():
    a, b = photos.PatchSampler(None, 16, seed=0), photos.PatchSampler(None, 16, seed=0)
    assert torch.equal(a.batch(7, 8), b.batch(7, 8))
    a.batch(8, 8)  # what ran before does not matter
    assert torch.equal(a.batch(7, 8), b.batch(7, 8))
    assert not torch.equal(a.batch(7, 8), a.batch(6, 8))
    assert not torch.equal(a.batch(7, 8), photos.PatchSampler(None, 16, seed=1).batch(7, 8))
    x = a.batch(3, 16)
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1


def test_gray_photos_are_luminance_in_three_equal_channels():
    gray = [photos.load_photo("brick")]
    s = photos.PatchSampler(gray, 16, seed=0)
    x = s.batch(0, 8)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])
    colour = photos.PatchSampler([photos.load_photo("astronaut")], 16, seed=0).batch(0, 8)
    assert not torch.equal(colour[:, 0], colour[:, 1])


def _cfg(out, **kw) -> TrainConfig:
    base = dict(data="photos", output=str(out), image_size=16, channels=[8, 16], attention=[0, 0], mid_attention=0,
                norm_groups=4, batch_size=4, max_steps=4, checkpoint_every=2, warmup_steps=2, threads=1,
                progress=False)
    base.update(kw)
    return TrainConfig(**base)


def test_photo_run_is_fully_convolutional_records_its_split_and_resumes_exactly(tmp_path):
    from safetensors.torch import load_file

    from boomerang.models import read_model_info
    from boomerang.fileio import read_json

    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train(_cfg(whole))
    train(_cfg(parts, max_steps=2))
    train(_cfg(parts, max_steps=4, resume=True))
    w = lambda f: load_file(str(pathlib.Path(f) / "unet" / "diffusion_pytorch_model.safetensors"))  # noqa: E731
    a, b = w(whole), w(parts)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    info = read_model_info(whole)
    assert info.image_channels == 3 and info.native_size is None and info.size_multiple == 2
    split = read_json(whole / "split.json")
    assert [r["name"] for r in split["held_out"]] == list(photos.HELD_OUT)
    assert not {r["name"] for r in split["train"]} & set(photos.HELD_OUT)
    with pytest.raises(ValueError, match="mid_attention"):
        train(_cfg(parts, max_steps=6, resume=True, mid_attention=1))


def test_the_bundled_photo_model_card_lists_the_held_out_photos_and_it_runs_at_any_size():
    from boomerang import assets
    from boomerang.fileio import read_json
    from boomerang.models import read_model_info

    folder = assets.named_model_path(assets.PHOTO_MODEL_NAME)
    split = read_json(folder / "split.json")
    assert [r["name"] for r in split["held_out"]] == list(photos.HELD_OUT)
    assert not {r["name"] for r in split["train"]} & {*photos.HELD_OUT, "cat"}
    held = {p.name: p.digest for p in photos.held_out_photos()}
    assert {r["name"]: r["sha256"] for r in split["held_out"]} == held
    assert not set(held.values()) & {r["sha256"] for r in split["train"]}
    card = (folder / "README.md").read_text()
    assert all(f"| {n} |" in card for n in photos.HELD_OUT)
    info = read_model_info("ddpm-photos")
    assert (info.image_channels, info.native_size, info.size_multiple) == (3, None, 8)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size < 8_000_000, size
