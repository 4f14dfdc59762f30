"""`liquid-control run`: start the liquid controller node from a ROS 2 params YAML.

The same node and the same YAML as `ros2 run liquid_control controller --ros-args --params-file FILE`;
this command only builds that argument list (plus a few shortcuts) and calls the node's main().
Options given override the YAML; options not given leave it alone (`autostart: false` in a YAML stays).

Exit status: 0 after a normal stop, 2 for a bad parameter, 1 when autostart could not configure or
activate the node (a launcher must see it: nobody else would ever configure it). Without autostart the
node waits, unconfigured, for a lifecycle manager, and a failed configure leaves it alive and
unconfigured, as lifecycle managers (nav2's, launch_ros's) expect.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from liquid_control.cli.rosargs import ros_argv
from liquid_control.core.errors import LiquidControlError

HELP = "run the liquid controller node with a params YAML"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", metavar="YAML", help="ROS 2 params file, e.g. config/cartpole.yaml "
                        "(default: config/<robot>.yaml from the share folder)")
    parser.add_argument("--robot", help="robot spec name or path (overrides the params file)")
    parser.add_argument("--model", help="policy artifact path (overrides the params file)")
    parser.add_argument("--backend", choices=("numpy", "onnxruntime", "torch"), help="policy backend")
    parser.add_argument("--rate", type=float, metavar="HZ", help="control rate (10..1000 Hz)")
    parser.add_argument("--use-sim-time", action="store_true", help="follow /clock")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--autostart", dest="autostart", action="store_true", default=None,
                       help="configure and activate at start-up; exit 1 if that fails (default: the YAML's)")
    start.add_argument("--no-autostart", dest="autostart", action="store_false",
                       help="stay unconfigured and wait for a lifecycle manager (default: the YAML's)")
    parser.add_argument("ros_args", nargs=argparse.REMAINDER,
                        help="anything after -- goes to ROS as --ros-args (remaps, -p name:=value, ...)")


def ros_arguments(args: argparse.Namespace) -> list[str]:
    """The argv the node gets: --ros-args --params-file FILE -p ... ."""
    from liquid_control.core.resources import share_dir

    if args.params:
        params = Path(args.params)
    else:
        robot = args.robot or "cartpole"
        params = share_dir() / "config" / f"{Path(robot).stem}.yaml"
    from liquid_control.ros.params_file import check_files

    problem = check_files([str(params)])  # before ROS starts: one line with file and line
    if problem:
        raise LiquidControlError(problem)
    overrides = {"robot": args.robot, "model": args.model, "backend": args.backend,
                 "rate_hz": None if args.rate is None else float(args.rate),
                 "use_sim_time": "true" if args.use_sim_time else None,
                 "autostart": None if args.autostart is None else str(args.autostart).lower()}
    return ros_argv("liquid-control-run", overrides, args.ros_args, head=["--params-file", str(params)])


def run(args: argparse.Namespace) -> int:
    from liquid_control.ros.controller.run import main

    return main(ros_arguments(args))
