"""`liquid-control distill`: DAgger from a privileged teacher into a liquid student that sees only the robot's sensors."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "distil a privileged teacher into a liquid student (DAgger)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from liquid_control.cli.config_args import add_config_arguments
    from liquid_control.learning.distill import DistillConfig

    add_config_arguments(p.add_argument_group("settings (liquid_control.learning.distill.DistillConfig)"),
                         DistillConfig)
    run_ = p.add_argument_group("the run")
    run_.add_argument("--out", type=Path, default=Path("runs/distill"),
                      help="run folder: checkpoint, metrics, policy (default: %(default)s)")
    run_.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")


def run(args: argparse.Namespace) -> int:
    from liquid_control.cli.config_args import config_from_args
    from liquid_control.learning.distill import DistillConfig, distill
    from liquid_control.learning.envs import env_id
    from liquid_control.learning.logs import command_line

    env_id(args.robot)
    cfg = config_from_args(DistillConfig, args)
    res = distill(cfg, args.out, command=command_line(), progress=not args.no_progress)
    (Path(args.out) / "result.json").write_text(json.dumps(res, indent=2) + "\n")
    print(f"distilled {res['steps']} env steps in {res['time_s']:.0f} s; best student eval {res['best_eval']:.1f} "
          f"(iteration {res['best_iter']}); policy: {res['artifact']}")
    return 0
