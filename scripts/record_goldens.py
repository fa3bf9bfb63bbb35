#!/usr/bin/env python
"""Record the golden outputs (issue 18): run every case of ``tests/golden/cases.py`` through the
real CLI in this process (``--threads 1``, offline) and write ``tests/golden/goldens.json``: per
case its command line and the hashes of its output PNGs (file bytes) and safetensors files
(tensors), plus the versions of the libraries they depend on.

``tests/golden/test_golden.py`` reruns the cases and compares. Re-record only for a deliberate change of
the samples or of the pinned versions (``constraints.txt``), in its own commit that gives the reason:

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/record_goldens.py [--out FILE] [CASE ...]

Naming cases records only those (the others keep their recorded hashes). Nothing is written if a
case fails.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES_FILE = ROOT / "tests" / "golden" / "cases.py"


def load_cases():
    """tests/golden/cases.py, loaded by path (the one list of cases)."""
    spec = importlib.util.spec_from_file_location("golden_cases", CASES_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                             text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv: list[str] | None = None) -> int:
    cases = load_cases()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="*", metavar="CASE", help="record only these cases (default: all)")
    parser.add_argument("--out", type=Path, default=cases.GOLDENS, help=f"default {cases.GOLDENS.relative_to(ROOT)}")
    args = parser.parse_args(argv)

    results = cases.run_cases(args.cases or None)
    failed = {name: r["error"] for name, r in results.items() if "error" in r}
    for name, error in failed.items():
        print(f"record_goldens: {name}: {error}", file=sys.stderr)
    if failed:
        print("record_goldens: nothing written", file=sys.stderr)
        return 1
    old = {}
    if args.cases and args.out.is_file():
        old = json.loads(args.out.read_text(encoding="utf-8")).get("cases", {})
    known = [c["name"] for c in cases.CASES]
    merged = {**old, **results}
    golden = {
        "about": "Written by scripts/record_goldens.py; checked by tests/golden/test_golden.py (see tests/golden/cases.py).",
        "commit": _commit(),
        "python": platform.python_version(),
        "versions": cases.versions(),
        "cases": {name: merged[name] for name in known if name in merged},
    }
    args.out.write_text(json.dumps(golden, indent=1) + "\n", encoding="utf-8")
    print(f"record_goldens: {len(results)} case(s) recorded in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
