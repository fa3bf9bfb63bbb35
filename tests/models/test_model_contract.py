"""boomerang.models' denoiser contract: both families satisfy it, the schedule is the scheduler
config's, the denoiser's parameterisation is stated and checked against diffusers, and a new
family is found by adding one class to the registry."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from boomerang.models import (
    FAMILIES,
    DiffusionModel,
    ModelInfo,
    NoiseSchedule,
    PixelModel,
    Region,
    StableDiffusionModel,
    find_family,
    read_model_info,
)


@pytest.fixture(params=["pixel", "sd"])
def model_and_dir(request, tiny_pixel_model, tiny_pixel_dir, tiny_sd_model, tiny_sd_dir):
    return (tiny_pixel_model, tiny_pixel_dir) if request.param == "pixel" else (tiny_sd_model, tiny_sd_dir)


def _images(model, b=2, side=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, model.image_channels, side, side, generator=g) * 2 - 1


# ----------------------------------------------------------------------------- both families satisfy it


def test_families_and_info(tiny_pixel_model, tiny_sd_model, tiny_pixel_dir, tiny_sd_dir):
    assert isinstance(tiny_pixel_model, PixelModel) and isinstance(tiny_sd_model, StableDiffusionModel)
    assert set(FAMILIES) == {PixelModel, StableDiffusionModel}
    for model, folder in ((tiny_pixel_model, tiny_pixel_dir), (tiny_sd_model, tiny_sd_dir)):
        assert isinstance(model, DiffusionModel)
        assert model.info == read_model_info(folder)  # loading and the JSON-only reading agree
        assert model.info.family == type(model).family and find_family(folder)[0] is type(model)
    # the properties that replace questions about the kind (kept in metadata for now)
    assert (tiny_pixel_model.pixel_space, tiny_pixel_model.space_factor, tiny_pixel_model.kind) == (True, 1, "pixel")
    assert (tiny_sd_model.pixel_space, tiny_sd_model.space_factor, tiny_sd_model.kind) == (False, 2, "latent")


def test_every_contract_call_is_implemented_and_shapes_agree(model_and_dir):
    model, _ = model_and_dir
    x = _images(model)
    c, h, w = model.model_shape(tuple(x.shape[1:]))
    z = model.encode(x)
    assert tuple(z.shape) == (2, c, h, w) and z.dtype == torch.float32
    assert (h * model.space_factor, w * model.space_factor) == (8, 8)
    out = model.decode(z)
    assert out.shape == x.shape and out.dtype == torch.float32 and out.device.type == "cpu"
    cond, uncond = model.encode_prompt("cat", "person", 7.5)
    assert (cond is None) == (uncond is None) == (not model.takes_prompt)
    calls = model.unet_calls
    eps = model.predict(z, 500, cond=cond, uncond=uncond, guidance_scale=7.5)
    assert model.unet_calls == calls + 1
    assert tuple(eps.shape) == (2, model.prediction_channels, h, w) and eps.dtype == torch.float32
    assert model.learned_variance is False and model.prediction_channels == c
    assert model.schedule_for(tuple(x.shape[1:])) is model.schedule  # neither family's schedule depends on the size


def test_a_window_region_is_accepted_and_ignored_by_these_families(model_and_dir):
    model, _ = model_and_dir
    z = model.encode(_images(model, seed=1))
    cond, uncond = model.encode_prompt("cat", "", 1.0)
    whole = model.predict(z, 300, cond=cond, uncond=uncond)
    windowed = model.predict(z, 300, cond=cond, uncond=uncond, region=Region(2, 4, 16, 16))
    assert torch.equal(whole, windowed)


def test_only_a_stochastic_encoder_draws_from_the_generators(tiny_pixel_model, tiny_sd_model):
    for model, draws in ((tiny_pixel_model, False), (tiny_sd_model, True)):
        gens = [torch.Generator().manual_seed(i) for i in range(2)]
        before = [g.get_state() for g in gens]
        model.encode(_images(model), generators=gens)
        assert any(not torch.equal(g.get_state(), s) for g, s in zip(gens, before)) == draws


def test_pixel_identity_and_latent_shape_errors(tiny_pixel_model, tiny_sd_model):
    x = _images(tiny_pixel_model)
    assert torch.equal(tiny_pixel_model.decode(tiny_pixel_model.encode(x)), x)
    assert tiny_pixel_model.model_shape((1, 8, 8)) == (1, 8, 8)
    with pytest.raises(ValueError, match="multiples of 2"):
        tiny_sd_model.model_shape((3, 8, 7))


# ----------------------------------------------------------------------------- the schedule is data


def test_schedule_equals_the_scheduler_config(model_and_dir):
    import diffusers

    model, folder = model_and_dir
    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    s = model.schedule
    assert s.kind == "vp" and s.num_train_timesteps == config["num_train_timesteps"] == model.num_train_timesteps
    assert s.prediction_type == config.get("prediction_type", "epsilon") == "epsilon"
    assert s.config == config == model.scheduler_config
    own = getattr(diffusers, config["_class_name"]).from_config(config)  # the folder's own scheduler class
    assert s.alphas_cumprod == tuple(own.alphas_cumprod.tolist())
    assert len(s.alphas_cumprod) == 1000 and s.sigmas is None
    t = 400
    assert s.alpha_bar(t) == s.alphas_cumprod[t]
    assert s.snr(t) == pytest.approx(s.alpha_bar(t) / (1 - s.alpha_bar(t)))
    assert s.sigma(t) == pytest.approx(math.sqrt(1 - s.alpha_bar(t)))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_the_stated_parameterisation_gives_diffusers_x0(tiny_sd_dir, prediction_type):
    """x0_from(output) equals DDPMScheduler.step's pred_original_sample for the same output."""
    from diffusers import DDPMScheduler

    config = dict(json.loads((tiny_sd_dir / "scheduler" / "scheduler_config.json").read_text()),
                  prediction_type=prediction_type)
    s = NoiseSchedule.from_config(config)
    assert s.prediction_type == prediction_type
    ddpm = DDPMScheduler.from_config(config)
    ddpm.set_timesteps(1000)
    g = torch.Generator().manual_seed(0)
    x_t, out = torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 4, 4, 4, generator=g)
    t = 637
    ref = ddpm.step(out, t, x_t, generator=torch.Generator().manual_seed(1)).pred_original_sample
    torch.testing.assert_close(s.x0_from(out, x_t, t), ref, atol=1e-5, rtol=1e-5)


def test_a_flow_schedule_is_diffusers_sigmas_with_the_shift():
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    config = dict(sched.config, _class_name="FlowMatchEulerDiscreteScheduler")  # as scheduler_config.json has it
    s = NoiseSchedule.from_config(config)
    assert (s.kind, s.prediction_type, s.shift, s.dynamic_shift, s.alphas_cumprod) == ("flow", "flow", 3.0, False, None)
    assert s.sigmas == tuple(reversed(sched.sigmas.tolist())) and s.sigmas[-1] == 1.0  # level 1: pure noise
    k = 499  # s = 0.5 shifted by 3: 1.5 / 2 = 0.75
    assert s.sigma(k) == pytest.approx(0.75, abs=1e-6) and s.snr(k) == pytest.approx((0.25 / 0.75) ** 2, rel=1e-5)
    x0, eps = torch.randn(3), torch.randn(3)
    x_t = (1 - s.sigma(k)) * x0 + s.sigma(k) * eps
    torch.testing.assert_close(s.x0_from(eps - x0, x_t, k), x0)  # the velocity eps - x0
    shifted = s.with_sigmas([0.5] * 1000)
    assert shifted.sigmas[0] == 0.5 and s.sigmas[0] != 0.5
    dynamic = NoiseSchedule.from_config(dict(config, use_dynamic_shifting=True))
    assert dynamic.dynamic_shift and dynamic.sigmas[499] == pytest.approx(0.5)  # unshifted until the size is known


def test_a_schedule_refuses_inconsistent_data():
    with pytest.raises(ValueError, match="prediction_type"):
        NoiseSchedule("vp", 2, "x0", alphas_cumprod=(0.9, 0.8))
    with pytest.raises(ValueError, match="alphas_cumprod of length T = 3"):
        NoiseSchedule("vp", 3, "epsilon", alphas_cumprod=(0.9, 0.8))
    with pytest.raises(ValueError, match="sigmas"):
        NoiseSchedule("flow", 2, "flow")


# ----------------------------------------------------------------------------- adding a family


def test_a_new_family_is_one_class_in_the_registry(tmp_path, monkeypatch):
    from boomerang.models import loading

    class Toy(DiffusionModel):
        family = "toy"
        description = "toy models"

        @classmethod
        def find_layout(cls, root, index):
            return {"kind": "pixel"} if index is not None and "toy" in index else None

        @classmethod
        def describe(cls, root, layout):
            return ModelInfo(str(root), "pixel", 10, 1, 4, 1, False, family="toy", pixel_space=True)

    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "ToyPipeline", "toy": ["x", "y"]}))
    with pytest.raises(ValueError, match="describes a ToyPipeline pipeline; supported are pixel-space UNet pipelines"):
        read_model_info(folder)
    monkeypatch.setattr(loading, "FAMILIES", (*FAMILIES, Toy))
    info = read_model_info(folder)
    assert (info.family, info.num_train_timesteps, info.native_size) == ("toy", 10, 4)


def test_unsupported_pipelines_are_refused_naming_their_class(tmp_path):
    for name, entries in (("StableDiffusionXLPipeline", ["unet", "vae", "text_encoder", "text_encoder_2", "tokenizer"]),
                          ("FluxPipeline", ["transformer", "vae", "text_encoder", "tokenizer"])):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "model_index.json").write_text(json.dumps({"_class_name": name, **{e: ["x", "y"] for e in entries}}))
        with pytest.raises(ValueError, match=f"{name} .*is not supported"):
            read_model_info(folder)


def test_importing_the_models_package_does_not_import_torch():
    code = ("import sys, boomerang.models as m; m.read_model_info(None); "
            "print(sorted(x for x in ('torch', 'diffusers', 'transformers') if x in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stderr
