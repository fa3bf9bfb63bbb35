"""boomerang.reverse: the one reverse loop (its hook, its count, its start), with a stand-in denoiser.

The stand-in is the exact denoiser of a point mass at a known z0: from x_t it
returns eps = (x_t - sqrt(alpha_bar_t) z0) / sqrt(1 - alpha_bar_t). Every
deterministic scheduler then keeps x on the forward path of z0 and its eps,
x_t = sqrt(alpha_bar_t) z0 + sqrt(1 - alpha_bar_t) eps (sigma space: z0 + sigma_t eps),
so the hook can check that x really sits at the timestep it is given.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler

from boomerang.planning import plan as make_plan
from boomerang.reverse import add_noise, per_item_noise, reverse_process, scheduler_for
from boomerang.schedulers import CUSTOM_GRID_SCHEDULERS, SCHEDULER_NAMES, make_scheduler, works_in_sigma_space
from _helpers import generators

CONFIG = dict(DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").config)
DETERMINISTIC = [s for s in CUSTOM_GRID_SCHEDULERS if s != "ddpm"]


def _oracle(z0, alphas_cumprod):
    ab = alphas_cumprod.double()

    def denoiser(x_in, t):  # x_in is the VP x_t for every scheduler (scale_model_input undoes sigma space)
        a = float(ab[int(t)])
        return ((x_in.double() - a**0.5 * z0.double()) / (1 - a) ** 0.5).to(x_in.dtype)

    return denoiser


def _start(plan, seed=0):
    sched = scheduler_for(plan, CONFIG)
    g = torch.Generator().manual_seed(seed)
    z0 = torch.rand((2, 1, 4, 4), generator=g) * 1.6 - 0.8
    eps = per_item_noise(generators(range(2), base=seed), (1, 4, 4), "cpu")
    return sched, z0, eps, add_noise(sched, plan, z0, eps, "cpu")


@pytest.mark.parametrize("scheduler", DETERMINISTIC)
def test_the_hook_gets_each_completed_step_and_the_timestep_x_sits_at(scheduler):
    plan = make_plan(CONFIG, level=0.4, scheduler=scheduler, steps=12)
    grid = sorted(set(plan.timesteps), reverse=True)
    sched, z0, eps, x_t = _start(plan)
    ab = sched.alphas_cumprod.double()
    sigma_space = works_in_sigma_space(sched)
    # after the last step: sigma 0 (x0), except deis, whose diffusers class ends at its own sigma_0 = 0.01
    final = float(sched.sigmas[-1]) if hasattr(sched, "sigmas") else 0.0
    seen = []

    def at(t):
        s = final if t is None else float(((1 - ab[t]) / ab[t]) ** 0.5)  # sigma_t
        return z0 + s * eps if sigma_space else (z0 + s * eps) / (1 + s * s) ** 0.5

    def hook(i, t, x):
        seen.append((i, t, float((x.double() - at(t)).abs().max())))
        return x

    calls = []
    out = reverse_process(_oracle(z0, sched.alphas_cumprod), x_t, plan, sched, generators(range(2)), hook=hook,
                          progress=lambda done, total: calls.append((done, total)))
    assert [(i, t) for i, t, _ in seen] == list(enumerate(grid[1:] + [None]))  # once per distinct timestep
    assert max(err for *_, err in seen) < 1e-3, seen  # x is at the timestep the hook is told
    torch.testing.assert_close(out, at(None).float(), atol=1e-3, rtol=0)
    assert final == 0.0 or scheduler == "deis"
    assert calls == [(k + 1, len(plan.timesteps)) for k in range(len(plan.timesteps))]  # per denoiser call


def test_a_stochastic_scheduler_calls_the_hook_once_per_step_too():
    plan = make_plan(CONFIG, level=0.4, scheduler="ddpm", steps=12)
    sched, z0, _, x_t = _start(plan)
    ts = []
    reverse_process(_oracle(z0, sched.alphas_cumprod), x_t, plan, sched, generators(range(2)),
                    hook=lambda i, t, x: ts.append(t) or x)
    assert ts == list(plan.timesteps[1:]) + [None]


@pytest.mark.parametrize("scheduler", CUSTOM_GRID_SCHEDULERS)
def test_the_denoiser_runs_once_per_planned_timestep(scheduler):
    plan = make_plan(CONFIG, level=0.7, scheduler=scheduler, steps=10)
    sched, z0, _, x_t = _start(plan)
    seen = []
    oracle = _oracle(z0, sched.alphas_cumprod)
    reverse_process(lambda x, t: seen.append(int(t)) or oracle(x, t), x_t, plan, sched, generators(range(2)))
    assert tuple(seen) == plan.timesteps
    if scheduler == "heun":  # the plan lists each timestep after the first twice; the loop does not double it again
        grid = sorted(set(plan.timesteps), reverse=True)
        assert plan.timesteps == (grid[0], *[t for t in grid[1:] for _ in (0, 1)])


def test_a_plan_without_a_scheduler_is_refused():
    from boomerang import levels

    with pytest.raises(ValueError, match="boomerang.core.plan"):
        scheduler_for(levels.plan_exact(level=0.3, steps=10, num_train_timesteps=1000), CONFIG)


@pytest.mark.parametrize("scheduler", SCHEDULER_NAMES)
def test_sigma_space_means_add_noise_gives_x0_plus_sigma_eps(scheduler):
    """works_in_sigma_space is what the scheduler does: add_noise returns z0 + sigma_t eps (Euler, Heun, LMS,
    KDPM2) rather than sqrt(alpha_bar_t) z0 + sqrt(1 - alpha_bar_t) eps."""
    sched = make_scheduler(scheduler, CONFIG)
    sched.set_timesteps(10)
    if hasattr(sched, "set_begin_index"):
        sched.set_begin_index(0)
    t = sched.timesteps[:1]
    z0, eps = torch.full((1, 1, 2, 2), 0.5), torch.full((1, 1, 2, 2), 0.25)
    ab = float(sched.alphas_cumprod[int(t)])
    sigma_form = z0 + ((1 - ab) / ab) ** 0.5 * eps
    got = sched.add_noise(z0, eps, t)
    assert works_in_sigma_space(sched) == torch.allclose(got, sigma_form, rtol=1e-4)
    assert works_in_sigma_space(sched) == (scheduler in ("euler", "heun", "lms", "kdpm2", "kdpm2-ancestral"))
