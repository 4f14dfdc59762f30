"""Stopping means stopping: the controller node over DDS, in its own process, with `safe_behaviour: hold`.

hold repeats the last good command through a bad sensor sample; e-stop, ~/enable(false) and deactivate
must still publish the spec's safe value. The e-stop subscription lives as long as the node (an e-stop
sent while unconfigured holds after configure), `estop_required` starts the node engaged until an
e-stop message says false, a YAML's `autostart: false` is not overridden by `liquid-control run`, ints
are accepted for double parameters, and a failed autostart exits non-zero.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from controller_fixtures import COMMAND_TOPIC, Streamer, diag_values, make_artifact, parse_debug
from ros_helpers import (REPO, NodeProcess, Probe, change_state, console_script, lifecycle_state, ros_params,
                         set_parameter)

NODE = "liquid_controller"
SAFE = [0.0]  # cartpole's spec safe value


def write_params(tmp_path, model, settings: str):
    """A params YAML for the cartpole controller with `model`, step debug and 0.2 s diagnostics, plus
    `settings` (YAML lines, 4-space indented)."""
    params = tmp_path / "params.yaml"
    params.write_text(f"""liquid_controller:
  ros__parameters:
    robot: cartpole
    model: {model}
    sensor_timeout: 0.5
    soft_start: 0.0
    step_debug: true
    diagnostics_period: 0.2
{settings}""")
    return params


def status_waiter(probe, node, debug):
    """wait(status, n, since, what): the debug records since `since` once `n` of them have `status`."""

    def wait(status: int, n: int, since: float, what: str) -> list:
        def enough():
            recs = [parse_debug(m) for m in debug.since(since)]
            return recs if sum(r.status == status for r in recs) >= n else None
        return probe.wait_for(enough, 15.0, what, node)

    return wait


def test_hold_node_stops_on_estop_enable_and_deactivate_and_keeps_estop_across_lifecycle(tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray
    from std_msgs.msg import Bool, Float64MultiArray
    from std_srvs.srv import SetBool

    model = make_artifact(tmp_path / "m.onnx", seed=3)
    # rate_hz is an int (a double parameter), autostart false must hold under `liquid-control run`.
    params = write_params(tmp_path, model, """    rate_hz: 50
    safe_behaviour: hold
    autostart: false
    estop_required: true
""")
    argv = console_script("liquid-control", "run", "--params", str(params))
    with Probe("safety_probe") as probe, NodeProcess(argv, name="controller", log_dir=tmp_path) as node:
        debug = probe.collect(Float64MultiArray, f"/{NODE}/step_debug", 1000)
        cmds = probe.collect(Float64MultiArray, COMMAND_TOPIC)
        diags = probe.collect(DiagnosticArray, "/diagnostics")
        estop = probe.publisher(Bool, "estop", 10)
        stream = Streamer(probe)
        stream.set("good")
        wait_status = status_waiter(probe, node, debug)
        try:
            # The YAML's autostart: false holds (run used to force true); the int rate was accepted.
            assert lifecycle_state(probe, NODE, timeout=30.0) == "unconfigured"
            # The e-stop subscription exists before configure.
            probe.wait_for_subscribers(estop, 15.0, "the e-stop subscription of the unconfigured node")
            assert change_state(probe, NODE, "configure") and change_state(probe, NODE, "activate")
            node.wait_for_output(r"active: commanding at 50 Hz", 10.0)

            # estop_required: engaged until the first e-stop message says false.
            t = time.monotonic()
            recs = wait_status(2, 5, t, "ticks held by estop_required")
            assert all(r.status == 2 and r.command.tolist() == SAFE for r in recs)
            probe.wait_for(lambda: any(diag_values(m)[0] == 1 and "no e-stop message received yet" in diag_values(m)[1]
                                       for m in diags.since(t)), 10.0, "WARN diagnostics for estop_required", node)
            t = time.monotonic()
            estop.publish(Bool(data=False))
            recs = wait_status(0, 10, t, "control after the e-stop said false")
            held = [r for r in recs if r.status == 0][-1].command
            assert abs(held[0]) > 1e-6, "the policy commands zero: hold vs stop would not show"

            # E-stop under hold: the spec's safe value, not the held command.
            t = time.monotonic()
            estop.publish(Bool(data=True))
            recs = wait_status(2, 5, t, "e-stop ticks")
            assert all(r.command.tolist() == SAFE for r in recs if r.status == 2), "e-stop held the last command"
            t = time.monotonic()
            estop.publish(Bool(data=False))
            wait_status(0, 5, t, "control after the e-stop release")

            # ~/enable(false) under hold: the spec's safe value too.
            t = time.monotonic()
            assert probe.call(SetBool, f"/{NODE}/enable", SetBool.Request(data=False)).success
            recs = wait_status(2, 5, t, "disabled ticks")
            assert all(r.command.tolist() == SAFE for r in recs if r.status == 2), "disable held the last command"
            t = time.monotonic()
            assert probe.call(SetBool, f"/{NODE}/enable", SetBool.Request(data=True)).success
            recs = wait_status(0, 5, t, "control after enable")
            assert abs(recs[-1].command[0]) > 1e-6

            # use_sim_time picks the loop clock at configure: refused while configured.
            res = set_parameter(probe, NODE, "use_sim_time", True)
            assert not res.successful and "cannot change while the node is configured" in res.reason

            # Deactivate under hold ends on the spec's safe value (wait for it: commands from the last
            # ticks may still be in flight), then silence.
            assert change_state(probe, NODE, "deactivate")
            probe.wait_for(lambda: cmds.last() is not None and list(cmds.last().data) == SAFE, 5.0,
                           "the safe value after deactivate", node)
            n = len(cmds)
            time.sleep(0.3)
            assert len(cmds) == n and list(cmds.last().data) == SAFE

            # An e-stop sent while unconfigured is kept: the node comes up engaged.
            assert change_state(probe, NODE, "cleanup")
            engaged = node.output().count("e-stop ENGAGED")
            estop.publish(Bool(data=True))
            probe.wait_for(lambda: node.output().count("e-stop ENGAGED") > engaged, 10.0,
                           "the unconfigured node to take the e-stop", node)
            assert change_state(probe, NODE, "configure") and change_state(probe, NODE, "activate")
            t = time.monotonic()
            recs = wait_status(2, 5, t, "ticks under the e-stop sent while unconfigured")
            assert not any(r.status == 0 for r in recs), "control ran under an engaged e-stop"
            t = time.monotonic()
            estop.publish(Bool(data=False))
            wait_status(0, 5, t, "control after the release")
        finally:
            stream.close()
        assert node.stop() == 0
    assert all(np.isfinite(m.data).all() for _, m in cmds.snapshot())


def test_silent_estop_source_counts_as_engaged_with_estop_timeout(tmp_path):
    """A heartbeat e-stop: the safe value until the source is first heard, released while it keeps saying
    false, the safe value once it falls silent for longer than estop_timeout, control again when heard."""
    import threading

    from diagnostic_msgs.msg import DiagnosticArray
    from std_msgs.msg import Bool, Float64MultiArray

    model = make_artifact(tmp_path / "m.onnx", seed=3)
    params = write_params(tmp_path, model, """    rate_hz: 50.0
    autostart: true
    estop_timeout: 0.3
""")
    argv = console_script("liquid-control", "run", "--params", str(params))
    with Probe("heartbeat_probe") as probe, NodeProcess(argv, name="controller", log_dir=tmp_path) as node:
        debug = probe.collect(Float64MultiArray, f"/{NODE}/step_debug", 1000)
        diags = probe.collect(DiagnosticArray, "/diagnostics")
        estop = probe.publisher(Bool, "estop", 10)
        stream = Streamer(probe)
        stream.set("good")
        beating = threading.Event()
        done = threading.Event()

        def heartbeat() -> None:
            while not done.wait(0.05):  # 20 Hz, well inside the 0.3 s timeout
                if beating.is_set():
                    estop.publish(Bool(data=False))

        beat = threading.Thread(target=heartbeat, daemon=True)
        beat.start()
        wait_status = status_waiter(probe, node, debug)

        try:
            node.wait_for_output(r"active: commanding at 50 Hz", 30.0)
            probe.wait_for_subscribers(estop, 15.0, "the e-stop subscription")
            # Never heard yet: a source dead at boot holds the robot (no grace period).
            t = time.monotonic()
            recs = wait_status(2, 5, t, "the safe value before the e-stop source is first heard")
            assert not any(r.status == 0 for r in recs)
            probe.wait_for(lambda: any(diag_values(m)[0] == 1 and "e-stop source not heard yet" in diag_values(m)[1]
                                       for m in diags.since(t)), 10.0, "WARN diagnostics: source not heard", node)
            beating.set()
            t = time.monotonic()
            recs = wait_status(0, 20, t, "control while the heartbeat says false")
            assert abs(recs[-1].command[0]) > 1e-6
            t = time.monotonic()
            wait_status(0, 20, t, "control that lasts while the heartbeat beats")
            assert not any(parse_debug(m).status == 2 for m in debug.since(t)), "a live heartbeat engaged the e-stop"

            beating.clear()  # the source dies without ever saying true
            t = time.monotonic()
            recs = wait_status(2, 5, t, "the safe value once the e-stop source is silent")
            assert all(r.command.tolist() == SAFE for r in recs if r.status == 2)
            probe.wait_for(lambda: any(diag_values(m)[0] == 1 and "e-stop source silent" in diag_values(m)[1]
                                       and diag_values(m)[2]["estop"] == "true" for m in diags.since(t)),
                           10.0, "WARN diagnostics naming the silent e-stop source", node)
            node.wait_for_output(r"e-stop source silent for .* \(estop_timeout 0.3 s\)", 5.0)

            beating.set()
            t = time.monotonic()
            wait_status(0, 10, t, "control once the e-stop source is heard again")
            node.wait_for_output(r"e-stop source heard: within estop_timeout again", 5.0)
        finally:
            done.set()
            beat.join(2.0)
            stream.close()
        assert node.stop() == 0


def test_failed_autostart_exits_non_zero(tmp_path):
    """Without a lifecycle manager nobody would configure it again: a launcher must see the failure."""
    missing = tmp_path / "nope.onnx"
    argv = console_script("liquid-control", "run", "--params", str(REPO / "config" / "cartpole.yaml"),
                          "--model", str(missing))
    with NodeProcess(argv, name="controller", log_dir=tmp_path) as node:
        assert node.wait_exit(60.0) == 1
        out = node.output()
        assert f"configure failed: policy file {missing} does not exist" in out
        assert "autostart failed" in out and "Traceback" not in out


def test_sim_bridge_accepts_ints_for_double_parameters(tmp_path):
    argv = console_script("sim_bridge", *ros_params(mode="realtime", rate_hz=25, duration=1, video_fps=10))
    with NodeProcess(argv, name="sim_bridge", log_dir=tmp_path) as node:
        assert node.wait_exit(60.0) == 0, node.tail()
        assert "Traceback" not in node.output()


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_ends_on_the_spec_safe_value_even_under_hold(tmp_path, sig):
    """Ctrl-C (SIGINT) or a supervisor's SIGTERM: the node stops its loop and publishes the spec's safe value
    before its context goes down (the README promises it), also under safe_behaviour hold, then exits 0."""
    import signal

    from std_msgs.msg import Float64MultiArray

    model = make_artifact(tmp_path / "m.onnx", seed=3)
    params = write_params(tmp_path, model, """    rate_hz: 50
    safe_behaviour: hold
    autostart: true
""")
    argv = console_script("liquid-control", "run", "--params", str(params))
    with Probe("signal_probe") as probe, NodeProcess(argv, name="controller", log_dir=tmp_path) as node:
        cmds = probe.collect(Float64MultiArray, COMMAND_TOPIC)
        stream = Streamer(probe)
        stream.set("good")
        try:
            node.wait_for_output(r"active: commanding", 30.0)
            probe.wait_for(lambda: len(cmds) >= 20 and abs(cmds.last().data[0]) > 1e-6, 15.0,
                           "non-zero commands from the policy", node)
            node.proc.send_signal(getattr(signal, sig))
            assert node.wait_exit(15.0) == 0, node.tail()
        finally:
            stream.close()
        probe.wait_for(lambda: list(cmds.last().data) == SAFE, 5.0, f"the safe value after {sig}")  # (exited)
        n = len(cmds)
        time.sleep(0.3)
        assert len(cmds) == n  # and nothing after it
