"""The controller's tick when dt is a gap (dt > max(sensor_timeout, 5 periods)): a restart, not a step.

Over DDS a gap usually comes with stale sensors (the newest sample was received before the gap), and
the stale-sensor path resets the state anyway; the case that slips through — a sample that arrives with
the gap, as when the SingleThreadedExecutor takes the sensor queued behind a jumped /clock — depends on
message timing. So this test drives a real, configured and active node in this process tick by tick:
samples are given receive times and ticks their times and dts directly, deterministically.
(test_controller_sim_clock.py shows over DDS that a jump is counted and followed by a soft start.)
"""
from __future__ import annotations

import numpy as np

from controller_fixtures import SPEC, joint_state, make_artifact
from liquid_control.core.policy import Policy

RATE = 50.0
PERIOD = 1.0 / RATE
TIMEOUT = 0.5
SOFT_START = 0.2


def test_a_gap_restarts_the_hidden_state_and_the_soft_start(tmp_path):
    import rclpy
    from rclpy.context import Context
    from rclpy.lifecycle import TransitionCallbackReturn

    from controller_fixtures import parse_debug
    from liquid_control.ros.controller.node import LiquidController

    model = make_artifact(tmp_path / "m.onnx", seed=7)
    ctx = Context()
    rclpy.init(context=ctx, args=[])
    # use_sim_time without a /clock publisher: the node's own loop never ticks, the test ticks it.
    params = {"model": str(model), "rate_hz": RATE, "sensor_timeout": TIMEOUT, "soft_start": SOFT_START,
              "use_sim_time": True, "step_debug": True}
    node = LiquidController(context=ctx, cli_args=["--ros-args", *sum(
        (["-p", f"{k}:={str(v).lower() if isinstance(v, bool) else v}"] for k, v in params.items()), [])])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert node._active

        class Msg:  # the debug record of the last tick, as the probe would receive it
            data = None

        def tick(t: float, dt: float, obs: np.ndarray):
            node.assembler.update("joint_states", joint_state(obs[:2], obs[2:]), t)  # received just now
            node._tick(t, dt, 0.0)
            Msg.data = node._debug.buf.copy()
            return parse_debug(Msg)

        rng = np.random.default_rng(0)
        obs = [rng.normal(0, 0.5, 4) for _ in range(30)]
        t = 10.0
        recs = []
        for k in range(20):  # normal control: the soft start completes
            t += PERIOD
            recs.append(tick(t, PERIOD, obs[k]))
        assert recs[0].fresh and not recs[-1].fresh and recs[-1].status == 0
        before = recs[-1].command.copy()
        gap = 2.0  # > max(0.5, 5 * 0.02)
        t += gap
        r = tick(t, gap, obs[20])
        assert r.status == 0
        assert r.fresh, "the tick after the gap stepped the old hidden state"
        assert r.dt == PERIOD  # the fresh state steps by one period, not by the gap
        policy = Policy.load(model, spec=SPEC)
        policy.reset()
        np.testing.assert_array_equal(policy.step(obs[20].astype(np.float32), PERIOD).astype(np.float64), r.action)
        # ... and the command fades in from the one before the gap (soft start restarted).
        f = PERIOD / SOFT_START
        scale, lo, hi = SPEC.action.scale[0], SPEC.action.lower[0], SPEC.action.upper[0]
        np.testing.assert_allclose(r.command, np.clip(before + f * (r.action * scale - before), lo, hi),
                                   rtol=1e-9, atol=1e-12)
        assert node.stats.total_restarts == 1
        # A dt at the limit is still a step (a late tick, not a gap).
        t += TIMEOUT
        r = tick(t, TIMEOUT, obs[21])
        assert r.status == 0 and not r.fresh and r.dt == TIMEOUT and node.stats.total_restarts == 1
    finally:
        node.trigger_shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)


def test_internal_error_and_loop_death_publish_the_spec_safe_value_even_under_hold(tmp_path):
    """safe_behaviour hold rides out bad sensor samples on the last good command; a bug in the tick or a
    dead loop is no sensor glitch: the spec's safe value (fault injected into the real node's tick)."""
    import rclpy
    from rclpy.context import Context
    from rclpy.lifecycle import TransitionCallbackReturn

    from liquid_control.ros import diagnostics as diag
    from liquid_control.ros.controller.node import LiquidController

    model = make_artifact(tmp_path / "m.onnx", seed=7)
    ctx = Context()
    rclpy.init(context=ctx, args=[])
    node = LiquidController(context=ctx, cli_args=[
        "--ros-args", "-p", f"model:={model}", "-p", "safe_behaviour:=hold", "-p", "soft_start:=0.0",
        "-p", "use_sim_time:=true", "-p", f"rate_hz:={RATE}"])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        safe = np.asarray(SPEC.action.safe, dtype=np.float64)

        def control(t: float) -> float:
            for _ in range(5):
                t += PERIOD
                node.assembler.update("joint_states", joint_state([0.3, -0.2], [0.1, 0.4]), t)
                node._guarded_tick(t, PERIOD, 0.0)
            assert node._cond[0] == diag.OK and not np.array_equal(node.pipeline.last, safe)
            return t

        t = control(10.0)
        # A NaN sample under hold: the last good command is repeated (hold works).
        held = node.pipeline.last.copy()
        node.assembler.update("joint_states", joint_state([float("nan"), -0.2], [0.1, 0.4]), t + PERIOD)
        node._guarded_tick(t + PERIOD, PERIOD, 0.0)
        np.testing.assert_array_equal(node.pipeline.last, held)
        t = control(t + PERIOD)

        def broken(now: float):
            raise RuntimeError("injected")

        node.assembler.assemble = broken
        node._guarded_tick(t + PERIOD, PERIOD, 0.0)
        assert node._cond[0] == diag.ERROR and "internal error" in node._cond[1]
        np.testing.assert_array_equal(node.pipeline.last, safe)
        del node.assembler.assemble
        t = control(t + PERIOD)
        node._loop_died(RuntimeError("injected"))
        np.testing.assert_array_equal(node.pipeline.last, safe)
    finally:
        node.trigger_shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
