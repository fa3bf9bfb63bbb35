"""`boomerang train`: diffusers layout, exact resume after kill -9, fixed split, bad input.

Tiny UNet on scikit-learn's 8x8 digits, a few steps each; CPU, offline.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from boomerang.data import load_dataset, load_split, make_split  # noqa: E402
from boomerang.training.ddpm import CHECKPOINT_NAME, TrainConfig, train  # noqa: E402

TINY = ["--data", "digits", "--channels", "8,16", "--attention", "0,0", "--norm-groups", "4",
        "--batch-size", "16", "--threads", "1", "--no-progress"]


def tiny_cfg(out, **kw) -> TrainConfig:
    base = dict(data="digits", output=str(out), channels=[8, 16], attention=[0, 0], norm_groups=4,
                batch_size=16, max_steps=4, checkpoint_every=2, warmup_steps=2, threads=1, progress=False)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(autouse=True)
def _offline_and_threads(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _unet_weights(folder) -> dict:
    from safetensors.torch import load_file

    return load_file(str(pathlib.Path(folder) / "unet" / "diffusion_pytorch_model.safetensors"))


def _checkpoint(folder) -> dict:
    from safetensors.torch import load_file

    return load_file(str(pathlib.Path(folder) / CHECKPOINT_NAME))


def test_saves_diffusers_layout_that_ddpm_pipeline_loads(tmp_path):
    from diffusers import DDPMPipeline, DDPMScheduler

    out = tmp_path / "run"
    summary = train(tiny_cfg(out))
    assert summary["step"] == 4 and summary["stopped"] == "max_steps"
    for name in ("model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                 "scheduler/scheduler_config.json", "split.json", "train_config.json", CHECKPOINT_NAME):
        assert (out / name).is_file(), name
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pt")) and not list(out.rglob("*.ckpt"))
    pipe = DDPMPipeline.from_pretrained(out, use_safetensors=True)
    assert isinstance(pipe.scheduler, DDPMScheduler)
    assert pipe.scheduler.config.prediction_type == "epsilon" and pipe.scheduler.config.clip_sample
    # Default schedule: cosine (Nichol & Dhariwal 2021), so level 0.4 (t = 400) keeps most of a small image.
    assert pipe.scheduler.config.beta_schedule == "squaredcos_cap_v2"
    assert 0.6 < float(pipe.scheduler.alphas_cumprod[400]) < 0.7 and float(pipe.scheduler.alphas_cumprod[999]) < 1e-3
    assert pipe.unet.config.sample_size == 8 and pipe.unet.config.in_channels == 1
    img = pipe(batch_size=1, num_inference_steps=2, generator=torch.Generator().manual_seed(0),
               output_type="np").images
    assert img.shape == (1, 8, 8, 1) and np.isfinite(img).all()
    # The exported weights are the EMA weights, not the raw model's.
    ck = _checkpoint(out)
    exported = _unet_weights(out)
    key = "conv_in.weight"
    assert torch.equal(exported[key], ck[f"ema.{key}"])
    assert not torch.equal(exported[key], ck[f"model.{key}"])
    info = json.loads((out / "train_config.json").read_text())
    assert info["step"] == 4 and info["config"]["data"] == "digits" and info["n_params"] > 0


def _run_until_killed(out: pathlib.Path, min_step: int) -> int:
    """Start a training subprocess, kill -9 it once a checkpoint at >= min_step exists; return that step."""
    cmd = [sys.executable, "-c", "import sys; from boomerang.cli import main; sys.exit(main())",
           "train", *TINY, "--output", str(out), "--max-steps", "100000", "--checkpoint-every", "3",
           "--warmup-steps", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    from safetensors import safe_open

    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            ck = out / CHECKPOINT_NAME
            if ck.exists():
                try:
                    with safe_open(str(ck), framework="pt") as f:
                        step = json.loads(f.metadata()["boomerang"])["step"]
                except Exception:  # pragma: no cover - file just replaced
                    step = -1
                if step >= min_step:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
                    break
            if proc.poll() is not None:
                raise AssertionError(f"training subprocess exited early: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.05)
        else:
            raise AssertionError("no checkpoint within 90 s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # The step recorded in the file that survived the kill (it may have advanced before the kill landed).
    with safe_open(str(out / CHECKPOINT_NAME), framework="pt") as f:
        return json.loads(f.metadata()["boomerang"])["step"]


def test_resume_after_kill_9_matches_uninterrupted_run(tmp_path):
    killed = tmp_path / "killed"
    s = _run_until_killed(killed, min_step=3)
    assert s % 3 == 0 and s >= 3
    target = s + 3
    train(tiny_cfg(killed, max_steps=target, checkpoint_every=3, warmup_steps=2, resume=True))

    straight = tmp_path / "straight"
    train(tiny_cfg(straight, max_steps=target, checkpoint_every=3, warmup_steps=2))

    a, b = _checkpoint(killed), _checkpoint(straight)
    assert a.keys() == b.keys()
    diff = [k for k in a if not torch.equal(a[k], b[k])]
    assert not diff, f"tensors differ after resume: {diff[:5]}"
    ea, eb = _unet_weights(killed), _unet_weights(straight)
    assert all(torch.equal(ea[k], eb[k]) for k in ea)
    assert json.loads((killed / "train_config.json").read_text())["step"] == target


def test_resume_continues_and_a_different_run_differs(tmp_path):
    """Resuming is not a no-op, and the comparison above can fail: another seed gives other weights."""
    out = tmp_path / "a"
    train(tiny_cfg(out, max_steps=2))
    w2 = _unet_weights(out)
    train(tiny_cfg(out, max_steps=4, resume=True))
    w4 = _unet_weights(out)
    assert not torch.equal(w2["conv_in.weight"], w4["conv_in.weight"])
    other = tmp_path / "b"
    train(tiny_cfg(other, max_steps=4, seed=1))
    assert not torch.equal(w4["conv_in.weight"], _unet_weights(other)["conv_in.weight"])


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    """A crash while writing leaves the previous checkpoint intact."""
    out = tmp_path / "run"
    train(tiny_cfg(out, max_steps=2))
    before = (out / CHECKPOINT_NAME).read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        train(tiny_cfg(out, max_steps=4, resume=True))
    assert (out / CHECKPOINT_NAME).read_bytes() == before


def test_split_fixed_disjoint_stratified_and_recorded(tmp_path):
    ds = load_dataset("mnist5k")
    s1 = make_split(ds.labels, seed=0)
    s2 = make_split(ds.labels, seed=0)
    assert s1 == s2
    tr, va, te = map(set, (s1["train"], s1["val"], s1["test"]))
    assert not (tr & va) and not (tr & te) and not (va & te)
    assert len(tr | va | te) == len(ds) == 5000
    assert (len(tr), len(va), len(te)) == (4000, 500, 500)
    assert np.bincount(ds.labels[s1["test"]]).tolist() == [50] * 10
    assert make_split(ds.labels, seed=1)["test"] != s1["test"]
    out = tmp_path / "run"
    train(tiny_cfg(out, max_steps=1))
    rec = load_split(out / "split.json")
    assert rec["train"] == make_split(load_dataset("digits").labels, seed=0)["train"]


def test_image_folder_with_class_subfolders(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(tmp_path / "imgs" / c / f"{i}.png")
    ds = load_dataset(str(tmp_path / "imgs"))
    assert ds.images.shape == (20, 1, 8, 8) and ds.class_names == ["a", "b"]
    assert np.bincount(ds.labels).tolist() == [10, 10]
    summary = train(tiny_cfg(tmp_path / "run", data=str(tmp_path / "imgs"), batch_size=4, max_steps=2))
    assert summary["step"] == 2


def test_image_folder_skips_unreadable_files_and_reports_them(tmp_path):
    # Case files: truncated / empty / not-an-image in a dataset job are skipped, listed, and the job goes on.
    import shutil

    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    good = (tmp_path / "imgs" / "0.png").read_bytes()
    (tmp_path / "imgs" / "empty.png").write_bytes(b"")
    (tmp_path / "imgs" / "not_an_image.png").write_text("this is not an image\n")
    (tmp_path / "imgs" / "truncated.png").write_bytes(good[: len(good) // 2])
    cases = pathlib.Path(__file__).parents[1] / "data" / "cases" / "truncated.jpg"
    if cases.exists():
        shutil.copy(cases, tmp_path / "imgs" / "truncated.jpg")
    ds = load_dataset(str(tmp_path / "imgs"))
    assert ds.images.shape == (12, 1, 8, 8)
    skipped = sorted(pathlib.Path(f).name for f, _ in ds.skipped)
    expected = ["empty.png", "not_an_image.png", "truncated.png"] + (["truncated.jpg"] if cases.exists() else [])
    assert skipped == sorted(expected)
    summary = train(tiny_cfg(tmp_path / "run", data=str(tmp_path / "imgs"), batch_size=4, max_steps=2))
    assert summary["step"] == 2 and sorted(pathlib.Path(f).name for f in summary["skipped"]) == sorted(expected)
    info = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert sorted(pathlib.Path(d["file"]).name for d in info["skipped"]) == sorted(expected)


def test_image_folder_reads_through_the_shared_image_layer(tmp_path):
    # A dark 16-bit image is scaled by 65535 (not brightened by /255), and hidden
    # colour under transparent pixels never reaches the data (alpha over white).
    import shutil

    from PIL import Image

    cases = pathlib.Path(__file__).parents[1] / "data" / "cases"
    (tmp_path / "imgs").mkdir()
    dark = np.full((8, 8), 200, dtype=np.uint16)  # 200 / 65535: nearly black
    Image.fromarray(dark).save(tmp_path / "imgs" / "dark16.png")
    shutil.copy(cases / "rgba_hidden_red.png", tmp_path / "imgs" / "rgba.png")
    ds = load_dataset(str(tmp_path / "imgs"), image_size=8)
    by_name = dict(zip(["dark16.png", "rgba.png"], ds.images))
    assert ds.images.shape == (2, 3, 8, 8)
    assert by_name["dark16.png"].max() <= 1  # /255 would give 200
    rgba = by_name["rgba.png"].astype(int)
    assert (rgba[0] - rgba[1]).max() <= 1 and (rgba[0] - rgba[2]).max() <= 1  # no red cast anywhere


@pytest.mark.parametrize("args, message", [
    (["--attention", "0"], "--attention"),
    (["--norm-groups", "3"], "--norm-groups"),
    (["--data", "/nonexistent/folder"], "neither a built-in dataset"),
    (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--lr", "0"], "--"),
    (["--batch-size", "5000"], "lower the batch size"),
    (["--channels", "8,8,8,8,8", "--attention", "0,0,0,0,0"], "not divisible"),
])
def test_bad_arguments_exit_2_with_a_message(tmp_path, capsys, args, message):
    from boomerang.cli import main

    rc = main(["train", *TINY, "--output", str(tmp_path / "o"), "--max-steps", "1", *args])
    assert rc == 2
    err = capsys.readouterr().err
    assert "error" in err and message in err
    assert not (tmp_path / "o" / CHECKPOINT_NAME).exists()


def test_existing_checkpoint_needs_resume_and_same_settings(tmp_path, capsys):
    from boomerang.cli import main

    out = tmp_path / "o"
    assert main(["train", *TINY, "--output", str(out), "--max-steps", "1"]) == 0
    assert main(["train", *TINY, "--output", str(out), "--max-steps", "2"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", *TINY, "--output", str(out), "--max-steps", "2", "--resume", "--lr", "0.5"]) == 2
    assert "cannot resume" in capsys.readouterr().err
    assert main(["train", *TINY, "--output", str(tmp_path / "new"), "--resume"]) == 2


def test_unparseable_list_is_a_usage_error(tmp_path, capsys):
    from boomerang.cli import main

    try:
        rc = main(["train", "--output", str(tmp_path / "o"), "--channels", "a,b"])
    except SystemExit as e:  # argparse's own exit
        rc = e.code
    assert rc == 2
    assert "comma-separated integers" in capsys.readouterr().err


def test_load_checkpoint_rejects_other_safetensors(tmp_path):
    from safetensors.torch import save_file

    from boomerang.training.checkpoint import load_checkpoint
    from boomerang.training.ddpm import build_unet

    p = tmp_path / "x.safetensors"
    save_file({"a": torch.zeros(1)}, str(p))
    cfg = tiny_cfg(tmp_path)
    m = build_unet(cfg, 8, 1)
    with pytest.raises(ValueError, match="not a boomerang training checkpoint"):
        load_checkpoint(p, m, m, torch.optim.AdamW(m.parameters()), torch.Generator())


def test_attention_default_follows_the_number_of_levels(tmp_path):
    import json as _json

    from boomerang.cli import main

    assert TrainConfig(channels=[8, 16, 16, 16]).attention == [0, 1, 0, 0]
    assert TrainConfig(channels=[8]).attention == [0]
    assert TrainConfig().attention == [0, 1, 0]
    out = tmp_path / "o"
    args = ["train", "--data", "digits", "--channels", "4,8", "--norm-groups", "4", "--batch-size", "8",
            "--max-steps", "1", "--threads", "1", "--no-progress", "--output", str(out)]
    assert main(args) == 0
    unet = _json.loads((out / "unet" / "config.json").read_text())
    assert unet["down_block_types"] == ["DownBlock2D", "AttnDownBlock2D"]
    # An explicit list of the wrong length is still refused.
    assert main([*args[:-2], "--attention", "0,1,0", "--output", str(tmp_path / "p")]) == 2
