"""Replay = the node: a bag with NaN samples, a stale sensor, an e-stop and a dt gap, played to a live
controller under sim time (`liquid-control play --clock`), and replayed offline at the node's ticks;
the two command sequences are identical, fault segments included.

Both run core.control.ControlLaw; what can differ is only what the node was given over DDS. Two facts of
a live graph under sim time are modelled in the offline input, not papered over:
  * the node receives an instant's messages before that instant's /clock, so it stamps them with the
    previous instant's sim time (its sensor ages are one sample older than the bag's log times say):
    the offline bag logs each message at the previous instant (+2 ns, after the command of the tick there);
  * the node's /clock subscription is best effort: a /clock it missed moves its tick to the next
    instant, so offline replay ticks where the node ticked (ticks="recorded", at its commands).
  * on a loaded machine a sample may reach the node after the /clock of its instant: the node ticks on
    the sample before (its ~/step_debug record says which, by header stamp), and the offline bag logs
    that sample just after the tick.
What remains is an e-stop message handled after its /clock: from there to the next tick where both were
safe (a zeroed state, the same safe command), the two may part; the test requires those to be rare and
everything else identical.
"""
from __future__ import annotations

import numpy as np

from controller_fixtures import make_artifact, parse_debug
from liquid_control.bags.io import BAG_COMMAND_QOS, BagWriter, distro_typestore, open_bag
from liquid_control.bags.replay import ReplayOptions, replay
from liquid_control.core.control import SAFE_FAULT, SAFE_STOP, STEPPED
from liquid_control.core.spec import load_spec
from ros_helpers import Collector, NodeProcess, Probe, console_script, ros_params

SPEC = load_spec("cartpole")  # 25 Hz, sensor_timeout 0.2 s, soft start 0.5 s, safe value 0
SAMPLE_NS = 10_000_000  # 100 Hz samples: every tick (40 ms) lands on a sample instant
START_NS = 1_700_000_000_000_000_000
# (from s, to s, what): the segments of the bag
NAN = (1.0, 1.2)  # joint_states with NaN positions: invalid, ERROR
SILENT = (2.0, 2.5)  # no joint_states (the e-stop heartbeat goes on, so does /clock): stale
ESTOP = (3.5, 4.0)  # e-stop engaged
GAP = (5.0, 6.0)  # nothing at all: sim time jumps by 1 s, a dt gap
END = 7.0


def _in(t: float, seg: tuple[float, float]) -> bool:
    return seg[0] <= t < seg[1]


def _write_bag(path, shift_to_previous_instant: bool = False, commands=(), late=frozenset(), first_ns: int = 0):
    """The faulty bag (log time = stamp); or, shifted, as the node received it: each message logged at
    the previous instant + 2 ns, those of the instants in `late` (ns) at the instant + 2 ns (they reached
    the node after its tick there), with `commands` [(log ns, value)] added."""
    ts = distro_typestore("kilted")
    T = ts.types
    JointState, Header, Time = T["sensor_msgs/msg/JointState"], T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]
    Bool = T["std_msgs/msg/Bool"]
    F64, Layout = T["std_msgs/msg/Float64MultiArray"], T["std_msgs/msg/MultiArrayLayout"]
    rng = np.random.default_rng(5)
    pending = sorted(commands)
    with BagWriter(path, typestore=ts) as bag:
        bag.add_topic("/joint_states", "sensor_msgs/msg/JointState", qos=(BAG_COMMAND_QOS,))  # reliable: no drops
        bag.add_topic("/estop", "std_msgs/msg/Bool", qos=(BAG_COMMAND_QOS,))
        if commands:
            bag.add_topic(SPEC.action.topic, SPEC.action.msg_type, qos=(BAG_COMMAND_QOS,))
        previous = None
        for k in range(int(END * 1e9) // SAMPLE_NS):
            t = k * SAMPLE_NS * 1e-9
            if _in(t, GAP):
                continue
            stamp = START_NS + k * SAMPLE_NS
            log = stamp if not shift_to_previous_instant or previous is None else previous + 2
            if shift_to_previous_instant and stamp in late:
                log = stamp + 2
            previous = stamp
            while pending and pending[0][0] <= log:
                c_ns, c = pending.pop(0)
                bag.write_msg(SPEC.action.topic, c_ns, F64(layout=Layout(dim=[], data_offset=0), data=np.array([c])))
            bag.write_msg("/estop", log, Bool(data=_in(t, ESTOP)))
            pos, vel = rng.normal(0.0, 0.1, 2), rng.normal(0.0, 0.3, 2)  # drawn for every instant: the same
            if _in(t, SILENT) or stamp < first_ns:  # values whatever is left out (first_ns: samples sent
                continue  # before the node was listening)
            if _in(t, NAN):
                pos[0] = np.nan
            bag.write_msg("/joint_states", log, JointState(
                header=Header(stamp=Time(sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id=""),
                name=["slider", "hinge"], position=pos, velocity=vel, effort=np.zeros(0)))
        for c_ns, c in pending:
            bag.write_msg(SPEC.action.topic, c_ns, F64(layout=Layout(dim=[], data_offset=0), data=np.array([c])))
    return path


class _Ticks:
    def __init__(self):
        self.rows = []

    def tick(self, k):
        self.rows.append((k.t_ns, k.status, k.obs.astype(np.float32), k.command[0]))

    def close(self, ok):
        pass


def test_replay_reproduces_the_live_node_on_a_bag_with_every_kind_of_fault(tmp_path):
    from liquid_control.core.policy import Policy
    from std_msgs.msg import Float64MultiArray

    played = _write_bag(tmp_path / "faulty")
    model = make_artifact(tmp_path / "m.onnx", seed=4)
    controller = console_script("controller", *ros_params(model=str(model), autostart=True, use_sim_time=True,
                                                          step_debug=True))
    player = console_script("liquid-control", "play", str(played), "--clock", "--wait-for-subscribers", "30")
    with Probe("replay_eq_probe") as probe, NodeProcess(controller, name="controller", log_dir=tmp_path) as node:
        debug = Collector()
        sub = probe.node.create_subscription(Float64MultiArray, "/liquid_controller/step_debug", debug, 1000)
        node.wait_for_output(r"active: commanding", 30.0)
        probe.wait_for(lambda: sub.get_publisher_count() > 0, 30.0, "the probe matched to ~/step_debug", node)
        with NodeProcess(player, name="play", log_dir=tmp_path) as play:
            assert play.wait_exit(60.0) == 0, play.tail()
        last = START_NS * 1e-9 + END - 0.05
        probe.wait_for(lambda: any(parse_debug(m).time >= last for _, m in debug.snapshot()), 20.0,
                       "the controller's tick at the end of the bag", node)
        ticks = [parse_debug(m) for _, m in debug.snapshot()]
    assert [r.seq for r in ticks] == list(range(len(ticks)))  # every tick, in order

    # Offline: the bag as the node received it, with the node's commands at its ticks (+1 ns).
    tick_ns = [START_NS + round((r.time * 1e9 - START_NS) / SAMPLE_NS) * SAMPLE_NS for r in ticks]
    assert all(abs(n * 1e-9 - r.time) < 1e-6 for n, r in zip(tick_ns, ticks))
    # A sample the node had not received when it ticked at its instant (it ticked on the one before: its
    # newest sensor stamp is older) reached it after that tick.
    late = {n for n, r in zip(tick_ns, ticks) if round(r.sensor_stamp * 1e9 / SAMPLE_NS) * SAMPLE_NS < n}
    # Samples published before the node's best-effort subscription had matched the player never reached it.
    first_ns = min(round(r.sensor_stamp * 1e9 / SAMPLE_NS) * SAMPLE_NS for r in ticks if r.sensor_stamp > 0)
    received = _write_bag(tmp_path / "received", shift_to_previous_instant=True, late=late, first_ns=first_ns,
                          commands=[(n + 1, r.command[0]) for n, r in zip(tick_ns, ticks)])
    offline = _Ticks()
    result = replay(received, Policy.load(model, spec=SPEC), SPEC, options=ReplayOptions(ticks="recorded"),
                    sinks=[offline])
    assert result.ticks == len(ticks) and "e-stop: /estop" in " ".join(result.notes)

    # Tick by tick: in sync while every tick since the last one where both were safe saw the same input.
    in_sync, synced = [], True
    for r, (t_ns, status, obs, command) in zip(ticks, offline.rows):
        same_input = r.status == status and (status != STEPPED or np.array_equal(r.obs.astype(np.float32), obs))
        synced = (synced or (r.status != STEPPED and status != STEPPED)) and same_input
        if synced:
            in_sync.append(r)
            assert r.command[0] == command, (t_ns, r, command)  # identical, not close
    assert len(in_sync) >= 0.95 * len(ticks), f"{len(in_sync)} of {len(ticks)} ticks in sync (late: {sorted(late)})"

    # ... and the identical ticks cover every kind of fault, each with the node's behaviour.
    def when(r):
        return r.time - START_NS * 1e-9

    kinds = {
        "NaN sample": [r for r in in_sync if _in(when(r), NAN) and r.status == SAFE_FAULT],
        "stale sensor": [r for r in in_sync if _in(when(r), (SILENT[0] + 0.25, SILENT[1])) and r.status == SAFE_FAULT],
        "e-stop": [r for r in in_sync if _in(when(r), ESTOP) and r.status == SAFE_STOP],
        "dt gap": [r for r in in_sync if _in(when(r), (GAP[1], GAP[1] + 0.05)) and r.dt > 0.9],
        "restart after the gap": [r for r in in_sync if _in(when(r), (GAP[1], GAP[1] + 0.2))
                                  and r.status == STEPPED and r.fresh and abs(r.dt - SPEC.period) < 1e-9],
    }
    assert all(kinds.values()), {k: len(v) for k, v in kinds.items()}
    for r in kinds["NaN sample"] + kinds["stale sensor"] + kinds["e-stop"]:
        assert r.command[0] == 0.0
    # the soft start after each segment: the first good command is a fraction of a full one
    assert all(abs(r.command[0]) < SPEC.action.scale[0] * SPEC.period / SPEC.safety.soft_start + 1e-12
               for r in kinds["restart after the gap"])
