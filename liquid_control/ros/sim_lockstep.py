"""The sim bridge's lockstep loop: the bridge owns /clock and steps only when the controller has answered.

Each tick: publish the sensors and then /clock (t), wait for the command that answers it, apply it, advance
one period. Until the first command arrives the physics is frozen ("pre-roll"): the controller starts its
epoch at the first /clock it sees and ticks one period later (controller/sim_clock.py), so the first instant
goes out once, and each later one is published again every PREROLL_WAIT_S for PREROLL_HOLD_S before time
moves one period: a controller slow to answer its first tick (starting up on a loaded machine) must not find
time run ahead of it when it answers. So the controller starting late or stalling changes nothing: the run
is a deterministic function of the seed and the commands. A command that does not come within
lockstep_timeout (wall seconds) is counted and the last one held.
"""
from __future__ import annotations

import time
from typing import Any

from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from liquid_control.core.cdr import ClockCdr
from liquid_control.ros.qos import CLOCK_QOS

PREROLL_WAIT_S = 0.02  # wall wait between pre-roll re-sends of one instant, before the first command
PREROLL_HOLD_S = 0.5  # wall seconds an unanswered pre-roll instant is held before time moves one period
SPIN_EVERY_S = 0.1  # wall seconds between executor spins (reset service, graph events)
MATCH_WAIT_S = 2.0  # wall wait, once a controller is there, for its readers and writer to match ours


class SubscriptionWaiter:
    """Waits on one subscription with a wait set made once, and takes its message (rclpy's own calls)."""

    def __init__(self, node: Node, sub: Any):
        from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

        # The properties read once: each is a Python call per tick otherwise.
        self.handle, self.msg_type, self.raw = sub.handle, sub.msg_type, sub.raw
        self.context_handle = node.context.handle
        with self.context_handle:
            self.wait_set = _rclpy.WaitSet(1, 0, 0, 0, 0, 0, self.context_handle)

    def wait_take(self, timeout: float) -> Any:
        """The next message, or None after `timeout` seconds without one. (No take before the wait: in
        lockstep the answer is hardly ever there yet, and the wait returns at once when it is.)"""
        handle, wait_set = self.handle, self.wait_set
        with handle, self.context_handle:
            wait_set.clear_entities()
            wait_set.add_subscription(handle)
            wait_set.wait(int(timeout * 1e9))
            info = handle.take_message(self.msg_type, self.raw)
        return None if info is None else info[0]


class LockstepLoop:
    """Drives a SimBridge in lockstep with its controller; made with the node (it publishes /clock)."""

    def __init__(self, bridge: Any):
        from rosgraph_msgs.msg import Clock

        self.bridge = bridge
        self._clock_cdr = ClockCdr()  # published as bytes: see liquid_control.core.cdr
        self.clock_pub = bridge.create_publisher(Clock, "/clock", CLOCK_QOS)
        self._waiter = SubscriptionWaiter(bridge, bridge.command_sub)
        self._last_spin = 0.0
        self._kept_ns = -1  # the last instant kept

    def run(self, executor: SingleThreadedExecutor) -> None:
        """Spins `executor` in this thread between ticks (no thread hand-off on the command's path: the round
        trip is the cost)."""
        bridge, stats, stop = self.bridge, self.bridge.stats, self.bridge.stop
        # Wait (bounded) until a controller is there to answer: its command publisher is matched.
        t0 = time.monotonic()
        while (bridge.wait_for_controller > 0 and bridge.count_publishers(bridge.spec.action.topic) == 0
               and not stop.is_set() and time.monotonic() - t0 < bridge.wait_for_controller):
            executor.spin_once(timeout_sec=0.01)
        # ... and matched both ways (DDS matches each reader and writer on its own, and a volatile sample sent
        # before its reader matched is lost): our command reader to its writer, its /clock and sensor readers
        # to ours. Otherwise a first answer can be lost, the pre-roll runs on and the node sees a jump in time.
        t1, ours = time.monotonic(), [self.clock_pub, *bridge.sensors.pubs]
        while (bridge.count_publishers(bridge.spec.action.topic) > 0
               and (bridge.command_sub.get_publisher_count() == 0
                    or any(p.get_subscription_count() == 0 for p in ours))
               and not stop.is_set() and time.monotonic() - t1 < MATCH_WAIT_S):
            executor.spin_once(timeout_sec=0.01)
        bridge.wall0 = time.monotonic()  # restarted at the first answered tick, below
        stats.startup_wait = bridge.wall0 - t0
        clock_ns = bridge.period_ns  # the controller ignores a zero /clock
        started = False
        held_since = time.monotonic()  # when pre-roll first published the instant clock_ns
        while not bridge.done():
            self._publish(clock_ns)
            w0 = time.monotonic()
            answered = self._wait_answer(executor, bridge.lockstep_timeout if started else PREROLL_WAIT_S)
            if started:
                stats.answer_wait += time.monotonic() - w0
            if stop.is_set():
                break
            bridge.take_command()
            if answered and not started:
                # The run's wall time starts with its first answered tick: the pre-roll before it (physics
                # frozen) is start-up, like the wait above.
                bridge.wall0 = time.monotonic()
                stats.startup_wait = bridge.wall0 - t0
            if answered:
                started = True
            elif started:
                stats.command_timeouts += 1
                bridge.warn(f"no command within {bridge.lockstep_timeout:g} s of /clock "
                            f"{clock_ns * 1e-9:.3f}; holding the last one")
            if started:
                bridge.advance()
            else:
                hold = PREROLL_HOLD_S if clock_ns > bridge.period_ns else 0.0
                if time.monotonic() - held_since < hold:
                    continue  # the same instant again
                held_since = time.monotonic()
                stats.preroll_ticks += 1
            clock_ns += bridge.period_ns
        if not stop.is_set():  # the final state too, as realtime mode publishes after every step
            self._publish(clock_ns)

    def close(self) -> None:
        """After the run: nothing runs on after it."""

    def _wait_answer(self, executor: SingleThreadedExecutor, timeout: float) -> bool:
        """Wait until a command (good or bad) arrives or `timeout` wall seconds pass.

        The command subscription is waited on alone, on a wait set built once: an executor's spin_once
        rebuilds its wait set from every entity each call, which would dominate a 500 Hz lockstep tick. The
        executor still runs, between waits, for the reset service and graph events: every SPIN_EVERY_S wall
        seconds.
        """
        bridge = self.bridge
        mono = time.monotonic
        end = mono() + timeout
        wait_take, stop, on_command = self._waiter.wait_take, bridge.stop, bridge.on_command
        while not bridge.answered and not stop.is_set():
            now = mono()
            left = end - now
            if left <= 0:
                break
            msg = wait_take(left if left < SPIN_EVERY_S else SPIN_EVERY_S)
            if msg is not None:
                on_command(msg)
            if now - self._last_spin >= SPIN_EVERY_S:
                self._last_spin = now
                executor.spin_once(timeout_sec=0)
        return bridge.answered

    def _publish(self, clock_ns: int) -> None:
        """Sensors first, then /clock: the controller's tick (woken by /clock) finds them already there.
        The bookkeeping waits until both are out: it overlaps the controller's work instead of delaying it.
        An instant published again in pre-roll is kept (trace, bag) once."""
        bridge = self.bridge
        bridge.publish_sensors(clock_ns)
        clock = self._clock_cdr.encode(clock_ns)
        self.clock_pub.publish(clock)
        if clock_ns == self._kept_ns:
            return
        self._kept_ns = clock_ns
        record = bridge.record
        record.keep()
        if record.bag is not None:
            record.log("/clock", clock)
