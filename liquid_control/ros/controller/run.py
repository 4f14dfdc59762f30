"""The controller's process: rclpy init, the executor, signals, autostart; `main` is the entry point of
`ros2 run liquid_control controller` and `liquid-control run`."""
from __future__ import annotations

import gc
import sys
import threading

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.task import Future

from liquid_control.ros.controller.node import LiquidController
from liquid_control.ros.controller.params import NODE_NAME


def main(args: list[str] | None = None) -> int:
    """Entry point of `ros2 run liquid_control controller` and `liquid-control run`."""
    import signal

    from liquid_control.ros.params import init_and_create

    # Our own SIGINT/SIGTERM handling: stop the loop and publish the safe command *before* rclpy's
    # context goes down (rclpy's handler would shut the context first, and the publish would fail).
    stop = threading.Event()
    node = init_and_create(LiquidController, f"{NODE_NAME}: bad parameter", args)
    if node is None:
        return 2
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    # The executor runs callbacks only (the loop has its own thread). rclpy's C++ EventsExecutor costs
    # about half the CPU of the Python SingleThreadedExecutor under a 1 kHz sensor stream and leaves
    # the GIL free more of the time, so the loop thread wakes on time (bench/bench_loop.py measures it).
    executor = None
    if node.param("executor") == "events":
        try:
            from rclpy.experimental import EventsExecutor
        except ImportError:  # Humble's rclpy has none: the node still runs, on the Python executor
            node.get_logger().warning("executor 'events': this rclpy has no rclpy.experimental.EventsExecutor "
                                   "(Humble); using the SingleThreadedExecutor")
        else:
            executor = EventsExecutor()
    if executor is None:
        executor = SingleThreadedExecutor()
    executor.add_node(node)
    if node.autostart and not _autostart(node):
        # Without a lifecycle manager nobody would ever configure it: fail fast, so that the launcher (launch's
        # on_exit / respawn, systemd) sees it. A lifecycle-managed node (autostart false) stays alive instead.
        node.get_logger().fatal("autostart failed: exiting (exit code 1)")
        executor.remove_node(node)
        node.destroy_node()
        rclpy.try_shutdown()
        return 1
    # As in the sim bridge: the configured node lives as long as the process, so the collector need not walk
    # it again (a full collection in the middle of a lockstep run stalls a tick).
    gc.collect()
    gc.freeze()
    try:
        if isinstance(executor, SingleThreadedExecutor):
            while not stop.is_set() and rclpy.ok():
                executor.spin_once(timeout_sec=0.1)
        else:
            # The EventsExecutor runs every event for 0.1 s in C++ (spin_once would come back to this
            # Python loop after each callback: two or three times per lockstep tick). A future that never
            # completes: only the timeout ends each round, and `stop` is checked between rounds.
            never = Future()
            while not stop.is_set() and rclpy.ok():
                executor.spin_until_future_complete(never, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        try:
            node.trigger_shutdown()  # active: stop the loop and publish the safe command once
        except Exception:  # already finalized
            pass
        executor.remove_node(node)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def _autostart(node: LiquidController) -> bool:
    """configure + activate; whether both succeeded."""
    return (node.trigger_configure() == TransitionCallbackReturn.SUCCESS
            and node.trigger_activate() == TransitionCallbackReturn.SUCCESS)


if __name__ == "__main__":
    sys.exit(main())
