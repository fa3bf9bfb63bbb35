"""boomerang.core.boomerang_sample: the noise-level contract, schedules, differential tests
against diffusers' pipelines, the parameter grid of shared/cases, and batch invariance."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import torch

from boomerang import levels
from boomerang.core import SCHEDULES, boomerang_sample
from boomerang.schedulers import CUSTOM_GRID_SCHEDULERS, SCHEDULER_NAMES, make_scheduler
from _helpers import generators as gens


def image(b=1, c=1, h=8, w=8, seed=0):
    g = torch.Generator().manual_seed(1000 + seed)
    return torch.rand(b, c, h, w, generator=g) * 2 - 1


class Spy:
    """Records the timesteps and batch sizes the denoiser is called with."""

    def __init__(self, model, monkeypatch):
        self.calls = []
        original = model.predict

        def predict(x_in, t, **kw):
            self.calls.append(int(t))
            return original(x_in, t, **kw)

        monkeypatch.setattr(model, "predict", predict)


# ----------------------------------------------------------------------------- level 0, noise placement


def test_level0_pixel_is_bit_exact_without_a_model_call(tiny_pixel_model):
    calls = []
    hook = tiny_pixel_model.unet.register_forward_hook(lambda *a: calls.append(1))
    try:
        x = image(3)
        for scheduler in CUSTOM_GRID_SCHEDULERS:
            out = boomerang_sample(tiny_pixel_model, x, generators=gens(range(3)), level=0.0, scheduler=scheduler)
            assert torch.equal(out.samples, x)
            assert out.num_denoiser_evals == 0 and out.plan.timestep is None and out.alpha_bar == 1.0
        out = boomerang_sample(tiny_pixel_model, x, generators=gens(range(3)), timestep=None, level=0, schedule="img2img")
        assert torch.equal(out.samples, x)
    finally:
        hook.remove()
    assert calls == []


def test_level0_latent_is_the_vae_round_trip(tiny_sd_model):
    m = tiny_sd_model
    x = image(2, 3, 16, 16)
    out = boomerang_sample(m, x, generators=gens(range(2)), level=0.0, prompt="cat")
    torch.testing.assert_close(out.samples, m.decode(m.encode(x)).clamp(-1, 1), atol=0, rtol=0)
    assert out.num_denoiser_evals == 0


@pytest.mark.parametrize("scheduler", CUSTOM_GRID_SCHEDULERS)
def test_noise_is_added_at_exactly_the_first_denoised_timestep(tiny_pixel_model, monkeypatch, scheduler):
    import diffusers

    added = []
    cls = type(make_scheduler(scheduler, tiny_pixel_model.scheduler_config))
    original = cls.add_noise

    def add_noise(self, x0, eps, t):
        added.append([int(v) for v in t])
        return original(self, x0, eps, t)

    monkeypatch.setattr(cls, "add_noise", add_noise)
    spy = Spy(tiny_pixel_model, monkeypatch)
    for level, steps in [(0.3, 50), (0.005, 15), (1.0, 7), (0.777, 31)]:
        added.clear(), spy.calls.clear()
        out = boomerang_sample(tiny_pixel_model, image(2), generators=gens(range(2)), level=level, steps=steps,
                               scheduler=scheduler)
        t = round(level * 999)
        assert out.plan.timestep == t and added == [[t, t]]
        grid = levels.reverse_timesteps(t, steps, 1000)
        if scheduler == "heun":  # second order: each grid timestep after the first is evaluated twice
            grid = grid[:1] + [g for g in grid[1:] for _ in range(2)]
        assert spy.calls == list(out.plan.timesteps) == grid
        assert out.num_denoiser_evals == len(spy.calls) >= 1
        assert out.alpha_bar == pytest.approx(float(diffusers.DDPMScheduler().alphas_cumprod[t]))
    # a timestep given directly
    out = boomerang_sample(tiny_pixel_model, image(1), generators=gens([0]), timestep=123, steps=20, scheduler=scheduler)
    assert out.plan.timestep == 123 and out.plan.timesteps[0] == 123 and out.plan.level == pytest.approx(123 / 999)


def test_level1_starts_at_the_last_training_timestep(tiny_pixel_model):
    out = boomerang_sample(tiny_pixel_model, image(1), generators=gens([0]), level=1.0, steps=50)
    assert out.plan.timesteps[:3] == (999, 979, 959) and len(out.plan.timesteps) == 50


def test_progress_callback(tiny_pixel_model):
    seen = []
    out = boomerang_sample(tiny_pixel_model, image(1), generators=gens([0]), level=0.5, steps=10,
                           progress=lambda done, total: seen.append((done, total)))
    n = out.num_denoiser_evals
    assert seen == [(i, n) for i in range(1, n + 1)]


def test_same_generators_same_samples_and_seeds_differ(tiny_pixel_model):
    a = boomerang_sample(tiny_pixel_model, image(2), generators=gens([0, 1]), level=0.4, steps=10).samples
    b = boomerang_sample(tiny_pixel_model, image(2), generators=gens([0, 1]), level=0.4, steps=10).samples
    c = boomerang_sample(tiny_pixel_model, image(2), generators=gens([5, 6]), level=0.4, steps=10).samples
    assert torch.equal(a, b) and not torch.equal(a, c)


# ----------------------------------------------------------------------------- differential tests (from_noise)


def _pipe_out(images):
    return torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2)


# The pipelines run the UNet on the whole batch; a batch-invariant model runs it item by item,
# which changes float rounding (~1e-7, amplified up to ~1e-5 by deterministic sampling from
# pure noise). To compare the algorithms bit for bit, batched tests run our model batched too.


@pytest.mark.parametrize("batch", [1, 3])
def test_from_noise_equals_ddpm_pipeline(tiny_pixel_model, batch, monkeypatch):
    from diffusers import DDPMPipeline, DDPMScheduler

    m = tiny_pixel_model
    monkeypatch.setattr(m, "batch_invariant", False)
    pipe = DDPMPipeline(unet=m.unet, scheduler=DDPMScheduler.from_config(m.scheduler_config))
    pipe.set_progress_bar_config(disable=True)
    generator = gens([7])[0] if batch == 1 else gens(range(batch))  # a single generator, and a list
    ref = _pipe_out(pipe(batch_size=batch, generator=generator, num_inference_steps=12, output_type="np").images)
    out = boomerang_sample(m, image(batch), generators=gens([7]) if batch == 1 else gens(range(batch)),
                           from_noise=True, scheduler="ddpm", steps=12)
    assert out.plan.schedule == "global" and out.alpha_bar is None and out.num_denoiser_evals == 12
    torch.testing.assert_close(out.samples / 2 + 0.5, ref, atol=1e-6, rtol=0)
    assert torch.equal(out.samples.clamp(-1, 1), out.samples)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_from_noise_equals_ddim_pipeline(tiny_pixel_model, eta, monkeypatch):
    from diffusers import DDIMPipeline, DDIMScheduler

    m = tiny_pixel_model
    monkeypatch.setattr(m, "batch_invariant", False)
    pipe = DDIMPipeline(unet=m.unet, scheduler=DDIMScheduler.from_config(m.scheduler_config))
    pipe.set_progress_bar_config(disable=True)
    ref = _pipe_out(pipe(batch_size=3, generator=gens(range(3)), eta=eta, num_inference_steps=10, output_type="np").images)
    out = boomerang_sample(m, image(3), generators=gens(range(3)), from_noise=True, scheduler="ddim", eta=eta, steps=10)
    torch.testing.assert_close(out.samples / 2 + 0.5, ref, atol=1e-6, rtol=0)


def test_from_noise_rejects_a_level(tiny_pixel_model):
    with pytest.raises(ValueError, match="from_noise"):
        boomerang_sample(tiny_pixel_model, image(1), generators=gens([0]), from_noise=True, level=0.5)


# ----------------------------------------------------------------------------- img2img and reference schedules


@pytest.mark.parametrize("scheduler,strength,guidance", [
    ("pndm", 0.6, 7.5), ("ddim", 1.0, 1.0), ("ddpm", 0.35, 3.0), ("euler", 0.6, 7.5), ("dpmsolver++", 0.75, 7.5),
])
def test_img2img_equals_stable_diffusion_img2img_pipeline(tiny_sd_model, scheduler, strength, guidance):
    from diffusers import StableDiffusionImg2ImgPipeline

    m = tiny_sd_model
    pipe = StableDiffusionImg2ImgPipeline(
        vae=m.vae, text_encoder=m.text_encoder, tokenizer=m.tokenizer, unet=m.unet,
        scheduler=make_scheduler(scheduler, m.scheduler_config), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    x = image(2, 3, 16, 16)
    x[:, :, 0, 0] = -1.0  # a [-1, 1] tensor: the pipeline does not renormalise it
    with pytest.warns(FutureWarning):
        ref = pipe(prompt=["cat"] * 2, negative_prompt=["person"] * 2, image=x, strength=strength,
                   num_inference_steps=10, guidance_scale=guidance, generator=gens(range(2), 50), output_type="pt").images
    out = boomerang_sample(m, x, generators=gens(range(2), 50), level=strength, schedule="img2img", scheduler=scheduler,
                           steps=10, prompt="cat", negative_prompt="person", guidance_scale=guidance)
    torch.testing.assert_close(out.samples, ref * 2 - 1, atol=1e-5, rtol=0)
    init = min(int(10 * strength), 10)
    sched = make_scheduler(scheduler, m.scheduler_config)
    sched.set_timesteps(10)
    assert out.plan.timesteps == tuple(int(t) for t in sched.timesteps[10 - init:])
    assert out.plan.timestep == out.plan.timesteps[0] and out.num_denoiser_evals == len(out.plan.timesteps)


def test_zero_kept_steps_are_refused_naming_the_smallest_level(tiny_sd_model):
    """Never a silent copy of the input: a positive level that keeps no img2img step
    (int(steps x level) = 0) is refused, and the level the message names does denoise;
    level 0 stays the identity (the VAE round trip)."""
    from boomerang.errors import SettingError

    m = tiny_sd_model
    x = image(1, 3, 16, 16)
    with pytest.raises(SettingError, match=r"level >= 0\.067 at 15 steps"):  # int(15 * 0.05) == 0 kept steps
        boomerang_sample(m, x, generators=gens([0]), level=0.05, schedule="img2img", steps=15, scheduler="ddim")
    out = boomerang_sample(m, x, generators=gens([0]), level=0.067, schedule="img2img", steps=15, scheduler="ddim")
    assert out.num_denoiser_evals == 1
    out = boomerang_sample(m, x, generators=gens([0]), level=0.0, schedule="img2img", steps=15, scheduler="ddim")
    assert out.num_denoiser_evals == 0 and out.plan.timestep is None
    torch.testing.assert_close(out.samples, m.decode(m.encode(x)).clamp(-1, 1), atol=0, rtol=0)


def test_reference_schedule_skips_grid_steps_above_the_noise_timestep(tiny_pixel_model, monkeypatch):
    spy = Spy(tiny_pixel_model, monkeypatch)
    for scheduler in ("pndm", "dpmsolver++", "ddim", "euler"):
        spy.calls.clear()
        out = boomerang_sample(tiny_pixel_model, image(1), generators=gens([0]), level=0.3, steps=20,
                               schedule="reference", scheduler=scheduler)
        sched = make_scheduler(scheduler, tiny_pixel_model.scheduler_config)
        sched.set_timesteps(20)
        kept = [int(t) for t in sched.timesteps if int(t) <= 300]
        if scheduler == "pndm" and kept[0] == kept[1]:
            kept = kept[1:]
        assert out.plan.timestep == 300 and spy.calls == kept == list(out.plan.timesteps)
        # unlike 'exact': the first denoised step is the largest grid entry <= the noise step
        assert out.plan.timesteps[0] == max(kept) <= 300
        assert torch.isfinite(out.samples).all()
        assert out.alpha_bar == pytest.approx(float(sched.alphas_cumprod[300]))


def test_reference_with_no_grid_step_below_is_refused_not_a_silent_copy(tiny_pixel_model):
    # dpmsolver++ 'leading' grid with 15 steps has no timestep <= 5: nothing would be denoised, and the
    # input would come back as a "sample" (a new-user trial found anonymise releasing the originals)
    from boomerang.errors import SettingError

    with pytest.raises(SettingError, match=r"level 0.005 with schedule reference and scheduler dpmsolver\+\+ "
                                           r"at 15 steps denoises nothing .* use level >= 0\.\d+ at 15 steps"):
        boomerang_sample(tiny_pixel_model, image(1), generators=gens([0]), level=0.005, steps=15,
                         schedule="reference", scheduler="dpmsolver++")
    msg = None
    try:
        boomerang_sample(tiny_pixel_model, image(1), generators=gens([0]), level=0.3, steps=2,
                         schedule="reference", scheduler="dpmsolver")
    except SettingError as exc:
        msg = str(exc)
    assert msg is not None  # level 0.3 at 2 steps: the 2-step grid has no step <= 300 either
    if msg is not None:  # the smallest level it names does denoise
        smallest = float(msg.split("use level >= ")[1].split()[0])
        out = boomerang_sample(tiny_pixel_model, image(1), generators=gens([0]), level=smallest, steps=2,
                               schedule="reference", scheduler="dpmsolver")
        assert out.num_denoiser_evals >= 1


def test_tiny_level_with_a_coarse_grid_takes_at_least_one_step(tiny_pixel_model):
    for scheduler in CUSTOM_GRID_SCHEDULERS:
        out = boomerang_sample(tiny_pixel_model, image(1), generators=gens([0]), level=0.005, steps=15,
                               scheduler=scheduler)
        assert out.plan.timesteps == (5,) and out.num_denoiser_evals == 1 and torch.isfinite(out.samples).all()


# ----------------------------------------------------------------------------- the parameter grid (shared/cases)

GRID_LEVELS = (0.01, 0.05, 0.1, 0.3, 0.45, 0.55, 0.7, 0.95, 1.0)
GRID_STEPS = (1, 2, 15, 30, 31, 50)


@pytest.mark.parametrize("scheduler", SCHEDULER_NAMES)
def test_parameter_grid(tiny_pixel_zero_eps_dir, scheduler):
    """Every scheduler x level x steps: finite output of the input's shape; level 0.05 stays
    close to the input and level 1 does not.

    The model predicts eps == 0 exactly, so every solver's x0 estimate is x_t / sqrt(alpha_bar_t):
    the output is x0 plus the forward noise it cannot remove, of size about
    sqrt((1 - alpha_bar_t) / alpha_bar_t): ~0.18 at t = 50 (MSE ~0.03, or a bit more with ddpm's
    fresh noise), but ~157 at t = 999 (clipped to +-1: MSE ~0.4..1.3). A wrong noise level, grid or
    solver state shows up here. pndm cannot follow the exact grid: it runs the reference schedule.
    ddim runs with eta=0.5 (stochastic DDIM); eta=0 is covered by the other tests.
    """
    from boomerang.models import load_model

    model = load_model(tiny_pixel_zero_eps_dir)
    model.batch_invariant = False  # one item per call; invariance has its own tests (this saves ~25%)
    schedule = "exact" if scheduler in CUSTOM_GRID_SCHEDULERS else "reference"
    x = image(1, seed=3) * 0.8
    for steps in GRID_STEPS:
        mse = {}
        for level in GRID_LEVELS:
            out = boomerang_sample(model, x, generators=gens([level * 1000 + steps]), level=level, steps=steps,
                                   scheduler=scheduler, eta=0.5, schedule=schedule)
            assert out.samples.shape == x.shape and torch.isfinite(out.samples).all(), (level, steps)
            mse[level] = float((out.samples - x).pow(2).mean())
        assert mse[0.05] < 0.1 and mse[1.0] > 0.2, (steps, mse)


# ----------------------------------------------------------------------------- batch invariance


@pytest.mark.parametrize("scheduler,eta", [("ddpm", 0.0), ("ddim", 1.0), ("dpmsolver++", 0.0)])
def test_batch_size_and_order_do_not_change_samples_pixel(tiny_pixel_model, scheduler, eta):
    x = image(7, seed=1)
    kw = dict(level=0.6, steps=8, scheduler=scheduler, eta=eta)
    batch7 = boomerang_sample(tiny_pixel_model, x, generators=gens(range(7)), **kw).samples
    singles = torch.cat([boomerang_sample(tiny_pixel_model, x[i:i + 1], generators=gens([i]), **kw).samples
                         for i in range(7)])
    rev = list(range(6, -1, -1))
    reversed_ = boomerang_sample(tiny_pixel_model, x[rev], generators=gens(rev), **kw).samples
    assert torch.equal(batch7, singles)
    assert torch.equal(reversed_, batch7[rev])


@pytest.mark.parametrize("schedule", ["exact", "img2img"])
def test_batch_size_and_order_do_not_change_samples_sd(tiny_sd_model, schedule):
    x = image(7, 3, 16, 16, seed=2)
    kw = dict(level=0.5, steps=6, scheduler="ddpm", prompt="cat", negative_prompt="person", guidance_scale=7.5,
              schedule=schedule)
    batch7 = boomerang_sample(tiny_sd_model, x, generators=gens(range(7)), **kw).samples
    singles = torch.cat([boomerang_sample(tiny_sd_model, x[i:i + 1], generators=gens([i]), **kw).samples
                         for i in range(7)])
    rev = list(range(6, -1, -1))
    reversed_ = boomerang_sample(tiny_sd_model, x[rev], generators=gens(rev), **kw).samples
    assert torch.equal(batch7, singles)
    assert torch.equal(reversed_, batch7[rev])


# ----------------------------------------------------------------------------- bad input


def test_bad_input_is_a_value_error(tiny_pixel_model):
    m, x = tiny_pixel_model, image(2)
    cases = [
        dict(generators=gens([0]), level=0.3),  # one generator for two images
        dict(generators=gens([0, 1]), level=1.5),
        dict(generators=gens([0, 1]), level=float("nan")),
        dict(generators=gens([0, 1]), timestep=1000),
        dict(generators=gens([0, 1]), level=0.3, timestep=3),
        dict(generators=gens([0, 1]), level=0.3, steps=0),
        dict(generators=gens([0, 1]), level=0.3, schedule="sdedit"),
        dict(generators=gens([0, 1]), level=0.3, scheduler="no-such-solver"),
        dict(generators=gens([0, 1]), level=0.3, scheduler="pndm"),  # pndm cannot follow the exact grid
        dict(generators=gens([0, 1]), level=0.3, eta=-1),
    ]
    for kw in cases:
        with pytest.raises(ValueError):
            boomerang_sample(m, x, **kw)
    with pytest.raises(ValueError, match="channels"):
        boomerang_sample(m, image(1, 3), generators=gens([0]), level=0.3)
    assert SCHEDULES == ("exact", "img2img", "reference")


def test_x0_outside_minus1_1_is_rejected(tiny_pixel_model):
    for bad in (image(1) * 127.5 + 127.5, torch.full((1, 1, 8, 8), float("nan"))):
        with pytest.raises(ValueError, match=r"\[-1, 1\]"):
            boomerang_sample(tiny_pixel_model, bad, generators=gens([0]), level=0.3)


def test_float16_and_bfloat16_sd_give_finite_float32_samples(tiny_sd_dir):
    from boomerang.models import load_model

    for dtype in ("float16", "bfloat16"):
        m = load_model(tiny_sd_dir, dtype=dtype)
        assert m.vae.dtype == torch.float32  # the VAE always decodes in float32
        out = boomerang_sample(m, image(1, 3, 16, 16), generators=gens([0]), level=0.5, steps=4, prompt="cat")
        assert out.samples.dtype == torch.float32 and torch.isfinite(out.samples).all()


# ----------------------------------------------------------------------------- the DDIM grid adapter


def _ddim(clip=False):
    from boomerang.schedulers import make_scheduler

    return make_scheduler("ddim", dict(num_train_timesteps=1000, beta_schedule="linear", clip_sample=clip,
                                       set_alpha_to_one=True))


def test_grid_ddim_on_its_native_grid_is_diffusers_ddim():
    from diffusers import DDIMScheduler

    ours, ref = _ddim(clip=True), DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True)
    ours.set_timesteps(10), ref.set_timesteps(10)
    x, e = torch.randn(2, 1, 4, 4, generator=gens([1])[0]), torch.randn(2, 1, 4, 4, generator=gens([2])[0])
    for t in ref.timesteps:
        a = ours.step(e, t, x, eta=1.0, generator=gens([3, 4])).prev_sample
        b = ref.step(e, t, x, eta=1.0, generator=gens([3, 4])).prev_sample
        assert torch.equal(a, b)


def test_grid_ddim_steps_to_the_next_entry_of_an_uneven_grid():
    from boomerang.schedulers import set_grid

    sched = _ddim()
    grid = [999, 899, 500, 3]
    set_grid(sched, grid)
    assert [int(t) for t in sched.timesteps] == grid
    x, e = torch.randn(1, 1, 4, 4, generator=gens([1])[0]), torch.randn(1, 1, 4, 4, generator=gens([2])[0])
    ab = sched.alphas_cumprod
    for t, prev in zip(grid, grid[1:] + [-1]):
        a_t = ab[t]
        a_p = ab[prev] if prev >= 0 else torch.tensor(1.0)  # set_alpha_to_one: the last step lands on x0
        x0_hat = (x - (1 - a_t).sqrt() * e) / a_t.sqrt()
        expected = a_p.sqrt() * x0_hat + (1 - a_p).sqrt() * e
        torch.testing.assert_close(sched.step(e, t, x).prev_sample, expected, atol=1e-5, rtol=1e-5)
        assert sched.num_inference_steps == len(grid) and type(sched.num_inference_steps) is int
    with pytest.raises(ValueError):
        set_grid(sched, [5, 5, 1])


@pytest.mark.parametrize("scheduler,level_steps", [
    ("dpmsolver++", [(0.02, 50), (0.3, 2), (0.5, 31), (1.0, 1), (1.0, 15)]),
    ("euler", [(0.02, 50), (0.3, 2), (0.5, 31), (1.0, 1), (1.0, 15)]),
    ("ddim", [(0.01, 50), (0.02, 2), (0.02, 31)]),  # small levels: DDPM's clip_sample stays inactive
])
def test_deterministic_solvers_land_exactly_on_x0_hat(tiny_pixel_zero_eps_dir, scheduler, level_steps):
    """With eps == 0 every x0 estimate is x_t / sqrt(alpha_bar_t), and a deterministic solver
    that enters the chain at t and ends at sigma = 0 (alpha_bar = 1) must return exactly
    x0 + sqrt((1 - alpha_bar_t) / alpha_bar_t) eps, with eps the item's first draw. A solver that
    entered mid-way with stale multistep state, or stopped short of x0, would scale it differently."""
    from boomerang.models import load_model

    model = load_model(tiny_pixel_zero_eps_dir)
    x = image(2, seed=4) * 0.5
    for level, steps in level_steps:
        out = boomerang_sample(model, x, generators=gens([10, 11]), level=level, steps=steps, scheduler=scheduler)
        eps = torch.cat([torch.randn((1, 1, 8, 8), generator=g) for g in gens([10, 11])])
        ab = out.alpha_bar
        expected = (x + ((1 - ab) / ab) ** 0.5 * eps).clamp(-1, 1)
        torch.testing.assert_close(out.samples, expected, atol=2e-5, rtol=2e-5)


# Every split of 16 items into batches of 1, 2, 3, 5, 8 gives the samples of the batch of 16,
# bit for bit, and a reversed batch gives them reversed (float32, CPU; see boomerang.models).
INVARIANCE_SIZES = (1, 2, 3, 5, 8)


@pytest.fixture(scope="module")
def tiny_pixel_attn_model(tmp_path_factory):
    from _tiny import make_tiny_pixel_model

    from boomerang.models import load_model

    return load_model(make_tiny_pixel_model(tmp_path_factory.mktemp("models") / "tiny_pixel_attn", attention=True))


def _split_runs(model, x, kw, sizes=INVARIANCE_SIZES):
    n = x.shape[0]
    full = boomerang_sample(model, x, generators=gens(range(n)), **kw).samples
    for b in sizes:
        parts = [boomerang_sample(model, x[i:i + b], generators=gens(range(i, min(i + b, n))), **kw).samples
                 for i in range(0, n, b)]
        assert torch.equal(torch.cat(parts), full), f"batch size {b} changed a sample"
    rev = list(range(n - 1, -1, -1))
    assert torch.equal(boomerang_sample(model, x[rev], generators=gens(rev), **kw).samples, full[rev])
    return full


@pytest.mark.parametrize("strategy", ["kernels", "per_item"])
def test_batch_invariance_sizes_pixel_attention(tiny_pixel_attn_model, strategy, monkeypatch):
    monkeypatch.setattr(tiny_pixel_attn_model, "invariant_strategy", strategy)
    _split_runs(tiny_pixel_attn_model, image(16, seed=3), dict(level=0.7, steps=6, scheduler="ddpm"))


def test_batch_invariance_sizes_sd(tiny_sd_model):
    kw = dict(level=0.6, steps=4, scheduler="ddim", prompt="cat", negative_prompt="person", guidance_scale=7.5)
    _split_runs(tiny_sd_model, image(16, 3, 16, 16, seed=4), kw)
    kw = dict(kw, schedule="img2img", scheduler="ddpm")  # VAE posterior samples, ancestral noise
    _split_runs(tiny_sd_model, image(16, 3, 16, 16, seed=5), kw, sizes=(1, 5))


def test_batch_invariance_can_be_turned_off(tiny_pixel_attn_model, monkeypatch):
    """batch_invariant=False runs oneDNN kernels on the whole batch: results agree to rounding."""
    kw = dict(level=0.7, steps=6, scheduler="ddpm")
    x = image(16, seed=3)
    invariant = boomerang_sample(tiny_pixel_attn_model, x, generators=gens(range(16)), **kw).samples
    monkeypatch.setattr(tiny_pixel_attn_model, "batch_invariant", False)
    plain = boomerang_sample(tiny_pixel_attn_model, x, generators=gens(range(16)), **kw).samples
    torch.testing.assert_close(plain, invariant, atol=1e-4, rtol=0)


def test_invariant_kernels_leave_modules_unchanged(tiny_pixel_attn_model):
    import torch.nn as nn

    m = tiny_pixel_attn_model
    boomerang_sample(m, image(2), generators=gens(range(2)), level=0.3, steps=2)
    assert torch._C._get_mkldnn_enabled() and torch._C._get_nnpack_enabled()
    assert not any("forward" in mod.__dict__ for mod in m.unet.modules() if isinstance(mod, (nn.Linear, nn.Conv2d)))


def test_unknown_invariant_strategy_is_rejected(tiny_pixel_attn_model, monkeypatch):
    monkeypatch.setattr(tiny_pixel_attn_model, "invariant_strategy", "magic")
    with pytest.raises(ValueError, match="invariant_strategy"):
        boomerang_sample(tiny_pixel_attn_model, image(2), generators=gens(range(2)), level=0.3, steps=2)


def test_unclipped_schedulers_refuse_a_start_at_huge_sigma(tiny_pixel_dir):
    import json

    from boomerang.assets import default_model_path
    from boomerang.core import check_start_sigma

    cosine = json.loads((default_model_path() / "scheduler" / "scheduler_config.json").read_text())
    assert cosine["beta_schedule"] == "squaredcos_cap_v2"
    for name in ("euler", "dpmsolver++"):
        with pytest.raises(ValueError, match=r"t=999.*use scheduler ddpm or ddim, or a level <= 0\.998 \(it starts at t <= 998 on every schedule\)"):
            check_start_sigma(name, cosine, 999)
        check_start_sigma(name, cosine, 998)  # sigma ~ 645: accepted
    for name in ("ddpm", "ddim"):  # they clip x0: accepted at any t
        check_start_sigma(name, cosine, 999)
    linear = json.loads((tiny_pixel_dir / "scheduler" / "scheduler_config.json").read_text())
    check_start_sigma("euler", linear, 999)  # linear betas: sigma_999 ~ 157
    check_start_sigma("euler", cosine, None)  # identity


def test_cli_refuses_euler_at_level_1_on_the_cosine_model_before_writing(tmp_path, capsys):
    from boomerang.cli import main

    out = tmp_path / "out"
    rc = main(["sample", str(pathlib.Path(__file__).resolve().parents[2] / "examples" / "digits" / "7.png"),
               "--level", "0.5,1.0", "--scheduler", "euler", "--num-samples", "1", "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot start at t=999" in err
    assert not out.exists()


@pytest.mark.parametrize("scheduler", ["heun", "euler"])
def test_the_start_sigma_refusal_suggests_the_flag_the_user_gave(scheduler, tmp_path, capsys):
    from boomerang.cli import main

    digit = str(pathlib.Path(__file__).resolve().parents[2] / "examples" / "digits" / "7.png")
    out = tmp_path / "out"
    assert main(["sample", digit, "--timestep", "999", "--scheduler", scheduler, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot start at t=999" in err and "a --timestep <= 998" in err and "--level" not in err, err
    assert main(["sample", digit, "--level", "1", "--scheduler", scheduler, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "a --level <= 0.998 (it starts at t <= 998 on every schedule)" in err and "--timestep" not in err, err
    assert not out.exists()


def test_reference_schedule_also_refuses_euler_noised_at_t_999(tmp_path, capsys):
    from boomerang.cli import main

    out = tmp_path / "out"
    digit = str(pathlib.Path(__file__).resolve().parents[2] / "examples" / "digits" / "7.png")
    rc = main(["sample", digit, "--level", "0.3,1.0", "--scheduler", "euler", "--schedule", "reference",
               "--num-samples", "1", "--out", str(out)])
    assert rc == 2 and "cannot start at t=999" in capsys.readouterr().err
    assert not out.exists()
    # img2img starts on the scheduler's own grid (t = 980 here): accepted.
    assert main(["sample", digit, "--level", "1.0", "--scheduler", "euler", "--schedule", "img2img", "--steps", "2",
                 "--num-samples", "1", "--out", str(tmp_path / "ok")]) == 0
