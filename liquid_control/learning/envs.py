"""Training envs by robot name: the spec-driven MuJoCo env, optionally at another control rate or with
period jitter, and the simulated dt of each step."""
from __future__ import annotations

import math
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from liquid_control.core.errors import LiquidControlError
from liquid_control.learning.errors import TrainingError


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
