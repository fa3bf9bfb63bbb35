"""Level 0 on a pixel model writes the input itself: an 8-bit gray file at the model's size is read
as uint8 (``imageio.read_for_identity``) instead of float and back. The bytes written must be the
ones the float path writes, for every 8-bit value, both channel counts and whole jobs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from boomerang import imageio
from boomerang.metrics import quantize8
from boomerang.tasks import JobSettings, Task
from boomerang.tasks.job import NoOptions


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("native", [16, None])
def test_every_8bit_value_is_written_as_the_float_path_writes_it(tmp_path, channels, native):
    src = tmp_path / "all.png"
    Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16), "L").save(src)
    loaded, ref, fitted = imageio.read_for_model(src, channels=channels, native_size=native)
    fast = imageio.read_for_identity(src, channels=channels, native_size=native)
    assert fast is not None
    f_loaded, f_ref, f_fitted = fast
    assert f_ref.dtype == np.uint8 and f_ref.shape == ref.shape
    assert np.array_equal(quantize8(ref), f_ref)
    # the files written from either reference are byte-identical
    imageio.save_image(ref, tmp_path / "float.png")
    imageio.save_image(f_ref, tmp_path / "u8.png")
    assert (tmp_path / "float.png").read_bytes() == (tmp_path / "u8.png").read_bytes()
    # so is the reduction to one channel that a colour model's gray input gets (sample_block)
    imageio.save_image(ref[..., :1], tmp_path / "float1.png")
    imageio.save_image(f_ref[..., :1], tmp_path / "u81.png")
    assert (tmp_path / "float1.png").read_bytes() == (tmp_path / "u81.png").read_bytes()
    assert (f_fitted.method, f_fitted.original_size, f_fitted.pixels.shape) == (
        fitted.method, fitted.original_size, fitted.pixels.shape)
    for field in ("size", "bit_depth", "is_grayscale", "name", "path", "source_mode", "had_alpha", "icc_profile"):
        assert getattr(f_loaded, field) == getattr(loaded, field), field


def test_other_files_are_left_to_the_float_path(tmp_path):
    rng = np.random.default_rng(0)
    cases = {
        "rgb.png": Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), "RGB"),
        "la.png": Image.fromarray(rng.integers(0, 256, (16, 16, 2), dtype=np.uint8), "LA"),
        "wrong_size.png": Image.fromarray(rng.integers(0, 256, (12, 16), dtype=np.uint8), "L"),
        "palette.png": Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), "L").convert("P"),
    }
    for name, img in cases.items():
        img.save(tmp_path / name)
        assert imageio.read_for_identity(tmp_path / name, channels=1, native_size=16) is None, name
    cut = tmp_path / "cut.png"
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), "L").save(buf, "PNG")
    cut.write_bytes(buf.getvalue()[:-30])
    # a damaged file is left to the float path, which says why (one message, the float path's)
    assert imageio.read_for_identity(cut, channels=1, native_size=16) is None
    with pytest.raises(imageio.ImageInputError, match="truncated"):
        imageio.read_for_model(cut, channels=1, native_size=16)
    # an orientation to apply (EXIF) and an animated PNG are left to the float path too
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), "L").save(tmp_path / "turned.png", exif=exif)
    assert imageio.read_for_identity(tmp_path / "turned.png", channels=1, native_size=16) is None
    frames = [Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), "L") for _ in range(2)]
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:])
    assert imageio.read_for_identity(tmp_path / "anim.png", channels=1, native_size=16) is None
    # a plain gray PNG at the model's size takes this path
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), "L").save(tmp_path / "plain.png")
    assert imageio.read_for_identity(tmp_path / "plain.png", channels=1, native_size=16) is not None


def _job_files(src: Path, out: Path, model: Path) -> dict[str, bytes]:
    from boomerang.settings import SampleSettings
    from boomerang.tasks.runner import run_job

    rc = run_job(Task(), SampleSettings(level=0.0, num_samples=1, batch_size=3, model=str(model)), NoOptions(),
                 JobSettings(inputs=str(src), out=str(out), progress=False, threads=1))
    assert rc == 3  # done, with the cut file skipped
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and ".job" not in p.parts and p.name != "report.json"}


@pytest.mark.parametrize("model", ["tiny_pixel_dir", "tiny_colour_pixel_dir"])
def test_a_level0_job_writes_the_same_bytes_with_and_without_the_uint8_read(tmp_path, monkeypatch, request, model):
    from boomerang.tasks import block_inputs

    model_dir = request.getfixturevalue(model)
    rng = np.random.default_rng(1)
    src = tmp_path / "in"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    for i in range(5):  # gray at the model's size (8): the uint8 read
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), "L").save(src / "a" / f"g{i}.png")
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), "RGB").save(src / "b" / "rgb.png")
    Image.fromarray(rng.integers(0, 256, (11, 9), dtype=np.uint8), "L").save(src / "b" / "big.png")
    Image.fromarray(rng.integers(0, 256, (8, 8, 2), dtype=np.uint8), "LA").save(src / "b" / "la.png")
    (src / "b" / "cut.png").write_bytes((src / "a" / "g0.png").read_bytes()[:-30])
    exif = Image.Exif()
    exif[0x0112] = 6  # turned: the float path makes it upright
    Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), "L").save(src / "b" / "turned.png", exif=exif)
    Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), "L").save(src / "b" / "gray.jpg", quality=90)
    calls = []
    real = imageio.read_for_identity
    monkeypatch.setattr(imageio, "read_for_identity", lambda *a, **k: calls.append(a) or real(*a, **k))
    fast = _job_files(src, tmp_path / "fast", model_dir)
    assert len(calls) >= 5
    monkeypatch.setattr(block_inputs, "identity_only", lambda job: False)
    slow = _job_files(src, tmp_path / "slow", model_dir)
    assert fast.keys() == slow.keys() and len([k for k in fast if k.endswith(".png")]) == 10
    assert fast == slow
