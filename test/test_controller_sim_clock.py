"""The controller's loop under use_sim_time follows /clock alone: it ticks on the sim-time deadline grid,
and when sim time goes backwards (a simulation restarted, by any amount) it starts a new epoch at once —
hidden state zeroed, ticks one period apart from the new time — instead of waiting for sim time to catch
up with the old deadline. Driven over DDS from a probe, with the SingleThreadedExecutor too (the tick
runs from the /clock callback, and must still see the sensor sample sent just before that /clock)."""
from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np
import pytest

from controller_fixtures import SPEC, joint_state, make_artifact, parse_debug
from ros_helpers import NodeProcess, Probe, console_script, poll_until, ros_params

NODE = "liquid_controller"
RATE = 50.0  # a tick every 20 ms of sim time
CLOCK_STEP_NS = 10_000_000  # /clock advances 10 ms per message: a tick every 2 messages


class SimClock:
    """Drives a controller under use_sim_time from a probe: for each sim instant, its JointState sample
    (`sample(t_ns)` -> position, velocity), then its /clock."""

    def __init__(self, probe, node, sample):
        from rclpy.qos import qos_profile_sensor_data
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray

        self.probe, self.node, self.sample, self._clock_msg = probe, node, sample, Clock
        self.debug = probe.collect(Float64MultiArray, f"/{NODE}/step_debug", 1000)
        self.clock = probe.publisher(Clock, "/clock", 10)
        self.js = probe.publisher(JointState, "joint_states", qos_profile_sensor_data)
        probe.wait_for_subscribers(self.clock, 20.0, "the node's /clock subscription")
        probe.wait_for_subscribers(self.js, 20.0, "the node's joint_states subscription")
        node.wait_for_output(r"active: commanding", 20.0)
        probe.wait_for(lambda: probe.node.count_publishers(f"/{NODE}/step_debug") > 0, 10.0, "the debug topic")

    def run(self, start_ns: int, steps: int, until=None) -> int:
        """Advance sim time from start_ns by `steps` clock steps (or until `until()`); the last time sent."""
        t_ns = start_ns
        for k in range(1, steps + 1):
            t_ns = start_ns + k * CLOCK_STEP_NS
            position, velocity = self.sample(t_ns)
            self.js.publish(joint_state(position, velocity, stamp_ns=t_ns))
            self.clock.publish(self._clock_msg(clock=_stamp(t_ns)))
            self._keep_up(t_ns)
            if until is not None and until():
                break
        return t_ns

    def _keep_up(self, t_ns: int) -> None:
        """Once the node ticks, wait (at most 2 s, not asserted) until it has ticked within a period of t_ns:
        a node stalled on a loaded machine must not see sim time run ahead of it, a jump the test did not
        make. (After sim time went back, the latest tick is ahead of t_ns until the new epoch ticks: no wait.)"""
        time.sleep(0.004)
        if not len(self.debug):
            return
        behind = t_ns * 1e-9 - 1.0 / RATE - 1e-9  # a latest tick before this is more than a period behind
        poll_until(lambda: parse_debug(self.debug.last()).time >= behind, 2.0, self.node)


@contextmanager
def sim_clock_controller(tmp_path, probe_name: str, sample, **params):
    """A controller node (own process, sim time, step debug) and a SimClock driving it."""
    model = make_artifact(tmp_path / "m.onnx", seed=3)
    argv = console_script("controller", *ros_params(model=str(model), autostart=True, step_debug=True,
                                                    use_sim_time=True, rate_hz=RATE, **params))
    with Probe(probe_name) as probe, NodeProcess(argv, name="controller", log_dir=tmp_path) as node:
        yield SimClock(probe, node, sample)


@pytest.mark.parametrize("executor", ["events", "single"])
def test_sim_time_going_back_starts_a_new_epoch(tmp_path, executor):
    with sim_clock_controller(tmp_path, "sim_clock_probe", lambda t_ns: ([t_ns * 1e-9, 0.0], [0.0, 0.0]),
                        soft_start=0.0, sensor_timeout=0.5, executor=executor) as sim:
        probe, node, debug, run = sim.probe, sim.node, sim.debug, sim.run

        # sim 5.0 s on, until 10 ticks have come back (the debug topic's match may take a while; it ends
        # far below 25 s, 1000 steps)
        run(5_000_000_000, 1000, lambda: len(debug) >= 10)
        probe.wait_for(lambda: len(debug) >= 10, 10.0, "ticks before the restart", node)
        # restarted: sim 1.0 s on until 8 ticks of the new epoch are back (at most 1.0 .. 4.0 s: the old
        # deadline, above 5.0 s, is never reached)
        run(1_000_000_000, 300, lambda: sum(parse_debug(m).time < 5.0 for _, m in debug.snapshot()) >= 8)
        probe.wait_for(lambda: any(parse_debug(m).time < 2.0 for _, m in debug.snapshot()), 10.0,
                       "a tick after sim time went back", node)
        time.sleep(0.3)
        node.wait_for_output(r"sim time went backwards", 5.0)
    recs = [parse_debug(m) for _, m in debug.snapshot()]
    before = [r for r in recs if r.time >= 5.0]
    after = [r for r in recs if r.time < 5.0]
    assert len(before) >= 5 and len(after) >= 5, (len(before), len(after))
    assert recs.index(after[0]) > recs.index(before[-1]), "ticks of the two epochs interleave"
    for epoch, start in ((before, 5.0), (after, 1.0)):
        times = np.array([r.time for r in epoch])
        # Every tick at a /clock value sent, normally a period apart (the /clock subscription keeps the
        # newest message only: a stalled process sees a later one, a longer dt, then a shorter).
        grid = (times - start) / (CLOCK_STEP_NS * 1e-9)
        np.testing.assert_allclose(grid, np.round(grid), rtol=0, atol=1e-6)
        np.testing.assert_allclose([r.dt for r in epoch[1:]], np.diff(times), rtol=0, atol=1e-9)
        # Never more ticks than deadlines (one per period, from the first tick's deadline, which is its
        # time less its lateness), however late the node sees /clock on a loaded machine: a late tick may be
        # followed by one on time less than a period later. (The lockstep test, where no /clock is
        # overtaken, asserts dt == period.)
        first_deadline = times[0] - epoch[0].lateness
        assert len(times) <= (times[-1] - first_deadline) * RATE + 1 + 1e-6, (times, epoch[0].lateness)
        # Each tick saw the sensor sample sent just before its /clock, whatever the executor: never an
        # older one. (If the node falls behind this 4 ms stream, the next sample may already be there when
        # the tick runs: a newer one is fine. The lockstep test, where nothing runs ahead, asserts equality.)
        stamps = np.array([r.sensor_stamp for r in epoch if r.status == 0])
        ticks = np.array([r.time for r in epoch if r.status == 0])
        older = stamps < ticks - 1e-9
        assert not older.any(), f"ticks at {ticks[older]} used older samples {stamps[older]}"
    # The new epoch ticks at once (one period after its first /clock; later only if the node stalled and
    # its depth-1 /clock subscription kept a newer message), from a zeroed hidden state.
    assert after[0].time < 1.01 + 10 / RATE, after[0].time
    assert after[0].fresh, "the new epoch starts from a zeroed hidden state"
    assert all(r.status == 0 for r in before[1:] + after[1:])


def _stamp(ns: int):
    from builtin_interfaces.msg import Time

    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def test_sim_time_jump_restarts_and_stopped_clock_is_stale(tmp_path):
    """A forward jump in sim time longer than max(sensor_timeout, 5 periods) is not stepped across: the
    hidden state restarts from zero with a soft start, and /diagnostics counts it. ~/reset restarts the
    soft start too (sim time makes it exact: sim time stands still during the call). When /clock stops,
    the loop stops ticking, and /diagnostics says so (STALE) instead of repeating the last tick's OK."""
    from diagnostic_msgs.msg import DiagnosticArray
    from std_srvs.srv import Trigger

    from controller_fixtures import diag_values

    timeout, soft_start = 0.5, 0.2
    max_dt = max(timeout, 5 / RATE)
    # Over DDS the tick after a jump usually finds its sample aged by the jump (received before /clock
    # moved): stale, and the fault path resets too. The restart is counted either way; the case where a
    # fresh sample arrives with the gap is driven tick by tick in test_controller_tick.py.
    with sim_clock_controller(tmp_path, "sim_jump_probe", lambda t_ns: ([0.3 * np.sin(t_ns * 1e-9), 0.1], [0.0, 0.2]),
                        soft_start=soft_start, sensor_timeout=timeout, executor="single",
                        diagnostics_period=0.2) as sim:
        probe, node, debug, run = sim.probe, sim.node, sim.debug, sim.run
        diags = probe.collect(DiagnosticArray, "/diagnostics")

        def ticks_after(t: float) -> bool:
            return any(parse_debug(m).time > t for _, m in debug.snapshot())

        # Until 20 stepped ticks have come back (the debug topic's match may take a while on a loaded machine).
        t_ns = run(5_000_000_000, 3000, lambda: sum(parse_debug(m).status == 0 for _, m in debug.snapshot()) >= 20)
        assert sum(parse_debug(m).status == 0 for _, m in debug.snapshot()) >= 20, "no control before the jump"
        jump = (t_ns + 2_400_000_000) * 1e-9
        t_ns = run(t_ns + 2_400_000_000, 60)  # sim time jumped forward by 2.4 s
        probe.wait_for(lambda: ticks_after(jump + 0.5), 10.0, "ticks after the jump", node)
        assert probe.call(Trigger, f"/{NODE}/reset", Trigger.Request()).success  # sim time stands still
        reset = t_ns * 1e-9
        t_ns = run(t_ns, 40)
        probe.wait_for(lambda: ticks_after(reset + 0.3), 10.0, "ticks after ~/reset", node)
        # /clock has stopped: the loop ticks no more, and /diagnostics must not stay OK.
        t_stop = time.monotonic()
        got = probe.wait_for(lambda: next((diag_values(m) for m in diags.since(t_stop + 0.5)
                                           if diag_values(m)[0] == 3), None), 10.0, "STALE diagnostics", node)
        assert got[1] == "no control ticks in the last window", got[1]
        restarts = max(int(diag_values(m)[2].get("total_restarts_large_dt", 0)) for _, m in diags.snapshot())
        node.wait_for_output(r"sim time jumped or the loop stalled\): hidden state reset, soft start", 5.0)
    assert restarts == 1
    recs = [parse_debug(m) for _, m in debug.snapshot()]
    after = [r for r in recs if r.time >= jump]
    stepped_after = [r for r in after if r.status == 0]
    assert stepped_after and stepped_after[0].fresh, "the tick after the jump stepped an old hidden state"
    assert all(r.dt <= max_dt for r in recs if r.status == 0), "a step by the whole jump"
    # The first stepped tick after the jump starts a soft start: its command is faded in from the one
    # published before it (whatever that was: the last command, or a safe one after a stale sample).
    scale, lo, hi = SPEC.action.scale[0], SPEC.action.lower[0], SPEC.action.upper[0]

    def check_ramp_start(first) -> None:
        prev = next(r for r in recs if r.seq == first.seq - 1)
        f = first.dt / soft_start
        expected = np.clip(prev.command + f * (first.action * scale - prev.command), lo, hi)
        np.testing.assert_allclose(first.command, expected, rtol=1e-9, atol=1e-12)
        assert np.abs(first.command - np.clip(first.action * scale, lo, hi)).max() > 1e-3, \
            "the ramp start equals the full command: the test proves nothing"

    check_ramp_start(stepped_after[0])
    # ~/reset: the next tick steps from a zeroed state (fresh) right after normal control, and fades in.
    after_reset = [r for r in recs if r.time > reset and r.fresh]
    assert len(after_reset) == 1 and after_reset[0].status == 0, [(r.time, r.status) for r in after_reset]
    assert next(r for r in recs if r.seq == after_reset[0].seq - 1).status == 0
    check_ramp_start(after_reset[0])


def test_ticker_ticks_the_same_from_the_clock_subscription_and_from_a_jump_callback():
    """The sim-time ticker hooks the TimeSource's /clock subscription callback; without it (an rclpy
    that renames its internals) it falls back to a clock jump callback. Both see the same /clock
    sequence (forward, a repeat, a skipped period, backwards) and must tick and count alike."""
    import rclpy
    from rclpy.parameter import Parameter
    from rosgraph_msgs.msg import Clock

    from liquid_control.ros.controller.sim_clock import SimClockTicker

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        runs = {}
        for hooked in (True, False):
            node = rclpy.create_node(f"ticker_{int(hooked)}", context=context,
                                     parameter_overrides=[Parameter("use_sim_time", value=True)])
            sub = node._time_source._clock_sub  # what the executor calls with each /clock message
            events = []
            ticker = SimClockTicker(node.get_clock(), 20_000_000, lambda *a: events.append(("tick", *a)),
                                lambda n: events.append(("overrun", n)), lambda: events.append(("epoch",)),
                                lambda exc: events.append(("died", repr(exc))), sub if hooked else None)
            assert (sub.callback == ticker._on_clock) is hooked
            for t_ns in (10_000_000, 20_000_000, 30_000_000, 30_000_000, 50_000_000, 120_000_000,
                         60_000_000, 70_000_000, 80_000_000):
                sub.callback(Clock(clock=_stamp(t_ns)))
                assert node.get_clock().now().nanoseconds == t_ns
            ticker.close()
            sub.callback(Clock(clock=_stamp(200_000_000)))  # closed: no more ticks, the clock still follows
            assert node.get_clock().now().nanoseconds == 200_000_000
            runs[hooked] = events
            node.destroy_node()
        assert runs[True] == runs[False]
        ticks = [e for e in runs[True] if e[0] == "tick"]
        # ticks at 30 ms (first deadline: 10 + 20), 50, 120 (late 50 ms: two periods skipped), 80 (new epoch at 60)
        assert [(t[1], t[2]) for t in ticks] == [(30_000_000, 20_000_000), (50_000_000, 20_000_000),
                                                 (120_000_000, 70_000_000), (80_000_000, 20_000_000)]
        assert ("overrun", 2) in runs[True] and ("epoch",) in runs[True]
    finally:
        rclpy.try_shutdown(context=context)
