"""``boomerang serve`` without a browser: the command's checks, and that the page's
runs are byte for byte ``boomerang sample``'s (same PNGs, same metadata.json).

The page's handlers (``boomerang.serve.page.PageActions``) are called directly,
with the tiny random-weight model of conftest.py; the browser test
(test_serve_browser.py) drives the same handlers through a real page.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from boomerang.cli import main

ROOT = Path(__file__).resolve().parents[2]
CASES = Path(__file__).parents[1] / "data" / "cases"
DIGIT = ROOT / "examples" / "digits" / "7.png"


def test_serve_registration_imports_neither_torch_nor_gradio():
    code = (
        "import sys\n"
        "from boomerang.cli import build_parser\n"
        "p = build_parser()\n"
        "p.parse_args(['serve', '--port', '1234'])\n"
        "print('torch' in sys.modules, 'gradio' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_serve_without_gradio_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    rc = main(["serve"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("boomerang: error:")
    assert 'pip install -e ".[app]"' in err


@pytest.mark.parametrize("argv, needle", [
    (["--port", "0"], "--port"),
    (["--port", "http"], "--port"),
    (["--threads", "0"], "--threads"),
    (["--device", "tpu"], "--device"),
    (["--model", "/nonexistent/model"], "/nonexistent/model"),
])
def test_serve_bad_flags_one_line_before_any_model_loads(argv, needle, capsys, monkeypatch):
    import boomerang.models

    monkeypatch.setattr(boomerang.models, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    rc = main(["serve", *argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and needle in err


# --------------------------------------------------------------------------- the page's runs == the CLI's


@pytest.fixture
def actions(tiny_pixel_dir, tmp_path):
    from boomerang.serve import page, runs

    cache = runs.ModelCache(runs.ModelSpec(model=str(tiny_pixel_dir)))
    return page.PageActions(cache, runs.RunFolders(tmp_path / "runs"))


COMMON = dict(num_samples=3, seed=5, steps=8, scheduler="auto", schedule="exact", eta=0.0, background="white")


def _common(**over):
    c = {**COMMON, **over}
    return [c[k] for k in ("num_samples", "seed", "steps", "scheduler", "schedule", "eta", "background")] + ["", "", 7.5]


def _strip(meta: dict) -> dict:
    """metadata.json without what names the run's own folders and command line."""
    meta = json.loads(json.dumps(meta))
    meta.pop("command")
    meta["settings"].pop("out")
    meta["settings"].pop("threads")  # resolved per process (the cores idle at its start)
    for inp in meta["inputs"]:
        inp["file"] = Path(inp["file"]).name
    for r in meta["samples"]:
        r["input"] = Path(r["input"]).name
    return meta


def _cli(tmp_path, image: Path, model: Path, level: str, **over) -> Path:
    c = {**COMMON, **over}
    out = tmp_path / "cli-out"
    rc = main(["sample", str(image), "--model", str(model), "--level", level, "--num-samples", str(c["num_samples"]),
               "--seed", str(c["seed"]), "--steps", str(c["steps"]), "--scheduler", c["scheduler"], "--no-progress",
               "--out", str(out)])
    assert rc == 0
    return out


def test_page_samples_are_byte_identical_to_boomerang_sample(actions, tiny_pixel_dir, tmp_path):
    gallery, info, files, status = actions.run_samples(str(DIGIT), 0.3, *_common())
    assert status.startswith("done: 3 samples")
    cli_out = _cli(tmp_path, DIGIT, tiny_pixel_dir, "0.3")
    cli_meta = json.loads((cli_out / "metadata.json").read_text())
    page_meta = json.loads(Path(files[1]).read_text())
    assert Path(files[1]).name == "metadata.json"
    assert _strip(page_meta) == _strip(cli_meta)
    assert len(gallery) == 3
    for (path, caption), rec in zip(gallery, cli_meta["samples"]):
        assert Path(path).read_bytes() == (cli_out / rec["file"]).read_bytes(), rec["file"]
        assert caption == f"s{rec['sample_index']}"
    # The shown timestep and alpha_bar are the run's own.
    rec = cli_meta["samples"][0]
    assert f"t = {rec['timestep']} · alpha_bar = {rec['alpha_bar']:.4f}" in info
    # The zip holds every file of the run, byte for byte, metadata.json included.
    with zipfile.ZipFile(files[0]) as z:
        names = set(z.namelist())
        assert names == {str(p.relative_to(cli_out)) for p in cli_out.rglob("*") if p.is_file()}
        for rec in cli_meta["samples"]:
            assert z.read(rec["file"]) == (cli_out / rec["file"]).read_bytes()
        assert z.read("7/contact_sheet.png") == (cli_out / "7" / "contact_sheet.png").read_bytes()
    # The recorded command reproduces the run with the CLI.
    cmd = page_meta["command"]
    assert cmd[:2] == ["boomerang", "sample"] and "--level=0.300" in cmd and "--seed=5" in cmd


def test_page_sweep_is_the_cli_contact_sheet(actions, tiny_pixel_dir, tmp_path):
    sheet, info, files, status = actions.run_sweep(str(DIGIT), "0, 0.2, 0.6", *_common(num_samples=2))
    assert status.startswith("done: 6 samples")
    cli_out = _cli(tmp_path, DIGIT, tiny_pixel_dir, "0,0.2,0.6", num_samples=2)
    assert Path(sheet).read_bytes() == (cli_out / "7" / "contact_sheet.png").read_bytes()
    assert _strip(json.loads(Path(files[1]).read_text())) == _strip(json.loads((cli_out / "metadata.json").read_text()))
    assert info.count("level ") == 3 and "t = none" in info


@pytest.mark.parametrize("case", ["truncated.jpg", "empty.png", "not_an_image.png"])
def test_bad_upload_gives_the_cli_line_and_the_page_goes_on(actions, tiny_pixel_dir, tmp_path, case, capsys,
                                                             monkeypatch):
    upload = tmp_path / "upload" / case  # gradio keeps the visitor's file name in its own temp folder
    upload.parent.mkdir()
    shutil.copyfile(CASES / case, upload)
    monkeypatch.chdir(CASES)
    assert main(["sample", case, "--model", str(tiny_pixel_dir), "--out", str(tmp_path / "never")]) == 2
    cli_line = capsys.readouterr().err.strip()
    assert cli_line.startswith("boomerang: error:") and case in cli_line
    preview, status = actions.check_input(str(upload))
    assert preview is None and status == cli_line
    gallery, info, files, status = actions.run_samples(str(upload), 0.3, *_common())
    assert (gallery, files) == ([], None) and status == cli_line
    # ... and the next run works.
    gallery, _, _, status = actions.run_samples(str(DIGIT), 0.3, *_common(num_samples=1))
    assert status.startswith("done: 1 samples") and len(gallery) == 1


def test_bad_settings_name_the_flag(actions):
    for level, common, needle in [("0.3", _common(steps=0), "--steps"), ("0.3", _common(scheduler="pndm"), "pndm"),
                                  ("1.5", _common(), "--level")]:
        gallery, _, files, status = actions.run_sweep(str(DIGIT), level, *common)
        assert gallery is None and files is None
        assert status.startswith("boomerang: error:") and needle in status, status


def test_level_read_out_uses_the_models_schedule(actions):
    from boomerang.schedulers import make_scheduler

    ab = make_scheduler("ddpm", actions.model.scheduler_config).alphas_cumprod
    text = actions.info.text(0.5, 50)
    assert f"t = 500 · alpha_bar = {float(ab[500]):.4f} · 26 denoiser evaluations" in text  # ceil(50 * 501 / 1000)
    assert "no noise" in actions.info.text(0, 50)
    assert "--level" in actions.info.text(1.5, 50)


def test_model_loads_once(tiny_pixel_dir, tmp_path, monkeypatch):
    import boomerang.models
    from boomerang.serve import page, runs

    calls = []
    real = boomerang.models.load_model
    monkeypatch.setattr(boomerang.models, "load_model", lambda *a, **k: calls.append(1) or real(*a, **k))
    acts = page.PageActions(runs.ModelCache(runs.ModelSpec(model=str(tiny_pixel_dir))), runs.RunFolders(tmp_path))
    for _ in range(2):
        assert acts.run_samples(str(DIGIT), 0.2, *_common(num_samples=1))[3].startswith("done: 1 samples")
    assert len(calls) == 1


def test_run_folders_are_kept_bounded(tmp_path):
    from boomerang.serve import runs

    folders = runs.RunFolders(tmp_path / "r", keep=3)
    made = [folders.new() for _ in range(5)]
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == sorted(p.name for p in made[-3:])


def test_text_model_page_passes_the_prompt_like_the_cli(tiny_sd_dir, tmp_path):
    from boomerang.serve import page, runs

    acts = page.PageActions(runs.ModelCache(runs.ModelSpec(model=str(tiny_sd_dir))), runs.RunFolders(tmp_path / "r"))
    assert acts.takes_prompt
    common = _common(num_samples=2, steps=4)
    common[-3:] = ["a cat", "blurry", 3.0]
    gallery, info, files, status = acts.run_samples(str(DIGIT), 0.5, *common)
    assert status.startswith("done: 2 samples"), status
    out = tmp_path / "cli"
    assert main(["sample", str(DIGIT), "--model", str(tiny_sd_dir), "--level", "0.5", "--num-samples", "2",
                 "--seed", "5", "--steps", "4", "--prompt", "a cat", "--negative-prompt", "blurry",
                 "--guidance-scale", "3", "--no-progress", "--out", str(out)]) == 0
    cli_meta = json.loads((out / "metadata.json").read_text())
    assert _strip(json.loads(Path(files[1]).read_text())) == _strip(cli_meta)
    assert cli_meta["samples"][0]["prompt"] == "a cat"
    for (path, _), rec in zip(gallery, cli_meta["samples"]):
        assert Path(path).read_bytes() == (out / rec["file"]).read_bytes()


@pytest.mark.parametrize("fixture, visible", [("tiny_pixel_dir", False), ("tiny_sd_dir", True)])
def test_prompt_fields_only_for_text_models(fixture, visible, request, tmp_path):
    import gradio as gr

    from boomerang.serve import page, runs

    acts = page.PageActions(runs.ModelCache(runs.ModelSpec(model=str(request.getfixturevalue(fixture)))),
                            runs.RunFolders(tmp_path / "r"))
    app = page.build_app(acts, examples=page.find_examples())
    shown = {b.label: b.visible for b in app.blocks.values() if isinstance(b, (gr.Textbox, gr.Number))}
    assert shown["Prompt"] is visible and shown["Negative prompt"] is visible and shown["Guidance scale"] is visible
    assert shown["Seed"] is True


def test_page_shows_the_clis_warnings_on_every_run(actions, tiny_pixel_dir, tmp_path, capsys):
    # The tiny model takes 8x8 gray: a 28x28 digit is fitted with a warning; level 0.2 with
    # 4 steps gives less than one step on the grid.
    assert main(["sample", str(DIGIT), "--model", str(tiny_pixel_dir), "--level", "0.2", "--steps", "4",
                 "--num-samples", "1", "--no-progress", "--out", str(tmp_path / "cli")]) == 0
    cli_warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("boomerang: warning:")]
    assert cli_warnings
    for _ in range(2):  # a server runs many times: the second run warns as well
        status = actions.run_samples(str(DIGIT), 0.2, *_common(num_samples=1, steps=4))[3]
        assert status.split("\n\n") == ["done: 1 samples", *cli_warnings]


# --------------------------------------------------------------------------- the port and the host, up front


def _busy_port():
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock, sock.getsockname()[1]


def _no_model(monkeypatch):
    import boomerang.models
    import boomerang.serve.runs

    monkeypatch.setattr(boomerang.models, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    monkeypatch.setattr(boomerang.serve.runs.ModelCache, "get", lambda *a, **k: pytest.fail("model loaded"),
                        raising=False)


def test_serve_on_a_busy_port_is_one_line_exit_2(capsys, monkeypatch):
    """It used to print gradio's traceback and its advice (GRADIO_SERVER_PORT), exit 1."""
    _no_model(monkeypatch)
    sock, port = _busy_port()
    with sock:
        rc = main(["serve", "--port", str(port)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith(f"boomerang: error: --port {port}: the port is already in use")
    assert "choose another --port" in err and "GRADIO" not in err and "Traceback" not in err


@pytest.mark.parametrize("host, needle", [
    ("nosuch.invalid", "--host 'nosuch.invalid' is not an address or a name this machine can resolve"),
    ("192.0.2.1", "--host 192.0.2.1 is not an address of this machine"),  # TEST-NET-1: nobody's address
])
def test_serve_on_a_bad_host_is_one_line_exit_2(host, needle, capsys, monkeypatch):
    _no_model(monkeypatch)
    rc = main(["serve", "--host", host, "--port", "1234"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("boomerang: error: " + needle) and "127.0.0.1" in err


def test_check_bind_takes_a_free_port_and_names_a_busy_one():
    from boomerang.serve import check_bind

    sock, port = _busy_port()
    with sock:
        with pytest.raises(ValueError, match=f"--port {port}: the port is already in use"):
            check_bind("127.0.0.1", port)
    check_bind("127.0.0.1", port)  # free again (the listening socket is closed)


def test_a_port_taken_after_the_check_is_still_one_line(tiny_pixel_dir, capsys, monkeypatch):
    """If gradio cannot bind after all (the port was taken meanwhile), its error becomes our line."""
    from boomerang.serve import page

    def launch(*a, **k):
        raise OSError("Cannot find empty port in range: 1-1. You can specify a different port by setting the "
                      "GRADIO_SERVER_PORT environment variable or passing the `server_port` parameter to `launch()`.")

    monkeypatch.setattr(page, "launch", launch)
    sock, port = _busy_port()
    sock.close()
    rc = main(["serve", "--model", str(tiny_pixel_dir), "--port", str(port)])
    err = capsys.readouterr().err.splitlines()
    assert rc == 2
    assert err[-1].startswith(f"boomerang: error: --host 127.0.0.1 --port {port}: the server could not start")
    assert "choose another --port" in err[-1] and "GRADIO" not in err[-1]


# --------------------------------------------------------------------------- only boomerang's own warnings


def _warn_like_other_libraries(monkeypatch):
    """Each run also meets what other libraries do: gradio's patched tqdm leaves an open /dev/null
    (a ResourceWarning when it is collected) and a library warns with a UserWarning of its own."""
    import os
    import warnings

    from boomerang import imageio

    fit = imageio.warn_fit

    def warn_fit(*a, **k):
        open(os.devnull, "w")  # noqa: SIM115 - dropped at once: "unclosed file <... '/dev/null' ...>"
        warnings.warn_explicit("a library's own advice", UserWarning, "otherlib.py", 1, module="otherlib")
        return fit(*a, **k)

    monkeypatch.setattr(imageio, "warn_fit", warn_fit)


def test_the_page_says_only_boomerangs_warnings(actions, tiny_pixel_dir, tmp_path, capsys, monkeypatch):
    _warn_like_other_libraries(monkeypatch)
    for _ in range(2):
        status = actions.run_samples(str(DIGIT), 0.2, *_common(num_samples=1, steps=4))[3]
        lines = status.split("\n\n")
        assert lines[0] == "done: 1 samples" and len(lines) == 2, status
        assert lines[1].startswith("boomerang: warning: 7.png: fitted to this model's 8x8 gray input")
        assert "unclosed" not in status and "advice" not in status


def test_the_cli_says_only_boomerangs_warnings(tiny_pixel_dir, tmp_path, capsys, monkeypatch):
    _warn_like_other_libraries(monkeypatch)
    assert main(["sample", str(DIGIT), "--model", str(tiny_pixel_dir), "--level", "0.2", "--steps", "4",
                 "--num-samples", "1", "--no-progress", "--out", str(tmp_path / "cli")]) == 0
    said = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("boomerang: warning:")]
    assert len(said) == 1 and "fitted to this model's 8x8 gray input" in said[0], said


# --------------------------------------------------------------------------- photos on the page


PHOTO = ROOT / "examples" / "photos" / "chelsea_96.png"


def test_page_offers_a_held_out_photo_and_the_photo_model(tmp_path):
    """Without --model the page offers the default rule, the digit model and ddpm-photos, and its
    examples include the shipped held-out photo crop; with --model only that model."""
    import gradio as gr

    from boomerang.serve import page, runs
    from boomerang.training.photos import HELD_OUT

    examples = page.find_examples()
    assert PHOTO in examples and DIGIT in examples
    assert any(name in PHOTO.name for name in HELD_OUT)
    assert page.model_choices(runs.ModelSpec()) == [page.AUTO_MODEL, "ddpm-mnist5k", "ddpm-photos"]
    assert page.model_choices(runs.ModelSpec(model="some/model")) == ["some/model"]
    acts = page.PageActions(runs.ModelCache(runs.ModelSpec()), runs.RunFolders(tmp_path / "r"))
    app = page.build_app(acts, examples=examples)
    (dropdown,) = [b for b in app.blocks.values() if isinstance(b, gr.Dropdown) and b.label == "Model"]
    assert [c[0] for c in dropdown.choices] == [page.AUTO_MODEL, "ddpm-mnist5k", "ddpm-photos"]
    assert dropdown.value == page.AUTO_MODEL
    # the default rule, as the CLI applies it
    assert acts.resolve_model(page.AUTO_MODEL, str(DIGIT))[0] is None  # the bundled digit model
    name, why = acts.resolve_model(page.AUTO_MODEL, str(PHOTO))
    assert name == "ddpm-photos" and "colour" in why
    assert acts.resolve_model("ddpm-photos", str(DIGIT))[0] == "ddpm-photos"


def test_page_photo_run_is_the_clis_photo_run(tmp_path):
    """A run on the shipped photo with the automatic choice: colour samples at the photo's own
    size from ddpm-photos, byte for byte what ``boomerang sample PHOTO`` (no --model) writes."""
    from boomerang.serve import page, runs

    acts = page.PageActions(runs.ModelCache(runs.ModelSpec()), runs.RunFolders(tmp_path / "r"))
    common = _common(num_samples=1, steps=4)
    gallery, info, files, status = acts.run_samples(str(PHOTO), 0.1, *common, model=page.AUTO_MODEL)
    assert status.startswith("done: 1 samples"), status
    assert "model ddpm-photos" in info
    page_meta = json.loads(Path(files[1]).read_text())
    assert page_meta["samples"][0]["model"] == "ddpm-photos"
    out = tmp_path / "cli"
    assert main(["sample", str(PHOTO), "--level", "0.1", "--num-samples", "1", "--seed", "5", "--steps", "4",
                 "--no-progress", "--out", str(out)]) == 0
    cli_meta = json.loads((out / "metadata.json").read_text())
    rec = cli_meta["samples"][0]
    from PIL import Image

    with Image.open(gallery[0][0]) as im:
        assert im.size == (96, 96) and im.mode == "RGB"
    assert Path(gallery[0][0]).read_bytes() == (out / rec["file"]).read_bytes()
