"""Sim benchmark: env steps per second of each robot's spec-driven env, side by side with the matching
Gymnasium v5 env in the same run (goal: >= 0.8x its raw speed).

Both envs are made with gymnasium.make (same wrapper stack: TimeLimit, OrderEnforcing, env checker), get
the same pre-drawn actions (the v5 env in its own units: action * spec scale) and are reset when an
episode ends. The two are timed in alternating rounds and each reports its best round, which is what a
noisy shared machine allows.

    liquid-control bench sim [--steps N] [--rounds R] [--json PATH]
    python bench/bench_sim.py --json bench/results/sim.json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

HELP = "env steps/s per robot vs the matching Gymnasium v5 env"

# robot -> (our Gymnasium id, the v5 baseline it is compared with)
PAIRS = {
    "cartpole": ("liquid_control/CartPole-v0", "InvertedPendulum-v5"),
    "cartpole_novel": ("liquid_control/CartPoleNovel-v0", "InvertedPendulum-v5"),
    "cartpole_imu": ("liquid_control/CartPoleImu-v0", "InvertedPendulum-v5"),
    "reacher": ("liquid_control/Reacher-v0", "Reacher-v5"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=20000, help="env steps per round (default 20000)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds (default 3)")
    parser.add_argument("--robots", nargs="+", default=list(PAIRS), choices=list(PAIRS), metavar="ROBOT",
                        help=f"robots to measure (default all: {', '.join(PAIRS)})")
    parser.add_argument("--json", type=Path, default=None, help="write the results here as JSON")


def steps_per_second(env, actions: np.ndarray, steps: int) -> float:
    env.reset(seed=0)
    n = len(actions)
    step, reset = env.step, env.reset
    t0 = time.perf_counter()
    for k in range(steps):
        _obs, _r, terminated, truncated, _info = step(actions[k % n])
        if terminated or truncated:
            reset()
    return steps / (time.perf_counter() - t0)


def measure(robot: str, steps: int, rounds: int) -> dict:
    import gymnasium as gym

    import liquid_control.sim  # noqa: F401  (registers the ids)

    ours_id, base_id = PAIRS[robot]
    ours, base = gym.make(ours_id), gym.make(base_id)
    scale = np.asarray(ours.unwrapped.robot_spec.action.scale, dtype=np.float64)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(1000, *ours.action_space.shape)).astype(np.float32)
    base_actions = (actions.astype(np.float64) * scale).astype(np.float32)
    steps_per_second(ours, actions, 500)  # warm up both (first-call checks, caches)
    steps_per_second(base, base_actions, 500)
    ours_sps, base_sps = [], []
    for _ in range(rounds):
        ours_sps.append(steps_per_second(ours, actions, steps))
        base_sps.append(steps_per_second(base, base_actions, steps))
    o, b = max(ours_sps), max(base_sps)
    return {"env": ours_id, "baseline": base_id, "steps_per_s": o, "baseline_steps_per_s": b,
            "ratio": o / b, "obs_size": int(ours.observation_space.shape[0]),
            "rounds": {"ours": ours_sps, "baseline": base_sps}}


def run(args: argparse.Namespace) -> int:
    results = {}
    print(f"{'robot':<15} {'ours (steps/s)':>15} {'Gymnasium v5':>14} {'baseline env':<20} {'ratio':>6}")
    for robot in args.robots:
        r = measure(robot, args.steps, args.rounds)
        results[robot] = r
        flag = "" if r["ratio"] >= 0.8 else "  (< 0.8x goal)"
        print(f"{robot:<15} {r['steps_per_s']:>15,.0f} {r['baseline_steps_per_s']:>14,.0f} {r['baseline']:<20} "
              f"{r['ratio']:>5.2f}x{flag}")
    if args.json is not None:
        import mujoco
        import gymnasium

        payload = {"benchmark": "sim", "steps": args.steps, "rounds": args.rounds, "results": results,
                   "machine": {"python": platform.python_version(), "platform": platform.platform(),
                               "mujoco": mujoco.__version__, "gymnasium": gymnasium.__version__},
                   "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
