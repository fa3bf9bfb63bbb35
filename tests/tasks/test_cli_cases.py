"""Every input case of ../shared/cases/README.md through the real CLI.

``boomerang.cli.main`` is called in-process (the same code path as the
``boomerang`` script, without paying torch's import once per case) with tiny
random-weight models from ``tests/_tiny.py``: a 3-channel pixel DDPM with a
native size of 8 (the resize path) and the conftest's Stable-Diffusion-shaped
model whose VAE downsamples by 2 (the pad path). Good files must give exit status 0 and
outputs of the exact upright input size with no metadata; bad files must give
exit status 2, one ``boomerang: error:`` line naming the file, and nothing
written. One test runs the installed ``boomerang`` script in a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from _png import png_chunks  # noqa: E402

from _helpers import no_metadata, run_cli

CASES = Path(__file__).parents[1] / "data" / "cases"

#: Good case files and the upright (W, H) every output must have.
GOOD = {
    "exif_rotate6.jpg": (20, 40),
    "rgba_hidden_red.png": (32, 32),
    "palette_transparency.png": (32, 32),
    "gray16_ramp.png": (32, 32),
    "odd_427x640.png": (640, 427),
    "tiny_1x1.png": (1, 1),
    "cmyk.jpg": (32, 32),
    "icc_linear_gray128.png": (32, 32),
}
BAD = {
    "truncated.jpg": "truncated",
    "empty.png": "empty",
    "not_an_image.png": "not an image",
}
#: Odd sides for the latent model: the tiny SD model runs attention over the
#: whole latent, which for 427x640 takes about a minute on two busy cores; the
#: pad rule is the same for any side that is not a multiple (here: of 2).
ODD_SMALL = "odd_27x41.png"
LATENT = {**{k: v for k, v in GOOD.items() if k != "odd_427x640.png"}, ODD_SMALL: (41, 27)}
COMMON = ["--steps", "2", "--num-samples", "1", "--seed", "0", "--no-progress"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All case files in one folder; odd_427x640.png regenerated (RGB noise)."""
    folder = tmp_path_factory.mktemp("cases")
    for name in list(GOOD) + list(BAD):
        if name != "odd_427x640.png":
            shutil.copy(CASES / name, folder / name)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (427, 640, 3), dtype=np.uint8)).save(folder / "odd_427x640.png")
    Image.fromarray(rng.integers(0, 256, (27, 41, 3), dtype=np.uint8)).save(folder / ODD_SMALL)
    return folder


def run_sample(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    return run_cli(["sample", *args], capsys)


def sample_files(out: Path, stem: str) -> list[Path]:
    files = sorted(p for p in (out / stem).glob("*.png") if p.name != "contact_sheet.png")
    assert files, f"no samples written for {stem}: {sorted(os.listdir(out))}"
    return files


def check_outputs(out: Path, expected: dict[str, tuple[int, int]] = GOOD) -> dict:
    """Every good case has samples of its exact upright size, with no metadata."""
    meta = json.loads((out / "metadata.json").read_text())
    for name, size in expected.items():
        stem = Path(name).stem
        for f in sample_files(out, stem):
            with Image.open(f) as im:
                assert im.size == size, (f, im.size, size)
                assert 0x0112 not in im.getexif()
            assert no_metadata(png_chunks(f.read_bytes())), (f, png_chunks(f.read_bytes()))
    sizes = {Path(i["file"]).name: tuple(i["size"]) for i in meta["inputs"]}
    assert sizes == expected
    return meta


# --------------------------------------------------------------------------
# Good files
# --------------------------------------------------------------------------


def test_good_cases_pixel_model_resize_path(inputs: Path, tiny_colour_pixel_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    files = [str(inputs / n) for n in GOOD]
    rc, err = run_sample([*files, "--model", str(tiny_colour_pixel_dir), "--level", "0.3", "--out", str(out), *COMMON], capsys)
    assert rc == 0, err
    meta = check_outputs(out)
    assert {i["fit"] for i in meta["inputs"]} == {"resize"}  # none is 8x8 already


def test_good_cases_latent_model_pad_path(inputs: Path, tiny_sd_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    files = [str(inputs / n) for n in LATENT]
    rc, err = run_sample([*files, "--model", str(tiny_sd_dir), "--level", "0.3", "--out", str(out), *COMMON], capsys)
    assert rc == 0, err
    meta = check_outputs(out, LATENT)
    fits = {Path(i["file"]).name: (i["fit"], tuple(i["model_size"])) for i in meta["inputs"]}
    assert fits[ODD_SMALL] == ("pad", (42, 28))  # padded, never cropped
    assert fits["exif_rotate6.jpg"] == ("identity", (20, 40))
    assert fits["tiny_1x1.png"] == ("pad", (2, 2))


def test_level_zero_returns_the_read_input(inputs: Path, tiny_colour_pixel_dir: Path, tmp_path: Path, capsys) -> None:
    """Level 0 on a pixel model returns the input as read: the reading rules
    (orientation, compositing, bit depth, CMYK) show in the written values."""
    out = tmp_path / "out"
    files = [str(inputs / n) for n in GOOD]
    rc, err = run_sample([*files, "--model", str(tiny_colour_pixel_dir), "--level", "0", "--out", str(out), *COMMON], capsys)
    assert rc == 0, err
    check_outputs(out)

    def arr(stem: str) -> np.ndarray:
        (f,) = sample_files(out, stem)
        return np.asarray(Image.open(f).convert("RGB"), dtype=np.int32)

    # Orientation: the upright picture, the same as transposing the source.
    src = Image.open(inputs / "exif_rotate6.jpg").convert("RGB").transpose(Image.Transpose.ROTATE_270)
    assert np.abs(arr("exif_rotate6") - np.asarray(src, np.int32)).max() <= 1
    # Hidden red under transparent pixels: composited over white; no red at all.
    assert (arr("rgba_hidden_red") == 255).all()
    a = arr("palette_transparency")
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()
    hidden = np.asarray(Image.open(inputs / "palette_transparency.png")) == 0
    assert (a[hidden] == 255).all()
    # 16-bit ramp: still a ramp, scaled by 65535 (dividing by 255 would clip it white).
    ramp = arr("gray16_ramp")[0, :, 0]
    assert np.all(np.diff(ramp) > 0) and ramp[0] == 0 and ramp[-1] == 255
    assert (arr("gray16_ramp") == 255).mean() < 0.05
    # CMYK: the white bars stay white, the black ground stays black.
    c = arr("cmyk")
    assert c[5, 12:20].min() >= 240 and c[15, 9].min() >= 240
    assert c[20, 20].max() <= 15 and c[1, 1].max() <= 15
    # Linear-gamma ICC profile: converted to sRGB (LittleCMS: 128 -> about 188), written without a profile.
    assert np.abs(arr("icc_linear_gray128") - 188).max() <= 1
    # Tiny: one pixel of the input's colour.
    tiny = np.asarray(Image.open(inputs / "tiny_1x1.png").convert("RGB"), np.int32)
    assert np.abs(arr("tiny_1x1") - tiny).max() <= 1


# --------------------------------------------------------------------------
# Bad files
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name,reason", list(BAD.items()))
def test_bad_case_exit_2_one_line_nothing_written(
    name: str, reason: str, inputs: Path, tiny_colour_pixel_dir: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    rc, err = run_sample([str(inputs / name), "--model", str(tiny_colour_pixel_dir), "--out", str(out), *COMMON], capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("boomerang: error: ") and name in lines[0] and reason in lines[0]
    assert "Traceback" not in err
    assert not out.exists()


def test_one_bad_file_among_good_ones_writes_nothing(inputs: Path, tiny_colour_pixel_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    files = [str(inputs / "cmyk.jpg"), str(inputs / "truncated.jpg"), str(inputs / "tiny_1x1.png")]
    rc, err = run_sample([*files, "--model", str(tiny_colour_pixel_dir), "--out", str(out), *COMMON], capsys)
    assert rc == 2 and "truncated.jpg" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_paths_with_spaces_and_non_ascii(inputs: Path, tiny_colour_pixel_dir: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "mes images ü 图"
    folder.mkdir()
    shutil.copy(inputs / "exif_rotate6.jpg", folder / "photo été 1.jpg")
    (folder / "cassé ß.png").write_bytes(b"not a png")
    out = tmp_path / "sorties ø"
    rc, err = run_sample([str(folder / "photo été 1.jpg"), "--model", str(tiny_colour_pixel_dir), "--out", str(out), *COMMON], capsys)
    assert rc == 0, err
    (f,) = sample_files(out, "photo été 1")
    assert Image.open(f).size == (20, 40)
    rc, err = run_sample([str(folder / "cassé ß.png"), "--model", str(tiny_colour_pixel_dir), "--out", str(tmp_path / "o2"), *COMMON],
                      capsys)
    assert rc == 2 and "cassé ß.png" in err and not (tmp_path / "o2").exists()


def test_installed_script_reports_bad_file_without_traceback(inputs: Path, tmp_path: Path) -> None:
    exe = shutil.which("boomerang") or str(Path(sys.executable).with_name("boomerang"))
    assert Path(exe).exists(), "the boomerang script is not installed (pip install -e .)"
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([exe, "sample", str(inputs / "not_an_image.png"), "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "not_an_image.png" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_img2img_level_below_one_step_is_refused_not_copied(inputs: Path, tiny_colour_pixel_dir: Path, tmp_path: Path,
                                                            capsys) -> None:
    """The case table: level x steps < 1 on img2img names the smallest level that denoises; nothing written."""
    out = tmp_path / "out"
    rc, err = run_sample([str(inputs / "odd_427x640.png"), "--model", str(tiny_colour_pixel_dir), "--out", str(out), "--level",
                       "0.2", "--steps", "4", "--schedule", "img2img", "--num-samples", "1"], capsys)
    assert rc == 2 and "--level >= 0.250 at 4 steps" in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()
