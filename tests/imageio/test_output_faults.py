"""Faults of issue 18 at the image I/O layer: an unwritable ``--out`` and the colour-to-gray warning.

* ``--out`` that cannot be a folder (under a regular file, an existing file) or cannot be written
  (read-only) is refused before any work by ``check_output_dir``: exit 2, one line naming ``--out``,
  nothing written. Tests run as root in CI, where permission bits do not stop a write, so read-only is
  simulated where the check probes (creating a temporary file fails with EROFS), honestly: that probe
  is exactly what the check relies on.
* A disk that fills up during the writes (ENOSPC, simulated at ``os.fsync``) gives one line naming the
  file and the cause, and nothing half-written.
* Every command that feeds a colour image to a one-channel model says "colour to gray" once per file,
  also when the image already has the model's size (it used to be said by ``enhance`` only).
"""

from __future__ import annotations

import errno
import os
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from boomerang import _imwrite, fileio, imageio  # noqa: E402
from boomerang.cli import main  # noqa: E402
from boomerang.errors import SettingError  # noqa: E402

FAST = ["--steps", "2", "--no-progress", "--threads", "1"]
COMMANDS = ("sample", "augment", "anonymise", "enhance")


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every file (with its bytes) and folder under ``root``."""
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def _inputs(folder: Path, colour: bool = False, size: int = 8) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        if colour:
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB").save(folder / f"{name}.jpg")
        else:
            Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(folder / f"{name}.png")
    return folder


def _argv(command: str, src: Path, out: Path, model: Path) -> list[str]:
    inputs = sorted(str(p) for p in src.iterdir()) if command == "sample" else [str(src)]
    extra = ["--scale", "2"] if command == "enhance" else []
    return [command, *inputs, "--out", str(out), "--model", str(model), "--level", "0.2", *extra, *FAST]


# ----------------------------------------------------------------------------- check_output_dir


def test_out_under_a_file_or_a_file_is_refused(tmp_path: Path) -> None:
    inp = _inputs(tmp_path / "in")
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(SettingError, match="cannot be created: .*file.txt is a file, not a folder") as e:
        imageio.check_output_dir(blocker / "sub" / "out", [inp])
    assert e.value.render(lambda n: "--" + n).startswith("--out ")
    with pytest.raises(SettingError, match="exists and is not a folder"):
        imageio.check_output_dir(blocker, [inp])
    before = _tree(tmp_path)
    assert imageio.check_output_dir(tmp_path / "new" / "out", [inp]) == (tmp_path / "new" / "out").resolve()
    assert imageio.check_output_dir(tmp_path, [inp]) == tmp_path.resolve()  # an existing writable folder
    assert _tree(tmp_path) == before  # the probe file is gone, nothing was created


@pytest.mark.parametrize("code, exists", [(errno.EROFS, True), (errno.EACCES, False)])
def test_an_unwritable_out_is_refused(tmp_path: Path, monkeypatch, code: int, exists: bool) -> None:
    inp = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    if exists:
        out.mkdir()

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(_imwrite, "tempfile", types.SimpleNamespace(mkstemp=refuse))
    with pytest.raises(SettingError, match=os.strerror(code)) as e:
        imageio.check_output_dir(out, [inp])
    assert str(out) in str(e.value) and ("is not writable" if exists else f"cannot be created in {tmp_path}") in str(e.value)


@pytest.mark.parametrize("command", COMMANDS)
def test_out_under_a_file_exits_2_before_any_work(command: str, tmp_path: Path, tiny_pixel_dir: Path, capsys) -> None:
    src = _inputs(tmp_path / "in")
    (tmp_path / "file.txt").write_text("x")
    out = tmp_path / "file.txt" / "out"
    before = _tree(tmp_path)
    assert main(_argv(command, src, out, tiny_pixel_dir)) == 2
    err = capsys.readouterr().err
    assert err.startswith("boomerang: error: --out ") and err.count("\n") == 1, err
    assert "file.txt is a file, not a folder" in err and "Traceback" not in err
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("command", ["sample", "anonymise"])
def test_a_read_only_out_exits_2_before_any_work(command: str, tmp_path: Path, tiny_pixel_dir: Path, monkeypatch,
                                                  capsys) -> None:
    src = _inputs(tmp_path / "in")
    (tmp_path / "ro").mkdir()
    out = tmp_path / "ro" / "out"

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(_imwrite, "tempfile", types.SimpleNamespace(mkstemp=read_only))
    before = _tree(tmp_path)
    assert main(_argv(command, src, out, tiny_pixel_dir)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"boomerang: error: --out {out} cannot be created in {tmp_path / 'ro'}") and err.count("\n") == 1
    assert "Read-only file system" in err
    assert _tree(tmp_path) == before


# ----------------------------------------------------------------------------- a full disk while writing


def _disk_full(monkeypatch) -> None:
    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fileio.os, "fsync", fsync)


def test_the_writer_names_the_path_and_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "x.png"
    target.write_bytes(b"old")
    _disk_full(monkeypatch)
    with pytest.raises(fileio.OutputWriteError) as e:
        imageio.save_image(np.zeros((4, 4), np.float32), target)
    assert str(e.value) == f"cannot write {target}: No space left on device; free some space or choose another output folder"
    assert e.value.errno == errno.ENOSPC and isinstance(e.value, OSError) and isinstance(e.value, ValueError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"] and target.read_bytes() == b"old"
    with pytest.raises(fileio.OutputWriteError, match=f"cannot write {tmp_path / 'missing' / 'y.json'}: No such file"):
        fileio.write_json(tmp_path / "missing" / "y.json", {})


def test_a_full_disk_during_sample_is_one_line_and_nothing_written(tmp_path: Path, tiny_pixel_dir: Path, monkeypatch,
                                                                    capsys) -> None:
    src = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    _disk_full(monkeypatch)
    assert main(_argv("sample", src, out, tiny_pixel_dir)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"boomerang: error: cannot write {out}") and "No space left on device" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


def test_a_full_disk_during_a_dataset_job_is_one_line_and_nothing_half_written(tmp_path: Path, tiny_pixel_dir: Path,
                                                                               monkeypatch, capsys) -> None:
    src = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    _disk_full(monkeypatch)
    assert main(_argv("augment", src, out, tiny_pixel_dir)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"boomerang: error: cannot write {out}") and "No space left on device" in err, err
    assert err.count("\n") == 1
    assert not [p for p in out.rglob("*") if p.is_file()]  # no temporary files, no half-written ones


# ----------------------------------------------------------------------------- colour to gray


@pytest.mark.parametrize("command", COMMANDS)
def test_colour_to_a_gray_model_is_said_once_per_file_by_every_command(command: str, tmp_path: Path,
                                                                      tiny_pixel_dir: Path, capsys) -> None:
    """8x8 colour JPEGs for the 8x8 one-channel model: the size needs no fitting (the case of a 28x28
    colour JPEG and the bundled model); every command says "colour to gray" for each file, once."""
    src = _inputs(tmp_path / "in", colour=True)
    assert main(_argv(command, src, tmp_path / "out", tiny_pixel_dir)) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "colour to gray" in line]
    assert len(lines) == 2, err
    assert lines[0].startswith("boomerang: warning: a.jpg: colour to gray") and lines[1].startswith(
        "boomerang: warning: b.jpg: colour to gray")


def test_fit_warning_says_colour_to_gray_on_every_path() -> None:
    colour = imageio.LoadedImage(np.zeros((8, 8, 3), np.float32), (8, 8), 8, False, "c.jpg")
    gray = imageio.LoadedImage(np.zeros((8, 8, 3), np.float32), (8, 8), 8, True, "g.png")
    x = np.zeros((8, 8, 1), np.float32)
    for fitted in (imageio.fit_for_model(x, native_size=8), imageio.fit_for_model(x, multiple_of=3),
                   imageio.fit_for_model(x)):
        assert fitted.method in ("identity", "pad")
        assert imageio.fit_warning(colour, fitted, 1) == (
            "c.jpg: colour to gray: this model takes one-channel images, so the samples are gray. "
            "For colour images use a colour model (--model)")
        assert imageio.fit_warning(gray, fitted, 1) is None
        assert imageio.fit_warning(colour, fitted, 3) is None


def test_atomic_write_mode_follows_umask_and_skips_a_stale_temp_name(tmp_path, monkeypatch):
    """The file gets 0o666 & ~umask (as a plain open() would); a temporary name left by an
    earlier process of the same id is skipped, not overwritten; nothing else is left behind."""
    old = os.umask(0o027)
    try:
        stale = tmp_path / f".a.png.{os.getpid()}_{next(fileio._TEMP_COUNTER) + 1}.tmp"
        stale.write_bytes(b"left by a killed run")
        fileio.atomic_write_bytes(tmp_path / "a.png", b"x" * 100_000)
    finally:
        os.umask(old)
    assert (tmp_path / "a.png").read_bytes() == b"x" * 100_000
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == 0o640
    assert stale.read_bytes() == b"left by a killed run"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.png", stale.name])


def test_atomic_write_loops_over_short_writes(tmp_path, monkeypatch):
    """os.write may write fewer bytes than asked: every byte still reaches the file."""
    real = os.write
    monkeypatch.setattr(fileio.os, "write", lambda fd, data: real(fd, bytes(data[:7])))
    fileio.atomic_write_bytes(tmp_path / "b.bin", bytes(range(256)) * 3)
    assert (tmp_path / "b.bin").read_bytes() == bytes(range(256)) * 3
