"""quadruped, the shipped legged URDF robot (sim/quadruped.urdf, config/robots/quadruped.yaml): eight joints
named by the URDF on the position interface, a floating torso with an IMU, and joint zero = standing, so that
holding the zero command (the safe command) keeps it standing."""
from __future__ import annotations

import mujoco
import numpy as np
import pytest
import yaml

from liquid_control.core.errors import SpecError
from liquid_control.core.resources import robot_spec_path
from liquid_control.core.spec import load_spec, parse_spec
from liquid_control.sim.actuators import actuator_interface
from liquid_control.sim.env import SpecEnv

JOINTS = ["FL_hip", "FL_knee", "FR_hip", "FR_knee", "RL_hip", "RL_knee", "RR_hip", "RR_knee"]


@pytest.fixture(scope="module")
def env():
    e = SpecEnv("quadruped")
    yield e
    e.close()


def _termination(spec, term: str) -> dict:
    (item,) = [t for t in spec.sim["termination"] if t["term"] == term]
    return item


def test_spec_commands_the_urdf_joints_through_the_position_interface():
    spec = load_spec("quadruped")
    a = spec.action
    assert list(a.names) == JOINTS and a.interface == "position"
    assert (a.topic, a.msg_type) == ("position_controller/commands", "std_msgs/msg/Float64MultiArray")
    assert spec.rate_hz == 50.0 and list(a.safe) == [0.0] * 8  # safe = joint zero = the standing pose
    # Observed: the IMU's gyro rate and up axis, the commanded speed, the joints' positions and velocities.
    assert [(e.topic, e.field, tuple(e.names)) for e in spec.observation] == [
        ("imu", "angular_velocity", ("x", "y", "z")), ("imu_up", "data", ("0", "1", "2")),
        ("cmd_vel", "linear", ("x",)), ("joint_states", "position", tuple(JOINTS)),
        ("joint_states", "velocity", tuple(JOINTS))]
    assert spec.observation[2].msg_type == "geometry_msgs/msg/Twist"


def test_env_builds_from_the_urdf_with_position_actuators_and_an_imu(env):
    m = env.model
    assert [m.actuator(i).name for i in range(m.nu)] == JOINTS  # actuators named after the URDF's joints
    assert [actuator_interface(m, i) for i in range(m.nu)] == ["position"] * 8
    np.testing.assert_array_equal(m.actuator_ctrlrange, [[-0.9, 0.9]] * 8)  # the <ros2_control> min / max
    np.testing.assert_array_equal(m.actuator_biasprm[:, :3], [[0.0, -40.0, -1.0]] * 8)  # sim.drives kp, kd
    assert m.joint("floating_base").type == mujoco.mjtJoint.mjJNT_FREE and m.nq == 7 + 8
    for sensor in ("imu_gyro", "imu_up"):
        assert mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SENSOR, sensor) >= 0
    assert env.observation_space.shape == (3 + 3 + 1 + 8 + 8,) and env.action_space.shape == (8,)


def test_each_episode_draws_a_speed_the_policy_sees(env):
    speeds = []
    for seed in range(20):
        obs, _ = env.reset(seed=seed)
        speed = env.commands.values()["forward_speed"]
        assert 0.3 <= speed <= 0.7 and obs[6] == speed
        speeds.append(speed)
    assert len(set(speeds)) == 20 and min(speeds) < 0.4 and max(speeds) > 0.6
    obs, _ = env.reset(seed=0, options={"commands": {"forward_speed": 0.45}})
    assert obs[6] == 0.45 and env.commands.values() == {"forward_speed": 0.45}


def test_zero_command_keeps_it_standing(env):
    low = _termination(env.robot_spec, "body_height")["low"]
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(obs[3:6], [0.0, 0.0, 1.0], atol=0.05)  # level: up is the IMU's z
    for _ in range(100):  # 2 s
        obs, reward, terminated, truncated, info = env.step(np.zeros(8))
        assert not terminated, info
    torso = env.data.body("base_link")
    assert torso.xpos[2] > low + 0.1  # standing, well above the fall height
    np.testing.assert_allclose(obs[3:6], [0.0, 0.0, 1.0], atol=0.02)
    np.testing.assert_allclose(env.data.qpos[7:], 0.0, atol=0.1)  # the PD loops hold the standing pose (the knees sag a little under load)
    assert abs(env.data.qvel[0]) < 0.01  # and it does not walk: the tracking reward needs a gait
    assert info["reward_track_fine"] < 1e-6


def test_a_fall_ends_the_episode(env):
    env.reset(seed=0)
    qpos = env.data.qpos.copy()
    qpos[3:7] = [np.cos(0.5), np.sin(0.5), 0.0, 0.0]  # rolled 1 rad (about the footprint): beyond 0.8 rad
    env.reset(options={"qpos": qpos, "qvel": np.zeros(env.model.nv)})
    _, _, terminated, _, info = env.step(np.zeros(8))
    assert terminated and info["terminated_by"] == "tilt"


def test_the_video_camera_follows_the_torso(env):
    env.reset(seed=0)
    before = env.data.camera("side").xpos.copy()
    env.data.qpos[0] += 3.0  # the torso 3 m further along x
    mujoco.mj_forward(env.model, env.data)
    np.testing.assert_allclose(env.data.camera("side").xpos - before, [3.0, 0.0, 0.0], atol=1e-9)
    path = robot_spec_path("quadruped")
    doc = yaml.safe_load(path.read_text())
    doc["sim"]["cameras"]["side"]["track"] = "tail"
    with pytest.raises(SpecError, match="sim.cameras.side.track: the URDF has no link named 'tail'"):
        SpecEnv(parse_spec(doc, source=path))


def test_a_joint_the_urdf_lacks_is_named():
    path = robot_spec_path("quadruped")
    doc = yaml.safe_load(path.read_text())
    doc["action"]["names"][0] = "FL_ankle"
    with pytest.raises(SpecError, match="the URDF has no joint named 'FL_ankle'"):
        SpecEnv(parse_spec(doc, source=path))


# ---- the walking criterion (issue 13): mean forward velocity within 20% of the command over 10 s, no fall ----
def walk(model, seeds, speed: float | None = None) -> list[dict]:
    """Per episode (seed as `liquid-control eval` seeds it; the commanded speed drawn by the episode, or
    `speed`): steps, whether it fell, the commanded speed, the torso's mean x and y velocity over the
    episode, and whether it walked (10 s, no fall, |v - command| <= 20% of the command). The policy acts
    as in `liquid-control eval` (deterministic, clipped, the step time fed as dt)."""
    from liquid_control.core.policy import Policy
    from liquid_control.learning.envs import make_env

    spec = load_spec("quadruped")
    policy = Policy.load(model, spec=spec)
    env = make_env("quadruped")
    out = []
    for seed in seeds:
        obs, _ = env.reset(seed=seed, options=None if speed is None else {"commands": {"forward_speed": speed}})
        command = env.unwrapped.commands.values()["forward_speed"]
        policy.reset()
        torso = env.unwrapped.data.body("base_link")
        start, dt, t, n, done, fell = torso.xpos[:2].copy(), 1.0 / spec.rate_hz, 0.0, 0, False, False
        while not done:
            action = np.clip(np.asarray(policy.step(np.asarray(obs, np.float64), dt), np.float64), -1.0, 1.0)
            obs, _, fell, truncated, info = env.step(action.astype(np.float32))
            dt = float(info["dt"])
            t, n, done = t + dt, n + 1, bool(fell or truncated)
        vx, vy = (torso.xpos[:2] - start) / t
        out.append({"seed": seed, "steps": n, "fell": bool(fell), "command": command, "vx": float(vx),
                    "vy": float(vy),
                    "walked": bool(not fell and t >= 10.0 - 1e-9 and abs(vx - command) <= 0.2 * command)})
    env.close()
    return out


@pytest.mark.parametrize("speed", [0.35, 0.65])
def test_the_shipped_policy_walks_at_the_commanded_speed(speed):
    """policies/quadruped.onnx on eval's first seed, told two speeds: 10 s without a fall, within 20% of each,
    drifting sideways less than 0.15 m/s (python test/test_quadruped.py runs eval's 20 seeds with the speeds they
    draw)."""
    from liquid_control.core.resources import default_policy_path

    (row,) = walk(default_policy_path("quadruped"), [0], speed)
    assert row["walked"] and row["steps"] == 500, row
    assert abs(row["vy"]) < 0.15, row


if __name__ == "__main__":  # python test/test_quadruped.py [MODEL] [EPISODES]: the criterion over eval's seeds
    import sys

    from liquid_control.core.resources import default_policy_path

    rows = walk(sys.argv[1] if len(sys.argv) > 1 else default_policy_path("quadruped"),
                range(int(sys.argv[2]) if len(sys.argv) > 2 else 20))
    for r in rows:
        print(f"seed {r['seed']:2d}: {r['steps']} steps, fell {r['fell']}, command {r['command']:.3f} m/s, "
              f"vx {r['vx']:.3f} m/s, vy {r['vy']:.3f} m/s, walked {r['walked']}")
    errors = [abs(r["vx"] - r["command"]) / r["command"] for r in rows]
    print(f"walked {sum(r['walked'] for r in rows)}/{len(rows)} (|vx - command| <= 20% of the command over 10 s, "
          f"no fall); mean |vx - command| {100 * np.mean(errors):.1f}% of the command; "
          f"mean |vy| {np.mean([abs(r['vy']) for r in rows]):.3f} m/s")
