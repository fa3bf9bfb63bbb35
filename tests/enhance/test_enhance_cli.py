"""``boomerang enhance`` on the shared runner: one image or a folder, exact sizes, errors named by flag."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from boomerang.cli import main

CASES = Path("/work/shared/cases/images")
if not CASES.is_dir():
    CASES = Path(__file__).parents[1] / "data" / "cases"


def _run(*argv) -> int:
    return main(["enhance", *map(str, argv)])


def _img(path: Path, h=5, w=7, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).save(path)
    return path


def test_one_image_exact_size_and_metadata(tmp_path, tiny_pixel_dir):
    src = _img(tmp_path / "low.png")
    out = tmp_path / "out"
    assert _run(src, "--scale", 2.5, "--level", 0.2, "--steps", 10, "--consistency", "--model", tiny_pixel_dir,
                "--out", out) == 0
    img = Image.open(out / "low.png")
    assert img.size == (18, 13)  # round-half-up of 2.5 x (7, 5) = (17.5, 12.5)
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert rows[0]["scale"] == 2.5 and rows[0]["consistency"] is True and rows[0]["width"] == 18
    # the windows as used, defaults resolved: the pixel model's native size and a quarter of it
    native = json.loads((Path(tiny_pixel_dir) / "unet" / "config.json").read_text())["sample_size"]
    assert (rows[0]["tile_size"], rows[0]["tile_overlap"]) == (native, native // 4)
    out2 = tmp_path / "out2"
    assert _run(src, "--scale", 2, "--level", 0.2, "--steps", 2, "--tile-overlap", 1, "--model", tiny_pixel_dir,
                "--out", out2) == 0
    row = json.loads((out2 / "metadata.jsonl").read_text().splitlines()[0])
    assert (row["tile_size"], row["tile_overlap"]) == (native, 1)


def test_latent_enhance_records_the_default_windows_in_image_pixels(tmp_path, tiny_sd_dir):
    from boomerang.enhance.image import LATENT_TILE_SIZE

    src = _img(tmp_path / "low.png", 8, 8)
    out = tmp_path / "out"
    assert _run(src, "--scale", 2, "--level", 0.2, "--steps", 2, "--model", tiny_sd_dir, "--out", out) == 0
    row = json.loads((out / "metadata.jsonl").read_text().splitlines()[0])
    assert (row["tile_size"], row["tile_overlap"]) == (LATENT_TILE_SIZE, LATENT_TILE_SIZE // 4)


def test_level_zero_writes_the_bicubic_upsampling(tmp_path, tiny_pixel_dir):
    from boomerang.enhance.resample import upsample
    from boomerang.imageio import read_image, to_model_channels

    src = _img(tmp_path / "low.png", 6, 6)
    out = tmp_path / "out"
    assert _run(src, "--scale", 4, "--level", 0, "--model", tiny_pixel_dir, "--out", out) == 0
    got = np.asarray(Image.open(out / "low.png"), dtype=np.float32) / 255
    want = upsample(to_model_channels(read_image(src).pixels, 1), 24, 24)[..., 0]
    assert np.abs(got - want).max() <= 0.5 / 255 + 1e-6


def test_folder_with_cases_skips_bad_files_and_resumes(tmp_path, tiny_pixel_dir):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("exif_rotate6.jpg", "rgba_hidden_red.png", "gray16_ramp.png", "tiny_1x1.png", "truncated.jpg",
                 "empty.png", "not_an_image.png"):
        shutil.copy(CASES / name, src / name)
    out = tmp_path / "out"
    args = [src, "--scale", 2, "--level", 0.1, "--steps", 10, "--model", tiny_pixel_dir, "--out", out]
    assert _run(*args) == 3  # done, with skipped files
    report = json.loads((out / "report.json").read_text())
    skipped = {s["file"] for s in report["skipped_files"]}
    assert skipped == {"truncated.jpg", "empty.png", "not_an_image.png"}
    assert Image.open(out / "exif_rotate6.png").size == (40, 80)  # upright 20x40, doubled
    assert Image.open(out / "tiny_1x1.png").size == (2, 2)
    gray = Image.open(CASES / "gray16_ramp.png")
    assert Image.open(out / "gray16_ramp.png").size == (2 * gray.size[0], 2 * gray.size[1])
    before = {p.name: p.read_bytes() for p in out.glob("*.png")}
    assert _run(*args) == 3  # resume: nothing left to do, same files
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == before


@pytest.mark.parametrize("flags,flag", [
    (["--scale", "0.5"], "--scale"), (["--scale", "nan"], "--scale"), (["--tile-batch", "0"], "--tile-batch"),
    (["--tile-size", "16"], "--tile-size"), (["--tile-overlap", "8"], "--tile-overlap"),
    (["--level", "1.5"], "--level"), (["--schedule", "img2img"], "--schedule"), (["--scheduler", "pndm"], "--scheduler"),
    (["--scheduler", "kdpm2"], "--scheduler"), (["--scheduler", "nope"], "--scheduler"),
])
def test_bad_flags_exit_2_naming_the_flag_and_write_nothing(tmp_path, tiny_pixel_dir, capsys, flags, flag):
    src = _img(tmp_path / "low.png")
    out = tmp_path / "out"
    assert _run(src, *flags, "--model", tiny_pixel_dir, "--out", out) == 2
    err = capsys.readouterr().err
    assert flag in err and err.count("\n") == 1
    assert not out.exists()


def test_a_bad_single_file_is_one_error_naming_it(tmp_path, tiny_pixel_dir, capsys):
    out = tmp_path / "out"
    assert _run(CASES / "truncated.jpg", "--model", tiny_pixel_dir, "--out", out) == 2
    assert "truncated.jpg" in capsys.readouterr().err and not out.exists()


def test_a_too_large_output_is_refused_before_decoding(tmp_path, tiny_pixel_dir, capsys):
    out = tmp_path / "out"
    assert _run(CASES / "under_8000x6000.png", "--scale", 2, "--model", tiny_pixel_dir, "--out", out) == 2
    err = capsys.readouterr().err
    assert "--scale" in err and "16000x12000" in err and not out.exists()


def test_a_colour_input_to_a_gray_model_is_said_once_per_file(tmp_path, tiny_pixel_dir, capsys):
    rng = np.random.default_rng(1)
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8), "RGB").save(src / "colour.png")
    _img(src / "gray.png")
    assert _run(src, "--scale", 2, "--level", 0.2, "--steps", 5, "--model", tiny_pixel_dir, "--out",
                tmp_path / "out", "--no-progress") == 0
    err = capsys.readouterr().err
    assert err.count("colour to gray") == 1 and "colour.png: colour to gray" in err and "gray.png:" not in err
    assert Image.open(tmp_path / "out" / "colour.png").mode == "L"


def test_several_paths_like_sample(tmp_path, tiny_pixel_dir):
    """Files and folders together, as ``boomerang sample`` takes them. Names (and seeds) are paths
    from the folder the inputs share: a file there gives what it gives alone."""
    a, b = _img(tmp_path / "a.png", seed=1), _img(tmp_path / "b.png", 4, 6, seed=2)
    (tmp_path / "more").mkdir()
    _img(tmp_path / "more" / "c.png", seed=3)
    common = ["--scale", 2, "--level", 0.2, "--steps", 4, "--model", tiny_pixel_dir, "--no-progress"]
    out = tmp_path / "out"
    assert _run(a, b, tmp_path / "more", a, *common, "--out", out) == 0  # a twice: taken once
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["a.png", "b.png", "more/c.png"]
    assert Image.open(out / "b.png").size == (12, 8)
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert sorted(r["source"] for r in rows) == ["a.png", "b.png", "more/c.png"]
    alone = tmp_path / "alone"
    assert _run(a, *common, "--out", alone) == 0
    assert (alone / "a.png").read_bytes() == (out / "a.png").read_bytes()
    assert _run(a, b, tmp_path / "more", a, *common, "--out", out) == 0  # rerun: the job continues, nothing new


def test_several_paths_refuse_a_bad_named_file_and_a_missing_path(tmp_path, tiny_pixel_dir, capsys):
    a = _img(tmp_path / "a.png")
    out = tmp_path / "out"
    assert _run(a, CASES / "truncated.jpg", "--model", tiny_pixel_dir, "--out", out) == 2
    err = capsys.readouterr().err
    assert "truncated.jpg" in err and err.count("\n") == 1 and not out.exists()
    assert _run(a, tmp_path / "nope.png", "--model", tiny_pixel_dir, "--out", out) == 2
    assert "nope.png" in capsys.readouterr().err and not out.exists()
    assert _run(a, a, "--layout", "classes", "--model", tiny_pixel_dir, "--out", out) == 2
    assert "--layout" in capsys.readouterr().err and not out.exists()
    assert _run(a, tmp_path, "--model", tiny_pixel_dir, "--out", tmp_path / "out") == 2  # out inside an input
    assert "inside the input folder" in capsys.readouterr().err


@pytest.mark.parametrize("level", [None, "1", "0.3"])
def test_from_noise_is_one_refusal_whatever_the_level(tmp_path, tiny_pixel_dir, capsys, level):
    """The message names --from-noise and suggests nothing that is then refused (it used to say
    "no --level (or level 1)" and then refuse --level 1)."""
    src = _img(tmp_path / "low.png")
    flags = ["--from-noise"] + ([] if level is None else ["--level", level])
    assert _run(src, *flags, "--model", tiny_pixel_dir, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "--from-noise" in err and "or level 1" not in err and err.count("\n") == 1
