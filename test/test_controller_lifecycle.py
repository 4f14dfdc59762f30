"""Lifecycle transitions, configure failures, parameter validation and a non-finite policy, against the
controller node in its own process (started as `controller`, the console script `ros2 run` uses)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from controller_fixtures import COMMAND_TOPIC, diag_values, joint_state, make_artifact, parse_debug
from ros_helpers import (NodeProcess, Probe, change_state, console_script, lifecycle_state, ros_params,
                         set_parameter)

NODE = "liquid_controller"


@pytest.fixture
def probe():
    p = Probe("lifecycle_probe")
    yield p
    p.close()


def _commands(probe: Probe):
    from std_msgs.msg import Float64MultiArray

    return probe.collect(Float64MultiArray, COMMAND_TOPIC)


def _assert_silent(probe: Probe, cmds, seconds: float) -> None:
    """No command arrives for `seconds` (a bounded wait for an absence)."""
    n = len(cmds)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert len(cmds) == n, f"a command arrived: {cmds.last().data.tolist()}"
        time.sleep(0.01)


def test_lifecycle_transitions(tmp_path, probe):
    from diagnostic_msgs.msg import DiagnosticArray

    model = make_artifact(tmp_path / "m.onnx")
    cmds = _commands(probe)
    diags = probe.collect(DiagnosticArray, "/diagnostics")
    argv = console_script("controller", *ros_params(model=str(model), rate_hz=50.0, diagnostics_period=0.2))
    with NodeProcess(argv, name="controller", log_dir=tmp_path) as node:
        assert lifecycle_state(probe, NODE, timeout=20.0) == "unconfigured"
        assert change_state(probe, NODE, "activate") is False  # not from unconfigured
        assert change_state(probe, NODE, "configure")
        assert lifecycle_state(probe, NODE) == "inactive"
        t = time.monotonic()
        probe.wait_for(lambda: any(diag_values(m)[2].get("state") == "inactive" for m in diags.since(t)), 5.0,
                       "inactive diagnostics", node)
        _assert_silent(probe, cmds, 0.3)  # configured but inactive: no commands

        assert change_state(probe, NODE, "activate")
        assert lifecycle_state(probe, NODE) == "active"
        probe.wait_for(lambda: len(cmds) >= 10, 5.0, "commands while active", node)

        assert change_state(probe, NODE, "deactivate")
        assert lifecycle_state(probe, NODE) == "inactive"
        # Deactivate ends on the safe command. Commands of the last ticks may still be in flight when
        # the transition returns: wait until the newest one received is the safe value.
        probe.wait_for(lambda: cmds.last() is not None and list(cmds.last().data) == [0.0], 5.0,
                       "the safe command after deactivate", node)
        time.sleep(0.05)  # let in-flight samples land before asserting silence
        _assert_silent(probe, cmds, 0.3)
        assert list(cmds.last().data) == [0.0]

        # Structural parameters cannot change while configured, and say why.
        res = set_parameter(probe, NODE, "rate_hz", 100.0)
        assert not res.successful and "cannot change while the node is configured" in res.reason
        assert change_state(probe, NODE, "cleanup")
        assert lifecycle_state(probe, NODE) == "unconfigured"
        # Bad values are refused with the reason, whatever the state.
        res = set_parameter(probe, NODE, "rate_hz", 5000.0)
        assert not res.successful and "10..1000" in res.reason
        res = set_parameter(probe, NODE, "safe_behaviour", "brake")
        assert not res.successful and "'zero' or 'hold'" in res.reason
        res = set_parameter(probe, NODE, "backend", "tensorflow")
        assert not res.successful and "numpy, onnxruntime or torch" in res.reason
        # A good value is taken at the next configure.
        assert set_parameter(probe, NODE, "rate_hz", 100.0).successful
        assert change_state(probe, NODE, "configure") and change_state(probe, NODE, "activate")
        node.wait_for_output(r"active: commanding at 100 Hz", 5.0)

        assert change_state(probe, NODE, "shutdown")
        assert lifecycle_state(probe, NODE) == "finalized"
        assert node.alive()
        assert node.stop() == 0
    assert all(np.isfinite(m.data).all() for _, m in cmds.snapshot())


def test_configure_failures_leave_the_node_alive_and_unconfigured(tmp_path, probe):
    from liquid_control.core.spec import load_spec

    missing = tmp_path / "nope.onnx"
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x00garbage, not a model" * 10)
    other = make_artifact(tmp_path / "reacher.onnx", spec=load_spec("reacher"))
    good = make_artifact(tmp_path / "good.onnx")
    # Lifecycle-managed (no autostart): a failed configure leaves it alive for the manager to retry.
    # (A failed autostart exits 1 instead: test_controller_safety.py.)
    argv = console_script("controller", *ros_params(model=str(missing)))
    with NodeProcess(argv, name="controller", log_dir=tmp_path) as node:
        assert lifecycle_state(probe, NODE, timeout=30.0) == "unconfigured"
        assert change_state(probe, NODE, "configure") is False
        node.wait_for_output(rf"configure failed: policy file {missing} does not exist", 20.0)
        assert lifecycle_state(probe, NODE) == "unconfigured"
        for path, words in ((corrupt, "is not an ONNX model"), (other, "does not fit robot spec 'cartpole'")):
            assert set_parameter(probe, NODE, "model", str(path)).successful
            assert change_state(probe, NODE, "configure") is False
            node.wait_for_output(rf"configure failed: {path}.*{words}", 5.0)
            assert lifecycle_state(probe, NODE) == "unconfigured"
        assert set_parameter(probe, NODE, "model", str(good)).successful
        assert change_state(probe, NODE, "configure")
        assert lifecycle_state(probe, NODE) == "inactive"
        assert node.alive()


@pytest.mark.parametrize("param, value, words", [
    ("rate_hz", 5000.0, "rate_hz must be 0 (the spec's rate) or within 10..1000 Hz"),
    ("safe_behaviour", "brake", "safe_behaviour must be 'zero' or 'hold'"),
    ("executor", "threads", "executor must be 'events' or 'single'"),
    ("rate_hz", "fast", "of type 'STRING', expecting type 'DOUBLE'"),  # a wrong type: one line, no traceback
])
def test_bad_parameter_at_start_up_exits_with_the_reason(tmp_path, param, value, words):
    argv = console_script("controller", *ros_params(**{param: value}))
    with NodeProcess(argv, name="controller", log_dir=tmp_path) as node:
        assert node.wait_exit(30.0) == 2
        assert words in node.output() and "Traceback" not in node.output()


def test_int_values_for_double_parameters_are_accepted(tmp_path):
    """`-p rate_hz:=50` (an int) for a double parameter: taken as 50.0, not an InvalidParameterTypeException."""
    model = make_artifact(tmp_path / "m.onnx")
    argv = console_script("controller", *ros_params(model=str(model), autostart=True, rate_hz=50,
                                                    sensor_timeout=1, soft_start=0))
    with NodeProcess(argv, name="controller", log_dir=tmp_path) as node:
        node.wait_for_output(r"active: commanding at 50 Hz, soft start 0 s", 30.0)
        assert node.stop() == 0


def test_non_finite_policy_output_gives_safe_command_reset_and_error(tmp_path, probe):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    model = make_artifact(tmp_path / "overflow.onnx", overflow=True)
    cmds = _commands(probe)
    debug = probe.collect(Float64MultiArray, f"/{NODE}/step_debug", 1000)
    diags = probe.collect(DiagnosticArray, "/diagnostics")
    pub = probe.publisher(JointState, "joint_states", 10)
    argv = console_script("controller", *ros_params(model=str(model), autostart=True, step_debug=True,
                                                    rate_hz=50.0, diagnostics_period=0.2,
                                                    executor="single"))  # the other executor works too
    with NodeProcess(argv, name="controller", log_dir=tmp_path) as node:
        probe.wait_for_subscribers(pub, 20.0, "the node's joint_states subscription")

        def feed():
            pub.publish(joint_state([0.1, 0.2], [0.0, -0.1]))
            return sum(parse_debug(m).status == 3 for m in debug.since(0.0)) >= 10
        probe.wait_for(feed, 10.0, "ticks with a failed policy step", node)
        recs = [parse_debug(m) for m in debug.since(0.0)]
        failed = [r for r in recs if r.status == 3]
        assert all(r.command.tolist() == [0.0] and np.isnan(r.action).all() for r in failed)
        assert all(r.fresh for r in failed)  # the state is never advanced by a non-finite step
        probe.wait_for(lambda: any(diag_values(m)[0] == 2 and "non-finite" in diag_values(m)[1]
                                   for m in diags.since(0.0)), 5.0, "ERROR diagnostics", node)
        node.wait_for_output(r"safe command: policy step failed: .*non-finite", 5.0)
        assert node.alive()
    assert all(np.isfinite(m.data).all() for _, m in cmds.snapshot())


@pytest.mark.parametrize("params", sorted((Path(__file__).resolve().parents[1] / "config").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_every_robot_params_file_configures_and_activates(tmp_path, params):
    from liquid_control.core.spec import load_spec

    model = make_artifact(tmp_path / "m.onnx", spec=load_spec(params.stem))
    argv = console_script("liquid-control", "run", "--params", str(params), "--model", str(model))
    with NodeProcess(argv, name="controller", log_dir=tmp_path) as node:
        node.wait_for_output(rf"configured: robot '{params.stem}'", 30.0)
        node.wait_for_output(r"active: commanding", 10.0)
        assert node.stop() == 0


SPEC_IMU_GOAL_TWIST = """
robot: imu_goal_rover
rate_hz: 50.0
observation:
  - topic: imu
    type: sensor_msgs/msg/Imu
    field: angular_velocity
    axes: [z]
  - topic: goal
    type: geometry_msgs/msg/PointStamped
    field: point
    axes: [x, y]
    scale: 0.5
action:
  topic: cmd_vel
  type: geometry_msgs/msg/Twist
  names: [linear.x, angular.z]
  scale: [0.5, 1.0]
  limits: {lower: [-0.5, -1.0], upper: [0.5, 1.0]}
  safe: [0.0, 0.0]
safety:
  sensor_timeout: 0.3
  soft_start: 0.0
  safe_behaviour: hold
"""


def test_two_sensor_topics_twist_command_and_hold_behaviour(tmp_path, probe):
    """Imu + PointStamped in, Twist out (a spec given by path), safe behaviour 'hold': a topic that is
    missing is named; a bad message makes the node repeat its last good command."""
    from geometry_msgs.msg import PointStamped, Twist
    from sensor_msgs.msg import Imu
    from std_msgs.msg import Float64MultiArray

    from liquid_control.core.spec import load_spec

    spec_path = tmp_path / "rover.yaml"
    spec_path.write_text(SPEC_IMU_GOAL_TWIST)
    spec = load_spec(spec_path)
    model = make_artifact(tmp_path / "rover.onnx", spec=spec, seed=4)
    cmds = probe.collect(Twist, "cmd_vel")
    debug = probe.collect(Float64MultiArray, f"/{NODE}/step_debug", 1000)
    imu_pub, goal_pub = probe.publisher(Imu, "imu", 10), probe.publisher(PointStamped, "goal", 10)
    argv = console_script("controller", *ros_params(robot=str(spec_path), model=str(model), autostart=True,
                                                    step_debug=True))
    with NodeProcess(argv, name="controller", log_dir=tmp_path) as node:
        probe.wait_for_subscribers(imu_pub, 20.0, "the imu subscription")
        probe.wait_for_subscribers(goal_pub, 20.0, "the goal subscription")

        def feed(goal: bool, wz: float = 0.3):
            imu = Imu()
            imu.angular_velocity.z = wz
            imu_pub.publish(imu)
            if goal:
                g = PointStamped()
                g.point.x, g.point.y = 1.0, -2.0
                goal_pub.publish(g)

        # Only the IMU: the goal topic is named as missing, the command is the spec's safe value.
        probe.wait_for(lambda: (feed(False), any(
            "goal: no message received yet" in line for line in node.output().splitlines()))[1], 10.0,
            "the missing goal reported", node)
        # Both: control; the observation is in spec order and scaled (goal * 0.5).
        t = time.monotonic()
        probe.wait_for(lambda: (feed(True), sum(parse_debug(m, spec).status == 0 for m in debug.since(t)) >= 10)[1],
                       10.0, "control on imu + goal", node)
        good = [parse_debug(m, spec) for m in debug.since(t)]
        last_good = [r for r in good if r.status == 0][-1]
        np.testing.assert_allclose(last_good.obs, [0.3, 0.5, -1.0], rtol=1e-6)
        twist = cmds.last()
        assert abs(twist.linear.x) <= 0.5 and abs(twist.angular.z) <= 1.0
        assert (twist.linear.y, twist.linear.z, twist.angular.x, twist.angular.y) == (0.0, 0.0, 0.0, 0.0)
        # A non-finite IMU value: hold = repeat the last good command, not zero.
        t_bad = time.monotonic()
        probe.wait_for(lambda: (feed(True, float("nan")),
                                sum(parse_debug(m, spec).status == 1 for m in debug.since(t_bad)) >= 5)[1],
                       10.0, "safe ticks on a NaN imu", node)
        # Held: the command of the last stepped tick before the first safe one (that tick's record may have
        # arrived before t_bad, so look from t).
        recs = [parse_debug(m, spec) for m in debug.since(t)]
        recs = recs[next(i for i, r in enumerate(recs) if r.status == 0):]  # after the missing-goal phase's
        first_safe = next(i for i, r in enumerate(recs) if r.status == 1)
        held = [r for r in recs[:first_safe] if r.status == 0][-1].command
        safe = [r for r in recs[first_safe:] if r.status == 1]
        assert all(np.array_equal(r.command, held) for r in safe), [(r.status, r.command.tolist()) for r in recs]
        assert not np.array_equal(held, [0.0, 0.0])
        node.wait_for_output(r"non-finite value in Imu.angular_velocity\[z\]", 5.0)
