"""``boomerang sample``: validation before any model loads, outputs, metadata, reproducibility.

Runs main(argv) in-process with the tiny random-weight models of conftest.py
(fully offline); two tests run the real console script in a subprocess.
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

from boomerang.cli import main

CASES = Path(__file__).parents[1] / "data" / "cases"
FAST = ["--steps", "4", "--no-progress"]


def _gray_png(path: Path, size=(20, 14), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def digit(tmp_path) -> Path:
    return _gray_png(tmp_path / "digit.png")


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if any model gets loaded."""
    import boomerang.models

    def boom(*a, **k):
        raise AssertionError("a model was loaded before validation finished")

    monkeypatch.setattr(boomerang.models, "load_model", boom)


from _helpers import run_cli as _run  # noqa: E402  (rc, stderr) of `boomerang ARGV`


# --------------------------------------------------------------------------- --help without torch


def test_help_answers_without_importing_torch():
    code = (
        "import sys\n"
        "from boomerang.cli import main\n"
        "assert main(['--help']) == 0\n"
        "assert main(['sample', '--help']) == 0\n"
        "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    for flag in ("--level", "--timestep", "--num-samples", "--seed", "--steps", "--scheduler", "--schedule",
                 "--from-noise", "--eta", "--model", "--prompt", "--negative-prompt", "--guidance-scale", "--out",
                 "--device", "--dtype", "--batch-size", "--threads", "--background", "--allow-pickle", "--debug"):
        assert flag in res.stdout


def test_no_help_text_shows_a_doubled_percent_sign(capsys):
    """argparse formats help, epilog and description with %: a literal '%%' in a description (not formatted)
    reached the screen as '95%%' (found by a new-user trial in calibrate-privacy --help)."""
    from boomerang.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert len(subparsers.choices) >= 8
    for name, sub in subparsers.choices.items():
        text = sub.format_help()
        assert "%%" not in text and "%(" not in text, (name, [ln for ln in text.splitlines() if "%" in ln])


def _console_script() -> list[str]:
    exe = Path(sys.executable).parent / "boomerang"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "boomerang.cli"]


def test_console_script_exit_status_and_one_line(tmp_path, digit):
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([*_console_script(), "sample", str(digit), "--level", "1.5", "--out", str(out)],
                         capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 2
    assert res.stderr.startswith("boomerang: error: ") and "level" in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()
    res = subprocess.run([*_console_script(), "sample", "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "--level" in res.stdout


# --------------------------------------------------------------------------- bad parameters: exit 2, nothing written


BAD = {
    "level nan": (["--level", "nan"], "level"),
    "level -0.1": (["--level=-0.1"], "level"),
    "level 1.5": (["--level", "1.5"], "level"),
    "level list with 1.5": (["--level", "0.2,1.5"], "level"),
    "level text": (["--level", "abc"], "level"),
    "timestep -1": (["--timestep=-1"], "timestep"),
    "timestep T": (["--timestep", "1000"], "timestep"),
    "timestep 1.5": (["--timestep", "1.5"], "timestep"),
    "steps 0": (["--steps", "0"], "steps"),
    "num-samples 0": (["--num-samples", "0"], "num-samples"),
    "batch-size 0": (["--batch-size", "0"], "batch-size"),
    "seed -1": (["--seed=-1"], "seed"),
    "eta -1": (["--eta=-1"], "eta"),
    "scheduler unknown": (["--scheduler", "nope"], "scheduler"),
    "device unknown": (["--device", "tpu"], "device"),
    "prompt to a pixel model": (["--prompt", "person"], "prompt"),
    "pndm on the exact grid": (["--scheduler", "pndm"], "pndm"),
    "from-noise with a level": (["--from-noise", "--level", "0.5"], "from-noise"),
    "background unknown": (["--background", "nocolour"], "background"),
    "threads 0": (["--threads", "0"], "threads"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_parameters_exit_2_before_model_load(case, tmp_path, digit, tiny_pixel_dir, no_model_load, capsys):
    extra, word = BAD[case]
    out = tmp_path / "out"
    rc, err = _run(["sample", digit, "--model", tiny_pixel_dir, "--out", out, *extra], capsys)
    assert rc == 2, err
    assert err.startswith("boomerang: error: ") and word in err.lower()
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_timestep_range_comes_from_the_model(tmp_path, digit, tiny_pixel_dir, no_model_load, capsys):
    from boomerang.models import read_model_info

    T = read_model_info(tiny_pixel_dir).num_train_timesteps
    out = tmp_path / "out"
    rc, err = _run(["sample", digit, "--model", tiny_pixel_dir, "--out", out, "--timestep", T], capsys)
    assert rc == 2 and f"[0, {T - 1}]" in err and not out.exists()


def test_negative_timestep_message_names_no_internal_bound(tmp_path, digit, tiny_pixel_dir, no_model_load, capsys):
    # It used to read "must be in [0, 4611686018427387903] (the model has T=4611686018427387904 ...)".
    out = tmp_path / "out"
    rc, err = _run(["sample", digit, "--model", tiny_pixel_dir, "--out", out, "--timestep=-1"], capsys)
    assert rc == 2 and "got -1" in err and not out.exists()
    assert str(2**62) not in err and str(2**62 - 1) not in err and "T=" not in err


def test_level_and_timestep_together_is_a_usage_error(tmp_path, digit, tiny_pixel_dir, capsys):
    out = tmp_path / "out"
    rc, err = _run(["sample", digit, "--model", tiny_pixel_dir, "--out", out, "--level", "0.3", "--timestep", "3"],
                   capsys)
    assert rc == 2 and "not allowed with" in err and not out.exists()


@pytest.mark.parametrize("argv", [["--dtype", "int8"], ["--level", "0.3", "--timestep", "3"], ["--no-such-flag"]])
def test_usage_errors_are_one_line(argv, tmp_path, digit, tiny_pixel_dir, capsys):
    out = tmp_path / "out"
    rc, err = _run(["sample", digit, "--model", tiny_pixel_dir, "--out", out, *argv], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("boomerang: error: ") and not out.exists()


def test_missing_input_file(tmp_path, tiny_pixel_dir, no_model_load, capsys):
    out = tmp_path / "out"
    rc, err = _run(["sample", tmp_path / "nope.png", "--model", tiny_pixel_dir, "--out", out], capsys)
    assert rc == 2 and "nope.png" in err and "Traceback" not in err and not out.exists()


def test_empty_folder(tmp_path, tiny_pixel_dir, no_model_load, capsys):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    rc, err = _run(["sample", tmp_path / "empty", "--model", tiny_pixel_dir, "--out", out], capsys)
    assert rc == 2 and "no image files" in err and not out.exists()


@pytest.mark.parametrize("model", ["missing-folder", "someone/not-a-cached-model"])
def test_missing_model(model, tmp_path, digit, no_model_load, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    rc, err = _run(["sample", digit, "--model", model, "--out", out], capsys)
    assert rc == 2 and err.startswith("boomerang: error: ") and "Traceback" not in err
    assert not out.exists()


def test_output_inside_an_input_folder(tmp_path, tiny_pixel_dir, no_model_load, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    _gray_png(folder / "a.png")
    out = folder / "out"
    rc, err = _run(["sample", folder, "--model", tiny_pixel_dir, "--out", out], capsys)
    assert rc == 2 and "inside the input folder" in err and not out.exists()


@pytest.mark.parametrize("bad", ["truncated.jpg", "empty.png", "not_an_image.png"])
def test_unreadable_image_alone(bad, tmp_path, tiny_pixel_dir, no_model_load, capsys):
    out = tmp_path / "out"
    rc, err = _run(["sample", CASES / bad, "--model", tiny_pixel_dir, "--out", out], capsys)
    assert rc == 2 and bad in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_unreadable_image_among_several_fails_fast(tmp_path, digit, tiny_pixel_dir, no_model_load, capsys):
    """Documented choice: all inputs are read before the model loads; one bad file stops the command."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    _gray_png(folder / "a.png")
    shutil.copy(CASES / "truncated.jpg", folder / "b.jpg")
    out = tmp_path / "out"
    rc, err = _run(["sample", digit, folder, "--model", tiny_pixel_dir, "--out", out], capsys)
    assert rc == 2 and "b.jpg" in err and not out.exists()


def test_unreadable_image_in_a_folder_is_named_by_its_path(tmp_path, tiny_pixel_dir, no_model_load, capsys):
    # Two sub-folders hold a file of the same name; the error must say which one is bad.
    folder = tmp_path / "imgs"
    for sub in ("x", "y"):
        (folder / sub).mkdir(parents=True)
    _gray_png(folder / "x" / "b.png")
    for bad in ("truncated.jpg", "empty.png", "not_an_image.png"):
        target = folder / "y" / "b.png"
        shutil.copy(CASES / bad, target)
        out = tmp_path / "out"
        rc, err = _run(["sample", folder, "--model", tiny_pixel_dir, "--out", out], capsys)
        assert rc == 2 and str(target) in err and len(err.strip().splitlines()) == 1, (bad, err)
        assert not out.exists()


def test_unavailable_cuda_is_exit_2(tmp_path, digit, tiny_pixel_dir, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "out"
    rc, err = _run(["sample", digit, "--model", tiny_pixel_dir, "--device", "cuda", "--out", out], capsys)
    assert rc == 2 and "CUDA" in err and len(err.strip().splitlines()) == 1 and not out.exists()


def test_debug_shows_the_traceback(tmp_path, digit, tiny_pixel_dir):
    with pytest.raises(ValueError):
        main(["sample", str(digit), "--model", str(tiny_pixel_dir), "--level", "2", "--debug",
              "--out", str(tmp_path / "out")])


# --------------------------------------------------------------------------- a real run: files, metadata, sheet


@pytest.fixture(scope="module")
def run_pixel(tmp_path_factory, tiny_pixel_dir):
    """One run shared by the output tests: 2 inputs x levels 0, 0.3, 1.0 x 3 samples."""
    d = tmp_path_factory.mktemp("run")
    a = _gray_png(d / "a.png", size=(20, 14), seed=1)
    b = _gray_png(d / "b.png", size=(9, 33), seed=2)
    out = d / "out"
    rc = main(["sample", str(a), str(b), "--model", str(tiny_pixel_dir), "--level", "0,0.3,1",
               "--num-samples", "3", "--seed", "5", "--out", str(out), *FAST])
    assert rc == 0
    return out, [a, b], json.loads((out / "metadata.json").read_text())


def test_outputs_have_input_sizes_and_no_exif(run_pixel):
    out, inputs, meta = run_pixel
    assert len(meta["samples"]) == 2 * 3 * 3
    for rec in meta["samples"]:
        f = out / rec["file"]
        with Image.open(f) as im:
            assert im.format == "PNG"
            assert im.size == Image.open(inputs[rec["image_index"]]).size == tuple(rec["size"])
            assert not im.getexif() and "exif" not in im.info
    assert sorted(p.name for p in (out / "a").iterdir()) == sorted(
        [f"level{lv}_s{j:03d}.png" for lv in ("0.000", "0.300", "1.000") for j in range(3)] + ["contact_sheet.png"]
    )
    assert not [p for p in out.rglob("*.tmp")]


def test_metadata_fields(run_pixel, tiny_pixel_dir):
    from diffusers import DDPMScheduler

    from boomerang import __version__
    from boomerang.models import read_model_info
    from boomerang.seeds import item_seed

    out, inputs, meta = run_pixel
    T = read_model_info(tiny_pixel_dir).num_train_timesteps
    sched_dir = Path(tiny_pixel_dir) / "scheduler"
    sched = DDPMScheduler.from_pretrained(sched_dir if sched_dir.is_dir() else tiny_pixel_dir)
    assert meta["settings"]["level"] == [0.0, 0.3, 1.0] and meta["settings"]["seed"] == 5
    assert meta["model"]["weights_sha256"] and len(meta["model"]["weights_sha256"]) == 64
    assert meta["model"]["source"] == meta["model"]["id"] == str(Path(tiny_pixel_dir).resolve())
    for rec in meta["samples"]:
        for key in ("seed", "level", "timestep", "alpha_bar", "scheduler", "scheduler_config", "schedule",
                    "num_denoiser_evals", "model", "weights_sha256", "prompt", "negative_prompt", "guidance_scale",
                    "dtype", "device", "boomerang_version", "input", "mse", "psnr", "ssim"):
            assert key in rec, key
        assert rec["seed"] == item_seed(5, rec["image_index"], rec["sample_index"])
        assert rec["model"] == meta["model"]["id"] and rec["weights_sha256"] == meta["model"]["weights_sha256"]
        assert rec["prompt"] is None and rec["guidance_scale"] is None  # a pixel model takes no text
        assert rec["input"] == str(inputs[rec["image_index"]])
        assert rec["boomerang_version"] == __version__ and rec["dtype"] == "float32" and rec["device"] == "cpu"
        if rec["level"] == 0:
            assert rec["timestep"] is None and rec["num_denoiser_evals"] == 0
        else:
            assert rec["timestep"] == round(rec["level"] * (T - 1))
            assert rec["alpha_bar"] == pytest.approx(float(sched.alphas_cumprod[rec["timestep"]]), rel=1e-6)
            assert rec["num_denoiser_evals"] >= 1
            assert rec["scheduler"] == "ddpm" and rec["schedule"] == "exact"


def test_level_0_returns_the_input_pixels_exactly(run_pixel):
    out, inputs, meta = run_pixel
    for rec in meta["samples"]:
        if rec["level"] == 0:
            got = np.asarray(Image.open(out / rec["file"]))
            assert np.array_equal(got, np.asarray(Image.open(inputs[rec["image_index"]])))
            assert rec["mse"] == 0 and rec["psnr"] is None and rec["ssim"] == pytest.approx(1.0)


def test_distances_match_the_files_on_disk(run_pixel):
    from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

    out, inputs, meta = run_pixel
    for rec in meta["samples"]:
        if rec["level"] == 0:
            continue
        x = np.asarray(Image.open(out / rec["file"]), dtype=np.float64) / 255
        ref = np.asarray(Image.open(inputs[rec["image_index"]]), dtype=np.float64) / 255
        assert rec["mse"] == pytest.approx(mean_squared_error(ref, x), rel=1e-5, abs=1e-9)
        assert rec["psnr"] == pytest.approx(peak_signal_noise_ratio(ref, x, data_range=1.0), rel=1e-5)
        assert rec["ssim"] == pytest.approx(structural_similarity(ref, x, data_range=1.0), rel=1e-4, abs=1e-6)


def test_contact_sheet(run_pixel):
    from boomerang.sheet import sheet_size

    out, inputs, meta = run_pixel
    for inp in meta["inputs"]:
        with Image.open(out / inp["contact_sheet"]) as im:
            w, h = inp["size"]
            assert im.size == sheet_size(w, h, 3, 3)
            assert im.mode == "RGB"


# --------------------------------------------------------------------------- reproducibility


def _pngs(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.png"))
            if p.name != "contact_sheet.png"}


def test_batch_size_and_num_samples_never_change_a_sample(tmp_path, tiny_pixel_dir):
    a = _gray_png(tmp_path / "a.png", seed=3)
    b = _gray_png(tmp_path / "b.png", size=(16, 16), seed=4)
    # level 0.3 with --steps 4: two ddpm steps, so the ancestral noise of a step is covered too
    common = ["sample", str(a), str(b), "--model", str(tiny_pixel_dir), "--level", "0.3", "--seed", "1", *FAST]
    assert main([*common, "--num-samples", "3", "--batch-size", "1", "--out", str(tmp_path / "b1")]) == 0
    assert main([*common, "--num-samples", "3", "--batch-size", "7", "--out", str(tmp_path / "b7")]) == 0
    assert main([*common, "--num-samples", "2", "--out", str(tmp_path / "n2")]) == 0
    b1, b7, n2 = (_pngs(tmp_path / d) for d in ("b1", "b7", "n2"))
    assert len(b1) == 6 and b1 == b7
    assert n2 == {k: v for k, v in b1.items() if k.endswith(("_s000.png", "_s001.png"))}
    assert len(set(b1.values())) == 6  # different seeds give different samples
    meta = json.loads((tmp_path / "b1" / "metadata.json").read_text())
    assert {r["num_denoiser_evals"] for r in meta["samples"]} == {2}


def test_folder_input_and_timestep_naming(tmp_path, tiny_pixel_dir):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    _gray_png(folder / "x.png", seed=5)
    _gray_png(folder / "sub" / "x.png", seed=6)  # same stem: folders get the image index
    out = tmp_path / "out"
    assert main(["sample", str(folder), "--model", str(tiny_pixel_dir), "--timestep", "3", "--num-samples", "1",
                 "--out", str(out), *FAST]) == 0
    meta = json.loads((out / "metadata.json").read_text())
    assert [r["file"] for r in meta["samples"]] == ["x_0/t0003_s000.png", "x_1/t0003_s000.png"]
    assert all(r["timestep"] == 3 for r in meta["samples"])


def test_the_docs_name_the_files_as_they_are_written(tmp_path, digit, tiny_pixel_dir, capsys):
    """README and `boomerang sample --help` say t<tttt>_s<jjj>.png and level<L>_s<jjj>.png: what is written."""
    import re

    for flags, pattern in ((["--timestep", "250,7"], r"t\d{4}_s\d{3}\.png"), (["--level", "0.5"], r"level\d\.\d{3}_s\d{3}\.png")):
        out = tmp_path / flags[0].strip("-")
        assert main(["sample", str(digit), "--model", str(tiny_pixel_dir), *flags, "--num-samples", "2",
                     "--out", str(out), *FAST]) == 0
        names = sorted(p.name for p in (out / "digit").glob("*.png") if p.name != "contact_sheet.png")
        assert names and all(re.fullmatch(pattern, n) for n in names), names
    assert sorted(p.name for p in (tmp_path / "timestep" / "digit").glob("t*.png")) == [
        "t0007_s000.png", "t0007_s001.png", "t0250_s000.png", "t0250_s001.png"]
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "t<tttt>_s<jjj>.png" in readme and "level<L>_s<jjj>.png" in readme and "t<t>_s<j>" not in readme
    assert main(["sample", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "t<tttt>_s<jjj>.png" in help_text and "t0250_s000.png" in help_text


def test_a_killed_sample_leaves_no_image_without_metadata_after_a_rerun(tmp_path, digit, tiny_pixel_dir):
    """SIGKILL after the samples are written, before metadata.json: the rerun (here with other
    settings) removes what the killed run wrote; every PNG left is listed in metadata.json."""
    import signal

    out = tmp_path / "out"
    argv = ["sample", str(digit), "--model", str(tiny_pixel_dir), "--level", "0.2,0.6", "--num-samples", "3",
            "--batch-size", "2", "--out", str(out), *FAST]
    pid = os.fork()
    if pid == 0:  # the child is killed the moment every sample is written
        from boomerang.tasks.sample import SampleTask

        SampleTask.finish = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
        try:
            main(argv)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == -signal.SIGKILL
    assert len(list(out.rglob("*.png"))) == 6 and not (out / "metadata.json").exists()
    assert main([*argv[:4], "--level", "0.4", *argv[6:]]) == 0
    meta = json.loads((out / "metadata.json").read_text())
    listed = {r["file"] for r in meta["samples"]} | {i["contact_sheet"] for i in meta["inputs"]}
    assert {p.relative_to(out).as_posix() for p in out.rglob("*.png")} == listed
    assert len(listed) == 4 and not (out / ".job").exists()


def test_from_noise_is_global_sampling(tmp_path, digit, tiny_pixel_dir):
    out = tmp_path / "out"
    assert main(["sample", str(digit), "--model", str(tiny_pixel_dir), "--from-noise", "--num-samples", "2",
                 "--scheduler", "ddim", "--out", str(out), *FAST]) == 0
    meta = json.loads((out / "metadata.json").read_text())
    assert [r["level"] for r in meta["samples"]] == [1.0, 1.0]
    assert all(r["from_noise"] and r["alpha_bar"] is None and r["num_denoiser_evals"] == 4 for r in meta["samples"])
    assert Image.open(out / meta["samples"][0]["file"]).size == Image.open(digit).size


# --------------------------------------------------------------------------- input cases through the command


def test_input_cases_keep_their_size(tmp_path, tiny_pixel_dir):
    odd = tmp_path / "odd_427x640.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (427, 640, 3), dtype=np.uint8)).save(odd)
    names = ["exif_rotate6.jpg", "rgba_hidden_red.png", "palette_transparency.png", "gray16_ramp.png",
             "tiny_1x1.png", "cmyk.jpg"]
    out = tmp_path / "out"
    assert main(["sample", *[str(CASES / n) for n in names], str(odd), "--model", str(tiny_pixel_dir),
                 "--level", "0.05", "--num-samples", "1", "--out", str(out), *FAST]) == 0
    meta = json.loads((out / "metadata.json").read_text())
    expected = {"exif_rotate6": (20, 40), "tiny_1x1": (1, 1), "odd_427x640": (640, 427)}
    for rec in meta["samples"]:
        stem = Path(rec["input"]).stem
        with Image.open(out / rec["file"]) as im:
            assert not im.getexif()
            if stem in expected:
                assert im.size == expected[stem]
            assert np.all(np.isfinite(np.asarray(im, dtype=np.float64)))


# --------------------------------------------------------------------------- text models


def test_stable_diffusion_shaped_model_with_prompt(tmp_path, tiny_sd_dir):
    img = tmp_path / "rgb.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 28, 3), dtype=np.uint8)).save(img)
    out = tmp_path / "out"
    assert main(["sample", str(img), "--model", str(tiny_sd_dir), "--prompt", "person", "--negative-prompt", "blur",
                 "--guidance-scale", "3", "--level", "0,0.4", "--num-samples", "2", "--scheduler", "ddim",
                 "--out", str(out), *FAST]) == 0
    meta = json.loads((out / "metadata.json").read_text())
    assert {r["prompt"] for r in meta["samples"]} == {"person"}
    assert {r["guidance_scale"] for r in meta["samples"]} == {3.0}
    for rec in meta["samples"]:
        assert Image.open(out / rec["file"]).size == (28, 20)


# --------------------------------------------------------------------------- the bundled model


def test_bundled_model_default(tmp_path, capsys):
    from boomerang.assets import default_model_path  # they ship: a missing one is a regression, never a skip

    path = default_model_path()
    assert Path(path).exists(), f"bundled model asset {path} is missing"
    digits = sorted((Path(__file__).parents[2] / "examples" / "digits").glob("*.png"))
    assert digits, "examples/digits/*.png are missing"
    out = tmp_path / "out"
    assert main(["sample", str(digits[0]), "--level", "0.2,0.5", "--num-samples", "2", "--steps", "10",
                 "--out", str(out), "--no-progress"]) == 0
    meta = json.loads((out / "metadata.json").read_text())
    assert len(meta["samples"]) == 4


# --------------------------------------------------------------------------- schedulers, schedules, edge levels


@pytest.mark.parametrize("scheduler", ["ddpm", "ddim", "euler", "dpmsolver++"])
def test_every_scheduler_tiny_and_full_levels(scheduler, tmp_path, digit, tiny_pixel_dir):
    """Level 0.005 on a 15-step budget still takes one step; level 1 starts at T-1."""
    out = tmp_path / "out"
    assert main(["sample", str(digit), "--model", str(tiny_pixel_dir), "--scheduler", scheduler, "--eta", "0.5",
                 "--level", "0.005,1", "--steps", "15", "--num-samples", "1", "--out", str(out), "--no-progress"]) == 0
    meta = json.loads((out / "metadata.json").read_text())
    low, high = meta["samples"]
    assert (low["timestep"], low["num_denoiser_evals"]) == (5, 1)
    assert (high["timestep"], high["num_denoiser_evals"]) == (999, 15)
    assert {r["scheduler"] for r in meta["samples"]} == {scheduler}
    for rec in meta["samples"]:
        assert Image.open(out / rec["file"]).size == Image.open(digit).size


def test_compatibility_schedules(tmp_path, digit, tiny_pixel_dir):
    from diffusers import DDPMScheduler

    sched = DDPMScheduler.from_pretrained(Path(tiny_pixel_dir) / "scheduler")
    sched.set_timesteps(4)
    for schedule, expected_t in [("img2img", int(sched.timesteps[4 - 2])), ("reference", 500)]:
        out = tmp_path / schedule
        assert main(["sample", str(digit), "--model", str(tiny_pixel_dir), "--schedule", schedule, "--level", "0.5",
                     "--num-samples", "1", "--out", str(out), *FAST]) == 0
        (rec,) = json.loads((out / "metadata.json").read_text())["samples"]
        assert (rec["schedule"], rec["timestep"]) == (schedule, expected_t)
        assert rec["alpha_bar"] == pytest.approx(float(sched.alphas_cumprod[expected_t]), rel=1e-6)


def test_several_unreadable_images_are_all_named(tmp_path, tiny_pixel_dir, no_model_load, capsys):
    """One error line names every unusable input and their count, not only the first."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    _gray_png(folder / "a.png")
    bad = ["b.jpg", "c.png", "d.png"]
    for name, case in zip(bad, ["truncated.jpg", "empty.png", "not_an_image.png"]):
        shutil.copy(CASES / case, folder / name)
    _gray_png(folder / "e.png")
    out = tmp_path / "out"
    rc, err = _run(["sample", folder, "--model", tiny_pixel_dir, "--out", out], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and not out.exists()
    assert "3 inputs cannot be used" in err
    for name in bad:
        assert str(folder / name) in err
    assert "a.png" not in err and "e.png" not in err
    rc, err = _run(["sample", folder, "--model", tmp_path / "no-model", "--out", out], capsys)
    assert rc == 2 and "3 inputs cannot be used" in err and all(str(folder / n) in err for n in bad)
