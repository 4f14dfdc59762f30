"""`liquid-control replay BAG [--model M] [--robot R] [--out OUT_BAG] [--csv OUT.csv] [--plot OUT.png] ...`

Runs a policy over a recorded rosbag2 bag offline, as the controller node would have run it (same
observation assembler, same command pipeline, ticks at the spec's rate on bag time), and reports how
close its commands come to the recorded ones.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from liquid_control.bags.versions import VERSION_HELP
from liquid_control.cli.bag_options import add_read_checks

HELP = "replay a rosbag2 bag through a policy offline"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bag", type=Path, help="rosbag2 bag directory, or a single .mcap / .db3 file")
    p.add_argument("--model", "-m", type=Path, help="policy artifact (default: the robot's shipped policy)")
    p.add_argument("--robot", "-r", help="robot name or spec YAML (default: the robot the model was trained for)")
    p.add_argument("--backend", default="numpy", help="policy backend: numpy (default), onnxruntime, torch")
    p.add_argument("--out", "-o", type=Path, help="write the replayed commands to this new bag directory")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="storage of --out (default mcap)")
    p.add_argument("--bag-version", metavar="N", help=f"--out's {VERSION_HELP}")
    p.add_argument("--with-bag-topics", action="store_true",
                   help="copy the bag's own topics into --out beside the replayed commands")
    p.add_argument("--command-topic", help="topic of the replayed commands in --out (default: the spec's)")
    p.add_argument("--csv", type=Path, help="write one row per tick (obs, action, command, recorded, hidden state)")
    p.add_argument("--plot", type=Path, help="plot observations, commands (policy vs recorded) and hidden state")
    p.add_argument("--start-offset", type=float, default=0.0, metavar="S", help="skip the first S seconds of the bag")
    p.add_argument("--duration", type=float, metavar="D", help="replay only D seconds")
    p.add_argument("--remap", action="append", default=[], metavar="RECORDED:=NEW",
                   help="treat a recorded topic as another name (as ros2 bag play --remap); repeatable")
    p.add_argument("--time-base", choices=("receive", "header"), default="receive",
                   help="message time: rosbag2 receive (log) time, or header.stamp (messages without a header: "
                        "receive time moved onto the senders' clock by the offset the stamped topics show)")
    p.add_argument("--ticks", choices=("schedule", "recorded"), default="schedule",
                   help="schedule: the spec's rate on bag time; recorded: at each recorded command (the recorded "
                        "controller's own ticks), comparing like for like")
    p.add_argument("--reorder-window", type=float, default=0.5, metavar="S",
                   help="with --time-base header: how far out of stamp order messages may arrive (s)")
    p.add_argument("--rate", type=float, metavar="HZ", help="tick rate (default: the spec's rate_hz)")
    add_read_checks(p, "reading", "100 x the spec's sensor_timeout, at least 10 s")
    p.add_argument("--distro", help="ROS distro whose message definitions decode topics the bag has none for "
                                    "(humble, jazzy, kilted, ...; default: the bag's, else kilted)")
    p.add_argument("--json", type=Path, help="write the summary (ticks, RMSE, skips, ...) as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def resolve(model: Path | None, robot: str | None):
    """(spec, model path) from --model / --robot: the model's own robot when --robot is omitted, the
    robot's shipped policy when --model is omitted."""
    from liquid_control.core.artifact import read_artifact
    from liquid_control.core.errors import LiquidControlError
    from liquid_control.core.resources import default_policy_path
    from liquid_control.core.spec import load_spec

    if model is None and robot is None:
        raise LiquidControlError("give --robot (to use its shipped policy) or --model")
    if robot is None:
        trained_for = read_artifact(model).meta.get("robot")
        if not trained_for:
            raise LiquidControlError(f"{model} does not say which robot it was trained for; pass --robot")
        robot = trained_for
    spec = load_spec(robot)
    return spec, (model if model is not None else default_policy_path(spec.name))


def run(args: argparse.Namespace) -> int:
    if args.plot is not None:
        import matplotlib  # noqa: F401  (first: a missing extra is one line now, not after the replay)

    from liquid_control.bags.io import check_bag_version
    from liquid_control.bags.replay import ReplayOptions, parse_remaps, replay
    from liquid_control.core.errors import LiquidControlError
    from liquid_control.core.outputs import check_paths, write_file
    from liquid_control.core.policy import Policy

    bag_version = check_bag_version(args.bag_version) if args.out is not None else None
    spec, model = resolve(args.model, args.robot)
    check_paths({"--out": args.out, "--csv": args.csv, "--plot": args.plot, "--json": args.json},
                {"BAG": args.bag, "--model": model, "--robot": spec.source})
    if args.rate is not None:
        if not 1.0 <= args.rate <= 10000.0:
            raise LiquidControlError(f"--rate {args.rate:g} is outside 1..10000 Hz")
        spec = dataclasses.replace(spec, rate_hz=float(args.rate))
    policy = Policy.load(model, backend=args.backend, spec=spec)
    options = ReplayOptions(start_offset=args.start_offset, duration=args.duration, remap=parse_remaps(args.remap),
                            time_base=args.time_base, ticks=args.ticks, reorder_window=args.reorder_window,
                            recover=args.recover, allow_partial=args.allow_partial, max_gap=args.max_gap,
                            distro=args.distro)
    for out in (args.csv, args.plot, args.json):
        if out is not None and not out.parent.is_dir():
            raise LiquidControlError(f"cannot write {out}: folder {out.parent} does not exist")
    result = replay(args.bag, policy, spec, options=options, out_bag=args.out, out_storage=args.storage,
                    out_bag_version=bag_version,
                    with_bag_topics=args.with_bag_topics, command_topic=args.command_topic, csv=args.csv,
                    plot=args.plot, progress=not args.no_progress and sys.stderr.isatty())
    print(f"replay of {args.bag} with {model} ({spec.name}, {spec.rate_hz:g} Hz, {args.time_base} time)")
    for line in result.lines():
        print("  " + line)
    if args.json is not None:
        summary = {
            "bag": str(args.bag), "model": str(model), "robot": spec.name, "rate_hz": spec.rate_hz,
            "time_base": args.time_base, "ticks": result.ticks, "steps": result.steps,
            "faulted_ticks": result.faulted_ticks, "first_fault": result.first_fault, "span_s": result.span,
            "wall_s": result.wall, "messages": result.messages,
            "comparison": None if result.comparison is None else [dataclasses.asdict(a) for a in result.comparison],
            "skipped": [{"topic": t, "reason": r, "count": n} for (t, r), n in sorted(result.stats.skipped.items())],
            "timing": result.timing, "partial": result.partial, "padded": result.stats.padded, "damage": result.stats.damage, "notes": result.notes + result.stats.notes,
            "outputs": {k: str(v) for k, v in result.outputs.items()},
        }
        write_file(args.json, json.dumps(summary, indent=2, allow_nan=True) + "\n")
    return 0
