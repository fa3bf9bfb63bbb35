"""An unknown ``--scheduler`` is refused at settings time, before torch or diffusers load.

It used to take 5-6 s (diffusers was imported before the name was checked); the
names now live in the torch-free ``boomerang.scheduler_names``. Checked through
``sys.modules`` in a fresh interpreter, not with a timer.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from boomerang.errors import SettingError
from boomerang.scheduler_names import SCHEDULER_NAMES
from boomerang.settings import SampleSettings

DIGIT = Path(__file__).resolve().parents[2] / "examples" / "digits" / "7.png"


def test_settings_refuse_an_unknown_scheduler_naming_every_choice():
    with pytest.raises(SettingError) as e:
        SampleSettings(scheduler="dpm++")
    assert e.value.render(lambda n: "--" + n).startswith("--scheduler must be one of ")
    assert all(n in str(e.value) for n in SCHEDULER_NAMES)
    assert SampleSettings(scheduler=" DDIM ").scheduler == "ddim"


@pytest.mark.parametrize("argv", [
    ["sample", str(DIGIT)],
    ["enhance", str(DIGIT), "--out", "never-written"],
    ["anonymise", str(DIGIT.parent), "--level", "0.5", "--out", "never-written"],
])
def test_an_unknown_scheduler_is_refused_before_torch_or_diffusers_load(argv, tmp_path):
    code = (
        "import sys\n"
        "from boomerang.cli import main\n"
        f"rc = main({argv + ['--scheduler', 'nope']!r})\n"
        "print(rc, 'diffusers' in sys.modules, 'torch' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.stdout.split() == ["2", "False", "False"], (res.stdout, res.stderr)
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("boomerang: error: --scheduler must be one of ddpm")
    assert not (tmp_path / "never-written").exists()


def test_the_names_module_imports_nothing_heavy():
    code = "import sys, boomerang.scheduler_names\nprint(sorted(m for m in ('torch', 'diffusers', 'numpy') if m in sys.modules))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert res.stdout.strip() == "[]"
