"""The three training commands share their run flags and say nothing with --no-progress.

Faults from issue 18: ``train`` had ``--no-progress`` and ``train-classifier`` ``--quiet``
(now both take ``--no-progress``; ``--quiet`` stays as a hidden alias), and
``train-ldm --no-progress`` still printed transformers' "requires torchvision" lines and a
"Writing model shards" bar. Also: Ctrl-C stops a run after the step through the one stop
helper, and a resume with other settings is refused before anything is written.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from boomerang.cli import build_parser, main  # noqa: E402

TINY_DDPM = ["train", "--data", "digits", "--channels", "8,16", "--attention", "0,0", "--norm-groups", "4",
             "--batch-size", "16", "--warmup-steps", "2", "--threads", "1"]
TINY_LDM = ["train-ldm", "--vae-channels", "16,16,16", "--unet-channels", "32,32", "--unet-layers", "1",
            "--unet-heads", "2", "--text-width", "32", "--text-layers", "1", "--text-heads", "2",
            "--vae-batch-size", "8", "--batch-size", "8", "--warmup-steps", "2", "--max-train-images", "16",
            "--vae-steps", "2", "--threads", "1", "--checkpoint-every", "2"]


def _env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("command", ["train", "train-ldm", "train-classifier"])
def test_every_training_command_takes_the_same_run_flags(command):
    args = build_parser().parse_args([command, "--no-progress", "--max-minutes", "2.5", "--threads", "1",
                                      "--split-seed", "3", "--val-fraction", "0.2", "--device", "cpu"])
    assert (args.progress, args.max_minutes, args.threads, args.split_seed, args.val_fraction) == (
        False, 2.5, "1", 3, 0.2)
    assert build_parser().parse_args([command]).progress is True


def test_train_classifier_keeps_quiet_as_a_hidden_alias(capsys):
    assert build_parser().parse_args(["train-classifier", "--quiet"]).progress is False
    assert main(["train-classifier", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--no-progress" in out and "--quiet" not in out


def _digit_folder(root, per_class=10):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(10):
        (root / str(c)).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(root / str(c) / f"{i}.png")
    return root


def test_train_classifier_no_progress_and_quiet_print_nothing(tmp_path, capfd):
    data = _digit_folder(tmp_path / "digits")  # 80 training digits: 2 steps of 40 per epoch
    base = ["train-classifier", "--data", str(data), "--epochs", "2", "--batch-size", "40", "--width", "4",
            "--threads", "1"]
    assert main([*base, "--output", str(tmp_path / "loud")]) == 0
    out, err = capfd.readouterr()
    assert "epoch 1/2 loss" in err and "epoch 2/2 loss" in err  # progress on: one line per epoch off a terminal
    metrics = json.loads(out)
    for flag in ("--no-progress", "--quiet"):
        assert main([*base, flag, "--output", str(tmp_path / flag)]) == 0
        out, err = capfd.readouterr()
        assert err == "" and json.loads(out)["test_accuracy"] == metrics["test_accuracy"]
        assert (tmp_path / flag / "model.safetensors").is_file()


def test_train_classifier_max_minutes_keeps_what_was_trained(tmp_path, capfd):
    data = _digit_folder(tmp_path / "digits")
    assert main(["train-classifier", "--data", str(data), "--epochs", "2", "--batch-size", "40", "--width", "4",
                 "--max-minutes", "1e-9", "--no-progress", "--output", str(tmp_path / "o")]) == 0
    m = json.loads(capfd.readouterr().out)
    assert m["stopped"] == "max_minutes" and m["best_epoch"] == 0
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["stopped"] == "max_minutes"
    assert (tmp_path / "o" / "model.safetensors").is_file()
    assert main(["train-classifier", "--epochs", "0", "--output", str(tmp_path / "bad")]) == 2
    assert "--epochs must be > 0" in capfd.readouterr().err and not (tmp_path / "bad").exists()


def test_train_no_progress_prints_nothing_but_the_summary(tmp_path, capfd):
    assert main([*TINY_DDPM, "--max-steps", "2", "--no-progress", "--output", str(tmp_path / "o")]) == 0
    out, err = capfd.readouterr()
    assert err == "" and json.loads(out)["step"] == 2


def test_train_ldm_no_progress_silences_the_libraries(tmp_path):
    """A fresh process (transformers warns once per process): a run and its resume print only their summaries."""
    out = str(tmp_path / "run")
    code = ("import sys; from boomerang.cli import main; "
            f"a = {[*TINY_LDM, '--max-steps', '2', '--no-progress', '--output', out]!r}; "
            f"b = {[*TINY_LDM, '--max-steps', '3', '--no-progress', '--resume', '--output', out]!r}; "
            "sys.exit(main(a) or main(b))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    for word in ("torchvision", "Writing model shards", "accelerate", "it/s", "step"):
        assert word not in r.stderr, r.stderr[-2000:]
    assert r.stderr == ""
    first, second = (json.loads(line) for line in r.stdout.splitlines())
    assert (first["step"], second["step"], second["vae_step"]) == (2, 3, 2)


def test_ctrl_c_stops_train_after_the_step_with_checkpoint_and_export(tmp_path):
    from safetensors import safe_open

    out = tmp_path / "run"
    cmd = [sys.executable, "-c", "import sys; from boomerang.cli import main; sys.exit(main())",
           *TINY_DDPM, "--max-steps", "100000", "--checkpoint-every", "3", "--no-progress", "--output", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.monotonic() + 120
    try:
        while not (out / "checkpoint.safetensors").exists():
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    summary = json.loads(stdout)
    assert summary["stopped"] == "signal" and summary["step"] >= 3
    assert "boomerang train: Ctrl-C: stopping after this step" in stderr and "Traceback" not in stderr
    with safe_open(str(out / "checkpoint.safetensors"), framework="pt") as f:
        assert json.loads(f.metadata()["boomerang"])["step"] == summary["step"]
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert json.loads((out / "train_config.json").read_text())["stopped"] == "signal"


def test_resume_with_other_settings_is_refused_before_anything_is_written(tmp_path, capfd):
    out = tmp_path / "o"
    assert main([*TINY_DDPM, "--max-steps", "1", "--no-progress", "--output", str(out)]) == 0
    capfd.readouterr()
    split = (out / "split.json").read_bytes()
    assert main([*TINY_DDPM, "--max-steps", "2", "--no-progress", "--resume", "--split-seed", "1",
                 "--output", str(out)]) == 2
    assert "cannot resume with different settings: split_seed" in capfd.readouterr().err
    assert (out / "split.json").read_bytes() == split
