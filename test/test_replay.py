"""Offline replay on real rosbag2 files: tick schedule, determinism, outputs, faults, options, CLI."""
import csv
import dataclasses

import numpy as np
import pytest

from liquid_control.bags.io import BagError, BagWriter, open_bag
from liquid_control.bags.replay import ReplayOptions, parse_remaps, replay
from liquid_control.bags.synth import START_NS, write_cartpole_bag
from liquid_control.cli.main import main
from liquid_control.core.artifact import write_artifact
from liquid_control.core.command import CommandPipeline
from liquid_control.core.policy import Policy
from liquid_control.core.random_params import cfc_cfg, random_params
from liquid_control.core.spec import load_spec

SPEC = load_spec("cartpole")  # 25 Hz, obs: slider/hinge position and velocity, command: Float64MultiArray
CMD = "/effort_controller/commands"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    cfg = cfc_cfg(SPEC.obs_size, 16, SPEC.action_size)
    return write_artifact(tmp_path_factory.mktemp("model") / "rand.onnx", cfg, random_params(cfg, 3), spec=SPEC)


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    return write_cartpole_bag(tmp_path_factory.mktemp("bag") / "cp", duration=2.0, storage="sqlite3")


def policy(model):
    return Policy.load(model, spec=SPEC)


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def column(header, rows, name):
    j = header.index(name)
    return np.array([float(r[j]) for r in rows])


def test_replay_steps_exactly_like_a_hand_rolled_node_loop(model, tmp_path):
    # latency 0: joint states are logged exactly on the 2 ms grid, so every 25 Hz tick coincides with a
    # message, which must be applied before the tick.
    info = write_cartpole_bag(tmp_path / "b", duration=1.0, storage="mcap", latency_ns=0)
    result = replay(info.path, policy(model), SPEC, csv=tmp_path / "r.csv")
    header, rows = read_csv(tmp_path / "r.csv")
    assert result.ticks == len(rows) == 25 and result.faulted_ticks == 0  # 0, 40, ..., 960 ms
    with open_bag(info.path) as b:
        states = [(m.log_time_ns, m.msg) for m in b.messages(["/joint_states"])]
    ref, pipe = policy(model), CommandPipeline(SPEC.action, SPEC.safety.soft_start, SPEC.safety.safe_behaviour)
    ref.reset()
    pipe.reset()
    t0 = states[0][0]
    for k, row in enumerate(rows):
        t_k = t0 + k * 40_000_000
        msg = [m for t, m in states if t <= t_k][-1]
        assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == t_k  # the message at the tick itself
        obs = np.array([*msg.position, *msg.velocity])
        assert [float(v) for v in row[2:6]] == obs.tolist()
        action = ref.step(obs.astype(np.float32), 0.04)
        command, ok = pipe.apply(action, 0.04)
        assert ok and float(row[header.index("action:slide")]) == float(action[0])
        assert float(row[header.index("command:slide")]) == float(command[0])
        assert float(row[0]) == pytest.approx(k * 0.04, abs=1e-12)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_replay_is_bit_for_bit_deterministic(model, bag, tmp_path, storage):
    outs = []
    for i in range(2):
        d = tmp_path / str(i)
        d.mkdir()
        replay(bag.path, policy(model), SPEC, csv=d / "r.csv", out_bag=d / "out", out_storage=storage)
        files = sorted((d / "out").iterdir())
        assert [f.name for f in files] == (["metadata.yaml", "out.mcap"] if storage == "mcap" else ["metadata.yaml", "out.db3"])
        outs.append([(d / "r.csv").read_bytes()] + [f.read_bytes() for f in files])
    assert outs[0] == outs[1]  # the CSV and the bag's files, byte for byte
    with open_bag(tmp_path / "0" / "out") as b:
        assert b.storage == storage and b.topics[CMD].count == 50


def test_output_bag_has_commands_beside_the_bag_topics(model, bag, tmp_path):
    result = replay(bag.path, policy(model), SPEC, csv=tmp_path / "r.csv", out_bag=tmp_path / "out", with_bag_topics=True)
    assert any("written on /replay/effort_controller/commands" in n for n in result.notes)
    header, rows = read_csv(tmp_path / "r.csv")
    with open_bag(bag.path) as src, open_bag(tmp_path / "out") as out:
        assert set(out.topics) == {"/joint_states", CMD, "/replay" + CMD}
        assert out.topics["/joint_states"].qos == src.topics["/joint_states"].qos
        copied = [(m.log_time_ns, m.data) for m in out.raw_messages(["/joint_states"])]
        assert copied == [(m.log_time_ns, m.data) for m in src.raw_messages(["/joint_states"])]  # raw, unchanged
        replayed = list(out.messages(["/replay" + CMD]))
    assert len(replayed) == result.ticks == len(rows)
    np.testing.assert_array_equal([m.msg.data[0] for m in replayed], column(header, rows, "command:slide"))


def test_comparison_with_recorded_commands(model, bag, tmp_path):
    result = replay(bag.path, policy(model), SPEC, csv=tmp_path / "r.csv")
    header, rows = read_csv(tmp_path / "r.csv")
    err = column(header, rows, "command:slide") - column(header, rows, "recorded:slide")
    (a,) = result.comparison
    assert a.name == "slide" and a.n == len(rows) == result.ticks
    assert a.rmse == pytest.approx(np.sqrt(np.mean(err**2)), rel=1e-12)
    assert a.max_abs == pytest.approx(np.abs(err).max(), rel=1e-12)
    assert a.rmse > 0
    plain = write_cartpole_bag(tmp_path / "nocmd", duration=0.5, commands=False)
    result = replay(plain.path, policy(model), SPEC)
    assert result.comparison is None and "nothing to compare" in "\n".join(result.lines())


def test_rmw_padded_bag_replays_exactly_like_a_plain_one(model, tmp_path):
    plain = write_cartpole_bag(tmp_path / "plain", duration=1.0)
    padded = write_cartpole_bag(tmp_path / "padded", duration=1.0, rmw_padding=True)
    replay(plain.path, policy(model), SPEC, csv=tmp_path / "a.csv")
    result = replay(padded.path, policy(model), SPEC, csv=tmp_path / "b.csv")
    assert result.stats.padded == 500 and result.stats.skipped_total == 0
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def _rewrite(src, dst, keep):
    """Copy a bag, keeping (or replacing) messages: keep(topic, t_ns, msg) -> msg or None."""
    with open_bag(src) as b, BagWriter(dst, typestore=b.typestore) as w:
        for t in b.topics.values():
            w.add_topic_like(t, b.typestore)
        for m in b.messages():
            new = keep(m.topic, m.log_time_ns, m.msg)
            if new is not None:
                w.write_msg(m.topic, m.log_time_ns, new)


def test_sensor_gap_gives_the_safe_command_then_a_soft_start(model, bag, tmp_path):
    gap = (START_NS + 800_000_000, START_NS + 1_300_000_000)
    _rewrite(bag.path, tmp_path / "gap", lambda topic, t, m: None if topic == "/joint_states" and gap[0] <= t < gap[1] else m)
    result = replay(tmp_path / "gap", policy(model), SPEC, csv=tmp_path / "r.csv")
    header, rows = read_csv(tmp_path / "r.csv")
    faults = [r[1] for r in rows]
    stale = [i for i, f in enumerate(faults) if f]
    assert stale and set(faults[i] for i in stale) == {"stale:joint_states"}
    assert result.faulted_ticks == len(stale) and "last message" in result.first_fault
    (js,) = [line for line in result.timing if line.startswith("/joint_states")]
    import re

    gap_ms, at = map(float, re.search(r"largest gap ([0-9.]+) ms at t=([0-9.]+) s", js).groups())
    assert 500.0 <= gap_ms < 503.0 and 0.79 < at < 0.81  # the hole in the recording, found and placed
    assert re.search(r"receive - header stamp 0\.2[0-9] ms mean", js)
    # 0.5 s gap, 0.2 s timeout, 40 ms ticks: stale from ~1.0 s until data returns at 1.3 s
    t = column(header, rows, "t")
    assert 0.95 < t[stale[0]] < 1.05 and 1.25 < t[stale[-1]] < 1.35 and len(stale) in (7, 8, 9)
    cmd = column(header, rows, "command:slide")
    assert (cmd[stale] == 0.0).all()  # the spec's safe command
    assert np.isnan(column(header, rows, "action:slide")[stale]).all()
    after = stale[-1] + 1  # soft start: 0.5 s ramp, rate limit 300/s -> at most 12 per tick
    assert abs(cmd[after]) <= 3.0 * 0.04 / 0.5 + 1e-12


def test_messages_that_do_not_fit_the_spec_are_counted_and_fault(model, bag, tmp_path):
    def drop_hinge(topic, t, m):
        if topic == "/joint_states" and START_NS + 1_000_000_000 <= t < START_NS + 1_100_000_000:
            m = dataclasses.replace(m, name=["slider"], position=m.position[:1], velocity=m.velocity[:1], effort=m.effort[:1])
        return m
    _rewrite(bag.path, tmp_path / "bad", drop_hinge)
    result = replay(tmp_path / "bad", policy(model), SPEC, csv=tmp_path / "r.csv")
    reasons = {(t, r): n for (t, r), n in result.stats.skipped.items()}
    assert reasons == {("/joint_states", "does not fit the spec: joint 'hinge' missing from JointState (has ['slider'])"): 50}
    header, rows = read_csv(tmp_path / "r.csv")
    assert {r[1] for r in rows} == {"", "invalid:joint_states"} and result.faulted_ticks >= 2


def test_remap_start_offset_duration_and_header_time(model, tmp_path, capsys):
    info = write_cartpole_bag(tmp_path / "ns", duration=2.0, joint_topic="/robot/joint_states")
    assert main(["replay", str(info.path), "--model", str(model), "--no-progress"]) == 2
    assert "no topic /joint_states (an observation topic of the spec); it has: /robot/joint_states" in capsys.readouterr().err
    assert parse_remaps(["robot/joint_states:=joint_states"]) == {"/robot/joint_states": "/joint_states"}
    with pytest.raises(BagError, match="not of the form"):
        parse_remaps(["joint_states"])
    opts = ReplayOptions(remap=parse_remaps(["/robot/joint_states:=joint_states"]), start_offset=0.5, duration=1.0)
    result = replay(info.path, policy(model), SPEC, options=opts, out_bag=tmp_path / "o")
    assert result.ticks == 25 and result.faulted_ticks == 0
    with open_bag(tmp_path / "o") as b:
        first = next(b.raw_messages()).log_time_ns
    assert START_NS + 500_000_000 <= first < START_NS + 503_000_000
    with pytest.raises(BagError, match="beyond the bag's end"):
        replay(info.path, policy(model), SPEC, options=dataclasses.replace(opts, start_offset=5.0))
    # header time: ticks fall on the sample stamps (the 2 ms grid), not on the jittered receive times
    hdr = dataclasses.replace(opts, time_base="header")
    replay(info.path, policy(model), SPEC, options=hdr, out_bag=tmp_path / "h")
    with open_bag(tmp_path / "h") as b:
        times = [m.log_time_ns for m in b.raw_messages()]
    assert times[0] == START_NS + 500_000_000
    assert np.diff(times).tolist() == [40_000_000] * (len(times) - 1)


class _Crashing:
    """A policy that fails mid-replay (a bug, not a StepError): nothing may be left behind."""

    def __init__(self, inner, after):
        self.inner, self.after, self.n = inner, after, 0

    def reset(self):
        self.inner.reset()

    def step(self, obs, dt):
        self.n += 1
        if self.n > self.after:
            raise RuntimeError("boom")
        return self.inner.step(obs, dt)


def test_failure_mid_replay_leaves_no_output_files(model, bag, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RuntimeError, match="boom"):
        replay(bag.path, _Crashing(policy(model), 10), SPEC, out_bag=out / "bag", csv=out / "r.csv", plot=out / "r.png")
    assert list(out.iterdir()) == []


def test_cli_outputs_truncated_bag_and_default_policy(model, tmp_path, capsys):
    info = write_cartpole_bag(tmp_path / "long", duration=30.0)
    data = (info.path / "long.mcap").read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    assert main(["replay", str(cut), "--model", str(model), "--no-progress"]) == 2
    assert "--recover" in capsys.readouterr().err
    args = ["replay", str(cut), "--model", str(model), "--no-progress", "--recover", "--csv", str(tmp_path / "r.csv"),
            "--plot", str(tmp_path / "r.png"), "--out", str(tmp_path / "o"), "--json", str(tmp_path / "s.json")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "damage: " in out and "file cut at byte" in out and "RMSE" in out
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "o" / "metadata.yaml").exists()
    import json

    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["damage"] and summary["ticks"] > 100 and summary["comparison"][0]["name"] == "slide"
    # no --model: the robot's shipped policy
    assert main(["replay", str(info.path), "--robot", "cartpole", "--duration", "0.5", "--no-progress"]) == 0
    assert "policies/cartpole.onnx" in capsys.readouterr().out
    assert main(["replay", str(info.path), "--no-progress"]) == 2
    assert "give --robot" in capsys.readouterr().err


def test_unknown_type_topics_are_left_out_of_the_copy_with_a_note(model, bag, tmp_path):
    import sqlite3

    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.EMPTY)
    store.register(get_types_from_msg("float64 torque\n", "acme_msgs/msg/Gizmo"))
    with open_bag(bag.path) as src:
        store.register({k: v for k, v in src.typestore.fielddefs.items() if k not in store.fielddefs})
        with BagWriter(tmp_path / "g", storage="sqlite3", typestore=store) as w:
            for t in src.topics.values():
                w.add_topic_like(t, src.typestore)
            w.add_topic("/gizmo", "acme_msgs/msg/Gizmo")
            for m in src.raw_messages():
                w.write(m.topic, m.log_time_ns, m.data)
            w.write_msg("/gizmo", m.log_time_ns, store.types["acme_msgs/msg/Gizmo"](torque=1.0))
    with sqlite3.connect(tmp_path / "g" / "g.db3") as db:  # an older recorder stored no definitions
        db.execute("DELETE FROM message_definitions WHERE topic_type = 'acme_msgs/msg/Gizmo'")
    result = replay(tmp_path / "g", policy(model), SPEC, out_bag=tmp_path / "out", with_bag_topics=True)
    assert any("not copied to the output bag: /gizmo (acme_msgs/msg/Gizmo" in n for n in result.notes)
    with open_bag(tmp_path / "out") as out:
        assert "/gizmo" not in out.topics and out.topics["/joint_states"].count == bag.joint_messages


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_ticks_at_recorded_commands_reproduce_a_recorded_run_exactly(model, tmp_path, storage):
    # Record "the robot": sensor data plus this policy's own commands, at the ticks it ran at (what the
    # node would have published), by replaying a command-less bag into a bag beside its joint states.
    info = write_cartpole_bag(tmp_path / "b", duration=2.0, commands=False)
    first = replay(info.path, policy(model), SPEC, out_bag=tmp_path / "run", out_storage=storage, with_bag_topics=True)
    # Replaying that recording with ticks where its commands are: the same commands, to the last bit.
    again = replay(tmp_path / "run", policy(model), SPEC, options=ReplayOptions(ticks="recorded"))
    (a,) = again.comparison
    assert again.ticks == first.ticks == a.n == 50 and again.faulted_ticks == 0
    assert a.rmse == 0.0 and a.max_abs == 0.0
    # On the spec's schedule the first tick is the first message, as it was: also exact here
    (s,) = replay(tmp_path / "run", policy(model), SPEC).comparison
    assert s.rmse == 0.0 and s.n == 50
    with pytest.raises(BagError, match="ticks at the recorded commands need /effort_controller/commands"):
        replay(info.path, policy(model), SPEC, options=ReplayOptions(ticks="recorded"))


def test_header_time_reorders_within_the_window_and_counts_later_arrivals():
    from liquid_control.bags.timebase import HeaderClock

    r = HeaderClock(window_ns=10)
    out = []
    # (stamp, log time): stamps arrive out of order by up to 8 ns, then one 30 ns late
    for stamp, log in [(100, 101), (95, 102), (110, 111), (104, 112), (120, 121), (130, 131), (90, 132), (140, 141)]:
        out += [t for t, _ in r.push(log, stamp, None)]
    out += [t for t, _ in r.flush()]
    assert out == [95, 100, 104, 110, 120, 130, 140] and r.dropped == 1


def test_header_clock_puts_headerless_messages_on_the_senders_clock():
    from liquid_control.bags.timebase import HeaderClock

    # sensor clock 1000 ns behind the recorder, delays 1..3 ns; commands (no header) logged in between
    r = HeaderClock(window_ns=20)
    out = []
    for log, stamp, name in [(5010, None, "c0"), (5101, 4100, "s0"), (5104, 4101, "s1"), (5106, None, "c1"),
                             (5110, 4107, "s2"), (5111, None, "c2"), (5130, 4128, "s3"), (5160, 4159, "s4")]:
        out += list(r.push(log, stamp, name))
    out += list(r.flush())
    # offset = the largest stamp - log in the window = -1001 (the least-delayed samples): c0 waited for
    # it; c1 and c2 come right after the samples logged before them, before the ones logged after
    assert [it for _, it in out] == ["c0", "s0", "s1", "c1", "s2", "c2", "s3", "s4"]
    times = {it: t for t, it in out}
    assert times["c0"] == 5010 - 1001 and times["c1"] == 5106 - 1001 and times["c2"] == 5111 - 1001
    assert r.dropped == 0 and r.headerless == 3 and r.offset_range == (-1001, -1001)


def test_header_time_replay_orders_two_sensors_by_stamp(model, tmp_path):
    # joint states logged late and out of stamp order (a lagging driver): the header time base puts
    # them back in stamp order; the receive time base takes them as they came
    info = write_cartpole_bag(tmp_path / "b", duration=1.0, commands=False)

    with open_bag(info.path) as src, BagWriter(tmp_path / "late", typestore=src.typestore) as w:
        for t in src.topics.values():
            w.add_topic_like(t, src.typestore)
        msgs = [(m.log_time_ns, m.data) for m in src.raw_messages()]
        for i in range(0, len(msgs) - 1, 2):  # swap neighbours' log times: every pair arrives reversed
            (t0, d0), (t1, d1) = msgs[i], msgs[i + 1]
            w.write("/joint_states", t0, d1)
            w.write("/joint_states", t1, d0)
    opts = ReplayOptions(time_base="header", reorder_window=0.05)
    result = replay(tmp_path / "late", policy(model), SPEC, options=opts, csv=tmp_path / "h.csv")
    assert result.stats.skipped_total == 0 and result.faulted_ticks == 0
    reference = replay(info.path, policy(model), SPEC, options=opts, csv=tmp_path / "ref.csv")
    assert reference.ticks == result.ticks
    assert (tmp_path / "h.csv").read_bytes() == (tmp_path / "ref.csv").read_bytes()  # order restored exactly
    replay(tmp_path / "late", policy(model), SPEC, csv=tmp_path / "r.csv")  # receive time: as they came
    assert (tmp_path / "r.csv").read_bytes() != (tmp_path / "ref.csv").read_bytes()


@pytest.mark.parametrize("offset_s", [-2.0, -0.3, 1.0])
def test_header_time_is_unmoved_by_the_sensor_clock_offset(model, tmp_path, offset_s):
    # The sensors stamp on their own clock, `offset_s` off the recorder's (robot and laptop not synced);
    # the recorded commands have no header. On the header time base the replay must be the same as with
    # synced clocks: commands placed on the sensors' clock, nothing dropped, comparison not shifted.
    info = write_cartpole_bag(tmp_path / "synced", duration=2.0, storage="sqlite3", latency_ns=0)
    shift = int(offset_s * 1e9)

    def restamp(topic, t, m):
        if topic == "/joint_states":
            s = m.header.stamp.sec * 10**9 + m.header.stamp.nanosec + shift
            m.header.stamp.sec, m.header.stamp.nanosec = s // 10**9, s % 10**9
        return m
    _rewrite(info.path, tmp_path / "off", restamp)
    hdr = ReplayOptions(time_base="header")
    ref = replay(info.path, policy(model), SPEC, options=hdr, csv=tmp_path / "ref.csv")
    got = replay(tmp_path / "off", policy(model), SPEC, options=hdr, csv=tmp_path / "off.csv")
    assert got.stats.skipped_total == 0 and got.faulted_ticks == 0 and got.ticks == ref.ticks == 50
    assert got.comparison == ref.comparison and got.comparison[0].n == 50
    assert (tmp_path / "off.csv").read_bytes() == (tmp_path / "ref.csv").read_bytes()
    assert any(f"placed at receive time {offset_s * 1e3:+.3f} ms" in n for n in got.notes), got.notes


def test_demonstrations_on_header_time_are_unmoved_by_the_sensor_clock_offset(tmp_path):
    from liquid_control.bags.demos import extract_demos

    info = write_cartpole_bag(tmp_path / "synced", duration=2.0, latency_ns=0)

    def restamp(topic, t, m):
        if topic == "/joint_states":
            s = m.header.stamp.sec * 10**9 + m.header.stamp.nanosec - 2 * 10**9
            m.header.stamp.sec, m.header.stamp.nanosec = s // 10**9, s % 10**9
        return m
    _rewrite(info.path, tmp_path / "off", restamp)
    hdr = ReplayOptions(time_base="header")
    ref, got = extract_demos([info.path], SPEC, options=hdr), extract_demos([tmp_path / "off"], SPEC, options=hdr)
    # every command but the first (logged before any sensor sample) pairs with what was seen before it
    assert got.steps == ref.steps == info.command_messages - 1 and got.breaks == 0
    for a, b in zip(got.demos, ref.demos):
        np.testing.assert_array_equal(a.obs, b.obs)
        np.testing.assert_array_equal(a.dt, b.dt)
        np.testing.assert_array_equal(a.action, b.action)


@pytest.mark.parametrize("msg_type, names", [
    ("std_msgs/msg/Float64MultiArray", ("a", "b", "c")),
    ("sensor_msgs/msg/JointState", ("a", "b", "c")),
    ("geometry_msgs/msg/Twist", ("linear.x", "angular.z", "linear.y")),
])
def test_command_serializer_writes_cdr_that_decodes_back_to_the_vector(msg_type, names):
    # the replayed commands in an output bag, for every command type a spec can name
    from liquid_control.bags.io import decode_cdr, distro_typestore
    from liquid_control.bags.codecs import CommandSerializer
    from liquid_control.core.command_types import decode_command

    action = dataclasses.replace(SPEC.action, msg_type=msg_type, names=names, scale=(1.0,) * 3, lower=(-9.0,) * 3,
                                 upper=(9.0,) * 3, safe=(0.0,) * 3, rate_limit=None)
    spec = dataclasses.replace(SPEC, action=action)
    ts = distro_typestore()
    ser = CommandSerializer(spec, ts)
    cmd = np.array([0.5, -1.25, 7.5])
    msg, padding = decode_cdr(ts, ser.serialize(cmd, 1_500_000_000), msg_type)
    assert padding <= 3
    np.testing.assert_array_equal(decode_command(msg, action), cmd)
    if msg_type == "sensor_msgs/msg/JointState":
        assert list(msg.name) == list(names) and (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1, 500_000_000)


def test_a_message_logged_at_time_zero_is_refused_not_ticked_through(model, bag, tmp_path):
    # a recorder under use_sim_time that stamped its first message before any /clock: log time 0, then
    # 2023; ticking through the 53 years between would never end
    with open_bag(bag.path) as src, BagWriter(tmp_path / "zero", typestore=src.typestore) as w:
        for t in src.topics.values():
            w.add_topic_like(t, src.typestore)
        for i, m in enumerate(src.raw_messages()):
            w.write(m.topic, 1 if i == 0 else m.log_time_ns, m.data)
    with pytest.raises(BagError, match=r"spans 1\.7e\+09 s of log time .* at time 0"):
        replay(tmp_path / "zero", policy(model), SPEC)
    skip = ReplayOptions(start_offset=(START_NS - 1) * 1e-9)  # the way out that the error names
    assert replay(tmp_path / "zero", policy(model), SPEC, options=skip).ticks == 50


# --- bags that lie: what was read is what the bag holds ---------------------------------------------
def test_a_late_metadata_start_time_loses_no_message(model, bag, tmp_path):
    from bag_damage import copy_bag, edit_metadata

    clean = replay(bag.path, policy(model), SPEC)
    late = copy_bag(bag.path, tmp_path / "late")
    edit_metadata(late, lambda i: i["starting_time"].update(nanoseconds_since_epoch=i["starting_time"]["nanoseconds_since_epoch"] + 10**9))
    result = replay(late, policy(model), SPEC)  # 1 s late of a 2 s bag: half the messages were left out
    assert (result.ticks, result.steps, result.stats.read) == (clean.ticks, clean.steps, clean.stats.read) == (50, 50, 1050)
    assert result.partial == [] and any("start time: metadata.yaml says" in n for n in result.stats.notes)


def test_fewer_messages_than_metadata_says_fail_unless_allowed(model, bag, tmp_path, capsys):
    from bag_damage import copy_bag, sqlite_exec

    short = copy_bag(bag.path, tmp_path / "short")
    sqlite_exec(short, "DELETE FROM messages WHERE id > 1000")
    with pytest.raises(BagError, match=r"read fewer messages than bag .* holds: /effort_controller/commands: read 48 of "
                                       r"50 messages .*; /joint_states: read 952 of 1000 messages \(metadata.yaml: 1000, "
                                       r"sqlite3 rows: 952\) \(--allow-partial accepts a partial read\)$"):
        replay(short, policy(model), SPEC, csv=tmp_path / "r.csv")
    assert not (tmp_path / "r.csv").exists()
    result = replay(short, policy(model), SPEC, options=ReplayOptions(allow_partial=True))
    assert [x.split(":")[0] for x in result.partial] == ["/effort_controller/commands", "/joint_states"]
    assert any(line.startswith("partial read: /joint_states: read 952 of 1000") for line in result.lines())
    # a window reads part of the bag by design: nothing to compare
    assert replay(short, policy(model), SPEC, options=ReplayOptions(duration=1.0)).partial == []
    args = ["replay", str(short), "--model", str(model), "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--allow-partial" in err
    assert main(args + ["--allow-partial", "--json", str(tmp_path / "s.json")]) == 0
    import json

    assert json.loads((tmp_path / "s.json").read_text())["partial"][1].startswith("/joint_states: read 952 of 1000")


def test_a_gap_over_max_gap_ends_the_replay_before_any_output(model, bag, tmp_path, capsys):
    from bag_damage import copy_bag, sqlite_exec

    jump = copy_bag(bag.path, tmp_path / "jump")  # one timestamp 1e5 s late: hours of ticks without the bound
    sqlite_exec(jump, "UPDATE messages SET timestamp = timestamp + 100000000000000 WHERE id = 600")
    with pytest.raises(BagError, match=r"a gap of 99999.1 s between messages .* is over --max-gap 20 s"):
        replay(jump, policy(model), SPEC, csv=tmp_path / "r.csv")  # cartpole: sensor_timeout 0.2 s -> 20 s
    assert not (tmp_path / "r.csv").exists()
    args = ["replay", str(jump), "--model", str(model), "--no-progress", "--csv", str(tmp_path / "r.csv")]
    assert main(args + ["--max-gap", "5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "over --max-gap 5 s" in err and not (tmp_path / "r.csv").exists()
    assert main(args + ["--max-gap", "0"]) == 2 and "--max-gap must be > 0" in capsys.readouterr().err
    # a pause shorter than the bound is a pause: replayed, stale while it lasts
    pause = copy_bag(bag.path, tmp_path / "pause")
    sqlite_exec(pause, "UPDATE messages SET timestamp = timestamp + 15000000000 WHERE id > 600")
    result = replay(pause, policy(model), SPEC)
    assert result.ticks > 15 * 25 and result.faulted_ticks > 14 * 25
    with pytest.raises(BagError, match="over --max-gap 10 s"):
        replay(pause, policy(model), SPEC, options=ReplayOptions(max_gap=10.0))


def test_joint_states_naming_other_joints_are_named_as_the_cause(model, tmp_path, monkeypatch):
    import liquid_control.bags.synth as synth

    monkeypatch.setattr(synth, "JOINTS", ("cart", "pole"))  # a robot whose joints the spec does not call so
    other = write_cartpole_bag(tmp_path / "other", duration=1.0)
    with pytest.raises(BagError, match=r"no policy step .*: every /joint_states message was skipped \(500x: "
                                       r"joint_states messages name joints \['cart', 'pole'\]; the spec needs "
                                       r"\['slider', 'hinge'\]\)"):
        replay(other.path, policy(model), SPEC)


def _bool_beside_joint_states(path, topic: str, n: int, value_at) -> None:
    """A bag of `n` cartpole JointStates at 100 Hz and std_msgs/Bool on `topic`: value_at(k) at sample k
    (None: no message there)."""
    from liquid_control.bags.io import BAG_COMMAND_QOS, BagWriter, distro_typestore

    ts = distro_typestore("kilted")
    T = ts.types
    with BagWriter(path, typestore=ts) as bag:
        bag.add_topic("/joint_states", "sensor_msgs/msg/JointState", qos=(BAG_COMMAND_QOS,))
        bag.add_topic(topic, "std_msgs/msg/Bool", qos=(BAG_COMMAND_QOS,))
        for k in range(n):
            t = 1_000_000_000 + k * 10_000_000
            if (value := value_at(k)) is not None:
                bag.write_msg(topic, t, T["std_msgs/msg/Bool"](data=value))
            stamp = T["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9)
            bag.write_msg("/joint_states", t, T["sensor_msgs/msg/JointState"](
                header=T["std_msgs/msg/Header"](stamp=stamp, frame_id=""), name=["slider", "hinge"],
                position=np.array([0.01, 0.02]), velocity=np.zeros(2), effort=np.zeros(0)))


def test_an_estop_topic_in_the_bag_holds_the_replayed_controller(tmp_path):
    """std_msgs/Bool on /estop (or --estop-topic): engaged ticks give the spec's safe value and count as
    faulted; --estop-required holds until the first false; a heartbeat timeout holds through silence."""
    from liquid_control.core.control import SAFE_STOP, STEPPED
    from liquid_control.core.policy import Policy
    from liquid_control.core.resources import default_policy_path
    from liquid_control.core.spec import load_spec

    spec = load_spec("cartpole")
    path = tmp_path / "estop"
    # 1 s at 100 Hz; e-stop messages (engaged 0.4..0.6 s) only in the first 0.8 s
    _bool_beside_joint_states(path, "/estop", 100, lambda k: 40 <= k < 60 if k < 80 else None)

    class Rows:
        def __init__(self):
            self.rows = []

        def tick(self, k):
            self.rows.append((round(k.t, 6), k.status, k.command[0]))

        def close(self, ok):
            pass

    def run(**options):
        sink = Rows()
        result = replay(path, Policy.load(default_policy_path("cartpole"), spec=spec), spec,
                        options=ReplayOptions(**options), sinks=[sink])
        return result, sink.rows

    result, rows = run()
    stopped = [t for t, status, _ in rows if status == SAFE_STOP]
    assert stopped == [0.4, 0.44, 0.48, 0.52, 0.56]  # ticks every 40 ms; engaged from 0.40 to before 0.60
    assert all(c == 0.0 for _, s, c in rows if s == SAFE_STOP) and result.faulted_ticks == 5
    assert any("e-stop: /estop (80 messages)" in n for n in result.notes)
    assert run(estop_topic="/other")[0].faulted_ticks == 0  # another topic: not an e-stop
    _, rows = run(estop_timeout=0.05)  # the source stops at 0.79 s: silent from 0.84 s on
    assert [t for t, s, _ in rows if s == SAFE_STOP] == stopped + [0.84, 0.88, 0.92, 0.96]
    with pytest.raises(BagError, match="e-stop timeout"):
        run(estop_timeout=float("nan"))
    _, rows = run(estop_required=True)  # engaged until the first message (false at t = 0) is applied
    assert rows[0][1] == STEPPED


def test_recorded_commands_of_another_type_are_counted_not_just_noted(tmp_path):
    """The spec's command topic in the bag with another type (or a damaged type name, as the long fuzz run
    found): its messages are not compared, and the replay counts them as skipped instead of passing for a
    whole read."""
    from liquid_control.core.policy import Policy
    from liquid_control.core.resources import default_policy_path
    from liquid_control.core.spec import load_spec

    spec = load_spec("cartpole")
    path = tmp_path / "other_type"
    _bool_beside_joint_states(path, "/effort_controller/commands", 20, lambda k: True if k % 4 == 0 else None)
    result = replay(path, Policy.load(default_policy_path("cartpole"), spec=spec), spec)
    assert result.stats.skipped_total == 5 and result.comparison is None
    assert any("type 'std_msgs/msg/Bool', not the spec's std_msgs/msg/Float64MultiArray: not compared" in line
               for line in result.lines())
