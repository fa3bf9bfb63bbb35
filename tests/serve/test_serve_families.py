"""The page (``boomerang serve``) on the newer families, without a browser: its job path (the handlers of
``PageActions``) runs a tiny SDXL and a tiny FLUX model (flow matching, size-dependent shift) and writes
what ``boomerang sample`` writes for the same settings, byte for byte; the slider's read-out and the run
summary speak of sigma on a flow model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("gradio")

from boomerang.cli import main  # noqa: E402
from _helpers import DIGIT  # noqa: E402


def _strip(meta: dict) -> dict:
    meta = json.loads(json.dumps(meta))
    meta.pop("command")
    meta["settings"].pop("out")
    meta["settings"].pop("threads")
    for inp in meta["inputs"]:
        inp["file"] = Path(inp["file"]).name
    for r in meta["samples"]:
        r["input"] = Path(r["input"]).name
    return meta


@pytest.mark.parametrize("fixture", ["tiny_sdxl_dir", "tiny_flux_dir", "tiny_sd3_dir"])
def test_the_page_runs_the_family_like_the_cli(fixture, request, tmp_path):
    from boomerang.serve import page, runs

    model = request.getfixturevalue(fixture)
    acts = page.PageActions(runs.ModelCache(runs.ModelSpec(model=str(model))), runs.RunFolders(tmp_path / "r"))
    assert acts.takes_prompt
    common = [2, 5, 4, "auto", "exact", 0.0, "white", "a cat", "", 3.0]
    gallery, info, files, status = acts.run_samples(str(DIGIT), 0.5, *common)
    assert status.startswith("done: 2 samples"), status
    out = tmp_path / "cli"
    assert main(["sample", str(DIGIT), "--model", str(model), "--level", "0.5", "--num-samples", "2", "--seed", "5",
                 "--steps", "4", "--prompt", "a cat", "--guidance-scale", "3", "--no-progress", "--out", str(out)]) == 0
    cli_meta = json.loads((out / "metadata.json").read_text())
    assert _strip(json.loads(Path(files[1]).read_text())) == _strip(cli_meta)
    for (path, _), rec in zip(gallery, cli_meta["samples"]):
        assert Path(path).read_bytes() == (out / rec["file"]).read_bytes()
    rec = cli_meta["samples"][0]
    flow = fixture != "tiny_sdxl_dir"
    assert (rec["sigma"] is not None) == flow and rec["scheduler"] == "euler"
    assert ("sigma" in info) == flow and f"t = {rec['timestep']}" in info
    assert "level 0.500" in acts.info.text(0.5, 4)
    sheet, info, files, status = acts.run_sweep(str(DIGIT), "0, 0.3", *common)
    assert status.startswith("done"), status
    assert Path(sheet).is_file() and "level 0.300" in info
