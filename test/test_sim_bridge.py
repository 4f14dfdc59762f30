"""The sim bridge: its messages give the env's observation; over real DDS it steps in lockstep, ignores bad
commands, resets on request, and closes the loop with the real controller node and the shipped policy."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rclpy.serialization import deserialize_message

from liquid_control.core.observation import ObservationAssembler
from liquid_control.core.resources import share_dir
from liquid_control.sim.env import SpecEnv
from liquid_control.sim.observe import TopicReader

ROBOTS = ["cartpole", "cartpole_novel", "cartpole_imu", "reacher", "arm3"]


@pytest.mark.parametrize("robot", ROBOTS)
def test_messages_assemble_to_the_env_observation(robot):
    """Parity: for the same MuJoCo state, the controller's assembler on the bridge's messages = env obs."""
    from liquid_control.ros.sim_sensors import MessageFiller

    env = SpecEnv(robot)
    env.reset(seed=3)
    for _ in range(3):
        env.step(env.action_space.sample())
    for published in (False, True):  # the filled message, and what the bridge publishes (bytes for a JointState)
        assembler = ObservationAssembler(env.robot_spec)
        for topic in env.robot_spec.topics:
            filler = MessageFiller(TopicReader(env.model, env.data, env.robot_spec, topic), env.robot_spec)
            msg = filler.fill(1_000)
            if published:
                sent = filler.publishable(1_000)
                if isinstance(sent, bytes):
                    assert filler.serialized() == sent
                    msg = deserialize_message(sent, filler.msg_class)
                    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (0, 1_000)
            assert assembler.update(topic, msg, 1.0) is None
        obs, fault = assembler.assemble(1.0)
        assert fault is None
        np.testing.assert_array_equal(obs, env.sim_state_observation())
        assert np.any(obs != 0)


def test_new_robot_messages_and_twist_command(tmp_path):
    """The pendulum of test_sim_env (MJCF + spec only): Imu, Float64MultiArray and JointState effort
    messages assemble to the env's observation, and a Twist command decodes onto its actuator."""
    from geometry_msgs.msg import Twist

    from liquid_control.core.command_types import decode_command
    from liquid_control.ros.sim_sensors import MessageFiller
    from test_sim_env import PENDULUM_SPEC, PENDULUM_XML

    (tmp_path / "pendulum.xml").write_text(PENDULUM_XML)
    (tmp_path / "pendulum.yaml").write_text(PENDULUM_SPEC)
    env = SpecEnv(tmp_path / "pendulum.yaml")
    env.reset(seed=1)
    twist = Twist()
    twist.angular.y = 0.75
    assert env.apply_command(decode_command(twist, env.robot_spec.action))
    env.advance(0.1)
    expected = env.sim_state_observation()  # refreshes sensors to the new state, as the bridge does before publishing
    assembler = ObservationAssembler(env.robot_spec)
    for topic in env.robot_spec.topics:
        filler = MessageFiller(TopicReader(env.model, env.data, env.robot_spec, topic), env.robot_spec)
        assert assembler.update(topic, filler.fill(1), 1.0) is None
    obs, fault = assembler.assemble(1.0)
    assert fault is None and env.data.ctrl[0] == 0.75
    np.testing.assert_array_equal(obs, expected)


def test_imu_message_is_complete_and_marks_missing_fields():
    from liquid_control.ros.sim_sensors import MessageFiller

    env = SpecEnv("cartpole_imu")
    env.reset(options={"qpos": [0.0, 0.3], "qvel": [0.0, 0.7]})
    msg = MessageFiller(TopicReader(env.model, env.data, env.robot_spec, "imu"), env.robot_spec).fill(5)
    q = msg.orientation
    np.testing.assert_allclose([q.x, q.y, q.z, q.w], [0, np.sin(0.15), 0, np.cos(0.15)], atol=1e-12)
    assert msg.angular_velocity.y == pytest.approx(0.7)
    assert msg.linear_acceleration_covariance[0] == -1.0  # not provided by this spec
    assert msg.orientation_covariance[0] == 0.0 and msg.header.frame_id == "imu"


# ------------------------------------------------------------------------------------ over DDS
def _start(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "liquid_control.cli.main", *args], env=os.environ.copy(),
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def ros_node():
    import rclpy

    rclpy.init()
    node = rclpy.create_node("test_sim_bridge")
    yield node
    node.destroy_node()
    rclpy.shutdown()


def _spin_until(node, cond, timeout: float) -> bool:
    import rclpy

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.02)
        if cond():
            return True
    return cond()


def test_lockstep_steps_per_command_and_ignores_bad_ones(ros_node, tmp_path):
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray
    from std_srvs.srv import Trigger

    summary, bag = tmp_path / "summary.json", tmp_path / "run_bag"
    bridge = _start(["sim", "--robot", "cartpole", "--mode", "lockstep", "--duration", "0.4",
                     "--lockstep-timeout", "5", "--summary", str(summary), "--record", str(bag)],
                    tmp_path / "bridge.log")
    try:
        states, clocks = [], []
        pub = ros_node.create_publisher(Float64MultiArray, "effort_controller/commands", 10)
        ros_node.create_subscription(JointState, "joint_states", states.append, 10)
        ros_node.create_subscription(Clock, "/clock", lambda m: clocks.append(m.clock.sec + 1e-9 * m.clock.nanosec), 10)
        reset = ros_node.create_client(Trigger, "/sim_bridge/reset")
        assert _spin_until(ros_node, lambda: len(clocks) > 0, 20), (tmp_path / "bridge.log").read_text()
        # Answer each /clock with a command: good, NaN, wrong size, bytes that are no Float64MultiArray (they
        # are answers too, ignored), good ...; 10 periods of 0.04 s in all.
        garbage = b"\x00\x01\x00\x00\x05\x00\x00\x00\x01"
        commands = [[1.0], [float("nan")], [1.0, 2.0], garbage] + [[1.0]] * 11
        answered = 0
        while bridge.poll() is None and answered < len(commands):
            n = len(clocks)
            if answered == 4:
                fut = reset.call_async(Trigger.Request())
                assert _spin_until(ros_node, fut.done, 10) and fut.result().success
            c = commands[answered]
            pub.publish(c if isinstance(c, bytes) else Float64MultiArray(data=c))
            answered += 1
            _spin_until(ros_node, lambda: len(clocks) > n or bridge.poll() is not None, 10)
        assert bridge.wait(timeout=20) == 0, (tmp_path / "bridge.log").read_text()
    finally:
        _stop(bridge)
    result = json.loads(summary.read_text())
    assert result["sim_time"] == pytest.approx(0.4)
    assert result["ticks"] == 10 and result["command_timeouts"] == 0
    assert result["commands_ignored"] == 3 and result["resets"] == 1
    # /clock advanced by exactly one period per answered tick (an instant is sent again in pre-roll, until
    # the first answer), never backwards
    steps = np.diff(clocks)
    assert set(np.round(steps, 9)) <= {0.0, 0.04}, steps
    assert len(np.unique(clocks)) == 1 + result["preroll_ticks"] + result["ticks"]
    # the held command was the last good one (3.0 N... in actuator units: 1.0), never NaN
    # (the trace has a state per /clock instant: the first, any pre-roll ones before the first answer, one
    # per tick)
    cmds = np.array(result["trace"]["command"])
    assert len(cmds) == 1 + result["preroll_ticks"] + result["ticks"]
    assert np.isfinite(cmds).all() and set(np.round(cmds[1 + result["preroll_ticks"]:, 0], 9)) == {1.0}
    assert np.isfinite(np.array(result["trace"]["qpos"])).all()
    assert states and states[-1].name == ["slider", "hinge"] and len(states[-1].effort) == 2
    # --record: a rosbag2 of sensors, commands (bad ones too: they were received) and /clock, at sim time
    from liquid_control.bags.io import BagReader

    counts: dict[str, int] = {}
    reader = BagReader(bag)
    for m in reader.messages():
        counts[m.topic] = counts.get(m.topic, 0) + 1
    assert counts["/joint_states"] == counts["/clock"] == result["ticks"] + 1 + result["preroll_ticks"]
    # the undecodable bytes were recorded as received; reading the bag skips them and says so
    assert counts["/effort_controller/commands"] >= 9
    assert [(t, n) for (t, _r), n in reader.stats.skipped.items()] == [("/effort_controller/commands", 1)]


def test_closed_loop_with_the_controller_keeps_the_pole_up(ros_node, tmp_path):
    """Lockstep, real controller node under use_sim_time with the shipped policy: 20 s of sim time up.

    Parity over DDS too: the observation the controller assembled at each tick (its ~/step_debug) is the
    env's observation of the state the bridge published at that tick's /clock.
    """
    from std_msgs.msg import Float64MultiArray

    from liquid_control.ros.controller.step_debug import DEBUG_FIELDS
    from liquid_control.ros.qos import DEBUG_QOS

    if not (share_dir() / "policies" / "cartpole.onnx").exists():
        pytest.fail("the shipped policy policies/cartpole.onnx is missing")
    rows: list[list[float]] = []
    ros_node.create_subscription(Float64MultiArray, "/liquid_controller/step_debug",
                                 lambda m: rows.append(list(m.data)), DEBUG_QOS)
    summary = tmp_path / "summary.json"
    controller = _start(["run", "--robot", "cartpole", "--use-sim-time", "--", "-p", "step_debug:=true"],
                        tmp_path / "controller.log")
    try:
        _spin_until(ros_node, lambda: ros_node.count_publishers("/liquid_controller/step_debug") > 0, 20)
        bridge = _start(["sim", "--robot", "cartpole", "--mode", "lockstep", "--duration", "20",
                         "--summary", str(summary)], tmp_path / "bridge.log")
        try:
            _spin_until(ros_node, lambda: bridge.poll() is not None, 120)
            assert bridge.wait(timeout=10) == 0, (tmp_path / "bridge.log").read_text()
            _spin_until(ros_node, lambda: len(rows) >= 500, 5)
        finally:
            _stop(bridge)
    finally:
        _stop(controller)
    result = json.loads(summary.read_text())
    logs = (tmp_path / "bridge.log").read_text() + (tmp_path / "controller.log").read_text()
    assert result["sim_time"] == pytest.approx(20.0) and result["commands"] >= 499, logs
    assert result["command_timeouts"] == 0, logs
    trace = result["trace"]
    hinge = np.array(trace["qpos"])[:, 1]
    assert np.abs(hinge).max() < 0.2, f"the pole fell: max |angle| {np.abs(hinge).max():.3f} rad\n{logs}"

    env = SpecEnv("cartpole")
    by_stamp = {ns: (q, v) for ns, q, v in zip(trace["stamp_ns"], trace["qpos"], trace["qvel"])}
    k = len(DEBUG_FIELDS)
    col = {name: i for i, name in enumerate(DEBUG_FIELDS)}
    ticks = [r for r in rows if r[col["status"]] == 0]  # stepped ticks (not safe-command ones)
    assert len(ticks) >= 490, f"{len(ticks)} stepped ticks of {len(rows)}"
    fresh = 0
    for r in ticks:
        stamp_ns = int(round(r[col["sensor_stamp"]] * 1e9 / 1000)) * 1000  # float64 seconds -> exact ns (us grid)
        qpos, qvel = by_stamp[stamp_ns]
        env.reset(options={"qpos": qpos, "qvel": qvel})
        # the controller holds its observation as float32 (the policy's input type): compare at that precision
        expected = env.sim_state_observation().astype(np.float32).astype(np.float64)
        np.testing.assert_array_equal(r[k:k + env.robot_spec.obs_size], expected)
        fresh += abs(r[col["sensor_stamp"]] - r[col["time"]]) < 1e-6
    assert fresh >= 0.99 * len(ticks), f"only {fresh} of {len(ticks)} ticks saw the state of their own /clock"


def test_realtime_pushes_disturb_the_robot(tmp_path, offscreen_gl):
    traces = {}
    video = tmp_path / "pushed.gif"
    for name, extra in (("calm", []),
                        ("pushed", ["--push-period", "0.2", "--push-force", "40", "--video", str(video)])):
        summary = tmp_path / f"{name}.json"
        proc = _start(["sim", "--robot", "cartpole", "--duration", "0.6", "--summary", str(summary), *extra],
                      tmp_path / f"{name}.log")
        assert proc.wait(timeout=60) == 0, (tmp_path / f"{name}.log").read_text()
        traces[name] = json.loads(summary.read_text())
    assert traces["calm"]["pushes"] == 0 and traces["pushed"]["pushes"] == 2  # at 0.2 s and 0.4 s
    calm, pushed = (np.array(traces[k]["trace"]["qpos"]) for k in ("calm", "pushed"))
    np.testing.assert_array_equal(calm[:6], pushed[:6])  # identical until the first push (same seed)
    assert np.abs(pushed[-1] - calm[-1]).max() > 1e-3
    from PIL import Image

    assert Image.open(video).n_frames == 16  # one frame per published state at 25 Hz: 0 .. 0.6 s


def test_realtime_skips_and_counts_the_periods_a_slow_tick_missed(ros_node):
    """A tick that runs 10.5 periods long: the loop skips the deadlines it missed (no burst of catch-up
    ticks) and counts them as overruns, so the wall time is the ticks run plus the periods skipped."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from liquid_control.ros.sim_bridge import SimBridge

    bridge = SimBridge(parameter_overrides=[Parameter("mode", value="realtime"), Parameter("rate_hz", value=100.0),
                                            Parameter("duration", value=0.3)])
    period, step = bridge.period, bridge.advance

    def advance_slowly_once() -> None:
        step()
        if bridge.stats.ticks == 10:
            time.sleep(10.5 * period)

    bridge.advance = advance_slowly_once
    executor = SingleThreadedExecutor()
    executor.add_node(bridge)
    try:
        stats = bridge.run(executor)
    finally:
        executor.remove_node(bridge)
        bridge.destroy_node()
    n, skipped = stats.ticks, stats.overruns
    assert n == 30 and stats.sim_time == pytest.approx(0.3)
    # 10.5 periods late: the next tick runs at once, 9 whole periods past its deadline (more only if the
    # machine stalled the loop besides)
    assert skipped >= 9
    assert (n + skipped) * period <= stats.wall_time < (n + skipped + 1) * period + 0.04


def test_lockstep_closed_loop_is_deterministic(tmp_path):
    """Same seed, same policy: two lockstep runs give the same trajectory, bit for bit, however the
    processes happen to be scheduled (the controller starts at a different wall time each run)."""
    runs = []
    for k, delay in enumerate((0.0, 1.0)):
        summary = tmp_path / f"run{k}.json"
        bridge = _start(["sim", "--robot", "cartpole", "--mode", "lockstep", "--duration", "3", "--seed", "5",
                         "--summary", str(summary)], tmp_path / f"bridge{k}.log")
        time.sleep(delay)  # the bridge pre-rolls (clock only) until the controller answers
        controller = _start(["run", "--robot", "cartpole", "--use-sim-time"], tmp_path / f"controller{k}.log")
        try:
            assert bridge.wait(timeout=120) == 0, (tmp_path / f"bridge{k}.log").read_text()
        finally:
            _stop(bridge)
            _stop(controller)
        runs.append(json.loads(summary.read_text()))
    # Pre-roll ticks (published before the controller's first command, physics frozen) vary in number.
    a, b = ({key: v[r["preroll_ticks"]:] for key, v in r["trace"].items()} for r in runs)
    assert runs[0]["commands"] >= 75 and runs[0]["command_timeouts"] == runs[1]["command_timeouts"] == 0
    assert len(a["t"]) == len(b["t"]) == 76  # 0 .. 3 s in 0.04 s periods
    np.testing.assert_array_equal(a["t"], b["t"])
    np.testing.assert_array_equal(a["qpos"], b["qpos"])
    np.testing.assert_array_equal(a["command"], b["command"])
    assert np.abs(np.array(a["command"])).max() > 0.1  # the controller really acted
