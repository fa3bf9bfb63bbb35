"""The streaming runner: items listed and indexed on disk, outputs made on demand, the journal
read by offset, external sorts, and memory that does not grow with the number of items."""

from __future__ import annotations

import json
import random
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from boomerang.tasks import JobSettings, Task
from boomerang.tasks.items import IndexedItems
from boomerang.tasks.job import NoOptions
from boomerang.tasks.journal import Journal
from boomerang.tasks.layout import ListedItems, scan
from boomerang.tasks.streams import external_sorted


def _pngs(folder: Path, n: int, per_folder=50) -> Path:
    rng = np.random.default_rng(0)
    data = [(rng.random((6, 5)) * 255).astype(np.uint8) for _ in range(4)]
    for i in range(n):
        p = folder / f"d{i // per_folder:03d}" / f"{i:05d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(data[i % 4]).save(p)
    return folder


def test_external_sort_matches_sorted_and_keeps_ties_in_order(tmp_path):
    rows = [{"k": random.Random(i).randrange(20), "i": i} for i in range(257)]
    got = list(external_sorted(rows, key=lambda r: r["k"], folder=tmp_path, run_rows=16))
    assert got == sorted(rows, key=lambda r: r["k"])
    assert not list(tmp_path.iterdir())  # the runs are gone


def test_journal_is_read_by_offset_in_block_order_and_a_cut_line_is_dropped(tmp_path):
    path = tmp_path / "journal.jsonl"
    lines = [json.dumps({"block": b, "records": [{"_unit": 2 * b}, {"_unit": 2 * b + 1}], "skipped": []})
             for b in (2, 0, 1)]
    path.write_text("\n".join(lines) + "\n" + '{"block": 3, "rec')
    j = Journal(path)
    assert len(j) == 3 and 3 not in j and 1 in j and j.records_count == 6
    assert [r["_unit"] for r in j.records()] == list(range(6))
    assert path.read_text().endswith("\n") and path.read_text().count("\n") == 3


def test_a_folder_is_listed_streaming_and_indexed_in_the_job_folder(tmp_path, tiny_pixel_dir):
    from boomerang.settings import SampleSettings
    from boomerang.tasks.runner import run_job

    src = _pngs(tmp_path / "in", 120)
    layout = scan(src)
    assert isinstance(layout.items, ListedItems) and len(layout.items) == 120 and layout.kind == "classes"
    assert [it.relpath for it in layout.items][:2] == ["d000/00000.png", "d000/00001.png"]
    out = tmp_path / "out"
    rc = run_job(Task(), SampleSettings(level=0.0, num_samples=1, batch_size=7, model=str(tiny_pixel_dir)),
                 NoOptions(), JobSettings(inputs=str(src), out=str(out), progress=False, threads=1))
    assert rc == 0
    indexed = IndexedItems(out / ".job", 120, layout.digest(), src)
    assert indexed[57].relpath == "d001/00057.png" and indexed[57].label == "d001"
    assert [it.relpath for it in indexed.range(118, 200)] == ["d002/00118.png", "d002/00119.png"]
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert [r["source"] for r in rows] == [it.relpath for it in layout.items]


_PLANNED_BYTES = r"""
import sys, tracemalloc
from boomerang.settings import SampleSettings
from boomerang.tasks import JobSettings, Task
from boomerang.tasks.job import NoOptions
from boomerang.tasks.runner import plan_job

def planned(src):
    tracemalloc.start()
    model = None if sys.argv[1] == "-" else sys.argv[1]  # "-": the default model, chosen from the inputs
    job = plan_job(Task(), SampleSettings(level=0.0, num_samples=1, model=model), NoOptions(),
                   JobSettings(inputs=src, out=src + "-out", progress=False))
    sum(1 for _ in job.outputs)  # walk every output once more
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del job
    return peak

planned(sys.argv[2])  # imports and caches first
print(" ".join(str(planned(src)) for src in sys.argv[3:]))
"""


def _planned_bytes(model, *folders: Path) -> list[int]:
    """Peak traced bytes of planning a job on each folder, in a fresh process: earlier tests' threads
    (a Ray driver's) and caches would otherwise allocate within the traced window."""
    import os
    import subprocess
    import sys

    import boomerang

    env = {**os.environ, "PYTHONPATH": str(Path(boomerang.__file__).parents[1]), "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-c", _PLANNED_BYTES, str(model), *map(str, folders)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return [int(v) for v in r.stdout.split()[-len(folders) + 1:]]


@pytest.mark.parametrize("named", [True, False], ids=["model", "default_model"])
def test_planning_memory_does_not_grow_with_the_items(tmp_path, tiny_pixel_dir, named):
    """Also without a model: choosing the default reads every input, streamed (a list of their
    paths took about 400 B per item)."""
    small, large = _planned_bytes(tiny_pixel_dir if named else "-", _pngs(tmp_path / "warm", 10), _pngs(tmp_path / "small", 200),
                                  _pngs(tmp_path / "large", 1600))
    per_item = (large - small) / 1400
    print(f"planning peak: {small / 1e3:.0f} kB at 200 items, {large / 1e3:.0f} kB at 1600 ({per_item:.0f} B per item)")
    assert per_item < 100  # a list of items and outputs took about 2,500 B per item


def test_the_survey_digests_equal_the_items_fingerprint_in_both_layouts(tmp_path):
    """survey_folder writes each item's fingerprint line by hand (no items made): the same sha256 as
    items_digest of the listed items, with quotes, unicode, spaces and upper-case suffixes in names,
    and the same order as the lister (a folder `d` sorts as `d/`)."""
    from boomerang.imageio import iter_image_files
    from boomerang.tasks.layout import items_digest, survey_folder

    src = tmp_path / "in"
    names = ['cls "a"/x.png', "clsé/b c.PNG", "cls/zz.jpg", "d/1.png", "d.png/2.png", "d-/3.png", "e/.hidden.png"]
    for i, name in enumerate(names):
        p = src / name
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((4, 3 + i), i, np.uint8)).save(p, format="PNG")
    (src / "d" / "notes.txt").write_text("not an image")
    count, at_root, plain, classes = survey_folder(src)
    listed = [f.relative_to(src).as_posix() for f in iter_image_files(src, unique=False)]
    assert count == 6 == len(listed) and at_root is None
    assert listed == sorted(listed, key=lambda r: [p + "/" for p in r.split("/")[:-1]] + [r.split("/")[-1]])
    assert plain == items_digest(ListedItems(src, "folder")) and classes == items_digest(ListedItems(src, "classes"))
    assert plain != classes
    assert [it.relpath for it in ListedItems(src, "folder")] == listed
    from boomerang.tasks.layout import item_line

    for kind in ("folder", "classes"):  # item_line's hand-written text is json.dumps's
        for it in ListedItems(src, kind):
            want = json.dumps([it.relpath, it.path.stat().st_size, it.columns], sort_keys=True, default=str)
            assert item_line(it) == want
    from boomerang.tasks.items import index_items

    for kind in ("folder", "classes"):  # the index's hand-written lines are json.dumps's; read back equal
        job = tmp_path / kind
        job.mkdir()
        indexed = index_items(ListedItems(src, kind), job, src)
        items = list(ListedItems(src, kind))
        lines = (job / "items.jsonl").read_text(encoding="utf-8").splitlines()
        assert lines == [json.dumps([it.relpath, it.relpath, it.label, None, it.columns, None, None, None, None],
                                    ensure_ascii=False) for it in items]
        assert [indexed[i] for i in range(len(items))] == items == list(indexed.range(0, 99))


@pytest.mark.parametrize("collide", [False, True])
def test_two_inputs_that_would_share_an_output_name_are_refused_before_anything_is_written(
        tmp_path, tiny_pixel_dir, monkeypatch, collide):
    """a.png and a.jpg both become a.png: one error naming both, nothing written. With every name
    hashing alike (collide), distinct names still pass and equal ones are still caught."""
    from boomerang.errors import SettingError
    from boomerang.settings import SampleSettings
    from boomerang.tasks import runner
    from boomerang.tasks.runner import plan_job

    if collide:
        monkeypatch.setattr(runner, "_name_hash", lambda name: 7)
    src = _pngs(tmp_path / "in", 6, per_folder=3)
    settings = SampleSettings(level=0.0, num_samples=1, model=str(tiny_pixel_dir))
    job = plan_job(Task(), settings, NoOptions(), JobSettings(inputs=str(src), out=str(tmp_path / "ok"), progress=False))
    assert len(job.outputs) == 6
    Image.fromarray(np.zeros((6, 5), np.uint8)).save(src / "d001" / "00004.jpg")
    with pytest.raises(SettingError, match=r"two outputs would be named d001/00004\.png \(d001/00004\.jpg and "
                                           r"d001/00004\.png\); rename one of the inputs"):
        plan_job(Task(), settings, NoOptions(), JobSettings(inputs=str(src), out=str(tmp_path / "out"), progress=False))
    assert not (tmp_path / "out").exists()


def test_a_killed_runs_scratch_files_are_removed_when_the_job_starts_again(tmp_path):
    """OUT/.job/scratch holds work files of blocks in flight (enhance's x_t files): stale when the job
    starts again (a kill leaves them), so start() empties it; the journal and job.json are kept."""
    from boomerang.tasks.journal import JobFolder

    folder = JobFolder(tmp_path / "out")
    folder.start({"a": 1})
    (folder.scratch / "enhance-bands-x").mkdir(parents=True)
    (folder.scratch / "enhance-bands-x" / "x_t.f32").write_bytes(b"\0" * 64)
    folder.append({"block": 0, "written": [], "records": [], "skipped": []})
    journal = folder.start({"a": 1})  # the rerun
    assert not folder.scratch.exists() and 0 in journal and folder.job_path.is_file()
    folder.scratch.mkdir()
    folder.clear()  # --restart removes it with the job folder
    assert not folder.dir.exists()
