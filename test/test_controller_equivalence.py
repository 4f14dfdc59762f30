"""The node adds no hidden transformation: under use_sim_time, feed it /clock and JointState messages,
then feed Policy.step and the CommandPipeline the same observations and dts — same actions and commands,
bit for bit. Also shows that the loop follows /clock: every dt is exactly the sim-time period."""
from __future__ import annotations

import numpy as np

from controller_fixtures import COMMAND_TOPIC, SPEC, joint_state, make_artifact, parse_debug
from ros_helpers import NodeProcess, Probe, console_script, poll_until, ros_params

NODE = "liquid_controller"
RATE = 50.0  # ticks every 20 ms of sim time
CLOCK_STEP_NS = 5_000_000  # /clock advances 5 ms per message
STEPS_PER_TICK = round(1e9 / RATE) // CLOCK_STEP_NS  # 4 messages per tick
SOFT_START = 0.2


def test_node_equals_policy_step_and_command_pipeline_under_sim_time(tmp_path):
    from rclpy.qos import qos_profile_sensor_data
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from liquid_control import Policy
    from liquid_control.core.command import CommandPipeline

    model = make_artifact(tmp_path / "m.onnx", seed=5)
    argv = console_script("controller", *ros_params(model=str(model), autostart=True, step_debug=True,
                                                    use_sim_time=True, rate_hz=RATE, soft_start=SOFT_START,
                                                    sensor_timeout=0.5))
    with Probe("equivalence_probe") as probe, NodeProcess(argv, name="controller", log_dir=tmp_path) as node:
        debug = probe.collect(Float64MultiArray, f"/{NODE}/step_debug", 1000)
        cmds = probe.collect(Float64MultiArray, COMMAND_TOPIC, 1000)
        clock = probe.publisher(Clock, "/clock", 10)
        js = probe.publisher(JointState, "joint_states", qos_profile_sensor_data)  # best effort: must match too
        probe.wait_for_subscribers(clock, 20.0, "the node's /clock subscription")
        probe.wait_for_subscribers(js, 20.0, "the node's joint_states subscription")
        node.wait_for_output(r"active: commanding", 20.0)
        for topic in (COMMAND_TOPIC, f"/{NODE}/step_debug"):
            probe.wait_for(lambda: probe.node.count_publishers(topic) > 0, 10.0, f"the {topic} publisher")
        rng = np.random.default_rng(1)
        sent = []
        # Lockstep, as a simulator drives it: per tick a JointState, then /clock in 5 ms steps up to the tick's
        # deadline (the first /clock starts the node's epoch; it ticks a period later); the next tick's
        # messages go out when the node's record of this one is in. A node stalled on a loaded machine so
        # never sees time run ahead of it. (The waits are bounded and not asserted on: a lost /clock, best
        # effort, only moves a tick to the next deadline, which the checks below allow; before the first
        # record they are short, as the node may have missed the first /clock and started a step later.)
        # 2 s of sim time: 100 ticks.
        t_ns = 1_000_000_000
        clock.publish(Clock(clock=_stamp(t_ns)))
        for _ in range(100):
            obs = rng.normal(0, 0.5, 4)
            sent.append(obs.astype(np.float32))
            js.publish(joint_state(obs[:2], obs[2:]))
            n = len(debug)
            for _ in range(STEPS_PER_TICK):
                t_ns += CLOCK_STEP_NS
                clock.publish(Clock(clock=_stamp(t_ns)))
            poll_until(lambda: len(debug) > n, 5.0 if n else 0.2, node)
        # Sim time has stopped at t_ns: the node ticks no more. Wait for its last tick (the last deadline up to
        # t_ns: t_ns itself, or 5 ms before if the first /clock was lost) and for that tick's command to
        # arrive, then nothing more is in flight.
        last_tick = t_ns * 1e-9 - 1.0 / RATE
        probe.wait_for(lambda: len(debug) >= 60 and parse_debug(debug.last()).time > last_tick, 15.0,
                       "the debug record of the last tick", node)
        probe.wait_for(lambda: cmds.last() is not None
                       and list(cmds.last().data) == parse_debug(debug.last()).command.tolist(), 10.0,
                       "the last tick's command", node)
        published = [list(m.data) for _, m in cmds.snapshot()]  # before the shutdown's safe command
    recs = [parse_debug(m) for _, m in debug.snapshot()]
    assert [r.seq for r in recs] == list(range(recs[0].seq, recs[0].seq + len(recs))), "a debug record was lost"
    stepped = [r for r in recs if r.status == 0]
    assert len(stepped) >= 50
    first = next(i for i, r in enumerate(recs) if r.status == 0)
    run = recs[first:]
    broken = [(r.seq, r.time, r.dt, r.status, r.sensor_age) for r in run if r.status != 0]
    assert not broken, f"control was interrupted: (seq, time, dt, status, sensor_age) {broken[:5]}"
    assert run[0].fresh and not any(r.fresh for r in run[1:])

    # dt is sim time: every tick happens at a /clock value the test sent (a multiple of 5 ms: wall time
    # would never be), dt is the exact difference of those, and normally one period.
    times = np.array([r.time for r in run])
    grid = times / (CLOCK_STEP_NS * 1e-9)
    np.testing.assert_allclose(grid, np.round(grid), rtol=0, atol=1e-6)
    np.testing.assert_allclose([r.dt for r in run[1:]], np.diff(times), rtol=0, atol=1e-9)
    assert np.median([r.dt for r in run]) == 1.0 / RATE
    # Every observation is one the test sent (spec order, no transformation).
    sent_arr = np.array(sent)
    for r in run:
        assert np.any(np.all(sent_arr == r.obs.astype(np.float32), axis=1)), r.obs

    # Same obs and dt through Policy.step and the command pipeline: the same numbers, bit for bit.
    policy = Policy.load(model, spec=SPEC)
    policy.reset()
    pipeline = CommandPipeline(SPEC.action, SOFT_START, "zero")
    for r in recs[:first]:
        pipeline.safe()
    for r in run:
        action = policy.step(r.obs.astype(np.float32), r.dt)
        np.testing.assert_array_equal(action.astype(np.float64), r.action)
        command, ok = pipeline.apply(action, r.dt)
        assert ok
        np.testing.assert_array_equal(command, r.command)
    # And what went out on the command topic is exactly those commands, in order.
    recorded = [r.command.tolist() for r in recs]
    assert len(published) >= 0.9 * len(recorded)
    it = iter(recorded)
    assert all(any(p == r for r in it) for p in published), "a published command is not a recorded one"


def _stamp(ns: int):
    from builtin_interfaces.msg import Time

    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
