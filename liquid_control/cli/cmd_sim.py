"""`liquid-control sim`: run the MuJoCo sim bridge node for a robot (see liquid_control.ros.sim_bridge).

The same node as `ros2 run liquid_control sim_bridge --ros-args -p robot:=cartpole ...`; this command
only turns its options into ROS parameters.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from liquid_control.bags.versions import VERSION_HELP
from liquid_control.cli.rosargs import ros_argv

HELP = "run the MuJoCo sim bridge node for a robot"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--robot", default="cartpole", help="robot spec name or path (default cartpole)")
    parser.add_argument("--mode", choices=("realtime", "lockstep"), default="realtime",
                        help="realtime: paced by the wall clock; lockstep: publishes /clock and advances one "
                             "period per command (run the controller with --use-sim-time)")
    parser.add_argument("--rate", type=float, metavar="HZ", help="step and sensor rate (default: lockstep the "
                        "control rate, realtime the spec's sim.sensor_rate_hz)")
    parser.add_argument("--timestep", type=float, metavar="S", help="MuJoCo timestep (default: the MJCF's)")
    parser.add_argument("--duration", type=float, default=0.0, metavar="S",
                        help="stop after S seconds of sim time (= wall time in realtime); 0 = until Ctrl-C")
    parser.add_argument("--seed", type=int, default=0, help="initial-state seed (default 0)")
    parser.add_argument("--command", action="append", dest="set_commands", metavar="NAME=VALUE", default=[],
                        help="hold one of the spec's sim.commands at VALUE, e.g. forward_speed=0.6 (repeatable; "
                             "default: drawn per episode)")
    parser.add_argument("--lockstep-timeout", type=float, metavar="S",
                        help="wall seconds to wait for a command (default 2)")
    parser.add_argument("--push-period", type=float, metavar="S", help="push the robot every S sim seconds")
    parser.add_argument("--push-force", type=float, metavar="N",
                        help="push force in newtons along x (default: the spec's sim.push_force)")
    parser.add_argument("--push-body", metavar="BODY",
                        help="MuJoCo body to push (default: the spec's sim.push_body, else the last body)")
    parser.add_argument("--summary", metavar="JSON", help="write a run summary with the state trace here")
    parser.add_argument("--record", metavar="BAG", help="write a rosbag2 (MCAP) of the run to this directory")
    parser.add_argument("--bag-version", metavar="N", help=f"--record's {VERSION_HELP}")
    parser.add_argument("--video", metavar="PATH",
                        help="render the run offscreen to PATH (.gif, or .mp4 with imageio-ffmpeg)")
    parser.add_argument("ros_args", nargs=argparse.REMAINDER,
                        help="anything after -- goes to ROS as --ros-args (remaps, -p name:=value, ...)")


def ros_arguments(args: argparse.Namespace) -> list[str]:
    params = {"robot": args.robot, "mode": args.mode, "seed": args.seed, "duration": float(args.duration),
              "commands": ",".join(args.set_commands) or None,
              "rate_hz": None if args.rate is None else float(args.rate),
              "timestep": None if args.timestep is None else float(args.timestep),
              "lockstep_timeout": None if args.lockstep_timeout is None else float(args.lockstep_timeout),
              "push_period": None if args.push_period is None else float(args.push_period),
              "push_force": None if args.push_force is None else float(args.push_force),
              "push_body": args.push_body, "summary": args.summary,
              "record": None if args.record is None else str(Path(args.record).resolve()),
              "bag_version": args.bag_version,
              "video": None if args.video is None else str(Path(args.video).resolve())}
    return ros_argv("liquid-control-sim", params, args.ros_args)


def run(args: argparse.Namespace) -> int:
    if args.bag_version is not None:  # a mistake is told before the node starts
        from liquid_control.bags.io import check_bag_version

        args.bag_version = check_bag_version(args.bag_version)
    from liquid_control.ros.sim_bridge import main

    return main(ros_arguments(args))
