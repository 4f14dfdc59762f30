"""Running observation statistics, frozen into a policy artifact's obs_mean / obs_std at export."""
from __future__ import annotations

from typing import Any

import numpy as np


class RunningMeanStd:
    """Running mean and variance of observations (Chan's parallel update), as in stable-baselines3.

    Frozen into the artifact's obs_mean / obs_std at export; cellmath.normalise then clips to +-OBS_CLIP,
    and the torch side does exactly the same (`normalise`), so training and runtime see the same inputs.
    """

    def __init__(self, size: int, epsilon: float = 1e-4):
        self.mean = np.zeros(size, np.float64)
        self.var = np.ones(size, np.float64)
        self.count = epsilon

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64).reshape(-1, self.mean.size)
        b_mean, b_var, b_count = x.mean(0), x.var(0), x.shape[0]
        delta, total = b_mean - self.mean, self.count + b_count
        self.mean = self.mean + delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta ** 2 * self.count * b_count / total
        self.var, self.count = m2 / total, total

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var + 1e-8)

    def normalise(self, obs: np.ndarray) -> np.ndarray:
        from liquid_control.core.cellmath import OBS_CLIP

        return np.clip((obs - self.mean) / self.std, -OBS_CLIP, OBS_CLIP).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": self.count}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.mean, self.var, self.count = np.asarray(d["mean"]), np.asarray(d["var"]), float(d["count"])


class RewardScaler:
    """Rewards divided by the running std of the discounted return (stable-baselines3's VecNormalize,
    CleanRL's NormalizeReward), clipped to +-`clip`. Returns of thousands (Hopper: ~3000) otherwise give the
    critic value targets that dwarf the policy loss; the mean is not removed, so a reward's sign is kept."""

    def __init__(self, n_envs: int, gamma: float, clip: float = 10.0):
        self.gamma, self.clip = gamma, clip
        self.ret = np.zeros(n_envs, np.float64)
        self.rms = RunningMeanStd(1)

    def __call__(self, rew: np.ndarray, done: np.ndarray) -> np.ndarray:
        """Scale one vector step's rewards; `done` ends each finished env's discounted return."""
        self.ret = self.ret * self.gamma + rew
        self.rms.update(self.ret[:, None])
        self.ret[done] = 0.0
        return np.clip(rew / self.rms.std[0], -self.clip, self.clip)

    def state_dict(self) -> dict[str, Any]:
        return {"ret": self.ret.copy(), "rms": self.rms.state_dict()}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.ret = np.asarray(d["ret"], np.float64).copy()
        self.rms.load_state_dict(d["rms"])
