"""The sim bridge's realtime loop: MuJoCo steps one period per tick, paced by the wall clock against absolute
deadlines, and the messages are stamped with the node's clock. A tick that comes a whole period or more
late skips the periods it missed (the sim falls behind the wall clock) and counts them as overruns.
"""
from __future__ import annotations

import threading
import time
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor


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
        mono = time.monotonic
        period = bridge.period
        start = mono()
        bridge.publish(clock.now().nanoseconds)
        deadline = start + period
        while not bridge.done():
            delay = deadline - mono()
            if delay > 0:
                if stop.wait(delay):
                    break
            late = mono() - deadline
            if late >= period:  # skip whole missed periods (the sim falls behind the wall clock)
                missed = int(late // period)
                stats.overruns += missed
                deadline += missed * period
            bridge.take_command()
            bridge.advance()
            bridge.publish(clock.now().nanoseconds)
            deadline += period

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
