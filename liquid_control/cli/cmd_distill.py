"""`liquid-control distill`: DAgger from a privileged teacher into a liquid student that sees only the robot's sensors."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "distil a privileged teacher into a liquid student (DAgger)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from liquid_control.learning.distill import DistillConfig

    d = DistillConfig()
    p.add_argument("--robot", default=d.robot, help="the student's robot spec (what its sensors give)")
    p.add_argument("--teacher", default=None,
                   help="teacher: a policy artifact (.onnx) or a stable-baselines3 model (.zip); "
                        "default: the shipped full-state cartpole policy")
    p.add_argument("--teacher-robot", default=None, help="the teacher's robot spec (default: its artifact's)")
    p.add_argument("--cell", default=d.cell, help="student cell: cfc or ltc")
    p.add_argument("--units", type=int, default=d.units)
    p.add_argument("--backbone-units", type=int, default=d.backbone_units)
    p.add_argument("--iters", type=int, default=d.iters, help="DAgger iterations")
    p.add_argument("--n-envs", type=int, default=d.n_envs)
    p.add_argument("--rollout-steps", type=int, default=d.rollout_steps, help="steps per env and iteration")
    p.add_argument("--beta-decay", type=float, default=d.beta_decay,
                   help="probability of executing the teacher's action in iteration i: beta-decay ** i")
    p.add_argument("--seq-len", type=int, default=d.seq_len, help="BPTT sequence length")
    p.add_argument("--grad-steps", type=int, default=d.grad_steps, help="gradient steps per iteration")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--dt-jitter", type=float, default=d.dt_jitter)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", type=Path, default=Path("runs/distill"))
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from liquid_control.core.resources import default_policy_path
    from liquid_control.learning.distill import DistillConfig, distill
    from liquid_control.learning.envs import env_id
    from liquid_control.learning.logs import command_line

    env_id(args.robot)
    teacher = args.teacher or str(default_policy_path("cartpole"))
    cfg = DistillConfig(robot=args.robot, teacher=teacher, teacher_robot=args.teacher_robot, cell=args.cell,
                        units=args.units, backbone_units=args.backbone_units, iters=args.iters, n_envs=args.n_envs,
                        rollout_steps=args.rollout_steps, beta_decay=args.beta_decay, seq_len=args.seq_len,
                        grad_steps=args.grad_steps, lr=args.lr, dt_jitter=args.dt_jitter, seed=args.seed)
    res = distill(cfg, args.out, command=command_line(), progress=not args.no_progress)
    (Path(args.out) / "result.json").write_text(json.dumps(res, indent=2) + "\n")
    print(f"distilled {res['steps']} env steps in {res['time_s']:.0f} s; best student eval {res['best_eval']:.1f} "
          f"(iteration {res['best_iter']}); policy: {res['artifact']}")
    return 0
