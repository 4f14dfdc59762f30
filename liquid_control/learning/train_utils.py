"""The plumbing around a training run: envs by robot name, observation statistics, checkpoints that
survive a crash, CSV metrics and the learning-curve plot.

Kept apart from ppo.py so the algorithm there reads top to bottom without file handling, and so
distill.py and evaluate.py share the same env factory and checkpoint format.
"""
from __future__ import annotations

import csv
import math
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from liquid_control.core.errors import LiquidControlError


class TrainingError(LiquidControlError):
    """Training cannot start or cannot go on (bad hyperparameters, NaN loss, a checkpoint that does not fit)."""


# ----------------------------------------------------------------------------------------------- envs
def env_id(robot: str) -> str:
    """The Gymnasium id of the spec-driven env for `robot` (any spec in config/robots, or a spec path)."""
    try:
        from liquid_control.sim import env_id_for
    except ImportError as exc:
        raise TrainingError(f"the MuJoCo env is not available: {exc}") from None
    try:
        return env_id_for(robot)
    except LiquidControlError as exc:
        raise TrainingError(str(exc)) from None


def success_return(robot: str) -> float:
    """What counts as solved (mean evaluation return): the spec's sim.success_return, else never."""
    from liquid_control.core.spec import load_spec

    value = load_spec(robot).sim.get("success_return")
    return math.inf if value is None else float(value)


def make_env(robot: str, *, dt_jitter: float = 0.0, rate_scale: float = 1.0, render_mode: str | None = None,
             seed: int | None = None, **kwargs: Any):
    """One env for `robot`, built from its spec by liquid_control.sim, with optional timing perturbations.

    dt_jitter: each control period is drawn uniformly from nominal * [1 - j, 1 + j] (the sim's jitter wrapper);
    rate_scale: the control rate relative to nominal (0.5 = half as often, 2 = twice as often), see ControlRate.
    Other keyword arguments go to the env (e.g. timestep=0.002 to resolve jittered periods finely).
    """
    gid = env_id(robot)
    if not rate_scale > 0 or not np.isfinite(rate_scale):
        raise TrainingError(f"rate-scale must be a positive number, got {rate_scale}")
    if not 0 <= dt_jitter < 1:
        raise TrainingError(f"dt-jitter must lie in [0, 1), got {dt_jitter}")
    opts: dict[str, Any] = dict(kwargs)
    if render_mode:
        opts["render_mode"] = render_mode
    if rate_scale != 1.0:
        # Same simulated horizon at any rate: rate_scale times as many steps.
        opts["max_episode_steps"] = int(round(gym.spec(gid).max_episode_steps * rate_scale))
    elif dt_jitter:
        opts["dt_jitter"] = float(dt_jitter)
        if seed is not None:
            opts["wrapper_seed"] = int(seed)
    try:
        env = gym.make(gid, **opts)
    except LiquidControlError:
        raise
    except Exception as exc:  # a spec the env cannot build, an option it does not know
        raise TrainingError(f"cannot build env {gid} for robot {robot!r}: {type(exc).__name__}: {exc}") from None
    if rate_scale != 1.0:
        env = ControlRate(env, rate_scale, dt_jitter, seed)
    return env


def ControlRate(env: gym.Env, rate_scale: float, dt_jitter: float = 0.0, seed: int | None = None) -> gym.Env:  # noqa: N802
    """Run `env` at `rate_scale` times its nominal control rate, optionally with period jitter.

    The sim's ControlJitter with its period scaled; each reward is weighted by dt / nominal period so
    returns stay comparable across rates (the cart-pole still scores 1000 for the whole, time-scaled, episode).
    """
    from liquid_control.sim.wrappers import ControlJitter

    class _ControlRate(ControlJitter):
        def __init__(self) -> None:
            super().__init__(env, jitter=dt_jitter, seed=seed)
            self.nominal = self.period
            self.period = self.nominal / rate_scale

        def step(self, action):
            obs, rew, term, trunc, info = super().step(action)
            return obs, float(rew) * info["dt"] / self.nominal, term, trunc, info

    return _ControlRate()


def env_factory(robot: str, seed: int, **kwargs: Any) -> Callable[[], Any]:
    def thunk():
        env = make_env(robot, seed=seed, **kwargs)
        env.action_space.seed(seed)
        return env
    return thunk


def nominal_dt(env) -> float:
    return float(getattr(env.unwrapped, "nominal_dt", None) or env.unwrapped.dt)


def info_dt(info: dict, fallback: np.ndarray) -> np.ndarray:
    """The simulated time of the step just taken, per env, from a (vector) info dict; `fallback` where absent."""
    dt = info.get("dt")
    if dt is None:
        return fallback.copy()
    dt = np.asarray(dt, dtype=np.float64).reshape(fallback.shape)
    mask = info.get("_dt")
    if mask is not None:  # vector infos: only entries with the mask set were reported
        dt = np.where(np.asarray(mask).reshape(fallback.shape), dt, fallback)
    return dt


# ------------------------------------------------------------------------------ observation statistics
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


# ---------------------------------------------------------------------------------------- checkpoints
def plain_state(value: Any) -> Any:
    """`value` with numpy arrays and scalars turned into torch tensors and Python numbers: what
    torch.load(weights_only=True) reads back (it refuses anything that would need code to rebuild)."""
    import torch

    if isinstance(value, dict):
        return {k: plain_state(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain_state(v) for v in value)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    return value


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically (temp file + rename): a crash or Ctrl-C mid-write never leaves a torn checkpoint.
    Only tensors and plain data are written, so loading never runs code (weights_only)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(plain_state(state), tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's tensors and plain data, read with weights_only=True: a crafted pickle is refused
    before any of its code runs."""
    import pickle

    import torch

    path = Path(path)
    if path.exists() and not path.is_file():
        raise TrainingError(f"checkpoint {path} is not a regular file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TrainingError(f"no checkpoint at {path}") from None
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found:
            raise TrainingError(f"checkpoint {path} holds more than tensors and plain data, refused unread "
                                f"(it would call {found.group(1)})") from None
        raise TrainingError(f"cannot read checkpoint {path}: not a torch checkpoint of tensors and plain data") from None
    except Exception as exc:
        raise TrainingError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    if not isinstance(state, dict):
        raise TrainingError(f"checkpoint {path} holds a {type(state).__name__}, not a dict")
    return state


# -------------------------------------------------------------------------------------------- metrics
class CSVLog:
    """Append-only CSV; on resume the rows already written stay and new ones follow. When TensorBoard is
    installed the same scalars also go to <folder>/tb (`tensorboard --logdir <folder>/tb`)."""

    def __init__(self, path: Path, fields: list[str], step_key: str = "step"):
        self.path, self.fields, self.step_key = Path(path), fields, step_key
        new = not self.path.exists() or self.path.stat().st_size == 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", newline="")
        self._w = csv.DictWriter(self._f, fieldnames=fields, extrasaction="ignore")
        if new:
            self._w.writeheader()
        try:
            from torch.utils.tensorboard import SummaryWriter  # needs the optional tensorboard package

            self._tb = SummaryWriter(log_dir=str(self.path.parent / "tb"))
        except ImportError:
            self._tb = None

    def write(self, row: dict[str, Any]) -> None:
        self._w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        self._f.flush()
        if self._tb is not None:
            for k, v in row.items():
                if k != self.step_key and isinstance(v, (int, float)) and np.isfinite(v):
                    self._tb.add_scalar(k, v, int(row[self.step_key]))

    def close(self) -> None:
        self._f.close()
        if self._tb is not None:
            self._tb.close()


def truncate_csv(path: Path, max_step: int, key: str = "step") -> None:
    """Drop rows past `max_step` (written after the checkpoint a resumed run restarts from)."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
        fields = rows[0].keys() if rows else None
    if not fields:
        return
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fields))
        w.writeheader()
        w.writerows(r for r in rows if r.get(key) and int(float(r[key])) <= max_step)


def plot_learning_curve(csv_path: Path, png_path: Path, title: str = "") -> Path | None:
    """Eval return (mean +- std) and training episode return against env steps."""
    rows = list(csv.DictReader(open(csv_path, newline=""))) if Path(csv_path).exists() else []
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def col(name: str) -> tuple[np.ndarray, np.ndarray]:
        pts = [(float(r["step"]), float(r[name])) for r in rows if r.get(name) not in (None, "", "nan")]
        a = np.array(pts) if pts else np.zeros((0, 2))
        return a[:, 0], a[:, 1]

    fig, ax = plt.subplots(figsize=(7, 4))
    s, v = col("train_return")
    if len(s):
        ax.plot(s, v, color="0.6", lw=1, label="training episodes (mean)")
    s, m = col("eval_mean")
    if len(s):
        _, sd = col("eval_std")
        ax.plot(s, m, "o-", color="C0", label="eval, deterministic (mean ± std)")
        if len(sd) == len(m):
            ax.fill_between(s, m - sd, m + sd, color="C0", alpha=0.2)
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return Path(png_path)


def command_line() -> str:
    """The command as the user typed it (for provenance): `liquid-control train ...`."""
    prog = Path(sys.argv[0]).name
    if prog in ("__main__.py", "main.py"):
        prog = "liquid-control"
    return " ".join([prog, *map(shlex.quote, sys.argv[1:])])
