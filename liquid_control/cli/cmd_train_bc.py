"""`liquid-control train-bc BAG... --robot R --out POLICY.onnx`: behaviour cloning of a liquid policy from
the commands recorded in bags (sequences through time, recorded dt), written as a policy artifact."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "behaviour cloning of a liquid policy from bags"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from liquid_control.cli.config_args import add_config_arguments
    from liquid_control.learning.bc import BCConfig

    p.add_argument("bags", type=Path, nargs="+", help="rosbag2 bags holding sensor topics and recorded commands")
    p.add_argument("--robot", "-r", required=True, help="robot name or spec YAML")
    p.add_argument("--out", "-o", type=Path, required=True, help="policy artifact to write (.onnx)")
    add_config_arguments(p.add_argument_group("settings (liquid_control.learning.bc.BCConfig)"), BCConfig)
    p.add_argument("--remap", action="append", default=[], metavar="RECORDED:=NEW",
                   help="read a recorded topic as another name (repeatable)")
    p.add_argument("--time-base", choices=("receive", "header"), default="receive",
                   help="a sample's time: when it was received, or its header stamp (default: %(default)s)")
    p.add_argument("--recover", action="store_true", help="read truncated or damaged bags up to the damage")
    p.add_argument("--eval", type=int, default=0, metavar="EPISODES",
                   help="evaluate the clone in the MuJoCo env for this many episodes (needs mujoco)")


def run(args: argparse.Namespace) -> int:
    from liquid_control.bags.demos import extract_demos
    from liquid_control.bags.replay import ReplayOptions, parse_remaps
    from liquid_control.core.artifact import write_artifact
    from liquid_control.core.errors import LiquidControlError
    from liquid_control.core.spec import load_spec
    from liquid_control.cli.config_args import config_from_args
    from liquid_control.learning.bc import BCConfig, train_bc

    spec = load_spec(args.robot)
    if args.out.suffix != ".onnx":
        raise LiquidControlError(f"--out {args.out}: a policy artifact ends in .onnx")
    options = ReplayOptions(remap=parse_remaps(args.remap), time_base=args.time_base, recover=args.recover)
    data = extract_demos(args.bags, spec, options=options)
    print(f"demonstrations: {len(data.demos)} sequences, {data.steps} steps from {len(args.bags)} bag(s)"
          + (f", {data.breaks} cut by faults or gaps" if data.breaks else ""), flush=True)
    for st in data.stats:
        for line in st.lines()[1:]:
            print(f"  bag: {line}")
    config = config_from_args(BCConfig, args)
    try:
        result = train_bc(data.demos, spec.obs_size, spec.action_size, config, log=lambda s: print(s, flush=True))
    except FloatingPointError as exc:
        raise LiquidControlError(str(exc)) from None
    provenance = {"seed": args.seed, "method": "behaviour cloning", "bags": [str(b) for b in args.bags],
                  "demo_steps": data.steps, "epochs": args.epochs}
    write_artifact(args.out, result.cfg, result.params, spec=spec, provenance=provenance)
    last = result.history[-1]
    print(f"wrote {args.out}: {args.cell} {args.units} units, {result.sequences} sequences, train mse "
          f"{last['train_mse']:.5f}" + (f", val mse {last['val_mse']:.5f}" if "val_mse" in last else "")
          + f", {result.wall:.1f} s")
    if args.eval > 0:
        from liquid_control.core.policy import Policy
        from liquid_control.learning.evaluate import run_episodes

        summary = run_episodes(Policy.load(args.out, spec=spec), spec.name, episodes=args.eval)
        print(f"eval in sim: return {summary['mean']:.1f} +- {summary['std']:.1f} over {args.eval} episodes "
              f"(success rate {summary['success_rate']:.0%})")
    return 0
