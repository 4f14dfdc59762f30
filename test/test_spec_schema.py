"""The robot spec is strict: every key known, every value typed and bounded, YAML bounded in size and
alias expansion. Each mistake is one SpecError line naming the key path; none reaches a traceback."""
import copy
import time

import pytest
import yaml

from liquid_control.core.errors import SpecError
from liquid_control.core.resources import robot_spec_path
from liquid_control.core.spec import load_spec, parse_spec
from liquid_control.core.yamlfile import parse_yaml

from ros_helpers import NodeProcess, console_script, ros_params

BASE = yaml.safe_load(robot_spec_path("cartpole").read_text())


def edited(path: str, value):
    """BASE with the key at dotted `path` (list indices as numbers) set to value (or removed: DELETE)."""
    data = copy.deepcopy(BASE)
    *parents, last = [int(k) if k.isdigit() else k for k in path.split(".")]
    node = data
    for k in parents:
        node = node[k]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return data


class _Delete:
    def __repr__(self) -> str:  # a stable test id (pytest-xdist workers must collect the same names)
        return "<deleted>"


DELETE = _Delete()
NAN, INF = float("nan"), float("inf")

MISTAKES = [
    # values that would switch safety off or change it silently
    ("safety.sensor_timeout", NAN, "safety.sensor_timeout: must be a finite number"),
    ("safety.sensor_timeout", INF, "safety.sensor_timeout: must be a finite number"),
    ("safety.sensor_timeout", 0, "safety.sensor_timeout: 0 is outside (0, 3600]"),
    ("safety.sensor_timeout", "0.2", "safety.sensor_timeout: expected a number, got '0.2'"),
    ("safety.soft_start", -1, "safety.soft_start: -1 is outside [0, 3600]"),
    ("safety.soft_start", NAN, "safety.soft_start: must be a finite number"),
    ("safety.safe_behaviour", "brake", "safety.safe_behaviour must be 'zero' or 'hold'"),
    ("safety.sensor_timout", 0.2, "safety: unknown key 'sensor_timout'; did you mean 'sensor_timeout'?"),
    ("rate_hz", True, "rate_hz: expected a number, got True"),
    ("rate_hz", "fast", "rate_hz: expected a number, got 'fast'"),
    ("rate_hz", NAN, "rate_hz: must be a finite number"),
    ("rate_hz", 0.5, "rate_hz: 0.5 is outside [1, 10000]"),
    ("action.limit", {"lower": -1.0, "upper": 1.0}, "action: unknown key 'limit'; did you mean 'limits'?"),
    ("action.ratelimit", 50.0, "action: unknown key 'ratelimit'; did you mean 'rate_limit'?"),
    ("action.limits.lowr", -1.0, "action.limits: unknown key 'lowr'; did you mean 'lower'?"),
    ("action.limits.lower", NAN, "action.limits.lower: must be a finite number"),
    ("action.limits.lower", 4.0, "action.limits: lower (4.0,) exceeds upper (3.0,)"),
    ("action.rate_limit", -5.0, "action.rate_limit: -5.0 is outside (0, inf]"),
    ("action.rate_limit", INF, "action.rate_limit: must be a finite number"),
    ("action.scale", [1.0, 2.0], "action.scale: expected 1 values, got 2"),
    ("action.scale", NAN, "action.scale: must be a finite number"),
    ("action.safe", 9.0, "action.safe (9.0,) lies outside the limits"),
    ("action.names", "slide", "action.names: expected a non-empty list, got 'slide'"),
    ("action.names", [], "action.names: expected a non-empty list"),
    ("action.topic", "bad topic!", "action.topic: 'bad topic!' is not a valid ROS 2 topic name"),
    ("action", [1, 2], "action: expected a mapping, got list"),
    ("action.type", DELETE, "action: missing key 'type'"),
    ("observation.0.joints", 3, "observation[0].joints: expected a non-empty list, got 3"),
    ("observation.0.joints", None, "observation[0].joints: expected a non-empty list, got None"),
    ("observation.0.joints", ["slider", "slider"], "observation[0].joints: names repeat"),
    ("observation.0.joints", ["slider", 7], "observation[0].joints[1]: expected a non-empty string, got 7"),
    ("observation.0.axes", ["x"], "JointState entries name their elements with 'joints', not 'axes'"),
    ("observation.0.scale", [1.0, NAN], "observation[0].scale[1]: must be a finite number"),
    ("observation.0.offset", INF, "observation[0].offset: must be a finite number"),
    ("observation.0.scal", 2.0, "observation[0]: unknown key 'scal'; did you mean 'scale'?"),
    ("observation.0.sim", {"sensr": "gyro"}, "observation[0].sim: unknown key 'sensr'; did you mean 'sensor'?"),
    ("observation.0", "joint_states", "observation[0]: expected a mapping, got str"),
    ("observation", {"topic": "x"}, "observation: expected a non-empty list of entries"),
    ("observation", [], "observation: expected a non-empty list of entries"),
    ("robot", "../../x/evil_spec", "robot: expected a name of letters, digits and '_'"),
    ("robot", 42, "robot: expected a name of letters, digits and '_', got 42"),
    ("safety", [0.2], "safety: expected a mapping, got list"),
    ("sim.max_episode_steps", "long", "sim.max_episode_steps: expected a number"),
    ("sim.push_force", -1.0, "sim.push_force: -1.0 is outside [0, inf]"),
    ("sim.mjfc", "cartpole.xml", "sim: unknown key 'mjfc'; did you mean 'mjcf'?"),
    ("sim.task_options", [1], "sim.task_options: expected a mapping"),
    ("extra", 1, "spec: unknown key 'extra'"),
]


@pytest.mark.parametrize("path, value, message", MISTAKES, ids=[f"{p}={v!r}"[:60] for p, v, _ in MISTAKES])
def test_each_mistake_is_one_line_naming_the_key(path, value, message):
    with pytest.raises(SpecError) as err:
        parse_spec(edited(path, value))
    text = str(err.value)
    assert message in text and "\n" not in text


def test_the_shipped_specs_are_accepted_unchanged():
    for robot in ("cartpole", "cartpole_novel", "cartpole_imu", "reacher"):
        spec = load_spec(robot)
        assert spec.safety.sensor_timeout > 0 and spec.rate_hz >= 1


def test_spec_file_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("robot: cartpole\nrate_hz: [25\n")
    with pytest.raises(SpecError, match=r"robot spec .*bad\.yaml: not valid YAML \(line 3, column 1\)"):
        load_spec(bad)
    nan = tmp_path / "nan.yaml"
    nan.write_text(robot_spec_path("cartpole").read_text().replace("sensor_timeout: 0.2", "sensor_timeout: .nan"))
    with pytest.raises(SpecError, match=r"nan\.yaml: safety\.sensor_timeout: must be a finite number"):
        load_spec(nan)
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(SpecError, match="is not a regular file"):
        load_spec(tmp_path / "dir.yaml")
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (1 << 20) + "\n")
    with pytest.raises(SpecError, match="larger than 1048576 bytes"):
        load_spec(big)


def test_alias_bomb_is_refused_at_once():
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    start = time.perf_counter()
    with pytest.raises(SpecError, match="more than 100000 YAML nodes once aliases are expanded"):
        parse_yaml("\n".join(lines), "bomb.yaml")
    assert time.perf_counter() - start < 2.0
    with pytest.raises(SpecError, match="more than 100000 YAML nodes"):  # a recursive anchor
        parse_yaml("a: &a [*a]", "loop.yaml")
    assert parse_yaml("a: &x [1, 2]\nb: *x", "ok.yaml") == {"a": [1, 2], "b": [1, 2]}


def test_a_node_on_a_spec_with_nan_timeout_does_not_start(tmp_path):
    spec = tmp_path / "cartpole_nan.yaml"
    spec.write_text(robot_spec_path("cartpole").read_text().replace("sensor_timeout: 0.2", "sensor_timeout: .nan"))
    argv = console_script("controller", *ros_params(robot=str(spec), autostart=True))
    with NodeProcess(argv, name="controller", log_dir=tmp_path) as node:
        assert node.wait_exit(30.0) == 1
        out = node.output()
        assert "safety.sensor_timeout: must be a finite number" in out and "Traceback" not in out
