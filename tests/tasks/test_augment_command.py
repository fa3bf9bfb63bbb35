"""boomerang augment: the augment task on the shared runner (layouts, levels, originals, cases, errors)."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from boomerang.augment import MANIFEST_NAME, BoomerangAugmented, read_manifest
from boomerang.cli import main
from boomerang.tasks import main_for
from boomerang.tasks.augment import AugmentTask

CASES = Path(__file__).parents[1] / "data" / "cases"  # copies of shared/cases/images


def _images(folder: Path, names, size=(12, 10), seed=0):
    rng = np.random.default_rng(seed)
    for name in names:
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random(size[::-1]) * 255).astype(np.uint8)).save(p)
    return folder


def _augment(src, out, model, *extra):
    return main_for(AugmentTask(), [str(src), "--out", str(out), "--model", str(model), "--steps", "3",
                                    "--no-progress", *extra])


def _rows(path: Path):
    if path.suffix == ".csv":
        return list(csv.DictReader(path.open(newline="")))
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_class_folders_give_one_dataset_per_level_with_labels(tmp_path, tiny_pixel_dir):
    src = _images(tmp_path / "in", ["3/a.png", "3/b.png", "7/c.png"])
    out = tmp_path / "out"
    assert _augment(src, out, tiny_pixel_dir, "--level", "0.2,0.4", "--samples-per-image", "2") == 0
    for lv in ("level0.200", "level0.400"):
        names = sorted(p.relative_to(out / lv).as_posix() for p in (out / lv).rglob("*.png"))
        assert names == ["3/a_s000.png", "3/a_s001.png", "3/b_s000.png", "3/b_s001.png", "7/c_s000.png", "7/c_s001.png"]
        rows = _rows(out / lv / "metadata.jsonl")
        assert [(r["file_name"], r["label"], r["source"]) for r in rows] == [
            (n, n[0], n[:2] + n[2] + ".png") for n in names]
        assert sorted(p.name for p in (out / lv).iterdir() if p.is_file()) == [MANIFEST_NAME, "metadata.jsonl"]
        for p in (out / lv).rglob("*.png"):
            with Image.open(p) as im:
                assert im.size == (12, 10)
    manifest = read_manifest(out, 0.4)
    assert [(r["source"], r["sample_index"], r["label"]) for r in manifest][:2] == [("3/a.png", 0, "3"), ("3/a.png", 1, "3")]
    assert json.loads((out / "report.json").read_text())["outputs"] == 12
    # sample j of an item uses the same seed at every level, and samples differ between levels
    r2, r4 = _rows(out / "level0.200" / "metadata.jsonl"), _rows(out / "level0.400" / "metadata.jsonl")
    assert [r["seed"] for r in r2] == [r["seed"] for r in r4] and len({r["seed"] for r in r2}) == 6
    a2 = np.asarray(Image.open(out / "level0.200/3/a_s000.png"))
    a4 = np.asarray(Image.open(out / "level0.400/3/a_s000.png"))
    assert not np.array_equal(a2, a4)


def test_the_wrapper_reads_what_the_command_wrote(tmp_path, tiny_pixel_dir):
    src = _images(tmp_path / "in", [f"{c}/{i}.png" for c in "01" for i in range(3)])
    out = tmp_path / "cache"
    assert _augment(src, out, tiny_pixel_dir, "--level", "0.3", "--samples-per-image", "4") == 0
    rel = sorted(p.relative_to(src).as_posix() for p in src.rglob("*.png"))
    base = [(Image.open(src / r), r[0]) for r in rel]
    aug = BoomerangAugmented(base, out, samples_per_image=4, p=1.0, level=0.3, key=rel)
    for i in range(len(aug)):
        img, label = aug[i]
        assert label == rel[i][0] and aug.pick(i).parent == out / "level0.300" / rel[i][0]
        assert np.array_equal(np.asarray(img), np.asarray(Image.open(aug.pick(i))))


def test_imagefolder_csv_keeps_its_format_and_columns(tmp_path, tiny_pixel_dir):
    src = _images(tmp_path / "in", ["x.png", "img/y.png"])
    (src / "metadata.csv").write_text('file_name,label,caption\nx.png,3,a three\nimg/y.png,7,"a seven, tilted"\n')
    out = tmp_path / "out"
    assert _augment(src, out, tiny_pixel_dir, "--level", "0.3", "--samples-per-image", "2", "--include-originals") == 0
    d = out / "level0.300"
    assert sorted(p.name for p in d.glob("metadata.*")) == ["metadata.csv"]
    rows = _rows(d / "metadata.csv")
    assert [(r["file_name"], r["label"], r["caption"]) for r in rows] == [
        ("img/y.png", "7", "a seven, tilted"), ("x.png", "3", "a three"),  # the originals first
        ("img/y_s000.png", "7", "a seven, tilted"), ("img/y_s001.png", "7", "a seven, tilted"),
        ("x_s000.png", "3", "a three"), ("x_s001.png", "3", "a three")]
    assert rows[0]["sample_index"] == "" and rows[2]["sample_index"] == "0"
    # the level folder is an imagefolder dataset of its own: every row names a file in it
    assert all((d / r["file_name"]).is_file() for r in rows)


def test_include_originals_hard_links_or_copies_each_original_into_every_level(tmp_path, tiny_pixel_dir):
    src = _images(tmp_path / "in", ["c/a.png", "c/b.png"])
    out = tmp_path / "out"
    assert _augment(src, out, tiny_pixel_dir, "--level", "0.2,0.5", "--samples-per-image", "1",
                    "--include-originals") == 0
    for lv in ("level0.200", "level0.500"):
        for name in ("c/a.png", "c/b.png"):
            assert (out / lv / name).read_bytes() == (src / name).read_bytes()
            assert os.path.samefile(out / lv / name, src / name)  # same file system here: hard links
        assert [r["file_name"] for r in _rows(out / lv / "metadata.jsonl")] == ["c/a.png", "c/b.png", "c/a_s000.png",
                                                                                 "c/b_s000.png"]
        assert [r["source"] for r in read_manifest(out, float(lv[5:]))] == ["c/a.png", "c/b.png"]  # samples only
    from boomerang.tasks import augment as mod

    def no_links(a, b):
        raise OSError(18, "Invalid cross-device link")

    dst = tmp_path / "copy" / "a.png"
    orig = mod.os.link
    mod.os.link = no_links
    try:
        mod._link_or_copy(src / "c/a.png", dst)
    finally:
        mod.os.link = orig
    assert dst.read_bytes() == (src / "c/a.png").read_bytes() and not os.path.samefile(dst, src / "c/a.png")


def test_cases_bad_files_skipped_and_reported_sizes_exact(tmp_path, tiny_pixel_dir, capsys):
    src = tmp_path / "in"
    shutil.copytree(CASES, src)
    Image.new("RGB", (640, 427), (200, 30, 30)).save(src / "odd_427x640.png")
    out = tmp_path / "out"
    assert _augment(src, out, tiny_pixel_dir, "--level", "0.3", "--samples-per-image", "2") == 3
    report = json.loads((out / "report.json").read_text())
    assert sorted(s["file"] for s in report["skipped_files"]) == ["empty.png", "not_an_image.png", "truncated.jpg"]
    assert all(s["reason"] for s in report["skipped_files"])
    assert "skipped 3" in capsys.readouterr().err
    d = out / "level0.300"
    expected = {"odd_427x640": (640, 427), "exif_rotate6": (20, 40), "tiny_1x1": (1, 1), "gray16_ramp": None,
                "cmyk": None, "rgba_hidden_red": None, "palette_transparency": None}
    if (src / "under_8000x6000.png").exists():
        expected["under_8000x6000"] = (8000, 6000)
    if (src / "icc_linear_gray128.png").exists():
        expected["icc_linear_gray128"] = (32, 32)
    readable = len(list(src.iterdir())) - 3
    for stem, size in expected.items():
        with Image.open(src / f"{stem}{'.jpg' if stem in ('cmyk', 'exif_rotate6') else '.png'}") as im:
            want = size or im.size
        for j in range(2):
            with Image.open(d / f"{stem}_s{j:03d}.png") as im:
                assert im.size == want, stem
                assert "exif" not in im.info
    rows = _rows(d / "metadata.jsonl")
    assert len(rows) == 2 * readable and not any(r["source"] in ("empty.png", "truncated.jpg") for r in rows)
    assert len(read_manifest(out, 0.3)) == 2 * readable


def test_rerun_continues_and_writes_the_same_bytes(tmp_path, tiny_pixel_dir):
    src = _images(tmp_path / "in", ["a.png", "b.png", "c.png"])
    out1, out2 = tmp_path / "o1", tmp_path / "o2"
    args = ("--level", "0.3", "--samples-per-image", "2", "--batch-size", "2")
    assert _augment(src, out1, tiny_pixel_dir, *args) == 0
    before = {p: p.read_bytes() for p in out1.rglob("*") if p.is_file() and ".job" not in p.parts}
    assert _augment(src, out1, tiny_pixel_dir, *args) == 0  # nothing left to do: same files
    assert {p: p.read_bytes() for p in out1.rglob("*") if p.is_file() and ".job" not in p.parts} == before
    assert _augment(src, out2, tiny_pixel_dir, "--level", "0.3", "--num-samples", "2", "--batch-size", "3") == 0
    for p, data in before.items():
        if p.suffix == ".png":
            assert (out2 / p.relative_to(out1)).read_bytes() == data  # batch size never changes a sample
    assert _augment(src, out1, tiny_pixel_dir, "--level", "0.3", "--samples-per-image", "3") == 2  # refuses: differs


@pytest.mark.parametrize("flags, message", [
    (["--samples-per-image", "0"], "--samples-per-image must be an integer >= 1"),
    (["--num-samples", "0"], "--num-samples must be an integer >= 1"),  # the flag the user gave
    (["--num-samples", "2", "--samples-per-image", "3"], "not both"),
    (["--level", "1.5"], "--level"),
    (["--from-noise"], "--from-noise would ignore the images"),
])
def test_bad_usage_exits_2_naming_the_flag_and_writes_nothing(tmp_path, tiny_pixel_dir, capsys, flags, message):
    src = _images(tmp_path / "in", ["a.png"])
    out = tmp_path / "out"
    code = main(["augment", str(src), "--out", str(out), "--model", str(tiny_pixel_dir), *flags])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not out.exists()


def test_out_inside_the_input_is_refused(tmp_path, tiny_pixel_dir, capsys):
    src = _images(tmp_path / "in", ["a.png"])
    code = main(["augment", str(src), "--out", str(src / "aug"), "--model", str(tiny_pixel_dir)])
    assert code == 2 and "boomerang: error:" in capsys.readouterr().err
    assert sorted(p.name for p in src.iterdir()) == ["a.png"]


def test_original_named_like_a_sample_is_refused(tmp_path, tiny_pixel_dir, capsys):
    src = _images(tmp_path / "in", ["a.png", "a_s000.png"])
    code = main(["augment", str(src), "--out", str(tmp_path / "o"), "--model", str(tiny_pixel_dir),
                 "--samples-per-image", "1", "--include-originals"])
    assert code == 2 and "--include-originals" in capsys.readouterr().err


def test_real_digits_with_the_bundled_model_keep_their_class(tmp_path):
    """boomerang augment on real mnist5k training digits (class folders), bundled model, level 0.2:
    every sample carries its folder's label, and the reference classifier still reads that digit."""
    import torch

    from boomerang.assets import default_model_path
    from boomerang.classifier import load_classifier
    from boomerang.data import load_dataset, load_split

    ds = load_dataset("mnist5k")
    train = load_split(default_model_path() / "split.json")["train"]
    src = tmp_path / "in"
    for c in range(10):
        idx = [t for t in train if ds.labels[t] == c][0]
        (src / str(c)).mkdir(parents=True)
        Image.fromarray(ds.images[idx, 0]).save(src / str(c) / f"{idx:04d}.png")
    out = tmp_path / "out"
    code = main_for(AugmentTask(), [str(src), "--out", str(out), "--level", "0.2", "--samples-per-image", "2",
                                    "--steps", "20", "--no-progress"])
    assert code == 0
    rows = _rows(out / "level0.200" / "metadata.jsonl")
    assert len(rows) == 20 and all(r["label"] == r["file_name"].split("/")[0] for r in rows)
    x = torch.stack([torch.from_numpy(np.asarray(Image.open(out / "level0.200" / r["file_name"]), np.float32))[None]
                     for r in rows]) / 127.5 - 1.0
    with torch.no_grad():
        pred = load_classifier()(x).argmax(1).tolist()
    assert sum(str(p) == r["label"] for p, r in zip(pred, rows)) >= 18


def test_restart_with_other_levels_deletes_the_old_jobs_level_folders(tmp_path, tiny_pixel_dir, capsys):
    """--restart deletes what the old job wrote (samples, per-level metadata, manifest, originals,
    the folders left empty), whatever its settings were; the new job's files are all that remain."""
    src = _images(tmp_path / "in", ["3/a.png", "7/c.png"])
    out, ref = tmp_path / "out", tmp_path / "ref"
    assert _augment(src, out, tiny_pixel_dir, "--level", "0.6", "--include-originals") == 0
    assert (out / "level0.600" / MANIFEST_NAME).is_file() and (out / "level0.600" / "3" / "a.png").is_file()
    capsys.readouterr()
    assert _augment(src, out, tiny_pixel_dir, "--level", "0.5") == 2  # other settings: refused
    assert "--restart" in capsys.readouterr().err
    assert _augment(src, out, tiny_pixel_dir, "--level", "0.5", "--restart") == 0
    assert _augment(src, ref, tiny_pixel_dir, "--level", "0.5") == 0
    tree = lambda root: sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))  # noqa: E731
    assert not (out / "level0.600").exists()
    assert tree(out) == tree(ref)
    assert (src / "3" / "a.png").is_file()  # the originals copied into OUT went, never the input's
