"""Without --model the model is chosen from the inputs: small gray images -> the digit model
(unchanged: settings.model stays None), anything else -> the photo model, which is fully
convolutional (runs at the input's own size) and gives gray inputs back gray.

A tiny random fully convolutional colour model stands in for the photo model (``asset_dir``)."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from boomerang import assets  # noqa: E402
from boomerang.default_model import DIGIT_MAX_SIDE, choose_default_model, is_small_gray  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
DIGIT = ROOT / "examples" / "digits" / "7.png"


@pytest.fixture(scope="module")
def tiny_photo_dir(tmp_path_factory):
    from boomerang.testing.tiny import make_tiny_pixel_model

    return make_tiny_pixel_model(tmp_path_factory.mktemp("models") / "ddpm-photos", channels=3,
                                 fully_convolutional=True)


@pytest.fixture
def photo_model(monkeypatch, tiny_photo_dir):
    real = assets.asset_dir
    monkeypatch.setattr(assets, "asset_dir", lambda n: tiny_photo_dir if n == assets.PHOTO_MODEL_NAME else real(n))
    return tiny_photo_dir


@pytest.fixture
def no_photo_model(monkeypatch, tmp_path):
    real = assets.asset_dir
    monkeypatch.setattr(assets, "asset_dir", lambda n: tmp_path / "absent" if n == assets.PHOTO_MODEL_NAME else real(n))


def _png(path, array):
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    colour = _png(tmp_path / "colour.png", rng.integers(0, 256, (25, 35, 3)))  # odd sides: padded, cropped back
    gray = _png(tmp_path / "gray.png", rng.integers(0, 256, (70, 90)))  # gray but larger than a digit
    rgb_gray = _png(tmp_path / "rgb_gray.png", np.repeat(rng.integers(0, 256, (20, 20, 1)), 3, axis=2))
    return colour, gray, rgb_gray


def test_small_gray_means_one_channel_or_equal_channels_and_small(photos):
    colour, gray, rgb_gray = photos
    assert is_small_gray(DIGIT) and is_small_gray(rgb_gray)
    assert not is_small_gray(colour) and not is_small_gray(gray)
    assert is_small_gray(np.zeros((DIGIT_MAX_SIDE, DIGIT_MAX_SIDE))) and not is_small_gray(np.zeros((8, DIGIT_MAX_SIDE + 1)))


def test_the_rule(photos, photo_model):
    colour, gray, rgb_gray = photos
    assert choose_default_model([DIGIT, rgb_gray]).model is None  # the bundled digit model, as before
    assert choose_default_model([]).model is None
    for mix in ([colour], [DIGIT, gray], [gray]):
        c = choose_default_model(mix)
        assert (c.name, c.model) == ("ddpm-photos", "ddpm-photos") and "ddpm-mnist5k" in c.reason


def test_without_the_photo_model_the_digit_model_is_used_and_the_reason_says_so(photos, no_photo_model):
    c = choose_default_model([photos[0]])
    assert c.model is None and "not installed" in c.reason


def test_pixel_unet_without_attention_has_no_native_size(tiny_photo_dir, tiny_pixel_dir):
    from boomerang.models import read_model_info

    info = read_model_info(tiny_photo_dir)
    assert (info.native_size, info.size_multiple, info.image_channels) == (None, 2, 3)
    assert read_model_info(tiny_pixel_dir).native_size == 8  # attention in the middle block: native size


def test_sample_without_model_on_photos_keeps_size_and_mode(photos, photo_model, tmp_path, capsys):
    from boomerang.cli import main

    colour, gray, _ = photos
    out = tmp_path / "out"
    assert main(["sample", str(colour), str(gray), "--out", str(out), "--level", "0,0.3", "--steps", "2",
                 "--num-samples", "1"]) == 0
    err = capsys.readouterr().err
    assert "no --model given: using ddpm-photos" in err
    for name, size, mode in (("colour", (35, 25), "RGB"), ("gray", (90, 70), "L")):
        for level in ("0.000", "0.300"):
            with Image.open(out / name / f"level{level}_s000.png") as im:
                assert (im.size, im.mode) == (size, mode), (name, level)
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["default_model"]["model"] == "ddpm-photos" and meta["model"]["id"] == "ddpm-photos"
    assert meta["model"]["native_size"] is None and meta["settings"]["model"] == "ddpm-photos"
    with Image.open(gray) as src, Image.open(out / "gray" / "level0.000_s000.png") as same:
        assert np.array_equal(np.asarray(src), np.asarray(same))  # level 0: the gray input itself


def test_sample_without_model_on_digits_keeps_the_digit_model(photo_model, tmp_path, capsys):
    from boomerang.cli import main

    out = tmp_path / "out"
    assert main(["sample", str(DIGIT), "--out", str(out), "--level", "0.2", "--steps", "2", "--num-samples", "1"]) == 0
    assert "using ddpm-mnist5k" in capsys.readouterr().err
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["settings"]["model"] is None and meta["default_model"]["model"] == "ddpm-mnist5k"
    assert meta["model"]["native_size"] == 28


def test_enhance_without_model_on_a_photo_folder(photos, photo_model, tmp_path):
    from boomerang.cli import main

    inp = tmp_path / "in"
    inp.mkdir()
    for p in photos[:2]:
        (inp / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "enh"
    assert main(["enhance", str(inp), "--out", str(out), "--scale", "2", "--level", "0.2", "--steps", "2",
                 "--consistency"]) == 0
    with Image.open(out / "colour.png") as a, Image.open(out / "gray.png") as b:
        assert (a.size, a.mode, b.size, b.mode) == ((70, 50), "RGB", (180, 140), "L")
    assert json.loads((out / "report.json").read_text())["default_model"]["model"] == "ddpm-photos"


def _is_small_gray_by_full_read(source) -> bool:
    """The rule as first written: decode every small file completely to float RGB, then look."""
    from boomerang import imageio

    try:
        loaded = imageio.read_image(source)
    except ValueError:
        return False
    px = loaded.pixels
    return max(loaded.size) <= DIGIT_MAX_SIDE and (loaded.is_grayscale or bool(
        (px[..., 0] == px[..., 1]).all() and (px[..., 1] == px[..., 2]).all()))


def test_the_one_decode_check_agrees_with_a_full_read_on_every_kind_of_file(tmp_path, photos):
    """Files are decoded once without float pixels (L/LA are gray as decoded): the same answer as a
    full read, for damaged, palette, 16-bit, ICC, alpha, EXIF-rotated and CMYK files."""
    from PIL import Image as PILImage

    cases = ROOT / "tests" / "data" / "cases"
    la = tmp_path / "la.png"
    PILImage.fromarray(np.zeros((9, 7, 2), np.uint8), "LA").save(la)
    cut = tmp_path / "cut.png"
    cut.write_bytes(DIGIT.read_bytes()[:-40])  # a gray PNG cut short: unreadable, so not gray
    pal_gray = tmp_path / "pal_gray.png"
    PILImage.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).convert("P").save(pal_gray)
    files = [*sorted(cases.iterdir()), *photos, DIGIT, la, cut, pal_gray, tmp_path / "missing.png"]
    got = {f.name: is_small_gray(f) for f in files}
    assert got == {f.name: _is_small_gray_by_full_read(f) for f in files}
    assert got["cut.png"] is False and got["la.png"] is True and got["7.png"] is True


def test_unreadable_inputs_are_left_out_of_the_choice(photos, photo_model, tmp_path):
    """A dataset job skips files that do not decode; they must not make digits go to the photo model
    (found by a new-user trial: a truncated JPEG among the example digits picked ddpm-photos)."""
    import shutil

    from _helpers import CASES

    bad = [CASES / n for n in ("truncated.jpg", "empty.png", "not_an_image.png")]
    assert all(p.is_file() for p in bad)
    c = choose_default_model([DIGIT, *bad])
    assert c.model is None and c.name == "ddpm-mnist5k" and "readable" in c.reason
    assert choose_default_model([*bad, photos[0]]).model == "ddpm-photos"  # a readable colour input still counts
    assert not is_small_gray(bad[0])  # the public predicate: unreadable is not gray

    from boomerang.cli import main

    digits = tmp_path / "digits"
    digits.mkdir()
    shutil.copy(DIGIT, digits / "7.png")
    shutil.copy(bad[0], digits / "truncated.jpg")
    out = tmp_path / "aug"
    rc = main(["augment", str(digits), "--level", "0.2", "--samples-per-image", "1", "--steps", "2", "--out", str(out)])
    assert rc == 3  # finished with a skipped file
    report = (out / "report.json").read_text()
    assert json.loads(report)["default_model"]["model"] == "ddpm-mnist5k" and "truncated.jpg" in report
