"""Run one launch file as `ros2 launch` does, under whichever `launch` / `launch_ros` PYTHONPATH gives.

    python test/launch_runner.py FILE [name:=value ...] [--time-limit S]

A process imports only one launch version, so test/test_launch_files.py starts this script once per
version (PYTHONPATH=<venv>/launch/<distro>) and watches the ROS graph from the test process.

Prints `launch <version> launch_ros <version>` first, then the launch output. It runs until SIGINT or
SIGTERM (LaunchService's own handlers: the launched nodes get SIGINT, as under `ros2 launch`) or until
the time limit. Exit status: 0 after a clean run; LaunchService's (1) when the launch file cannot be
loaded or a substitution fails; 3 when a launched process exited with a non-zero status before
shutdown began (e.g. the controller failing to configure with autostart).
"""
from __future__ import annotations

import argparse
import sys
from importlib.metadata import version

EXIT_NODE_FAILED = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", help="launch file path")
    parser.add_argument("arguments", nargs="*", metavar="name:=value", help="launch arguments")
    parser.add_argument("--time-limit", type=float, default=120.0, metavar="S",
                        help="shut down after S wall seconds (a bound for tests; default 120)")
    args = parser.parse_args(argv)

    from launch import LaunchDescription, LaunchService
    from launch.actions import EmitEvent, IncludeLaunchDescription, RegisterEventHandler, TimerAction
    from launch.event_handlers import OnProcessExit, OnShutdown
    from launch.events import Shutdown
    from launch.launch_description_sources import AnyLaunchDescriptionSource

    print(f"launch {version('launch')} launch_ros {version('launch_ros')}", flush=True)
    launch_arguments = []
    for item in args.arguments:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            print(f"launch_runner: a launch argument must read name:=value, got {item!r}", file=sys.stderr)
            return 2
        launch_arguments.append((name, value))

    state = {"shutting_down": False, "failed": []}

    def on_exit(event, _context):
        # A node that dies on its own (not stopped by the shutdown) fails the run and ends it.
        print(f"launch_runner: {event.action.name} exited with {event.returncode}", flush=True)
        if event.returncode != 0 and not state["shutting_down"]:
            state["failed"].append(event.action.name)
            return [EmitEvent(event=Shutdown(reason=f"{event.action.name} exited with {event.returncode}"))]
        return None

    def on_shutdown(_event, _context):
        state["shutting_down"] = True

    description = LaunchDescription([
        RegisterEventHandler(OnProcessExit(on_exit=on_exit)),
        RegisterEventHandler(OnShutdown(on_shutdown=on_shutdown)),
        IncludeLaunchDescription(AnyLaunchDescriptionSource(args.file), launch_arguments=launch_arguments),
        TimerAction(period=args.time_limit, actions=[EmitEvent(event=Shutdown(reason="time limit"))]),
    ])
    service = LaunchService(argv=[f"{n}:={v}" for n, v in launch_arguments])
    service.include_launch_description(description)
    rc = service.run()
    if rc == 0 and state["failed"]:
        print(f"launch_runner: failed: {', '.join(state['failed'])}", flush=True)
        return EXIT_NODE_FAILED
    return rc


if __name__ == "__main__":
    sys.exit(main())
