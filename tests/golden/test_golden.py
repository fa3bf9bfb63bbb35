"""Nothing changes for users, byte for byte (issue 18): every golden case of
``tests/golden/cases.py`` (sample with five schedulers, the text model on two schedules, augment,
enhance 4x with ILVR, anonymise on Ray with a fixed job key, 20 steps of each training command)
is rerun through the real CLI in a fresh process, and its output PNGs' bytes and checkpoints'
tensors must hash to what ``tests/golden/goldens.json`` recorded.

A deliberate change (a sample that an issue says changes, or a version bump in constraints.txt)
re-records with ``python scripts/record_goldens.py`` in its own commit that gives the reason.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CASES_FILE = HERE / "cases.py"


def _load_cases():
    spec = importlib.util.spec_from_file_location("golden_cases", CASES_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cases = _load_cases()
GOLDEN = json.loads(cases.GOLDENS.read_text(encoding="utf-8"))
NAMES = list(dict.fromkeys([c["name"] for c in cases.CASES] + list(GOLDEN["cases"])))


@pytest.fixture(scope="module")
def rerun(request, tmp_path_factory):
    """The selected cases (all, unless -k narrows them), run once in one fresh interpreter
    (isolated from the other tests' state)."""
    selected = [item.callspec.params["name"] for item in request.session.items
                if getattr(item, "originalname", None) == "test_golden"]
    tmp = tmp_path_factory.mktemp("golden")
    result = tmp / "result.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    known = [n for n in selected if any(c["name"] == n for c in cases.CASES)]
    if not known:  # only goldens whose case is gone: nothing to run
        return {}, None
    proc = subprocess.run([sys.executable, str(CASES_FILE), str(result), *known], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=900)
    got = json.loads(result.read_text(encoding="utf-8")) if result.is_file() else {}
    return got, proc


def _versions_note() -> str:
    recorded, now = GOLDEN["versions"], cases.versions()
    differ = [f"{k} {recorded.get(k)} (now {now.get(k)})" for k in sorted(set(recorded) | set(now))
              if recorded.get(k) != now.get(k)]
    if differ:
        return ("\nlibrary versions differ from those of the goldens (install with -c constraints.txt): "
                + ", ".join(differ))
    return "\nlibrary versions as recorded: " + ", ".join(f"{k} {v}" for k, v in sorted(now.items()))


@pytest.mark.parametrize("name", NAMES)
def test_golden(rerun, name):
    got, proc = rerun
    case = next((c for c in cases.CASES if c["name"] == name), None)
    assert case is not None, f"{name}: recorded in goldens.json but no longer a case in {CASES_FILE.name}"
    assert name in GOLDEN["cases"], f"{name}: a case without a golden: run scripts/record_goldens.py {name}"
    want = GOLDEN["cases"][name]
    assert case["argv"] == want["argv"], (
        f"{name}: the case's command line changed since it was recorded:\n  recorded {want['argv']}\n"
        f"  now      {case['argv']}")
    if name not in got:
        pytest.fail(f"{name}: no result (the golden runner exited with status {proc.returncode}):\n"
                    + (proc.stdout + proc.stderr)[-3000:])
    assert "error" not in got[name], f"{name}: {got[name]['error']}\n" + proc.stderr[-3000:]
    expected, actual = want["files"], got[name]["files"]
    problems = []
    for rel in sorted(set(expected) | set(actual)):
        if rel not in actual:
            problems.append(f"  {rel}: missing (expected {expected[rel]})")
        elif rel not in expected:
            problems.append(f"  {rel}: not expected (got {actual[rel]})")
        elif expected[rel] != actual[rel]:
            problems.append(f"  {rel}: {actual[rel]} != golden {expected[rel]}")
    assert not problems, (f"golden case {name} (boomerang {' '.join(case['argv'])}) changed in "
                          f"{len(problems)} of {len(expected)} file(s):\n" + "\n".join(problems) + _versions_note())
