"""What a newcomer meets first (issue 13): help texts with defaults, no abbreviated flags, errors
that point to the right --help, the API names the README uses, counts and labels."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from boomerang.cli import build_parser, main


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def test_every_option_of_every_command_has_a_description_and_its_default():
    missing = []
    for name, sub in _subparsers(build_parser()).items():
        for action in sub._actions:
            if not action.option_strings or action.nargs == 0 or action.help == argparse.SUPPRESS:
                continue
            text = action.help or ""
            words = text.replace("(default", "").replace("(required)", "").strip()
            said = "(required)" in text if action.required else "default" in text
            if not said or not words:
                missing.append(f"{name} {action.option_strings[0]}: {text!r}")
    assert not missing, missing
    # and it renders (no stray % in a help text)
    for name, sub in _subparsers(build_parser()).items():
        sub.format_help()


def test_help_says_required_never_an_empty_default_and_one_workers_wording():
    workers, seen = set(), set()
    for name, sub in _subparsers(build_parser()).items():
        text = " ".join(sub.format_help().split())
        assert "(default )" not in text and "(default: )" not in text, name
        for action in sub._actions:
            flag = action.option_strings[0] if action.option_strings else action.dest
            if action.required and action.option_strings:
                assert "(required)" in action.help and "default" not in action.help, (name, flag, action.help)
                seen.add(f"{name} {flag}")
            if action.default == "" and action.option_strings:
                assert "(default: empty)" in action.help, (name, flag, action.help)
            if flag == "--workers":
                workers.add(action.help)
    assert {"calibrate-privacy --target-top1", "enhance --out", "anonymise --out"} <= seen, seen
    assert len(workers) == 1, workers
    # audit-privacy takes --link-file, --holdout or both (issue 21: the holdout comparison needs no links)
    help_text = " ".join(_subparsers(build_parser())["audit-privacy"].format_help().split())
    assert "Give --link-file, --holdout or both" in help_text, help_text


@pytest.mark.parametrize("argv", [
    ["sample", "IMG"], ["anonymise", "DIR", "--out", "OUT", "--level", "0.3"],  # serve: as sample (test_serve.py)
    ["train", "--output", "OUT"], ["train-ldm", "--output", "OUT"], ["train-classifier", "--output", "OUT"],
    ["audit-privacy", "DIR", "DIR", "--link-file", "LINKS"],
])
@pytest.mark.parametrize("value", ["abc", "0", "1.5"])
def test_a_bad_threads_value_is_one_line_naming_the_flag_and_what_it_takes(argv, value, tmp_path, capsys):
    img = tmp_path / "in" / "d.png"
    img.parent.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(img)
    (tmp_path / "links.jsonl").write_text("")
    where = {"IMG": str(img), "DIR": str(img.parent), "OUT": str(tmp_path / "out"), "LINKS": str(tmp_path / "links.jsonl")}
    assert main([where.get(a, a) for a in argv] + ["--threads", value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("boomerang: error: --threads must be an integer >= 1"), err
    assert repr(value) in err and ("'torch'" in err) == (argv[0] in ("sample", "anonymise")), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv,hint", [
    (["sample", "x.png", "--lev", "0.3"], "see 'boomerang sample --help'"),
    (["sample", "x.png", "--no-such-flag"], "see 'boomerang sample --help'"),
    (["train", "--lr-typo", "1"], "see 'boomerang train --help'"),
])
def test_abbreviations_and_unknown_flags_are_errors_pointing_to_the_subcommand_help(argv, hint, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unrecognized arguments" in err and hint in err, err


def test_readme_names_are_reachable_in_a_fresh_interpreter():
    code = "import boomerang; boomerang.api.prepare; boomerang.seeds.item_seed; boomerang.sample; print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_one_sample_is_one_sample_and_the_batch_is_what_ran(tmp_path, tiny_pixel_dir, capsys):
    img = tmp_path / "d.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)).save(img)
    out = tmp_path / "out"
    rc = main(["sample", str(img), "--model", str(tiny_pixel_dir), "--timestep", "0", "--num-samples", "1",
               "--steps", "2", "--no-progress", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "wrote 1 sample," in err
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["settings"]["batch_size_resolved"] == 1
    assert meta["samples"][0]["timestep"] == 0 and meta["samples"][0]["num_denoiser_evals"] == 1


def test_train_draws_no_progress_bar_into_a_redirected_log(tmp_path, capsys):
    rc = main(["train", "--data", "digits", "--channels", "8,16", "--attention", "0,0", "--norm-groups", "4",
               "--batch-size", "8", "--max-steps", "2", "--threads", "1", "--output", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "step/s" not in err and "s/step" not in err and "\r" not in err
