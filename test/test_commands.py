"""Commands drawn per episode (sim/commands.py): spec checks, the draw, the observation and the reward term
that read them, and the sim bridge's message. Uses the quadruped's spec (forward_speed on /cmd_vel) and
the hopper's (no commands) for what must not change."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml

from liquid_control.core.errors import SpecError
from liquid_control.core.resources import robot_spec_path
from liquid_control.core.spec import parse_spec
from liquid_control.sim.commands import parse_commands, parse_settings
from liquid_control.sim.env import SpecEnv
from liquid_control.sim.observe import TopicReader


@pytest.fixture(scope="module")
def quadruped_doc():
    path = robot_spec_path("quadruped")
    return path, yaml.safe_load(path.read_text())


def _env(quadruped_doc, edit):
    path, doc = quadruped_doc
    doc = copy.deepcopy(doc)
    edit(doc)
    return SpecEnv(parse_spec(doc, source=path))


@pytest.mark.parametrize("raw, message", [
    ([0.3, 0.7], "expected a mapping of name: \\[low, high\\]"),
    ({"speed": 0.5}, "sim.commands.speed: expected \\[low, high\\]"),
    ({"speed": [0.3]}, "expected \\[low, high\\]"),
    ({"speed": [0.7, 0.3]}, "low 0.7 is above high 0.3"),
    ({"speed": [0.3, "fast"]}, "sim.commands.speed\\[1\\]"),
    ({"speed": [0.3, float("nan")]}, "sim.commands.speed\\[1\\]"),
])
def test_bad_command_ranges_are_one_line_spec_errors(raw, message):
    with pytest.raises(SpecError, match=message) as info:
        parse_commands({"commands": raw})
    assert "\n" not in str(info.value)


def test_settings_parse_and_bad_ones_are_named():
    assert parse_settings("forward_speed=0.6, turn=-0.1") == {"forward_speed": 0.6, "turn": -0.1}
    assert parse_settings("") == {}
    for bad in ("forward_speed", "forward_speed=fast", "=0.5", "forward_speed=nan"):
        with pytest.raises(SpecError, match="expected NAME=VALUE"):
            parse_settings(bad)


def test_draws_are_in_range_per_seed_and_set_by_name(quadruped_doc):
    env = _env(quadruped_doc, lambda d: None)
    draws = []
    for seed in (0, 1, 0):
        env.reset(seed=seed)
        draws.append(env.commands.values()["forward_speed"])
    assert draws[0] == draws[2] != draws[1] and all(0.3 <= v <= 0.7 for v in draws)
    obs, _ = env.reset(seed=5, options={"commands": {"forward_speed": 0.61}})
    assert obs[6] == 0.61 and env.data.userdata[0] == 0.0  # slot 0 stays zero
    with pytest.raises(SpecError, match="no command named 'turn'"):
        env.reset(options={"commands": {"turn": 0.1}})
    env.close()


def test_a_robot_without_commands_draws_nothing():
    """Commands add no draw: the reset stream of every other robot (hopper = Hopper-v5) is unchanged."""
    env = SpecEnv("hopper")
    env.reset(seed=3)
    after = env.np_random.uniform()
    rng = np.random.default_rng(3)  # what the reset terms alone consume: qpos then qvel noise
    rng.uniform(size=env.model.nq)
    rng.uniform(size=env.model.nv)
    assert after == rng.uniform() and env.model.nuserdata == 0 and env.commands.values() == {}
    env.close()


def test_track_velocity_reads_the_command(quadruped_doc):
    """The command-driven term scores like a fixed target of the same value."""
    def fixed(doc):
        for item in doc["sim"]["reward"]:
            if item["term"] == "track_velocity" and "command" in item:
                del item["command"]
                item["target"] = 0.42
    a, b = _env(quadruped_doc, lambda d: None), _env(quadruped_doc, fixed)
    a.reset(seed=2, options={"commands": {"forward_speed": 0.42}})
    b.reset(seed=2)
    action = np.full(8, 0.3, dtype=np.float32)
    for _ in range(20):
        _, ra, *_, ia = a.step(action)
        _, rb, *_, ib = b.step(action)
        assert ia["reward_track"] == ib["reward_track"] and ia["reward_track_fine"] == ib["reward_track_fine"]
        assert ra == rb
    a.close()
    b.close()


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["observation"][2]["sim"].update(command="turn"), "no command named 'turn'"),
    (lambda d: d["observation"][2].update(axes=["x", "y"]), "a command is one axis of a field"),
    (lambda d: d["sim"]["reward"][0].update(command="turn"), "no command named 'turn'"),
    (lambda d: d["sim"]["reward"][0].update(target=0.5), "give one of 'target' or 'command'"),
    (lambda d: d["sim"]["reward"][0].pop("command"), "give one of 'target' or 'command'"),
])
def test_mistakes_name_the_command(quadruped_doc, edit, message):
    with pytest.raises(SpecError, match=message) as info:
        _env(quadruped_doc, edit)
    assert "\n" not in str(info.value)


def test_the_bridge_publishes_the_command_as_the_whole_twist(quadruped_doc):
    """The sim bridge's /cmd_vel message: linear.x = the episode's command, every other axis 0."""
    env = _env(quadruped_doc, lambda d: None)
    env.reset(seed=0, options={"commands": {"forward_speed": 0.55}})
    values = TopicReader(env.model, env.data, env.robot_spec, "cmd_vel").read()
    assert {k: v.tolist() for k, v in values.items()} == {"linear": [0.55, 0.0, 0.0]}
    env.close()


def test_model_editing_on_a_mujoco_without_mjspec_is_one_line(monkeypatch):
    """The declared floor (mujoco 3.1.2) predates MjSpec: a URDF robot or a spec with commands says so."""
    import mujoco

    monkeypatch.delattr(mujoco, "MjSpec")
    for robot, what in (("quadruped", "a URDF robot"), ("cartpole", None)):
        if what is None:
            SpecEnv(robot).close()  # an MJCF robot without commands needs no MjSpec
            continue
        with pytest.raises(SpecError, match=f"{what} needs mujoco 3.2 or later"):
            SpecEnv(robot)


def test_an_mjcf_robot_takes_commands_too(monkeypatch):
    """The MJCF path (hopper.xml) compiled with room for a command: drawn, observed, and without MjSpec refused."""
    import mujoco

    path = robot_spec_path("hopper")
    doc = yaml.safe_load(path.read_text())
    doc["sim"]["commands"] = {"speed": [1.0, 2.0]}
    doc["observation"].append({"topic": "cmd_vel", "type": "geometry_msgs/msg/Twist", "field": "linear",
                               "axes": ["x"], "sim": {"command": "speed"}})
    env = SpecEnv(parse_spec(doc, source=path))
    obs, _ = env.reset(seed=0)
    assert 1.0 <= obs[-1] <= 2.0 and obs[-1] == env.commands.values()["speed"]
    env.close()
    monkeypatch.delattr(mujoco, "MjSpec")
    with pytest.raises(SpecError, match="a spec with sim.commands needs mujoco 3.2 or later"):
        SpecEnv(parse_spec(doc, source=path))
