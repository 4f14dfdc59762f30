"""`liquid-control train`: train a liquid policy in MuJoCo with recurrent PPO and export the artifact.

With `--ray [ADDRESS] --workers N --envs-per-worker M` the rollouts run on N Ray actors of M envs each
(learning/ppo_ray.py, pip extra [dist]); the run is otherwise the same (n-envs = N x M), so a run started in
one mode resumes in the other.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "train a liquid policy in MuJoCo with recurrent PPO"
DEFAULT_WORKERS = 2  # --ray without --workers


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
    # `sweep` reuses the options above through a filter (cmd_sweep._Without, not a parser) and has a --ray of
    # its own: the rollout workers are train's alone.
    if isinstance(p, argparse.ArgumentParser):
        add_ray_arguments(p.add_argument_group("rollouts on Ray (pip extra [dist])"))


def add_ray_arguments(g: argparse._ArgumentGroup) -> None:
    from liquid_control.ray_cluster import ADDRESS_HELP

    g.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help=f"run the rollouts on Ray actors; ADDRESS {ADDRESS_HELP}")
    g.add_argument("--workers", type=int, metavar="N", help=f"with --ray: rollout workers, one CPU each "
                                                            f"(default: {DEFAULT_WORKERS})")
    g.add_argument("--envs-per-worker", type=int, metavar="M",
                   help="with --ray: envs of each worker; n-envs becomes N x M (default: n-envs / N)")


def ray_layout(args: argparse.Namespace) -> tuple[int, int, int]:
    """(workers, envs per worker, n_envs) from --workers / --envs-per-worker / --n-envs, or a one-line error."""
    from liquid_control.core.errors import LiquidControlError
    from liquid_control.learning.ppo_config import PPOConfig

    workers = DEFAULT_WORKERS if args.workers is None else args.workers
    if workers < 1:
        raise LiquidControlError(f"--workers {workers} is not >= 1")
    if args.envs_per_worker is None:
        if args.n_envs % workers:
            raise LiquidControlError(f"--n-envs {args.n_envs} does not split over {workers} workers; "
                                     "give --envs-per-worker")
        return workers, args.n_envs // workers, args.n_envs
    if args.envs_per_worker < 1:
        raise LiquidControlError(f"--envs-per-worker {args.envs_per_worker} is not >= 1")
    n_envs = workers * args.envs_per_worker
    if args.n_envs not in (n_envs, PPOConfig.n_envs):  # --n-envs left at its default
        raise LiquidControlError(f"--n-envs {args.n_envs} is not --workers x --envs-per-worker ({n_envs}); "
                                 "leave --n-envs out")
    return workers, args.envs_per_worker, n_envs


def run(args: argparse.Namespace) -> int:
    from liquid_control.cli.config_args import config_from_args
    from liquid_control.core.errors import LiquidControlError
    from liquid_control.learning.logs import command_line
    from liquid_control.learning.ppo_config import PPOConfig

    env_kwargs = {k: v for k, v in (("timestep", args.timestep), ("drop_prob", args.drop_prob)) if v}
    if args.ray is None:
        if args.workers is not None or args.envs_per_worker is not None:
            raise LiquidControlError("--workers and --envs-per-worker need --ray")
        from liquid_control.learning.ppo import train

        cfg = config_from_args(PPOConfig, args, env_kwargs=env_kwargs)
        res = train(cfg, args.out, resume=args.resume, command=command_line(), progress=not args.no_progress)
    else:
        res = _train_on_ray(args, env_kwargs)
    (Path(args.out) / "result.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(f"trained {res['steps']} steps in {res['time_s']:.0f} s; best eval {res['best_eval']:.1f} "
          f"at step {res['best_step']}; policy: {res['artifact']}")
    return 0


def _train_on_ray(args: argparse.Namespace, env_kwargs: dict) -> dict:
    from liquid_control.ray_cluster import ADDRESS_HELP, parse_address, ray_session
    from liquid_control.cli.config_args import config_from_args
    from liquid_control.core.errors import LiquidControlError
    from liquid_control.learning.logs import command_line
    from liquid_control.learning.ppo_config import PPOConfig

    workers, per_worker, n_envs = ray_layout(args)
    try:
        parse_address(args.ray)
    except LiquidControlError:
        raise LiquidControlError(f"--ray {args.ray!r} is not a Ray address ({ADDRESS_HELP})") from None
    args.n_envs = n_envs
    cfg = config_from_args(PPOConfig, args, env_kwargs=env_kwargs)
    cfg.validate()  # a bad setting is refused before Ray starts
    with ray_session(args.ray, workers if args.ray == "" else None) as ray:
        print(f"rollouts on Ray ({args.ray or 'local'}, {int(ray.cluster_resources().get('CPU', 0))} CPUs): "
              f"{workers} workers x {per_worker} envs", flush=True)
        from liquid_control.learning.ppo_ray import train_ray

        return train_ray(cfg, args.out, workers=workers, envs_per_worker=per_worker, resume=args.resume,
                         command=command_line(), progress=not args.no_progress)
