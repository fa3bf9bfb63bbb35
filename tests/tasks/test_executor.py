"""One executor (issue 18): the API, the CLI's engines and the page sample through one block
function with typed settings; ``boomerang sample`` decodes each input at most twice."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from boomerang.cli import main

ROOT = Path(__file__).resolve().parents[2]
DIGIT = ROOT / "examples" / "digits" / "7.png"


def _png(path: Path, size=(20, 14), seed=0, colour=False) -> Path:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if colour else (size[1], size[0])
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def decodes(monkeypatch):
    """{file path: how many times Pillow decoded it} (an ImageFile.load that had data to decode)."""
    counts: dict[str, int] = {}
    real = ImageFile.ImageFile.load

    def load(self):
        name = getattr(getattr(self, "fp", None), "name", None)
        if self.tile and isinstance(name, str):
            key = str(Path(name).resolve())
            counts[key] = counts.get(key, 0) + 1
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return counts


def test_sample_decodes_each_input_at_most_twice(tmp_path, tiny_pixel_dir, tiny_sd_dir, decodes):
    """Check, then sample: three levels (one block each at least), two samples, blocks of 3 that
    cut across inputs and levels, a contact sheet per input; a pixel and a latent model."""
    inputs = [_png(tmp_path / "a.png"), _png(tmp_path / "b.png", (9, 13), seed=1, colour=True),
              _png(tmp_path / "c.png", seed=2)]
    for name, model in (("pixel", tiny_pixel_dir), ("latent", tiny_sd_dir)):
        decodes.clear()
        out = tmp_path / f"out-{name}"
        assert main(["sample", *map(str, inputs), "--model", str(model), "--level", "0,0.3,0.6",
                     "--num-samples", "2", "--batch-size", "3", "--steps", "3", "--no-progress",
                     "--out", str(out)]) == 0
        meta = json.loads((out / "metadata.json").read_text())
        assert len(meta["samples"]) == 18 and all((out / i["contact_sheet"]).is_file() for i in meta["inputs"])
        got = {Path(k).name: n for k, n in decodes.items() if Path(k).parent == tmp_path}
        assert got == {"a.png": 2, "b.png": 2, "c.png": 2}, (name, got)


def test_the_api_decodes_a_file_twice_too(tmp_path, tiny_pixel_model, decodes):
    from boomerang import api

    path = _png(tmp_path / "x.png")
    job = api.prepare([path, path], api.SampleSettings(level=[0.2, 0.5], num_samples=3, steps=3, batch_size=2),
                      model=tiny_pixel_model)
    assert decodes == {str(path.resolve()): 2}  # the check: once per input
    assert len(list(api.run(job))) == 12
    assert decodes == {str(path.resolve()): 4}  # the sampling pass: once more per input


def test_one_block_function_for_the_api_the_cli_and_the_page(tmp_path, tiny_pixel_dir, monkeypatch):
    """Every job samples through tasks.blocks.sample_block, and only the CLI parses a command line:
    the API and the page hand the runner typed settings."""
    import boomerang
    from boomerang.serve import runs
    from boomerang.tasks import blocks

    calls = []
    real = blocks.sample_block

    def counted(job, outputs, **kw):
        calls.append(job.task.name)
        return real(job, outputs, **kw)

    monkeypatch.setattr(blocks, "sample_block", counted)
    parsed = []
    real_parse = argparse.ArgumentParser.parse_known_args
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args",
                        lambda self, *a, **k: parsed.append(self.prog) or real_parse(self, *a, **k))

    a = boomerang.sample(DIGIT, model=str(tiny_pixel_dir), level=0.3, num_samples=2, steps=3)
    assert calls == ["sample"] and parsed == []
    model = runs.ModelCache(runs.ModelSpec(model=str(tiny_pixel_dir))).get()
    page = runs.sample_to_folder(DIGIT, {"level": "0.300", "num_samples": 2, "steps": 3}, runs.ModelSpec(
        model=str(tiny_pixel_dir)), model, tmp_path / "page")
    assert calls == ["sample"] * 2 and parsed == []
    cli = tmp_path / "cli"
    assert main(["sample", str(DIGIT), "--model", str(tiny_pixel_dir), "--level", "0.3", "--num-samples", "2",
                 "--steps", "3", "--no-progress", "--out", str(cli)]) == 0
    assert calls == ["sample"] * 3 and parsed  # the CLI parses, then runs the same block function
    folder = tmp_path / "in"
    folder.mkdir()
    _png(folder / "d.png")
    assert main(["anonymise", str(folder), "--level", "0.3", "--steps", "3", "--no-progress",
                 "--model", str(tiny_pixel_dir), "--out", str(tmp_path / "anon")]) == 0
    assert calls[-1] == "anonymise"
    # the three give the same bytes
    files = [json.loads(page.metadata_path.read_text())["samples"], json.loads((cli / "metadata.json").read_text())["samples"]]
    for k, (rp, rc) in enumerate(zip(*files)):
        assert (page.out / rp["file"]).read_bytes() == (cli / rc["file"]).read_bytes()
        assert np.array_equal(np.asarray(Image.open(cli / rc["file"])), np.asarray(a[k]))


def test_the_runner_takes_typed_settings(tmp_path, tiny_pixel_dir):
    """run_job from typed settings, as the page does: the same bytes as the command line."""
    from boomerang.settings import SampleSettings
    from boomerang.tasks.augment import AugmentOptions, AugmentTask
    from boomerang.tasks.job import JobSettings
    from boomerang.tasks.runner import run_job

    folder = tmp_path / "in"
    (folder / "k").mkdir(parents=True)
    _png(folder / "k" / "1.png")
    _png(folder / "k" / "2.png", seed=3)
    s = SampleSettings(level=0.3, num_samples=2, steps=3, model=str(tiny_pixel_dir))
    typed = tmp_path / "typed"
    assert run_job(AugmentTask(), s, AugmentOptions(), JobSettings(inputs=str(folder), out=str(typed),
                                                                  progress=False)) == 0
    cli = tmp_path / "cli"
    assert main(["augment", str(folder), "--level", "0.3", "--samples-per-image", "2", "--steps", "3",
                 "--model", str(tiny_pixel_dir), "--no-progress", "--out", str(cli)]) == 0
    names = sorted(p.relative_to(cli).as_posix() for p in cli.rglob("*.png"))
    assert len(names) == 4
    assert all((typed / n).read_bytes() == (cli / n).read_bytes() for n in names)
    with pytest.raises(ValueError, match="engine"):
        JobSettings(engine="spark")


# ----------------------------------------------------------------------------- progress


def test_progress_off_a_terminal_is_a_plain_line_every_30_seconds():
    import io

    from boomerang.tasks.progress import JobProgress

    now = [0.0]
    stream = io.StringIO()  # not a terminal
    p = JobProgress(10, desc="enhance", unit="output", stream=stream, clock=lambda: now[0])
    assert p.mode == "lines"
    now[0] = 20.0
    p.finished(2)
    assert stream.getvalue() == ""  # not before 30 s
    now[0] = 25.0
    p.advance(0.5)  # a batch half sampled
    now[0] = 31.0
    p.finished(1)  # its share becomes whole: 3, not 3.5
    assert stream.getvalue() == "boomerang enhance: 3/10 outputs (30%), 31s elapsed, about 1m12s left\n"
    now[0] = 45.0
    p.finished(3)
    assert stream.getvalue().count("\n") == 1  # the next line after 30 more seconds
    now[0] = 62.0
    p.finished(1)
    assert stream.getvalue().splitlines()[-1] == "boomerang enhance: 7/10 outputs (70%), 1m02s elapsed, about 27s left"
    p.close()
    assert JobProgress(3, stream=io.StringIO(), show=False).mode == "off"
    assert JobProgress(3, stream=io.StringIO(), show=None, lines=False).mode == "off"


def test_the_bar_moves_with_every_denoiser_step(tmp_path, tiny_pixel_dir, monkeypatch, capsys):
    """One block of 4 outputs at 6 denoiser steps: the count moves after each step, never back,
    and ends at 4; off a terminal the job prints its plain progress lines."""
    from boomerang.tasks import progress as P
    from boomerang.tasks import Task, main_for

    seen = []
    real = P.JobProgress._show
    monkeypatch.setattr(P.JobProgress, "_show", lambda self: seen.append(self.value) or real(self))
    monkeypatch.setattr(P, "LINE_INTERVAL_S", 0.0)
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(4):
        _png(folder / f"{i}.png", seed=i)
    assert main_for(Task(), [str(folder), "--out", str(tmp_path / "out"), "--model", str(tiny_pixel_dir),
                             "--level", "1", "--steps", "6", "--batch-size", "4"]) == 0
    assert seen == sorted(seen) and seen[-1] == 4 and len(set(seen)) >= 6  # one value per step
    assert any(0 < v < 1 for v in seen)  # moved before the first output was written
    err = capsys.readouterr().err
    assert "boomerang dataset: 0/4 imgs (17%)" in err and "left" in err
