"""Recording: a robot's spec topics (and any others) from a live ROS 2 graph into a rosbag2 bag.

    liquid-control record --robot cartpole OUT [--storage sqlite3] [--duration S] [--topics extra ...]

Messages are stored as they arrive (raw CDR from `create_subscription(raw=True)`: no decoding), stamped
with the receive time on the node's clock (sim time under --use-sim-time; what arrives before the
first /clock is stamped with that first /clock time, never 0), with their message
definitions and the QoS their publishers offered, as `ros2 bag record` does, so `ros2 bag` and rosbags
read the result. A topic is subscribed when its first publisher appears (polled every 0.1 s), best
effort unless every publisher is reliable (a best-effort subscription matches any publisher; a reliable
one misses best-effort publishers entirely); its offered QoS is recorded from those publishers.

The bag is written under a temporary name and renamed into place when recording stops (Ctrl-C, the
duration, or `stop`), once the messages that had arrived but were not handled yet are taken and
written too; after a hard crash the partial MCAP is in the hidden `.OUT.partial-PID/` folder and reads
with --recover.

This is the ros layer's use of the bags layer (rosbag2 writing comes from bags.io); bags never imports
rclpy.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from liquid_control.bags.io import BagError, BagWriter, distro_typestore, normalize_topic


@dataclass
class RecordResult:
    path: Path
    counts: dict[str, int] = field(default_factory=dict)
    wall: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def rosbags_qos(profile: Any):
    """rosbags Qos (what rosbag2 stores as offered_qos_profiles) from an rclpy QoSProfile."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, LivelinessPolicy, ReliabilityPolicy
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    def t(d: Any) -> QosTime:
        ns = d.nanoseconds
        return QosTime(ns // 1_000_000_000, ns % 1_000_000_000)

    history = {HistoryPolicy.KEEP_LAST: QosHistory.KEEP_LAST, HistoryPolicy.KEEP_ALL: QosHistory.KEEP_ALL}
    reliability = {ReliabilityPolicy.RELIABLE: QosReliability.RELIABLE, ReliabilityPolicy.BEST_EFFORT: QosReliability.BEST_EFFORT}
    durability = {DurabilityPolicy.VOLATILE: QosDurability.VOLATILE, DurabilityPolicy.TRANSIENT_LOCAL: QosDurability.TRANSIENT_LOCAL}
    liveliness = {LivelinessPolicy.AUTOMATIC: QosLiveliness.AUTOMATIC, LivelinessPolicy.MANUAL_BY_TOPIC: QosLiveliness.MANUAL_BY_TOPIC}
    return Qos(history.get(profile.history, QosHistory.SYSTEM_DEFAULT), int(profile.depth),
               reliability.get(profile.reliability, QosReliability.SYSTEM_DEFAULT),
               durability.get(profile.durability, QosDurability.SYSTEM_DEFAULT),
               t(profile.deadline), t(profile.lifespan), liveliness.get(profile.liveliness, QosLiveliness.SYSTEM_DEFAULT),
               t(profile.liveliness_lease_duration), bool(profile.avoid_ros_namespace_conventions))


def record(out: str | Path, topics: dict[str, str | None], *, storage: str = "mcap", duration: float | None = None,
           use_sim_time: bool = False, bag_version: int | str | None = None, discover_timeout: float = 5.0,
           stop: threading.Event | None = None,
           on_ready: Callable[[], None] | None = None, log: Callable[[str], None] = print) -> RecordResult:
    """Record {topic: message type (None: take it from the graph)} until `stop`, `duration` s or Ctrl-C.
    `bag_version`: rosbag2 metadata version (bags/versions.py; None: the default)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    from liquid_control.core.errors import SpecError
    from liquid_control.ros.messages import message_class

    stop = stop or threading.Event()
    topics = {normalize_topic(t): ty for t, ty in topics.items()}
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("liquid_control_recorder", context=context,
                             parameter_overrides=[Parameter("use_sim_time", value=use_sim_time)])
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    result = RecordResult(Path(out))
    writer: BagWriter | None = None
    try:
        # Types from the graph where the caller does not know them (waits, bounded, for publishers).
        deadline = time.monotonic() + discover_timeout
        while any(ty is None for ty in topics.values()) and time.monotonic() < deadline and not stop.is_set():
            graph = dict(node.get_topic_names_and_types())
            for t, ty in topics.items():
                if ty is None and graph.get(t):
                    topics[t] = graph[t][0]
            time.sleep(0.05)
        missing = [t for t, ty in topics.items() if ty is None]
        if missing:
            raise BagError(f"no publisher of {', '.join(missing)} within {discover_timeout:g} s: cannot tell its type")
        writer = BagWriter(out, storage=storage, typestore=distro_typestore(None), version=bag_version)
        classes = {}
        for t, ty in topics.items():
            try:
                classes[t] = message_class(ty)
            except SpecError as exc:
                raise BagError(f"cannot record {t}: {exc}") from None
        pending = dict(topics)  # subscribed once a publisher appears, with QoS adapted to it
        subs: list[tuple[Any, Callable[[bytes], None]]] = []
        stamped = _ClockedWriter(node, writer, result)

        def subscribe_new() -> None:
            for t in list(pending):
                offered = [i.qos_profile for i in node.get_publishers_info_by_topic(t)]
                if not offered:
                    continue
                reliable = all(q.reliability == ReliabilityPolicy.RELIABLE for q in offered)
                qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000, durability=DurabilityPolicy.VOLATILE,
                                 reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)
                writer.add_topic(t, pending.pop(t), qos=[rosbags_qos(q) for q in offered])
                result.counts[t] = 0
                callback = stamped.callback(t)
                subs.append((node.create_subscription(classes[t], t, callback, qos, raw=True), callback))
                log(f"recording {t} ({topics[t]}, {'reliable' if reliable else 'best effort'})")

        log(f"recording to {out} ({storage}): waiting for publishers of {', '.join(topics)}")
        if on_ready is not None:
            on_ready()
        wall0 = last_poll = time.monotonic()
        subscribe_new()
        try:
            while not stop.is_set() and context.ok():
                now = time.monotonic()
                if duration is not None and now - wall0 >= duration:
                    break
                if pending and now - last_poll >= 0.1:
                    subscribe_new()
                    last_poll = now
                executor.spin_once(timeout_sec=0.02)
        except KeyboardInterrupt:  # Ctrl-C: keep what was recorded, as ros2 bag record does
            pass
        _take_waiting(subs)
        stamped.finish()
        if stamped.dropped:
            log(f"not recorded: {stamped.dropped} messages that arrived before any /clock (use_sim_time)")
        result.wall = time.monotonic() - wall0
        for t in pending:
            log(f"no publisher appeared on {t}: not in the bag")
        writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()
    return result


class _ClockedWriter:
    """Writes raw messages stamped with the node's clock at receipt.

    Under use_sim_time that clock reads 0 until the first /clock arrives, and a sim source publishes an
    instant's messages before its /clock (the sim bridge, `liquid-control play --clock`), so the very
    first messages come before any time is known. They are held (bounded) and written at the first
    /clock time, never at time 0 (a bag starting at 1970 would put a 56-year gap before its second
    message)."""

    MAX_EARLY = 10_000

    def __init__(self, node: Any, writer: BagWriter, result: RecordResult):
        self.clock, self.writer, self.result = node.get_clock(), writer, result
        self.early: list[tuple[str, bytes]] = []
        self.dropped = 0  # arrived before any /clock, beyond MAX_EARLY or with no /clock at all

    def callback(self, topic: str) -> Callable[[bytes], None]:
        def write(data: bytes) -> None:
            now = self.clock.now().nanoseconds
            if now == 0:
                if len(self.early) < self.MAX_EARLY:
                    self.early.append((topic, data))
                else:
                    self.dropped += 1
                return
            if self.early:
                self._write_early(now)
            self.writer.write(topic, now, data)
            self.result.counts[topic] += 1

        return write

    def _write_early(self, now: int) -> None:
        early, self.early = self.early, []
        for topic, data in early:
            self.writer.write(topic, now, data)
            self.result.counts[topic] += 1

    def finish(self) -> None:
        now = self.clock.now().nanoseconds
        if self.early and now:
            self._write_early(now)
        self.dropped += len(self.early)
        self.early = []


def _take_waiting(subs: list[tuple[Any, Callable[[bytes], None]]]) -> None:
    """Write the messages that arrived but whose callbacks have not run yet (stopping must not drop
    what the publishers already delivered: a reliable publisher counts them as acknowledged)."""
    for sub, callback in subs:
        with sub.handle:
            info = sub.handle.take_message(sub.msg_type, sub.raw)
            while info is not None:
                callback(info[0])
                info = sub.handle.take_message(sub.msg_type, sub.raw)
