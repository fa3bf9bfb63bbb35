"""The bundled diffusion model, the reference classifier and the example digits."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from boomerang.assets import classifier_path, default_model_path

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "digits"
MB = 1024 * 1024


def _size(folder: pathlib.Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _no_pickles(folder: pathlib.Path) -> None:
    for pattern in ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle"):
        assert not list(folder.rglob(pattern)), f"pickle weights in {folder}: {pattern}"


def test_bundled_model_layout_size_and_card():
    p = default_model_path()
    for name in ("model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                 "scheduler/scheduler_config.json", "split.json", "train_config.json", "README.md"):
        assert (p / name).is_file(), name
    assert not (p / "checkpoint.safetensors").exists(), "the training checkpoint must not be bundled"
    _no_pickles(p)
    assert _size(p) <= 25 * MB
    card = (p / "README.md").read_text()
    for word in ("boomerang train", "split", "seed", "wall time", "steps"):
        assert word.lower() in card.lower(), word
    info = json.loads((p / "train_config.json").read_text())
    assert info["config"]["data"] == "mnist5k" and info["step"] > 0


def test_bundled_model_loads_with_diffusers_and_denoises(monkeypatch):
    torch = pytest.importorskip("torch")
    from diffusers import DDPMPipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipe = DDPMPipeline.from_pretrained(default_model_path(), use_safetensors=True)
    unet = pipe.unet.eval()
    assert unet.config.sample_size == 28 and unet.config.in_channels == 1
    assert pipe.scheduler.config.num_train_timesteps == 1000
    # A trained eps-model predicts the noise it is given far better than chance (MSE 1).
    from boomerang.data import load_dataset, load_split

    ds = load_dataset("mnist5k")
    test = load_split(default_model_path() / "split.json")["test"][:32]
    x0 = torch.from_numpy(ds.images[test]).float() / 127.5 - 1
    g = torch.Generator().manual_seed(0)
    eps = torch.randn(x0.shape, generator=g)
    t = torch.full((len(x0),), 300)
    x_t = pipe.scheduler.add_noise(x0, eps, t)
    with torch.no_grad():
        mse = float(((unet(x_t, t).sample - eps) ** 2).mean())
    assert mse < 0.2, mse


def test_classifier_asset_size_card_and_split():
    p = classifier_path()
    for name in ("config.json", "model.safetensors", "metrics.json", "README.md"):
        assert (p / name).is_file(), name
    _no_pickles(p)
    assert (p / "model.safetensors").stat().st_size <= 2 * MB
    m = json.loads((p / "metrics.json").read_text())
    assert m["test_accuracy"] >= 0.97
    assert "boomerang train-classifier" in (p / "README.md").read_text()
    # Trained on the same split as the diffusion model.
    a = json.loads((p / "split.json").read_text())
    b = json.loads((default_model_path() / "split.json").read_text())
    assert a["train"] == b["train"] and a["test"] == b["test"]


def test_classifier_classifies_the_example_digits():
    torch = pytest.importorskip("torch")
    from PIL import Image

    from boomerang.classifier import load_classifier

    clf = load_classifier()
    files = sorted(EXAMPLES.glob("*.png"))
    assert len(files) >= 5
    x = torch.stack([torch.from_numpy(np.asarray(Image.open(f).convert("L"), dtype=np.float32)) for f in files])
    x = (x / 127.5 - 1)[:, None]
    with torch.no_grad():
        pred = clf(x).argmax(1).tolist()
        feats = clf.features(x)
    assert pred == [int(f.stem) for f in files]
    assert feats.shape == (len(files), 128)
    # The documented range matters: an inverted image is not read as the same digit set.
    with torch.no_grad():
        assert clf(-x).argmax(1).tolist() != pred


def test_classifier_rejects_wrong_shape():
    torch = pytest.importorskip("torch")
    from boomerang.classifier import load_classifier

    clf = load_classifier()
    with pytest.raises(ValueError, match=r"\[B, 1, 28, 28\]"):
        clf(torch.zeros(2, 28, 28))


def test_example_digits_are_real_test_split_images():
    from PIL import Image

    from boomerang.data import load_dataset

    src = json.loads((EXAMPLES / "sources.json").read_text())
    split = json.loads((default_model_path() / "split.json").read_text())
    ds = load_dataset("mnist5k")
    for name, info in src.items():
        im = np.asarray(Image.open(EXAMPLES / name))
        assert im.shape == (28, 28) and im.dtype == np.uint8
        assert info["index"] in split["test"]
        assert np.array_equal(im, ds.images[info["index"], 0])
        assert ds.labels[info["index"]] == int(pathlib.Path(name).stem)
