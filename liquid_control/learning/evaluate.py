"""Closed-loop evaluation of a policy in the MuJoCo env: mean +- std return, success, under timing changes.

Any object with `reset()` and `step(obs, dt) -> action` is a policy here: the core runtime's
`Policy` (what `liquid-control eval` uses: the artifact through numpy/ONNX, no torch) and the
training agent (`ppo.TorchPolicy`, for the evaluations during training) run through the same loop.
The dt handed to the policy at each tick is the simulated time since the previous tick, as the
controller node measures it on the robot; the first tick of an episode gets the nominal period.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from liquid_control.core.control import StepPolicy
from liquid_control.learning.envs import make_env, nominal_dt, success_return


class NodeSafety:
    """A policy wrapped in the controller node's control law (core.control.ControlLaw, the spec's soft start,
    rate limit and limits): `eval --node-safety` sees what the robot would get, not the raw policy. Steps
    return the node's command as an action (command / scale), which the env scales back."""

    def __init__(self, policy: StepPolicy, spec: Any, period: float):
        from liquid_control.core.command import CommandPipeline
        from liquid_control.core.control import ControlLaw

        s = spec.safety
        self.law = ControlLaw(policy, CommandPipeline(spec.action, s.soft_start, s.safe_behaviour), period,
                              s.sensor_timeout, spec.obs_size)
        self.scale = np.asarray(spec.action.scale, np.float64)
        self.t = 0.0

    def reset(self) -> None:
        self.law.reset()
        self.t = 0.0

    def step(self, obs: np.ndarray, dt: float) -> np.ndarray:
        self.t += dt
        return self.law.update(self.t, dt, obs, None).command / self.scale


def run_episodes(policy: StepPolicy, robot: str, *, episodes: int = 20, seed: int = 0, dt_jitter: float = 0.0,
                 rate_scale: float = 1.0, video: str | Path | None = None, env_kwargs: dict[str, Any] | None = None,
                 max_video_frames: int = 1500) -> dict[str, Any]:
    """Run `episodes` deterministic episodes (seeds seed, seed+1, ...). Returns a JSON-able summary."""
    env = make_env(robot, dt_jitter=dt_jitter, rate_scale=rate_scale,
                   render_mode="rgb_array" if video else None, **(env_kwargs or {}))
    dt0 = nominal_dt(env) / rate_scale  # the first tick of an episode gets the (scaled) control period
    threshold = success_return(robot)
    returns, lengths, dts, frames = [], [], [], []
    try:
        for k in range(episodes):
            obs, _ = env.reset(seed=seed + k)
            policy.reset()
            dt, total, n, done = dt0, 0.0, 0, False
            while not done:
                action = np.clip(np.asarray(policy.step(np.asarray(obs, np.float64), dt), np.float64), -1.0, 1.0)
                obs, rew, term, trunc, info = env.step(action.astype(env.action_space.dtype))
                total, n, done = total + float(rew), n + 1, bool(term or trunc)
                dt = float(info.get("dt", dt0))
                dts.append(dt)
                if video and len(frames) < max_video_frames:
                    frames.append(env.render())
            returns.append(total)
            lengths.append(n)
    finally:
        env.close()
    if video and frames:
        from liquid_control.sim.render import write_video

        write_video(frames, Path(video), fps=1.0 / dt0)
    r = np.array(returns)
    return {"robot": robot, "episodes": episodes, "seed": seed, "dt_jitter": dt_jitter, "rate_scale": rate_scale,
            "mean": float(r.mean()), "std": float(r.std()), "min": float(r.min()), "max": float(r.max()),
            "success_threshold": threshold, "success_rate": float(np.mean(r >= threshold)),
            "mean_length": float(np.mean(lengths)), "returns": [float(x) for x in r],
            "dt_mean": float(np.mean(dts)), "dt_min": float(np.min(dts)), "dt_max": float(np.max(dts))}
