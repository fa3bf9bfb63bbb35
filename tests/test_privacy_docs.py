"""The privacy-utility figures in README.md and docs/privacy.md are the script's latest run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "privacy_utility.json"


def _script():
    spec = importlib.util.spec_from_file_location("privacy_utility", ROOT / "benchmarks" / "privacy_utility.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_and_docs_quote_the_latest_results():
    result = json.loads(RESULT.read_text())
    mod = _script()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    docs = (ROOT / "docs" / "privacy.md").read_text(encoding="utf-8")
    assert mod.summary_table(result) in readme
    assert mod.markdown_table(result) in docs
    first = result["first_level_top1_at_most_5pct"]
    if first is not None:
        assert f"level {first['level']:g}" in readme
    assert "not differential privacy" in readme and "not differential privacy" in docs
    assert (ROOT / "docs" / "privacy_utility.png").is_file()
