"""The controller's loop under use_sim_time: ticks driven by /clock, on the executor thread.

Sim time moves only when a /clock message arrives, and the executor thread is the one that handles it:
rclpy's TimeSource sets the clock from it. So the tick runs right there, once sim time reaches the
deadline, with no hand-off to another thread (a loop thread woken from the callback would pay a wake-up
and a GIL hand-over per tick, most of a 500 Hz lockstep tick; bench/bench_sim.py measures the loop).

How it hears of the new time: given the TimeSource's /clock subscription, it wraps that subscription's
callback: rclpy's own handler sets the clock, then the tick reads the time from the message. Where that
subscription is not found (rclpy keeps it in a private attribute), a jump callback on the clock does the
same with a little more work per /clock. Same times either way.

Deadlines come from core.schedule.Schedule in sim nanoseconds: the first /clock starts the epoch and the
first tick comes one period later; a deadline passed by a whole period or more is skipped and counted;
sim time going backwards (the simulation restarted) starts a new epoch.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

from rclpy.clock import Clock, JumpThreshold
from rclpy.duration import Duration

from liquid_control.core.schedule import Schedule


def clock_ns(clock: Clock) -> Callable[[], int]:
    """A function returning clock.now().nanoseconds without building an rclpy Time each call."""
    handle = clock.handle

    def now_ns() -> int:
        with handle:
            return handle.get_now().nanoseconds

    return now_ns


def time_source_subscription(node: Any) -> Any:
    """rclpy's /clock subscription of `node` (a private attribute of its TimeSource), or None."""
    return getattr(getattr(node, "_time_source", None), "_clock_sub", None)


class SimClockTicker:
    """Calls tick(now_ns, dt_ns, late_ns) at each deadline sim time reaches; overrun(n) for skipped ones,
    new_epoch() when sim time goes backwards, died(exc) if a tick raises (then it stops ticking)."""

    def __init__(self, clock: Clock, period_ns: int, tick: Callable[[int, int, int], None],
                 overrun: Callable[[int], None], new_epoch: Callable[[], None], died: Callable[[Exception], None],
                 clock_sub: Any = None):
        self._now_ns = clock_ns(clock)
        self._schedule = Schedule(period_ns)
        self._tick, self._overrun, self._new_epoch, self._died = tick, overrun, new_epoch, died
        self._last: int | None = None  # sim ns of the previous tick, or of the epoch's start
        # Ticks run on the executor thread, and so do lifecycle transitions, unless a caller drives the
        # node from another thread: the lock keeps a tick and close() apart either way.
        self._lock = threading.Lock()
        self._closed = False
        self._sub = self._set_time = self._handle = None
        if clock_sub is not None and callable(getattr(clock_sub, "callback", None)):
            self._sub, self._set_time = clock_sub, clock_sub.callback
            clock_sub.callback = self._on_clock
        else:
            self._handle = clock.create_jump_callback(
                JumpThreshold(min_forward=Duration(nanoseconds=1), min_backward=Duration(nanoseconds=-1),
                              on_clock_change=True),
                post_callback=self._on_jump)

    def _on_clock(self, msg: Any) -> None:
        self._set_time(msg)  # rclpy's TimeSource handler: the node's clock now reads msg.clock
        stamp = msg.clock
        self._on_time(stamp.sec * 1_000_000_000 + stamp.nanosec)

    def _on_jump(self, jump: Any) -> None:
        self._on_time(self._now_ns())

    def _on_time(self, now: int) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self._advance(now)
            except Exception as exc:  # a bug must not leave the robot on its last command
                self._closed = True
                self._died(exc)

    def _advance(self, now: int) -> None:
        if now <= 0:  # no /clock yet
            return
        last = self._last
        if last is None or now < last:  # the first /clock, or sim time went backwards: a new epoch
            if last is not None:
                self._new_epoch()
            self._last = now
            self._schedule.start(now)
            return
        if not self._schedule.due(now):
            return
        late, skipped = self._schedule.take(now)
        if skipped:
            self._overrun(skipped)
        self._tick(now, now - last, late)
        self._last = now

    def close(self) -> None:
        with self._lock:
            self._closed = True
        if self._sub is not None:
            self._sub.callback = self._set_time
        else:
            self._handle.unregister()
