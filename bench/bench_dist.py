"""Training throughput with the rollouts on Ray: the single-process trainer beside 1 and 2 Ray workers, same run,
and a projection (not a measurement) for more workers.

    python bench/bench_dist.py [--updates U] [--rounds R] [--json PATH]  (JSON default: bench/results/dist.json)

The run: cartpole, CfC 32 (the cartpole defaults: 8 envs x 128 steps, 10 epochs x 4 minibatches, TBPTT 16),
target_kl off so that every update runs all its epochs (the learner's time per update is then fixed), no
evaluation until the last update. Modes (rounds interleaved, the best round per mode reported):
  single process    ppo.Trainer: 8 envs in a SyncVectorEnv, learner in the same process
  Ray, 1 worker     ppo_ray.RayTrainer, a local Ray instance of 1 CPU: 1 worker x 8 envs
  Ray, 2 workers    the same with 2 CPUs: 2 workers x 4 envs
Per update (medians over the updates after the first): rollout s (the learner's wait for the buffers: the
workers' rollouts plus, on Ray, sending weights and gathering buffers), worker s (the slowest worker's own
rollout), learn s (GAE + the PPO epochs), and env steps/s over the whole update (rollout + learn + checkpoint).

Projection for W workers x 4 envs (synchronous: every update waits for all workers, then learns):
  update time(W) = worker rollout + W x per-worker overhead + learn(W x 4 x 128 samples)
with the worker rollout and per-worker overhead measured with 2 workers, and the learner's time per update
fitted as a + b x samples on updates of 1k, 4k and 16k samples timed here (ppo.Trainer._update on real
rollouts). It assumes a core per worker, a learner on one core and one torch thread, and a network as fast
as this machine's loopback; 64 workers extrapolate the learner fit from 16k to 32k samples.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

N_ENVS, N_STEPS = 8, 128
MODES = {"single process": None, "Ray, 1 worker": (1, 8), "Ray, 2 workers": (2, 4)}
PROJECTED = (1, 2, 8, 64)
ENVS_PER_WORKER = 4


def _config(updates: int, n_envs: int = N_ENVS):
    from liquid_control.learning.ppo_config import PPOConfig

    return PPOConfig(robot="cartpole", cell="cfc", units=32, n_envs=n_envs, n_steps=N_STEPS, steps=updates * n_envs * N_STEPS,
                     seed=0, target_kl=None, eval_every=10**9, eval_episodes=1)


def _medians(csv_path: Path) -> dict[str, float]:
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))[1:]  # the first update pays for warm-up
    times = [float(r["time_s"]) for r in rows]
    return {"rollout_s": statistics.median(float(r["rollout_s"]) for r in rows),
            "learn_s": statistics.median(float(r["learn_s"]) for r in rows),
            "update_s": statistics.median(b - a for a, b in zip(times, times[1:]))}


def time_mode(mode: str, updates: int, folder: Path) -> dict[str, float]:
    """One run of `updates` updates in `mode`: median per-update timings."""
    from liquid_control.learning.ppo import Trainer

    layout = MODES[mode]
    if layout is None:
        Trainer(_config(updates), folder, progress=False).train()
        return {**_medians(folder / "metrics.csv"), "worker_s": float("nan")}
    from liquid_control.ray_cluster import ray_session
    from liquid_control.learning.ppo_ray import RayTrainer

    workers, per_worker = layout
    with ray_session("", workers):
        tr = RayTrainer(_config(updates), folder, workers=workers, envs_per_worker=per_worker, progress=False)
        slowest: list[float] = []
        collect = tr.rollouts.collect

        def timed():
            got = collect()
            slowest.append(max(tr.rollouts.worker_s))
            return got

        tr.rollouts.collect = timed
        tr.train()
    return {**_medians(folder / "metrics.csv"), "worker_s": statistics.median(slowest[1:])}


def learner_fit(folder: Path) -> dict[str, float]:
    """The learner's time per update (GAE + PPO epochs) at 1k, 4k and 16k samples, fitted as a + b x samples."""
    from liquid_control.learning.ppo import Trainer

    xs, ys = [], []
    for n_envs in (8, 32, 128):
        tr = Trainer(_config(1, n_envs), folder / f"learn{n_envs}", progress=False)
        tr.rollouts.start(0)
        got = tr.rollouts.collect()
        tr.rollouts.close()
        best = float("inf")
        for _ in range(2):
            t0 = time.perf_counter()
            adv, ret = tr._advantages(got)
            tr._update(got.buf, adv, ret)
            best = min(best, time.perf_counter() - t0)
        tr.log.close()
        xs.append(n_envs * N_STEPS)
        ys.append(best)
    mx, my = statistics.mean(xs), statistics.mean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return {"a_s": my - b * mx, "b_s_per_sample": b, "samples": xs, "learn_s": ys}


def project(measured: dict[str, dict[str, float]], fit: dict[str, float]) -> list[dict[str, float]]:
    two = measured["Ray, 2 workers"]
    overhead = max(0.0, two["rollout_s"] - two["worker_s"]) / 2
    rows = []
    for w in PROJECTED:
        samples = w * ENVS_PER_WORKER * N_STEPS
        learn = fit["a_s"] + fit["b_s_per_sample"] * samples
        rollout = two["worker_s"] + w * overhead
        rows.append({"workers": w, "samples": samples, "rollout_s": rollout, "learn_s": learn,
                     "steps_per_s": samples / (rollout + learn), "learner_share": learn / (rollout + learn)})
    return rows


def run(updates: int, rounds: int) -> dict:
    load0 = os.getloadavg()[0]
    best: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_dist_") as tmp:
        for r in range(rounds):
            for mode in MODES:
                m = time_mode(mode, updates, Path(tmp) / f"{r}_{mode.replace(' ', '_').replace(',', '')}")
                if mode not in best or m["update_s"] < best[mode]["update_s"]:
                    best[mode] = m
        fit = learner_fit(Path(tmp))
    per_update = N_ENVS * N_STEPS
    for m in best.values():
        m["steps_per_s"] = per_update / m["update_s"]
    return {"updates": updates, "rounds": rounds, "cpus": os.cpu_count(), "load_1min": [load0, os.getloadavg()[0]],
            "python": platform.python_version(), "modes": best, "learner_fit": fit, "projection": project(best, fit)}


def table(result: dict) -> str:
    lines = [f"cartpole CfC 32, {N_ENVS} envs x {N_STEPS} steps an update ({N_ENVS * N_STEPS} env steps), "
             f"{result['updates']} updates, best of {result['rounds']} rounds; {result['cpus']} CPUs, 1-minute load "
             f"{result['load_1min'][0]:.1f} at the start, {result['load_1min'][1]:.1f} at the end",
             f"{'mode':<16} {'steps/s':>8} {'update s':>9} {'rollout s':>10} {'worker s':>9} {'learn s':>8}"]
    for mode, m in result["modes"].items():
        worker = "-" if m["worker_s"] != m["worker_s"] else f"{m['worker_s']:.3f}"
        lines.append(f"{mode:<16} {m['steps_per_s']:>8.0f} {m['update_s']:>9.3f} {m['rollout_s']:>10.3f} "
                     f"{worker:>9} {m['learn_s']:>8.3f}")
    fit = result["learner_fit"]
    lines += ["", "learner time per update: " + ", ".join(f"{s} samples {t:.3f} s" for s, t in
                                                        zip(fit["samples"], fit["learn_s"]))
              + f"; fit {fit['a_s']:.3f} s + {fit['b_s_per_sample'] * 1e6:.1f} us x samples",
              f"PROJECTION (not measured), W workers x {ENVS_PER_WORKER} envs, a core each:",
              f"{'workers':>7} {'samples':>8} {'rollout s':>10} {'learn s':>8} {'steps/s':>8} {'learner share':>14}"]
    for p in result["projection"]:
        lines.append(f"{p['workers']:>7} {p['samples']:>8} {p['rollout_s']:>10.3f} {p['learn_s']:>8.3f} "
                     f"{p['steps_per_s']:>8.0f} {p['learner_share']:>13.0%}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench_dist.py", description=__doc__.splitlines()[0])
    p.add_argument("--updates", type=int, default=8, help="PPO updates per mode and round (default 8)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds, the best of each mode kept (default 2)")
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "dist.json",
                   help="where the figures go as JSON (default bench/results/dist.json, which git ignores)")
    args = p.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    result = run(args.updates, args.rounds)
    print(table(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"JSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
