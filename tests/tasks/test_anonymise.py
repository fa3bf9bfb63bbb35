"""``boomerang anonymise`` (tasks/anonymise.py) through the real CLI, and with ``audit-privacy`` on its output.

Input cases of ../shared/cases (bad files skipped and listed in report.json,
exit 3; alpha, 16-bit, EXIF, odd sizes kept exact) with a tiny 3-channel
pixel model; real digits with the bundled model.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _png import png_chunks

from boomerang.cli import main
from boomerang.privacy import read_links

CASES = Path(__file__).parents[1] / "data" / "cases"
GOOD = {"exif_rotate6.jpg": (20, 40), "rgba_hidden_red.png": (32, 32), "palette_transparency.png": (32, 32),
        "gray16_ramp.png": None, "cmyk.jpg": None, "odd_427x640.png": (640, 427), "tiny_1x1.png": (1, 1)}
BAD = ["truncated.jpg", "empty.png", "not_an_image.png"]
FAST = ["--steps", "2", "--no-progress", "--threads", "1"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def cases_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cases") / "in"
    folder.mkdir()
    for name in [*GOOD, *BAD]:
        if name != "odd_427x640.png":
            shutil.copy(CASES / name, folder / name)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (427, 640, 3), dtype=np.uint8)).save(folder / "odd_427x640.png")
    return folder


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    """20 real digits in class folders (2 per class)."""
    from boomerang.data import load_dataset

    ds = load_dataset("mnist5k")
    root = tmp_path_factory.mktemp("digits") / "real"
    for c in range(10):
        for i in np.flatnonzero(ds.labels == c)[:2]:
            p = root / str(c) / f"mnist_{i:04d}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(ds.images[i, 0]).save(p)
    return root


def _outputs(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*.png") if ".job" not in p.parts)


def test_cases_bad_files_skipped_good_files_exact(cases_dir, tiny_colour_pixel_dir, tmp_path, capsys):
    out, links = tmp_path / "out", tmp_path / "links.jsonl"
    rc = main(["anonymise", str(cases_dir), "--level", "0.5", "--out", str(out), "--model", str(tiny_colour_pixel_dir),
               "--link-file", str(links), *FAST])
    err = capsys.readouterr().err
    assert rc == 3, err
    report = json.loads((out / ".job" / "report.json").read_text())  # it names inputs: never in the release
    assert sorted(s["file"] for s in report["skipped_files"]) == sorted(BAD)
    assert report["done"] == len(GOOD) and report["skipped"] == len(BAD)
    by_source = {ln.source: ln.output for ln in read_links(links)}
    assert sorted(by_source) == sorted(GOOD)
    for src, dst in by_source.items():
        assert Path(src).stem not in dst and len(Path(dst).stem) == 20  # opaque: no source name
        f = out / dst
        data = f.read_bytes()
        assert set(png_chunks(data)[1:-1]) == {b"IDAT"}  # no EXIF, ICC or text chunks
        with Image.open(f) as im:
            if GOOD[src] is not None:
                assert im.size == GOOD[src], (src, im.size)
            arr = np.asarray(im.convert("RGB"))
        if src == "rgba_hidden_red.png":
            with Image.open(cases_dir / src) as im0:
                assert im.size == im0.size
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert [r["file_name"] for r in rows] == sorted(by_source.values())  # name order, not input order
    assert all("source" not in r and "seed" not in r for r in rows)
    mtimes = {os.stat(out / r["file_name"]).st_mtime_ns for r in rows}
    assert len(mtimes) == 1  # one modification time: the write order stays hidden
    assert "leave it out when you share" in err and "undoes the anonymisation" in err
    assert arr.dtype == np.uint8


def test_digits_resume_keys_and_audit(digits_dir, tmp_path, capsys):
    out, links = tmp_path / "anon", tmp_path / "links.jsonl"
    args = ["anonymise", str(digits_dir), "--level", "0.3", "--out", str(out), "--link-file", str(links),
            "--samples-per-image", "2", *FAST]
    assert main(args) == 0
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in _outputs(out)}
    assert len(files) == 40 and all(name.split("/")[0].isdigit() for name in files)  # class folders kept
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert all(r["label"] == r["file_name"].split("/")[0] for r in rows)  # labels carried through
    lk = read_links(links)
    assert len(lk) == 40 and sorted(ln.extra["sample"] for ln in lk) == [0] * 20 + [1] * 20 and \
        all(ln.source.split("/")[0] == ln.output.split("/")[0] for ln in lk)
    # the same command again: the same job (same key), nothing changes
    assert main(args) == 0
    assert {p.relative_to(out).as_posix(): p.read_bytes() for p in _outputs(out)} == files
    # a fresh job elsewhere: another secret key, so other names and other samples
    out2 = tmp_path / "anon2"
    assert main(["anonymise", str(digits_dir), "--level", "0.3", "--out", str(out2), "--samples-per-image", "2",
                 *FAST]) == 0
    files2 = {p.relative_to(out2).as_posix(): p.read_bytes() for p in _outputs(out2)}
    assert not set(files) & set(files2) and not set(files.values()) & set(files2.values())
    # other settings in the same folder: refused, naming what differs
    capsys.readouterr()
    assert main([*args[:3], "--level", "0.5", *args[5:]]) == 2
    assert "level" in capsys.readouterr().err
    # the audit: level 0.3 keeps digits close to their sources, so the pixel attack finds most
    assert main(["audit-privacy", str(digits_dir), str(out), "--link-file", str(links),
                 "--json", str(tmp_path / "audit.json")]) == 0
    rep = json.loads((tmp_path / "audit.json").read_text())
    assert rep["num_queries"] == 40 and rep["num_candidates"] == 20 and rep["top1"]["rate"] >= 0.5


def test_level_zero_is_found_and_level_one_is_near_chance(digits_dir, tmp_path):
    for level, check in (("0", lambda r: r["top1"]["rate"] == 1.0), ("1", lambda r: r["top1"]["rate"] <= 0.3)):
        out, links = tmp_path / f"anon{level}", tmp_path / f"links{level}.jsonl"
        assert main(["anonymise", str(digits_dir), "--level", level, "--out", str(out), "--link-file", str(links),
                     "--scheduler", "ddim", *FAST]) == 0
        assert main(["audit-privacy", str(digits_dir), str(out), "--link-file", str(links),
                     "--json", str(tmp_path / f"a{level}.json")]) == 0
        rep = json.loads((tmp_path / f"a{level}.json").read_text())
        assert check(rep), (level, rep["top1"])


def test_keep_names_mirrors_inputs(digits_dir, tmp_path):
    out = tmp_path / "named"
    assert main(["anonymise", str(digits_dir), "--level", "0.2", "--out", str(out), "--keep-names", *FAST]) == 0
    names = sorted(p.relative_to(out).as_posix() for p in _outputs(out))
    assert names == sorted(p.relative_to(digits_dir).as_posix() for p in digits_dir.rglob("*.png"))
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert all(r["source"] == r["file_name"] for r in rows)


@pytest.mark.parametrize("extra, words", [
    ([], "--level is required"),
    (["--level", "0.5", "--link-file", "{out}/links.jsonl"], "--link-file"),
    (["--level", "0.5", "--link-file", "{inp}/links.jsonl"], "inside IN_DIR"),
    (["--level", "0.5", "--prompt-template", "a photo of a {label}"], "takes no text prompt"),
    (["--level", "0.5", "--prompt-template", "a {colour} digit"], "{colour}"),
    (["--level", "0.5", "--num-samples", "2", "--samples-per-image", "3"], "not both"),
    (["--level", "0.5", "--samples-per-image", "0"], "--samples-per-image must be an integer >= 1"),
    (["--level", "0.5", "--num-samples", "0"], "--num-samples must be an integer >= 1"),
])
def test_bad_usage_exit_2_nothing_written(digits_dir, tmp_path, extra, words, capsys):
    out = tmp_path / "out"
    extra = [e.replace("{out}", str(out)).replace("{inp}", str(digits_dir)) for e in extra]
    before = sorted(p.as_posix() for p in digits_dir.rglob("*"))
    assert main(["anonymise", str(digits_dir), "--out", str(out), *extra, *FAST]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1, err
    assert not out.exists()
    assert sorted(p.as_posix() for p in digits_dir.rglob("*")) == before


def test_prompt_template_with_a_text_model(tiny_sd_dir, tmp_path, capsys):
    """imagefolder input with captions: the per-item prompt comes from the caption; columns are carried."""
    inp = tmp_path / "in"
    inp.mkdir()
    rng = np.random.default_rng(1)
    rows = []
    for i, cap in enumerate(["a cat", "a person"]):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(inp / f"p{i}.png")
        rows.append({"file_name": f"p{i}.png", "caption": cap, "label": cap.split()[1]})
    (inp / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    rc = main(["anonymise", str(inp), "--level", "0.5", "--out", str(out), "--model", str(tiny_sd_dir),
               "--prompt-template", "a photo of {caption}", "--guidance-scale", "1", *FAST])
    assert rc == 0, capsys.readouterr().err
    got = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert sorted((r["label"], r["caption"]) for r in got) == [("cat", "a cat"), ("person", "a person")]
    assert all(len(Path(r["file_name"]).stem) == 20 for r in got)


def test_prompt_hook_formats_label_and_caption():
    from boomerang.tasks.anonymise import AnonymiseOptions, AnonymiseTask
    from boomerang.tasks.layout import Item

    class Job:
        options = AnonymiseOptions(prompt_template="a photo of a {label}, {caption} ({kind})")

    item = Item(0, "x/1.png", Path("x/1.png"), "person", "smiling", {"kind": "portrait"})
    assert AnonymiseTask().prompt(Job(), item) == "a photo of a person, smiling (portrait)"
    Job.options = AnonymiseOptions()
    assert AnonymiseTask().prompt(Job(), item) is None


def test_release_names_no_input(cases_dir, tiny_colour_pixel_dir, tmp_path, capsys):
    """Everything outside OUT/.job is the release: no file there names an input (its name, stem,
    path relative to IN_DIR or absolute path); the report, which lists the skipped inputs, is
    in OUT/.job, with paths relative to IN_DIR."""
    out = tmp_path / "out"
    assert main(["anonymise", str(cases_dir), "--level", "0.5", "--out", str(out), "--model", str(tiny_colour_pixel_dir),
                 *FAST]) == 3
    err = capsys.readouterr().err
    assert not (out / "report.json").exists() and str(out / ".job" / "report.json") in err
    report = json.loads((out / ".job" / "report.json").read_text())
    assert sorted(s["file"] for s in report["skipped_files"]) == sorted(BAD)
    assert all(s["file"] in s["reason"] and str(cases_dir) not in s["reason"] for s in report["skipped_files"])
    inputs = sorted(p for p in cases_dir.rglob("*") if p.is_file())
    words = {str(cases_dir), str(cases_dir.resolve())}
    for p in inputs:
        rel = p.relative_to(cases_dir).as_posix()
        words |= {p.name, rel, p.stem, str(p), str(p.resolve())}
    published = [p for p in out.rglob("*") if p.is_file() and ".job" not in p.relative_to(out).parts]
    assert len(published) == len(GOOD) + 1  # the images and metadata.jsonl
    for p in published:
        data = p.read_bytes()
        named = [w for w in sorted(words) if w.encode() in data or w in p.relative_to(out).as_posix()]
        assert not named, (p.relative_to(out), named)


@pytest.mark.parametrize("where", ["under_a_file", "read_only"])
def test_unwritable_link_file_is_refused_before_any_work(digits_dir, tmp_path, where, capsys, monkeypatch):
    import boomerang.models

    monkeypatch.setattr(boomerang.models, "load_model", lambda *a, **k: pytest.fail("the job started"))
    if where == "under_a_file":
        (tmp_path / "a_file").write_text("x")
        link = tmp_path / "a_file" / "links.jsonl"
    else:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        if os.geteuid() == 0:  # root writes into read-only folders (CI runs as root): refuse as the kernel would
            import tempfile

            real = tempfile.TemporaryFile

            def read_only(*args, dir=None, **kwargs):
                if dir is not None and Path(dir) == folder:
                    raise PermissionError(13, "Permission denied")
                return real(*args, dir=dir, **kwargs)

            monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
        link = folder / "sub" / "links.jsonl"
    out = tmp_path / "out"
    rc = main(["anonymise", str(digits_dir), "--level", "0.5", "--out", str(out), "--link-file", str(link), *FAST])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--link-file" in err and "cannot be written" in err, err
    assert not out.exists() and not link.exists()


def test_level_0_is_warned_about(tmp_path, digits_dir, tiny_pixel_dir, capsys):
    """Level 0 releases the inputs themselves (found by a new-user trial: exit 0, no word, originals
    released): the job says so on stderr, alone or beside other levels (an audit's control is made at 0)."""
    for levels in ("0", "0,0.3"):
        rc = main(["anonymise", str(digits_dir), "--level", levels, "--out", str(tmp_path / levels), "--model",
                   str(tiny_pixel_dir), "--steps", "2", "--no-progress", "--threads", "1"])
        err = capsys.readouterr().err
        assert rc == 0 and err.count("level 0 releases the inputs unchanged") == 1, err
    rc = main(["anonymise", str(digits_dir), "--level", "0.3", "--out", str(tmp_path / "o3"), "--model",
               str(tiny_pixel_dir), "--steps", "2", "--no-progress", "--threads", "1"])
    assert rc == 0 and "releases the inputs unchanged" not in capsys.readouterr().err
