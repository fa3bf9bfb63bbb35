"""WebDataset and Parquet shards through the dataset commands (augment, enhance, anonymise) on the
command line: outputs in the input's kind of layout, labels/captions/metadata per item, bad shards
skipped and reported, anonymise's release unlinkable from the input's grouping and order,
kill/resume byte-identical, and the Ray engine writing the same bytes as the local one."""

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

import pytest
from PIL import Image

from _helpers import label_of, run_cli, shard_members, tree_bytes, write_parquet, write_webdataset

KINDS = {"webdataset": (".tar", write_webdataset), "parquet": (".parquet", write_parquet)}
COMMANDS = {"augment": ["--samples-per-image", "2"], "enhance": ["--scale", "2"], "anonymise": []}


def _src(tmp_path, kind, shards, name="in"):
    suffix, write = KINDS[kind]
    return write(tmp_path / name, {f"{s}{suffix}": keys for s, keys in shards.items()})


def _common(model, *extra):
    return ["--model", model, "--steps", "3", "--level", "0.5", "--no-progress", "--threads", "1", *extra]


def _rows(members: dict, kind: str) -> dict:
    """{member key: metadata row} of one output shard."""
    if kind == "parquet":
        return {k[:-4]: {c: v for c, v in r.items() if c != "image"} for k, r in members.items()}
    return {k[:-5]: json.loads(v) for k, v in members.items() if k.endswith(".json")}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_each_dataset_command_writes_its_shards(tmp_path, tiny_pixel_dir, capsys, command, kind):
    suffix = KINDS[kind][0]
    src = _src(tmp_path, kind, {"s0": ["a0", "a1", "a2"], "s1": ["b0", "b1"]})
    out = tmp_path / "out"
    rc, err = run_cli([command, src, "--out", out, *_common(tiny_pixel_dir, *COMMANDS[command])], capsys)
    assert rc == 0, err
    shards = sorted(p.relative_to(out).as_posix() for p in out.rglob(f"*{suffix}") if ".job" not in p.parts)
    assert not (out / ".job" / "staging").exists()
    if command == "augment":  # one set of shards per level folder, mirroring the input
        assert shards == [f"level0.500/s0{suffix}", f"level0.500/s1{suffix}"]
        rows = _rows(shard_members(out / shards[0]), kind)
        assert sorted(rows) == [f"a{i}_s00{j}" for i in range(3) for j in range(2)]
        assert rows["a1_s001"]["source"] == "a1.png" and rows["a1_s001"]["sample_index"] == 1
        assert "level_dir" not in rows["a1_s001"]
    elif command == "enhance":  # shard for shard, outputs at twice the size
        assert shards == [f"s0{suffix}", f"s1{suffix}"]
        members = shard_members(out / shards[1])
        rows = _rows(members, kind)
        assert sorted(rows) == ["b0", "b1"] and rows["b0"]["scale"] == 2.0
        png = members["b0.png"]["image"]["bytes"] if kind == "parquet" else members["b0.png"]
        with Image.open(io.BytesIO(png)) as im:
            assert im.size == (24, 20)
    else:  # anonymise: opaque shard and member names, no source, no seed, labels carried
        assert len(shards) == 2 and not {"s0", "s1"} & {Path(s).stem for s in shards}
        rows = {}
        for s in shards:
            rows.update(_rows(shard_members(out / s), kind))
        assert len(rows) == 5 and all(len(k) == 20 for k in rows)
        assert all("source" not in r and "seed" not in r for r in rows.values())
        assert sorted(r["caption"] for r in rows.values()) == sorted(f"a picture {k}" for k in
                                                                     ("a0", "a1", "a2", "b0", "b1"))
        assert not (out / "report.json").exists() and (out / ".job" / "report.json").exists()
    for r in rows.values():  # labels and captions carried through, the metadata row per item
        assert str(r["label"]) == str(label_of(r["caption"].split()[-1])) and r["level"] == 0.5
    if kind == "webdataset":
        members = shard_members(out / shards[0])
        stem = sorted(rows)[0]
        if f"{stem}.cls" in members:
            assert {f"{stem}.cls", f"{stem}.txt", f"{stem}.png", f"{stem}.json"} <= set(members)
    # a rerun has nothing to do and changes no byte
    before = tree_bytes(out)
    rc, _ = run_cli([command, src, "--out", out, *_common(tiny_pixel_dir, *COMMANDS[command])], capsys)
    assert rc == 0 and tree_bytes(out) == before


def _anonymise(src, out, model, key, *, engine="local", workers=None, link_file=None, batch_size=2):
    from boomerang.settings import SampleSettings
    from boomerang.tasks.anonymise import AnonymiseOptions, AnonymiseTask
    from boomerang.tasks.job import JobSettings
    from boomerang.tasks.runner import run_job

    settings = SampleSettings(level=0.5, steps=3, model=str(model), num_samples=1, batch_size=batch_size)
    return run_job(AnonymiseTask(), settings, AnonymiseOptions(key=key, link_file=link_file),
                   JobSettings(inputs=str(src), out=str(out), engine=engine, workers=workers, threads=1,
                               progress=False))


@pytest.mark.parametrize("kind", list(KINDS))
def test_anonymised_shards_do_not_depend_on_the_input_grouping_or_order(tmp_path, tiny_pixel_dir, kind):
    """The release is a function of (key, item keys, images) only: the same items grouped into
    other input shards, in another order, give byte-identical output shards; and what shares an
    output shard is not what shared an input shard."""
    key = "5a" * 32
    keys = [f"k{i:02d}" for i in range(12)]
    a = _src(tmp_path, kind, {"p": keys[:4], "q": keys[4:8], "r": keys[8:]}, "a")
    shuffled = keys[:]
    random.Random(3).shuffle(shuffled)
    b = _src(tmp_path, kind, {"x": shuffled[:5], "y": shuffled[5:7], "z": shuffled[7:]}, "b")
    links = tmp_path / "links.jsonl"
    assert _anonymise(a, tmp_path / "oa", tiny_pixel_dir, key, link_file=str(links)) == 0
    assert _anonymise(b, tmp_path / "ob", tiny_pixel_dir, key, batch_size=3) == 0
    release = tree_bytes(tmp_path / "oa")
    assert release == tree_bytes(tmp_path / "ob") and len(release) == 3
    # The links (private, outside OUT) name every output's shard and member; output shards mix
    # the input shards, and within an output shard the order is not the input's.
    got = [json.loads(line) for line in links.read_text().splitlines()]
    assert sorted(ln["source"] for ln in got) == [f"{k}.png" for k in keys]
    by_out: dict = {}
    for ln in got:
        shard, member = ln["output"].split("/")
        assert shard in release
        by_out.setdefault(shard, []).append((member, ln["source_shard"], ln["source"]))
    assert any(len({s for _, s, _ in v}) > 1 for v in by_out.values())
    for shard, v in by_out.items():
        in_release = list(_rows(shard_members(tmp_path / "oa" / shard), kind))
        assert in_release == sorted(m[:-4] for m, _, _ in v)  # filled in opaque-name order
    order = [src for v in by_out.values() for _, _, src in sorted(v)]
    assert order != sorted(order)


def test_bad_shards_and_members_are_skipped_and_reported(tmp_path, tiny_pixel_dir, capsys):
    src = write_webdataset(tmp_path / "in", {"good.tar": ["g0", "g1", "g2"]}, images={"g1": b"not an image at all"})
    (src / "broken.tar").write_bytes(b"\x00garbage" * 200)
    out = tmp_path / "out"
    rc, err = run_cli(["augment", src, "--out", out, *_common(tiny_pixel_dir, "--samples-per-image", "1")], capsys)
    assert rc == 3, err
    report = json.loads((out / "report.json").read_text())
    reasons = {s["file"]: s["reason"] for s in report["skipped_files"]}
    assert set(reasons) == {"broken.tar", "g1.png"}, reasons
    assert "not an image" in reasons["g1.png"] and "good.tar" in reasons["g1.png"]
    assert "broken.tar" in reasons["broken.tar"]
    assert sorted(shard_members(out / "level0.500" / "good.tar")) == sorted(
        f"g{i}_s000.{e}" for i in (0, 2) for e in ("png", "json", "cls", "txt"))
    assert not (out / "level0.500" / "broken.tar").exists()  # nothing of it to write

    # Parquet: a file without an image column among good ones is skipped and reported ...
    import pyarrow as pa
    import pyarrow.parquet as pq

    psrc = write_parquet(tmp_path / "pin", {"ok.parquet": ["p0", "p1"]})
    pq.write_table(pa.Table.from_pylist([{"label": 1, "caption": "no image"}]), psrc / "labels.parquet")
    rc, err = run_cli(["enhance", psrc, "--out", tmp_path / "pout", *_common(tiny_pixel_dir, "--scale", "2")], capsys)
    assert rc == 3, err
    report = json.loads((tmp_path / "pout" / "report.json").read_text())
    assert [s["file"] for s in report["skipped_files"]] == ["labels.parquet"]
    assert "no image column" in report["skipped_files"][0]["reason"]
    assert sorted(shard_members(tmp_path / "pout" / "ok.parquet")) == ["p0.png", "p1.png"]
    # ... and an input with nothing usable is refused up front: one line, nothing written.
    only = tmp_path / "only"
    only.mkdir()
    pq.write_table(pa.Table.from_pylist([{"label": 1}]), only / "labels.parquet")
    rc, err = run_cli(["anonymise", only, "--out", tmp_path / "none", *_common(tiny_pixel_dir)], capsys)
    assert rc == 2 and "no image column" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "none").exists()


def test_refusals_that_apply_to_shards(tmp_path, tiny_pixel_dir, capsys):
    src = write_webdataset(tmp_path / "in", {"s.tar": ["a"]})
    rc, err = run_cli(["anonymise", src, "--out", tmp_path / "o2", "--verify-top", "1", *_common(tiny_pixel_dir)],
                      capsys)
    assert rc == 2 and "shards" in err and not (tmp_path / "o2").exists()
    rc, err = run_cli(["enhance", src / "s.tar", tmp_path / "in", "--out", tmp_path / "o3", "--scale", "2",
                       *_common(tiny_pixel_dir)], capsys)
    assert rc == 2 and "shard" in err and not (tmp_path / "o3").exists()


@pytest.mark.parametrize("kind", list(KINDS))
def test_augment_include_originals_puts_each_input_before_its_samples(tmp_path, tiny_pixel_dir, capsys, kind):
    suffix = KINDS[kind][0]
    src = _src(tmp_path, kind, {"s0": ["a0", "a1"]})
    out = tmp_path / "out"
    rc, err = run_cli(["augment", src, "--out", out, "--include-originals",
                       *_common(tiny_pixel_dir, "--samples-per-image", "2", "--level", "0.3,0.6")], capsys)
    assert rc == 0, err
    original = shard_members(src / f"s0{suffix}")
    for level in ("level0.300", "level0.600"):
        members = shard_members(out / level / f"s0{suffix}")
        if kind == "webdataset":
            assert list(members)[:4] == ["a0.png", "a0.json", "a0.cls", "a0.txt"]
            assert members["a0.png"] == original["a0.png"] and members["a1.txt"] == original["a1.txt"]
            row = json.loads(members["a1.json"])
            assert [m for m in members if m.endswith(".png")] == ["a0.png", "a0_s000.png", "a0_s001.png", "a1.png",
                                                                  "a1_s000.png", "a1_s001.png"]
        else:
            assert list(members) == ["a0.png", "a0_s000.png", "a0_s001.png", "a1.png", "a1_s000.png", "a1_s001.png"]
            assert members["a0.png"]["image"]["bytes"] == original["a0.png"]["image"]["bytes"]
            row = members["a1.png"]
            assert members["a1_s001.png"]["sample_index"] == 1 and members["a1_s001.png"]["alpha_bar"] is not None
        assert row["source"] == "a1.png" and row["sample_index"] is None and row["seed"] is None
        assert str(row["label"]) == str(label_of("a1"))


# ----------------------------------------------------------------------------- kill and resume

_KEY = "c3" * 32


def _child(command, src, out, model, extra) -> int:
    pid = os.fork()
    if pid == 0:
        rc = 1
        try:
            import sys

            sys.stderr = open(os.devnull, "w")
            if command == "anonymise":  # a fixed key: the reference run makes the same release
                rc = _anonymise(src, out, model, _KEY)
            else:
                from boomerang.cli import main

                rc = main([command, str(src), "--out", str(out), *_common(str(model), "--batch-size", "2", *extra)])
        finally:
            os._exit(rc)
    return pid


def _wait(pid) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("command,kind", [("augment", "parquet"), ("anonymise", "webdataset"),
                                          ("enhance", "parquet")])
def test_sigkill_then_resume_writes_the_same_shards_per_command(tmp_path, tiny_pixel_dir, command, kind):
    src = _src(tmp_path, kind, {"s0": [f"a{i}" for i in range(5)], "s1": [f"b{i}" for i in range(4)]})
    extra = COMMANDS[command]
    ref = tmp_path / "ref"
    t0 = time.perf_counter()
    assert _wait(_child(command, src, ref, tiny_pixel_dir, extra)) == 0
    full = time.perf_counter() - t0
    expected = tree_bytes(ref)
    shards = [n for n in expected if n.endswith(KINDS[kind][0])]
    out = tmp_path / "out"
    rng = random.Random(2)
    kills = 0
    for _attempt in range(40):
        pid = _child(command, src, out, tiny_pixel_dir, extra)
        time.sleep(rng.uniform(0.0, full))
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        rc = _wait(pid)
        kills += rc == -signal.SIGKILL
        if rc == 0 and kills >= 4:
            break
        if rc == 0:  # finished before the kill: start again to get more kills
            shutil.rmtree(out)
        for name in shards:  # a final shard name only ever holds the whole shard
            if (out / name).exists():
                assert (out / name).read_bytes() == expected[name]
    assert kills >= 4
    assert _wait(_child(command, src, out, tiny_pixel_dir, extra)) == 0
    assert tree_bytes(out) == expected
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------- keys and engines


@pytest.mark.parametrize("kind", list(KINDS))
def test_samples_depend_on_the_key_not_on_shard_size_or_batch(tmp_path, tiny_pixel_dir, capsys, kind):
    keys = [f"k{i}" for i in range(7)]
    one = _src(tmp_path, kind, {"all": keys}, "one")
    three = _src(tmp_path, kind, {"s0": keys[:2], "s1": keys[2:3], "s2": keys[3:]}, "three")
    args = _common(tiny_pixel_dir, "--samples-per-image", "2")
    assert run_cli(["augment", one, "--out", tmp_path / "o1", "--batch-size", "5", *args], capsys)[0] == 0
    assert run_cli(["augment", three, "--out", tmp_path / "o3", "--batch-size", "1", *args], capsys)[0] == 0

    def samples(out):
        got = {}
        for p in sorted((out / "level0.500").iterdir()):
            for name, v in shard_members(p).items():
                if name.endswith(".png"):
                    got[name] = v["image"]["bytes"] if kind == "parquet" else v
        return got

    a, b = samples(tmp_path / "o1"), samples(tmp_path / "o3")
    assert sorted(a) == [f"{k}_s00{j}.png" for k in keys for j in range(2)] and a == b


def test_the_ray_engine_writes_the_same_shards_for_every_layout_and_command(tmp_path, tiny_pixel_dir, capsys):
    ray = pytest.importorskip("ray")
    wds = _src(tmp_path, "webdataset", {"s0": ["a0", "a1", "a2"], "s1": ["b0", "b1"]}, "wds")
    pq = _src(tmp_path, "parquet", {"s0": ["a0", "a1", "a2"], "s1": ["b0", "b1"]}, "pq")
    local = {
        "augment-pq": run_cli(["augment", pq, "--out", tmp_path / "l1", "--batch-size", "2",
                               *_common(tiny_pixel_dir, *COMMANDS["augment"])], capsys)[0],
        "anonymise-wds": _anonymise(wds, tmp_path / "l2", tiny_pixel_dir, _KEY),
        "anonymise-pq": _anonymise(pq, tmp_path / "l3", tiny_pixel_dir, _KEY),
    }
    assert set(local.values()) == {0}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        assert run_cli(["augment", pq, "--out", tmp_path / "r1", "--batch-size", "2", "--engine", "ray",
                        "--workers", "2", *_common(tiny_pixel_dir, *COMMANDS["augment"])], capsys)[0] == 0
        assert _anonymise(wds, tmp_path / "r2", tiny_pixel_dir, _KEY, engine="ray", workers=2) == 0
        assert _anonymise(pq, tmp_path / "r3", tiny_pixel_dir, _KEY, engine="ray", workers=1, batch_size=2) == 0
    finally:
        ray.shutdown()
    for n in (1, 2, 3):
        assert tree_bytes(tmp_path / f"r{n}") == tree_bytes(tmp_path / f"l{n}")
    assert any(p.suffix == ".parquet" for p in (tmp_path / "r3").iterdir())


# ----------------------------------------------------------------------------- sample


@pytest.mark.parametrize("kind", list(KINDS))
def test_sample_reads_images_out_of_shards(tmp_path, tiny_pixel_dir, capsys, kind):
    """``sample`` takes shards among its IMAGE paths (its outputs stay its own: a folder per input
    with a contact sheet, and metadata.json); each item is named by its key."""
    src = _src(tmp_path, kind, {"s0": ["a0", "a1"], "s1": ["b0"]})
    shard = next(p for p in sorted(src.iterdir()) if p.name.startswith("s1"))
    out = tmp_path / "out"
    rc, err = run_cli(["sample", src, shard, "--out", out, "--num-samples", "1", *_common(tiny_pixel_dir)], capsys)
    assert rc == 0, err
    meta = json.loads((out / "metadata.json").read_text())
    assert [s["key"] for s in meta["samples"]] == ["a0.png", "a1.png", "b0.png", "b0.png"]
    assert [s["file"] for s in meta["samples"]] == ["a0/level0.500_s000.png", "a1/level0.500_s000.png",
                                                    "b0_2/level0.500_s000.png", "b0_3/level0.500_s000.png"]
    assert meta["inputs"][2]["file"] == str(shard) and (out / "a1" / "contact_sheet.png").is_file()
    # the same key read twice samples alike only when seeded alike: sample seeds by input index
    assert meta["samples"][2]["seed"] != meta["samples"][3]["seed"]


def test_sample_names_every_unusable_shard_member_and_chooses_the_model_from_the_images(tmp_path, capsys):
    src = write_webdataset(tmp_path / "in", {"s.tar": ["a", "b", "c"]}, images={"a": b"nope", "c": b"nor this"})
    rc, err = run_cli(["sample", src, "--out", tmp_path / "out", "--level", "0.3"], capsys)
    assert rc == 2 and "2 inputs cannot be used" in err and "a.png" in err and "c.png" in err, err
    assert not (tmp_path / "out").exists()
    # No --model: the images inside the shard (12x10 gray) choose the digit model, not the .tar file
    good = write_webdataset(tmp_path / "good", {"s.tar": ["a"]})
    rc, err = run_cli(["sample", good / "s.tar", "--out", tmp_path / "o2", "--level", "0.3", "--steps", "2",
                       "--no-progress"], capsys)
    assert rc == 0, err
    assert "ddpm-mnist5k" in json.loads((tmp_path / "o2" / "metadata.json").read_text())["default_model"]["model"]


def test_a_truncated_member_gets_the_reason_a_truncated_file_gets(tmp_path, tiny_pixel_dir, capsys):
    """The skip reason of a damaged shard member is the folder reader's (found by a new-user trial: a truncated
    JPEG in a tar was reported as 'not an image (OSError)')."""
    from _helpers import CASES

    src = write_webdataset(tmp_path / "in", {"a.tar": ["g0", "g1"]},
                           images={"g1": (CASES / "truncated.jpg").read_bytes()})
    out = tmp_path / "out"
    rc, err = run_cli(["augment", src, "--out", out, *_common(tiny_pixel_dir, "--samples-per-image", "1")], capsys)
    assert rc == 3, err
    reasons = {s["file"]: s["reason"] for s in json.loads((out / "report.json").read_text())["skipped_files"]}
    assert list(reasons) == ["g1.png"] and "truncated or incomplete" in reasons["g1.png"], reasons


def test_a_tar_cut_between_members_is_reported_not_silently_shorter(tmp_path, tiny_pixel_dir, capsys):
    """tarfile stops without an error at a cut between two members: the samples before the cut are
    made, and the shard is listed in the report as cut short (the samples after it are missing)."""
    import tarfile

    src = write_webdataset(tmp_path / "in", {"a.tar": ["g0", "g1", "g2"], "b.tar": ["h0"]})
    with tarfile.open(src / "a.tar") as tar:
        g1_end = max(m.offset_data + -(-m.size // 512) * 512 for m in tar.getmembers() if m.name.startswith("g1."))
        g2_png_end = next(m.offset_data + -(-m.size // 512) * 512 for m in tar.getmembers() if m.name == "g2.png")
    # whole members g0, g1, then g2's image without its .cls/.txt/.json: g2 may be incomplete, so it is
    # left out with the rest (found by a new-user trial: released without its label)
    (src / "a.tar").write_bytes((src / "a.tar").read_bytes()[:g2_png_end])
    assert g2_png_end > g1_end
    out = tmp_path / "out"
    rc, err = run_cli(["augment", src, "--out", out, *_common(tiny_pixel_dir, "--samples-per-image", "1")], capsys)
    assert rc == 3, err
    report = json.loads((out / "report.json").read_text())
    reasons = [s["reason"] for s in report["skipped_files"]]
    assert len(reasons) == 1 and "a.tar: ends without the tar end-of-archive blocks" in reasons[0], reasons
    assert "samples from g2 on are missing or incomplete" in reasons[0], reasons
    made = sorted(p.name for p in out.glob("level*/*.tar"))
    assert made == ["a.tar", "b.tar"], made
    with tarfile.open(next(out.glob("level*/a.tar"))) as tar:
        assert sorted({m.name.split(".")[0] for m in tar.getmembers()}) == ["g0_s000", "g1_s000"]
    # a whole shard is not reported
    rc, err = run_cli(["augment", write_webdataset(tmp_path / "whole", {"c.tar": ["k0"]}), "--out", tmp_path / "o2",
                       *_common(tiny_pixel_dir, "--samples-per-image", "1")], capsys)
    assert rc == 0 and not json.loads((tmp_path / "o2" / "report.json").read_text())["skipped_files"], err
