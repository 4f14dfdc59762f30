"""Loop statistics and the /diagnostics report of the controller.

The loop thread records each tick into preallocated ring buffers (`LoopStats.record`: no allocation);
the diagnostics timer (about 1 Hz, executor thread) takes a snapshot of the ticks since the previous
report and turns it into one `diagnostic_msgs/DiagnosticStatus`.

Level, worst first, over the report window (a fault that came and went between two reports still shows):
  ERROR  the last sensor message was invalid (NaN/Inf, wrong length, missing joint) or the policy failed
  STALE  a sensor is missing or older than the timeout
  WARN   e-stop engaged, disabled through ~/enable, overruns, or achieved rate off by more than 5 %
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

OK, WARN, ERROR, STALE = 0, 1, 2, 3
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
        self._last_time: float | None = None
        self._time = 0.0
        self._worst = (OK, "")

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
            if self._last_time is None:
                self._last_time = now

    def overrun(self, missed: int) -> None:
        with self._lock:
            self.total_overruns += missed

    def flag(self, level: int, reason: str) -> None:
        """Remember the worst condition seen in this report window."""
        with self._lock:
            if _RANK[level] > _RANK[self._worst[0]]:
                self._worst = (level, reason)

    def snapshot(self, current_level: int, current_reason: str) -> Snapshot:
        with self._lock:
            n = min(self.total_ticks - self._last_total, self._cap)
            end = self.total_ticks % self._cap
            idx = (np.arange(end - n, end)) % self._cap
            dt, late, step, tick = self._dt[idx], self._late[idx], self._step[idx], self._tick[idx]
            s2c = self._s2c[idx]
            elapsed = (self._time - self._last_time) if self._last_time is not None else 0.0
            ticks = self.total_ticks - self._last_total
            overruns = self.total_overruns - self._last_overruns
            safe = self.safe_ticks - self._last_safe
            worst = self._worst
            self._last_total, self._last_overruns, self._last_safe = self.total_ticks, self.total_overruns, self.safe_ticks
            self._last_time = self._time
            self._worst = (OK, "")
        # ticks counted between the first and the last tick of the window: n - 1 intervals
        achieved = (ticks - 1) / elapsed if elapsed > 0 and ticks > 1 else 0.0
        level, reason = current_level, current_reason
        if _RANK[worst[0]] > _RANK[level]:
            level, reason = worst[0], f"{worst[1]} (recovered)" if current_level == OK else worst[1]
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
            safe_ticks=safe, level=level, reason=reason)


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
        **values,
    }
    status = DiagnosticStatus(level=bytes([snap.level]), name=name, message=snap.reason or "OK",
                              hardware_id=hardware_id,
                              values=[KeyValue(key=k, value=v) for k, v in kv.items()])
    arr = DiagnosticArray(status=[status])
    arr.header.stamp = stamp_of(stamp_ns)
    return arr
