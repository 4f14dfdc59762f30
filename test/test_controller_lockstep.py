"""The controller under use_sim_time against the real MuJoCo sim bridge in lockstep (separate processes,
over DDS): each tick runs on the sensor sample of the same sim instant (no one-tick lag), dt is exactly
the sim period, and every /clock tick is answered by exactly one command — with either executor."""
from __future__ import annotations


import numpy as np
import pytest

from controller_fixtures import parse_debug, make_artifact
from ros_helpers import NodeProcess, Probe, console_script, ros_params

NODE = "liquid_controller"


@pytest.mark.parametrize("executor", ["events", "single"])
def test_lockstep_ticks_use_the_same_instants_sensors(tmp_path, executor):
    from std_msgs.msg import Float64MultiArray

    model = make_artifact(tmp_path / "m.onnx", seed=2)
    bridge_argv = console_script("liquid-control", "sim", "--robot", "cartpole", "--mode", "lockstep",
                                 "--duration", "4")
    ctl_argv = console_script("controller", *ros_params(model=str(model), autostart=True, step_debug=True,
                                                        use_sim_time=True, executor=executor))
    with Probe("lockstep_probe") as probe:
        debug = probe.collect(Float64MultiArray, f"/{NODE}/step_debug", 1000)
        with NodeProcess(ctl_argv, name="controller", log_dir=tmp_path) as ctl:
            ctl.wait_for_output(r"active: commanding", 30.0)
            probe.wait_for(lambda: probe.node.count_subscribers(f"/{NODE}/step_debug") > 0
                           and probe.node.count_publishers(f"/{NODE}/step_debug") > 0, 10.0, "debug topic")
            with NodeProcess(bridge_argv, name="sim_bridge", log_dir=tmp_path) as bridge:
                m = bridge.wait_for_output(r"done: .* (\d+) commands, (\d+) timeouts", 60.0)
                assert int(m.group(2)) == 0, bridge.tail()
            probe.wait_for(lambda: len(debug) >= 100, 10.0, "debug records", ctl)
    recs = [parse_debug(m) for _, m in debug.snapshot()]
    stepped = [r for r in recs if r.status == 0]
    assert len(stepped) >= 90
    period = 1.0 / 25.0
    # The tick at sim time t used the JointState the bridge stamped t (published just before /clock t).
    lag = np.array([r.time - r.sensor_stamp for r in stepped])
    np.testing.assert_allclose(lag, 0.0, atol=1e-9)
    np.testing.assert_allclose([r.dt for r in stepped[1:]], period, atol=1e-9)
    assert all(np.isfinite(r.command).all() for r in recs)
