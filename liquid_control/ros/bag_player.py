"""Live playback: republish a bag's messages on ROS 2 topics, paced by bag time.

    liquid-control play BAG [--rate R] [--loop] [--clock] [--topics T ...] [--remap a:=b] [--start-offset S]

Messages go out as recorded (raw CDR through `Publisher.publish(bytes)`: no decoding, no
re-serialisation), each at wall time start + (log time - first log time) / rate, against absolute
deadlines so pacing errors do not accumulate. With --clock, /clock carries bag time: the messages of one
instant (log time) are published first, then /clock advances to that instant, as the sim bridge does
(sensors, then /clock). A node under use_sim_time, such as the controller, ticks when /clock reaches
its deadline, so it then ticks on the sample of that instant, as offline replay does (every message at
or before t_k is applied before tick k), not on the one before it. --clock-hz adds /clock ticks between
instants. Publishers use the QoS the bag recorded as offered (reliable unless the recording says best
effort); playback waits until every played topic has a subscriber (bounded), as a controller that is
still starting would otherwise miss the first messages, and at the end waits (bounded) until the
subscribers have acknowledged what was published reliably, so the last messages are not lost with the
publisher.

What is played is what the bag holds: played whole (no --start-offset / --duration), every message that
metadata.yaml or the storage counts on a played topic must be published, else play fails naming the
topics (--allow-partial accepts it; --recover implies it); a bag whose storage already holds fewer
messages than metadata.yaml says is refused before anything is published. Publishers offer
metadata.yaml's QoS profiles, as `ros2 bag play` does, when the storage file records others (noted).
A gap of more than --max-gap (default 10 s) of bag time between consecutive messages ends playback
instead of sleeping through it (a damaged timestamp or a clock jump; --max-gap inf plays through).

This is the ros layer's use of the bags layer (rosbag2 reading comes from bags.io); bags never imports
rclpy.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from liquid_control.bags import census as bag_census
from liquid_control.bags.io import BagError, BagReader, check_max_gap

DEFAULT_MAX_GAP = 10.0  # seconds of bag time between consecutive messages (play has no robot spec)


@dataclass(frozen=True)
class PlayOptions:
    rate: float = 1.0
    loop: bool = False
    clock: bool = False
    clock_hz: float = 0.0  # /clock ticks between messages (0: only one per message)
    topics: tuple[str, ...] | None = None  # None: every topic
    remap: dict[str, str] = field(default_factory=dict)
    start_offset: float = 0.0
    duration: float | None = None
    wait_for_subscribers: float = 10.0  # seconds; 0: start at once
    min_subscribers: int = 1  # per played topic (e.g. 2: the controller and a recorder)
    # After the subscribers are seen, before the first message: discovery is not symmetric, and a reader can
    # learn of our writer a moment after our writer has matched it; what is published in between is lost on
    # best-effort topics (rosbag2's `ros2 bag play --delay` answers the same problem).
    delay: float = 0.2
    recover: bool = False
    allow_partial: bool = False  # accept publishing fewer messages than the bag says it holds (reported)
    max_gap: float = DEFAULT_MAX_GAP  # seconds of bag time between consecutive messages that end playback


@dataclass
class PlayResult:
    published: int = 0
    loops: int = 0
    wall: float = 0.0
    bag_seconds: float = 0.0
    topics: dict[str, str] = field(default_factory=dict)  # bag topic -> published name
    skipped_topics: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)  # per topic: fewer published than the bag holds (allowed)
    notes: list[str] = field(default_factory=list)  # what reading found (metadata disagreements, damage, skips)


def rclpy_qos(profiles: Any, depth_default: int = 10):
    """rclpy QoSProfile from the offered profiles rosbag2 recorded: what the original publishers offered
    (best effort if any of them was, transient local only if all were), reliable when nothing was
    recorded (a reliable publisher matches reliable and best-effort subscribers alike)."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rosbags.interfaces import QosDurability, QosReliability

    profiles = list(profiles or ())
    reliable = not any(p.reliability == QosReliability.BEST_EFFORT for p in profiles)
    latched = bool(profiles) and all(p.durability == QosDurability.TRANSIENT_LOCAL for p in profiles)
    depth = max([p.depth for p in profiles if p.depth > 0] or [depth_default])
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


def _time_msg(ns: int) -> Any:
    from builtin_interfaces.msg import Time

    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def play(bag_path: str | Path, options: PlayOptions = PlayOptions(), *, stop: threading.Event | None = None,
         log: Callable[[str], None] = print) -> PlayResult:
    """Play the bag until its end (or forever with loop), or until `stop` is set. Raises BagError."""
    import rclpy
    from rosgraph_msgs.msg import Clock

    from liquid_control.core.errors import SpecError
    from liquid_control.ros.messages import message_class

    if not options.rate > 0:
        raise BagError(f"playback rate must be > 0, got {options.rate:g}")
    check_max_gap(options.max_gap)
    stop = stop or threading.Event()
    result = PlayResult()
    whole = not options.start_offset and options.duration is None
    partial_ok = options.allow_partial or options.recover
    with BagReader(bag_path, recover=options.recover) as bag:
        if options.topics is None:
            names = list(bag.topics)
        else:
            names = [bag.require({t: None}, "asked to play")[t].name for t in options.topics]
        unknown = [src for src in options.remap if bag.topic(src) is None]
        if unknown:
            raise BagError(f"remap source {unknown[0]} is not a topic of bag {bag.path}")
        if whole and bag.metadata_census is not None and bag.storage_census is not None:
            short = bag_census.shortfall(bag.storage_census.counts, [bag.metadata_census], names, verb="the storage holds")
            if short and not partial_ok:  # known before anything is published
                raise BagError(f"bag {bag.path} holds fewer messages than its metadata.yaml says: {'; '.join(short)} "
                               "(--allow-partial plays what there is)")
        for note in bag.stats.notes:
            log(f"note: {note}")
        context = rclpy.Context()
        rclpy.init(context=context)
        node = rclpy.create_node("liquid_control_player", context=context)
        try:
            pubs = {}
            for name in names:
                t = bag.topics[name]
                try:
                    cls = message_class(t.msgtype)
                except SpecError:
                    result.skipped_topics.append(f"{name} ({t.msgtype}: no Python message package here)")
                    continue
                out = options.remap.get(name, name)
                pubs[name] = node.create_publisher(cls, out, rclpy_qos(t.qos))
                result.topics[name] = out
            if not pubs:
                raise BagError(f"nothing to play from {bag.path}: " + "; ".join(result.skipped_topics or ["no topics"]))
            from rclpy.qos import QoSProfile, ReliabilityPolicy

            clock_pub = node.create_publisher(Clock, "/clock", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)) \
                if options.clock else None
            _wait_for_subscribers(pubs, clock_pub, options, stop, result)
            if options.delay > 0:
                stop.wait(options.delay)
            for s in result.skipped_topics:
                log(f"not playing {s}")
            start_ns = bag.start_ns + int(round(options.start_offset * 1e9))
            stop_ns = None if options.duration is None else start_ns + int(round(options.duration * 1e9))
            wall0 = time.monotonic()
            try:
                while not stop.is_set():
                    _play_once(bag, pubs, clock_pub, options, start_ns if not whole else None, stop_ns, stop, result)
                    result.loops += 1
                    if result.loops == 1 and not stop.is_set():
                        _check_played(bag, list(pubs), whole, partial_ok, result)
                    if not options.loop or result.published == 0:
                        break
            finally:
                result.wall = time.monotonic() - wall0
                _wait_for_acks([*pubs.values(), *([clock_pub] if clock_pub is not None else [])], 5.0)
        finally:
            node.destroy_node()
            context.try_shutdown()
    return result


def _check_played(bag: BagReader, topics: list[str], whole: bool, partial_ok: bool, result: PlayResult) -> None:
    """After the first pass: nothing published is an error; played whole, fewer messages than the bag
    holds is one too (unless allowed: then reported in result.partial)."""
    result.notes = [line for line in bag.stats.lines()[1:] if line not in bag.stats.notes]  # skips, damage
    if result.published == 0:
        raise BagError(f"no message of {', '.join(topics)} in the played window of {bag.path}")
    if whole:
        result.partial = bag.shortfall(topics)
        if result.partial and not partial_ok:
            raise BagError(f"published fewer messages than bag {bag.path} holds: {'; '.join(result.partial)} "
                           "(--allow-partial accepts a partial playback)")


def _wait_for_subscribers(pubs: dict[str, Any], clock_pub: Any, options: PlayOptions, stop: threading.Event,
                          result: PlayResult) -> None:
    timeout, need = options.wait_for_subscribers, max(1, options.min_subscribers)
    if timeout <= 0:
        return
    deadline = time.monotonic() + timeout
    waiting = dict(pubs)
    if clock_pub is not None:
        waiting["/clock"] = clock_pub
    while waiting and not stop.is_set():
        waiting = {n: p for n, p in waiting.items() if p.get_subscription_count() < need}
        if not waiting:
            break
        if time.monotonic() > deadline:
            raise BagError(f"fewer than {need} subscriber(s) on {', '.join(result.topics.get(n, n) for n in waiting)} "
                           f"after {timeout:g} s (start the consumers first, or pass --wait-for-subscribers 0)")
        time.sleep(0.02)


def _play_once(bag: BagReader, pubs: dict[str, Any], clock_pub: Any, options: PlayOptions, start_ns: int,
               stop_ns: int | None, stop: threading.Event, result: PlayResult) -> None:
    from rosgraph_msgs.msg import Clock

    clock_msg = Clock()
    rate = options.rate
    tick_ns = int(1e9 / options.clock_hz) if clock_pub is not None and options.clock_hz > 0 else 0

    def publish_clock(ns: int) -> None:
        clock_msg.clock = _time_msg(ns)
        clock_pub.publish(clock_msg)

    wall0, t0 = time.monotonic(), None
    max_gap_ns = options.max_gap * 1e9
    instant = None  # log time of the messages published last; /clock reaches it once they are all out
    for raw in bag.raw_messages(list(pubs), start_ns, stop_ns):
        if stop.is_set():
            return
        t = raw.log_time_ns
        if t0 is None:
            t0 = t
        elif t - instant > max_gap_ns:  # before sleeping through it
            raise BagError(f"a gap of {(t - instant) * 1e-9:.6g} s of bag time between messages (at {instant * 1e-9:.6f} s, "
                           f"before {raw.topic} at {t * 1e-9:.6f} s) is over --max-gap {options.max_gap:g} s: a damaged "
                           "timestamp or a clock jump? (--max-gap S allows longer gaps; --start-offset / --duration "
                           "play around it)")
        elif t != instant and clock_pub is not None:
            publish_clock(instant)  # the previous instant is complete: sensors first, then /clock
            next_clock = instant + tick_ns
            while tick_ns and next_clock < t:  # --clock-hz ticks between instants, each at its own deadline
                _sleep_until(wall0 + (next_clock - t0) * 1e-9 / rate, stop)
                if stop.is_set():
                    return
                publish_clock(next_clock)
                next_clock += tick_ns
        _sleep_until(wall0 + (t - t0) * 1e-9 / rate, stop)
        if stop.is_set():
            return
        pubs[raw.topic].publish(raw.data if isinstance(raw.data, bytes) else bytes(raw.data))
        instant = t
        result.published += 1
        result.bag_seconds = (t - t0) * 1e-9
    if clock_pub is not None and instant is not None:
        publish_clock(instant)


def _wait_for_acks(pubs: list[Any], timeout: float) -> None:
    """Until the subscribers have acknowledged everything published reliably (bounded): destroying a
    publisher drops what it still holds for them."""
    from rclpy.duration import Duration

    deadline = time.monotonic() + timeout
    for p in pubs:
        p.wait_for_all_acked(Duration(nanoseconds=int(max(0.0, deadline - time.monotonic()) * 1e9)))


def _sleep_until(deadline: float, stop: threading.Event) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        stop.wait(delay)  # wakes at once on stop
