"""The dataset runner (boomerang.tasks): layouts, path seeds, journal/resume, kills, skips, refusals."""

from __future__ import annotations

import json
import os
import random
import signal
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from boomerang.tasks import Task, main_for

CASES = Path(__file__).parents[1] / "data" / "cases"  # copies of shared/cases/images


def _digits(folder: Path, names, seed=0):
    rng = np.random.default_rng(seed)
    for name in names:
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((10, 12)) * 255).astype(np.uint8)).save(p)
    return folder


def _tree(out: Path) -> dict:
    """Every file under out except the job folder, as bytes."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and ".job" not in p.relative_to(out).parts}


def _args(model, out, *extra):
    return ["--out", str(out), "--model", str(model), "--steps", "3", "--level", "0.5", "--no-progress", *extra]


def test_folder_job_mirrors_names_and_writes_metadata(tmp_path, tiny_pixel_dir, capsys):
    src = _digits(tmp_path / "in", ["a.png", "sub/b.png", "sub/deeper/c.jpg"])
    out = tmp_path / "out"
    assert main_for(Task(), [str(src), *_args(tiny_pixel_dir, out, "--num-samples", "2")]) == 0
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert names == ["a_s000.png", "a_s001.png", "sub/b_s000.png", "sub/b_s001.png",
                     "sub/deeper/c_s000.png", "sub/deeper/c_s001.png"]
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert [r["file_name"] for r in rows] == names and all(r["level"] == 0.5 for r in rows)
    report = json.loads((out / "report.json").read_text())
    assert (report["done"], report["skipped"], report["total"]) == (3, 0, 3)
    assert "done 3, skipped 0, total 3" in capsys.readouterr().err
    for p in out.rglob("*.png"):
        with Image.open(p) as im:
            assert im.size == (12, 10) and not im.info.get("exif") and not im.info.get("icc_profile")
    assert not list(out.rglob("*.tmp"))


def test_the_rate_counts_only_outputs_made_by_this_run(tmp_path, tiny_pixel_dir, capsys):
    import re

    src = _digits(tmp_path / "in", ["a.png", "b.png", "c.png"])
    out = tmp_path / "out"
    assert main_for(Task(), [str(src), *_args(tiny_pixel_dir, out)]) == 0
    first = capsys.readouterr().err
    rate = re.search(r"\(3 outputs in .*, ([0-9.]+) outputs/s\)", first)
    assert rate and float(rate.group(1)) > 0, first
    assert main_for(Task(), [str(src), *_args(tiny_pixel_dir, out)]) == 0  # finished: nothing to make
    again = capsys.readouterr().err
    assert "done 3, skipped 0, total 3 (3 outputs in" in again and "all made before, none now" in again, again
    assert "outputs/s" not in again, again


def test_classes_and_imagefolder_layouts_carry_labels_and_captions(tmp_path, tiny_pixel_dir):
    classes = _digits(tmp_path / "classes", ["cat/1.png", "cat/2.png", "dog/1.png"])
    out = tmp_path / "o1"
    assert main_for(Task(), [str(classes), *_args(tiny_pixel_dir, out)]) == 0
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert [(r["file_name"], r["label"]) for r in rows] == [("cat/1.png", "cat"), ("cat/2.png", "cat"), ("dog/1.png", "dog")]

    for fmt in ("jsonl", "csv"):
        hf = _digits(tmp_path / f"hf_{fmt}", ["x.png", "img/y.png"])
        meta = [{"file_name": "x.png", "label": "3", "caption": "a three"},
                {"file_name": "img/y.png", "label": "7", "caption": "a seven, tilted"}]
        if fmt == "jsonl":
            (hf / "metadata.jsonl").write_text("".join(json.dumps(m) + "\n" for m in meta))
        else:
            (hf / "metadata.csv").write_text('file_name,label,caption\nx.png,3,a three\nimg/y.png,7,"a seven, tilted"\n')
        out = tmp_path / f"o_{fmt}"
        assert main_for(Task(), [str(hf), *_args(tiny_pixel_dir, out)]) == 0
        assert (out / f"metadata.{fmt}").is_file() and sorted(p.name for p in out.glob("metadata.*")) == [f"metadata.{fmt}"]
        if fmt == "jsonl":
            rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
        else:
            import csv

            rows = list(csv.DictReader((out / "metadata.csv").open()))
        got = {r["file_name"]: (str(r["label"]), r["caption"]) for r in rows}
        assert got == {"img/y.png": ("7", "a seven, tilted"), "x.png": ("3", "a three")}


def test_path_seeds_ignore_other_files_batch_size_and_order(tmp_path, tiny_pixel_dir):
    a = _digits(tmp_path / "a", ["k/1.png", "k/2.png", "k/3.png"])
    b = tmp_path / "b"
    shutil.copytree(a, b)
    _digits(b, ["k/0.png", "k/25.png"], seed=9)  # extra files sort before and between
    os.remove(b / "k" / "3.png")
    oa, ob = tmp_path / "oa", tmp_path / "ob"
    assert main_for(Task(), [str(a), *_args(tiny_pixel_dir, oa, "--batch-size", "3")]) == 0
    assert main_for(Task(), [str(b), *_args(tiny_pixel_dir, ob, "--batch-size", "1")]) == 0
    for name in ("k/1.png", "k/2.png"):
        assert (oa / name).read_bytes() == (ob / name).read_bytes()
    assert (oa / "k/1.png").read_bytes() != (oa / "k/2.png").read_bytes()


def test_unreadable_files_are_skipped_and_reported(tmp_path, tiny_pixel_dir, capsys):
    src = _digits(tmp_path / "in", ["good1.png", "good2.png"])
    for name in ("truncated.jpg", "empty.png", "not_an_image.png", "exif_rotate6.jpg", "rgba_hidden_red.png",
                 "gray16_ramp.png", "cmyk.jpg", "tiny_1x1.png"):
        shutil.copy(CASES / name, src / name)
    out = tmp_path / "out"
    rc = main_for(Task(), [str(src), *_args(tiny_pixel_dir, out)])
    assert rc == 3
    report = json.loads((out / "report.json").read_text())
    assert [s["file"] for s in report["skipped_files"]] == ["empty.png", "not_an_image.png", "truncated.jpg"]
    assert all(s["file"] in s["reason"] for s in report["skipped_files"])
    assert all(str(src) not in s["reason"] for s in report["skipped_files"])  # paths relative to IN_DIR
    assert (report["done"], report["skipped"], report["total"]) == (7, 3, 10)
    assert "done 7, skipped 3, total 10" in capsys.readouterr().err
    with Image.open(out / "exif_rotate6.png") as im:
        assert im.size == (20, 40) and "exif" not in im.info
    assert not (out / "truncated.png").exists()
    # a rerun of a finished job continues (nothing left) and reports the same
    assert main_for(Task(), [str(src), *_args(tiny_pixel_dir, out)]) == 3


def test_other_settings_refuse_to_continue_then_restart(tmp_path, tiny_pixel_dir, capsys):
    src = _digits(tmp_path / "in", ["a.png", "b.png"])
    out = tmp_path / "out"
    assert main_for(Task(), [str(src), *_args(tiny_pixel_dir, out)]) == 0
    capsys.readouterr()
    rc = main_for(Task(), [str(src), *_args(tiny_pixel_dir, out, "--seed", "7")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "seed 0 (now 7)" in err and "--restart" in err and "--out" in err
    before = (out / "a.png").read_bytes()
    assert main_for(Task(), [str(src), *_args(tiny_pixel_dir, out, "--seed", "7", "--restart")]) == 0
    assert (out / "a.png").read_bytes() != before


def test_output_inside_input_and_bad_flags_are_refused(tmp_path, tiny_pixel_dir, capsys):
    src = _digits(tmp_path / "in", ["a.png"])
    assert main_for(Task(), [str(src), *_args(tiny_pixel_dir, src / "out")]) == 2
    assert "inside the input folder" in capsys.readouterr().err and not (src / "out").exists()
    assert main_for(Task(), [str(src), *_args(tiny_pixel_dir, tmp_path / "o", "--level", "1.5")]) == 2
    assert "--level" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert main_for(Task(), [str(tmp_path / "nope"), *_args(tiny_pixel_dir, tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "IN_DIR" in err and "nope: no such file or folder" in err
    (tmp_path / "file.png").write_bytes(b"x")
    assert main_for(Task(), [str(tmp_path / "file.png"), *_args(tiny_pixel_dir, tmp_path / "o")]) == 2
    assert "file.png is not a folder" in capsys.readouterr().err


# ----------------------------------------------------------------------------- kills


class _HeldTask(Task):
    """The plain dataset task, but sampling waits while the file ``OUT/../hold`` exists
    (after creating ``OUT/../sampling``): a block that takes as long as the test wants."""

    def sample_batch(self, job, x0, generators, plan, prompts, progress=None):
        hold = job.out.parent / "hold"
        (job.out.parent / "sampling").touch()
        deadline = time.time() + 60
        while hold.exists() and time.time() < deadline:
            time.sleep(0.01)
        return super().sample_batch(job, x0, generators, plan, prompts, progress)


def _fork_job(argv, stderr=os.devnull, task=Task) -> int:
    pid = os.fork()
    if pid == 0:  # the child runs the job and never returns into pytest
        rc = 1
        try:
            import sys

            sys.stderr = open(stderr, "w")
            rc = main_for(task(), argv)
        finally:
            sys.stderr.flush()
            os._exit(rc)
    return pid


def _wait(pid) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_sigkill_at_random_moments_then_resume_is_byte_identical(tmp_path, tiny_pixel_dir):
    src = _digits(tmp_path / "in", [f"c{i % 3}/{i:02d}.png" for i in range(8)])
    argv = lambda out: [str(src), *_args(tiny_pixel_dir, out, "--batch-size", "2", "--num-samples", "2",  # noqa: E731
                                         "--level", "0.3,0.6", "--threads", "1")]
    ref = tmp_path / "ref"
    t0 = time.perf_counter()
    assert _wait(_fork_job(argv(ref))) == 0
    full = time.perf_counter() - t0
    print(f"uninterrupted run: {full:.2f} s")
    expected = _tree(ref)
    assert len(expected) == 8 * 4 + 2  # samples, metadata.jsonl, report.json

    out = tmp_path / "out"
    rng = random.Random(0)
    kills = 0
    for _attempt in range(200):
        pid = _fork_job(argv(out))
        time.sleep(rng.uniform(0.0, full))
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        rc = _wait(pid)
        if rc == -signal.SIGKILL:
            kills += 1
        elif rc == 0 and kills >= 20:
            break
        if rc == 0:  # finished before the kill: start again from scratch to get more kills
            shutil.rmtree(out)
    print(f"{kills} kills in {_attempt + 1} attempts")
    assert kills >= 20
    assert _tree(out) == expected
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    journal = (out / ".job" / "journal.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["block"] for line in journal) == list(range(16))


@pytest.mark.parametrize("kernels,batch", [("auto", "1"), ("plain", "3")])
def test_sigterm_stops_after_the_current_block_and_resumes(tmp_path, tiny_pixel_dir, kernels, batch):
    """Also with --kernels plain: fixed blocks make a resumed job byte-identical without invariant kernels."""
    src = _digits(tmp_path / "in", [f"{i:02d}.png" for i in range(30)])
    argv = lambda out: [str(src), *_args(tiny_pixel_dir, out, "--batch-size", batch, "--threads", "1",  # noqa: E731
                                         "--kernels", kernels)]
    ref, out, log = tmp_path / "ref", tmp_path / "out", tmp_path / "stderr.txt"
    assert _wait(_fork_job(argv(ref))) == 0
    pid = _fork_job(argv(out), stderr=log)
    journal = out / ".job" / "journal.jsonl"
    deadline = time.time() + 60
    while not (journal.exists() and journal.read_text().count("\n") >= 2) and time.time() < deadline:
        time.sleep(0.01)
    os.kill(pid, signal.SIGTERM)
    assert _wait(pid) == 130
    said = log.read_text()
    assert "SIGTERM: stopping" in said and "Rerun the same command to continue" in said
    lines = journal.read_text().splitlines()
    assert 2 <= len(lines) < 30 // int(batch) and all(json.loads(line)["written"] for line in lines)
    assert not (out / "report.json").exists()
    assert _wait(_fork_job(argv(out))) == 0
    assert _tree(out) == _tree(ref)


def test_ctrl_c_while_a_block_is_sampled_stops_at_once_and_the_block_is_redone(tmp_path, tiny_pixel_dir):
    """One block of 30 images, held in sampling: a single Ctrl-C stops the job without waiting for
    the block (as one large image through enhance would make it wait), nothing is journalled or
    half-written, and the rerun writes the same bytes as an uninterrupted run."""
    src = _digits(tmp_path / "in", [f"{i:02d}.png" for i in range(30)])
    argv = lambda out: [str(src), *_args(tiny_pixel_dir, out, "--batch-size", "30", "--threads", "1")]  # noqa: E731
    ref, out, log = tmp_path / "ref", tmp_path / "out", tmp_path / "stderr.txt"
    assert _wait(_fork_job(argv(ref), task=_HeldTask)) == 0
    (tmp_path / "sampling").unlink()
    (tmp_path / "hold").touch()
    pid = _fork_job(argv(out), stderr=log, task=_HeldTask)
    deadline = time.time() + 60
    while not (tmp_path / "sampling").exists() and time.time() < deadline:
        time.sleep(0.01)
    t0 = time.time()
    os.kill(pid, signal.SIGINT)
    assert _wait(pid) == 130
    assert time.time() - t0 < 30  # not held until the 60 s deadline
    said = log.read_text()
    assert "Ctrl-C: stopping now; the block in progress is dropped" in said
    assert "Rerun the same command to continue" in said
    journal = out / ".job" / "journal.jsonl"
    assert not journal.exists() or not journal.read_text()
    assert not (out / "report.json").exists() and not list(out.rglob("*.png"))
    (tmp_path / "hold").unlink()
    assert _wait(_fork_job(argv(out), task=_HeldTask)) == 0
    assert _tree(out) == _tree(ref)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_a_second_ctrl_c_interrupts_at_once_where_the_first_waits_for_the_writes():
    """Outside the interruptible section (writing) the first signal only asks to stop; the second
    raises KeyboardInterrupt; inside it the first raises StopRequested."""
    from boomerang.stopping import Stop, StopRequested

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)  # SIG_IGN under nohup
    with Stop("test") as stop:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        assert stop.signum == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    with Stop("test") as stop:
        with pytest.raises(StopRequested):
            with stop.interruptible():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)
        assert stop.signum == signal.SIGTERM
        with pytest.raises(StopRequested):  # a stop already asked for: the next section does not start
            with stop.interruptible():
                pass
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # handlers restored


# ----------------------------------------------------------------------------- ray


def test_ray_engine_writes_the_same_bytes_as_the_local_engine(tmp_path, tiny_pixel_dir):
    import ray

    src = _digits(tmp_path / "in", [f"c{i % 2}/{i}.png" for i in range(6)])
    common = ["--batch-size", "2", "--num-samples", "2", "--threads", "1"]
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert main_for(Task(), [str(src), *_args(tiny_pixel_dir, local, *common)]) == 0
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        assert main_for(Task(), [str(src), *_args(tiny_pixel_dir, remote, *common, "--engine", "ray",
                                                  "--workers", "2")]) == 0
    finally:
        ray.shutdown()
    assert _tree(remote) == _tree(local) and len(_tree(local)) == 6 * 2 + 2
    assert (remote / ".job" / "journal.jsonl").read_text().count("\n") == 6


def test_kernels_setting_sets_the_models_batch_invariance(tiny_pixel_dir):
    from boomerang.errors import SettingError
    from boomerang.sampling import load

    assert load(tiny_pixel_dir).batch_invariant is True  # the CPU default
    assert load(tiny_pixel_dir, kernels="plain").batch_invariant is False
    assert load(tiny_pixel_dir, kernels="invariant").batch_invariant is True
    with pytest.raises(SettingError, match="kernels must be one of auto, invariant, plain"):
        load(tiny_pixel_dir, kernels="fast")


def test_a_rerun_keeps_the_thread_count_the_job_started_with(tmp_path, tiny_pixel_dir, capsys):
    """Other thread counts may move a pixel by one grey level: without --threads a rerun uses the
    job's own (job.json), an explicit other --threads is honoured with one warning line."""
    import torch

    src = _digits(tmp_path / "in", ["a.png", "b.png"])
    out = tmp_path / "out"
    before = torch.get_num_threads()
    try:
        assert main_for(Task(), [str(src), *_args(tiny_pixel_dir, out, "--threads", "1")]) == 0
        assert json.loads((out / ".job" / "job.json").read_text())["threads"] == 1
        torch.set_num_threads(2)
        assert main_for(Task(), [str(src), *_args(tiny_pixel_dir, out)]) == 0  # default threads
        assert torch.get_num_threads() == 1 and "warning" not in capsys.readouterr().err
        assert main_for(Task(), [str(src), *_args(tiny_pixel_dir, out, "--threads", "2")]) == 0
        assert torch.get_num_threads() == 2
        err = capsys.readouterr().err
        assert "this job started with --threads 1; continuing with 2" in err
    finally:
        torch.set_num_threads(before)
