"""`liquid-control train`: train a liquid policy in MuJoCo with recurrent PPO and export the artifact."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "train a liquid policy in MuJoCo with recurrent PPO"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from liquid_control.learning.ppo import PPOConfig

    d = PPOConfig()
    p.add_argument("--robot", default=d.robot, help="robot spec name (cartpole, cartpole_novel, reacher)")
    p.add_argument("--cell", default=d.cell, help="liquid cell: cfc or ltc")
    p.add_argument("--units", type=int, default=d.units, help="hidden units of the cell")
    p.add_argument("--wiring", default=d.wiring, help="full (fully connected + projection) or ncp (ncps AutoNCP)")
    p.add_argument("--backbone-units", type=int, default=d.backbone_units, help="CfC backbone width")
    p.add_argument("--backbone-layers", type=int, default=d.backbone_layers, help="CfC backbone depth")
    p.add_argument("--mode", default=d.mode, help="CfC mode: default, pure or no_gate")
    p.add_argument("--steps", type=int, default=d.steps, help="total environment steps")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", type=Path, default=Path("runs/train"), help="run folder (checkpoints, metrics, policy)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--n-envs", type=int, default=d.n_envs, help="parallel envs (Gymnasium vector API)")
    p.add_argument("--vector", default=d.vector, choices=("sync", "async"),
                   help="sync: envs in this process; async: one subprocess each")
    p.add_argument("--n-steps", type=int, default=d.n_steps, help="rollout length per env and update")
    p.add_argument("--tbptt", type=int, default=d.tbptt, help="truncated-BPTT sequence length")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--minibatches", type=int, default=d.minibatches)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--gamma", type=float, default=d.gamma)
    p.add_argument("--gae-lambda", type=float, default=d.gae_lambda)
    p.add_argument("--clip", type=float, default=d.clip)
    p.add_argument("--ent-coef", type=float, default=d.ent_coef)
    p.add_argument("--target-kl", type=float, default=d.target_kl, help="early-stop epochs above this KL (0: off)")
    p.add_argument("--init-log-std", type=float, default=d.init_log_std)
    p.add_argument("--dt-jitter", type=float, default=d.dt_jitter,
                   help="train with each control period drawn from nominal * [1-j, 1+j]")
    p.add_argument("--drop-prob", type=float, default=0.0,
                   help="train with missed control ticks: a step lasts one more period with this probability")
    p.add_argument("--timestep", type=float, default=None,
                   help="MuJoCo timestep override (finer physics to resolve jittered periods)")
    p.add_argument("--eval-every", type=int, default=d.eval_every, help="evaluate every N env steps")
    p.add_argument("--eval-episodes", type=int, default=d.eval_episodes)
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")


def run(args: argparse.Namespace) -> int:
    from liquid_control.learning.ppo import PPOConfig, train
    from liquid_control.learning.logs import command_line

    cfg = PPOConfig(robot=args.robot, cell=args.cell, units=args.units, wiring=args.wiring,
                    backbone_units=args.backbone_units,
                    backbone_layers=args.backbone_layers, mode=args.mode, steps=args.steps, seed=args.seed,
                    n_envs=args.n_envs, vector=args.vector, n_steps=args.n_steps, tbptt=args.tbptt,
                    epochs=args.epochs, minibatches=args.minibatches, lr=args.lr, gamma=args.gamma,
                    gae_lambda=args.gae_lambda, clip=args.clip, ent_coef=args.ent_coef,
                    target_kl=args.target_kl or None, init_log_std=args.init_log_std, dt_jitter=args.dt_jitter,
                    eval_every=args.eval_every, eval_episodes=args.eval_episodes,
                    env_kwargs={k: v for k, v in (("timestep", args.timestep), ("drop_prob", args.drop_prob)) if v})
    res = train(cfg, args.out, resume=args.resume, command=command_line(), progress=not args.no_progress)
    (Path(args.out) / "result.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(f"trained {res['steps']} steps in {res['time_s']:.0f} s; best eval {res['best_eval']:.1f} "
          f"at step {res['best_step']}; policy: {res['artifact']}")
    return 0
