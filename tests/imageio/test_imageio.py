"""Tests for boomerang.imageio: every input case of ../shared/cases/README.md.

The case files live in tests/data/cases/ (copied from the shared set);
odd_427x640.png is regenerated here (random RGB noise of the same size) to keep
the repository small.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _png import png_chunks  # tests/ is on sys.path (conftest.py)
from boomerang import imageio
from boomerang.imageio import (
    FittedImage,
    ImageInputError,
    check_output_dir,
    fit_for_model,
    list_image_files,
    read_image,
    save_image,
    to_model_channels,
)
from _helpers import no_metadata

CASES = Path(__file__).parents[1] / "data" / "cases"


def case(name: str) -> Path:
    return CASES / name


@pytest.fixture
def odd_png(tmp_path: Path) -> Path:
    """An RGB PNG 427 high x 640 wide, like the shared odd_427x640.png."""
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(427, 640, 3), dtype=np.uint8)
    p = tmp_path / "odd_427x640.png"
    Image.fromarray(arr).save(p)
    return p


# --------------------------------------------------------------------------
# exif_rotate6.jpg
# --------------------------------------------------------------------------


def test_exif_rotate6_read_upright_and_saved_without_tag(tmp_path: Path) -> None:
    raw = Image.open(case("exif_rotate6.jpg"))
    assert raw.size == (40, 20) and raw.getexif().get(0x0112) == 6  # the case is what it claims
    img = read_image(case("exif_rotate6.jpg"))
    assert img.size == (20, 40)
    assert img.pixels.shape == (40, 20, 3)
    # Orientation 6 means "rotate 90 degrees clockwise to display".
    expected = np.asarray(raw.convert("RGB").transpose(Image.Transpose.ROTATE_270), np.float32) / 255
    np.testing.assert_array_equal(img.pixels, expected)

    out = tmp_path / "out.png"
    save_image(img.pixels, out)
    back = Image.open(out)
    assert back.size == (20, 40)
    assert 0x0112 not in back.getexif()
    assert "exif" not in back.info
    assert png_chunks(out.read_bytes()) == [b"IHDR", b"IDAT", b"IEND"]


def test_exif_orientation_applied_to_in_memory_pil_images() -> None:
    # An image opened by the caller and handed over in memory.
    with Image.open(case("exif_rotate6.jpg")) as opened:
        img = read_image(opened)
    assert img.size == (20, 40)
    assert img.name == "exif_rotate6.jpg"
    # An image built in memory with an orientation tag.
    arr = np.zeros((2, 3), np.uint8)
    arr[0, 0] = 255  # top-left marker
    mem = Image.fromarray(arr)
    mem.getexif()[0x0112] = 6
    out = read_image(mem)
    assert out.size == (2, 3) and out.name == "<memory>"
    # Rotating 90 degrees clockwise moves the top-left pixel to the top-right.
    assert out.pixels[0, 1, 0] == 1.0 and out.pixels[0, 0, 0] == 0.0


# --------------------------------------------------------------------------
# rgba_hidden_red.png, palette_transparency.png
# --------------------------------------------------------------------------


def test_rgba_hidden_red_never_reaches_the_model() -> None:
    naive = np.asarray(Image.open(case("rgba_hidden_red.png")).convert("RGB"))
    assert (naive == [255, 0, 0]).all(axis=-1).any()  # the red is really hidden in there
    alpha = np.asarray(Image.open(case("rgba_hidden_red.png")))[..., 3]

    white = read_image(case("rgba_hidden_red.png"))
    assert white.had_alpha
    np.testing.assert_array_equal(white.pixels, 1.0)  # white square over white

    black = read_image(case("rgba_hidden_red.png"), background=(0, 0, 0))
    p = black.pixels
    np.testing.assert_array_equal(p[..., 0], p[..., 1])  # no red anywhere
    np.testing.assert_array_equal(p[..., 0], p[..., 2])
    np.testing.assert_array_equal(p[alpha == 0], 0.0)  # background shows
    np.testing.assert_array_equal(p[alpha == 255], 1.0)  # the white square


def test_background_colour_is_configurable_and_checked() -> None:
    alpha = np.asarray(Image.open(case("rgba_hidden_red.png")))[..., 3]
    p = read_image(case("rgba_hidden_red.png"), background=(0, 128, 255)).pixels
    np.testing.assert_allclose(p[alpha == 0], [[0.0, 128 / 255, 1.0]] * int((alpha == 0).sum()), atol=1e-6)
    with pytest.raises(ValueError, match="background"):
        read_image(case("rgba_hidden_red.png"), background=(0, 0, 300))


def test_palette_transparency_composited() -> None:
    src = Image.open(case("palette_transparency.png"))
    assert src.mode == "P" and "transparency" in src.info
    idx = np.asarray(src)
    hidden = idx == src.info["transparency"]
    assert hidden.any() and (~hidden).any()
    naive = np.asarray(src.convert("RGB"))
    assert (naive[hidden] != 255).any()  # the hidden palette colour is not white

    p = read_image(case("palette_transparency.png")).pixels
    np.testing.assert_array_equal(p[hidden], 1.0)  # white background, hidden colour gone
    p0 = read_image(case("palette_transparency.png"), background=(255, 0, 0)).pixels
    np.testing.assert_array_equal(p0[hidden], [[1.0, 0.0, 0.0]] * int(hidden.sum()))
    visible = np.asarray(src.convert("RGB"), np.float32)[~hidden] / 255
    np.testing.assert_array_equal(p0[~hidden], visible)


def test_la_and_array_alpha_composited() -> None:
    la = np.zeros((4, 4, 2), np.uint8)
    la[..., 0] = 10  # dark gray hidden under alpha 0
    la[:2, :, 1] = 255
    img = read_image(Image.fromarray(la, mode="LA") if False else Image.frombytes("LA", (4, 4), la.tobytes()))
    assert img.is_grayscale and img.had_alpha
    np.testing.assert_allclose(img.pixels[:2], 10 / 255, atol=1e-7)
    np.testing.assert_array_equal(img.pixels[2:], 1.0)
    rgba = np.zeros((2, 2, 4), np.float32)
    rgba[..., 0] = 1.0  # red, half transparent
    rgba[..., 3] = 0.5
    out = read_image(rgba, background=(0, 0, 0)).pixels
    np.testing.assert_allclose(out[0, 0], [0.5, 0.0, 0.0])


# --------------------------------------------------------------------------
# gray16_ramp.png and bit depths
# --------------------------------------------------------------------------


def test_gray16_ramp_scaled_by_65535() -> None:
    raw = np.asarray(Image.open(case("gray16_ramp.png")))
    assert raw.dtype == np.uint16 and raw.max() == 65535
    img = read_image(case("gray16_ramp.png"))
    assert img.bit_depth == 16 and img.is_grayscale
    p = img.pixels[..., 0]
    np.testing.assert_allclose(p, raw / 65535.0, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(img.pixels[..., 0], img.pixels[..., 2])
    row = p[0]
    assert np.all(np.diff(row) > 0)  # still a strictly rising ramp
    assert (p == 1.0).sum() == (raw == 65535).sum()  # only the true maximum is white
    assert (p < 1.0).mean() > 0.9  # dividing by 255 would have clipped almost everything


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_sixteen_bit_modes(mode: str) -> None:
    vals = np.array([[0, 1000, 40000, 65535]], dtype=np.uint16)
    if mode == "I":
        im = Image.fromarray(vals.astype(np.int32))
    else:
        dtype = ">u2" if mode == "I;16B" else "<u2"
        im = Image.frombytes(mode, (4, 1), vals.astype(dtype).tobytes())
    assert im.mode == mode
    p = read_image(im).pixels[0, :, 0]
    np.testing.assert_allclose(p, vals[0] / 65535.0, atol=1e-7)


def test_arrays_scaled_by_their_own_range() -> None:
    np.testing.assert_allclose(read_image(np.array([[0, 255]], np.uint8)).pixels[0, :, 0], [0, 1])
    u16 = read_image(np.array([[0, 255, 65535]], np.uint16))
    assert u16.bit_depth == 16
    np.testing.assert_allclose(u16.pixels[0, :, 0], [0, 255 / 65535, 1], atol=1e-7)
    rgb16 = np.zeros((2, 2, 3), np.uint16)
    rgb16[..., 1] = 32768
    out = read_image(rgb16)
    assert not out.is_grayscale
    np.testing.assert_allclose(out.pixels[0, 0], [0, 32768 / 65535, 0], atol=1e-7)
    f = read_image(np.full((2, 2), 0.25, np.float64))
    assert f.bit_depth == 32
    np.testing.assert_array_equal(f.pixels, 0.25)
    np.testing.assert_array_equal(read_image(np.eye(2, dtype=bool)).pixels[..., 0], np.eye(2))


def test_out_of_range_floats_clipped_with_warning() -> None:
    arr = np.array([[-0.5, 0.5, 2.0]], np.float32)
    with pytest.warns(UserWarning, match=r"outside \[0, 1\].*clipped"):
        p = read_image(arr).pixels
    np.testing.assert_array_equal(p[0, :, 0], [0.0, 0.5, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(np.array([[0.0, 1.0]], np.float32))  # in range: no warning
    with pytest.warns(UserWarning, match="clipped"):
        read_image(Image.fromarray(np.array([[0.0, 3.0]], np.float32)))  # mode F too


def test_bad_arrays_rejected_clearly() -> None:
    with pytest.raises(ImageInputError, match="NaN"):
        read_image(np.array([[np.nan, 0.0]]))
    with pytest.raises(ImageInputError, match="channels-first"):
        read_image(np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(ImageInputError, match="uint8"):
        read_image(np.zeros((4, 4), np.int64))
    with pytest.raises(ImageInputError, match="minimum size is 1x1"):
        read_image(np.zeros((0, 4), np.uint8))
    with pytest.raises(TypeError):
        read_image(42)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# odd_427x640.png and tiny_1x1.png: size rules
# --------------------------------------------------------------------------


def test_odd_size_resize_path_restores_exact_size(odd_png: Path) -> None:
    img = read_image(odd_png)
    assert img.size == (640, 427)
    fitted = fit_for_model(img.pixels, native_size=28)
    assert fitted.method == "resize" and fitted.pixels.shape == (28, 28, 3)
    back = fitted.restore(fitted.pixels)
    assert back.shape == (427, 640, 3)
    one = fitted.restore(to_model_channels(fitted.pixels, 1))
    assert one.shape == (427, 640, 1)
    assert fitted.restore(fitted.pixels[..., 0]).shape == (427, 640)


def test_resize_round_trip_is_close_for_smooth_images() -> None:
    yy, xx = np.mgrid[0:427, 0:640].astype(np.float32)
    smooth = np.stack([xx / 639, yy / 426, 0.5 + 0 * xx], axis=-1)
    fitted = fit_for_model(smooth, native_size=28)
    back = fitted.restore(fitted.pixels)
    assert np.abs(back - smooth)[20:-20, 20:-20].max() < 0.01  # nearest-neighbour: ~0.036


def test_resize_filter_antialiases() -> None:
    yy, xx = np.mgrid[0:427, 0:640]
    checker = ((yy + xx) % 2).astype(np.float32)  # finest possible detail
    fitted = fit_for_model(checker, native_size=28)
    np.testing.assert_allclose(fitted.pixels, 0.5, atol=0.01)  # averaged, not aliased


def test_resize_is_float_not_8_bit() -> None:
    x = np.full((40, 30, 1), 0.5003, np.float32)
    fitted = fit_for_model(x, native_size=28)
    np.testing.assert_allclose(fitted.pixels, 0.5003, atol=1e-5)  # 8-bit would give 0.50196
    np.testing.assert_allclose(fitted.restore(fitted.pixels), 0.5003, atol=1e-5)


def test_odd_size_pad_path_crops_back_exactly(odd_png: Path) -> None:
    img = read_image(odd_png)
    fitted = fit_for_model(img.pixels, multiple_of=8)
    assert fitted.method == "pad" and fitted.pad == (5, 0)
    assert fitted.pixels.shape == (432, 640, 3)
    np.testing.assert_array_equal(fitted.pixels[:427], img.pixels)  # nothing cropped or moved
    np.testing.assert_array_equal(fitted.pixels[427:432], img.pixels[425:420:-1])  # reflect
    back = fitted.restore(fitted.pixels)
    assert back.shape == (427, 640, 3)
    np.testing.assert_array_equal(back, img.pixels)


def test_native_size_and_multiples_pass_through_bit_exact() -> None:
    x = np.random.default_rng(1).random((28, 28, 1), dtype=np.float32)
    f = fit_for_model(x, native_size=28)
    assert f.method == "identity"
    np.testing.assert_array_equal(f.restore(f.pixels), x)
    y = np.random.default_rng(2).random((16, 24, 3), dtype=np.float32)
    g = fit_for_model(y, multiple_of=8)
    assert g.method == "identity"
    np.testing.assert_array_equal(g.restore(g.pixels), y)
    with pytest.raises(ValueError, match="multiple"):
        fit_for_model(y, native_size=28, multiple_of=8)
    with pytest.raises(ValueError, match="size 28x28"):
        fit_for_model(x[:20], native_size=28).restore(x[:20])


@pytest.mark.parametrize("kw,model_shape", [({"native_size": 28}, (28, 28, 3)), ({"multiple_of": 8}, (8, 8, 3))])
def test_tiny_1x1_handled_on_both_paths(tmp_path: Path, kw: dict, model_shape: tuple) -> None:
    img = read_image(case("tiny_1x1.png"))
    assert img.size == (1, 1)
    value = img.pixels[0, 0].copy()
    fitted = fit_for_model(img.pixels, **kw)
    assert fitted.pixels.shape == model_shape
    np.testing.assert_allclose(fitted.pixels, np.broadcast_to(value, model_shape), atol=1e-6)
    back = fitted.restore(fitted.pixels)
    assert back.shape == (1, 1, 3)
    np.testing.assert_allclose(back[0, 0], value, atol=1e-6)
    save_image(back, tmp_path / "t.png")
    assert Image.open(tmp_path / "t.png").size == (1, 1)


# --------------------------------------------------------------------------
# truncated.jpg, empty.png, not_an_image.png: clear errors naming the file
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,reason",
    [("truncated.jpg", "truncated"), ("empty.png", "empty"), ("not_an_image.png", "not an image")],
)
def test_bad_files_give_one_clear_error(name: str, reason: str) -> None:
    with pytest.raises(ImageInputError) as info:
        read_image(case(name))
    msg = str(info.value)
    assert name in msg and reason in msg
    assert isinstance(info.value, ValueError)
    assert info.value.__cause__ is None  # no chained Pillow traceback
    assert info.value.__context__ is None or info.value.__suppress_context__
    assert "\n" not in msg


def test_truncated_png_detected_at_read_time(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    p = tmp_path / "cut.png"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageInputError, match="cut.png"):
        read_image(p)


def test_missing_file_and_folder() -> None:
    with pytest.raises(ImageInputError, match="no such file"):
        read_image(CASES / "nope.png")
    with pytest.raises(ImageInputError, match="folder"):
        read_image(CASES)


# --------------------------------------------------------------------------
# cmyk.jpg
# --------------------------------------------------------------------------

# The case draws an upper bar (rows 4-6, columns 8-23) and a left bar
# (rows 4-27, columns 8-10) in white on black.
_BARS = np.zeros((32, 32), bool)
_BARS[4:7, 8:24] = True
_BARS[4:28, 8:11] = True


def _interior(mask: np.ndarray) -> np.ndarray:
    """Pixels of mask whose 4 neighbours are also in mask (away from JPEG edges)."""
    m = mask.copy()
    m[1:] &= mask[:-1]
    m[:-1] &= mask[1:]
    m[:, 1:] &= mask[:, :-1]
    m[:, :-1] &= mask[:, 1:]
    return m


def test_cmyk_white_bars_stay_white() -> None:
    img = read_image(case("cmyk.jpg"))
    assert img.source_mode == "CMYK" and img.size == (32, 32)
    p = img.pixels
    assert p[_interior(_BARS)].min() > 0.95
    assert p[_interior(~_BARS)].max() < 0.05
    assert np.abs(p[..., 0] - p[..., 1]).max() < 0.03  # neutral: no colour cast
    assert np.abs(p[..., 1] - p[..., 2]).max() < 0.03


def test_cmyk_without_adobe_marker_uses_plain_polarity(tmp_path: Path) -> None:
    data = case("cmyk.jpg").read_bytes()
    start = data.index(b"\xff\xee")  # APP14 "Adobe"
    (length,) = struct.unpack(">H", data[start + 2 : start + 4])
    stripped = tmp_path / "plain_cmyk.jpg"
    stripped.write_bytes(data[:start] + data[start + 2 + length :])
    assert "adobe" not in Image.open(stripped).info
    p = read_image(stripped).pixels
    # Same samples read with plain polarity: the stored K of 255 (Adobe: no
    # ink) now means full black ink, so the whole picture is black, where
    # Pillow's default would still show white bars.
    assert p.max() < 0.05


def test_cmyk_colours() -> None:
    # CMYK in memory (as from a TIFF): pure cyan, magenta, yellow, 50% black.
    cmyk = np.array([[[255, 0, 0, 0], [0, 255, 0, 0], [0, 0, 255, 0], [0, 0, 0, 128]]], np.uint8)
    p = read_image(Image.frombytes("CMYK", (4, 1), cmyk.tobytes())).pixels[0]
    np.testing.assert_allclose(p, [[0, 1, 1], [1, 0, 1], [1, 1, 0], [127 / 255] * 3], atol=1 / 255)


# --------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------


def _header_only_png(path: Path, w: int, h: int) -> None:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def test_pixel_limit_checked_before_decoding(tmp_path: Path) -> None:
    p = tmp_path / "huge.png"
    _header_only_png(p, 8000, 8000)  # 64 MP claimed, a few bytes of data
    with pytest.raises(ImageInputError, match=r"huge.png: .*8000x8000.*over the limit of 50,000,000"):
        read_image(p)
    with pytest.raises(ImageInputError, match="over the limit of 99"):
        read_image(np.zeros((10, 10), np.uint8), max_pixels=99)
    read_image(np.zeros((10, 10), np.uint8), max_pixels=100)
    with pytest.raises(ImageInputError, match="over the limit"):
        read_image(Image.new("RGB", (20, 20)), max_pixels=399)


def test_decompression_bomb_becomes_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "bomb.png"
    _header_only_png(p, 30000, 30000)  # 900 MP: over Pillow's hard limit
    with pytest.raises(ImageInputError, match="bomb.png: refused as a possible decompression bomb"):
        read_image(p, max_pixels=None)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageInputError, match="decompression bomb"):
        read_image(case("gray16_ramp.png"))  # 1024 px > 2 x 100


# --------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------


def test_paths_with_spaces_and_non_ascii(tmp_path: Path) -> None:
    folder = tmp_path / "my photos ünï 图"
    folder.mkdir()
    src = folder / "été 写真 1.png"
    shutil.copy(case("tiny_1x1.png"), src)
    img = read_image(str(src))
    assert img.name == "été 写真 1.png" and img.size == (1, 1)
    out = folder / "out ø.png"
    save_image(img.pixels, out)
    np.testing.assert_array_equal(read_image(out).pixels, img.pixels)
    bad = folder / "kaputt ß.png"
    bad.write_bytes(b"hello")
    with pytest.raises(ImageInputError, match="kaputt ß.png"):
        read_image(bad)


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.random.default_rng(4).random((5, 6, 3), dtype=np.float32)
    save_image(x, tmp_path / "a.png")
    assert sorted(os.listdir(tmp_path)) == ["a.png"]

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_image(x, tmp_path / "b.png")
    assert sorted(os.listdir(tmp_path)) == ["a.png"]  # no b.png, no temp file
    monkeypatch.undo()

    with pytest.raises(ValueError, match="NaN"):
        save_image(np.full((2, 2), np.nan), tmp_path / "c.png")
    with pytest.raises(ValueError, match="bit_depth"):
        save_image(x, tmp_path / "c.png", bit_depth=12)
    assert sorted(os.listdir(tmp_path)) == ["a.png"]


def test_save_replaces_existing_file_whole(tmp_path: Path) -> None:
    p = tmp_path / "a.png"
    save_image(np.zeros((3, 3)), p)
    save_image(np.ones((4, 5)), p)
    assert Image.open(p).size == (5, 4)


def test_save_modes_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    gray = (rng.integers(0, 256, (7, 9)) / 255).astype(np.float32)
    save_image(gray, tmp_path / "g.png")
    assert Image.open(tmp_path / "g.png").mode == "L"
    back = read_image(tmp_path / "g.png")
    assert back.is_grayscale
    np.testing.assert_array_equal(back.pixels[..., 0], gray)

    # Gray content replicated to three channels is still written as gray.
    save_image(np.repeat(gray[..., None], 3, -1), tmp_path / "g3.png")
    assert Image.open(tmp_path / "g3.png").mode == "L"

    g16 = (rng.integers(0, 65536, (7, 9)) / 65535).astype(np.float32)
    save_image(g16, tmp_path / "g16.png", bit_depth=16)
    assert Image.open(tmp_path / "g16.png").mode in ("I;16", "I")
    b16 = read_image(tmp_path / "g16.png")
    assert b16.bit_depth == 16
    np.testing.assert_allclose(b16.pixels[..., 0], g16, atol=1e-7)

    rgb = (rng.integers(0, 256, (7, 9, 3)) / 255).astype(np.float32)
    save_image(rgb, tmp_path / "c.png")
    assert Image.open(tmp_path / "c.png").mode == "RGB"
    np.testing.assert_array_equal(read_image(tmp_path / "c.png").pixels, rgb)

    save_image(rgb, tmp_path / "forced.png", grayscale=True)
    lum = to_model_channels(rgb, 1)[..., 0]
    np.testing.assert_allclose(read_image(tmp_path / "forced.png").pixels[..., 0], lum, atol=0.5 / 255 + 1e-6)

    for name in ("g.png", "g16.png", "c.png"):
        assert png_chunks((tmp_path / name).read_bytes()) == [b"IHDR", b"IDAT", b"IEND"]


def test_save_rgb16_writes_true_16_bit_png(tmp_path: Path) -> None:
    rgb = np.array([[[0.0, 0.5, 1.0], [1 / 65535, 0.25, 0.75]]], np.float32)
    p = tmp_path / "c16.png"
    save_image(rgb, p, bit_depth=16)
    data = p.read_bytes()
    assert png_chunks(data) == [b"IHDR", b"IDAT", b"IEND"]
    w, h, depth, ctype = struct.unpack(">IIBB", data[16:26])
    assert (w, h, depth, ctype) == (2, 1, 16, 2)
    (n,) = struct.unpack(">I", data[33:37])
    raw = zlib.decompress(data[41 : 41 + n])
    assert raw[0] == 0
    vals = np.frombuffer(raw[1:], ">u2").reshape(1, 2, 3)
    np.testing.assert_array_equal(vals, np.rint(rgb * 65535))
    assert Image.open(p).size == (2, 1)  # other readers accept it


def test_save_removes_metadata_of_source(tmp_path: Path) -> None:
    src = tmp_path / "meta.jpg"
    im = Image.new("RGB", (8, 4), (10, 20, 30))
    exif = im.getexif()
    exif[0x010F] = "CameraMaker"
    exif[0x0112] = 1
    im.save(src, exif=exif, comment=b"secret")
    img = read_image(src)
    out = tmp_path / "clean.png"
    save_image(img.pixels, out)
    data = out.read_bytes()
    assert b"CameraMaker" not in data and b"secret" not in data
    assert png_chunks(data) == [b"IHDR", b"IDAT", b"IEND"]


# --------------------------------------------------------------------------
# Channels
# --------------------------------------------------------------------------


def test_to_model_channels_rule() -> None:
    rgb = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.2, 0.4, 0.6]]], np.float32)
    y = to_model_channels(rgb, 1)
    assert y.shape == (1, 4, 1) and y.dtype == np.float32
    np.testing.assert_allclose(y[0, :, 0], [0.299, 0.587, 0.114, 0.299 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6], atol=1e-6)
    g = np.array([[0.3, 0.7]], np.float32)
    np.testing.assert_array_equal(to_model_channels(g, 3), np.array([[[0.3] * 3, [0.7] * 3]], np.float32))
    np.testing.assert_array_equal(to_model_channels(g, 1)[..., 0], g)
    np.testing.assert_array_equal(to_model_channels(rgb, 3), rgb)
    # Gray replicated to RGB and back is the identity (the weights sum to 1).
    np.testing.assert_allclose(to_model_channels(to_model_channels(g, 3), 1)[..., 0], g, atol=1e-6)
    with pytest.raises(ValueError, match="channels"):
        to_model_channels(rgb, 4)


def test_grayscale_and_palette_flags() -> None:
    assert read_image(case("gray16_ramp.png")).is_grayscale
    assert not read_image(case("tiny_1x1.png")).is_grayscale
    assert read_image(Image.new("L", (2, 2), 7)).is_grayscale
    assert not read_image(Image.new("RGB", (2, 2), (7, 7, 7))).is_grayscale


# --------------------------------------------------------------------------
# Folders and output safety
# --------------------------------------------------------------------------


def test_list_image_files_sorted_recursive(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / ".hidden").mkdir()
    for rel in ["z.png", "a.JPG", "b/c.png", "b/notes.txt", ".hidden/x.png", ".dot.png"]:
        (tmp_path / rel).write_bytes(b"x")
    single = tmp_path / "b" / "notes.txt"
    got = list_image_files([tmp_path, single, tmp_path / "z.png"])
    rel = [p.relative_to(tmp_path).as_posix() for p in got]
    assert rel == ["a.JPG", "b/c.png", "z.png", "b/notes.txt"]
    assert list_image_files(str(tmp_path / "z.png")) == [tmp_path / "z.png"]
    with pytest.raises(ImageInputError, match="no such file or folder"):
        list_image_files([tmp_path / "missing"])


def test_check_output_dir(tmp_path: Path) -> None:
    inp = tmp_path / "in"
    (inp / "sub").mkdir(parents=True)
    f = inp / "a.png"
    f.write_bytes(b"x")
    with pytest.raises(ValueError, match="inside the input folder"):
        check_output_dir(inp, [inp])
    with pytest.raises(ValueError, match="inside the input folder"):
        check_output_dir(inp / "sub" / "out", [inp])
    with pytest.raises(ValueError, match="is the input file"):
        check_output_dir(f, [f])
    with pytest.raises(ValueError, match="would overwrite"):
        check_output_dir(inp, [f], output_names=["a.png"])
    assert check_output_dir(inp, [f], output_names=["a_000.png"]) == inp.resolve()
    assert check_output_dir(tmp_path / "out", [inp, f]) == (tmp_path / "out").resolve()


def test_import_is_torch_free() -> None:
    code = "import sys, boomerang.imageio; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_fitted_image_is_public() -> None:
    assert isinstance(fit_for_model(np.zeros((3, 3))), FittedImage)
