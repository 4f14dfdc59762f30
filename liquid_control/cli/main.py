"""`liquid-control`: one command, with a subcommand per job.

Each subcommand lives in its own module `liquid_control.cli.cmd_<name>` exposing
`HELP` (one line), `add_arguments(parser)` and `run(args) -> int`. Modules are imported only when
their subcommand runs, so `liquid-control info` never pays for torch or rclpy.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from liquid_control.cli.extras import missing_module_line
from liquid_control.core.errors import LiquidControlError

# name -> one-line help. Kept here (not read from the modules) so `--help` imports nothing heavy.
SUBCOMMANDS: dict[str, str] = {
    "info": "show what is inside a policy artifact",
    "export": "export a training checkpoint to a policy artifact",
    "run": "run the liquid controller node with a params YAML",
    "sim": "run the MuJoCo sim bridge node for a robot",
    "demo": "closed loop: sim bridge + controller node over ROS 2, with a summary and plot",
    "train": "train a liquid policy in MuJoCo with recurrent PPO",
    "distill": "distil a privileged teacher into a liquid student (DAgger)",
    "eval": "evaluate a policy artifact in the MuJoCo env",
    "replay": "replay a rosbag2 bag through a policy offline",
    "play": "republish a rosbag2 bag on ROS 2 topics",
    "record": "record a robot's spec topics to a rosbag2 bag",
    "train-bc": "behaviour cloning of a liquid policy from bags",
    "sweep": "train over a grid of settings x seeds (in this process or on Ray): a table and the best policy",
    "bench": "benchmarks: step, loop, sim, replay, train",
}


def _module(name: str):
    return importlib.import_module(f"liquid_control.cli.cmd_{name.replace('-', '_')}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="liquid-control", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == only:
            _module(name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in SUBCOMMANDS:
        command = None
    try:
        parser = build_parser(only=command)
    except ModuleNotFoundError as exc:
        line = missing_module_line(exc, f"liquid-control {command}", command)
        print(line or f"liquid-control {command}: not available here ({exc})", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(_module(args.command).run(args) or 0)
    except LiquidControlError as exc:
        print(f"liquid-control {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # an optional dependency (a pip extra) that is not installed
        line = missing_module_line(exc, f"liquid-control {args.command}", args.command)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"liquid-control {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `liquid-control info M | head`: the reader left; not an error of ours
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
