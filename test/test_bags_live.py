"""Live bag tools over real DDS: `liquid-control play` republishes a bag (raw CDR, paced, /clock) and
`liquid-control record` writes what a live graph publishes (definitions, offered QoS), each in its own
process, talking to an rclpy probe in this one."""
from __future__ import annotations

import time

import numpy as np

from liquid_control.bags.io import open_bag
from liquid_control.bags.replay import ReplayOptions, replay
from liquid_control.bags.synth import write_cartpole_bag
from liquid_control.core.spec import load_spec
from ros_helpers import NodeProcess, Probe, console_script

SPEC = load_spec("cartpole")


def _best_effort(depth=1000):
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.BEST_EFFORT)


def test_play_republishes_the_bag_paced_by_bag_time_with_clock(tmp_path):
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import JointState

    info = write_cartpole_bag(tmp_path / "b", duration=1.0, storage="sqlite3")
    with open_bag(info.path) as bag:
        recorded = [(m.log_time_ns, m.msg) for m in bag.messages(["/joint_states"])]
    argv = console_script("liquid-control", "play", str(info.path), "--rate", "2", "--clock", "--topics",
                          "joint_states", "--remap", "joint_states:=/played/joint_states", "--wait-for-subscribers", "20")
    with Probe("play_probe") as probe:
        js = probe.collect(JointState, "/played/joint_states", _best_effort())  # recorded QoS: best effort
        clock = probe.collect(Clock, "/clock", 1000)
        with NodeProcess(argv, name="play", log_dir=tmp_path) as player:
            assert player.wait_exit(30.0) == 0, player.tail()
            out = player.output()
        probe.wait_for(lambda: len(js) >= 0.9 * len(recorded), 5.0, "the played joint states")
        time.sleep(0.2)
        got = js.snapshot()
        clocks = [m.clock.sec * 10**9 + m.clock.nanosec for _, m in clock.snapshot()]
    assert "played 500 messages" in out and "/joint_states -> /played/joint_states" in out
    # every message arrives as recorded, in order (best effort: a rare drop is allowed, nothing else)
    assert len(got) >= 0.9 * len(recorded)
    it = iter(recorded)
    for _, m in got:
        t, ref = next((t, r) for t, r in it if r.header.stamp.nanosec == m.header.stamp.nanosec
                      and r.header.stamp.sec == m.header.stamp.sec)
        assert list(m.name) == list(ref.name) and list(m.position) == ref.position.tolist()
        assert list(m.velocity) == ref.velocity.tolist()
    # /clock carries bag (log) time, one per message, in order
    log_times = {t for t, _ in recorded}
    assert clocks == sorted(clocks) and len(clocks) >= 0.9 * len(recorded) and set(clocks) <= log_times
    # paced: 1 s of bag at rate 2 takes 0.5 s of wall time (absolute deadlines: never less, little more)
    import re

    wall = float(re.search(r"\) in ([0-9.]+) s on", out).group(1))
    assert 0.498 <= wall < 5.0, wall


def test_record_spec_topics_from_a_live_graph_then_replay(tmp_path):
    from std_msgs.msg import Float64MultiArray
    from sensor_msgs.msg import JointState

    out = tmp_path / "rec"
    argv = console_script("liquid-control", "record", str(out), "--robot", "cartpole", "--storage", "sqlite3")
    with Probe("record_probe") as probe, NodeProcess(argv, name="record", log_dir=tmp_path) as rec:
        js_pub = probe.publisher(JointState, "joint_states", _best_effort(10))
        cmd_pub = probe.publisher(Float64MultiArray, SPEC.action.topic, 10)  # reliable (rclpy default)
        rec.wait_for_output("recording to", 20.0)
        probe.wait_for_subscribers(js_pub, 20.0, "the recorder's joint_states subscription")
        probe.wait_for_subscribers(cmd_pub, 20.0, "the recorder's command subscription")
        n = 200
        for i in range(n):
            msg = JointState()
            msg.header.stamp.sec, msg.header.stamp.nanosec = 100, i * 1000
            msg.name, msg.position, msg.velocity = ["slider", "hinge"], [0.001 * i, -0.001 * i], [0.1, 0.2]
            js_pub.publish(msg)
            if i % 10 == 0:
                cmd_pub.publish(Float64MultiArray(data=[0.01 * i]))
            time.sleep(0.004)
        time.sleep(0.5)  # let the last messages land before stopping
        assert rec.stop(20.0) == 0, rec.tail()
        log = rec.output()
    assert "recorded" in log, log
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # the temporary folder is gone
    with open_bag(out) as bag:
        assert bag.storage == "sqlite3"
        t = bag.topics
        assert set(t) == {"/joint_states", "/effort_controller/commands"}
        assert t["/effort_controller/commands"].count == 20  # reliable: every one
        assert t["/joint_states"].count >= 0.9 * n
        assert t["/joint_states"].qos[0].reliability.name == "BEST_EFFORT"
        assert t["/effort_controller/commands"].qos[0].reliability.name == "RELIABLE"
        assert "float64[] position" in t["/joint_states"].connection.msgdef.data
        msgs = [m.msg for m in bag.messages(["/joint_states"])]
        assert bag.stats.skipped_total == 0  # rclpy's padded CDR decodes
        cmds = [m.msg.data[0] for m in bag.messages(["/effort_controller/commands"])]
    stamps = [m.header.stamp.nanosec // 1000 for m in msgs]
    assert stamps == sorted(stamps) and msgs[0].position.tolist() == [0.001 * stamps[0], -0.001 * stamps[0]]
    np.testing.assert_allclose(cmds, [0.01 * i for i in range(0, n, 10)])
    # and the recording replays offline
    from liquid_control.core.artifact import write_artifact
    from liquid_control.core.policy import Policy
    from liquid_control.core.random_params import cfc_cfg, random_params

    cfg = cfc_cfg(SPEC.obs_size, 8, SPEC.action_size)
    model = write_artifact(tmp_path / "m.onnx", cfg, random_params(cfg, 0), spec=SPEC)
    result = replay(out, Policy.load(model, spec=SPEC), SPEC)
    assert result.ticks >= 20 and result.comparison is not None and result.comparison[0].n > 0


def test_played_bag_drives_the_controller_like_the_offline_replay(tmp_path):
    """play (with /clock) -> controller node under use_sim_time -> record its commands; then replay the
    recording offline with the same model: the node's recorded commands and the offline ones agree."""
    from controller_fixtures import make_artifact
    from ros_helpers import ros_params

    from liquid_control.core.policy import Policy

    info = write_cartpole_bag(tmp_path / "sim", duration=3.0, commands=False)
    model = make_artifact(tmp_path / "m.onnx", seed=2)
    rec_out = tmp_path / "rec"
    controller = console_script("controller", *ros_params(model=str(model), autostart=True, use_sim_time=True))
    recorder = console_script("liquid-control", "record", str(rec_out), "--robot", "cartpole", "--use-sim-time")
    player = console_script("liquid-control", "play", str(info.path), "--clock", "--topics", "joint_states",
                            "--min-subscribers", "2", "--wait-for-subscribers", "30")
    with NodeProcess(controller, name="controller", log_dir=tmp_path) as node, \
            NodeProcess(recorder, name="record", log_dir=tmp_path) as rec:
        node.wait_for_output(r"active: commanding", 30.0)
        rec.wait_for_output("recording to", 30.0)
        with NodeProcess(player, name="play", log_dir=tmp_path) as play:
            assert play.wait_exit(60.0) == 0, play.tail()
        time.sleep(0.5)
        assert rec.stop(20.0) == 0, rec.tail()
    with open_bag(rec_out) as bag:
        assert bag.topics["/joint_states"].count >= 0.9 * info.joint_messages
        assert bag.topics["/effort_controller/commands"].count >= 0.9 * 3.0 * SPEC.rate_hz
    result = replay(rec_out, Policy.load(model, spec=SPEC), SPEC)
    (a,) = result.comparison
    assert a.n >= 60 and result.faulted_ticks <= 2
    # On the spec's own schedule (from the first sensor message) the ticks fall up to a period away from
    # the node's (which count from the first /clock): close, with up to one tick of lag in the comparison.
    assert a.rmse < 0.05 * SPEC.action.scale[0] and a.max_abs < 0.25 * SPEC.action.scale[0], a
    # Ticking where the node ticked (at its recorded commands) compares like for like: near equality
    # (what remains: a sensor message the node had not yet taken when its tick ran, and ms of dt).
    ticks = ReplayOptions(ticks="recorded")
    (b,) = replay(rec_out, Policy.load(model, spec=SPEC), SPEC, options=ticks).comparison
    assert b.n >= 60 and b.rmse < 0.01 * SPEC.action.scale[0] and b.max_abs < 0.03 * SPEC.action.scale[0], b
    assert b.rmse < a.rmse
    other = replay(rec_out, Policy.load(make_artifact(tmp_path / "m2.onnx", seed=3), spec=SPEC), SPEC,
                   options=ticks).comparison[0]
    assert other.rmse > 10 * b.rmse, (other, b)  # another model is told apart: the agreement is not trivial


def test_play_window_and_loop_until_stopped(tmp_path):
    import threading

    from sensor_msgs.msg import JointState

    from liquid_control.bags.player import PlayOptions, play
    from liquid_control.bags.synth import START_NS

    info = write_cartpole_bag(tmp_path / "b", duration=1.0)
    with open_bag(info.path) as bag:
        first = bag.start_ns
    lo, hi = first + 200_000_000, first + 400_000_000  # --start-offset 0.2 --duration 0.2
    options = PlayOptions(rate=4.0, loop=True, topics=("joint_states",), start_offset=0.2, duration=0.2,
                          wait_for_subscribers=20.0)
    stop, out = threading.Event(), {}
    with Probe("loop_probe") as probe:
        js = probe.collect(JointState, "/joint_states", _best_effort())
        t = threading.Thread(target=lambda: out.setdefault("r", play(info.path, options, stop=stop, log=lambda s: None)))
        t.start()
        try:
            probe.wait_for(lambda: len(js) >= 250, 30.0, "two and a half passes of the 0.2 s window")
        finally:
            stop.set()
            t.join(10.0)
        stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for _, m in js.snapshot()]
    assert not t.is_alive() and out["r"].loops >= 2
    sent = sorted(set(stamps))
    # only the window's samples (sample stamps lead their log times by the recording latency, < 0.4 ms)
    assert all(lo - 1_000_000 <= s < hi for s in sent) and len(sent) >= 90
    assert max(stamps.count(s) for s in sent) >= 2  # the window came round again
    assert START_NS <= min(sent)
