"""``benchmarks/gpu.py`` (every family at full size on a CUDA GPU, random weights): it refuses without a GPU
(one message, exit 2, nothing written), its full-size configs have the public checkpoints' parameter counts,
and its ``--tiny`` mode runs every family end to end on the CPU, with and without CPU offload. (The script
is run as a program: tests never import benchmarks. No GPU was lent to this project: the full-size run
itself has never been made here.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu.py"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}


def _run(*args, timeout=600):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=ROOT / "benchmarks", env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def test_without_cuda_it_refuses_and_writes_nothing(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    proc = _run("--out", tmp_path / "out")
    assert proc.returncode == 2 and "no CUDA GPU is available" in proc.stderr and "--tiny" in proc.stderr
    assert not (tmp_path / "out").exists()


# Published sizes (parameters) of the public checkpoints' components.
PUBLIC = {("sd15", "unet"): 859_520_964, ("sd15", "vae"): 83_653_863, ("sd15", "text_encoder"): 123_060_480,
          ("sdxl", "unet"): 2_567_463_684, ("sdxl", "text_encoder_2"): 694_659_840,
          ("flux_dev", "transformer"): 11_901_408_320, ("flux_dev", "text_encoder_2"): 4_762_310_656,
          ("sd35m", "text_encoder_3"): 4_762_310_656}


def test_full_size_configs_have_the_public_parameter_counts():
    proc = _run("--count", timeout=300)
    assert proc.returncode == 0, proc.stderr
    counts = {row["name"]: row["parameters"] for row in map(json.loads, proc.stdout.splitlines())}
    assert set(counts) == {"sd15", "sdxl", "sd35m", "flux_dev", "lcm"}
    for (name, component), n in PUBLIC.items():
        assert counts[name][component] == n, (name, component)
    assert 2.0e9 < counts["sd35m"]["transformer"] < 2.6e9  # SD 3.5 medium: MMDiT-X, about 2.2-2.5 B
    assert counts["lcm"]["unet"] - counts["sd15"]["unet"] == 256 * 320  # the guidance embedding projection (no bias)


def test_tiny_mode_runs_every_family_end_to_end(tmp_path):
    proc = _run("--tiny", "--dtypes", "float32", "--repeat", "1", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((tmp_path / "gpu_tiny.json").read_text())["families"]
    assert {(r["name"], r["cpu_offload"]) for r in rows} == {(n, o) for n in ("sd15", "sdxl", "sd35m", "flux_dev", "lcm")
                                                              for o in (False, True)}
    for r in rows:
        assert "error" not in r and r["run_finite"] and r["denoiser_evals_per_s"] > 0 and r["run_denoiser_evals"] >= 1
        assert r["offload_moves"][-2:] == [{"sd35m": "transformer", "flux_dev": "transformer"}.get(r["name"], "unet"),
                                           "vae"] if r["cpu_offload"] else "offload_moves" not in r


def test_tiny_mode_in_bfloat16(tmp_path):
    proc = _run("--tiny", "--families", "flux_dev", "--dtypes", "bfloat16", "--cpu-offload", "off", "--repeat", "1",
                "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = json.loads((tmp_path / "gpu_tiny.json").read_text())["families"]
    assert row["dtype"] == "bfloat16" and row["run_finite"]
