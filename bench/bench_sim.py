"""Sim benchmark.

1. Env steps per second of each robot's spec-driven env, side by side with the matching Gymnasium v5 env
   in the same run (goal: >= 0.8x its raw speed).
2. The lockstep closed loop's real-time factor: sim bridge + controller node as separate processes over
   ROS 2 (/clock, sensors, commands), cartpole with the shipped policy at --loop-rate Hz (goal: >= 5x real
   time at 500 Hz). Beside it, in alternating rounds (the median is reported: one run on a shared
   machine moves by 30 %): the transport floor, bench/lockstep_floor.py — the same messages over the same
   rclpy + DDS path with no work per tick, so the gap is what our two nodes add; and the same policy
   stepping the env in one process with no ROS (the ceiling).

Both envs are made with gymnasium.make (same wrapper stack: TimeLimit, OrderEnforcing, env checker), get
the same pre-drawn actions (the v5 env in its own units: action * spec scale) and are reset when an
episode ends. The two are timed in alternating rounds and each reports its best round, which is what a
noisy shared machine allows.

    liquid-control bench sim [--steps N] [--rounds R] [--loop-rate HZ] [--loop-seconds S] [--json PATH]
    python bench/bench_sim.py --json bench/results/sim.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import sys
import time
from pathlib import Path

import numpy as np

from liquid_control.ros.background import ChildProcess

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
    parser.add_argument("--loop-rate", type=float, default=500.0, help="closed-loop control rate, Hz (default 500)")
    parser.add_argument("--loop-seconds", type=float, default=10.0, help="closed-loop sim seconds (default 10)")
    parser.add_argument("--loop-rounds", type=int, default=3,
                        help="closed-loop runs, alternating with the transport floor; the median is reported "
                             "(default 3)")
    parser.add_argument("--no-loop", action="store_true", help="skip the closed-loop (ROS) measurement")
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


def in_process_loop(rate: float, seconds: float) -> float:
    """Real-time factor of the shipped cartpole policy stepping the env directly (no ROS): the ceiling."""
    from liquid_control.core.policy import Policy
    from liquid_control.core.resources import default_policy_path
    from liquid_control.sim.env import SpecEnv

    period = 1.0 / rate
    env = SpecEnv("cartpole", timestep=min(0.02, period))
    policy = Policy.load(default_policy_path("cartpole"))
    obs, _ = env.reset(seed=0)
    policy.reset()
    steps = int(round(seconds * rate))
    t0 = time.perf_counter()
    for _ in range(steps):
        env.set_next_dt(period)
        obs, *_ = env.step(policy.step(obs, period))
    return steps * period / (time.perf_counter() - t0)


def _ros_env() -> dict:
    # Always a private domain on localhost: a benchmark's controller must never reach a live robot graph.
    return {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
            "ROS_DOMAIN_ID": str(100 + os.getpid() % 100)}


def floor_loop(rate: float, seconds: float) -> dict:
    """bench/lockstep_floor.py: the lockstep messages between two processes, no work per tick."""
    script = str(Path(__file__).resolve().parent / "lockstep_floor.py")
    env = _ros_env()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "floor.json"
        responder = ChildProcess([sys.executable, script, "responder", "--rate", str(rate)], "responder", tmp,
                                 env=env).start()
        try:
            driver = subprocess.run([sys.executable, script, "driver", "--rate", str(rate), "--seconds", str(seconds),
                                     "--json", str(out)], env=env, capture_output=True, text=True, timeout=600)
        finally:
            responder.stop()
        if driver.returncode != 0 or not out.exists():
            raise RuntimeError("lockstep floor failed:\n" + driver.stdout + driver.stderr)
        return json.loads(out.read_text())


def ros_loop(rate: float, seconds: float) -> dict:
    """Sim bridge (lockstep) + controller node as two processes; the bridge's summary gives the RTF."""
    timestep = min(0.02, 1.0 / rate)
    env = _ros_env()
    cli = [sys.executable, "-m", "liquid_control.cli.main"]
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "summary.json"
        controller = ChildProcess([*cli, "run", "--robot", "cartpole", "--use-sim-time", "--rate", str(rate)],
                                  "controller", tmp, env=env).start()
        try:
            bridge = subprocess.run([*cli, "sim", "--robot", "cartpole", "--mode", "lockstep", "--rate", str(rate),
                                     "--timestep", str(timestep), "--duration", str(seconds),
                                     "--summary", str(summary)], env=env, capture_output=True, text=True, timeout=600)
        finally:
            controller.stop()
        if bridge.returncode != 0 or not summary.exists():
            raise RuntimeError("closed loop failed:\n" + controller.output() + bridge.stdout + bridge.stderr)
        result = json.loads(summary.read_text())
    hinge = np.asarray(result.pop("trace")["qpos"])[:, 1]
    result["max_abs_pole_angle"] = float(np.abs(hinge).max())
    return result


def run(args: argparse.Namespace) -> int:
    results = {}
    print(f"{'robot':<15} {'ours (steps/s)':>15} {'Gymnasium v5':>14} {'baseline env':<20} {'ratio':>6}")
    for robot in args.robots:
        r = measure(robot, args.steps, args.rounds)
        results[robot] = r
        flag = "" if r["ratio"] >= 0.8 else "  (< 0.8x goal)"
        print(f"{robot:<15} {r['steps_per_s']:>15,.0f} {r['baseline_steps_per_s']:>14,.0f} {r['baseline']:<20} "
              f"{r['ratio']:>5.2f}x{flag}")
    loop = None
    if not args.no_loop:
        rate, seconds = args.loop_rate, args.loop_seconds
        ceiling = in_process_loop(rate, seconds)
        runs, floors = [], []
        for _ in range(max(1, args.loop_rounds)):  # alternating: both see the same machine load
            runs.append(ros_loop(rate, seconds))
            floors.append(floor_loop(rate, seconds))
        rtfs = [r["real_time_factor"] for r in runs]
        floor_rtfs = [f["real_time_factor"] for f in floors]
        rtf, floor_rtf = float(np.median(rtfs)), float(np.median(floor_rtfs))
        r = runs[int(np.argsort(rtfs)[len(rtfs) // 2])]  # the median run
        loop = {"rate_hz": rate, "sim_seconds": seconds, "real_time_factor": rtf, "rounds": rtfs,
                "floor_real_time_factor": floor_rtf, "floor_rounds": floor_rtfs,
                "in_process_real_time_factor": ceiling, "bridge": r}
        us = lambda x: 1e6 / (rate * x)  # noqa: E731  wall microseconds per tick
        print(f"\nlockstep closed loop, cartpole at {rate:g} Hz, {seconds:g} s sim, {len(runs)} alternating rounds "
              f"(median; every round):")
        goal = "" if rtf >= 5 else "  (< 5x goal)"
        print(f"  bridge + controller processes over ROS 2   x{rtf:4.1f}  {us(rtf):4.0f} us/tick  "
              f"({' '.join(f'{x:.1f}' for x in rtfs)}){goal}")
        print(f"  transport floor (same messages, no work)   x{floor_rtf:4.1f}  {us(floor_rtf):4.0f} us/tick  "
              f"({' '.join(f'{x:.1f}' for x in floor_rtfs)})")
        wait = r["answer_wait"] / max(1, r["ticks"])
        print(f"  median run: {r['ticks']} ticks, {r['command_timeouts']} timeouts, max |pole angle| "
              f"{r['max_abs_pole_angle']:.3f} rad; per tick the bridge waited {wait * 1e6:.0f} us for the "
              f"controller's answer and worked {us(r['real_time_factor']) - wait * 1e6:.0f} us")
        print(f"  same policy + env in one process, no ROS: x{ceiling:.0f}")
    if args.json is not None:
        import mujoco
        import gymnasium

        payload = {"benchmark": "sim", "steps": args.steps, "rounds": args.rounds, "results": results,
                   "closed_loop": loop,
                   "machine": {"python": platform.python_version(), "platform": platform.platform(),
                               "mujoco": mujoco.__version__, "gymnasium": gymnasium.__version__},
                   "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="liquid-control bench sim", description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
