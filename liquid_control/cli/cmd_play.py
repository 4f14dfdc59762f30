"""`liquid-control play BAG [--rate R] [--loop] [--clock] [--topics T ...] [--remap a:=b] [--start-offset S]`:
republish a rosbag2 bag on ROS 2 topics (raw CDR, paced by bag time x rate, optional /clock)."""
from __future__ import annotations

import argparse
from pathlib import Path

from liquid_control.cli.bag_options import add_read_checks

HELP = "republish a rosbag2 bag on ROS 2 topics"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bag", type=Path, help="rosbag2 bag directory, or a single .mcap / .db3 file")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1)")
    p.add_argument("--loop", action="store_true", help="start again at the end, until Ctrl-C")
    p.add_argument("--clock", action="store_true", help="publish bag time on /clock (for nodes under use_sim_time)")
    p.add_argument("--clock-hz", type=float, default=0.0, metavar="HZ",
                   help="with --clock: also publish /clock at this rate between messages (default: per message)")
    p.add_argument("--topics", nargs="+", metavar="T", help="play only these topics (default: all)")
    p.add_argument("--remap", action="append", default=[], metavar="RECORDED:=NEW", help="publish a topic under another name")
    p.add_argument("--start-offset", type=float, default=0.0, metavar="S", help="skip the first S seconds")
    p.add_argument("--duration", type=float, metavar="D", help="play only D seconds")
    p.add_argument("--wait-for-subscribers", type=float, default=10.0, metavar="S",
                   help="wait up to S seconds for a subscriber on every played topic (0: do not wait)")
    p.add_argument("--min-subscribers", type=int, default=1, metavar="N",
                   help="wait for N subscribers on every played topic (e.g. 2: a controller and a recorder)")
    p.add_argument("--delay", type=float, default=0.2, metavar="S",
                   help="seconds between finding the subscribers and the first message (readers finish matching)")
    add_read_checks(p, "publishing", "10 s")


def run(args: argparse.Namespace) -> int:
    from liquid_control.bags.replay import parse_remaps
    from liquid_control.ros.bag_player import PlayOptions, play

    options = PlayOptions(rate=args.rate, loop=args.loop, clock=args.clock, clock_hz=args.clock_hz,
                          topics=tuple(args.topics) if args.topics else None, remap=parse_remaps(args.remap),
                          start_offset=args.start_offset, duration=args.duration,
                          wait_for_subscribers=args.wait_for_subscribers, min_subscribers=args.min_subscribers,
                          recover=args.recover, delay=args.delay, allow_partial=args.allow_partial,
                          max_gap=PlayOptions.max_gap if args.max_gap is None else args.max_gap)
    try:
        result = play(args.bag, options)
    except KeyboardInterrupt:
        print("play: stopped")
        return 0
    topics = ", ".join(f"{k} -> {v}" if k != v else k for k, v in result.topics.items())
    print(f"played {result.published} messages ({result.bag_seconds:.3f} s of bag, {result.loops} pass(es)) "
          f"in {result.wall:.3f} s on {topics}")
    for line in result.notes:
        print(f"  bag: {line}")
    for line in result.partial:
        print(f"  partial playback: {line}")
    return 0
