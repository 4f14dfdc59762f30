"""Loop statistics and the /diagnostics report of the controller.

The loop thread records each tick into preallocated ring buffers (`LoopStats.record`: no allocation);
the diagnostics timer (about 1 Hz, executor thread) takes a snapshot of the ticks since the previous
report and turns it into one `diagnostic_msgs/DiagnosticStatus`.

Level, worst first, over the report window (a fault that came and went between two reports still shows):
  ERROR  the last sensor message was invalid (NaN/Inf, wrong length, missing joint) or the policy failed
  STALE  a sensor is missing or older than the timeout, or the node is active and the loop made no tick in
         the window (/clock stopped under use_sim_time, or the loop is hung): it is not commanding
  WARN   e-stop engaged, disabled through ~/enable, overruns, or achieved rate off by more than 5 %

Achieved rate = intervals between the window's ticks / their time span: a window starts at the previous
window's last tick (so n ticks make n intervals), except the first after `restart_window()` (activation,
a new sim epoch), which starts at its own first tick (n - 1 intervals).
  OK     commanding normally (or inactive: configured, not commanding)

Sensor-to-command latency = system time at the command's publish - header stamp of the newest stamped
sensor message: meaningful when the sensor's publisher stamps with this machine's clock (as the sim
bridge does); "n/a" without stamped sensors. Under use_sim_time it compares wall time with sim stamps
and is not reported.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import numpy as np

from liquid_control.core.control import ERROR, OK, STALE, WARN  # diagnostic_msgs levels
_RANK = {OK: 0, WARN: 1, STALE: 2, ERROR: 3}  # how bad, for "worst over the window"
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}


@dataclass
class Snapshot:
    """What the loop did since the previous snapshot."""

    ticks: int
    total_ticks: int
    overruns: int
    total_overruns: int
    achieved_hz: float
    dt_mean: float
    dt_std: float
    dt_max_dev: float
    late_p50: float
    late_p99: float
    late_max: float
    step_p50: float
    step_p99: float
    tick_p99: float
    late_over_half: int  # ticks later than half a period
    s2c_p50: float  # sensor-to-command latency (NaN without stamped sensors)
    s2c_p99: float
    safe_ticks: int
    level: int
    reason: str
    restarts: int = 0  # loop restarts (dt too large: state reset, soft start) in this window
    total_restarts: int = 0
    extra: dict[str, str] = field(default_factory=dict)


class LoopStats:
    """Per-tick timing, recorded by the loop thread; `snapshot()` from any thread."""

    def __init__(self, period: float, capacity: int = 4096):
        self.period = period
        self._cap = capacity
        self._dt = np.zeros(capacity)
        self._late = np.zeros(capacity)
        self._step = np.zeros(capacity)
        self._tick = np.zeros(capacity)
        self._s2c = np.full(capacity, np.nan)
        self._lock = threading.Lock()
        self.total_ticks = 0
        self.total_overruns = 0
        self.safe_ticks = 0
        self._last_total = 0
        self._last_overruns = 0
        self._last_safe = 0
        self.total_restarts = 0
        self._last_restarts = 0
        self._window_start: float | None = None  # loop time the window's intervals are counted from
        self._intervals = 0  # tick intervals since _window_start
        self._time = 0.0
        self._worst = (OK, "")

    def restart_window(self) -> None:
        """The next tick starts a new time base (activation, a new sim epoch): the rate is measured from it."""
        with self._lock:
            self._window_start = None
            self._intervals = 0

    def restarted(self) -> None:
        """Count a loop restart (a dt too large to step by: state reset, soft start)."""
        with self._lock:
            self.total_restarts += 1

    def record(self, now: float, dt: float, lateness: float, step_s: float, tick_s: float, safe: bool,
               s2c: float = math.nan) -> None:
        """One tick: loop time, dt, lateness past its deadline, policy step and whole-tick compute times,
        whether the command was the safe one, and the sensor-to-command latency (NaN if unknown)."""
        with self._lock:
            i = self.total_ticks % self._cap
            self._dt[i], self._late[i], self._step[i], self._tick[i] = dt, lateness, step_s, tick_s
            self._s2c[i] = s2c
            self.total_ticks += 1
            self.safe_ticks += safe
            self._time = now
            if self._window_start is None:
                self._window_start = now
            else:
                self._intervals += 1

    def overrun(self, missed: int) -> None:
        with self._lock:
            self.total_overruns += missed

    def flag(self, level: int, reason: str) -> None:
        """Remember the worst condition seen in this report window."""
        with self._lock:
            if _RANK[level] > _RANK[self._worst[0]]:
                self._worst = (level, reason)

    def snapshot(self, current_level: int, current_reason: str, expect_ticks: bool = False) -> Snapshot:
        """The window since the previous snapshot. `expect_ticks`: the loop should be ticking (active for
        at least a window): a window without a tick is then STALE, whatever the last tick said."""
        with self._lock:
            n = min(self.total_ticks - self._last_total, self._cap)
            end = self.total_ticks % self._cap
            idx = (np.arange(end - n, end)) % self._cap
            dt, late, step, tick = self._dt[idx], self._late[idx], self._step[idx], self._tick[idx]
            s2c = self._s2c[idx]
            elapsed = (self._time - self._window_start) if self._window_start is not None else 0.0
            intervals = self._intervals
            ticks = self.total_ticks - self._last_total
            overruns = self.total_overruns - self._last_overruns
            safe = self.safe_ticks - self._last_safe
            restarts = self.total_restarts - self._last_restarts
            worst = self._worst
            self._last_total, self._last_overruns, self._last_safe = self.total_ticks, self.total_overruns, self.safe_ticks
            self._last_restarts = self.total_restarts
            if self._window_start is not None:  # the next window's intervals start at this one's last tick
                self._window_start, self._intervals = self._time, 0
            self._worst = (OK, "")
        achieved = intervals / elapsed if elapsed > 0 and intervals > 0 else 0.0
        level, reason = current_level, current_reason
        if _RANK[worst[0]] > _RANK[level]:
            level, reason = worst[0], f"{worst[1]} (recovered)" if current_level == OK else worst[1]
        if expect_ticks and ticks == 0 and _RANK[level] < _RANK[STALE]:
            # The last tick's condition is old news: the controller is not commanding at all.
            level, reason = STALE, "no control ticks in the last window"
        if level == OK and n > 1:
            if overruns:
                level, reason = WARN, f"{overruns} overruns in the last report window"
            elif achieved and abs(achieved * self.period - 1.0) > 0.05:
                level, reason = WARN, f"achieved rate {achieved:.1f} Hz, target {1 / self.period:g} Hz"

        def pct(a: np.ndarray, q: float) -> float:
            return float(np.percentile(a, q)) if a.size else 0.0

        s2c = s2c[np.isfinite(s2c)]

        return Snapshot(
            ticks=ticks, total_ticks=self.total_ticks, overruns=overruns, total_overruns=self.total_overruns,
            achieved_hz=achieved, dt_mean=float(dt.mean()) if n else 0.0, dt_std=float(dt.std()) if n else 0.0,
            dt_max_dev=float(np.abs(dt - self.period).max()) if n else 0.0,
            late_p50=pct(late, 50), late_p99=pct(late, 99), late_max=float(late.max()) if n else 0.0,
            step_p50=pct(step, 50), step_p99=pct(step, 99), tick_p99=pct(tick, 99),
            late_over_half=int(np.count_nonzero(late > 0.5 * self.period)),
            s2c_p50=pct(s2c, 50) if s2c.size else math.nan, s2c_p99=pct(s2c, 99) if s2c.size else math.nan,
            safe_ticks=safe, level=level, reason=reason, restarts=restarts, total_restarts=self.total_restarts)


def diagnostic_array(name: str, hardware_id: str, snap: Snapshot, stamp_ns: int,
                     values: dict[str, str]) -> object:
    """A DiagnosticArray with one status built from a snapshot plus extra key/values."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    from liquid_control.ros.messages import stamp_of

    kv = {
        "achieved_rate_hz": f"{snap.achieved_hz:.2f}",
        "ticks": str(snap.ticks),
        "total_ticks": str(snap.total_ticks),
        "overruns": str(snap.overruns),
        "total_overruns": str(snap.total_overruns),
        "dt_mean_ms": f"{snap.dt_mean * 1e3:.4f}",
        "dt_jitter_std_ms": f"{snap.dt_std * 1e3:.4f}",
        "dt_max_deviation_ms": f"{snap.dt_max_dev * 1e3:.4f}",
        "tick_lateness_p50_us": f"{snap.late_p50 * 1e6:.1f}",
        "tick_lateness_p99_us": f"{snap.late_p99 * 1e6:.1f}",
        "tick_lateness_max_us": f"{snap.late_max * 1e6:.1f}",
        "step_latency_p50_us": f"{snap.step_p50 * 1e6:.1f}",
        "step_latency_p99_us": f"{snap.step_p99 * 1e6:.1f}",
        "tick_compute_p99_us": f"{snap.tick_p99 * 1e6:.1f}",
        "ticks_late_over_half_period": str(snap.late_over_half),
        "sensor_to_command_p50_us": "n/a" if math.isnan(snap.s2c_p50) else f"{snap.s2c_p50 * 1e6:.1f}",
        "sensor_to_command_p99_us": "n/a" if math.isnan(snap.s2c_p99) else f"{snap.s2c_p99 * 1e6:.1f}",
        "safe_command_ticks": str(snap.safe_ticks),
        "restarts_large_dt": str(snap.restarts),
        "total_restarts_large_dt": str(snap.total_restarts),
        **values,
    }
    status = DiagnosticStatus(level=bytes([snap.level]), name=name, message=snap.reason or "OK",
                              hardware_id=hardware_id,
                              values=[KeyValue(key=k, value=v) for k, v in kv.items()])
    arr = DiagnosticArray(status=[status])
    arr.header.stamp = stamp_of(stamp_ns)
    return arr
