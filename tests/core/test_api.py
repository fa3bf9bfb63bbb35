"""The high-level Python API (boomerang.sample / boomerang.load), settings, metrics, sheets."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

import boomerang
from boomerang.api import DEFAULT_LEVEL, SampleSettings, auto_batch_size


def _img(size=(12, 10), seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0]), dtype=np.uint8))


# --------------------------------------------------------------------------- settings (torch-free)


def test_settings_defaults_and_normalisation():
    s = SampleSettings()
    assert s.level == (DEFAULT_LEVEL,) and s.timestep is None
    assert (s.num_samples, s.seed, s.steps, s.scheduler, s.schedule) == (4, 0, 50, "ddpm", "exact")
    assert (s.eta, s.guidance_scale, s.device, s.dtype, s.batch_size) == (0.0, 7.5, "cpu", "float32", None)
    assert SampleSettings(level="0.2, 0.5,0.8").level == (0.2, 0.5, 0.8)
    assert SampleSettings(level=[0, 1]).level == (0.0, 1.0)
    assert SampleSettings(timestep="3,300").timestep == (3, 300) and SampleSettings(timestep=3).level is None
    assert SampleSettings(num_samples="8", steps="15").num_samples == 8
    assert SampleSettings(background="#000000").background_rgb == (0, 0, 0)
    d = SampleSettings().to_dict()
    assert d["level"] == [DEFAULT_LEVEL] and d["background_rgb"] == [255, 255, 255]


@pytest.mark.parametrize(
    "kw",
    [
        dict(level=math.nan), dict(level=-0.1), dict(level=1.5), dict(level="0.2,,0.3"), dict(level=[0.3, 0.3001]),
        dict(level=0.3, timestep=3), dict(timestep=-1), dict(timestep=1.5), dict(steps=0), dict(num_samples=0),
        dict(batch_size=0), dict(seed=-1), dict(seed=1.5), dict(eta=-1), dict(eta=math.inf),
        dict(guidance_scale=math.nan), dict(dtype="float64"), dict(device="tpu"), dict(schedule="fast"),
        dict(background="not-a-colour"),
    ],
)
def test_settings_reject_bad_values(kw):
    with pytest.raises(ValueError):
        SampleSettings(**kw)


def test_auto_batch_size():
    assert auto_batch_size(1) == 1 and auto_batch_size(7) == 7 and auto_batch_size(100) == 16


def test_lazy_exports_do_not_import_torch():
    import subprocess
    import sys

    code = "import sys, boomerang; boomerang.sample; boomerang.load; boomerang.SampleSettings; assert 'torch' not in sys.modules"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


# --------------------------------------------------------------------------- metrics and sheets


def test_metrics_use_scikit_image_values():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from boomerang.metrics import image_distance

    a, b = np.asarray(_img(seed=1)), np.asarray(_img(seed=2))
    d = image_distance(a, b)
    fa, fb = a / 255.0, b / 255.0
    assert d["mse"] == pytest.approx(np.mean((fa - fb) ** 2))
    assert d["psnr"] == pytest.approx(peak_signal_noise_ratio(fb, fa, data_range=1.0))
    assert d["ssim"] == pytest.approx(structural_similarity(fb, fa, data_range=1.0))
    same = image_distance(a, a)
    assert same == {"mse": 0.0, "psnr": None, "ssim": 1.0}
    assert image_distance(np.zeros((2, 2)), np.ones((2, 2)))["ssim"] is None  # too small for SSIM
    with pytest.raises(ValueError):
        image_distance(a, a[:5])


def test_contact_sheet_layout():
    from boomerang.sheet import contact_sheet, sheet_size, tile_scale

    im = _img((28, 28))
    sheet = contact_sheet(im, [("level 0.200", [im] * 3), ("level 0.500", [im] * 3)])
    assert sheet.size == sheet_size(28, 28, 3, 2)
    k = tile_scale(28, 28)
    assert k == 4 and sheet.size == (4 + 4 * (28 * k + 4), 4 + 2 * (16 + 28 * k + 4))
    assert tile_scale(640, 427) == 1
    with pytest.raises(ValueError):
        contact_sheet(im, [("a", [im]), ("b", [im, im])])


# --------------------------------------------------------------------------- sampling through the API


def test_sample_returns_pil_images_of_the_input_size(tiny_pixel_dir):
    out = boomerang.sample(_img((12, 10)), model=str(tiny_pixel_dir), level=0.3, num_samples=3, steps=4)
    assert len(out) == 3 and all(isinstance(o, Image.Image) and o.size == (12, 10) for o in out)
    assert len({o.tobytes() for o in out}) == 3


def test_sample_from_a_path_with_several_levels(tmp_path, tiny_pixel_dir):
    p = tmp_path / "x.png"
    _img((9, 9)).save(p)
    out = boomerang.sample(p, model=tiny_pixel_dir, level=[0, 0.5], num_samples=2, steps=4)
    assert len(out) == 4
    assert np.array_equal(np.asarray(out[0]), np.asarray(Image.open(p)))  # level 0: the input, exactly
    assert np.array_equal(np.asarray(out[1]), np.asarray(Image.open(p)))


def test_loaded_model_and_path_give_the_same_samples(tiny_pixel_dir):
    im = _img()
    model = boomerang.load(tiny_pixel_dir)
    a = boomerang.sample(im, model=model, level=0.4, num_samples=2, steps=4, seed=3)
    b = boomerang.sample(im, model=str(tiny_pixel_dir), level=0.4, num_samples=2, steps=4, seed=3, batch_size=1)
    c = boomerang.sample(im, model=model, level=0.4, num_samples=2, steps=4, seed=4)
    assert [x.tobytes() for x in a] == [x.tobytes() for x in b]
    assert [x.tobytes() for x in a] != [x.tobytes() for x in c]


def test_prepare_reads_every_input_before_loading(tmp_path, tiny_pixel_dir, monkeypatch):
    from boomerang import api, imageio

    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(imageio.ImageInputError, match="bad.png"):
        api.prepare([_img(), bad], SampleSettings(model=str(tiny_pixel_dir)))
    job = api.prepare([_img(), _img((5, 7))], SampleSettings(model=str(tiny_pixel_dir), num_samples=3))
    assert len(job.inputs) == 2 and len(job.outputs) == 6 and job.model is None


def test_timestep_out_of_range_for_the_model(tiny_pixel_dir):
    from boomerang.models import read_model_info

    T = read_model_info(tiny_pixel_dir).num_train_timesteps
    with pytest.raises(ValueError, match=r"\[0, %d\]" % (T - 1)):
        boomerang.sample(_img(), model=tiny_pixel_dir, timestep=T)


def test_auto_batch_size_is_memory_aware(tiny_pixel_model):
    from boomerang.api import AUTO_BATCH_MAX_CUDA, estimate_item_bytes

    per = estimate_item_bytes(tiny_pixel_model, (1, 8, 8))
    assert per > 0
    # plenty of memory: the cap; little: what fits in half of it; none: still 1
    assert auto_batch_size(100, "cpu", tiny_pixel_model, (1, 8, 8), available_bytes=10**12) == 16
    assert auto_batch_size(100, "cuda", tiny_pixel_model, (1, 8, 8), available_bytes=10**12) == AUTO_BATCH_MAX_CUDA
    assert auto_batch_size(100, "cpu", tiny_pixel_model, (1, 8, 8), available_bytes=6 * per) == 3
    assert auto_batch_size(100, "cpu", tiny_pixel_model, (1, 8, 8), available_bytes=0) == 1
    # bigger images need more memory per item
    assert estimate_item_bytes(tiny_pixel_model, (1, 16, 16)) > per


def test_prepare_keeps_no_pixels_and_files_and_arrays_give_the_same_samples(tmp_path, tiny_pixel_model):
    from PIL import Image

    from boomerang.api import prepare, run

    rng = np.random.default_rng(0)
    files = []
    for i in range(3):
        files.append(tmp_path / f"in{i}.png")
        Image.fromarray((rng.random((20, 12, 3)) * 255).astype(np.uint8)).save(files[-1])
    kw = dict(level=0.4, steps=3, num_samples=3, batch_size=2, seed=1)
    job = prepare(files, model=tiny_pixel_model, **kw)
    assert all(inp.loaded.pixels.strides == (0, 0, 0) for inp in job.inputs)  # described, not held
    assert [inp.model_shape for inp in job.inputs] == [(8, 8, 1)] * 3
    a = list(run(job))
    b = list(run(prepare([np.asarray(Image.open(f)) for f in files], model=tiny_pixel_model, **kw)))
    assert [(s.image_index, s.sample_index) for s in a] == [(i, j) for i in range(3) for j in range(3)]
    assert [(s.image_index, s.sample_index) for s in a] == [(s.image_index, s.sample_index) for s in b]
    for sa, sb in zip(a, b):
        assert np.array_equal(sa.pixels, sb.pixels) and np.array_equal(sa.reference, sb.reference)
