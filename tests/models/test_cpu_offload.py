"""Model CPU offload (``--cpu-offload``): the plumbing, tested on the CPU (no CUDA GPU here; offload
itself was not measured). Every network runs while it is the one resident network, samples are
bit-identical with and without offload, the flag reaches the model loader from every command that
loads a model, and without CUDA it is one line, exit 2, nothing written."""

from __future__ import annotations

import pytest
import torch

from boomerang.core import boomerang_sample
from _helpers import DIGIT, DIGITS, generators, run_cli

FAMILIES = [("tiny_pixel_dir", ["unet"]),
            # the prompt is embedded before the forward jump (the bounded path's order), then the VAE encodes
            ("tiny_sd_dir", ["text_encoder", "vae", "unet", "vae"]),
            ("tiny_sdxl_dir", ["text_encoder", "text_encoder_2", "vae", "unet", "vae"]),
            # SD3 embeds the (empty) negative prompt with every encoder again: each one moves twice
            ("tiny_sd3_dir", ["text_encoder", "text_encoder_2", "text_encoder_3"] * 2 + ["vae", "transformer", "vae"]),
            ("tiny_flux_dir", ["text_encoder", "text_encoder_2", "vae", "transformer", "vae"])]


@pytest.mark.parametrize("fixture,moves", FAMILIES)
def test_each_network_runs_resident_and_samples_do_not_change(fixture, moves, request):
    from boomerang.models import load_model

    folder = request.getfixturevalue(fixture)
    plain, off = load_model(folder), load_model(folder)
    off.enable_cpu_offload(device="cpu")  # the CPU as the "execution device": the order is what is tested
    assert off.cpu_offload and not plain.cpu_offload
    seen = []  # (network that ran, network resident at that moment)
    for name, net in off._offload.networks.items():
        if name == "vae":
            for method in ("encode", "decode"):
                original = getattr(net, method)

                def spy(*a, _original=original, **k):
                    seen.append(("vae", off._offload.resident))
                    return _original(*a, **k)
                setattr(net, method, spy)
        else:
            net.register_forward_pre_hook(lambda mod, args, _name=name: seen.append((_name, off._offload.resident)))
    channels = plain.image_channels
    x = torch.rand(2, channels, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    kw = dict(level=0.5, steps=3, guidance_scale=3.0, **({"prompt": "cat"} if plain.takes_prompt else {}))
    out = boomerang_sample(off, x, generators=generators(range(2)), **kw).samples
    ref = boomerang_sample(plain, x, generators=generators(range(2)), **kw).samples
    assert torch.equal(out, ref)
    assert seen and all(ran == resident for ran, resident in seen), seen
    assert off._offload.moves == moves


def test_offload_keeps_networks_in_storage_until_used():
    from boomerang.models.offload import CPUOffload

    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    moved = []
    for name, net in (("a", a), ("b", b)):
        net.to = lambda where, _n=name: moved.append((_n, where))  # record, move nothing
    off = CPUOffload({"a": a, "b": b, "none": None}, device="gpu", storage="host")
    assert set(off.networks) == {"a", "b"} and off.resident is None
    assert moved == [("a", "host"), ("b", "host")]
    moved.clear()
    with off.use("a"):
        with off.use("a"):
            pass
    with off.use("b"):
        pass
    assert moved == [("a", "gpu"), ("a", "host"), ("b", "gpu")]
    assert off.moves == ["a", "b"] and off.resident == "b"
    off.release()
    assert moved[-1] == ("b", "host") and off.resident is None
    with pytest.raises(KeyError):
        with off.use("c"):
            pass


def test_load_model_refuses_offload_without_cuda(tiny_sd_dir):
    from boomerang.errors import SettingError
    from boomerang.models import load_model

    with pytest.raises(SettingError, match="needs device cuda.*device is cpu"):
        load_model(tiny_sd_dir, cpu_offload=True)
    if not torch.cuda.is_available():
        with pytest.raises(SettingError, match="no CUDA GPU is available"):
            load_model(tiny_sd_dir, device="cuda", cpu_offload=True)


def test_settings_refuse_offload_on_the_cpu():
    from boomerang.errors import SettingError
    from boomerang.settings import SampleSettings

    assert SampleSettings(device="cuda", cpu_offload=True).cpu_offload
    assert SampleSettings().to_dict()["cpu_offload"] is False
    with pytest.raises(SettingError, match="cpu_offload"):
        SampleSettings(cpu_offload=True)
    with pytest.raises(SettingError, match="true or false"):
        SampleSettings(device="cuda", cpu_offload="yes")


COMMANDS = {
    "sample": ["sample", DIGIT],
    "anonymise": ["anonymise", DIGITS, "--level", "0.5"],
    "augment": ["augment", DIGITS],
    "enhance": ["enhance", DIGITS],
    "calibrate-privacy": ["calibrate-privacy", DIGITS, "--target-top1", "0.2"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_the_flag_reaches_the_model_loader(command, tmp_path, monkeypatch, capsys):
    """With a CUDA GPU pretended, ``--cpu-offload --device cuda`` arrives at ``load_model`` (stopped there)."""
    import boomerang.models
    from boomerang.errors import SettingError

    got = {}

    def fake_load_model(model=None, **kwargs):
        got.update(kwargs)
        raise SettingError("stopped at the loader")

    monkeypatch.setattr(boomerang.models, "load_model", fake_load_model)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    out = tmp_path / "out"
    rc, err = run_cli([*COMMANDS[command], "--out", out, "--device", "cuda", "--cpu-offload"], capsys)
    assert rc == 2 and "stopped at the loader" in err, err
    assert got["cpu_offload"] is True and got["device"] == "cuda"
    assert not out.exists()


@pytest.mark.parametrize("command", list(COMMANDS))
def test_without_cuda_one_line_exit_2_nothing_written(command, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    out = tmp_path / "out"
    rc, err = run_cli([*COMMANDS[command], "--out", out, "--device", "cuda", "--cpu-offload"], capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("boomerang: error:")]
    assert rc == 2 and len(lines) == 1 and "--cpu-offload" in lines[0] and "no CUDA GPU" in lines[0], err
    assert not out.exists()
    rc, err = run_cli([*COMMANDS[command], "--out", out, "--cpu-offload"], capsys)  # the default device: cpu
    assert rc == 2 and "needs --device cuda" in err and not out.exists()


def test_serve_refuses_offload_without_cuda_before_the_page(monkeypatch, capsys):
    pytest.importorskip("gradio")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    from boomerang.serve import page

    import socket

    monkeypatch.setattr(page, "launch", lambda *a, **k: pytest.fail("the page must not start"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    rc, err = run_cli(["serve", "--device", "cuda", "--cpu-offload", "--port", port], capsys)
    assert rc == 2 and "--cpu-offload" in err and "no CUDA GPU" in err


def test_the_page_model_cache_passes_the_flag(monkeypatch):
    from boomerang import api
    from boomerang.serve import runs
    from boomerang.tasks.flags import sample_command

    got = {}
    monkeypatch.setattr(api, "load", lambda model, **kw: got.update(kw) or "model")
    spec = runs.ModelSpec(device="cuda", cpu_offload=True)
    assert runs.ModelCache(spec).get() == "model" and got["cpu_offload"] is True and got["device"] == "cuda"
    assert "--cpu-offload" in sample_command("x.png", {}, device="cuda", cpu_offload=True)
