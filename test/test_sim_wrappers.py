"""Real-robot wrappers: each is off by default, does what it says, and is reproducible from its seed."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import liquid_control.sim  # noqa: F401  (registers the ids)
from liquid_control.sim.env import SpecEnv, make_env
from liquid_control.sim.wrappers import (ActionDelay, AppendDt, ControlJitter, ObservationDropout,
                                         PhysicsRandomization, SensorNoise, WrapperError)

ZERO = np.zeros(1, np.float32)


def run(env, steps, action=ZERO, seed=0):
    obs, _ = env.reset(seed=seed)
    out = [(obs, {})]
    for _ in range(steps):
        obs, _r, _t, _tr, info = env.step(action)
        out.append((obs, info))
    return out


def test_everything_is_off_by_default():
    env = gym.make("liquid_control/CartPole-v0")
    assert isinstance(env.unwrapped, SpecEnv)
    assert not any(isinstance(w, (ActionDelay, ControlJitter, SensorNoise, ObservationDropout, AppendDt,
                                  PhysicsRandomization))
                   for w in _chain(env))
    assert type(make_env("cartpole")) is SpecEnv


def _chain(env):
    while isinstance(env, gym.Wrapper):
        yield env
        env = env.env


def test_jitter_varies_the_simulated_dt_and_reports_it():
    env = ControlJitter(SpecEnv("cartpole"), jitter=0.25, seed=3)  # the MJCF's 0.02 s timestep: dt is exact anyway
    steps = run(env, 60)
    dts = np.array([info["dt"] for _obs, info in steps[1:]])
    assert dts.min() >= 0.03 - 1e-9 and dts.max() <= 0.05 + 1e-9
    assert len(np.unique(dts.round(6))) > 5  # it really varies
    assert env.unwrapped.data.time == pytest.approx(dts.sum())  # MuJoCo was stepped by the reported dt
    assert len(np.unique(dts.round(6))) == len(dts)  # continuous, not rounded to the 0.02 s timestep
    again = ControlJitter(SpecEnv("cartpole"), jitter=0.25, seed=3)
    np.testing.assert_array_equal(dts, [info["dt"] for _o, info in run(again, 60)[1:]])  # seeded


def test_reset_seed_reseeds_the_jitter():
    a = ControlJitter(SpecEnv("cartpole", timestep=0.001), jitter=0.25)
    b = ControlJitter(SpecEnv("cartpole", timestep=0.001), jitter=0.25)
    run(a, 7, seed=123)  # different history before the seeded reset
    da = [i["dt"] for _o, i in run(a, 20, seed=5)[1:]]
    db = [i["dt"] for _o, i in run(b, 20, seed=5)[1:]]
    assert da == db


def test_dropped_ticks_lengthen_the_step():
    env = ControlJitter(SpecEnv("cartpole"), drop_prob=0.5, seed=1)
    infos = [info for _o, info in run(env, 80)[1:]]
    drops = np.array([i["dropped_ticks"] for i in infos])
    assert drops.max() >= 1 and (drops == 0).any()
    np.testing.assert_allclose([i["dt"] for i in infos], 0.04 * (1 + drops))


def test_sensor_noise_has_the_asked_spread_and_is_seeded():
    clean = SpecEnv("cartpole")
    noisy = SensorNoise(SpecEnv("cartpole"), std=[0.01, 0.02, 0.0, 0.5], seed=9)
    diffs = np.array([o_n - o_c for (o_n, _), (o_c, _) in zip(run(noisy, 300), run(clean, 300))])
    np.testing.assert_allclose(diffs.std(axis=0), [0.01, 0.02, 0.0, 0.5], rtol=0.15)
    assert (diffs[:, 2] == 0).all()
    again = SensorNoise(SpecEnv("cartpole"), std=[0.01, 0.02, 0.0, 0.5], seed=9)
    np.testing.assert_array_equal(run(noisy, 5)[-1][0], run(again, 5)[-1][0])
    with pytest.raises(WrapperError):
        SensorNoise(SpecEnv("cartpole"), std=[0.1, 0.1])


def test_action_delay_applies_actions_late():
    env = ActionDelay(SpecEnv("cartpole"), delay=2, seed=0)
    env.reset(seed=0)
    applied = []
    for a in (0.1, 0.2, 0.3, 0.4):
        _o, _r, _t, _tr, info = env.step(np.array([a], np.float32))
        applied.append(env.unwrapped.data.ctrl[0])
    assert info["action_delay"] == 2
    np.testing.assert_allclose(applied, [0.0, 0.0, 0.3, 0.6], atol=1e-6)  # safe, safe, then 0.1*3, 0.2*3


def test_action_delay_range_is_drawn_per_episode():
    env = ActionDelay(SpecEnv("cartpole"), delay=(0, 3), seed=4)
    delays = {env.reset()[1]["action_delay"] for _ in range(30)}
    assert delays == {0, 1, 2, 3}


def test_observation_dropout_holds_the_last_observation():
    env = ObservationDropout(SpecEnv("cartpole"), prob=0.4, seed=2)
    steps = run(env, 60, action=np.array([0.2], np.float32))
    dropped = [k for k in range(1, len(steps)) if steps[k][1]["obs_dropped"]]
    kept = [k for k in range(1, len(steps)) if not steps[k][1]["obs_dropped"]]
    assert dropped and kept
    for k in dropped:
        np.testing.assert_array_equal(steps[k][0], steps[k - 1][0])
    for k in kept:
        assert not np.array_equal(steps[k][0], steps[k - 1][0])


def test_append_dt_adds_the_normalised_period():
    env = AppendDt(ControlJitter(SpecEnv("cartpole", timestep=0.002), jitter=0.3, seed=0))
    assert env.observation_space.shape == (5,)
    steps = run(env, 10)
    assert steps[0][0][-1] == 1.0
    for obs, info in steps[1:]:
        assert obs[-1] == pytest.approx(info["dt"] / 0.04)


def test_make_with_all_options_is_reproducible():
    kwargs = dict(dt_jitter=0.2, drop_prob=0.1, obs_noise=0.01, action_delay=1, obs_dropout=0.1,
                  append_dt=True, timestep=0.002)
    a = gym.make("liquid_control/CartPole-v0", **kwargs)
    b = gym.make("liquid_control/CartPole-v0", **kwargs)
    ra, rb = run(a, 30, seed=42), run(b, 30, seed=42)
    for (oa, ia), (ob, ib) in zip(ra, rb):
        np.testing.assert_array_equal(oa, ob)
        assert ia == ib
    assert oa.shape == (5,)


def test_physics_randomization_draws_per_episode_from_nominal():
    env = PhysicsRandomization(SpecEnv("cartpole"), mass=0.3, damping=0.5, gear=0.2, seed=0)
    model = env.unwrapped.model
    nominal_mass, nominal_gear = model.body_mass.copy(), model.actuator_gear[:, 0].copy()
    _obs, info = env.reset(seed=1)
    first = model.body_mass.copy()
    scale = info["physics_scale"]
    np.testing.assert_allclose(first, nominal_mass * scale["mass"])
    np.testing.assert_allclose(model.actuator_gear[:, 0], nominal_gear * scale["gear"])
    assert np.all(np.abs(scale["mass"] - 1) <= 0.3) and np.any(scale["mass"] != 1)
    for _ in range(20):  # scales come from the nominal values each time: no drift
        env.reset()
        heavy = nominal_mass > 0  # the world body has no mass
        assert np.all(np.abs(model.body_mass[heavy] / nominal_mass[heavy] - 1) <= 0.3 + 1e-12)
    env.reset(seed=1)
    np.testing.assert_array_equal(model.body_mass, first)  # seeded
    # and it changes the dynamics: the same action moves the cart differently than the nominal robot
    plain = SpecEnv("cartpole")
    plain.reset(seed=1)
    a = run(env, 5, action=np.array([0.5], np.float32), seed=1)[-1][0]
    b = run(plain, 5, action=np.array([0.5], np.float32), seed=1)[-1][0]
    assert not np.allclose(a, b)
