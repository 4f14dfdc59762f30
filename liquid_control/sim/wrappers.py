"""What a real robot does to a policy, as Gymnasium wrappers around a SpecEnv. Each is off by default.

- ControlJitter: the control period varies (uniform +-jitter around nominal) and ticks get dropped; MuJoCo
  is stepped by the actual dt (SpecEnv.set_next_dt) and info["dt"] reports it, which is how the dt reaches
  the policy: training code feeds info["dt"] to the cell, as the controller node feeds its measured dt.
  AppendDt also puts it into the observation, for policies that take no dt input.
- SensorNoise: Gaussian noise on the observation (in observation units), plus a per-episode bias.
- ActionDelay: the action takes effect `delay` control ticks later (fixed, or drawn per episode).
- ObservationDropout: with probability p a tick brings no new observation; the last one is held.
- PhysicsRandomization: per episode, body masses, joint damping and actuator gains are scaled by
  factors drawn uniformly from [1 - s, 1 + s] (the robot is never quite the model).

Seeding: every wrapper draws from its own generator. `seed=` seeds it at construction; reset(seed=s)
reseeds it from (s, wrapper) so that a seeded episode is reproducible whatever came before.
"""
from __future__ import annotations

import zlib
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np

from liquid_control.core.errors import LiquidControlError


class WrapperError(LiquidControlError, ValueError):
    """A real-robot wrapper option is out of range."""


class _Seeded(gym.Wrapper):
    """A wrapper with its own generator, reseeded by reset(seed=...)."""

    def __init__(self, env: gym.Env, seed: int | None):
        super().__init__(env)
        self._tag = zlib.crc32(type(self).__name__.encode())  # distinct streams per wrapper type
        self.rng = np.random.default_rng(None if seed is None else [int(seed), self._tag])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self.rng = np.random.default_rng([int(seed), self._tag])
        return self.env.reset(seed=seed, options=options)


def _check_prob(name: str, p: float) -> float:
    p = float(p)
    if not 0.0 <= p < 1.0:
        raise WrapperError(f"{name} must lie in [0, 1), got {p}")
    return p


class ControlJitter(_Seeded):
    """Each step lasts period * (1 + U(-jitter, jitter)); with probability drop_prob a tick is missed, and
    the step lasts one more (jittered) period with the same command held, up to max_drops in a row.

    info["dt"] is the time simulated (the env simulates a dt exactly, not rounded to its timestep);
    info["dropped_ticks"] how many ticks were missed in this step.
    """

    def __init__(self, env: gym.Env, jitter: float = 0.0, drop_prob: float = 0.0, max_drops: int = 3,
                 seed: int | None = None):
        super().__init__(env, seed)
        self.jitter = _check_prob("dt jitter", jitter)
        self.drop_prob = _check_prob("drop probability", drop_prob)
        self.max_drops = int(max_drops)
        self.period = float(env.unwrapped.control_period)

    def _one_period(self) -> float:
        if not self.jitter:
            return self.period
        return self.period * (1.0 + self.rng.uniform(-self.jitter, self.jitter))

    def step(self, action):
        dt, drops = self._one_period(), 0
        while self.drop_prob and drops < self.max_drops and self.rng.random() < self.drop_prob:
            drops += 1
            dt += self._one_period()
        self.env.unwrapped.set_next_dt(dt)
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["dropped_ticks"] = drops
        return obs, reward, terminated, truncated, info


class SensorNoise(_Seeded):
    """obs + N(0, std) each step + a bias drawn from N(0, bias_std) per episode (std in observation units,
    a scalar or one value per observation element)."""

    def __init__(self, env: gym.Env, std: float | list[float] = 0.0, bias_std: float | list[float] = 0.0,
                 seed: int | None = None):
        super().__init__(env, seed)
        n = env.observation_space.shape[0]
        self.std = self._per_element("obs noise std", std, n)
        self.bias_std = self._per_element("obs bias std", bias_std, n)
        self.bias = np.zeros(n)

    @staticmethod
    def _per_element(name: str, value, n: int) -> np.ndarray:
        v = np.asarray(value, dtype=np.float64)
        if v.ndim == 0:
            v = np.full(n, float(v))
        if v.shape != (n,) or not np.all(np.isfinite(v)) or np.any(v < 0):
            raise WrapperError(f"{name} must be one non-negative number or {n} of them, got {value!r}")
        return v.copy()

    def _noisy(self, obs: np.ndarray) -> np.ndarray:
        return obs + self.bias + self.rng.normal(size=obs.shape) * self.std

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        self.bias = self.rng.normal(size=self.bias_std.shape) * self.bias_std
        return self._noisy(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._noisy(obs), reward, terminated, truncated, info


class ActionDelay(_Seeded):
    """The action given at step t is applied at step t + delay. `delay` is a number of control ticks, or a
    (low, high) range drawn per episode. The first `delay` steps apply the spec's safe command."""

    def __init__(self, env: gym.Env, delay: int | tuple[int, int] = 1, seed: int | None = None):
        super().__init__(env, seed)
        low, high = (delay, delay) if np.ndim(delay) == 0 else tuple(delay)
        if not 0 <= int(low) <= int(high):
            raise WrapperError(f"action delay must be ticks >= 0 (or a range low <= high), got {delay!r}")
        self.low, self.high = int(low), int(high)
        a = env.unwrapped.robot_spec.action
        # The action that commands the safe value (action * scale = safe).
        self.safe_action = np.array([s / k if k else 0.0 for s, k in zip(a.safe, a.scale)], dtype=np.float32)
        self.delay = self.low
        self.queue: deque[np.ndarray] = deque()

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        self.delay = int(self.rng.integers(self.low, self.high + 1)) if self.high > self.low else self.low
        self.queue = deque(self.safe_action.copy() for _ in range(self.delay))
        info["action_delay"] = self.delay
        return obs, info

    def step(self, action):
        if self.delay:
            self.queue.append(np.array(action, dtype=np.float32, copy=True))
            action = self.queue.popleft()
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["action_delay"] = self.delay
        return obs, reward, terminated, truncated, info


class ObservationDropout(_Seeded):
    """With probability p a step returns the previous observation again (info["obs_dropped"] = True)."""

    def __init__(self, env: gym.Env, prob: float = 0.0, seed: int | None = None):
        super().__init__(env, seed)
        self.prob = _check_prob("obs dropout probability", prob)
        self.last: np.ndarray | None = None

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        self.last = obs
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        dropped = self.last is not None and self.rng.random() < self.prob
        if dropped:
            obs = self.last.copy()
        else:
            self.last = obs
        info["obs_dropped"] = bool(dropped)
        return obs, reward, terminated, truncated, info


class PhysicsRandomization(_Seeded):
    """Per episode: body masses (and inertias), joint damping and actuator gear scaled by U(1 - s, 1 + s).

    Each factor is drawn per element (per body, per dof, per actuator); the nominal values are kept and
    restored before every draw, so the model never drifts. info["physics_scale"] holds the draw.
    """

    def __init__(self, env: gym.Env, mass: float = 0.0, damping: float = 0.0, gear: float = 0.0,
                 seed: int | None = None):
        super().__init__(env, seed)
        self.spread = {"mass": _check_prob("mass spread", mass), "damping": _check_prob("damping spread", damping),
                       "gear": _check_prob("gear spread", gear)}
        m = env.unwrapped.model
        self._nominal = {"body_mass": m.body_mass.copy(), "body_inertia": m.body_inertia.copy(),
                         "dof_damping": m.dof_damping.copy(), "actuator_gear": m.actuator_gear.copy()}
        self.scale: dict[str, np.ndarray] = {}

    def _draw(self, n: int, spread: float) -> np.ndarray:
        return self.rng.uniform(1.0 - spread, 1.0 + spread, size=n) if spread else np.ones(n)

    def reset(self, *, seed=None, options=None):
        if seed is not None:  # reseed first: the draw below must follow from this seed
            self.rng = np.random.default_rng([int(seed), self._tag])
        m, nom = self.env.unwrapped.model, self._nominal
        mass = self._draw(m.nbody, self.spread["mass"])
        damping = self._draw(m.nv, self.spread["damping"])
        gear = self._draw(m.nu, self.spread["gear"])
        m.body_mass[:] = nom["body_mass"] * mass
        m.body_inertia[:] = nom["body_inertia"] * mass[:, None]  # same shape, heavier: inertia scales too
        m.dof_damping[:] = nom["dof_damping"] * damping
        m.actuator_gear[:, 0] = nom["actuator_gear"][:, 0] * gear
        self.scale = {"mass": mass, "damping": damping, "gear": gear}
        obs, info = self.env.reset(seed=seed, options=options)
        info["physics_scale"] = self.scale
        return obs, info


class AppendDt(gym.ObservationWrapper):
    """Append dt / nominal period (1.0 on time) to the observation, for policies that take no dt input."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        low, high = env.observation_space.low, env.observation_space.high
        self.observation_space = gym.spaces.Box(np.append(low, 0.0), np.append(high, np.inf), dtype=np.float64)
        self.period = float(env.unwrapped.control_period)
        self._dt = self.period

    def reset(self, *, seed=None, options=None):
        self._dt = self.period
        return super().reset(seed=seed, options=options)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._dt = float(info.get("dt", self.period))
        return self.observation(obs), reward, terminated, truncated, info

    def observation(self, observation):
        return np.append(observation, self._dt / self.period)


def wrap_real_robot(env: gym.Env, *, dt_jitter: float = 0.0, drop_prob: float = 0.0,
                    obs_noise: float | list[float] = 0.0, action_delay: int | tuple[int, int] = 0,
                    obs_dropout: float = 0.0, append_dt: bool = False, physics: float = 0.0,
                    seed: int | None = None) -> gym.Env:
    """Apply the wrappers whose options are set, innermost first: physics, delay, jitter, noise, dropout,
    dt. `physics` is the spread for masses, damping and gears alike (PhysicsRandomization)."""
    if physics:
        env = PhysicsRandomization(env, mass=physics, damping=physics, gear=physics, seed=seed)
    if np.any(action_delay):
        env = ActionDelay(env, action_delay, seed=seed)
    if dt_jitter or drop_prob:
        env = ControlJitter(env, jitter=dt_jitter, drop_prob=drop_prob, seed=seed)
    if np.any(obs_noise):
        env = SensorNoise(env, std=obs_noise, seed=seed)
    if obs_dropout:
        env = ObservationDropout(env, obs_dropout, seed=seed)
    if append_dt:
        env = AppendDt(env)
    return env
