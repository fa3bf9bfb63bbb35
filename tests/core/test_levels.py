"""The noise-level contract (boomerang.levels): pure integer arithmetic, no model."""

import math

import pytest

from boomerang import levels as L

T = 1000


def test_level_mapping_is_monotone_and_hits_every_training_step():
    ts = [L.level_to_timestep(k / 100000, T) for k in range(1, 100001)]
    assert all(a <= b for a, b in zip(ts, ts[1:]))
    assert set(ts) == set(range(T))
    assert L.level_to_timestep(1.0, T) == T - 1
    assert L.level_to_timestep(0.0, T) is None
    for t in range(1, T):  # t = 0 is level 1e-4 or --timestep 0: level 0 itself is the identity
        assert L.level_to_timestep(L.timestep_to_level(t, T), T) == t
    assert L.level_to_timestep(0.4 / (T - 1), T) == 0


def test_level_mapping_does_not_depend_on_steps():
    for steps in (1, 2, 15, 50):
        assert L.plan_exact(level=0.3, steps=steps, num_train_timesteps=T).timestep == 300
        assert L.plan_exact(level=0.3001, steps=steps, num_train_timesteps=T).timestep == 300
        assert L.plan_exact(level=0.301, steps=steps, num_train_timesteps=T).timestep == 301


@pytest.mark.parametrize("steps", [1, 2, 15, 30, 31, 50, 1000])
def test_reverse_grid_starts_at_t_and_follows_the_documented_rule(steps):
    for t in list(range(0, 40)) + [299, 500, 998, 999]:
        grid = L.reverse_timesteps(t, steps, T)
        n = min(t + 1, max(1, math.ceil(steps * (t + 1) / T)))
        assert len(grid) == n >= 1
        assert grid[0] == t
        assert all(a > b for a, b in zip(grid, grid[1:]))
        assert grid[-1] >= 0


def test_full_chain_equals_trailing_spacing():
    # diffusers' "trailing": round(arange(T, 0, -T/steps)) - 1
    assert L.reverse_timesteps(999, 50, T) == list(range(999, 0, -20))
    assert L.reverse_timesteps(999, 1000, T) == list(range(999, -1, -1))


def test_tiny_level_with_coarse_grid_still_denoises_once():
    plan = L.plan_exact(level=0.005, steps=15, num_train_timesteps=T)
    assert plan.timestep == 5 and plan.timesteps == (5,) and plan.num_denoiser_evals == 1


@pytest.mark.parametrize("bad", [float("nan"), -0.1, 1.5, "abc", float("inf"), None])
def test_bad_levels_are_rejected_with_a_message(bad):
    with pytest.raises(ValueError, match="level"):
        L.check_level(bad)


@pytest.mark.parametrize("bad", [-1, T, 3.5, "x"])
def test_bad_timesteps_are_rejected(bad):
    with pytest.raises(ValueError, match="timestep"):
        L.check_timestep(bad, T)


@pytest.mark.parametrize("bad", [0, -3, 1.5, "two"])
def test_counts_must_be_positive_integers(bad):
    with pytest.raises(ValueError, match="steps"):
        L.check_positive_int(bad, "steps")


def test_parse_levels():
    assert L.parse_levels("0.2,0.5,0.8") == [0.2, 0.5, 0.8]
    for bad in ("", "0.2,,0.5", "0.2,nan", "1.5"):
        with pytest.raises(ValueError):
            L.parse_levels(bad)


def test_plan_needs_exactly_one_knob():
    with pytest.raises(ValueError):
        L.plan_exact(level=0.3, timestep=300, steps=50, num_train_timesteps=T)
    with pytest.raises(ValueError):
        L.plan_exact(steps=50, num_train_timesteps=T)
    plan = L.plan_exact(timestep=300, steps=50, num_train_timesteps=T)
    assert plan.timestep == 300 and plan.timesteps[0] == 300 and plan.num_denoiser_evals == 16
