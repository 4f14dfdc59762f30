"""The transport floor of a lockstep closed loop: the same messages as the sim bridge and the controller
node exchange, over the same rclpy + DDS path, with no physics, no policy and nothing else per tick.

    python bench/lockstep_floor.py driver --rate 500 --seconds 10 --json OUT   (the bridge's side)
    python bench/lockstep_floor.py responder --rate 500                        (the controller's side)

The driver publishes a stamped sensor_msgs/JointState then /clock (the bridge's QoS), and waits for the
command on a wait set built once (as the bridge does). The responder runs under use_sim_time with the
EventsExecutor: a best-effort JointState subscription, and a tick from the clock's jump callback that
publishes a std_msgs/Float64MultiArray (reliable, depth 1) at each period boundary, as the node does.
bench_sim.py runs it beside the real closed loop: the gap between the two is what our nodes add.
Here every message goes through rclpy's message objects; the nodes pack and unpack the fixed-layout ones
(JointState sensors, /clock, Float64MultiArray commands) as CDR bytes themselves (liquid_control.ros.
messages), which is cheaper, so their loop is measured against a floor they do not share all of.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def responder(rate: float) -> int:
    import rclpy
    from rclpy.clock import JumpThreshold
    from rclpy.duration import Duration
    from rclpy.executors import ExternalShutdownException
    from rclpy.experimental import EventsExecutor
    from rclpy.parameter import Parameter
    from rclpy.task import Future
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from liquid_control.ros.qos import COMMAND_QOS, SENSOR_QOS

    rclpy.init()
    node = rclpy.create_node("lockstep_floor_responder",
                             parameter_overrides=[Parameter("use_sim_time", Parameter.Type.BOOL, True)])
    latest = [None]
    node.create_subscription(JointState, "joint_states", lambda m: latest.__setitem__(0, m), SENSOR_QOS)
    pub = node.create_publisher(Float64MultiArray, "effort_controller/commands", COMMAND_QOS)
    cmd = Float64MultiArray()
    clock, period = node.get_clock(), int(round(1e9 / rate))
    deadline = [0]

    def on_jump(_jump) -> None:
        now = clock.now().nanoseconds
        if now >= deadline[0]:
            deadline[0] = now - now % period + period
            msg = latest[0]
            cmd.data = [msg.position[0] if msg is not None and len(msg.position) else 0.0]
            pub.publish(cmd)

    handle = clock.create_jump_callback(JumpThreshold(min_forward=Duration(nanoseconds=1), min_backward=None),
                                        post_callback=on_jump)
    executor = EventsExecutor()
    executor.add_node(node)
    never = Future()
    try:
        while rclpy.ok():
            executor.spin_until_future_complete(never, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        handle.unregister()
        rclpy.try_shutdown()
    return 0


def driver(rate: float, seconds: float, out: Path | None, wait_for: float = 20.0) -> int:
    import rclpy
    from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from liquid_control.ros.messages import stamp_of
    from liquid_control.ros.qos import CLOCK_QOS, COMMAND_SUB_QOS, SENSOR_PUB_QOS

    rclpy.init()
    node = rclpy.create_node("lockstep_floor_driver")
    js_pub = node.create_publisher(JointState, "joint_states", SENSOR_PUB_QOS)
    clock_pub = node.create_publisher(Clock, "/clock", CLOCK_QOS)
    sub = node.create_subscription(Float64MultiArray, "effort_controller/commands", lambda m: None,
                                   COMMAND_SUB_QOS)
    with node.context.handle:
        wait_set = _rclpy.WaitSet(1, 0, 0, 0, 0, 0, node.context.handle)

    def wait_take(timeout_ns: int):
        with sub.handle, node.context.handle:
            wait_set.clear_entities()
            wait_set.add_subscription(sub.handle)
            wait_set.wait(timeout_ns)
            info = sub.handle.take_message(sub.msg_type, sub.raw)
        return None if info is None else info[0]

    js = JointState()
    js.name = ["slider", "hinge"]
    clk = Clock()
    period = int(round(1e9 / rate))
    t0 = time.monotonic()
    while node.count_publishers("effort_controller/commands") == 0 or clock_pub.get_subscription_count() == 0:
        if time.monotonic() - t0 > wait_for:
            print("lockstep_floor: no responder", file=sys.stderr)
            return 1
        time.sleep(0.01)
    t_ns, ticks, timeouts, warm = period, int(round(seconds * rate)), 0, 0
    # Pre-roll until the responder answers (its clock subscription may match later than its publisher).
    while True:
        js.header.stamp = stamp_of(t_ns)
        js.position, js.velocity, js.effort = [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]
        js_pub.publish(js)
        clk.clock = stamp_of(t_ns)
        clock_pub.publish(clk)
        t_ns += period
        if wait_take(20_000_000) is not None:
            break
        warm += 1
        if time.monotonic() - t0 > wait_for:
            print("lockstep_floor: the responder never answered", file=sys.stderr)
            return 1
    start = time.monotonic()
    for k in range(ticks):
        js.header.stamp = stamp_of(t_ns)
        js.position, js.velocity, js.effort = [k * 1e-3, 0.0], [0.0, 0.0], [0.0, 0.0]
        js_pub.publish(js)
        clk.clock = stamp_of(t_ns)
        clock_pub.publish(clk)
        if wait_take(2_000_000_000) is None:
            timeouts += 1
        t_ns += period
    wall = time.monotonic() - start
    result = {"ticks": ticks, "wall_time": wall, "sim_time": ticks / rate, "timeouts": timeouts,
              "real_time_factor": ticks / rate / wall, "preroll_ticks": warm}
    if out is not None:
        out.write_text(json.dumps(result) + "\n")
    print(json.dumps(result))
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=("driver", "responder"))
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=10.0, help="driver: sim seconds")
    parser.add_argument("--json", type=Path, default=None, help="driver: write the result here")
    args = parser.parse_args(argv)
    if args.role == "responder":
        return responder(args.rate)
    return driver(args.rate, args.seconds, args.json)


if __name__ == "__main__":
    sys.exit(main())
