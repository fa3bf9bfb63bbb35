"""Sharded datasets (boomerang.tasks.shards): WebDataset tars and Parquet files in and out, keys,
seeds, kill/resume; and the streaming runner's bookkeeping (item index, journal offsets)."""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import signal
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from boomerang.tasks import Task, main_for


def _png(rng, size=(12, 10)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((rng.random(size[::-1]) * 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _add(tar, name, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _wds(folder: Path, shards: dict, seed=0) -> Path:
    """shards: {shard name: [keys]}; each key gets a png, a .cls and a .json (and a .txt)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for shard, keys in shards.items():
        with tarfile.open(folder / shard, "w") as tar:
            for n, key in enumerate(keys):
                _add(tar, f"{key}.png", _png(rng))
                _add(tar, f"{key}.cls", str(n % 3).encode())
                _add(tar, f"{key}.txt", f"a digit {key}".encode())
                _add(tar, f"{key}.json", json.dumps({"source_id": key}).encode())
    return folder


def _parquet(folder: Path, shards: dict, seed=0, names=True) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for shard, keys in shards.items():
        rows = [{"image": {"bytes": _png(rng), "path": f"{k}.png" if names else None}, "label": n % 3,
                 "caption": f"a digit {k}"} for n, k in enumerate(keys)]
        (folder / shard).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), folder / shard, row_group_size=3)
    return folder


def _args(model, out, *extra):
    return ["--out", str(out), "--model", str(model), "--steps", "3", "--level", "0.5", "--no-progress",
            "--threads", "1", *extra]


def _tree(out: Path) -> dict:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and ".job" not in p.relative_to(out).parts}


def _tar_members(path: Path) -> dict:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def test_webdataset_in_and_out_carries_labels_captions_and_metadata(tmp_path, tiny_pixel_dir, capsys):
    src = _wds(tmp_path / "in", {"train-000.tar": ["a0", "a1", "a2"], "train-001.tar": ["b0", "b1"]})
    out = tmp_path / "out"
    assert main_for(Task(), [str(src), *_args(tiny_pixel_dir, out, "--batch-size", "2")]) == 0
    assert sorted(p.name for p in out.iterdir() if p.name != ".job") == ["report.json", "train-000.tar",
                                                                          "train-001.tar"]
    members = _tar_members(out / "train-000.tar")
    assert sorted(members) == sorted(f"a{i}.{e}" for i in range(3) for e in ("png", "json", "cls", "txt"))
    meta = json.loads(members["a1.json"])
    assert meta["source"] == "a1.png" and meta["label"] == "1" and meta["caption"] == "a digit a1"
    assert meta["source_id"] == "a1" and meta["level"] == 0.5
    assert members["a1.cls"] == b"1" and members["a1.txt"] == b"a digit a1"
    with Image.open(io.BytesIO(members["a2.png"])) as im:
        assert im.size == (12, 10)
    assert not (out / ".job" / "staging").exists()  # staged PNGs are gone once their shard is written
    report = json.loads((out / "report.json").read_text())
    assert (report["done"], report["total"]) == (5, 5)
    # A second run has nothing to do and writes the same bytes.
    before = _tree(out)
    assert main_for(Task(), [str(src), *_args(tiny_pixel_dir, out, "--batch-size", "2")]) == 0
    assert _tree(out) == before


def test_seeds_depend_on_the_key_only_not_on_shard_size_or_batch(tmp_path, tiny_pixel_dir):
    keys = [f"k{i}" for i in range(6)]
    one = _wds(tmp_path / "one", {"s.tar": keys})
    two = _wds(tmp_path / "two", {"s0.tar": keys[:2], "s1.tar": keys[2:]})
    assert main_for(Task(), [str(one), *_args(tiny_pixel_dir, tmp_path / "o1", "--batch-size", "4")]) == 0
    assert main_for(Task(), [str(two), *_args(tiny_pixel_dir, tmp_path / "o2", "--batch-size", "1")]) == 0
    a = _tar_members(tmp_path / "o1" / "s.tar")
    b = {**_tar_members(tmp_path / "o2" / "s0.tar"), **_tar_members(tmp_path / "o2" / "s1.tar")}
    assert sorted(a) == sorted(b)  # (labels differ: the fixture numbers them per shard)
    assert all(a[f"{k}.png"] == b[f"{k}.png"] for k in keys)
    assert [json.loads(a[f"{k}.json"])["seed"] for k in keys] == [json.loads(b[f"{k}.json"])["seed"] for k in keys]


def test_parquet_in_and_out_with_keys_from_paths_or_rows(tmp_path, tiny_pixel_dir):
    import pyarrow.parquet as pq

    src = _parquet(tmp_path / "in", {"data/train-0.parquet": [f"x{i}" for i in range(5)]})
    out = tmp_path / "out"
    assert main_for(Task(), [str(src), *_args(tiny_pixel_dir, out, "--batch-size", "2", "--layout", "parquet")]) == 0
    table = pq.read_table(out / "data" / "train-0.parquet").to_pylist()
    assert [r["source"] for r in table] == [f"x{i}.png" for i in range(5)]
    assert [r["label"] for r in table] == [0, 1, 2, 0, 1] and table[3]["caption"] == "a digit x3"
    with Image.open(io.BytesIO(table[0]["image"]["bytes"])) as im:
        assert im.size == (12, 10)
    nameless = _parquet(tmp_path / "in2", {"p.parquet": ["y0", "y1"]}, names=False)
    assert main_for(Task(), [str(nameless), *_args(tiny_pixel_dir, tmp_path / "out2")]) == 0
    rows = pq.read_table(tmp_path / "out2" / "p.parquet").to_pylist()
    assert [r["source"] for r in rows] == ["p.parquet/0", "p.parquet/1"]


def _fork_job(argv) -> int:
    pid = os.fork()
    if pid == 0:
        rc = 1
        try:
            import sys

            sys.stderr = open(os.devnull, "w")
            rc = main_for(Task(), argv)
        finally:
            os._exit(rc)
    return pid


def _wait(pid) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("kind", ["webdataset", "parquet"])
def test_sigkill_then_resume_writes_the_same_shards(tmp_path, tiny_pixel_dir, kind):
    shards = {"s0" + (".tar" if kind == "webdataset" else ".parquet"): [f"a{i}" for i in range(5)],
              "s1" + (".tar" if kind == "webdataset" else ".parquet"): [f"b{i}" for i in range(4)]}
    src = (_wds if kind == "webdataset" else _parquet)(tmp_path / "in", shards)
    argv = lambda out: [str(src), *_args(tiny_pixel_dir, out, "--batch-size", "2", "--level", "0.3,0.6")]  # noqa: E731
    ref = tmp_path / "ref"
    t0 = time.perf_counter()
    assert _wait(_fork_job(argv(ref))) == 0
    full = time.perf_counter() - t0
    expected = _tree(ref)
    out = tmp_path / "out"
    rng = random.Random(1)
    kills = 0
    for _attempt in range(60):
        pid = _fork_job(argv(out))
        time.sleep(rng.uniform(0.0, full))
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        rc = _wait(pid)
        kills += rc == -signal.SIGKILL
        if rc == 0 and kills >= 6:
            break
        if rc == 0:  # finished before the kill: start again from scratch to get more kills
            shutil.rmtree(out)
        # a final shard name only ever holds a whole shard
        for name in shards:
            if (out / name).exists():
                assert (out / name).read_bytes() == expected[name]
    assert kills >= 6
    assert _wait(_fork_job(argv(out))) == 0
    assert _tree(out) == expected
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_the_ray_engine_writes_the_same_shards_as_the_local_engine(tmp_path, tiny_pixel_dir):
    ray = pytest.importorskip("ray")
    src = _wds(tmp_path / "in", {"s0.tar": ["a0", "a1", "a2"], "s1.tar": ["b0", "b1"]})
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert main_for(Task(), [str(src), *_args(tiny_pixel_dir, local, "--batch-size", "2")]) == 0
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        assert main_for(Task(), [str(src), *_args(tiny_pixel_dir, remote, "--batch-size", "2", "--engine", "ray",
                                                  "--workers", "2")]) == 0
    finally:
        ray.shutdown()
    assert _tree(remote) == _tree(local) and {"s0.tar", "s1.tar"} <= set(_tree(local))
