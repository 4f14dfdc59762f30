"""Teacher-student distillation (DAgger): a liquid student that sees only what the robot's sensors give
learns from a teacher that sees the privileged full state.

Both look at the same MuJoCo state: the student env is the student robot's spec env (e.g. cartpole_novel,
joint positions only); the teacher's observation is read from that same model/data with the teacher robot's
spec (e.g. cartpole, positions and velocities) through the sim's ObsReader. Nothing is simulated twice.

Teachers: a policy artifact (.onnx, e.g. policies/cartpole.onnx, run on the core runtime) or a
stable-baselines3 model (.zip, e.g. PPO MLP trained on the full-state env; `--teacher-robot` names its spec).

DAgger loop, iteration i = 0..iters-1:
  1. roll out N envs for T steps; each step executes the teacher's action with probability beta_i
     (beta_0 = 1: pure teacher demonstrations; then beta decays) and the student's otherwise, and records
     the student's observation, dt, its hidden state before the step, and the teacher's action (the label);
  2. aggregate into the dataset (all iterations);
  3. train the student on chunks of `seq_len` steps from the dataset, each started from the stored
     hidden state and run through time with episode resets and per-step dt (truncated BPTT), MSE to
     the teacher's (clipped) action.
The student is exported with its observation statistics and provenance, like `liquid-control train`.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from liquid_control.learning.checkpoints import save_checkpoint
from liquid_control.learning.envs import make_env, nominal_dt, success_return
from liquid_control.learning.errors import TrainingError
from liquid_control.learning.logs import CSVLog, plot_learning_curve
from liquid_control.learning.normalise import RunningMeanStd


@dataclass
class DistillConfig:
    """Every setting of a distillation. The fields are the command line of `liquid-control distill`
    (cli/config_args.py): each option's type, default and help are written here and nowhere else."""

    robot: str = field(default="cartpole_novel", metadata={"help": "the student's robot spec (what its sensors give)"})
    teacher: str | None = field(default=None, metadata={
        "help": "teacher: a policy artifact (.onnx) or a stable-baselines3 model (.zip)",
        "shown": "the shipped full-state cartpole policy"})
    teacher_robot: str | None = field(default=None, metadata={
        "help": "the teacher's robot spec", "shown": "the one its artifact records"})
    cell: str = field(default="cfc", metadata={"help": "student cell: cfc or ltc"})
    units: int = field(default=32, metadata={"help": "hidden units of the student cell"})
    backbone_units: int = field(default=32, metadata={"help": "CfC backbone width"})
    backbone_layers: int = field(default=1, metadata={"help": "CfC backbone depth"})
    iters: int = field(default=20, metadata={"help": "DAgger iterations"})
    n_envs: int = field(default=8, metadata={"help": "parallel envs"})
    rollout_steps: int = field(default=256, metadata={"help": "steps per env and iteration"})
    beta_decay: float = field(default=0.5, metadata={
        "help": "probability of executing the teacher's action in iteration i: beta-decay ** i"})
    seq_len: int = field(default=32, metadata={"help": "BPTT sequence length"})
    batch: int = field(default=64, metadata={"help": "sequences per gradient step"})
    grad_steps: int = field(default=200, metadata={"help": "gradient steps per iteration"})
    lr: float = field(default=3e-3, metadata={"help": "Adam learning rate"})
    seed: int = field(default=0, metadata={"help": "seeds torch, the envs and the teacher/student choice"})
    eval_episodes: int = field(default=5, metadata={"help": "episodes per student evaluation"})
    dt_jitter: float = field(default=0.0, metadata={
        "help": "train with each control period drawn from nominal * [1-j, 1+j]"})

    def __post_init__(self) -> None:
        if not self.teacher:  # recorded as the path it stands for
            from liquid_control.core.resources import default_policy_path

            self.teacher = str(default_policy_path("cartpole"))

    def validate(self) -> None:
        for name in ("units", "backbone_units", "iters", "n_envs", "rollout_steps", "seq_len", "batch",
                     "grad_steps", "eval_episodes"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise TrainingError(f"{name.replace('_', '-')} must be a positive integer, got {v!r}")
        if self.cell not in ("cfc", "ltc"):
            raise TrainingError(f"unknown cell {self.cell!r}; choose one of cfc, ltc")
        if not 0 <= self.beta_decay <= 1:
            raise TrainingError(f"beta-decay must lie in [0, 1], got {self.beta_decay}")
        if not 0 < self.lr < 1:
            raise TrainingError(f"lr must lie in (0, 1), got {self.lr}")
        if self.rollout_steps % self.seq_len:
            raise TrainingError(f"rollout-steps ({self.rollout_steps}) must be a multiple of seq-len ({self.seq_len})")


class Teacher:
    """Privileged actions for the current MuJoCo state of each env (one hidden state per env)."""

    def __init__(self, path: str | Path, robot: str | None, envs: list):
        from liquid_control.core.spec import load_spec
        from liquid_control.sim.observe import ObsReader

        path = Path(path)
        if not path.exists():
            raise TrainingError(f"teacher {path} does not exist")
        self.kind = path.suffix
        if self.kind == ".onnx":
            from liquid_control.core.policy import Policy

            first = Policy.load(path)
            robot = robot or first.meta.get("robot")
            spec = load_spec(robot) if robot else None
            self.policies = [first] + [Policy.load(path) for _ in envs[1:]]
            if spec is not None:
                from liquid_control.core.artifact import check_spec

                check_spec(first.artifact, spec)
        elif self.kind == ".zip":
            if not robot:
                raise TrainingError("a stable-baselines3 teacher needs --teacher-robot (the spec it was trained on)")
            from stable_baselines3 import PPO

            self.model = PPO.load(path, device="cpu")
            spec = load_spec(robot)
        else:
            raise TrainingError(f"teacher {path}: expected a policy artifact (.onnx) or a stable-baselines3 model (.zip)")
        if spec is None:
            raise TrainingError(f"teacher {path} records no robot; pass --teacher-robot")
        self.robot = spec.name
        self.readers = [ObsReader(e.unwrapped.model, e.unwrapped.data, spec) for e in envs]

    def reset(self, i: int) -> None:
        if self.kind == ".onnx":
            self.policies[i].reset()

    def act(self, i: int, dt: float) -> np.ndarray:
        r = self.readers[i]
        r.refresh()
        obs = r.observe()
        if self.kind == ".onnx":
            return np.asarray(self.policies[i].step(obs, dt), np.float64)
        a, _ = self.model.predict(obs[None].astype(np.float32), deterministic=True)
        return np.asarray(a[0], np.float64)


def distill(cfg: DistillConfig, out: Path, *, command: str = "", progress: bool = True) -> dict[str, Any]:
    from liquid_control.learning.ppo import Agent, PPOConfig, TorchPolicy, export_agent
    from liquid_control.learning.evaluate import run_episodes

    cfg.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    envs = [make_env(cfg.robot, seed=cfg.seed + i, dt_jitter=cfg.dt_jitter) for i in range(cfg.n_envs)]
    teacher = Teacher(cfg.teacher, cfg.teacher_robot, envs)
    obs_size, act_size = envs[0].observation_space.shape[0], envs[0].action_space.shape[0]
    dt0 = nominal_dt(envs[0])
    # The student is the actor of a PPO agent (same cell builder and export path as `train`).
    pcfg = PPOConfig(robot=cfg.robot, cell=cfg.cell, units=cfg.units, backbone_units=cfg.backbone_units,
                     backbone_layers=cfg.backbone_layers, seed=cfg.seed)
    agent = Agent(pcfg, obs_size, act_size)
    student, N = agent.actor, agent.state_size
    opt = torch.optim.Adam(student.parameters(), lr=cfg.lr)
    rms = RunningMeanStd(obs_size)
    log = CSVLog(out / "metrics.csv", ["step", "iter", "beta", "loss", "eval_mean", "eval_std", "time_s"])
    data: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "dt", "start", "h", "label")}
    obs = np.stack([e.reset(seed=cfg.seed + 100 * i)[0] for i, e in enumerate(envs)])
    for i in range(cfg.n_envs):
        teacher.reset(i)
    h = torch.zeros(cfg.n_envs, N)
    dt, start = np.full(cfg.n_envs, dt0), np.ones(cfg.n_envs)
    t0, steps, best = time.time(), 0, (-math.inf, None)
    from tqdm import tqdm

    bar = tqdm(total=cfg.iters, unit="iter", disable=not progress)
    for it in range(cfg.iters):
        beta = cfg.beta_decay ** it
        raw = {k: np.zeros((cfg.rollout_steps, cfg.n_envs) + s) for k, s in
               {"obs": (obs_size,), "dt": (1,), "start": (), "h": (N,), "label": (act_size,)}.items()}
        for t in range(cfg.rollout_steps):
            rms.update(obs)
            h = h * (1.0 - torch.as_tensor(start, dtype=torch.float32))[:, None]
            with torch.no_grad():
                a_s, h_next = student.step(torch.as_tensor(rms.normalise(obs)), h,
                                           torch.as_tensor(dt, dtype=torch.float32)[:, None])
            labels = np.stack([teacher.act(i, float(dt[i])) for i in range(cfg.n_envs)])
            raw["obs"][t], raw["dt"][t, :, 0], raw["start"][t], raw["h"][t], raw["label"][t] = obs, dt, start, h, labels
            use_teacher = rng.random(cfg.n_envs) < beta
            act = np.clip(np.where(use_teacher[:, None], labels, a_s.numpy()), -1, 1)
            for i, e in enumerate(envs):
                o, _, term, trunc, info = e.step(act[i].astype(np.float32))
                if term or trunc:
                    o, _ = e.reset()
                    teacher.reset(i)
                    dt[i], start[i] = dt0, 1.0
                else:
                    dt[i], start[i] = float(info.get("dt", dt0)), 0.0
                obs[i] = o
            h = h_next
            steps += cfg.n_envs
        for k in data:
            data[k].append(raw[k])
        loss = _fit(student, opt, data, rms, cfg, rng)
        policy = TorchPolicy(agent, rms)
        ev = run_episodes(policy, cfg.robot, episodes=cfg.eval_episodes, seed=10_000 + cfg.seed)
        if ev["mean"] >= best[0]:
            best = (ev["mean"], {"actor": {k: v.clone() for k, v in student.state_dict().items()},
                                 "rms": rms.state_dict(), "iter": it, "step": steps})
        log.write({"step": steps, "iter": it, "beta": beta, "loss": loss, "eval_mean": ev["mean"],
                   "eval_std": ev["std"], "time_s": time.time() - t0})
        bar.update(1)
        bar.set_postfix_str(f"loss {loss:.4f} eval {ev['mean']:.1f}±{ev['std']:.1f}")
    bar.close()
    log.close()
    for e in envs:
        e.close()
    student.load_state_dict(best[1]["actor"])
    rms.load_state_dict(best[1]["rms"])
    save_checkpoint(out / "student.pt", {"config": asdict(cfg), "actor": student.state_dict(), "obs_rms": rms.state_dict()})
    artifact = export_agent(agent, rms, out / "policy.onnx", robot=cfg.robot, nominal_period=dt0, provenance={
        "command": command, "seed": cfg.seed, "algorithm": "DAgger distillation (liquid_control.learning.distill)",
        "teacher": str(cfg.teacher), "teacher_robot": teacher.robot, "env_steps": best[1]["step"],
        "eval_return": best[0], "config": asdict(cfg)})
    plot_learning_curve(out / "metrics.csv", out / "learning_curve.png",
                        f"{cfg.robot}: DAgger student {cfg.cell.upper()} {cfg.units}, teacher {Path(cfg.teacher).name}")
    return {"steps": steps, "time_s": time.time() - t0, "best_eval": best[0], "best_iter": best[1]["iter"],
            "artifact": str(artifact), "solved": best[0] >= success_return(cfg.robot)}


def _fit(student: nn.Module, opt: torch.optim.Optimizer, data: dict[str, list[np.ndarray]], rms: RunningMeanStd,
         cfg: DistillConfig, rng: np.random.Generator) -> float:
    """Sequence loss through time on chunks of the aggregated dataset, from the stored hidden states."""
    L = cfg.seq_len
    # (iters * T, n_envs, ...) -> chunks (L, n_chunks, ...)
    def chunks(key: str) -> torch.Tensor:
        x = np.concatenate(data[key], axis=0)
        x = x.reshape(x.shape[0] // L, L, *x.shape[1:]).swapaxes(0, 1)  # (L, C, n_envs, ...)
        return torch.as_tensor(x.reshape(L, -1, *x.shape[3:]), dtype=torch.float32)

    obs = torch.as_tensor(rms.normalise(np.concatenate(data["obs"], axis=0)), dtype=torch.float32)
    obs = obs.reshape(obs.shape[0] // L, L, *obs.shape[1:]).transpose(0, 1).reshape(L, -1, obs.shape[-1])
    dt, start, h0, label = chunks("dt"), chunks("start"), chunks("h")[0], chunks("label").clamp(-1, 1)
    n = obs.shape[1]
    losses = []
    for _ in range(cfg.grad_steps):
        idx = torch.as_tensor(rng.integers(0, n, size=min(cfg.batch, n)))
        h, out = h0[idx], []
        for t in range(L):
            h = h * (1.0 - start[t, idx])[:, None]
            y, h = student.step(obs[t, idx], h, dt[t, idx])
            out.append(y)
        loss = (torch.stack(out) - label[:, idx]).pow(2).mean()
        if not torch.isfinite(loss):
            raise TrainingError(f"the distillation loss became {loss.item()}; stopped")
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    return float(np.mean(losses[-20:]))
