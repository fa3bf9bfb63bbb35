"""``boomerang audit-privacy`` through the real CLI (in process, as tests/tasks/test_cli_cases.py does)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from boomerang.cli import main
from boomerang.privacy import Link, write_links

CASES = Path(__file__).parents[1] / "data" / "cases"


@pytest.fixture(scope="module")
def digit_dirs(tmp_path_factory):
    """REAL: 60 real digits in class folders; ANON: noisy copies of 20 of them under opaque names; links."""
    from boomerang.data import load_dataset

    ds = load_dataset("mnist5k")
    root = tmp_path_factory.mktemp("audit")
    real, anon = root / "real", root / "anon"
    rng = np.random.default_rng(0)
    names = []
    for i in range(60):
        name = f"{ds.labels[i]}/d{i:02d}.png"
        (real / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(ds.images[i, 0]).save(real / name)
        names.append(name)
    anon.mkdir()
    links = []
    for k, i in enumerate(range(0, 60, 3)):
        noisy = np.clip(ds.images[i, 0].astype(int) + rng.integers(-20, 21, (28, 28)), 0, 255).astype(np.uint8)
        out = f"{rng.integers(1 << 60):016x}.png"
        Image.fromarray(noisy).save(anon / out)
        links.append(Link(names[i], out))
    write_links(root / "links.jsonl", links)
    return real, anon, root / "links.jsonl"


def test_audit_privacy_prints_the_table_and_writes_json(digit_dirs, tmp_path, capsys):
    real, anon, links = digit_dirs
    code = main(["audit-privacy", str(real), str(anon), "--link-file", str(links), "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert code == 0
    assert "20 anonymised images, 60 real candidates" in out and "top-1" in out and "top-5" in out
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["features"] == "pixels" and rep["num_queries"] == 20 and rep["top1"]["hits"] == 20
    assert rep["chance_top1"] == pytest.approx(1 / 60) and rep["skipped"] == []
    assert sum(b["count"] for b in rep["rank_histogram"]) == 20


@pytest.mark.parametrize("features", ["ssim", "classifier"])
def test_audit_privacy_other_feature_spaces(digit_dirs, features, capsys):
    real, anon, links = digit_dirs
    assert main(["audit-privacy", str(real), str(anon), "--link-file", str(links), "--features", features]) == 0
    out = capsys.readouterr().out
    assert f"features {features}" in out and "100.0%" in out  # light noise: every source found first


def test_audit_privacy_skips_bad_files_with_exit_3(digit_dirs, tmp_path, capsys):
    real, anon, links = digit_dirs
    anon2 = tmp_path / "anon"
    shutil.copytree(anon, anon2)
    extra = [Link("0/d01.png", bad) for bad in ("truncated.jpg", "empty.png", "not_an_image.png")]
    for ln in extra:
        shutil.copy(CASES / ln.output, anon2 / ln.output)
    lines = links.read_text().splitlines() + [json.dumps({"source": ln.source, "output": ln.output}) for ln in extra]
    (tmp_path / "l.jsonl").write_text("\n".join(lines) + "\n")
    code = main(["audit-privacy", str(real), str(anon2), "--link-file", str(tmp_path / "l.jsonl"),
                 "--json", str(tmp_path / "r.json")])
    assert code == 3
    assert "skipped: 3" in capsys.readouterr().out
    rep = json.loads((tmp_path / "r.json").read_text())
    assert sorted(s["file"] for s in rep["skipped"]) == sorted(f"ANON_DIR/{ln.output}" for ln in extra)
    assert rep["num_queries"] == 20


@pytest.mark.parametrize("extra, words", [
    (["--size", "0"], "--size must be a positive integer"),
    (["--threads", "x"], "--threads must be an integer >= 1"),
    (["--background", "nocolour"], "--background"),
    (["--features", "lpips"], "invalid choice"),
])
def test_audit_privacy_bad_flags(digit_dirs, extra, words, capsys):
    real, anon, links = digit_dirs
    assert main(["audit-privacy", str(real), str(anon), "--link-file", str(links), *extra]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_audit_privacy_errors_have_the_prefix_of_every_command(digit_dirs, tmp_path, capsys):
    """One line, ``boomerang: error: ...``, exactly as ``boomerang sample`` says it."""
    assert main(["sample", str(tmp_path / "missing.png")]) == 2
    sample_err = capsys.readouterr().err
    prefix = "boomerang: error: "
    assert sample_err.startswith(prefix), sample_err
    real, anon, links = digit_dirs
    for argv in ([str(real), str(tmp_path / "nope"), "--link-file", str(links)],  # checked by the command
                 [str(real), str(anon), "--link-file", str(tmp_path / "none.jsonl")],  # by the audit
                 [str(real), str(anon), "--link-file", str(links), "--size", "0"],
                 [str(real), str(anon)]):  # by the parser: --link-file is required
        assert main(["audit-privacy", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith(prefix) and err.count("\n") == 1, (argv, err)


def test_audit_privacy_refuses_missing_inputs_and_writing_into_inputs(digit_dirs, tmp_path, capsys):
    real, anon, links = digit_dirs
    assert main(["audit-privacy", str(real), str(tmp_path / "nope"), "--link-file", str(links)]) == 2
    assert "ANON_DIR" in capsys.readouterr().err
    assert main(["audit-privacy", str(real), str(anon), "--link-file", str(tmp_path / "none.jsonl")]) == 2
    assert "no such link file" in capsys.readouterr().err
    before = sorted(p.name for p in anon.iterdir())
    assert main(["audit-privacy", str(real), str(anon), "--link-file", str(links),
                 "--json", str(anon / "report.json")]) == 2
    assert "inside ANON_DIR" in capsys.readouterr().err
    assert sorted(p.name for p in anon.iterdir()) == before


def test_audit_privacy_help_imports_no_torch():
    code = ("import sys\nfrom boomerang.cli import main\nassert main(['audit-privacy', '--help']) == 0\n"
            "assert 'torch' not in sys.modules\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "--link-file" in res.stdout and "--features" in res.stdout


@pytest.mark.parametrize("extra, words", [
    (["--size", "100000"], "--size 100000 is too large: at most 1024"),
    (["--size", "1025"], "at most 1024"),
    (["--device", "tpu"], "--device must be one of cpu, cuda, cuda:N"),
])
def test_audit_privacy_refuses_before_reading_or_allocating(digit_dirs, extra, words, capsys, monkeypatch):
    """--size 100000 used to allocate about 112 GiB per image; now one line, nothing read."""
    import boomerang.privacy.audit as audit

    monkeypatch.setattr(audit, "_to_grid", lambda *a, **k: pytest.fail("an image was read onto the grid"))
    real, anon, links = digit_dirs
    assert main(["audit-privacy", str(real), str(anon), "--link-file", str(links), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("boomerang: error: ") and words in err and err.count("\n") == 1, err


def test_audit_privacy_size_bound_is_in_the_help(capsys):
    assert main(["audit-privacy", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "N at most 1024" in text and "12 MiB each at 1024" in text


def test_audit_privacy_size_bound_in_the_library(digit_dirs):
    from boomerang.privacy.audit import MAX_SIZE, AuditInputError, audit_folders

    real, anon, links = digit_dirs
    with pytest.raises(AuditInputError, match=f"at most {MAX_SIZE}"):
        audit_folders(real, anon, links, size=MAX_SIZE + 1)


@pytest.mark.parametrize("features", ["pixels", "classifier"])
def test_audit_privacy_cuda_without_cuda_is_one_line_as_in_sample(digit_dirs, features, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    real, anon, links = digit_dirs
    assert main(["audit-privacy", str(real), str(anon), "--link-file", str(links), "--features", features,
                 "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err == "boomerang: error: --device cuda: no CUDA GPU is available on this machine; use cpu\n", err


def test_classifier_space_refuses_cuda_without_cuda():
    import torch

    from boomerang.errors import SettingError
    from boomerang.privacy.features import classifier_space

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SettingError, match="no CUDA GPU"):
        classifier_space(device="cuda")


@pytest.mark.parametrize("argv, unbuffered", [(["audit-privacy"], "1"), (["audit-privacy"], ""), (["--help"], "1")])
def test_a_closed_pipe_stops_quietly(digit_dirs, argv, unbuffered):
    """``boomerang audit-privacy ... | head -3``: the reader goes away; no BrokenPipeError line, no
    traceback. Exit 141 (128 + SIGPIPE, as for any program a closed pipe stops), whether the write
    fails in the command (unbuffered stdout) or at the final flush; ``--help`` is argparse's, which
    ignores the failed write (exit 0)."""
    import os

    real, anon, links = digit_dirs
    if argv == ["audit-privacy"]:
        argv = [*argv, str(real), str(anon), "--link-file", str(links)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command writes a byte
    try:
        res = subprocess.run([sys.executable, "-m", "boomerang.cli", *argv], stdout=write, stderr=subprocess.PIPE,
                             text=True, timeout=300, env=env)
    finally:
        os.close(write)
    assert res.stderr == "", res.stderr
    assert res.returncode == (0 if argv == ["--help"] else 141)
