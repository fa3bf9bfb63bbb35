"""The privacy-utility figures in README.md and docs/privacy.md are the script's latest run."""

from __future__ import annotations

import json
from pathlib import Path

from _bench import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "privacy_utility.json"
# The text arm's control runs (docs/privacy.md): guidance 7.5, and the empty prompt instead of the caption.
VARIANTS = [ROOT / "benchmarks" / "results" / f"privacy_utility_text_{v}.json" for v in ("g7.5", "empty")]


def _script():
    return load_benchmark("privacy_utility")


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
    arm = result["text_arm"]  # the text-conditioned model with each source's class caption as its prompt
    assert [c["level"] for c in arm["conditions"]] == [0.0] + result["settings"]["levels"]
    assert mod.pt.text_summary_table(result) in readme
    assert mod.pt.text_markdown_table(result) in docs
    t_first = arm["first_level_top1_at_most_5pct"]
    if t_first is not None:
        for text in (readme, docs):
            assert f"level {t_first['level']:g}" in text and f"{100 * t_first['utility']:.1f}%" in text
    assert arm["anonymise_command"] in docs
    assert "Not measured yet" not in docs
    variants = [json.loads(p.read_text()) for p in VARIANTS]
    assert [v["text_arm"]["settings"]["prompt_template"] for v in variants] == ["{caption}", ""]
    assert [v["text_arm"]["settings"]["anonymise"]["guidance_scale"] for v in variants] == [7.5, 3.0]
    assert mod.pt.text_variants_table([result, *variants]) in docs
    for v in variants:
        assert v["text_arm"]["command"] in docs
    assert (ROOT / "docs" / "privacy_utility.png").is_file()
