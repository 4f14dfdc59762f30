"""`liquid-control eval`: run a policy artifact through the core runtime in the MuJoCo env.

The policy runs on the core runtime (numpy by default, or onnxruntime), never on torch: what is
measured here is what the controller node runs. dt fed to each step = the simulated time since the
previous tick (info["dt"]), so --dt-jitter and --rate-scale test the cell's continuous-time handling.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "evaluate a policy artifact in the MuJoCo env"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", default=None,
                   help="policy artifact (.onnx); default: the robot's shipped policy")
    p.add_argument("--robot", default="cartpole", help="robot spec name (cartpole, cartpole_novel, reacher)")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=0, help="episode i is reset with seed + i")
    p.add_argument("--dt-jitter", type=float, default=0.0, help="control period jitter: +-fraction of nominal")
    p.add_argument("--rate-scale", type=float, default=1.0, help="control rate relative to nominal (0.5, 2)")
    p.add_argument("--timestep", type=float, default=None,
                   help="MuJoCo timestep override (e.g. 0.002 so jittered periods are resolved finely)")
    p.add_argument("--backend", default="numpy", help="runtime backend: numpy or onnxruntime")
    p.add_argument("--node-safety", action="store_true",
                   help="run the policy through the controller node's control law (soft start, rate limit, limits)")
    p.add_argument("--json", type=Path, default=None, help="write the summary as JSON here")
    p.add_argument("--video", type=Path, default=None, help="record the first episodes to this .mp4 / .gif")


def run(args: argparse.Namespace) -> int:
    from liquid_control.core.errors import LiquidControlError
    from liquid_control.core.outputs import check_paths, write_file
    from liquid_control.core.policy import Policy
    from liquid_control.core.resources import default_policy_path
    from liquid_control.core.spec import load_spec
    from liquid_control.learning.evaluate import NodeSafety, run_episodes
    from liquid_control.learning.envs import env_id

    if args.episodes <= 0:
        raise LiquidControlError(f"--episodes must be positive, got {args.episodes}")
    env_id(args.robot)  # an unknown robot is named as such, before looking for its policy
    model = args.model or default_policy_path(args.robot)
    spec = load_spec(args.robot)
    check_paths({"--json": args.json, "--video": args.video}, {"MODEL": model, "--robot": spec.source})
    policy = Policy.load(model, backend=args.backend, spec=spec)
    if args.node_safety:
        policy = NodeSafety(policy, spec, 1.0 / (spec.rate_hz * args.rate_scale))
    res = run_episodes(policy, args.robot, episodes=args.episodes, seed=args.seed, dt_jitter=args.dt_jitter,
                       rate_scale=args.rate_scale, video=args.video,
                       env_kwargs={"timestep": args.timestep} if args.timestep else None)
    res.update(model=str(model), backend=args.backend, timestep=args.timestep, node_safety=args.node_safety)
    print(f"{args.robot}: return {res['mean']:.1f} ± {res['std']:.1f} over {args.episodes} episodes "
          f"(min {res['min']:.1f}, max {res['max']:.1f}), success {100 * res['success_rate']:.0f}% "
          f"(return >= {res['success_threshold']:g}); dt {res['dt_min']:.4f}..{res['dt_max']:.4f} s"
          + (f", jitter ±{args.dt_jitter:.0%}" if args.dt_jitter else "")
          + (f", rate x{args.rate_scale:g}" if args.rate_scale != 1 else ""))
    if args.json:
        write_file(args.json, json.dumps(res, indent=2) + "\n")
    if args.video:
        print(f"video: {args.video}")
    return 0
