"""hopper and half_cheetah reproduce Gymnasium's Hopper-v5 and HalfCheetah-v5 step by step; their
positions-only variants see the same episodes through fewer inputs; the spec's observation `clip`."""
from __future__ import annotations

import copy
import math

import gymnasium as gym
import numpy as np
import pytest

from liquid_control.core.errors import SpecError
from liquid_control.core.resources import share_dir
from liquid_control.core.spec import load_spec, parse_spec
from liquid_control.sim import env_id_for
from liquid_control.sim.env import SpecEnv
from liquid_control.sim.observe import ObsReader


@pytest.fixture(autouse=True)
def _mujoco_log_in_tmp(tmp_path, monkeypatch):
    """MuJoCo appends its warning about Gymnasium's half_cheetah.xml (settotalmass) to ./MUJOCO_LOG.TXT."""
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("robot, theirs, steps, reset_at", [
    ("hopper", "Hopper-v5", 600, None),        # random actions topple it every ~25 steps: many resets
    ("half_cheetah", "HalfCheetah-v5", 300, 150),  # never terminates: reset it once by hand
])
def test_trajectories_match_gymnasium_v5(robot, theirs, steps, reset_at):
    """Same seed, same actions: the same observation, reward, termination, truncation and state every step."""
    a, b = gym.make(env_id_for(robot)), gym.make(theirs)
    oa, _ = a.reset(seed=11)
    ob, _ = b.reset(seed=11)
    np.testing.assert_array_equal(oa, ob)
    rng = np.random.default_rng(0)
    episodes, terminations, clipped, total_a, total_b = 1, 0, 0, 0.0, 0.0
    for k in range(steps):
        # Half the actions saturated: hard pushes reach joint speeds past Hopper's observation clip.
        act = np.clip(2.0 * rng.uniform(-1, 1, size=a.action_space.shape), -1.0, 1.0)
        ra, rb = a.step(act), b.step(act)
        np.testing.assert_array_equal(ra[0], rb[0], err_msg=f"step {k}")
        np.testing.assert_array_equal(a.unwrapped.data.qpos, b.unwrapped.data.qpos, err_msg=f"step {k}")
        np.testing.assert_array_equal(a.unwrapped.data.qvel, b.unwrapped.data.qvel, err_msg=f"step {k}")
        assert ra[1:4] == rb[1:4], f"step {k}: {ra[1:4]} vs {rb[1:4]}"
        for key in ("reward_forward", "reward_ctrl", "reward_survive"):
            assert ra[4].get(key) == rb[4].get(key), (k, key)
        total_a += ra[1]
        total_b += rb[1]
        terminations += ra[2]
        clipped += int(np.sum(np.abs(ra[0]) == 10.0))
        if ra[2] or ra[3] or k == reset_at:
            oa, _ = a.reset()
            ob, _ = b.reset()
            np.testing.assert_array_equal(oa, ob)
            episodes += 1
    assert episodes > 1 and total_a == total_b
    if robot == "hopper":  # the termination terms and the velocity clip were exercised, not idle
        assert terminations > 5 and clipped > 0


@pytest.mark.parametrize("robot, theirs", [("hopper", "Hopper-v5"), ("half_cheetah", "HalfCheetah-v5")])
def test_the_compiled_model_is_gymnasiums(robot, theirs):
    """Every MjModel array (all physics parameters) equals Gymnasium's, bit for bit; only names may differ
    (hopper.xml names its actuators; half_cheetah.xml spells out the inertials settotalmass computed)."""
    ours, ref = SpecEnv(robot).model, gym.make(theirs).unwrapped.model
    compared = 0
    for attr in dir(ref):
        value = getattr(ref, attr, None)
        if attr.startswith(("_", "name")) or not isinstance(value, np.ndarray):
            continue
        np.testing.assert_array_equal(getattr(ours, attr), value, err_msg=attr)
        compared += 1
    assert compared > 100
    for struct in ("opt", "stat"):
        for key in (k for k in dir(getattr(ref, struct)) if not k.startswith("_")):
            np.testing.assert_array_equal(getattr(getattr(ours, struct), key), getattr(getattr(ref, struct), key))


@pytest.mark.parametrize("robot", ["hopper", "half_cheetah"])
def test_positions_only_variant_sees_the_same_episode_without_velocities(robot):
    full, pos = SpecEnv(robot), SpecEnv(f"{robot}_pos")
    nq = len(full.robot_spec.observation[0].names)
    assert pos.reader.size == nq and full.reader.size > nq
    assert "velocity" not in " ".join(pos.robot_spec.obs_labels())
    of, _ = full.reset(seed=5)
    op, _ = pos.reset(seed=5)
    np.testing.assert_array_equal(op, of[:nq])
    rng = np.random.default_rng(1)
    for _ in range(100):
        act = rng.uniform(-1, 1, size=full.action_space.shape)
        rf, rp = full.step(act), pos.step(act)
        np.testing.assert_array_equal(rp[0], rf[0][:nq])
        assert rp[1:4] == rf[1:4]
        if rf[2]:
            np.testing.assert_array_equal(pos.reset()[0], full.reset()[0][:nq])


def test_the_robots_register_with_gymnasium_time_limits():
    for robot, env_id in (("hopper", "Hopper-v0"), ("hopper_pos", "HopperPos-v0"),
                          ("half_cheetah", "HalfCheetah-v0"), ("half_cheetah_pos", "HalfCheetahPos-v0")):
        assert env_id_for(robot) == f"liquid_control/{env_id}"
        env = gym.make(f"liquid_control/{env_id}")
        assert env.spec.max_episode_steps == 1000 and env.unwrapped.robot_spec.name == robot
        env.close()


# ------------------------------------------------------------------------------------ observation clip
def hopper_dict() -> dict:
    import yaml

    return yaml.safe_load(load_spec("hopper").source.read_text())


def test_clip_bounds_raw_values_before_scale_and_joins_the_layout():
    data = hopper_dict()
    data["sim"]["mjcf"] = str(share_dir() / "sim" / "hopper.xml")
    data["observation"][1]["scale"] = 0.5
    data["observation"][1]["clip"] = {"low": [-1, -2, -3, -4, -5, -6], "high": 1.0}
    spec = parse_spec(data)
    assert spec.observation[1].clip == ((-1, -2, -3, -4, -5, -6), (1.0,) * 6)
    env = SpecEnv(spec)
    env.reset(options={"qpos": env.init_qpos, "qvel": [3.0, -3.0, 0.5, -7.0, 0.0, -1.0]})
    reader = ObsReader(env.model, env.data, spec)
    np.testing.assert_array_equal(reader.observe()[5:], 0.5 * np.array([1.0, -2.0, 0.5, -4.0, 0.0, -1.0]))
    # what a message carries (the sim bridge's JointState) stays unclipped: the clip is the policy input's
    np.testing.assert_array_equal(reader.raw_entry(1), [3.0, -3.0, 0.5, -7.0, 0.0, -1.0])
    layout = spec.observation[1].layout()
    assert layout["clip"] == {"low": [-1, -2, -3, -4, -5, -6], "high": [1.0] * 6}
    assert "clip" not in spec.observation[0].layout()  # so specs without a clip keep their hash
    other = copy.deepcopy(data)
    other["observation"][1]["clip"]["high"] = 2.0
    assert parse_spec(other).hash != spec.hash


@pytest.mark.parametrize("clip, message", [
    ({"low": 1.0, "high": -1.0}, "observation[1].clip: low [1.0, 1.0, 1.0, 1.0, 1.0, 1.0] must be below high"),
    ({"lo": -1.0}, "observation[1].clip: unknown key 'lo'; did you mean 'low'?"),
    ({"low": [-1.0, 1.0]}, "observation[1].clip.low: expected 6 values, got 2"),
    ({"high": math.nan}, "observation[1].clip.high: must be a finite number"),
    ([-10, 10], "observation[1].clip: expected a mapping"),
])
def test_bad_clips_are_one_line_errors(clip, message):
    data = hopper_dict()
    data["observation"][1]["clip"] = clip
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    assert message in str(err.value)
