"""Task terms (liquid_control/sim/terms.py): each term's value on a known MuJoCo state, the parser's errors,
term tasks through the env, and `liquid-control info --robot`."""
from __future__ import annotations

import math
import subprocess
from pathlib import Path
import sys

import mujoco
import numpy as np
import pytest
import yaml

from liquid_control.core.errors import SpecError
from liquid_control.core.resources import share_dir
from liquid_control.core.spec import parse_spec
from liquid_control.sim.env import SpecEnv
from liquid_control.sim.tasks import TermTask, task_terms
from liquid_control.sim.term_list import bind, parse_terms
from liquid_control.sim.terms import TERMS

# A planar body (slide x, slide z, hinge y) with a limited elbow, a tip, and a goal on two slides.
MJCF = """
<mujoco>
  <compiler angle="radian"/>
  <worldbody>
    <geom name="floor" type="plane" size="5 5 0.1"/>
    <body name="base" pos="0 0 1">
      <joint name="x" type="slide" axis="1 0 0"/>
      <joint name="z" type="slide" axis="0 0 1"/>
      <joint name="pitch" type="hinge" axis="0 1 0"/>
      <geom size="0.1" mass="1"/>
      <body name="arm" pos="0 0 0">
        <joint name="elbow" type="hinge" axis="0 1 0" range="-1 1" limited="true"/>
        <geom size="0.05" mass="0.1"/>
        <body name="tip" pos="0.5 0 0"><geom size="0.01" mass="0.01"/></body>
      </body>
    </body>
    <body name="goal" pos="0 0 0">
      <joint name="gx" type="slide" axis="1 0 0"/>
      <joint name="gy" type="slide" axis="0 1 0"/>
      <geom size="0.01" mass="0.01" contype="0" conaffinity="0"/>
    </body>
  </worldbody>
</mujoco>
"""
QPOS = {"x": 0, "z": 1, "pitch": 2, "elbow": 3, "gx": 4, "gy": 5}


@pytest.fixture
def world():
    model = mujoco.MjModel.from_xml_string(MJCF)
    return model, mujoco.MjData(model)


def term(world, kind, item):
    (spec,) = parse_terms(kind, [item], f"sim.{kind}")
    return bind(spec, *world)


def put(world, **qpos):
    model, data = world
    for name, value in qpos.items():
        data.qpos[QPOS[name]] = value
    mujoco.mj_forward(model, data)


NO_COMMAND = np.zeros(2)


# ------------------------------------------------------------------------------------------- rewards
def test_alive_is_one_until_terminated(world):
    t = term(world, "reward", {"term": "alive"})
    assert t.value(NO_COMMAND, 0.1, False) == 1.0 and t.value(NO_COMMAND, 0.1, True) == 0.0


def test_forward_velocity_of_a_joint_differences_its_position(world):
    t = term(world, "reward", {"term": "forward_velocity", "joint": "x"})
    put(world, x=1.0)
    t.start(NO_COMMAND)
    put(world, x=1.3)
    assert t.value(NO_COMMAND, 0.1, False) == pytest.approx(3.0)
    # the next step differences from the position the last one read
    put(world, x=1.2)
    assert t.value(NO_COMMAND, 0.05, False) == pytest.approx(-2.0)


def test_forward_velocity_of_a_body_reads_its_position_axis(world):
    t = term(world, "reward", {"term": "forward_velocity", "body": "base", "axis": "z"})
    put(world)
    t.start(NO_COMMAND)  # base at z = 1
    put(world, z=0.5)  # base at z = 1.5
    assert t.value(NO_COMMAND, 0.25, False) == pytest.approx(2.0)


def test_forward_velocity_needs_one_source(world):
    with pytest.raises(SpecError, match=r"sim.reward\[0\] \(forward_velocity\): give one of 'joint' or 'body'"):
        term(world, "reward", {"term": "forward_velocity"})


def test_track_velocity_scores_one_at_the_command(world):
    t = term(world, "reward", {"term": "track_velocity", "joint": "x", "target": 2.0, "std": 0.5})
    put(world, x=0.0)
    t.start(NO_COMMAND)
    put(world, x=0.2)
    assert t.value(NO_COMMAND, 0.1, False) == pytest.approx(1.0)
    put(world, x=0.35)  # 1.5 m/s: 0.5 m/s (one std) short
    assert t.value(NO_COMMAND, 0.1, False) == pytest.approx(math.exp(-1.0))


def test_contacts_count_and_end_the_episode(world):
    count = term(world, "reward", {"term": "contact_count", "bodies": ["base"]})
    fall = term(world, "termination", {"term": "body_contact", "bodies": ["base"]})
    light = term(world, "termination", {"term": "body_contact", "bodies": ["base"], "threshold": 1e9})
    put(world, z=0.0)  # the base hangs 1 m above the floor
    assert count.value(NO_COMMAND, 0.1, False) == 0.0 and not fall.fired()
    put(world, z=-0.95)  # its 0.1 m sphere 5 cm into the floor: a hard contact
    assert count.value(NO_COMMAND, 0.1, False) >= 1.0 and fall.fired() and not light.fired()
    tip = term(world, "termination", {"term": "body_contact", "bodies": ["tip", "goal"]})
    assert not tip.fired()  # other bodies' contacts do not count


def test_action_l2_and_action_rate_l2(world):
    l2 = term(world, "reward", {"term": "action_l2"})
    assert l2.value(np.array([1.0, -2.0]), 0.1, False) == 5.0
    rate = term(world, "reward", {"term": "action_rate_l2"})
    rate.start(np.array([1.0, 0.0]))  # the command held at reset
    assert rate.value(np.array([2.0, 0.5]), 0.1, False) == pytest.approx(1.25)
    assert rate.value(np.array([2.0, 0.5]), 0.1, False) == 0.0
    assert rate.value(np.array([0.0, 0.5]), 0.1, False) == 4.0


def test_joint_position_l2_against_targets(world):
    t = term(world, "reward", {"term": "joint_position_l2", "joints": ["pitch", "elbow"], "target": [0.1, -0.2]})
    put(world, pitch=0.4, elbow=0.2)
    assert t.value(NO_COMMAND, 0.1, False) == pytest.approx(0.3 ** 2 + 0.4 ** 2)
    with pytest.raises(SpecError, match="target: expected 2 values, got 3"):
        term(world, "reward", {"term": "joint_position_l2", "joints": ["pitch", "elbow"], "target": [0, 0, 0]})


def test_body_distance_end_effector_to_goal(world):
    t = term(world, "reward", {"term": "body_distance", "body": "tip", "goal": "goal"})
    put(world, gx=0.5, gy=0.3)  # tip at (0.5, 0, 1), goal at (0.5, 0.3, 0)
    assert t.value(NO_COMMAND, 0.1, False) == pytest.approx(math.hypot(0.3, 1.0))


def test_joint_limit_counts_how_far_beyond_the_range(world):
    t = term(world, "reward", {"term": "joint_limit"})  # every limited joint: the elbow, range [-1, 1]
    put(world, elbow=0.5)
    assert t.value(NO_COMMAND, 0.1, False) == 0.0
    put(world, elbow=1.25)
    assert t.value(NO_COMMAND, 0.1, False) == pytest.approx(0.25)
    put(world, elbow=-1.5)
    assert t.value(NO_COMMAND, 0.1, False) == pytest.approx(0.5)
    with pytest.raises(SpecError, match=r"joints \['pitch'\] have no range"):
        term(world, "reward", {"term": "joint_limit", "joints": ["pitch"]})


def test_upright_orientation_and_height(world):
    up = term(world, "reward", {"term": "upright", "body": "base"})
    level = term(world, "reward", {"term": "orientation_l2", "body": "base"})
    height = term(world, "reward", {"term": "height_l2", "body": "base", "target": 0.8})
    put(world, pitch=0.3, z=0.1)
    assert up.value(NO_COMMAND, 0.1, False) == pytest.approx(math.cos(0.3))
    assert level.value(NO_COMMAND, 0.1, False) == pytest.approx(math.sin(0.3) ** 2)
    assert height.value(NO_COMMAND, 0.1, False) == pytest.approx(0.3 ** 2)


# --------------------------------------------------------------------------------------- terminations
def test_joint_range_open_closed_velocity_and_nan(world):
    model, data = world
    open_ = term(world, "termination", {"term": "joint_range", "joints": ["pitch"], "low": -0.2, "high": 0.2})
    closed = term(world, "termination", {"term": "joint_range", "joints": ["pitch"], "low": -0.2, "high": 0.2,
                                         "inclusive": True})
    put(world, pitch=0.1)
    assert not open_.fired() and not closed.fired()
    put(world, pitch=0.2)  # on the bound: outside an open range, inside a closed one
    assert open_.fired() and not closed.fired()
    put(world, pitch=-0.3)
    assert open_.fired() and closed.fired()
    data.qpos[QPOS["pitch"]] = math.nan
    assert open_.fired() and closed.fired()
    fast = term(world, "termination", {"term": "joint_range", "joints": ["x", "elbow"], "field": "velocity",
                                       "high": 10.0})
    data.qvel[:] = 0.0
    assert not fast.fired()
    data.qvel[QPOS["elbow"]] = 11.0
    assert fast.fired()


def test_body_height_and_tilt(world):
    low = term(world, "termination", {"term": "body_height", "body": "base", "low": 0.7})
    tilt = term(world, "termination", {"term": "tilt", "body": "base", "max_angle": 0.5})
    put(world, z=0.0, pitch=0.4)
    assert not low.fired() and not tilt.fired()
    put(world, z=-0.4, pitch=0.6)
    assert low.fired() and tilt.fired()


# ---------------------------------------------------------------------------------------------- resets
def reset_with(world, items, seed=3):
    model, _data = world
    rng = np.random.default_rng(seed)
    qpos, qvel = np.zeros(model.nq), np.zeros(model.nv)
    for spec in parse_terms("reset", items, "sim.reset"):
        bind(spec, *world).apply(rng, qpos, qvel)
    return qpos, qvel


def test_noise_resets_draw_what_gymnasium_draws(world):
    model, _ = world
    qpos, _ = reset_with(world, [{"term": "qpos_uniform", "scale": 0.1}])
    np.testing.assert_array_equal(qpos, np.random.default_rng(3).uniform(low=-0.1, high=0.1, size=model.nq))
    _, qvel = reset_with(world, [{"term": "qvel_uniform", "scale": 0.2}])
    np.testing.assert_array_equal(qvel, np.random.default_rng(3).uniform(low=-0.2, high=0.2, size=model.nv))
    _, qvel = reset_with(world, [{"term": "qvel_normal", "scale": 0.1}])
    np.testing.assert_array_equal(qvel, 0.1 * np.random.default_rng(3).standard_normal(model.nv))


def test_goal_in_disc_and_zero_velocity(world):
    for seed in range(20):
        qpos, _ = reset_with(world, [{"term": "goal_in_disc", "joints": ["gx", "gy"], "radius": 0.2}], seed)
        assert 0 < math.hypot(qpos[4], qpos[5]) < 0.2 and not qpos[:4].any()
    stop = term(world, "reset", {"term": "zero_velocity", "joints": ["gy"]})
    qvel = np.ones(6)
    stop.apply(None, np.zeros(6), qvel)
    np.testing.assert_array_equal(qvel, [1, 1, 1, 1, 1, 0])
    with pytest.raises(SpecError, match=r"joints: expected 2 joints"):
        term(world, "reset", {"term": "goal_in_disc", "joints": ["gx"], "radius": 0.2})


def test_every_term_is_documented_and_tested():
    for kind, terms in TERMS.items():
        for name, cls in terms.items():
            assert cls.__doc__ and all(a.doc for a in cls.ARGS.values()), (kind, name)
            assert f'"term": "{name}"' in open(__file__).read(), f"no test builds the {kind} term {name!r}"


# -------------------------------------------------------------------------------------------- parsing
@pytest.mark.parametrize("kind, item, message", [
    ("reward", {"term": "forward_velocty", "joint": "x"}, "sim.reward[0]: unknown reward term 'forward_velocty'; "
                                                          "did you mean 'forward_velocity'?"),
    ("reward", {"term": "body_distance", "body": "tip", "gaol": "goal"},
     "sim.reward[0] (body_distance): unknown key 'gaol'; did you mean 'goal'?"),
    ("reward", {"term": "body_distance", "body": "tip"}, "sim.reward[0] (body_distance): missing argument 'goal'"),
    ("reward", {"term": "action_l2", "weight": "big"}, "sim.reward[0] (action_l2).weight: expected a number"),
    ("reward", {"term": "forward_velocity", "body": "base", "axis": "w"},
     "sim.reward[0] (forward_velocity).axis: expected one of ['x', 'y', 'z'], got 'w'"),
    ("termination", {"term": "tilt", "body": "base", "max_angle": 0.5, "weight": 1.0},
     "sim.termination[0] (tilt): unknown key 'weight'"),
    ("termination", {"term": "joint_range", "joints": ["x"], "inclusive": "yes"},
     "sim.termination[0] (joint_range).inclusive: expected true or false"),
    ("termination", {"term": "joint_range", "joints": "x"}, "sim.termination[0] (joint_range).joints: expected a "
                                                            "non-empty list"),
    ("reset", {"term": "qpos_uniform", "scale": -1}, "sim.reset[0] (qpos_uniform).scale: -1 is outside [0, inf]"),
    ("reset", ["qpos_uniform"], "sim.reset[0]: expected a mapping with a 'term' key"),
])
def test_unknown_terms_and_wrong_arguments_are_one_line_spec_errors(kind, item, message):
    with pytest.raises(SpecError) as err:
        parse_terms(kind, [item], f"sim.{kind}")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_two_terms_of_one_name_need_names():
    items = [{"term": "action_l2"}, {"term": "action_l2", "weight": -1.0}]
    with pytest.raises(SpecError, match="two reward terms named 'action_l2'"):
        parse_terms("reward", items, "sim.reward")
    assert [t.name for t in parse_terms("reward", [items[0], {**items[1], "name": "ctrl"}], "sim.reward")] == \
        ["action_l2", "ctrl"]


@pytest.mark.parametrize("item, message", [
    ({"term": "body_distance", "body": "hand", "goal": "goal"}, "sim.reward[0] (body_distance): the MuJoCo model "
                                                                "has no body named 'hand'"),
    ({"term": "joint_position_l2", "joints": ["knee"]}, "sim.reward[0] (joint_position_l2): the MuJoCo model has "
                                                        "no joint named 'knee'"),
])
def test_names_the_model_lacks_are_spec_errors_naming_the_term(world, item, message):
    with pytest.raises(SpecError) as err:
        term(world, "reward", item)
    assert message in str(err.value)


# ----------------------------------------------------------------------------------- tasks in the env
def cartpole_with(**sim) -> dict:
    data = yaml.safe_load((share_dir() / "config" / "robots" / "cartpole.yaml").read_text())
    data["sim"]["mjcf"] = str(share_dir() / "sim" / "cartpole.xml")
    del data["sim"]["task"]
    data["sim"].update(sim)
    return data


def test_a_term_task_in_the_spec_drives_the_env():
    data = cartpole_with(reward=[{"term": "alive", "weight": 2.0},
                                 {"term": "action_l2", "weight": -0.5, "name": "ctrl"},
                                 {"term": "action_rate_l2", "weight": -1.0, "name": "rate"}],
                         termination=[{"term": "joint_range", "joints": ["slider"], "low": -0.05, "high": 0.05}])
    env = SpecEnv(parse_spec(data))
    assert isinstance(env.task, TermTask)
    env.reset(seed=0)
    _obs, reward, terminated, _tr, info = env.step([0.5])  # command 1.5 (scale 3)
    assert info["reward_alive"] == 2.0 and info["reward_ctrl"] == -0.5 * 1.5 ** 2
    assert info["reward_rate"] == -(1.5 ** 2) and reward == 2.0 - 0.5 * 2.25 - 2.25 and not terminated
    for _ in range(50):
        _obs, reward, terminated, _tr, info = env.step([1.0])
        if terminated:
            break
    assert terminated and info["terminated_by"] == "joint_range" and info["reward_alive"] == 0.0


def test_body_velocity_differences_positions_as_mujoco_leaves_them_after_each_step():
    """The reacher's observation refreshes body positions after each step (it reads a site); the term still
    differences the positions mj_step left (start of its last substep), as Gymnasium's Ant does."""
    data = yaml.safe_load((share_dir() / "config" / "robots" / "reacher.yaml").read_text())
    data["sim"]["mjcf"] = str(share_dir() / "sim" / "reacher.xml")
    del data["sim"]["task"]
    data["sim"]["reward"] = [{"term": "forward_velocity", "body": "fingertip", "axis": "y"}]
    env = SpecEnv(parse_spec(data))
    assert env.reader.needs_kinematics
    env.reset(seed=0)
    raw = mujoco.MjData(env.model)
    raw.qpos[:], raw.qvel[:] = env.data.qpos, env.data.qvel
    mujoco.mj_forward(env.model, raw)
    tip = env.model.body("fingertip").id
    for action in np.random.default_rng(0).uniform(-1, 1, size=(20, 2)):
        before = raw.xpos[tip, 1]
        raw.ctrl[:] = action
        mujoco.mj_step(env.model, raw, env.frame_skip)
        _obs, reward, *_ = env.step(action)
        assert reward == pytest.approx((raw.xpos[tip, 1] - before) / env.dt, rel=1e-12, abs=1e-12)


def test_no_reset_terms_means_the_initial_state():
    env = SpecEnv(parse_spec(cartpole_with(reward=[{"term": "alive"}])))
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, [0, 0, 0, 0])


def test_a_task_name_and_terms_together_are_refused():
    data = cartpole_with(task="inverted_pendulum", reward=[{"term": "alive"}])
    with pytest.raises(SpecError, match="give either task 'inverted_pendulum' or reward/termination/reset terms"):
        SpecEnv(parse_spec(data))


def test_an_unknown_task_name_suggests_the_nearest():
    with pytest.raises(SpecError, match="unknown sim task 'reachr'; did you mean 'reacher'"):
        task_terms({"task": "reachr"})


def test_presets_are_term_lists_and_none_is_python():
    terms = task_terms({"task": "reacher", "task_options": {"goal_radius": 0.1}})
    assert [t.term for t in terms["reset"]] == ["qpos_uniform", "goal_in_disc", "qvel_uniform", "zero_velocity"]
    assert terms["reset"][1].args["radius"] == 0.1
    assert task_terms({}) is None and task_terms({"task": "none"}) is None
    with pytest.raises(SpecError, match="sim.task_options for task 'reacher'"):
        task_terms({"task": "reacher", "task_options": {"radius": 0.1}})


def test_info_robot_prints_the_terms():
    out = subprocess.run([sys.executable, "-m", "liquid_control.cli", "info", "--robot", "reacher"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for expected in ("8 observations -> 2 actions", "preset 'reacher' as terms",
                     "-1 x body_distance(body=fingertip, goal=target) (dist)", "-1 x action_l2() (ctrl)",
                     "goal_in_disc(joints=[target_x, target_y], radius=0.2)", "termination  (none)"):
        assert expected in out.stdout, (expected, out.stdout)
    out = subprocess.run([sys.executable, "-m", "liquid_control.cli", "info"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and "give a policy artifact (MODEL) or --robot NAME" in out.stderr


def test_info_robot_shows_observation_clips():
    out = subprocess.run([sys.executable, "-m", "liquid_control.cli", "info", "--robot", "hopper"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "4  JointState.position[foot_joint]\n" in out.stdout
    assert "5  JointState.velocity[rootx]  clip [-10, 10]" in out.stdout
    assert "effort_controller/commands (std_msgs/msg/Float64MultiArray): the model's actuators" in out.stdout


def test_info_names_the_command_interface():
    out = subprocess.run([sys.executable, "-m", "liquid_control.cli", "info", "--robot", "arm3"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "position_controller/commands (std_msgs/msg/Float64MultiArray): ros2_control position interface" \
        in out.stdout
    out = subprocess.run([sys.executable, "-m", "liquid_control.cli", "info", "policies/arm3.onnx"],
                         capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    assert "-> std_msgs/msg/Float64MultiArray (position interface)" in out.stdout


def test_info_robot_shows_the_safety_settings_and_a_topic_s_own_timeout():
    from liquid_control.cli.cmd_info import describe_robot

    rows = dict(r for r in describe_robot("quadruped") if r[0])
    assert rows["safety"] == "sensors stale after 0.1 s, cmd_vel after 0.5 s; soft start 0.5 s; safe behaviour hold"
    assert dict(r for r in describe_robot("cartpole") if r[0])["safety"].startswith("sensors stale after ")


def test_term_lists_take_no_task_options():
    with pytest.raises(SpecError, match="sim.task_options: options of a named task"):
        task_terms({"reward": [{"term": "alive"}], "task_options": {"joint": "hinge"}})


def test_info_robot_names_a_python_task(tmp_path):
    data = cartpole_with()
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(data))
    out = subprocess.run([sys.executable, "-m", "liquid_control.cli", "info", "--robot", str(path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "none (Python: Zero reward, no termination, uniform reset noise" in out.stdout
