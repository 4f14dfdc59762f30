"""The action -> command pipeline: what happens to a policy output before it reaches an actuator.

Shared by the controller node and offline bag replay, so that both produce the same command from the
same action and `dt`. Per tick, in this order:

  1. raw     = clip(action, -1, 1) * spec.action.scale   (the spec's contract, and what training saw:
               PPO clips its samples to [-1, 1]; applied as part of step 4's bounds, no extra work)
  2. ramp    = base + f * (raw - base), f = min(1, t / soft_start): the command is faded in from
               `base` (what was published when the ramp began: the safe command after activation or
               recovery) over the soft-start time; f = 1 when soft_start is 0.
  3. rate    = clip(ramp, prev - rate_limit*dt, prev + rate_limit*dt), prev = last published command
  4. clamp   = clip(rate, lower, upper)

A non-finite action (or a non-finite result) yields the safe command instead: zero -> spec.action.safe,
hold -> the last good command. `stop()` is the safe value whatever the behaviour: e-stop, disable,
deactivate and shutdown use it, since holding a torque is not stopping. The safe command is applied at once (no rate limit: stopping must not be
slowed down); the next good command is rate limited from it. The output is never non-finite.

Pure numpy on preallocated buffers: no allocation per tick.
"""
from __future__ import annotations

from math import isfinite
from typing import Any

import numpy as np

from liquid_control.core.errors import SpecError
from liquid_control.core.spec import FLOAT64_ARRAY, JOINT_STATE, TWIST, ActionSpec

SAFE_BEHAVIOURS = ("zero", "hold")


class CommandPipeline:
    """Turns actions into commands for one actuator set. Not thread-safe: one caller (the loop)."""

    def __init__(self, action: ActionSpec, soft_start: float = 0.0, safe_behaviour: str = "zero",
                 lower: tuple[float, ...] | None = None, upper: tuple[float, ...] | None = None):
        if safe_behaviour not in SAFE_BEHAVIOURS:
            raise SpecError(f"safe_behaviour must be one of {SAFE_BEHAVIOURS}, got {safe_behaviour!r}")
        if not (soft_start >= 0.0 and np.isfinite(soft_start)):
            raise SpecError(f"soft_start must be a finite time >= 0 s, got {soft_start!r}")
        n = action.size
        self.names = action.names
        self.size = n
        self.scale = np.asarray(action.scale, dtype=np.float64)
        self.lower = np.asarray(action.lower if lower is None else lower, dtype=np.float64)
        self.upper = np.asarray(action.upper if upper is None else upper, dtype=np.float64)
        if self.lower.shape != (n,) or self.upper.shape != (n,):
            raise SpecError(f"command limits need {n} values each ({', '.join(action.names)})")
        if np.any(self.lower > self.upper):
            raise SpecError(f"command limits: lower {self.lower.tolist()} exceeds upper {self.upper.tolist()}")
        self.safe_value = np.asarray(action.safe, dtype=np.float64)
        if np.any(self.safe_value < self.lower) or np.any(self.safe_value > self.upper):
            raise SpecError(f"safe command {self.safe_value.tolist()} lies outside the limits "
                            f"[{self.lower.tolist()}, {self.upper.tolist()}]")
        # Bounds of a policy command: the limits, narrowed to what an action in [-1, 1] can produce.
        reach = np.abs(self.scale)
        self._cmd_lower = np.maximum(self.lower, -reach)
        self._cmd_upper = np.minimum(self.upper, reach)
        self.rate_limit = None if action.rate_limit is None else np.asarray(action.rate_limit, dtype=np.float64)
        self.soft_start = float(soft_start)
        self.safe_behaviour = safe_behaviour
        # Preallocated state and scratch.
        self._out = np.empty(n)  # the command handed to the caller (view; copy to keep)
        self._prev = np.empty(n)  # last command published (good or safe)
        self._last_good = np.empty(n)  # last command that came from the policy
        self._base = np.empty(n)  # where the soft-start ramp begins
        self._lo = np.empty(n)
        self._hi = np.empty(n)
        self._zeros = np.zeros(n)
        self._ramp_t = 0.0
        self.reset()

    # --- state -----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget history: last command = last good command = the spec's safe value; ramp from zero."""
        self._prev[:] = self.safe_value
        self._last_good[:] = self.safe_value
        self._base[:] = self.safe_value
        self._ramp_t = 0.0

    def restart(self) -> None:
        """Begin a soft start from the command published last (after activation or recovery)."""
        self._base[:] = self._prev
        self._ramp_t = 0.0

    @property
    def ramp(self) -> float:
        """The soft-start factor the next good command will get (0..1)."""
        return 1.0 if self.soft_start <= 0.0 else min(1.0, self._ramp_t / self.soft_start)

    @property
    def last(self) -> np.ndarray:
        """The last command returned (good or safe)."""
        return self._prev

    # --- per tick --------------------------------------------------------------------------------
    def safe(self) -> np.ndarray:
        """The safe command (zero: spec safe value; hold: last good command), applied immediately."""
        src = self.safe_value if self.safe_behaviour == "zero" else self._last_good
        self._out[:] = src
        self._prev[:] = src
        return self._out

    def stop(self) -> np.ndarray:
        """The spec's safe value, applied immediately, whatever `safe_behaviour` says."""
        self._out[:] = self.safe_value
        self._prev[:] = self.safe_value
        return self._out

    def apply(self, action: np.ndarray, dt: float) -> tuple[np.ndarray, bool]:
        """The command for `action` after `dt` seconds since the previous command, and whether it is
        good (False: the action or the result was non-finite, and the safe command was returned)."""
        out = self._out
        try:
            np.multiply(action, self.scale, out=out)  # raw command
        except (ValueError, TypeError):  # wrong shape or type: treat like a bad output, never crash the loop
            return self.safe(), False
        # One BLAS call for "all finite": x . 0 is NaN if any element is NaN or inf, else exactly 0.
        if out.dot(self._zeros) != 0.0:
            return self.safe(), False
        dt = dt if isfinite(dt) and dt > 0.0 else 0.0
        # Soft start: fade from the base command towards the policy's command.
        if self._ramp_t < self.soft_start:
            self._ramp_t += dt
            f = min(1.0, self._ramp_t / self.soft_start)
            out -= self._base
            out *= f
            out += self._base
        # Rate limit relative to what was published last, folded into the limits: [lo, hi] is the
        # intersection of [prev -+ rate * dt] and the command bounds (not empty while prev lies within
        # the bounds; a safe value outside them — beyond what +-scale reaches — snaps to the nearest bound).
        lo, hi = self._lo, self._hi
        if self.rate_limit is not None:
            np.multiply(self.rate_limit, dt, out=hi)
            np.subtract(self._prev, hi, out=lo)
            hi += self._prev
            np.maximum(lo, self._cmd_lower, out=lo)
            np.minimum(hi, self._cmd_upper, out=hi)
        else:
            lo[:], hi[:] = self._cmd_lower, self._cmd_upper
        np.maximum(out, lo, out=out)  # = np.clip (lo <= hi), at under half its per-call cost
        np.minimum(out, hi, out=out)
        if out.dot(self._zeros) != 0.0:  # e.g. inf - inf in the ramp: refuse rather than publish it
            return self.safe(), False
        self._prev[:] = out
        self._last_good[:] = out
        return out, True


def decode_command(msg: Any, action: ActionSpec) -> np.ndarray:
    """A command message -> the command vector in spec order. Raises SpecError if it does not fit.

    Duck-typed on the ROS field names, so rclpy and rosbags messages both work (sim bridge, bag tools)."""
    n = action.size
    if action.msg_type == FLOAT64_ARRAY:
        data = np.asarray(msg.data, dtype=np.float64)
        if data.shape != (n,):
            raise SpecError(f"Float64MultiArray command has {data.size} values, expected {n}")
        return data
    if action.msg_type == JOINT_STATE:
        names = list(msg.name)
        effort = np.asarray(msg.effort, dtype=np.float64)
        if len(effort) != len(names):
            raise SpecError(f"JointState command has {len(effort)} efforts for {len(names)} names")
        try:
            return effort[[names.index(a) for a in action.names]]
        except ValueError:
            missing = [a for a in action.names if a not in names]
            raise SpecError(f"JointState command lacks actuator {missing[0]!r}") from None
    if action.msg_type == TWIST:
        return np.array([getattr(getattr(msg, g), a) for g, a in (x.split(".") for x in action.names)])
    raise SpecError(f"unsupported command type {action.msg_type!r}")
