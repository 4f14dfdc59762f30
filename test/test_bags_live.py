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
# The node's commands vs the offline replay at the node's ticks, of the command scale: 0 until a tick
# differs, 0.0036 RMSE / 0.012 max at worst seen with a few late /clocks on a loaded machine; 0.035..0.048
# RMSE and 0.14..0.21 max when play published /clock before the instant's sample. Once a late /clock makes
# one tick see a newer sample, the hidden states part and the error grows (0.014 RMSE / 0.04 max seen
# under heavy load): the bound after that point is loose; the exact prefix, the >= 90% same-sample ticks
# and "another model is 10x worse" are what tell a wrong player apart.
TIGHT_RMSE, TIGHT_MAX = 0.025, 0.1


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
        # /clock is reliable and the player waited for its acknowledgement before exiting: every one is here
        probe.wait_for(lambda: len(clock) >= len(recorded), 5.0, "one /clock per played instant")
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
    # /clock carries bag (log) time, one per instant (here: per message), in order, none lost
    assert clocks == [t for t, _ in recorded]
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
        from rclpy.duration import Duration

        n = 200
        for i in range(n):
            msg = JointState()
            msg.header.stamp.sec, msg.header.stamp.nanosec = 100, i * 1000
            msg.name, msg.position, msg.velocity = ["slider", "hinge"], [0.001 * i, -0.001 * i], [0.1, 0.2]
            js_pub.publish(msg)
            if i % 10 == 0:
                cmd_pub.publish(Float64MultiArray(data=[0.01 * i]))
            time.sleep(0.004)  # pacing the publisher, not waiting for anything
        # every reliable command is in the recorder's reader; stopping writes what it has not handled yet
        assert cmd_pub.wait_for_all_acked(Duration(seconds=20)), "the recorder did not acknowledge the commands"
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


def _with_commands(src, dst, commands):
    """A copy of bag `src` with the spec's command topic added: [(log time ns, command vector)]."""
    from liquid_control.bags.io import BagWriter, ensure_types

    with open_bag(src) as b, BagWriter(dst, typestore=b.typestore) as w:
        ensure_types(b.typestore, [SPEC.action.msg_type])
        for t in b.topics.values():
            w.add_topic_like(t, b.typestore)
        w.add_topic(SPEC.action.topic, SPEC.action.msg_type)
        T = b.typestore.types
        layout = T["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
        pending = sorted(commands, key=lambda c: c[0])
        for m in b.raw_messages():
            while pending and pending[0][0] <= m.log_time_ns:
                t, c = pending.pop(0)
                w.write_msg(SPEC.action.topic, t, T[SPEC.action.msg_type](layout=layout, data=np.asarray(c, float)))
            w.write(m.topic, m.log_time_ns, m.data)
        for t, c in pending:
            w.write_msg(SPEC.action.topic, t, T[SPEC.action.msg_type](layout=layout, data=np.asarray(c, float)))
    return dst


class _Ticks:
    """A replay sink keeping each tick's time, observation and command."""

    def __init__(self):
        self.t, self.obs, self.command = [], [], []

    def tick(self, k):
        self.t.append(k.t_ns)
        self.obs.append(k.obs.copy())
        self.command.append(k.command.copy())

    def close(self, ok):
        pass


def test_played_bag_drives_the_controller_like_the_offline_replay(tmp_path):
    """play (with /clock) -> controller node under use_sim_time -> record its commands; compare them with
    the offline replay of the played bag on the node's schedule, and replay the recording."""
    from controller_fixtures import make_artifact, parse_debug
    from std_msgs.msg import Float64MultiArray
    from ros_helpers import Collector, ros_params

    from liquid_control.core.policy import Policy

    # samples logged exactly on their 2 ms stamps: the node's ticks (at the first /clock at or after each
    # deadline) then fall exactly on sample instants, as offline replay's ticks do
    info = write_cartpole_bag(tmp_path / "sim", duration=3.0, commands=False, latency_ns=0)
    with open_bag(info.path) as bag:
        first_log, last_log = bag.start_ns, bag.end_ns - 1
    model = make_artifact(tmp_path / "m.onnx", seed=2)
    rec_out = tmp_path / "rec"
    controller = console_script("controller", *ros_params(model=str(model), autostart=True, use_sim_time=True,
                                                          step_debug=True))
    recorder = console_script("liquid-control", "record", str(rec_out), "--robot", "cartpole", "--use-sim-time")
    player = console_script("liquid-control", "play", str(info.path), "--clock", "--topics", "joint_states",
                            "--min-subscribers", "2", "--wait-for-subscribers", "30")
    with Probe("e2e_probe") as probe, NodeProcess(controller, name="controller", log_dir=tmp_path) as node, \
            NodeProcess(recorder, name="record", log_dir=tmp_path) as rec:
        debug = Collector()
        debug_sub = probe.node.create_subscription(Float64MultiArray, "/liquid_controller/step_debug", debug, 1000)
        node.wait_for_output(r"active: commanding", 30.0)
        rec.wait_for_output("recording to", 30.0)
        probe.wait_for(lambda: debug_sub.get_publisher_count() > 0, 30.0, "the probe matched to ~/step_debug", node)
        with NodeProcess(player, name="play", log_dir=tmp_path) as play:
            assert play.wait_exit(60.0) == 0, play.tail()
        # the node's last tick: the last deadline before the bag's last instant
        probe.wait_for(lambda: any(parse_debug(m).time >= (last_log * 1e-9 - SPEC.period) for _, m in debug.snapshot()),
                       20.0, "the controller's tick at the end of the bag", node)
        ticks = [parse_debug(m) for _, m in debug.snapshot()]
        assert rec.stop(20.0) == 0, rec.tail()
    assert ticks[0].seq == 0 and [r.seq for r in ticks] == list(range(len(ticks)))  # every tick, in order
    # (the node may miss the first /clock messages: its /clock subscription is best effort, and what is
    # sent before it has matched the player is lost; so count from what it ticked)
    stepped = [r for r in ticks if r.status == 0]
    assert len(stepped) >= 2.0 * SPEC.rate_hz and len(stepped) >= len(ticks) - 2, [r.status for r in ticks]
    # Each tick runs when /clock reaches its deadline; play publishes an instant's messages before its
    # /clock, so the tick sees the sample of that very instant (stamp = tick time), not the one 2 ms
    # before. (On a loaded machine the node may handle a /clock late, after the next instant's sample
    # came: it takes waiting samples before ticking, so it then ticks on that newer one: lag -2 ms.)
    lag = np.array([r.time - r.sensor_stamp for r in stepped])
    on_sample = np.abs(lag) < 1e-6
    assert np.mean(lag > 1e-3) <= 0.05 and np.mean(on_sample) >= 0.9, np.round(lag * 1e3, 3)

    # The offline replay of the played bag, ticking where the node ticked (on its deadlines, or later when
    # a /clock was lost: its /clock subscription is depth-1 best effort) and compared with what it
    # published there: the played bag plus the node's commands at its tick times (+1 ns: after that
    # instant's sample), replayed with ticks at the recorded commands.
    grid = 2_000_000  # the bag's sample period: every /clock, so every tick, is on it
    tick_ns = [first_log + round((r.time * 1e9 - first_log) / grid) * grid for r in ticks]
    assert all(abs(n * 1e-9 - r.time) < 1e-6 for n, r in zip(tick_ns, ticks))
    node_bag = _with_commands(info.path, tmp_path / "node", [(n + 1, r.command) for n, r in zip(tick_ns, ticks)])
    ticked = ReplayOptions(ticks="recorded")
    result = replay(node_bag, Policy.load(model, spec=SPEC), SPEC, options=ticked, sinks=[offline := _Ticks()])
    assert result.ticks == len(ticks) and result.comparison[0].n >= 0.9 * len(ticks)
    # ticks where the node stepped on the very sample the offline replay has there (all but the rare
    # /clock handled late, or a tick judged stale after a stall, on a loaded machine)
    alike = [r.status == 0 and np.array_equal(r.obs, o.astype(np.float32))  # the policy sees float32
             for r, o in zip(ticks, offline.obs)]
    assert np.mean(alike) >= 0.9, alike
    err = np.array([r.command[0] - c[0] for r, c, ok in zip(ticks, offline.command, alike) if ok])
    # until the first tick that differs: same samples, same dt (the first tick's too: a period), same
    # model and pipeline, so the same numbers
    prefix = alike.index(False) if False in alike else len(alike)
    assert np.abs(err[:prefix]).max(initial=0.0) < 1e-9, err[:prefix]
    rmse, worst = float(np.sqrt(np.mean(err**2))), float(np.abs(err).max())  # and after it, close
    assert rmse < TIGHT_RMSE * SPEC.action.scale[0] and worst < TIGHT_MAX * SPEC.action.scale[0], (rmse, worst)
    (other,) = replay(node_bag, Policy.load(make_artifact(tmp_path / "m2.onnx", seed=3), spec=SPEC), SPEC,
                      options=ticked).comparison
    assert other.rmse > 10 * max(rmse, 1e-3), (other, rmse)  # another model is told apart

    # The recording: sim time throughout (what came before the recorder's first /clock is stamped with it,
    # never 0), every command the node published, in order (reliable, and taken at stop)
    with open_bag(rec_out) as bag:
        assert first_log <= bag.start_ns and bag.end_ns <= last_log + 1
        assert bag.topics["/joint_states"].count >= 0.9 * info.joint_messages
        recorded = [m.msg.data[0] for m in bag.messages(["/effort_controller/commands"])]
    assert len(recorded) >= len(ticks) - 1 and recorded == [r.command[0] for r in ticks][: len(recorded)]
    # and it replays: on the spec's schedule from its first sample, close to what the node did (the
    # recorder stamps each sample with the /clock it had when the sample came, the instant before)
    result = replay(rec_out, Policy.load(model, spec=SPEC), SPEC)
    (a,) = result.comparison
    assert a.n >= 60 and result.faulted_ticks <= 2
    assert a.rmse < 0.05 * SPEC.action.scale[0] and a.max_abs < 0.25 * SPEC.action.scale[0], a


def test_play_window_and_loop_until_stopped(tmp_path):
    import threading

    from sensor_msgs.msg import JointState

    from liquid_control.ros.bag_player import PlayOptions, play
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


def test_play_clock_hz_ticks_between_instants(tmp_path):
    import threading

    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import JointState

    from liquid_control.ros.bag_player import PlayOptions, play

    info = write_cartpole_bag(tmp_path / "b", duration=0.2, latency_ns=0)  # instants every 2 ms exactly
    options = PlayOptions(clock=True, clock_hz=1000.0, topics=("joint_states",), wait_for_subscribers=20.0)
    out = {}
    with Probe("clock_probe") as probe:
        js = probe.collect(JointState, "/joint_states", _best_effort())
        clock = probe.collect(Clock, "/clock", 1000)
        t = threading.Thread(target=lambda: out.setdefault("r", play(info.path, options, log=lambda s: None)))
        t.start()
        t.join(30.0)
        assert not t.is_alive() and out["r"].published == info.joint_messages == 100
        # Each instant and a tick 1 ms after it. The last /clock always arrives (play waits for the
        # acknowledgement); on a loaded machine the writer's keep-last history may drop a few in between.
        grid = list(range(info.start_ns, info.start_ns + 199 * 1_000_000, 1_000_000))
        stamp = lambda m: m.clock.sec * 10**9 + m.clock.nanosec  # noqa: E731
        probe.wait_for(lambda: clock.last() is not None and stamp(clock.last()) == grid[-1], 10.0, "the last /clock")
        clocks = [stamp(m) for _, m in clock.snapshot()]
    assert set(clocks) <= set(grid) and clocks == sorted(set(clocks))  # on the 1 ms grid, in order, no repeats
    assert len(clocks) >= 50  # the first ones can go before the probe's reader has matched the writer
    assert any((c - info.start_ns) % 2_000_000 for c in clocks)  # ticks between the 2 ms instants
    assert len(js) >= 90


def test_play_publishes_what_the_bag_holds_or_says_why_not(tmp_path):
    """Bags that lie to `play`: a metadata.yaml QoS unlike the file's plays every message (it played 0, exit
    0); metadata counting more than the storage holds is refused before anything is published; a
    damaged timestamp ends playback at once instead of sleeping for a day."""
    import subprocess

    from bag_damage import copy_bag, edit_metadata, sqlite_exec, topic_entry

    info = write_cartpole_bag(tmp_path / "b", duration=1.0, rate_hz=100.0, storage="sqlite3")  # 100 + 25 messages

    def play(bag, *args):
        argv = console_script("liquid-control", "play", str(bag), "--wait-for-subscribers", "0", "--delay", "0",
                              "--rate", "20", *args)
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert "Traceback" not in p.stderr, p.stderr
        return p.returncode, p.stdout, p.stderr

    qos = copy_bag(info.path, tmp_path / "qos")
    edit_metadata(qos, lambda i: topic_entry(i, "/joint_states")["topic_metadata"].update(
        offered_qos_profiles=topic_entry(i, "/joint_states")["topic_metadata"]["offered_qos_profiles"].replace(
            "reliability: 2", "reliability: 1")))
    rc, out, err = play(qos)
    assert rc == 0 and "played 125 messages" in out, (out, err)
    assert "note: metadata.yaml's offered QoS profiles (or serialization) of /joint_states differ" in out

    more = copy_bag(info.path, tmp_path / "more")
    edit_metadata(more, lambda i: topic_entry(i, "/joint_states").update(message_count=150))
    rc, out, err = play(more)
    assert rc == 2 and err.count("\n") == 1 and "played" not in out
    assert "holds fewer messages than its metadata.yaml says: /joint_states: the storage holds 100 of 150" in err
    rc, out, err = play(more, "--allow-partial")
    assert rc == 0 and "played 125 messages" in out and "partial playback: /joint_states: read 100 of 150" in out

    jump = copy_bag(info.path, tmp_path / "jump")
    sqlite_exec(jump, "UPDATE messages SET timestamp = timestamp + 86400000000000 WHERE id = 60")
    rc, out, err = play(jump)
    assert rc == 2 and err.count("\n") == 1 and "a gap of 86399.5" in err and "over --max-gap 10 s" in err
