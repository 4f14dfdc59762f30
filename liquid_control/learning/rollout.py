"""The rollout of recurrent PPO (ppo.py): T steps of a vector env under the current policy, into the buffers
the update reads. One code for both trainers: the single-process trainer runs one Rollout over all its envs
(LocalRollouts); on Ray (ppo_ray.py) each worker runs one over its own envs and the learner concatenates the
workers' buffers along the env axis, so GAE and TBPTT see the same (T, N) layout either way.

Per step the buffers hold the normalised obs, the action, its log-prob, the value, the reward (scaled with
--norm-reward; a time-limit truncation bootstrapped with V(final obs)), the episode-start flag, the simulated
`dt` that led to the obs (info["dt"]) and the actor's hidden state *before* the step. The observation (and
reward-scale) statistics are updated at every step from the raw observations before they are normalised.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from liquid_control.learning.envs import env_factory, info_dt, make_env, nominal_dt
from liquid_control.learning.normalise import RewardScaler, RunningMeanStd
from liquid_control.learning.ppo_config import PPOConfig


def env_shapes(cfg: PPOConfig) -> tuple[int, int, float]:
    """(obs size, action size, nominal control period) of cfg's env, from one probe env."""
    probe = make_env(cfg.robot, **dict(cfg.env_kwargs, dt_jitter=cfg.dt_jitter))
    try:
        return (int(np.prod(probe.observation_space.shape)), int(np.prod(probe.action_space.shape)),
                nominal_dt(probe))
    finally:
        probe.close()


def vector_env(cfg: PPOConfig, first: int, count: int) -> gym.vector.VectorEnv:
    """Envs first .. first+count-1 of the run (env i seeded cfg.seed + i), in a vector env of cfg.vector's kind."""
    env_kwargs = dict(cfg.env_kwargs, dt_jitter=cfg.dt_jitter)
    fns = [env_factory(cfg.robot, cfg.seed + first + i, **env_kwargs) for i in range(count)]
    vec_cls = gym.vector.SyncVectorEnv if cfg.vector == "sync" else gym.vector.AsyncVectorEnv
    # SAME_STEP: a finished env resets inside step(); its last obs arrives in infos["final_obs"]
    return vec_cls(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


@dataclass
class Collected:
    """One rollout of n envs: buffers (T, n, ...) keyed as BUFFERS, GAE's bootstrap after the last step
    (V of the next obs and state, whether that obs starts an episode), the episodes that ended in it and how
    many workers were restarted while collecting it (None: no workers, the rollout ran in this process)."""

    buf: dict[str, torch.Tensor]
    next_val: torch.Tensor
    next_start: torch.Tensor
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    restarts: int | None = None


class Rollout:
    """A vector env stepped by `agent` (a ppo.Agent), updating `obs_rms` and `reward_scale` as it goes.

    `first`: the run's index of this vector env's first env (its envs are first .. first+n-1); it offsets the
    reset seeds so that the envs are seeded as in one vector env of all the run's envs. The carry (last raw
    obs, hidden state, episode-start flags, dts) and the running episode returns go on from one collect to
    the next; start() begins fresh episodes.
    """

    def __init__(self, envs: gym.vector.VectorEnv, agent: Any, obs_rms: RunningMeanStd,
                 reward_scale: RewardScaler | None, *, cfg: PPOConfig, dt0: float, first: int = 0):
        self.envs, self.agent, self.obs_rms, self.reward_scale = envs, agent, obs_rms, reward_scale
        self.cfg, self.dt0, self.first, self.n = cfg, dt0, first, envs.num_envs
        self.obs_size = int(np.prod(envs.single_observation_space.shape))
        self.action_size = int(np.prod(envs.single_action_space.shape))
        self.carry: tuple | None = None

    def start(self, seed: int) -> None:
        """Fresh episodes: env i of the run reset with seed + i."""
        obs_raw, _ = self.envs.reset(seed=seed + self.first)
        self.carry = (obs_raw, torch.zeros(self.n, self.agent.state_size), np.ones(self.n),
                      np.full(self.n, self.dt0))
        self.ep_ret, self.ep_len = np.zeros(self.n), np.zeros(self.n, int)

    def collect(self) -> Collected:
        """cfg.n_steps steps of the n envs into the buffers."""
        with torch.no_grad():
            return self._collect()

    def _collect(self) -> Collected:
        cfg, N, T, agent = self.cfg, self.n, self.cfg.n_steps, self.agent
        obs_raw, h, start, dt = self.carry
        # The inputs live in numpy buffers (written there, read by torch through from_numpy views, no copies);
        # what the policy computes goes into torch ones.
        obs_b, start_b = np.zeros((T, N, self.obs_size), np.float32), np.zeros((T, N), np.float32)
        dt_b, rew_b = np.zeros((T, N, 1), np.float32), np.zeros((T, N), np.float32)
        buf = {k: torch.zeros((T, N) + s) for k, s in {
            "act": (self.action_size,), "logp": (), "val": (), "h": (agent.state_size,)}.items()}
        returns, lengths = [], []
        for t in range(T):
            self.obs_rms.update(obs_raw)
            obs_b[t] = self.obs_rms.normalise(obs_raw)
            start_b[t], dt_b[t, :, 0] = start, dt
            x, dt_t = torch.from_numpy(obs_b[t]), torch.from_numpy(dt_b[t])
            if start.any():  # an episode starts from a fresh (zero) state
                h = h * (1.0 - torch.from_numpy(start_b[t]))[:, None]
            mean, h_next = agent.act(x, h, dt_t)
            d = agent.dist(mean)
            a = d.sample()
            buf["logp"][t] = d.log_prob(a).sum(-1)
            buf["val"][t] = agent.value(x, h)
            buf["act"][t], buf["h"][t] = a, h

            obs_raw, rew, term, trunc, info = self.envs.step(np.clip(a.numpy(), -1.0, 1.0))
            rew, term, trunc = np.asarray(rew, np.float64), np.asarray(term), np.asarray(trunc)
            done = term | trunc
            self.ep_ret += rew
            self.ep_len += 1
            for i in np.nonzero(done)[0]:
                returns.append(float(self.ep_ret[i]))
                lengths.append(int(self.ep_len[i]))
            self.ep_ret[done], self.ep_len[done] = 0.0, 0
            if self.reward_scale is not None:
                rew = self.reward_scale(rew, done)
            # A time-limit truncation is not a failure: bootstrap with V(final obs, state after the step).
            cut = np.nonzero(trunc & ~term)[0]
            if len(cut) and "final_obs" in info:
                fin = np.stack([np.asarray(info["final_obs"][i], np.float64) for i in cut])
                v = agent.value(torch.as_tensor(self.obs_rms.normalise(fin)), h_next[cut])
                rew[cut] += cfg.gamma * v.numpy()
            rew_b[t] = rew
            # The dt that comes with the next obs: the simulated time of the step just taken; a reset obs
            # (SAME_STEP autoreset) gets the nominal period, as the runtime's first tick does.
            dt = np.where(done, self.dt0, info_dt(info, np.full(N, self.dt0)))
            start, h = done.astype(np.float64), h_next
        self.carry = (obs_raw, h, start, dt)
        next_val = agent.value(torch.as_tensor(self.obs_rms.normalise(obs_raw)), h)
        buf.update(obs=torch.from_numpy(obs_b), start=torch.from_numpy(start_b), dt=torch.from_numpy(dt_b),
                   rew=torch.from_numpy(rew_b))
        return Collected(buf, next_val, torch.as_tensor(start, dtype=torch.float32), returns, lengths)

    def close(self) -> None:
        self.envs.close()


class LocalRollouts:
    """The single-process trainer's rollouts: one Rollout over all cfg.n_envs envs, stepping the learner's own
    agent and statistics."""

    def __init__(self, trainer: Any):
        cfg = trainer.cfg
        self.rollout = Rollout(vector_env(cfg, 0, cfg.n_envs), trainer.agent, trainer.obs_rms, trainer.reward_scale,
                               cfg=cfg, dt0=trainer.dt0)

    def start(self, seed: int) -> None:
        self.rollout.start(seed)

    def collect(self) -> Collected:
        return self.rollout.collect()

    def close(self) -> None:
        self.rollout.close()


class RecordingMeanStd(RunningMeanStd):
    """A worker's copy of the learner's running statistics that also keeps the samples it was updated with,
    so that the learner can merge them into its own (RunningMeanStd.update: the parallel update)."""

    def __init__(self, size: int):
        super().__init__(size)
        self.seen: list[np.ndarray] = []

    def update(self, x: np.ndarray) -> None:
        super().update(x)
        self.seen.append(np.asarray(x, np.float64).reshape(-1, self.mean.size))

    def take(self) -> np.ndarray:
        """The samples since the last take(), (count, size)."""
        seen = np.concatenate(self.seen) if self.seen else np.zeros((0, self.mean.size))
        self.seen = []
        return seen
