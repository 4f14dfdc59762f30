"""The spec-driven MuJoCo env: observation by name, Gymnasium v5 parity, vector envs, bad input, rendering."""
from __future__ import annotations

import logging
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml

import liquid_control.sim  # noqa: F401  (registers the ids)
from liquid_control.core.errors import SpecError
from liquid_control.core.resources import share_dir
from liquid_control.core.spec import parse_spec
from liquid_control.sim.env import SpecEnv
from liquid_control.sim.observe import observation

SIM = share_dir() / "sim"


def spec_dict(robot: str) -> dict:
    data = yaml.safe_load((share_dir() / "config" / "robots" / f"{robot}.yaml").read_text())
    data["sim"]["mjcf"] = str(SIM / data["sim"]["mjcf"])
    return data


def joint(env: SpecEnv, name: str):
    return env.data.joint(name)


# ------------------------------------------------------------------------------------------ observation
def test_cartpole_obs_is_qpos_qvel_by_joint_name():
    env = SpecEnv("cartpole")
    obs, info = env.reset(seed=1)
    for _ in range(5):
        obs, _r, _t, _tr, info = env.step(np.array([0.3], np.float32))
        s, h = joint(env, "slider"), joint(env, "hinge")
        expected = [s.qpos[0], h.qpos[0], s.qvel[0], h.qvel[0]]
        np.testing.assert_array_equal(obs, expected)
    assert obs.dtype == np.float64 and info["dt"] == pytest.approx(0.04)


def test_novel_is_positions_only():
    env = SpecEnv("cartpole_novel")
    obs, _ = env.reset(seed=2)
    obs, *_ = env.step([1.0])
    assert obs.shape == (2,)
    np.testing.assert_array_equal(obs, [joint(env, "slider").qpos[0], joint(env, "hinge").qpos[0]])


def test_imu_reads_gyro_and_orientation_of_the_pole():
    env = SpecEnv("cartpole_imu")
    env.reset(seed=3)
    for _ in range(4):
        obs, *_ = env.step([0.8])
    a, w = joint(env, "hinge").qpos[0], joint(env, "hinge").qvel[0]
    assert abs(a) > 1e-3  # the pole has moved, so the check below is not about zeros
    # The pole rotates about world y by the hinge angle: q = (x, y, z, w) = (0, sin(a/2), 0, cos(a/2)).
    np.testing.assert_allclose(obs, [joint(env, "slider").qpos[0], math.sin(a / 2), math.cos(a / 2), w],
                               rtol=0, atol=1e-9)


def test_reacher_obs_encodes_angles_applies_scale_and_reads_the_goal_site():
    env = SpecEnv("reacher")
    obs, _ = env.reset(seed=4)
    obs, *_ = env.step([0.5, -0.5])
    j0, j1 = joint(env, "joint0"), joint(env, "joint1")
    goal = env.data.site("target").xpos[:2]
    q0, q1 = j0.qpos[0], j1.qpos[0]
    expected = [math.cos(q0), math.cos(q1), math.sin(q0), math.sin(q1),  # encode: sincos, as Reacher-v5
                0.1 * j0.qvel[0], 0.1 * j1.qvel[0], 5.0 * goal[0], 5.0 * goal[1]]
    np.testing.assert_allclose(obs, expected, rtol=0, atol=1e-12)
    # the goal is where the task put it: inside the 0.2 m disc, and not at the origin
    assert 0 < np.linalg.norm(goal) < 0.2


def test_module_function_equals_env_observation():
    env = SpecEnv("cartpole_imu")
    env.reset(seed=5)
    env.step([0.2])
    np.testing.assert_array_equal(observation(env.model, env.data, env.robot_spec), env.sim_state_observation())


def test_reset_options_set_the_state():
    env = SpecEnv("cartpole")
    obs, _ = env.reset(options={"qpos": [0.1, -0.05], "qvel": [0.2, 0.3]})
    np.testing.assert_array_equal(obs, [0.1, -0.05, 0.2, 0.3])


# ------------------------------------------------------------------------------ Gymnasium v5 parity
@pytest.mark.parametrize("ours, theirs, scale, steps", [
    ("liquid_control/CartPole-v0", "InvertedPendulum-v5", 3.0, 400),
    ("liquid_control/Reacher-v0", "Reacher-v5", 1.0, 200),
])
def test_trajectories_match_gymnasium_v5(ours, theirs, scale, steps):
    """Same seeds, same actions: the same MuJoCo state, reward, termination and truncation every step."""
    a, b = gym.make(ours), gym.make(theirs)
    a.reset(seed=11)
    b.reset(seed=11)
    rng = np.random.default_rng(0)
    episodes, total_a, total_b = 1, 0.0, 0.0
    for k in range(steps):
        act = rng.uniform(-1, 1, size=a.action_space.shape)
        ra, rb = a.step(act), b.step(act * scale)
        ua, ub = a.unwrapped, b.unwrapped
        np.testing.assert_array_equal(ua.data.qpos, ub.data.qpos, err_msg=f"step {k}")
        np.testing.assert_array_equal(ua.data.qvel, ub.data.qvel, err_msg=f"step {k}")
        assert ra[1] == rb[1] and ra[2] == rb[2] and ra[3] == rb[3], f"step {k}: {ra[1:4]} vs {rb[1:4]}"
        total_a += ra[1]
        total_b += rb[1]
        if ra[2] or ra[3]:
            a.reset()
            b.reset()
            episodes += 1
    assert episodes > 1  # random actions end episodes: resets (and their noise draws) are compared too
    assert total_a == total_b


def test_cartpole_observation_matches_gymnasium_obs():
    a, b = gym.make("liquid_control/CartPole-v0"), gym.make("InvertedPendulum-v5")
    oa, _ = a.reset(seed=7)
    ob, _ = b.reset(seed=7)
    np.testing.assert_array_equal(oa, ob)
    for _ in range(10):
        oa, *_ = a.step([0.5])
        ob, *_ = b.step([1.5])  # 0.5 * scale 3, exactly
        np.testing.assert_array_equal(oa, ob)


# ----------------------------------------------------------------------------------------- time
def test_per_step_dt_is_simulated_and_reported():
    env = SpecEnv("cartpole")
    env.reset(seed=0)
    t0 = env.data.time
    env.set_next_dt(0.1)
    _o, _r, _t, _tr, info = env.step([0.0])
    assert info["dt"] == pytest.approx(0.1) and env.data.time - t0 == pytest.approx(0.1)
    _o, _r, _t, _tr, info = env.step([0.0])  # one-shot: back to the control period
    assert info["dt"] == pytest.approx(0.04)
    # Not a whole number of timesteps: 2 x 0.02 s and one 0.003 s step, exactly 0.043 s.
    t0 = env.data.time
    env.set_next_dt(0.043)
    assert env.step([0.0])[4]["dt"] == 0.043 and env.data.time - t0 == pytest.approx(0.043, abs=1e-12)
    assert env.model.opt.timestep == 0.02  # restored after the short step
    fine = SpecEnv("cartpole", timestep=0.002)
    assert fine.frame_skip == 20 and fine.dt == pytest.approx(0.04)


def test_a_split_step_matches_finer_physics():
    """0.043 s as 2 x 0.02 + 0.003 lands close to the same 0.043 s simulated at a 1 ms timestep."""
    coarse, fine = SpecEnv("cartpole"), SpecEnv("cartpole", timestep=0.001)
    for env in (coarse, fine):
        env.reset(options={"qpos": [0.0, 0.1], "qvel": [0.0, 0.0]})
        env.set_next_dt(0.043)
        env.step([0.5])
    np.testing.assert_allclose(coarse.data.qpos, fine.data.qpos, atol=1e-4)
    assert coarse.data.time == pytest.approx(fine.data.time)
    with pytest.raises(ValueError):
        env.set_next_dt(float("nan"))


# ------------------------------------------------------------------------------------ vector envs
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_vector_envs(mode):
    envs = gym.make_vec("liquid_control/CartPoleNovel-v0", num_envs=2, vectorization_mode=mode)
    try:
        obs, _ = envs.reset(seed=[1, 2])
        assert obs.shape == (2, 2) and not np.array_equal(obs[0], obs[1])
        for _ in range(3):
            obs, reward, term, trunc, info = envs.step(np.zeros((2, 1), np.float32))
        assert obs.shape == (2, 2) and reward.shape == (2,)
        np.testing.assert_allclose(info["dt"], [0.04, 0.04])
    finally:
        envs.close()


# ------------------------------------------------------------------------------------- actions
def test_action_scale_limits_and_rate_limit():
    env = SpecEnv("cartpole")
    env.reset(seed=0)
    env.step([0.5])
    assert env.data.ctrl[0] == pytest.approx(1.5)
    env.step([7.0])  # beyond [-1, 1]: the spec's limits clip the command
    assert env.data.ctrl[0] == pytest.approx(3.0)
    data = spec_dict("cartpole")
    data["action"]["rate_limit"] = 10.0  # 0.4 per 0.04 s step
    slow = SpecEnv(parse_spec(data))
    slow.reset(seed=0)
    for expected in (0.4, 0.8, 1.2):
        slow.step([1.0])
        assert slow.data.ctrl[0] == pytest.approx(expected)
    for expected in (0.8, 0.4, 0.0, -0.4):  # the negative side is rate limited too
        slow.step([-1.0])
        assert slow.data.ctrl[0] == pytest.approx(expected)
    env.step([-7.0])
    assert env.data.ctrl[0] == pytest.approx(-3.0)


@pytest.mark.parametrize("bad", [[float("nan")], [float("inf")], [0.1, 0.2], [], "x", None])
def test_bad_actions_are_ignored_and_the_last_command_held(bad, caplog):
    env = SpecEnv("cartpole")
    env.reset(seed=0)
    env.step([0.5])
    with caplog.at_level(logging.WARNING, logger="liquid_control.sim"):
        obs, _r, _t, _tr, info = env.step(bad)
        env.step(bad)
    assert info.get("action_ignored") is True and env.actions_ignored == 2
    assert env.data.ctrl[0] == pytest.approx(1.5)
    assert np.isfinite(obs).all() and np.isfinite(env.data.qacc).all()
    warnings = [r for r in caplog.records if "ignored an action" in r.getMessage()]
    assert len(warnings) == 1  # throttled: two rejections, one warning


def test_multi_actuator_nan_element_is_rejected():
    env = SpecEnv("reacher")
    env.reset(seed=0)
    env.step([0.2, -0.2])
    _o, _r, _t, _tr, info = env.step([0.3, float("nan")])
    assert info["action_ignored"] and list(env.data.ctrl) == pytest.approx([0.2, -0.2])


# --------------------------------------------------------------------------------------- bad input
def test_mjcf_that_does_not_load(tmp_path: Path):
    bad = tmp_path / "broken.xml"
    bad.write_text("<mujoco><worldbody><body><joint type='nonsense'/></body></worldbody></mujoco>")
    data = spec_dict("cartpole")
    data["sim"]["mjcf"] = str(bad)
    with pytest.raises(SpecError, match="broken.xml does not load"):
        SpecEnv(parse_spec(data))
    data["sim"]["mjcf"] = str(tmp_path / "absent.xml")
    with pytest.raises(SpecError, match="absent.xml does not exist"):
        SpecEnv(parse_spec(data))


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["observation"][0].update(joints=["slider", "elbow"]), "no joint named 'elbow'"),
    (lambda d: d["action"].update(names=["thruster"]), "no actuator named 'thruster'"),
    (lambda d: d["observation"].append({"topic": "imu", "type": "sensor_msgs/Imu", "field": "angular_velocity",
                                        "sim": {"sensor": "gyro9"}}), "no sensor named 'gyro9'"),
    (lambda d: d["observation"].append({"topic": "goal", "type": "geometry_msgs/PointStamped", "field": "point",
                                        "sim": {"site": "nowhere"}}), "no site named 'nowhere'"),
    (lambda d: d["observation"].append({"topic": "imu", "type": "sensor_msgs/Imu", "field": "angular_velocity"}),
     "needs a `sim:` source"),
    (lambda d: d["sim"].update(task="juggling"), "unknown sim task 'juggling'"),
    (lambda d: d["sim"].update(task_options={"joint": "wrist"}), "no joint named 'wrist'"),
    (lambda d: d.update(rate_hz=30.0), "not a whole number of MuJoCo timesteps"),
])
def test_spec_naming_what_the_model_lacks(edit, message):
    data = spec_dict("cartpole")
    edit(data)
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace("`", ".")):
        SpecEnv(parse_spec(data))


def test_sensor_too_small_for_the_field():
    data = spec_dict("cartpole_imu")
    data["observation"][1]["sim"] = {"sensor": "imu_gyro"}  # orientation (w) from a 3-value gyro
    with pytest.raises(SpecError, match="sensor 'imu_gyro' has 3 values"):
        SpecEnv(parse_spec(data))


# ---------------------------------------------------------------------------------------- render
def test_png_renders_nonblank(tmp_path: Path, offscreen_gl):
    from PIL import Image

    from liquid_control.sim.render import record_episode, save_png, write_video

    env = gym.make("liquid_control/CartPole-v0", render_mode="rgb_array", width=160, height=120)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (120, 160, 3) and frame.dtype == np.uint8
    path = save_png(frame, tmp_path / "frame.png")
    back = np.asarray(Image.open(path))
    np.testing.assert_array_equal(back, frame)
    assert back.std() > 5  # not a blank image: the cart and pole are drawn
    frames = record_episode(env, steps=5, seed=0)
    gif = write_video(frames, tmp_path / "ep.gif", fps=25)
    assert Image.open(gif).n_frames == len(frames) >= 2
    env.close()


# ------------------------------------------------------------------------------ a new robot, no code
PENDULUM_XML = """<mujoco model="pendulum">
  <option timestep="0.005"/>
  <worldbody>
    <body name="arm" pos="0 0 1">
      <joint name="shoulder" type="hinge" axis="0 1 0" damping="0.1"/>
      <geom type="capsule" fromto="0 0 0 0 0 -0.5" size="0.03" mass="1"/>
      <site name="imu" pos="0 0 -0.25"/>
    </body>
  </worldbody>
  <actuator><motor name="shoulder_motor" joint="shoulder" gear="2"/></actuator>
  <sensor>
    <gyro name="gyro" site="imu"/>
    <framepos name="tip_pos" objtype="site" objname="imu"/>
  </sensor>
</mujoco>
"""

PENDULUM_SPEC = """robot: pendulum
rate_hz: 50.0
observation:
  - {topic: joint_states, type: sensor_msgs/JointState, field: position, joints: [shoulder]}
  - {topic: joint_states, type: sensor_msgs/JointState, field: effort, joints: [shoulder]}
  - {topic: imu, type: sensor_msgs/Imu, field: angular_velocity, axes: [y], sim: {sensor: gyro}}
  - {topic: probe, type: std_msgs/Float64MultiArray, field: data, index: [0, 2], sim: {sensor: tip_pos}}
action:
  topic: cmd_vel
  type: geometry_msgs/Twist
  names: [angular.y]
  scale: 2.0
  limits: {lower: -1.5, upper: 1.5}
sim:
  mjcf: pendulum.xml
  actuators: [shoulder_motor]   # a Twist command names axes; these are the actuators they drive
"""


def test_a_new_robot_is_an_mjcf_and_a_spec(tmp_path: Path):
    """No code: an MJCF and a spec YAML give a registered env (task 'none'), with effort, sensor and
    Float64MultiArray observations and a Twist command mapped onto actuators by sim.actuators."""
    (tmp_path / "pendulum.xml").write_text(PENDULUM_XML)
    (tmp_path / "pendulum.yaml").write_text(PENDULUM_SPEC)
    env = gym.make("liquid_control/Robot-v0", robot=str(tmp_path / "pendulum.yaml"))
    obs, _ = env.reset(seed=0)
    obs, reward, terminated, _tr, info = env.step([0.5])
    u = env.unwrapped
    assert u.data.ctrl[0] == 1.0 and reward == 0.0 and not terminated and info["dt"] == pytest.approx(0.02)
    shoulder = u.data.joint("shoulder")
    tip = u.data.site("imu").xpos
    np.testing.assert_allclose(obs, [shoulder.qpos[0], 2.0 * 1.0, shoulder.qvel[0], tip[0], tip[2]], atol=1e-12)
    env.step([5.0])  # 10 beyond the limit: clamped to 1.5
    assert u.data.ctrl[0] == 1.5
