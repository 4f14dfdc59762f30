"""Recurrent PPO for liquid (CfC / LTC) policies, in one file, CleanRL style.

Why our own and not a library: sb3-contrib's RecurrentPPO is LSTM-only; skrl's recurrent PPO takes
any module but its RNN plumbing passes (obs, states, terminations) only, so a per-step `dt` would have
to be smuggled in through the observation, and skrl is not a dependency here. A liquid cell needs the
elapsed time of each sample as an input of its own; that is one file, read top to bottom below.

The algorithm:
  1. rollout (rollout.py; in this process, or on Ray workers: ppo_ray.py): N envs (Gymnasium vector
     API) x T steps. For each step we store the normalised obs, the action, its log-prob, the value, the
     reward, the episode-start flag, the simulated `dt` that led to this obs (info["dt"]), and the actor's
     hidden state *before* the step.
  2. GAE(lambda) advantages; truncated episodes are bootstrapped with V(final obs).
  3. update: every env's trajectory is cut into chunks of `tbptt` steps. Each chunk starts from the
     stored hidden state and re-runs the cell step by step (truncated backprop through time), zeroing
     the state at episode starts inside the chunk, feeding each sample's dt. PPO clipped objective.

The policy: actor = liquid cell whose projection gives the Gaussian mean, plus a state-independent
log-std (dropped at export: the deployed policy is the deterministic mean). Critic = a small MLP on
the normalised observation concatenated with the actor's (detached) hidden state. Why: a separate
critic keeps value-regression gradients out of the small liquid cell, so the exported actor is shaped
by the policy loss only. Actor and critic gradients are also clipped apart: with one joint clip the
value error (loss ~40) dominated the norm and shrank the actor's steps on cartpole_novel. The detached
hidden state gives the critic the memory it needs when the observation is partial (cartpole_novel:
positions only) without coupling the losses, and bootstrapping a truncated episode needs only
(final obs, state): no extra cell step.
"""
from __future__ import annotations

import copy
import math
import signal
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from liquid_control.learning.checkpoints import load_checkpoint, save_checkpoint
from liquid_control.learning.envs import success_return
from liquid_control.learning.errors import TrainingError
from liquid_control.learning.logs import CSVLog, plot_learning_curve, truncate_csv
from liquid_control.learning.normalise import RewardScaler, RunningMeanStd
from liquid_control.learning.ppo_config import RESUME_FIXED, PPOConfig
from liquid_control.learning.rollout import Collected, LocalRollouts, env_shapes

CSV_FIELDS = ["step", "update", "time_s", "sps", "train_return", "train_length", "eval_mean", "eval_std",
              "pg_loss", "v_loss", "entropy", "approx_kl", "clip_frac", "grad_norm", "lr", "log_std", "rollout_s",
              "learn_s", "worker_restarts"]


# ------------------------------------------------------------------------------------------ the agent
def build_cell(cfg: PPOConfig, obs_size: int, action_size: int) -> nn.Module:
    """The liquid cell whose output is the action mean (liquid_control.learning.cells).

    Fully connected: `units` neurons, a projection to the action. NCP-wired (ncps AutoNCP): `units` neurons
    of which `action_size` are motor neurons whose states are the action mean (no projection).
    """
    from liquid_control.learning import cells

    if cfg.wiring == "ncp":
        try:
            from ncps.wirings import AutoNCP
        except ModuleNotFoundError as exc:
            if (exc.name or "").partition(".")[0] != "ncps":
                raise
            from liquid_control.learning.dense_wiring import NCPS_HINT

            raise TrainingError(f"wiring ncp (ncps AutoNCP) needs ncps: {NCPS_HINT}") from None

        if cfg.units < action_size + 3:
            raise TrainingError(f"an NCP wiring needs more than {action_size + 2} units, got {cfg.units}")
        wiring = AutoNCP(cfg.units, action_size, seed=cfg.seed)
        if cfg.cell == "cfc":
            return cells.CfC(obs_size, wiring, mode=cfg.mode)
        return cells.LTC(obs_size, wiring)
    if cfg.cell == "cfc":
        return cells.CfC(obs_size, cfg.units, proj_size=action_size, mode=cfg.mode,
                         backbone_units=cfg.backbone_units, backbone_layers=cfg.backbone_layers)
    return cells.LTC(obs_size, cfg.units, proj_size=action_size)


class Agent(nn.Module):
    def __init__(self, cfg: PPOConfig, obs_size: int, action_size: int):
        super().__init__()
        self.actor = build_cell(cfg, obs_size, action_size)
        self.state_size = int(self.actor.state_size)
        self.log_std = nn.Parameter(torch.full((action_size,), cfg.init_log_std))
        h = cfg.critic_hidden
        self.critic = nn.Sequential(nn.Linear(obs_size + self.state_size, h), nn.Tanh(),
                                    nn.Linear(h, h), nn.Tanh(), nn.Linear(h, 1))
        for m in self.critic:
            if isinstance(m, nn.Linear):
                nn.init.orthogonal_(m.weight, 1.0 if m.out_features == 1 else math.sqrt(2))
                nn.init.zeros_(m.bias)

    def value(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.critic(torch.cat([x, h.detach()], dim=-1)).squeeze(-1)

    def act(self, x: torch.Tensor, h: torch.Tensor, dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One control tick: (action mean, new hidden state)."""
        return self.actor.step(x, h, dt)

    def dist(self, mean: torch.Tensor) -> torch.distributions.Normal:
        # No argument validation: it checks every sample's support on each call and changes no number.
        return torch.distributions.Normal(mean, self.log_std.exp().expand_as(mean), validate_args=False)


def restore_agent(state: dict[str, Any], source: Path | str) -> tuple[PPOConfig, Agent, RunningMeanStd]:
    """A training checkpoint (checkpoint.pt / best.pt, as read by checkpoints.load_checkpoint) -> the config it
    was trained with, its agent with the saved weights, and its observation statistics.

    Config keys the checkpoint lacks take today's defaults; keys this version no longer knows are dropped.
    `source` names the checkpoint in errors.
    """
    known = {f.name for f in fields(PPOConfig)}
    try:
        cfg = PPOConfig(**{k: v for k, v in state["config"].items() if k in known})
        obs_size, action_size = int(state["obs_size"]), int(state["action_size"])
        agent_state, rms_state = state["agent"], state["obs_rms"]
    except (KeyError, TypeError, AttributeError) as exc:
        raise TrainingError(f"{source} is not a complete `liquid-control train` checkpoint "
                            f"({type(exc).__name__}: {exc})") from None
    agent = Agent(cfg, obs_size, action_size)
    try:
        agent.load_state_dict(agent_state)
    except RuntimeError as exc:
        raise TrainingError(f"{source}: the weights do not fit the recorded config "
                            f"({str(exc).splitlines()[0]})") from None
    rms = RunningMeanStd(obs_size)
    rms.load_state_dict(rms_state)
    return cfg, agent, rms


class TorchPolicy:
    """The training agent behind the runtime Policy's interface (reset / step(obs, dt)), for evaluation."""

    def __init__(self, agent: Agent, obs_rms: RunningMeanStd):
        self.agent, self.obs_rms = agent, obs_rms
        self.reset()

    def reset(self) -> None:
        self.h = torch.zeros(1, self.agent.state_size)

    @torch.no_grad()
    def step(self, obs: np.ndarray, dt: float) -> np.ndarray:
        x = torch.as_tensor(self.obs_rms.normalise(np.asarray(obs, np.float64)[None]))
        mean, self.h = self.agent.act(x, self.h, torch.tensor([[float(dt)]]))
        return mean[0].numpy().astype(np.float64)


# ------------------------------------------------------------------------------------------ training
class Trainer:
    """Holds one run: envs, agent, optimiser, statistics, and the output folder layout.

    out/checkpoint.pt (latest, resumable), out/best.pt (best eval), out/metrics.csv,
    out/learning_curve.png, out/policy.onnx (exported from the best eval).
    """

    def __init__(self, cfg: PPOConfig, out: Path, *, resume: bool = False, command: str = "",
                 progress: bool = True):
        cfg.validate()
        self.cfg, self.out, self.command, self.progress = cfg, Path(out), command, progress
        self.out.mkdir(parents=True, exist_ok=True)
        self.ckpt_path, self.best_path = self.out / "checkpoint.pt", self.out / "best.pt"
        self.csv_path = self.out / "metrics.csv"
        torch.set_num_threads(1)  # tiny networks: threads cost more than they give (and the CPU is shared)
        torch.manual_seed(cfg.seed)  # the only randomness besides the envs' (seeded at reset)

        self.obs_size, self.action_size, self.dt0 = env_shapes(cfg)
        saved = None
        if resume:
            if self.ckpt_path.exists():
                saved = self._resumable(self.ckpt_path)
            else:
                print(f"no checkpoint in {self.out}: starting from scratch")
        elif self.ckpt_path.exists():
            raise TrainingError(f"{self.out} already holds a run; pass --resume to continue it or choose another --out")
        if saved is None:
            self.agent, self.obs_rms = Agent(cfg, self.obs_size, self.action_size), RunningMeanStd(self.obs_size)
        else:
            _, self.agent, self.obs_rms = restore_agent(saved, self.ckpt_path)
        # The PPO update runs on `learner`: the agent itself, or with --device its copy on that device, whose
        # weights come back to the CPU agent after every update (rollouts, evaluation and checkpoints read it).
        self.device = learner_device(cfg.device)
        self.learner = self.agent if self.device is None else copy.deepcopy(self.agent).to(self.device)
        self.opt = torch.optim.Adam(self.learner.parameters(), lr=cfg.lr, eps=1e-5, foreach=True)
        self.reward_scale = RewardScaler(cfg.n_envs, cfg.gamma) if cfg.norm_reward else None
        self.actor_params = [*self.learner.actor.parameters(), self.learner.log_std]
        self.global_step, self.update, self.best_eval = 0, 0, -math.inf
        self.elapsed = 0.0
        if saved is not None:
            self._resume(saved)
            truncate_csv(self.csv_path, self.global_step)
        self.rollouts = self._rollouts()
        self.log = CSVLog(self.csv_path, CSV_FIELDS)

    def _rollouts(self) -> Any:
        """Where the rollouts run (start(seed), collect() -> Collected, close()): here, in this process."""
        return LocalRollouts(self)

    # -- checkpoints
    def _state(self) -> dict[str, Any]:
        return {"config": asdict(self.cfg), "agent": self.agent.state_dict(), "opt": self.opt.state_dict(),
                "obs_rms": self.obs_rms.state_dict(),
                "reward_scale": self.reward_scale.state_dict() if self.reward_scale else None,
                "global_step": self.global_step, "update": self.update,
                "best_eval": self.best_eval, "elapsed": self.elapsed, "torch_rng": torch.get_rng_state(),
                "obs_size": self.obs_size,
                "action_size": self.action_size, "dt0": self.dt0}

    def _resumable(self, path: Path) -> dict[str, Any]:
        """The checkpoint at `path`, if the run it holds can go on under this config."""
        st = load_checkpoint(path)
        old = st.get("config", {})
        for key in RESUME_FIXED:
            was = old.get(key, getattr(PPOConfig, key))  # a key newer than the checkpoint: its default
            if was != getattr(self.cfg, key):
                raise TrainingError(f"cannot resume {path}: it was trained with {key}={was!r}, "
                                    f"now {key}={getattr(self.cfg, key)!r}")
        return st

    def _resume(self, st: dict[str, Any]) -> None:
        """The optimiser, counters and random state of checkpoint `st` (weights: restore_agent)."""
        self.opt.load_state_dict(st["opt"])
        for g in self.opt.param_groups:  # a checkpoint's groups carry their own (older: None) foreach setting
            g["foreach"] = True
        if self.reward_scale is not None and st.get("reward_scale"):
            self.reward_scale.load_state_dict(st["reward_scale"])
        self.global_step, self.update = int(st["global_step"]), int(st["update"])
        self.best_eval, self.elapsed = float(st["best_eval"]), float(st.get("elapsed", 0.0))
        torch.set_rng_state(st["torch_rng"])
        print(f"resumed {self.ckpt_path} at step {self.global_step} (update {self.update})")

    # -- advantages
    def _advantages(self, got: Collected) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE(lambda). buf["start"][t+1] says whether step t ended its episode."""
        cfg, buf, next_val, next_start = self.cfg, got.buf, got.next_val, got.next_start
        adv = torch.zeros_like(buf["rew"])
        last = torch.zeros(cfg.n_envs)
        for t in reversed(range(cfg.n_steps)):
            if t == cfg.n_steps - 1:
                nonterminal, nv = 1.0 - next_start, next_val
            else:
                nonterminal, nv = 1.0 - buf["start"][t + 1], buf["val"][t + 1]
            delta = buf["rew"][t] + cfg.gamma * nv * nonterminal - buf["val"][t]
            last = delta + cfg.gamma * cfg.gae_lambda * nonterminal * last
            adv[t] = last
        return adv, adv + buf["val"]

    # -- update
    def _update(self, buf: dict[str, torch.Tensor], adv: torch.Tensor, ret: torch.Tensor) -> dict[str, float]:
        """PPO epochs over TBPTT chunks: (T, N) is cut into (T/L) x N sequences of length L."""
        cfg = self.cfg
        L, C = cfg.tbptt, cfg.n_steps // cfg.tbptt

        def chunks(x: torch.Tensor) -> torch.Tensor:  # (T, N, ...) -> (L, C*N, ...)
            return x.reshape(C, L, cfg.n_envs, *x.shape[2:]).transpose(0, 1).reshape(L, C * cfg.n_envs, *x.shape[2:])

        agent, dev = self.learner, self.device or "cpu"
        b = {k: chunks(v.to(dev)) for k, v in buf.items()}
        b_adv, b_ret = chunks(adv.to(dev)), chunks(ret.to(dev))
        h0 = b["h"][0]  # stored state at each chunk's first step
        n_seq = C * cfg.n_envs
        mb = n_seq // cfg.minibatches
        stats: dict[str, list[float]] = {k: [] for k in ("pg_loss", "v_loss", "entropy", "approx_kl", "clip_frac",
                                                         "grad_norm")}
        for _epoch in range(cfg.epochs):
            perm = torch.randperm(n_seq).to(dev)  # drawn on the CPU: the same permutations on any device
            kls = []
            for k in range(cfg.minibatches):
                idx = perm[k * mb:(k + 1) * mb]
                obs = b["obs"][:, idx]
                # re-run the cell through the chunk from its stored state: truncated BPTT
                means, _ = agent.actor.unroll(obs, h0[idx], b["dt"][:, idx], b["start"][:, idx])
                d = agent.dist(means)
                logp = d.log_prob(b["act"][:, idx]).sum(-1)
                ratio = (logp - b["logp"][:, idx]).exp()
                a = b_adv[:, idx]
                a = (a - a.mean()) / (a.std() + 1e-8)
                pg_loss = torch.max(-a * ratio, -a * ratio.clamp(1 - cfg.clip, 1 + cfg.clip)).mean()
                v = agent.value(obs, b["h"][:, idx])
                v_loss = 0.5 * (v - b_ret[:, idx]).pow(2).mean()
                entropy = d.entropy().sum(-1).mean()
                loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy
                if not torch.isfinite(loss):
                    raise _Diverged(f"the loss became {loss.item()} (pg {pg_loss.item():.3g}, "
                                    f"value {v_loss.item():.3g})")
                self.opt.zero_grad()
                loss.backward()
                # Actor and critic are clipped apart: a large value error must not shrink the actor's step.
                gn = nn.utils.clip_grad_norm_(self.actor_params, cfg.max_grad_norm, foreach=True)
                gn_critic = nn.utils.clip_grad_norm_(agent.critic.parameters(), cfg.max_grad_norm, foreach=True)
                for norm in (gn, gn_critic):
                    if not torch.isfinite(norm) or norm > GRAD_EXPLODED:
                        raise _Diverged(f"the gradient norm exploded to {norm.item():.3g}")
                self.opt.step()
                with torch.no_grad():
                    log_ratio = logp - b["logp"][:, idx]
                    kl = ((ratio - 1) - log_ratio).mean()
                    clip_frac = ((ratio - 1).abs() > cfg.clip).float().mean()
                    # one conversion to Python floats for all of them (each .item() is a call of its own)
                    vals = torch.stack([pg_loss, v_loss, entropy, kl, gn, clip_frac]).tolist()
                kls.append(vals[3])
                for key, val in zip(("pg_loss", "v_loss", "entropy", "approx_kl", "grad_norm", "clip_frac"), vals):
                    stats[key].append(val)
            if cfg.target_kl is not None and np.mean(kls) > cfg.target_kl:
                break
        if agent is not self.agent:
            self.agent.load_state_dict(agent.state_dict())  # copies to the CPU
        return {k: float(np.mean(v)) for k, v in stats.items()}

    # -- evaluation and export
    def evaluate(self) -> tuple[float, float]:
        from liquid_control.learning.evaluate import run_episodes

        res = run_episodes(TorchPolicy(self.agent, self.obs_rms), self.cfg.robot, episodes=self.cfg.eval_episodes,
                           seed=10_000 + self.cfg.seed, env_kwargs=self.cfg.env_kwargs)
        return res["mean"], res["std"]

    def export(self, path: Path, state: dict[str, Any] | None = None) -> Path:
        """Write the artifact from `state` (a checkpoint dict; the current agent when None)."""
        agent, rms = self.agent, self.obs_rms
        if state is not None:
            _, agent, rms = restore_agent(state, self.best_path)
        return export_agent(agent, rms, path, robot=self.cfg.robot, nominal_period=self.dt0, provenance={
            "command": self.command, "seed": self.cfg.seed, "algorithm": "recurrent PPO (liquid_control.learning.ppo)",
            "env_steps": int(state["global_step"] if state else self.global_step),
            "eval_return": float(state["best_eval"]) if state else None,
            "config": asdict(self.cfg)})

    # -- the loop
    def train(self) -> dict[str, Any]:
        cfg = self.cfg
        per_update = cfg.n_envs * cfg.n_steps
        n_updates = math.ceil(cfg.steps / per_update)
        next_eval = (self.global_step // cfg.eval_every + 1) * cfg.eval_every
        bar = _progress(n_updates * per_update, self.global_step, self.progress)
        t0 = time.time() - self.elapsed
        last_eval = (math.nan, math.nan)
        try:
            if not self.ckpt_path.exists():  # a good checkpoint exists from the start (the NaN guard names it)
                self._save(self.ckpt_path)
            self.rollouts.start(cfg.seed + 1000 * self.update)  # a resumed run gets fresh episodes
            while self.update < n_updates:
                if cfg.anneal_lr:
                    for g in self.opt.param_groups:
                        g["lr"] = cfg.lr * (1.0 - self.update / n_updates)
                ts = time.time()
                got = self.rollouts.collect()
                self.global_step += per_update
                tl = time.time()
                adv, ret = self._advantages(got)
                try:
                    stats = self._update(got.buf, adv, ret)
                except _Diverged as exc:
                    raise TrainingError(f"{exc} at step {self.global_step}; stopped. The last good checkpoint is "
                                        f"{self.ckpt_path} (step {load_checkpoint(self.ckpt_path)['global_step']})") from None
                self.update += 1
                self.elapsed = time.time() - t0
                row = {"step": self.global_step, "update": self.update, "time_s": self.elapsed,
                       "sps": per_update / max(time.time() - ts, 1e-9), "lr": self.opt.param_groups[0]["lr"],
                       "log_std": self.agent.log_std.detach().mean().item(), **stats,
                       "train_return": float(np.mean(got.returns)) if got.returns else math.nan,
                       "train_length": float(np.mean(got.lengths)) if got.lengths else math.nan,
                       "rollout_s": tl - ts, "learn_s": time.time() - tl, "worker_restarts": got.restarts}
                if self.global_step >= next_eval or self.update == n_updates:
                    next_eval += cfg.eval_every
                    last_eval = self.evaluate()
                    row["eval_mean"], row["eval_std"] = last_eval
                    if last_eval[0] >= self.best_eval:  # ties go to the later (longer-trained) weights
                        self.best_eval = last_eval[0]
                        self._save(self.best_path)
                self.log.write(row)
                self._save(self.ckpt_path)
                bar.update(per_update)
                bar.set_postfix_str(f"ret {row['train_return']:.1f} eval {last_eval[0]:.1f}±{last_eval[1]:.1f}")
                if cfg.stop_eval is not None and last_eval[0] >= cfg.stop_eval:
                    print(f"eval {last_eval[0]:.1f} >= stop-eval {cfg.stop_eval:g} at step {self.global_step}: stopped")
                    break
        except KeyboardInterrupt:
            bar.close()
            print(f"\ninterrupted at step {self.global_step}: resume with --resume "
                  f"(checkpoint {self.ckpt_path}, step {load_checkpoint(self.ckpt_path)['global_step']})")
            raise
        finally:
            bar.close()
            self.log.close()
            self.rollouts.close()
            plot_learning_curve(self.csv_path, self.out / "learning_curve.png",
                                f"{cfg.robot}: {cfg.cell.upper()} {cfg.units} units, seed {cfg.seed}")
        best = load_checkpoint(self.best_path) if self.best_path.exists() else None
        artifact = self.export(self.out / "policy.onnx", best)
        return {"steps": self.global_step, "time_s": self.elapsed, "best_eval": self.best_eval,
                "best_step": int(best["global_step"]) if best else None, "last_eval": last_eval,
                "artifact": str(artifact), "solved": self.best_eval >= success_return(cfg.robot)}

    def _save(self, path: Path) -> None:
        # Ctrl-C must not land in the middle of a checkpoint write: hold it until the file is on disk, then raise.
        if not _main_thread():
            save_checkpoint(path, self._state())
            return
        pending: list[int] = []
        old = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
        try:
            save_checkpoint(path, self._state())
        finally:
            signal.signal(signal.SIGINT, old)
        if pending:
            raise KeyboardInterrupt


def learner_device(name: str | None) -> torch.device | None:
    """The torch device of --device, or None (the CPU agent itself); a one-line error when it is not there."""
    if name is None:
        return None
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainingError(f"--device {name}: torch sees no CUDA device (torch.cuda.is_available() is "
                                f"false; this torch is {torch.__version__})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise TrainingError(f"--device {name}: torch sees {torch.cuda.device_count()} CUDA device(s)")
    return device


GRAD_EXPLODED = 1e6  # a pre-clipping gradient norm this large means the run has diverged


class _Diverged(Exception):
    pass


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _progress(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", unit_scale=True, dynamic_ncols=True,
                disable=not enabled, smoothing=0.1)


def export_agent(agent: Agent, obs_rms: RunningMeanStd, path: Path, *, robot: str, nominal_period: float,
                 provenance: dict[str, Any]) -> Path:
    """The actor (cell + projection) with the frozen observation statistics -> a policy artifact."""
    import liquid_control
    from liquid_control.core.artifact import write_artifact
    from liquid_control.core.spec import load_spec
    from liquid_control.learning.cell_params import to_params

    cfg, params = to_params(agent.actor, obs_rms.mean.astype(np.float32), obs_rms.std.astype(np.float32))
    provenance = {"version": liquid_control.__version__, "robot": robot, **provenance}
    write_artifact(path, cfg, params, spec=load_spec(robot), nominal_period=nominal_period, provenance=provenance)
    return Path(path)


def train(cfg: PPOConfig, out: Path, *, resume: bool = False, command: str = "", progress: bool = True) -> dict[str, Any]:
    return Trainer(cfg, out, resume=resume, command=command, progress=progress).train()
