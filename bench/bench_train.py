"""Training benchmarks: our recurrent PPO on liquid cells beside stable-baselines3 at equal settings, same run.

    liquid-control bench train [throughput|novel|timing|reacher|cartpole ...] [--json PATH] [--steps N]
    python bench/bench_train.py throughput --steps 16384

throughput  env steps per second of the whole training loop (rollout + update) on `cartpole`, 8 envs in a
            SyncVectorEnv, 128 steps per env and update, 10 epochs, minibatches of 256 samples, 32 hidden
            units: ours (CfC, LTC) vs stable-baselines3 PPO (MLP 64x64) vs sb3-contrib RecurrentPPO (LSTM 32).
            Rounds alternate between trainers so load changes on a shared machine hit them alike.
cartpole    CfC and LTC on full state: first step at which the deterministic eval reaches >= 950 (budget 100k).
novel       cartpole_novel (joint positions only): CfC vs sb3 PPO MLP with the same observations and budget
            (300k): memory, measured. Both evaluated over 20 episodes by the same loop.
timing      a CfC trained with dt randomization vs an LSTM (RecurrentPPO) trained on the same envs and budget,
            each evaluated at the nominal rate, +-30% period jitter, 0.5x and 2x the rate (timestep 0.004 s,
            so jittered periods are resolved finely); the loss of return relative to nominal.
reacher     CfC vs sb3 PPO MLP on the reacher, same observations, settings and budget (1.5M): mean return
            over 20 and 100 episodes (goal >= -5).
hopper, hopper_pos, half_cheetah
            locomotion (Gymnasium v5 reproduced), 1M env steps each: CfC vs sb3 PPO MLP, and on hopper_pos
            (joint velocities not observed) also sb3-contrib RecurrentPPO LSTM; the same settings for all
            (LOCOMOTION), rewards scaled by the running return std. `--trainers cfc,mlp` runs a subset (each
            row is one run; the rows of separate invocations compare since settings and seeds are equal);
            `--lr` sets every trainer's learning rate.

Each prints a table and writes JSON (default bench/results/train_<what>.json).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from liquid_control.learning.envs import make_env  # noqa: E402
from liquid_control.learning.evaluate import run_episodes  # noqa: E402
from liquid_control.learning.ppo import PPOConfig, Trainer  # noqa: E402

N_ENVS, N_STEPS, EPOCHS, BATCH, UNITS = 8, 128, 10, 256, 32
LOCOMOTION_ROBOTS = ("hopper", "hopper_pos", "half_cheetah")
TIMING_ENV = {"timestep": 0.004}
TIMING_CONDITIONS = {"nominal": {}, "jitter ±30%": {"dt_jitter": 0.3}, "rate x0.5": {"rate_scale": 0.5},
                     "rate x2": {"rate_scale": 2.0}}


# --------------------------------------------------------------------------------------------- trainers
def ours(robot: str, steps: int, seed: int, out: Path, cell: str = "cfc", n_steps: int = N_STEPS,
         batch: int = BATCH, **kw: Any) -> Trainer:
    cfg = PPOConfig(robot=robot, cell=cell, units=UNITS, steps=steps, seed=seed, n_envs=N_ENVS, n_steps=n_steps,
                    epochs=EPOCHS, minibatches=N_ENVS * n_steps // batch, **kw)
    return Trainer(cfg, out, command=f"bench_train {robot} {cell}", progress=False)


def sb3_model(kind: str, robot: str, seed: int, env_kwargs: dict[str, Any] | None = None, lr: float = 3e-4,
              n_steps: int = N_STEPS, batch: int = BATCH, log_std_init: float = 0.0, norm_reward: bool = False):
    """stable-baselines3 PPO (MLP 64x64) or sb3-contrib RecurrentPPO (LSTM 32), obs normalised as ours."""
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    env_kwargs = env_kwargs or {}
    venv = DummyVecEnv([lambda i=i: make_env(robot, seed=seed + i, **env_kwargs) for i in range(N_ENVS)])
    venv.seed(seed)
    venv = VecNormalize(venv, norm_obs=True, norm_reward=norm_reward, clip_obs=10.0, gamma=0.99)
    common = dict(n_steps=n_steps, batch_size=batch, n_epochs=EPOCHS, learning_rate=lr, seed=seed, verbose=0,
                  device="cpu")
    if kind == "mlp":
        from stable_baselines3 import PPO

        return PPO("MlpPolicy", venv, policy_kwargs={"log_std_init": log_std_init}, **common)
    from sb3_contrib import RecurrentPPO

    return RecurrentPPO("MlpLstmPolicy", venv, policy_kwargs={"lstm_hidden_size": UNITS, "n_lstm_layers": 1,
                                                              "log_std_init": log_std_init}, **common)


class SB3Policy:
    """An sb3 model behind the reset()/step(obs, dt) interface of evaluate.run_episodes. An MLP or LSTM
    has no notion of dt: it is ignored (that is the point of the timing comparison)."""

    def __init__(self, model):
        self.model, self.norm = model, model.get_env()
        self.recurrent = hasattr(model.policy, "lstm_actor")
        self.reset()

    def reset(self) -> None:
        self.state, self.start = None, np.ones(1, bool)

    def step(self, obs: np.ndarray, dt: float) -> np.ndarray:
        x = self.norm.normalize_obs(np.asarray(obs, np.float32)[None])
        if self.recurrent:
            a, self.state = self.model.predict(x, state=self.state, episode_start=self.start, deterministic=True)
            self.start = np.zeros(1, bool)
        else:
            a, _ = self.model.predict(x, deterministic=True)
        return np.asarray(a[0], np.float64)


def torch_threads() -> None:
    import torch

    torch.set_num_threads(1)  # every trainer on one thread: same footing, and the CPU is shared


# ------------------------------------------------------------------------------------------- sections
def bench_throughput(steps: int, seed: int, rounds: int) -> dict[str, Any]:
    torch_threads()
    per_round = max(N_ENVS * N_STEPS, steps // rounds // (N_ENVS * N_STEPS) * N_ENVS * N_STEPS)
    names = ["ours CfC-32", "ours LTC-32", "sb3 PPO MLP-64x64", "sb3-contrib RecurrentPPO LSTM-32"]
    secs, done = {n: 0.0 for n in names}, {n: 0 for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        # target_kl=None: all 10 epochs every update, as sb3 (whose target_kl defaults to None)
        runs = {"ours CfC-32": ours("cartpole", 10**9, seed, Path(tmp) / "cfc", "cfc", eval_every=10**9,
                                    target_kl=None),
                "ours LTC-32": ours("cartpole", 10**9, seed, Path(tmp) / "ltc", "ltc", eval_every=10**9,
                                    target_kl=None)}
        models = {"sb3 PPO MLP-64x64": sb3_model("mlp", "cartpole", seed),
                  "sb3-contrib RecurrentPPO LSTM-32": sb3_model("lstm", "cartpole", seed)}
        for r in range(rounds):
            for name in names:
                t0 = time.perf_counter()
                if name in runs:
                    tr = runs[name]
                    tr.cfg.steps = tr.global_step + per_round  # run per_round more steps (no eval: eval_every huge)
                    n_updates_before = tr.update
                    _run_updates(tr, per_round // (N_ENVS * N_STEPS))
                    n = (tr.update - n_updates_before) * N_ENVS * N_STEPS
                else:
                    m = models[name]
                    m.learn(total_timesteps=per_round, reset_num_timesteps=r == 0)
                    n = per_round
                secs[name] += time.perf_counter() - t0
                done[name] += n
        for tr in runs.values():
            tr.rollouts.close()
    rows = [{"trainer": n, "env_steps": done[n], "seconds": round(secs[n], 2), "steps_per_s": done[n] / secs[n]}
            for n in names]
    ref = rows[2]["steps_per_s"]
    for r in rows:
        r["vs_sb3_mlp"] = r["steps_per_s"] / ref
    print(f"\ntraining throughput, cartpole, {N_ENVS} envs x {N_STEPS} steps, {EPOCHS} epochs, batch {BATCH}, "
          f"{rounds} interleaved rounds")
    print(f"{'trainer':36s} {'env steps':>10s} {'s':>8s} {'steps/s':>9s} {'vs MLP':>7s}")
    for r in rows:
        print(f"{r['trainer']:36s} {r['env_steps']:>10d} {r['seconds']:>8.1f} {r['steps_per_s']:>9.0f} "
              f"{r['vs_sb3_mlp']:>7.2f}")
    return {"rows": rows}


def _run_updates(tr: Trainer, n: int) -> None:
    """n PPO updates of a Trainer without its eval/checkpoint/export bookkeeping (pure training speed)."""
    if not getattr(tr, "_started", False):
        tr.rollouts.start(tr.cfg.seed)
        tr._started = True
    for _ in range(n):
        got = tr.rollouts.collect()
        adv, ret = tr._advantages(got)
        tr._update(got.buf, adv, ret)
        tr.update += 1
        tr.global_step += tr.cfg.n_envs * tr.cfg.n_steps


def first_step_reaching(csv_path: Path, threshold: float) -> int | None:
    import csv

    for r in csv.DictReader(open(csv_path, newline="")):
        if r.get("eval_mean") and float(r["eval_mean"]) >= threshold:
            return int(r["step"])
    return None


def bench_cartpole(steps: int, seed: int, out: Path) -> dict[str, Any]:
    from liquid_control.core.policy import Policy

    rows = []
    for cell in ("cfc", "ltc"):  # the same trainer and settings for both liquid cells
        tr = ours("cartpole", steps, seed, out / f"cartpole_{cell}", cell=cell, eval_every=10_000, eval_episodes=5)
        t0 = time.perf_counter()
        res = tr.train()
        ev = run_episodes(Policy.load(res["artifact"]), "cartpole", episodes=20)
        rows.append({"robot": "cartpole", "trainer": f"ours {cell.upper()}-{UNITS}", "budget": steps,
                     "seconds": time.perf_counter() - t0,
                     "first_step_eval_ge_950": first_step_reaching(out / f"cartpole_{cell}" / "metrics.csv", 950),
                     "eval20_mean": ev["mean"], "eval20_std": ev["std"]})
    print(f"\ncartpole (full state), budget {steps} env steps, 8 envs x {N_STEPS} steps, lr {PPOConfig.lr:g}")
    print(f"{'trainer':14s} {'first eval >= 950':>18s} {'exported (20 ep.)':>18s} {'train s':>8s}")
    for r in rows:
        print(f"{r['trainer']:14s} {str(r['first_step_eval_ge_950']):>18s} "
              f"{r['eval20_mean']:>9.1f} ± {r['eval20_std']:<6.1f} {r['seconds']:>8.0f}")
    return {"rows": rows}


def _train_sb3(kind: str, robot: str, steps: int, seed: int, env_kwargs: dict[str, Any] | None = None, **kw: Any):
    torch_threads()
    m = sb3_model(kind, robot, seed, env_kwargs, **kw)
    t0 = time.perf_counter()
    m.learn(total_timesteps=steps)
    return m, time.perf_counter() - t0


def bench_novel(steps: int, seed: int, out: Path) -> dict[str, Any]:
    from liquid_control.core.policy import Policy

    rows = []
    # The shipped cartpole_novel settings (lr 3e-4, 256 steps per env, batch 512) for both trainers.
    tr = ours("cartpole_novel", steps, seed, out / "novel_cfc", n_steps=256, batch=512, lr=3e-4,
              eval_every=10_000, eval_episodes=5)
    t0 = time.perf_counter()
    res = tr.train()
    ev = run_episodes(Policy.load(res["artifact"]), "cartpole_novel", episodes=20)
    rows.append({"trainer": "ours CfC-32", "budget": steps, "seconds": time.perf_counter() - t0,
                 "first_step_eval_ge_900": first_step_reaching(out / "novel_cfc" / "metrics.csv", 900),
                 "eval20_mean": ev["mean"], "eval20_std": ev["std"]})
    m, secs = _train_sb3("mlp", "cartpole_novel", steps, seed, n_steps=256, batch=512, lr=3e-4)
    ev = run_episodes(SB3Policy(m), "cartpole_novel", episodes=20)
    rows.append({"trainer": "sb3 PPO MLP-64x64", "budget": steps, "seconds": secs, "first_step_eval_ge_900": None,
                 "eval20_mean": ev["mean"], "eval20_std": ev["std"]})
    print(f"\ncartpole_novel (joint positions only), {steps} env steps each, lr 3e-4, 8 envs x 256 steps, "
          f"batch 512, 20 eval episodes")
    print(f"{'trainer':24s} {'return':>16s} {'train s':>8s}")
    for r in rows:
        print(f"{r['trainer']:24s} {r['eval20_mean']:>8.1f} ± {r['eval20_std']:<6.1f} {r['seconds']:>8.0f}")
    return {"rows": rows}


def bench_timing(steps: int, seed: int, out: Path, dt_jitter: float, drop_prob: float) -> dict[str, Any]:
    from liquid_control.core.policy import Policy

    train_env = {**TIMING_ENV, "drop_prob": drop_prob} if drop_prob else dict(TIMING_ENV)
    tr = ours("cartpole", steps, seed, out / "timing_cfc", dt_jitter=dt_jitter, env_kwargs=train_env,
              eval_every=10_000, eval_episodes=5)
    t0 = time.perf_counter()
    res = tr.train()
    policies = {"ours CfC-32 (dt fed)": (Policy.load(res["artifact"]), time.perf_counter() - t0)}
    # equal settings: the LSTM gets our learning rate too (with sb3's 3e-4 it reached ~200 in this budget)
    m, secs = _train_sb3("lstm", "cartpole", steps, seed, {**train_env, "dt_jitter": dt_jitter}, lr=PPOConfig.lr)
    policies["sb3-contrib LSTM-32"] = (SB3Policy(m), secs)
    rows = []
    for name, (pol, secs) in policies.items():
        row: dict[str, Any] = {"trainer": name, "budget": steps, "train_seconds": secs}
        for cond, kw in TIMING_CONDITIONS.items():
            ev = run_episodes(pol, "cartpole", episodes=20, env_kwargs=TIMING_ENV, **kw)
            row[cond] = {"mean": ev["mean"], "std": ev["std"]}
        nominal = row["nominal"]["mean"]
        row["worst_loss_pct"] = max(100 * (nominal - row[c]["mean"]) / abs(nominal) for c in TIMING_CONDITIONS)
        rows.append(row)
    print(f"\ntiming robustness, cartpole, trained {steps} steps with dt jitter ±{dt_jitter:.0%}"
          f"{f' and dropped ticks p={drop_prob:g}' if drop_prob else ''}; 20 episodes per condition")
    print(f"{'policy':24s} " + " ".join(f"{c:>16s}" for c in TIMING_CONDITIONS) + f" {'worst loss':>10s}")
    for r in rows:
        print(f"{r['trainer']:24s} " + " ".join(f"{r[c]['mean']:>8.1f} ± {r[c]['std']:<5.1f}" for c in TIMING_CONDITIONS)
              + f" {r['worst_loss_pct']:>9.1f}%")
    return {"rows": rows, "train_env": train_env, "dt_jitter": dt_jitter}


def bench_reacher(steps: int, seed: int, out: Path) -> dict[str, Any]:
    from liquid_control.core.policy import Policy

    # The shipped reacher.onnx settings (lr 3e-4, 8 envs x 256 steps, batch 512, initial log std -1.5) for
    # both trainers; the same observations (joint angles as cos, sin; velocities; goal).
    rows = []
    tr = ours("reacher", steps, seed, out / "reacher_cfc", n_steps=256, batch=512, lr=3e-4, init_log_std=-1.5,
              eval_every=20_000, eval_episodes=10)
    t0 = time.perf_counter()
    res = tr.train()
    pols = [("ours CfC-32", Policy.load(res["artifact"]), time.perf_counter() - t0)]
    m, secs = _train_sb3("mlp", "reacher", steps, seed, n_steps=256, batch=512, lr=3e-4, log_std_init=-1.5)
    pols.append(("sb3 PPO MLP-64x64", SB3Policy(m), secs))
    for name, pol, secs in pols:
        ev = run_episodes(pol, "reacher", episodes=20)
        ev100 = run_episodes(pol, "reacher", episodes=100)
        rows.append({"trainer": name, "budget": steps, "seconds": secs, "eval20_mean": ev["mean"],
                     "eval20_std": ev["std"], "eval100_mean": ev100["mean"], "eval100_std": ev100["std"]})
    print(f"\nreacher, {steps} env steps each, lr 3e-4, 8 envs x 256 steps, batch 512; goal >= -5 (20 episodes)")
    print(f"{'trainer':24s} {'20 episodes':>16s} {'100 episodes':>16s} {'train s':>8s}")
    for r in rows:
        print(f"{r['trainer']:24s} {r['eval20_mean']:>8.2f} ± {r['eval20_std']:<6.2f} "
              f"{r['eval100_mean']:>8.2f} ± {r['eval100_std']:<6.2f} {r['seconds']:>8.0f}")
    return {"rows": rows}


# The locomotion recipe, the same for every trainer: 8 envs x 256 steps per update, 10 epochs, minibatches of
# 128 samples, lr 3e-4 (ours anneals it linearly to 0, sb3 keeps it constant: each trainer's default), gamma
# 0.99, GAE 0.95, clip 0.2, observations and rewards normalised.
LOCOMOTION = dict(n_steps=256, batch=128, lr=3e-4, log_std_init=-0.5)


def bench_locomotion(robot: str, steps: int, seed: int, out: Path, trainers: list[str],
                     lr: float | None = None) -> dict[str, Any]:
    from liquid_control.core.policy import Policy

    rec = LOCOMOTION if lr is None else {**LOCOMOTION, "lr": lr}
    rows, pols = [], []
    if "cfc" in trainers:
        tr = ours(robot, steps, seed, out / f"{robot}_cfc", n_steps=rec["n_steps"], batch=rec["batch"], lr=rec["lr"],
                  init_log_std=rec["log_std_init"], norm_reward=True, eval_every=20_000, eval_episodes=5)
        t0 = time.perf_counter()
        res = tr.train()
        pols.append(("ours CfC-32", Policy.load(res["artifact"]), time.perf_counter() - t0))
    for kind, name in (("mlp", "sb3 PPO MLP-64x64"), ("lstm", "sb3-contrib RecurrentPPO LSTM-32")):
        if kind in trainers:
            m, secs = _train_sb3(kind, robot, steps, seed, n_steps=rec["n_steps"], batch=rec["batch"], lr=rec["lr"],
                                 log_std_init=rec["log_std_init"], norm_reward=True)
            pols.append((name, SB3Policy(m), secs))
    for name, pol, secs in pols:
        ev = run_episodes(pol, robot, episodes=20)
        rows.append({"robot": robot, "trainer": name, "budget": steps, "seconds": secs, "eval20_mean": ev["mean"],
                     "eval20_std": ev["std"]})
    print(f"\n{robot}, {steps} env steps each, {N_ENVS} envs x {rec['n_steps']} steps, batch {rec['batch']}, "
          f"lr {rec['lr']:g}, rewards scaled; 20 evaluation episodes (the exported CfC: best of the evaluations "
          f"during training; sb3: its final model)")
    print(f"{'trainer':34s} {'return (20 ep.)':>18s} {'train s':>8s}")
    for r in rows:
        print(f"{r['trainer']:34s} {r['eval20_mean']:>9.1f} ± {r['eval20_std']:<7.1f} {r['seconds']:>8.0f}")
    return {"rows": rows, "recipe": rec}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench_train", description=__doc__.splitlines()[0])
    p.add_argument("what", nargs="*", default=["throughput"],
                   choices=["throughput", "cartpole", "novel", "timing", "reacher", *LOCOMOTION_ROBOTS])
    p.add_argument("--steps", type=int, default=None, help="env steps per trainer (default: per section)")
    p.add_argument("--rounds", type=int, default=4, help="throughput: interleaved rounds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dt-jitter", type=float, default=0.5, help="timing: training period jitter")
    p.add_argument("--drop-prob", type=float, default=0.1, help="timing: training dropped-tick probability")
    p.add_argument("--out", type=Path, default=Path("runs/bench_train"), help="run folders of the trained models")
    p.add_argument("--trainers", default=None,
                   help="locomotion: comma-separated subset of cfc,mlp,lstm (default cfc,mlp; hopper_pos adds lstm)")
    p.add_argument("--lr", type=float, default=None,
                   help="locomotion: the learning rate of every trainer (default: the recipe's 3e-4)")
    p.add_argument("--json", type=Path, default=None, help="JSON path (default bench/results/train_<what>.json)")
    args = p.parse_args(argv)
    results: dict[str, Any] = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                           "python": platform.python_version()}}
    for what in args.what:
        t0 = time.perf_counter()
        if what == "throughput":
            results[what] = bench_throughput(args.steps or 16384, args.seed, args.rounds)
        elif what == "cartpole":
            results[what] = bench_cartpole(args.steps or 100_000, args.seed, args.out)
        elif what == "novel":
            results[what] = bench_novel(args.steps or 300_000, args.seed, args.out)
        elif what == "timing":
            results[what] = bench_timing(args.steps or 200_000, args.seed, args.out, args.dt_jitter, args.drop_prob)
        elif what == "reacher":
            results[what] = bench_reacher(args.steps or 1_500_000, args.seed, args.out)
        else:
            default = "cfc,mlp,lstm" if what == "hopper_pos" else "cfc,mlp"
            results[what] = bench_locomotion(what, args.steps or 1_000_000, args.seed, args.out,
                                             (args.trainers or default).split(","), args.lr)
        results[what]["wall_s"] = time.perf_counter() - t0
    suffix = f"_{args.trainers.replace(',', '_')}" if args.trainers else ""
    suffix += f"_lr{args.lr:g}" if args.lr is not None else ""
    path = args.json or ROOT / "bench" / "results" / f"train_{'_'.join(args.what)}{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=lambda o: None if isinstance(o, float) and math.isnan(o)
                               else str(o)) + "\n")
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
