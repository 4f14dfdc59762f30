"""Without rclpy's EventsExecutor (Humble's rclpy has none), the node falls back to the SingleThreadedExecutor.

The import is hidden in the node's own process (`sys.modules['rclpy.experimental'] = None` makes any import
of it fail, as on Humble); everything else is the real node over DDS. The node must say so in one WARN line,
then control as usual: normal ticks on a streamed sensor, and a clean exit on SIGINT.
"""
from __future__ import annotations

import sys
import time

from controller_fixtures import Streamer, make_artifact, parse_debug
from ros_helpers import NodeProcess, Probe, ros_params

NODE = "liquid_controller"
# The controller's entry point, with rclpy.experimental made unimportable first.
HIDE_AND_RUN = ("import sys; sys.modules['rclpy.experimental'] = None; "
                "from liquid_control.ros.controller.run import main; sys.exit(main())")
WARNING = "has no rclpy.experimental.EventsExecutor"


def test_node_without_events_executor_warns_once_and_controls(tmp_path):
    from std_msgs.msg import Float64MultiArray

    model = make_artifact(tmp_path / "policy.onnx", seed=1)
    argv = [sys.executable, "-c", HIDE_AND_RUN,
            *ros_params(model=str(model), autostart=True, step_debug=True, rate_hz=50.0, soft_start=0.0,
                        sensor_timeout=0.5, executor="events")]
    with Probe("fallback_probe") as probe:
        debug = probe.collect(Float64MultiArray, f"/{NODE}/step_debug", 1000)
        stream = Streamer(probe)
        try:
            with NodeProcess(argv, name="controller", log_dir=tmp_path) as node:
                node.wait_for_output(r"\[WARN\].*" + WARNING + r".*SingleThreadedExecutor", 30.0)
                stream.set("good")
                t0 = time.monotonic()
                probe.wait_for(lambda: sum(parse_debug(m).status == 0 for m in debug.since(t0)) >= 20, 20.0,
                               "20 normal ticks on the SingleThreadedExecutor", node)
                assert node.stop() == 0, node.tail()
        finally:
            stream.close()
    lines = [line for line in node.output().splitlines() if WARNING in line]
    assert len(lines) == 1 and "[WARN]" in lines[0], lines
    assert "Traceback" not in node.output()
