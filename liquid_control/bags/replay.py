"""Offline replay: run a policy over a recorded bag as the controller node would have run it.

The same parts as the node, fed from the bag instead of live topics:
  * observations: core.observation.ObservationAssembler, updated with each recorded sensor message;
  * the tick: core.control.ControlLaw, the node's control law (dt gaps, soft start, stale and invalid
    sensors, the safe command, policy failures), with an e-stop topic in the bag (std_msgs/Bool,
    `estop_topic`, default /estop) honoured as the node honours it;
  * timing: ticks on core.schedule's absolute schedule in bag time, t_k = t_0 + k * period (t_0: the
    first replayed sensor message), and dt is the bag time between ticks. Every message stamped at or
    before t_k is applied before tick k.

Ticks `recorded` instead: one tick at each recorded command message (the recorded controller's own
ticks; dt = the time between them), so its command is compared with the policy's like for like.

Time base (bags/timebase.py): `receive` uses rosbag2's log time (when the recorder received the
message: what a node on that machine saw); `header` uses header.stamp (messages are re-ordered by stamp
within a bounded window; ones later than the window are counted and dropped), and puts messages without
a header (a Float64MultiArray command) on the senders' clock: log time + the clock offset seen through
the stamped topics, so a sensor clock that is off the recorder's neither drops samples nor shifts the
comparison with the recorded commands.

What is replayed is what the bag holds: a whole-bag replay (no start offset, no duration) reads from the
storage's first message whatever metadata.yaml says the start is, and fails, naming the topics, when it
read fewer messages than metadata.yaml or the storage counts (allow_partial / --allow-partial accepts that
and reports it; recover implies it). A gap of more than max_gap between consecutive messages (default
100 sensor timeouts, at least 10 s) ends the replay with a one-line error before it ticks through it (a
damaged timestamp or a clock jump would otherwise produce hours of ticks). JointStates that name none of
the spec's joints are counted skips with the names they carry; a replay in which every message of a
sensor topic was skipped fails with that reason instead of reporting zero policy steps.

Streaming: messages are read one at a time (or one MCAP chunk), outputs are written as ticks happen, and
the plot keeps a bounded, evenly decimated trace, so memory does not grow with the bag. Deterministic:
no wall clock, no randomness, floats written with repr (round-trip exact): same bag and model, same
bytes out.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from liquid_control.bags.codecs import command_vector
from liquid_control.bags.io import BagError, BagReader, check_max_gap, normalize_topic
from liquid_control.bags.replay_outputs import BagSink, CsvSink, PlotSink, ReplayTick, hidden_state
from liquid_control.bags.replay_results import ErrorStats, ReplayResult, TopicTiming
from liquid_control.bags.timebase import TIME_BASES, HeaderClock, header_clock_notes, in_time_order
from liquid_control.core.command import CommandPipeline
from liquid_control.core.control import SAFE_FAULT, SAFE_STOP, STEPPED, ControlLaw, EStop, StepPolicy
from liquid_control.core.observation import Fault, ObservationAssembler
from liquid_control.core.schedule import Schedule
from liquid_control.core.spec import JOINT_STATE, RobotSpec

TICK_SOURCES = ("schedule", "recorded")
BOOL = "std_msgs/msg/Bool"  # the e-stop's type
MAX_TICKS = 100_000_000  # 55 hours of a 500 Hz loop: more is a broken time line, not a recording


# --------------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------------
def parse_remaps(items: list[str] | tuple[str, ...] | None) -> dict[str, str]:
    """['/robot/joint_states:=joint_states'] -> {'/robot/joint_states': '/joint_states'} (bag name ->
    the name the controller subscribes to, as `ros2 bag play --remap` renames recorded topics)."""
    out: dict[str, str] = {}
    for item in items or ():
        src, sep, dst = item.partition(":=")
        if not sep or not src.strip() or not dst.strip():
            raise BagError(f"remap {item!r} is not of the form RECORDED:=NEW")
        out[normalize_topic(src)] = normalize_topic(dst)
    return out


def recorded_name(remap: dict[str, str], topic: str) -> str:
    """The bag topic that a node would see as `topic` once `remap` (recorded -> new) is applied."""
    want = normalize_topic(topic)
    return next((src for src, dst in remap.items() if dst == want), want)


@dataclass(frozen=True)
class ReplayOptions:
    start_offset: float = 0.0  # seconds after the bag's first message (log time)
    duration: float | None = None  # seconds of log time to replay; None = to the end
    remap: dict[str, str] = field(default_factory=dict)  # recorded topic -> topic the controller uses
    time_base: str = "receive"
    ticks: str = "schedule"  # "schedule": spec rate from the first sensor message; "recorded": at each recorded command
    reorder_window: float = 0.5  # seconds; header time base only
    recover: bool = False  # read a truncated/damaged bag up to the damage (a partial read is then accepted)
    distro: str | None = None  # message definitions for topics the bag stores none for
    allow_partial: bool = False  # accept reading fewer messages than the bag says it holds (reported)
    max_gap: float | None = None  # seconds between consecutive messages that end the replay; None: default_max_gap(spec)
    # The node's e-stop input (its estop_topic / estop_required / estop_timeout parameters): std_msgs/Bool
    # messages on this topic in the bag hold the robot stopped, as they would have live.
    estop_topic: str = "/estop"
    estop_required: bool = False
    estop_timeout: float = 0.0  # seconds of bag time the e-stop source may stay silent; 0: no heartbeat


def default_max_gap(spec: RobotSpec) -> float:
    """The largest gap between consecutive replayed messages that is taken as a pause in the recording
    rather than a damaged timestamp or a clock jump: 100 sensor timeouts, at least 10 s (a robot paused
    for longer than that is better replayed in pieces with --start-offset / --duration)."""
    return max(10.0, 100.0 * spec.safety.sensor_timeout)


# --------------------------------------------------------------------------------------------------
# The replay
# --------------------------------------------------------------------------------------------------
def replay(bag_path: str | Path, policy: StepPolicy, spec: RobotSpec, *, options: ReplayOptions = ReplayOptions(),
           out_bag: str | Path | None = None, out_storage: str = "mcap", out_bag_version: int | str | None = None,
           with_bag_topics: bool = False,
           command_topic: str | None = None, csv: str | Path | None = None, plot: str | Path | None = None,
           progress: bool = False, sinks: list[Any] | None = None) -> ReplayResult:
    """Replay `bag_path` through `policy` under `spec`; see the module docstring. Raises BagError."""
    if options.time_base not in TIME_BASES:
        raise BagError(f"time base must be one of {TIME_BASES}, got {options.time_base!r}")
    if options.ticks not in TICK_SOURCES:
        raise BagError(f"ticks must be one of {TICK_SOURCES}, got {options.ticks!r}")
    if options.max_gap is not None:
        check_max_gap(options.max_gap)
    if not (options.estop_timeout >= 0.0 and math.isfinite(options.estop_timeout)):
        raise BagError(f"e-stop timeout must be a finite number of seconds >= 0, got {options.estop_timeout:g}")
    wall0 = time.perf_counter()
    result = ReplayResult()
    with BagReader(bag_path, distro=options.distro, recover=options.recover) as bag:
        result.stats = bag.stats
        remap = options.remap
        unknown = [src for src in remap if bag.topic(src) is None]
        if unknown:
            raise BagError(f"remap source {unknown[0]} is not a topic of bag {bag.path}")

        def recorded_as(topic: str) -> str:
            return recorded_name(remap, topic)

        asm = ObservationAssembler(spec)
        sensors = {recorded_as(t): t for t in asm.topics}  # bag topic -> spec topic
        bag.require({b: asm.msg_types[t] for b, t in sensors.items()}, "an observation topic of the spec")
        cmd_bag_topic = recorded_as(spec.action.topic)
        recorded_topic = None
        if (ct := bag.topic(cmd_bag_topic)) is not None:
            if ct.msgtype == spec.action.msg_type:
                recorded_topic = ct.name
            else:  # counted, not just noted: a damaged type name must not pass for a bag replayed whole
                result.stats.skip(ct.name, f"type {ct.msgtype!r}, not the spec's {spec.action.msg_type}: "
                                           "not compared", ct.count)
        estop_topic = None
        if (et := bag.topic(recorded_as(options.estop_topic or "/estop"))) is not None:
            if et.msgtype == BOOL:
                estop_topic = et.name
                result.notes.append(f"e-stop: {et.name} ({et.count} messages) holds the replayed controller "
                                    "stopped while engaged")
            else:
                result.notes.append(f"{et.name} has type {et.msgtype}, not {BOOL}: not taken as the e-stop")
        if options.ticks == "recorded" and recorded_topic is None:
            raise BagError(f"ticks at the recorded commands need {normalize_topic(cmd_bag_topic)} "
                           f"({spec.action.msg_type}) in bag {bag.path}")
        # The window, in log time.
        if options.start_offset < 0 or (options.duration is not None and options.duration <= 0):
            raise BagError("start offset must be >= 0 and duration > 0")
        if options.start_offset * 1e9 >= bag.end_ns - bag.start_ns:
            raise BagError(f"start offset {options.start_offset:g} s is beyond the bag's end ({bag.duration:.3f} s)")
        start_ns = bag.start_ns + int(round(options.start_offset * 1e9))
        stop_ns = None if options.duration is None else start_ns + int(round(options.duration * 1e9))

        period_ns = 1e9 / spec.rate_hz
        span_ns = (bag.end_ns if stop_ns is None else min(stop_ns, bag.end_ns)) - start_ns
        expected_ticks = int(span_ns / period_ns) + 1
        if options.ticks == "schedule" and expected_ticks > MAX_TICKS:  # would tick for hours or years
            raise BagError(f"the replayed window of {bag.path} spans {span_ns * 1e-9:.6g} s of log time "
                           f"({start_ns * 1e-9:.3f} .. {(start_ns + span_ns) * 1e-9:.3f} s): {expected_ticks:.3g} ticks at "
                           f"{spec.rate_hz:g} Hz (a message logged at time 0, by a recorder under use_sim_time before "
                           "its first /clock, or a clock jump?); narrow it with --start-offset / --duration")
        # Outputs.
        state_size = _state_size(policy)
        out_sinks: list[Any] = list(sinks or [])
        made: list[Any] = []
        try:
            if out_bag is not None:
                topic = normalize_topic(command_topic or spec.action.topic)
                copy = [t for t in bag.topics if with_bag_topics]
                if topic in copy:
                    topic = "/replay" + topic
                    result.notes.append(f"the bag already has {normalize_topic(spec.action.topic)}: replayed commands "
                                        f"written on {topic}")
                made.append(BagSink(Path(out_bag), spec, bag, storage=out_storage, version=out_bag_version,
                                    command_topic=topic, copy_topics=copy))
                result.notes += made[-1].notes
                result.outputs["bag"] = Path(out_bag)
            if csv is not None:
                made.append(CsvSink(Path(csv), spec, state_size))
                result.outputs["csv"] = Path(csv)
            if plot is not None:
                made.append(PlotSink(Path(plot), spec, expected_ticks))
                result.outputs["plot"] = Path(plot)
        except BaseException:
            for s in made:
                s.close(False)
            raise
        out_sinks += made
        ok = False
        try:
            read = _run(bag, policy, spec, asm, sensors, recorded_topic, estop_topic, start_ns, stop_ns, options,
                        out_sinks, result, progress, with_bag_topics)
            _check_complete(bag, read, options, result)
            if result.ticks == 0:  # nothing to show: no output files either
                raise BagError(f"no {', '.join(sensors)} messages in the replayed window of {bag.path}")
            if result.steps == 0 and (why := _why_no_step(result, sensors)):
                raise BagError(f"no policy step in the replay of {bag.path}: {why}")
            ok = True
        finally:
            for s in out_sinks:
                s.close(ok)
    result.wall = time.perf_counter() - wall0
    return result


def _check_complete(bag: BagReader, topics: list[str], options: ReplayOptions, result: ReplayResult) -> None:
    """Whole-bag replays: every message the bag holds on the topics read was read, or a BagError naming
    the shortfall per topic (recover / allow_partial: reported in result.partial instead). A window
    (start offset, duration) reads part of the bag by design: not compared."""
    if options.start_offset or options.duration is not None:
        return
    result.partial = bag.shortfall(topics)
    if result.partial and not (options.allow_partial or options.recover):
        raise BagError(f"read fewer messages than bag {bag.path} holds: {'; '.join(result.partial)} "
                       "(--allow-partial accepts a partial read)")


def _why_no_step(result: ReplayResult, sensors: dict[str, str]) -> str | None:
    """Why not a single policy step ran, when every message of a sensor topic was skipped."""
    for topic in sensors:
        reasons = [(n, r) for (t, r), n in result.stats.skipped.items() if t == topic]
        if reasons and result.stats.by_topic.get(topic, 0) <= sum(n for n, _ in reasons):
            n, reason = max(reasons)
            return f"every {topic} message was skipped ({n}x: {reason})"
    return None


def _state_size(policy: Any) -> int:
    h = hidden_state(policy)
    return 0 if h is None else int(h.size)


class _Loop:
    """The controller's tick loop on bag time (see the module docstring): core.control's ControlLaw fed
    from the bag's messages, ticked on core.schedule's deadlines or at the recorded commands."""

    def __init__(self, policy: StepPolicy, spec: RobotSpec, asm: ObservationAssembler, sensors: dict[str, str],
                 recorded_topic: str | None, sinks: list[Any], result: ReplayResult, options: ReplayOptions,
                 estop_topic: str | None, max_gap: float = math.inf):
        self.policy, self.spec, self.asm, self.sensors = policy, spec, asm, sensors
        self.max_gap, self.max_gap_ns = max_gap, max_gap * 1e9
        self.last_seen: int | None = None  # time of the previous message (any topic)
        # per spec topic: the joints its JointState messages must name
        self.joints = {t: list(dict.fromkeys(n for e in spec.observation if e.topic == t and e.msg_type == JOINT_STATE
                                             for n in e.names)) for t in asm.topics}
        self.on_recorded = options.ticks == "recorded"  # tick at each recorded command instead of on the schedule
        self.recorded_topic, self.estop_topic, self.result = recorded_topic, estop_topic, result
        self.tick_sinks = [s.tick for s in sinks]
        self.period = 1.0 / spec.rate_hz
        pipeline = CommandPipeline(spec.action, soft_start=spec.safety.soft_start,
                                   safe_behaviour=spec.safety.safe_behaviour)
        self.law = ControlLaw(policy, pipeline, self.period, spec.safety.sensor_timeout, spec.obs_size)
        self.estop = EStop(required=options.estop_required, timeout=options.estop_timeout)
        self.schedule = Schedule(1e9 / spec.rate_hz)
        self.errors = ErrorStats(spec.action_size)
        self.recorded: np.ndarray | None = None
        self.t0: int | None = None  # first tick = the first sensor message: the replay's time zero
        self.prev_tick: int | None = None
        self.last_event = 0
        self.first_tick: int | None = None

    def event(self, t_ns: int, topic: str, msg: Any) -> None:
        """A message at time t_ns: first the ticks due strictly before it, then the message."""
        last, self.last_seen = self.last_seen, t_ns
        if last is not None and t_ns - last > self.max_gap_ns:
            raise BagError(f"a gap of {(t_ns - last) * 1e-9:.6g} s between messages (at {last * 1e-9:.6f} s, before "
                           f"{topic} at {t_ns * 1e-9:.6f} s) is over --max-gap {self.max_gap:g} s: a damaged "
                           "timestamp or a clock jump? (--max-gap S allows longer gaps; --start-offset / "
                           "--duration replay around it)")
        sensor = self.sensors.get(topic)
        if self.t0 is None:
            if sensor is None:
                self._other(t_ns, topic, msg, tick=False)
                return
            self.t0 = t_ns
            self.schedule.start(t_ns, first=0)
        if not self.on_recorded:
            schedule = self.schedule
            while schedule.next_ns < t_ns:
                self.tick(schedule.next_ns)
                schedule.advance()
        self.last_event = t_ns
        if sensor is None:
            self._other(t_ns, topic, msg, tick=self.on_recorded)
            return
        ignored = self.asm.ignored
        err = self.asm.update(sensor, msg, (t_ns - self.t0) * 1e-9)
        if err is not None:
            self.result.stats.skip(topic, f"does not fit the spec: {err}")
        elif self.asm.ignored != ignored:  # a JointState naming none of the spec's joints (another publisher's?)
            names = list(getattr(msg, "name", ()))
            shown = names[:8] + (["..."] if len(names) > 8 else [])
            self.result.stats.skip(topic, f"joint_states messages name joints {shown}; the spec needs {self.joints[sensor]}")

    def finish(self) -> None:
        """The ticks up to and including the last message's time."""
        if self.t0 is not None and not self.on_recorded:
            while self.schedule.next_ns <= self.last_event:
                self.tick(self.schedule.next_ns)
                self.schedule.advance()

    def _other(self, t_ns: int, topic: str, msg: Any, tick: bool) -> None:
        """An e-stop message, or a recorded command (where the recorded controller ticked: `tick` there)."""
        if topic == self.estop_topic:
            self.estop.message(bool(msg.data), t_ns * 1e-9)
            return
        v = command_vector(msg, self.spec)
        if v is None:
            self.result.stats.skip(topic, "recorded command does not fit the spec's action")
            return
        self.recorded = v
        if tick:
            self.tick(t_ns)

    def tick(self, t_ns: int) -> None:
        r = self.result
        if self.first_tick is None:
            self.first_tick = t_ns
        dt = self.period if self.prev_tick is None else (t_ns - self.prev_tick) * 1e-9
        self.prev_tick = t_ns
        now = (t_ns - self.t0) * 1e-9
        stop = self.estop.check(t_ns * 1e-9)[0] if self.estop.active else None
        obs, fault = self.asm.assemble(now)
        out = self.law.update(now, dt, obs, fault, stop)
        if out.action is not None:
            r.steps += 1
        if out.status == STEPPED:
            if self.recorded is not None:
                self.errors.add(out.command, self.recorded)
        else:
            if out.status != SAFE_FAULT:
                fault = Fault("stop", "(e-stop)", out.reason) if out.status == SAFE_STOP else \
                    Fault("invalid", "(policy)", out.reason)
            r.faulted_ticks += 1
            if r.first_fault is None:
                r.first_fault = f"{fault} at t={now:.3f} s"
        r.ticks += 1
        if self.tick_sinks:
            tick = ReplayTick(t_ns, now, obs, fault, out.action, out.command, self.recorded,
                        hidden_state(self.policy) if out.action is not None else None, out.status)
            for f in self.tick_sinks:
                f(tick)


def _run(bag: BagReader, policy: StepPolicy, spec: RobotSpec, asm: ObservationAssembler, sensors: dict[str, str],
         recorded_topic: str | None, estop_topic: str | None, start_ns: int, stop_ns: int | None, options: ReplayOptions,
         sinks: list[Any], result: ReplayResult, progress: bool, with_bag_topics: bool) -> list[str]:
    """Replays the window; returns the topics read."""
    max_gap = default_max_gap(spec) if options.max_gap is None else options.max_gap
    loop = _Loop(policy, spec, asm, sensors, recorded_topic, sinks, result, options, estop_topic, max_gap=max_gap)
    event = loop.event
    raw_sinks = [s.raw for s in sinks if hasattr(s, "raw")]
    wanted = set(sensors) | {t for t in (recorded_topic, estop_topic) if t}
    topics = list(bag.topics) if with_bag_topics else sorted(wanted)
    bar = None
    if progress:
        from tqdm import tqdm

        total = sum(bag.topics[t].count for t in topics)
        bar = tqdm(total=total, unit="msg", unit_scale=True, desc="replay", mininterval=0.5, leave=False)
    n = 0
    decode = bag.decode
    timing = {t: TopicTiming(t) for t in sorted(wanted)}

    def decoded() -> Iterator[tuple[int, str, Any]]:
        nonlocal n
        # from the start of the storage when no offset is asked (whatever metadata.yaml says the start is)
        for raw in bag.raw_messages(topics, start_ns if options.start_offset else None, stop_ns):
            n += 1
            if bar is not None and not n & 2047:
                bar.update(2048)
            for f in raw_sinks:
                f(raw)
            if raw.topic not in wanted:
                continue
            msg = decode(raw)
            if msg is None:
                continue
            timing[raw.topic].add(raw.log_time_ns, msg)
            yield raw.log_time_ns, raw.topic, msg

    window_ns = int(options.reorder_window * 1e9)
    clock = HeaderClock(window_ns) if options.time_base == "header" else None
    if clock is None:  # receive time: the bag's order as it is (no generator between: the 500 Hz path)
        for t, topic, msg in decoded():
            event(t, topic, msg)
    else:
        for t, topic, msg in in_time_order(decoded(), options.time_base, window_ns, clock):
            event(t, topic, msg)
    if clock is not None:
        if clock.dropped:
            result.stats.skip("(all)", f"header stamp older than the {options.reorder_window:g} s reorder window",
                              clock.dropped)
        result.notes += header_clock_notes(clock)
    loop.finish()
    if bar is not None:
        bar.update(n & 2047)
        bar.close()
    result.messages = n
    result.timing = [t.line(start_ns) for t in timing.values() if t.n]
    result.span = 0.0 if loop.first_tick is None else (loop.prev_tick - loop.first_tick) * 1e-9
    if recorded_topic is not None:
        result.comparison = loop.errors.result(spec.action.names)
    return topics
