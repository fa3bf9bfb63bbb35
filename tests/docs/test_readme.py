"""The README stays true: its test command is what CI runs, its example files exist,
and its CLI reference lists every flag of ``boomerang sample`` with the real defaults."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _code_lines() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", README, flags=re.S)
    return [line.strip() for b in blocks for line in b.replace("\\\n", " ").splitlines() if line.strip()]


def test_readme_test_command_is_what_ci_runs():
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()
          if ln.strip() and not ln.startswith("#") and not ln.startswith(("set ", "cd "))]
    # pip's -q only changes how much pip prints.
    ci_cmd = " && ".join(ci).replace("pip install -q ", "pip install ")
    assert ci_cmd in _code_lines(), ci_cmd


def test_readme_main_job_uses_a_shipped_image():
    """The quick start's jobs (the digit, then the photo) run on images that ship in examples/."""
    jobs = [ln for ln in _code_lines() if "boomerang sample examples/" in ln]
    images = [next(w for w in shlex.split(job) if w.startswith("examples/")) for job in jobs]
    assert any(i.startswith("examples/digits/") for i in images), images
    assert any(i.startswith("examples/photos/") for i in images), images
    for image in images:
        assert (ROOT / image).is_file(), image


def test_readme_lists_every_sample_flag_with_its_default():
    from boomerang.api import SampleSettings
    from boomerang.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sample = sub.choices["sample"]
    flags = {opt for a in sample._actions for opt in a.option_strings if opt.startswith("--") and opt != "--help"}
    table = README[README.index("## `boomerang sample` reference"):]
    for flag in flags:
        assert f"`{flag}" in table, flag
    s = SampleSettings()
    for flag, value in [("--num-samples", s.num_samples), ("--seed", s.seed), ("--steps", s.steps),
                        ("--scheduler", s.scheduler), ("--schedule", s.schedule), ("--eta", s.eta),
                        ("--guidance-scale", s.guidance_scale), ("--device", s.device), ("--dtype", s.dtype),
                        ("--background", s.background), ("--level", s.level[0])]:
        row = next(ln for ln in table.splitlines() if ln.startswith(f"| `{flag} "))
        assert f"`{value}`" in row, (flag, row)
