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

Python floats per actuator (an action has a few), one preallocated output array: nothing kept per tick.
"""
from __future__ import annotations

import math

import numpy as np

from liquid_control.core.errors import SpecError
from liquid_control.core.spec import ActionSpec

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
        if self.rate_limit is not None and not (self.rate_limit.shape == (n,) and np.isfinite(self.rate_limit).all()
                                                and (self.rate_limit > 0.0).all()):
            raise SpecError(f"rate_limit needs {n} finite values > 0, got {self.rate_limit.tolist()}")
        self.soft_start = float(soft_start)
        self.safe_behaviour = safe_behaviour
        # The per-tick arithmetic runs on Python floats: an action has a handful of elements, and a numpy
        # call's fixed cost exceeds the arithmetic at that size. The operations are the IEEE double ones of the
        # vectorised form, in the same order.
        # (scale, lower bound, upper bound, rate limit or None) per actuator:
        rates = [None] * n if self.rate_limit is None else self.rate_limit.tolist()
        self._per_actuator = tuple(zip(self.scale.tolist(), self._cmd_lower.tolist(), self._cmd_upper.tolist(),
                                       rates))
        self._safe = tuple(self.safe_value.tolist())
        self._out = np.empty(n)  # the command handed to the caller (view; copy to keep)
        self.reset()

    # --- state -----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget history: last command = last good command = the spec's safe value; ramp from zero."""
        # Immutable tuples: rebinding them is the whole update, nothing can alias them.
        self._prev = self._last_good = self._base = self._safe
        self._ramp_t = 0.0

    def restart(self) -> None:
        """Begin a soft start from the command published last (after activation or recovery)."""
        self._base = self._prev
        self._ramp_t = 0.0

    @property
    def ramp(self) -> float:
        """The soft-start factor the next good command will get (0..1)."""
        return 1.0 if self.soft_start <= 0.0 else min(1.0, self._ramp_t / self.soft_start)

    @property
    def last(self) -> np.ndarray:
        """The last command returned (good or safe), as a new array."""
        return np.array(self._prev)

    # --- per tick --------------------------------------------------------------------------------
    def _emit(self, values: tuple[float, ...]) -> np.ndarray:
        self._prev = values
        self._out[:] = values
        return self._out

    def safe(self) -> np.ndarray:
        """The safe command (zero: spec safe value; hold: last good command), applied immediately."""
        return self._emit(self._safe if self.safe_behaviour == "zero" else self._last_good)

    def stop(self) -> np.ndarray:
        """The spec's safe value, applied immediately, whatever `safe_behaviour` says."""
        return self._emit(self._safe)

    def apply(self, action: np.ndarray, dt: float) -> tuple[np.ndarray, bool]:
        """The command for `action` (one value per actuator) after `dt` seconds since the previous command,
        and whether it is good (False: the action or the result was non-finite or the action did not fit,
        and the safe command was returned)."""
        try:
            values = action.tolist() if isinstance(action, np.ndarray) else [float(a) for a in action]
            if len(values) != self.size:
                return self.safe(), False
            raw = [a * p[0] for a, p in zip(values, self._per_actuator)]  # raw command
        except (TypeError, ValueError):  # not a vector of numbers: treat like a bad output, never crash the loop
            return self.safe(), False
        if not all(map(math.isfinite, raw)):
            return self.safe(), False
        dt = dt if math.isfinite(dt) and dt > 0.0 else 0.0
        # Soft start: fade from the base command towards the policy's command.
        ramping = self._ramp_t < self.soft_start
        if ramping:
            self._ramp_t += dt
            f = min(1.0, self._ramp_t / self.soft_start)
        out = []
        for x, prev, base, (_, lower, upper, rate) in zip(raw, self._prev, self._base, self._per_actuator):
            if ramping:  # also at f = 1: (x - base) * 1 + base can differ from x in the last bit
                x = (x - base) * f + base
            # [lo, hi]: the command bounds, narrowed by the rate limit to prev -+ rate * dt (never empty while
            # prev lies within the bounds; a safe value beyond what +-scale reaches snaps to the nearest bound).
            # (Comparisons rather than min()/max(): a builtin call per bound costs more than the arithmetic.)
            lo, hi = lower, upper
            if rate is not None:
                step = rate * dt
                if prev - step > lo:
                    lo = prev - step
                if prev + step < hi:
                    hi = prev + step
            if x < lo:  # a NaN x passes both tests, for the check below to refuse
                x = lo
            if x > hi:
                x = hi
            out.append(x)
        if not all(map(math.isfinite, out)):  # e.g. inf - inf or inf * 0 in the ramp: refuse it
            return self.safe(), False
        self._last_good = values = tuple(out)
        return self._emit(values), True
