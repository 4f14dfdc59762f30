"""The sim bridge's realtime loop: MuJoCo steps one period per tick, paced by the wall clock against absolute
deadlines (core/schedule.py on the monotonic clock), and the messages are stamped with the node's clock. A
tick that comes a whole period or more late skips the periods it missed (the sim falls behind the wall
clock) and counts them as overruns.
"""
from __future__ import annotations

import threading
import time
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

from liquid_control.core.schedule import Schedule


class RealtimeLoop:
    """Drives a SimBridge against the wall clock; the executor spins in a thread of its own (commands,
    the reset service)."""

    def __init__(self, bridge: Any):
        self.bridge = bridge
        self._spinner: threading.Thread | None = None

    def run(self, executor: SingleThreadedExecutor) -> None:
        self._spinner = threading.Thread(target=_spin, args=(executor, self.bridge.stop), daemon=True)
        self._spinner.start()
        bridge, stats, stop = self.bridge, self.bridge.stats, self.bridge.stop
        clock = bridge.get_clock()
        mono_ns = time.monotonic_ns
        schedule = Schedule(bridge.period_ns)
        schedule.start(mono_ns())
        bridge.publish(clock.now().nanoseconds)
        while not bridge.done():
            delay_ns = schedule.next_ns - mono_ns()
            if delay_ns > 0 and stop.wait(delay_ns * 1e-9):
                break
            stats.overruns += schedule.take(mono_ns())[1]  # whole periods missed: the sim fell behind
            bridge.take_command()
            bridge.advance()
            bridge.publish(clock.now().nanoseconds)

    def close(self) -> None:
        """After the run (the bridge's stop set): the executor's thread ends."""
        if self._spinner is not None:
            self._spinner.join(timeout=2.0)


def _spin(executor: SingleThreadedExecutor, stop: threading.Event) -> None:
    try:
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.05)
    except ExternalShutdownException:
        pass
