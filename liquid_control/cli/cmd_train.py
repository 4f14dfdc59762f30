"""`liquid-control train`: train a liquid policy in MuJoCo with recurrent PPO and export the artifact."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "train a liquid policy in MuJoCo with recurrent PPO"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from liquid_control.cli.config_args import add_config_arguments
    from liquid_control.learning.ppo_config import PPOConfig

    add_config_arguments(p.add_argument_group("hyper-parameters (liquid_control.learning.ppo_config.PPOConfig)"),
                         PPOConfig)
    env = p.add_argument_group("env options")
    env.add_argument("--drop-prob", type=float, default=0.0,
                     help="train with missed control ticks: a step lasts one more period with this probability "
                          "(default: %(default)s)")
    env.add_argument("--timestep", type=float, default=None,
                     help="MuJoCo timestep override (finer physics to resolve jittered periods; default: the model's)")
    run_ = p.add_argument_group("the run")
    run_.add_argument("--out", type=Path, default=Path("runs/train"),
                      help="run folder: checkpoints, metrics, policy (default: %(default)s)")
    run_.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    run_.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")


def run(args: argparse.Namespace) -> int:
    from liquid_control.cli.config_args import config_from_args
    from liquid_control.learning.logs import command_line
    from liquid_control.learning.ppo import PPOConfig, train

    env_kwargs = {k: v for k, v in (("timestep", args.timestep), ("drop_prob", args.drop_prob)) if v}
    cfg = config_from_args(PPOConfig, args, env_kwargs=env_kwargs)
    res = train(cfg, args.out, resume=args.resume, command=command_line(), progress=not args.no_progress)
    (Path(args.out) / "result.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(f"trained {res['steps']} steps in {res['time_s']:.0f} s; best eval {res['best_eval']:.1f} "
          f"at step {res['best_step']}; policy: {res['artifact']}")
    return 0
