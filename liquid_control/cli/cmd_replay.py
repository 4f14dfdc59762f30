"""`liquid-control replay BAG [--model M] [--robot R] [--out OUT_BAG] [--csv OUT.csv] [--plot OUT.png] ...`
`liquid-control replay BAG... [--ray [ADDRESS]] [--workers N] [--summary OUT.csv|OUT.json] ...`

Runs a policy over a recorded rosbag2 bag offline, as the controller node would have run it (same
observation assembler, same command pipeline, ticks at the spec's rate on bag time), and reports how
close its commands come to the recorded ones. Several bags, folders of bags or globs are a fleet
(bags/fleet.py): each bag the same replay, one summary row per bag, in this process one after another or
as Ray tasks with --ray (bags/fleet_ray.py).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from pathlib import Path

from liquid_control.ray_cluster import ADDRESS_HELP
from liquid_control.bags.versions import VERSION_HELP
from liquid_control.cli.bag_options import add_read_checks

HELP = "replay a rosbag2 bag through a policy offline"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bag", type=Path, nargs="+", metavar="BAG",
                   help="rosbag2 bag directory, or a single .mcap / .db3 file; several bags, folders of bags or "
                        "globs replay each bag the same way into one summary table (a fleet)")
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
    p.add_argument("--estop-topic", default="/estop", metavar="T",
                   help="std_msgs/Bool e-stop topic in the bag, honoured as the node honours it (default /estop)")
    p.add_argument("--estop-required", action="store_true",
                   help="start with the e-stop engaged until an e-stop message says false (the node's estop_required)")
    p.add_argument("--estop-timeout", type=float, default=0.0, metavar="S",
                   help="the e-stop source is a heartbeat: silence longer than S s of bag time holds the robot "
                        "(the node's estop_timeout; default 0: none)")
    add_read_checks(p, "reading", "100 x the spec's sensor_timeout, at least 10 s")
    p.add_argument("--distro", help="ROS distro whose message definitions decode topics the bag has none for "
                                    "(humble, jazzy, kilted, ...; default: the bag's, else kilted)")
    p.add_argument("--json", type=Path, help="write the summary (ticks, RMSE, skips, ...) as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    fleet = p.add_argument_group("fleet (several bags; exit status 1 when a bag's replay failed)")
    fleet.add_argument("--summary", type=Path, metavar="OUT",
                       help="stream one row per bag (ticks, steps, faulted ticks, RMSE and max |error| vs the "
                            "recorded commands per actuator, skips, error) to a .csv, .json or .jsonl file")
    fleet.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                       help=f"replay the bags as Ray tasks (pip extra [dist]); ADDRESS {ADDRESS_HELP}")
    fleet.add_argument("--workers", type=int, metavar="N",
                       help="with --ray: CPUs of the local Ray instance (default: this machine's), or at most N "
                            "bags at once on a cluster")


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


def with_rate(spec, rate: float | None):
    """The spec at --rate HZ (the spec's own rate without it)."""
    from liquid_control.core.errors import LiquidControlError

    if rate is None:
        return spec
    if not 1.0 <= rate <= 10000.0:
        raise LiquidControlError(f"--rate {rate:g} is outside 1..10000 Hz")
    return dataclasses.replace(spec, rate_hz=float(rate))


def replay_options(args: argparse.Namespace):
    from liquid_control.bags.replay import ReplayOptions, parse_remaps

    return ReplayOptions(start_offset=args.start_offset, duration=args.duration, remap=parse_remaps(args.remap),
                         time_base=args.time_base, ticks=args.ticks, reorder_window=args.reorder_window,
                         recover=args.recover, allow_partial=args.allow_partial, max_gap=args.max_gap,
                         distro=args.distro, estop_topic=args.estop_topic, estop_required=args.estop_required,
                         estop_timeout=args.estop_timeout)


def run(args: argparse.Namespace) -> int:
    from liquid_control.bags.fleet import is_one_bag
    from liquid_control.core.errors import LiquidControlError

    if len(args.bag) > 1 or args.ray is not None or args.summary is not None or not is_one_bag(args.bag[0]):
        return run_fleet(args)
    if args.workers is not None:
        raise LiquidControlError("--workers needs --ray")
    return run_one(args, args.bag[0])


def run_one(args: argparse.Namespace, bag: Path) -> int:
    """One bag, with its own outputs (--out, --csv, --plot, --json)."""
    if args.plot is not None:
        import matplotlib  # noqa: F401  (first: a missing extra is one line now, not after the replay)

    from liquid_control.bags.io import check_bag_version
    from liquid_control.bags.replay import replay
    from liquid_control.core.errors import LiquidControlError
    from liquid_control.core.outputs import check_paths, write_file
    from liquid_control.core.policy import Policy

    bag_version = check_bag_version(args.bag_version) if args.out is not None else None
    spec, model = resolve(args.model, args.robot)
    check_paths({"--out": args.out, "--csv": args.csv, "--plot": args.plot, "--json": args.json},
                {"BAG": bag, "--model": model, "--robot": spec.source})
    spec = with_rate(spec, args.rate)
    policy = Policy.load(model, backend=args.backend, spec=spec)
    options = replay_options(args)
    for out in (args.csv, args.plot, args.json):
        if out is not None and not out.parent.is_dir():
            raise LiquidControlError(f"cannot write {out}: folder {out.parent} does not exist")
    result = replay(bag, policy, spec, options=options, out_bag=args.out, out_storage=args.storage,
                    out_bag_version=bag_version,
                    with_bag_topics=args.with_bag_topics, command_topic=args.command_topic, csv=args.csv,
                    plot=args.plot, progress=not args.no_progress and sys.stderr.isatty())
    print(f"replay of {bag} with {model} ({spec.name}, {spec.rate_hz:g} Hz, {args.time_base} time)")
    for line in result.lines():
        print("  " + line)
    if args.json is not None:
        summary = {
            "bag": str(bag), "model": str(model), "robot": spec.name, "rate_hz": spec.rate_hz,
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


def run_fleet(args: argparse.Namespace) -> int:
    """Many bags: one summary row each, streamed as bags finish; 1 when a bag's replay failed."""
    from liquid_control.bags.fleet import FleetJob, SummaryWriter, expand_bags, iter_rows, run_table
    from liquid_control.core.artifact import read_artifact
    from liquid_control.core.errors import LiquidControlError
    from liquid_control.core.outputs import check_paths

    for option, value in (("--out", args.out), ("--csv", args.csv), ("--plot", args.plot), ("--json", args.json)):
        if value is not None:
            raise LiquidControlError(f"{option} writes one bag's outputs: give one bag, or --summary for a table "
                                     "of many")
    if args.workers is not None and (args.ray is None or args.workers < 1):
        raise LiquidControlError("--workers needs --ray" if args.ray is None else
                                 f"--workers {args.workers} is not >= 1")
    bags = expand_bags(args.bag)
    spec, model = resolve(args.model, args.robot)
    check_paths({"--summary": args.summary},
                {**{f"BAG {b}": b for b in bags}, "--model": model, "--robot": spec.source})
    if args.summary is not None and not args.summary.parent.is_dir():
        raise LiquidControlError(f"cannot write {args.summary}: folder {args.summary.parent} does not exist")
    job = FleetJob(read_artifact(model), with_rate(spec, args.rate), args.backend, replay_options(args))
    with contextlib.ExitStack() as stack:
        if args.ray is None:
            rows, where = iter_rows(bags, job), "in this process"
        else:
            from liquid_control.bags.fleet_ray import iter_ray_rows
            from liquid_control.ray_cluster import ray_session

            ray = stack.enter_context(ray_session(args.ray, args.workers if args.ray == "" else None))
            rows = iter_ray_rows(bags, job, in_flight=args.workers if args.ray else None)
            where = f"on Ray ({args.ray or 'local'}, {int(ray.cluster_resources().get('CPU', 0))} CPUs)"
        writer = stack.enter_context(SummaryWriter(args.summary, job.actions)) if args.summary is not None else None
        print(f"replay of {len(bags)} bags with {model} ({spec.name}, {job.spec.rate_hz:g} Hz, {args.time_base} time) "
              f"{where}", flush=True)
        totals = run_table(rows, len(bags), job.actions, writer=writer,
                           progress=not args.no_progress and sys.stderr.isatty(),
                           echo=print if writer is None else None)
    print(totals.line())
    if args.summary is not None:
        print(f"wrote summary: {args.summary}")
    return 1 if totals.errors else 0
