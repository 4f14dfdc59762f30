"""Loop statistics behind /diagnostics: windows, percentiles, and the worst level over a window."""
import math

import numpy as np

from liquid_control.ros import diagnostics as diag


def _run(stats: diag.LoopStats, n: int, t0: float, period: float, late: float = 0.0, s2c: float = math.nan) -> float:
    t = t0
    for _ in range(n):
        t += period
        stats.record(t, period, late, 20e-6, 40e-6, False, s2c)
    return t


def test_snapshot_covers_the_window_since_the_last_one():
    s = diag.LoopStats(0.01)
    t = _run(s, 101, 0.0, 0.01, late=1e-4, s2c=5e-4)
    snap = s.snapshot(diag.OK, "active")
    assert snap.ticks == 101 and snap.total_ticks == 101
    assert abs(snap.achieved_hz - 100.0) < 1e-6
    assert snap.level == diag.OK and snap.reason == "active"
    assert abs(snap.late_p50 - 1e-4) < 1e-12 and snap.late_over_half == 0
    assert abs(snap.s2c_p50 - 5e-4) < 1e-12 and abs(snap.step_p99 - 20e-6) < 1e-12
    _run(s, 10, t, 0.01, late=0.006)  # later than half a period
    snap = s.snapshot(diag.OK, "active")
    assert snap.ticks == 10 and snap.total_ticks == 111 and snap.late_over_half == 10
    assert math.isnan(snap.s2c_p50)  # no stamped sensors in this window


def test_worst_condition_in_the_window_shows_even_after_recovery():
    s = diag.LoopStats(0.01)
    _run(s, 5, 0.0, 0.01)
    s.flag(diag.STALE, "joint_states: stale")
    s.flag(diag.ERROR, "joint_states: non-finite value")
    s.flag(diag.WARN, "e-stop engaged")
    snap = s.snapshot(diag.OK, "active")
    assert snap.level == diag.ERROR and "non-finite" in snap.reason and "recovered" in snap.reason
    snap = s.snapshot(diag.OK, "active")  # the next window is clean again
    assert snap.level == diag.OK


def test_overruns_and_rate_error_warn():
    s = diag.LoopStats(0.01)
    _run(s, 50, 0.0, 0.01)
    s.overrun(3)
    snap = s.snapshot(diag.OK, "active")
    assert snap.level == diag.WARN and snap.overruns == 3 and "overruns" in snap.reason
    _run(s, 50, 10.0, 0.02)  # ticking at half the rate
    snap = s.snapshot(diag.OK, "active")
    assert snap.level == diag.WARN and "achieved rate" in snap.reason


def test_ring_buffer_keeps_the_newest_ticks():
    s = diag.LoopStats(0.01, capacity=16)
    _run(s, 100, 0.0, 0.01, late=1.0)
    _run(s, 16, 100.0, 0.01, late=2e-3)
    snap = s.snapshot(diag.OK, "")
    assert snap.late_max == 2e-3  # only the newest `capacity` ticks are in the percentiles


def test_diagnostic_array_message():
    s = diag.LoopStats(0.01)
    _run(s, 20, 0.0, 0.01)
    arr = diag.diagnostic_array("liquid_controller: control loop", "cartpole", s.snapshot(diag.STALE, "imu: stale"),
                                1_500_000_000, {"age_imu_ms": "250.0"})
    st = arr.status[0]
    assert st.level == bytes([diag.STALE]) and st.message == "imu: stale" and st.hardware_id == "cartpole"
    values = {kv.key: kv.value for kv in st.values}
    assert values["age_imu_ms"] == "250.0" and float(values["achieved_rate_hz"]) == np.float64(100.0)
    assert (arr.header.stamp.sec, arr.header.stamp.nanosec) == (1, 500_000_000)


def test_achieved_rate_is_exact_in_every_window_not_only_the_first():
    # Windows after the first start at the previous window's last tick: n ticks are n intervals.
    for rate in (25.0, 10.0, 100.0):
        s = diag.LoopStats(1.0 / rate)
        t = _run(s, int(rate) + 1, 0.0, 1.0 / rate)  # first window: n + 1 ticks, n intervals
        for _ in range(3):
            snap = s.snapshot(diag.OK, "active")
            assert abs(snap.achieved_hz - rate) < 1e-6, (rate, snap.achieved_hz)
            assert snap.level == diag.OK, snap.reason
            t = _run(s, int(rate), t, 1.0 / rate)
    # After restart_window() (activation, a new epoch) the window starts at its first tick again,
    # so an inactive gap or a jump back in time does not count.
    s = diag.LoopStats(0.04)
    t = _run(s, 26, 0.0, 0.04)
    s.snapshot(diag.OK, "active")
    s.restart_window()
    _run(s, 26, t + 100.0, 0.04)
    snap = s.snapshot(diag.OK, "active")
    assert abs(snap.achieved_hz - 25.0) < 1e-6 and snap.level == diag.OK


def test_a_window_without_ticks_while_active_is_stale():
    s = diag.LoopStats(0.01)
    _run(s, 20, 0.0, 0.01)
    assert s.snapshot(diag.OK, "active", expect_ticks=True).level == diag.OK
    snap = s.snapshot(diag.OK, "active", expect_ticks=True)  # the loop made no tick since
    assert snap.level == diag.STALE and snap.reason == "no control ticks in the last window"
    assert s.snapshot(diag.OK, "inactive").level == diag.OK  # inactive: no ticks expected
    # A worse current condition is not hidden.
    assert s.snapshot(diag.ERROR, "control loop died", expect_ticks=True).level == diag.ERROR


def test_restarts_are_counted_per_window():
    s = diag.LoopStats(0.01)
    s.restarted()
    _run(s, 5, 0.0, 0.01)
    snap = s.snapshot(diag.OK, "active")
    assert (snap.restarts, snap.total_restarts) == (1, 1)
    snap = s.snapshot(diag.OK, "active")
    assert (snap.restarts, snap.total_restarts) == (0, 1)
    values = {kv.key: kv.value for kv in diag.diagnostic_array("x", "y", snap, 0, {}).status[0].values}
    assert values["total_restarts_large_dt"] == "1"
