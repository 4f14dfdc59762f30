"""`liquid-control record --robot R OUT [--storage sqlite3] [--bag-version N] [--duration S] [--topics T ...]`: record a
robot's spec topics (its sensor topics and its command topic) from a live ROS 2 graph to a rosbag2 bag."""
from __future__ import annotations

import argparse
from pathlib import Path

from liquid_control.bags.versions import VERSION_HELP

HELP = "record a robot's spec topics to a rosbag2 bag"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", type=Path, help="new bag directory")
    p.add_argument("--robot", "-r", required=True, help="robot name or spec YAML: records its sensor and command topics")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="bag storage (default mcap)")
    p.add_argument("--bag-version", metavar="N", help=VERSION_HELP)
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: Ctrl-C)")
    p.add_argument("--topics", nargs="+", default=[], metavar="T", help="also record these topics (type from the graph)")
    p.add_argument("--no-commands", action="store_true", help="do not record the spec's command topic")
    p.add_argument("--use-sim-time", action="store_true", help="stamp messages with /clock time")


def run(args: argparse.Namespace) -> int:
    import signal
    import threading

    from liquid_control.bags.io import check_bag_version, normalize_topic
    from liquid_control.core.spec import load_spec
    from liquid_control.ros.bag_recorder import record

    bag_version = check_bag_version(args.bag_version)  # before waiting for topics
    spec = load_spec(args.robot)
    topics: dict[str, str | None] = {normalize_topic(e.topic): e.msg_type for e in spec.observation}
    if not args.no_commands:
        topics[normalize_topic(spec.action.topic)] = spec.action.msg_type
    for t in args.topics:
        topics.setdefault(normalize_topic(t), None)
    # Ctrl-C / SIGTERM end the recording between callbacks (a KeyboardInterrupt could land inside a
    # write); what has arrived by then is still written.
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    result = record(args.out, topics, storage=args.storage, duration=args.duration, use_sim_time=args.use_sim_time,
                    bag_version=bag_version, stop=stop, log=lambda s: print(s, flush=True))
    counts = ", ".join(f"{t}: {n}" for t, n in result.counts.items())
    print(f"recorded {result.total} messages in {result.wall:.1f} s to {result.path} ({counts})", flush=True)
    return 0
