"""The control law: what the controller does at one tick, as a pure object.

In the spirit of a ros2_control controller's `update(time, period)`: `ControlLaw.update` takes the tick's
time, the time since the previous tick, the assembled observation (with its fault, from
core.observation.ObservationAssembler) and whether something holds the robot stopped, and returns the
command with its status. It has no clock, no thread and no ROS: the controller node, offline bag replay
and the sim demo all call it, so a bag replayed offline gets the commands the node would have published.

The rules, in the order they apply at a tick:

  1. dt gap: dt > max(sensor_timeout, 5 periods) (sim time jumped forward, the loop stalled) is a
     restart, not a step across time the state never saw data for: hidden state zeroed, soft start again.
  2. stop: an e-stop (see EStop) or a disable holds the robot at the spec's safe value, whatever
     safe_behaviour says (holding a torque is not stopping)  -> SAFE_STOP, WARN.
  3. sensor fault: an invalid (NaN, wrong size) or missing/stale sensor  -> SAFE_FAULT, ERROR for invalid,
     STALE otherwise, with the safe command (zero: the spec's safe value; hold: the last good command).
  4. policy: the policy steps by dt, and the pipeline scales, soft-starts, rate-limits and clamps its
     action (core.command). A policy error or a non-finite action  -> SAFE_POLICY, ERROR, safe command.
  5. every safe tick zeroes the hidden state; the first good tick after one restarts the soft start from
     the command published last.

A step from a zeroed hidden state (after activation, a fault, a stop, a reset or a dt gap) is taken with
dt = one period: there is no history to integrate over, and the time since some earlier tick says
nothing about the state. Every other step takes the measured dt: the cell is continuous-time.

Levels are diagnostic_msgs/DiagnosticStatus's (OK, WARN, ERROR, STALE); statuses are what ~/step_debug
and replay outputs carry per tick.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from liquid_control.core.command import CommandPipeline
from liquid_control.core.errors import StepError
from liquid_control.core.observation import Fault

OK, WARN, ERROR, STALE = 0, 1, 2, 3  # diagnostic_msgs/DiagnosticStatus levels
STEPPED, SAFE_FAULT, SAFE_STOP, SAFE_POLICY = 0, 1, 2, 3  # what a tick did
STATUS_NAMES = {STEPPED: "stepped", SAFE_FAULT: "safe: sensor fault", SAFE_STOP: "safe: stopped",
                SAFE_POLICY: "safe: policy failed"}


class StepPolicy(Protocol):
    """What the law needs of a policy (core.policy.Policy, or any object stepping the same way)."""

    def reset(self) -> None: ...
    def step(self, obs: np.ndarray, dt: float) -> np.ndarray: ...


def max_dt(period: float, sensor_timeout: float) -> float:
    """The longest dt taken as a step; a longer one is a gap (rule 1)."""
    return max(sensor_timeout, 5.0 * period)


@dataclass(slots=True)
class Tick:
    """What one tick did. `command` is the pipeline's output buffer: publish or copy it before the next tick."""

    command: np.ndarray
    status: int
    level: int
    reason: str  # empty when stepped
    dt: float  # what the policy stepped by (nan when it did not step)
    action: np.ndarray | None  # the policy's output, when it stepped
    fault: Fault | None = None  # the sensor fault (SAFE_FAULT)
    fresh: bool = False  # the tick began with a zeroed hidden state (a step from it steps one period)
    restarted: bool = False  # rule 1 applied at this tick
    resumed: bool = False  # the first good tick after a safe one

    @property
    def safe(self) -> bool:
        return self.status != STEPPED


class ControlLaw:
    """The safety rules around one policy and one command pipeline. One caller at a time (the loop)."""

    def __init__(self, policy: StepPolicy, pipeline: CommandPipeline, period: float, sensor_timeout: float,
                 obs_size: int):
        if not (period > 0.0 and math.isfinite(period)):
            raise ValueError(f"period must be a finite time > 0 s, got {period!r}")
        self.policy, self.pipeline = policy, pipeline
        self.period = float(period)
        self.max_dt = max_dt(self.period, sensor_timeout)
        self.obs = np.zeros(obs_size, np.float32)  # the policy steps in float32; the last tick's observation
        self.reset()

    # --- lifecycle -------------------------------------------------------------------------------
    def reset(self) -> None:
        """Activation: zero the hidden state, forget the command history (soft start from the safe value)."""
        self.policy.reset()
        self.pipeline.reset()
        self._fresh = True
        self._safe = False  # the previous tick was a safe one: the next good tick restarts the soft start
        self._restart_soft_start = False

    def restart(self) -> None:
        """~/reset, a new sim epoch: zero the hidden state and fade the next commands in again."""
        self.policy.reset()
        self._fresh = True
        self._restart_soft_start = True

    def stop(self) -> np.ndarray:
        """Deactivate, shutdown, a dead loop: the spec's safe value."""
        return self.pipeline.stop()

    def fail(self) -> np.ndarray:
        """An internal error in the tick: stop (never hold), and start from scratch when it works again."""
        self.policy.reset()
        self._fresh = True
        self._safe = True
        return self.pipeline.stop()

    # --- the tick --------------------------------------------------------------------------------
    def update(self, now: float, dt: float, obs: np.ndarray, fault: Fault | None, stop: str | None = None) -> Tick:
        """One tick at time `now`, `dt` seconds after the previous one. `obs`/`fault`: the assembler's
        vector and fault at `now`; `stop`: why the robot must be held stopped (e-stop, disabled), or None."""
        restarted = not dt <= self.max_dt  # also a NaN dt
        if restarted:
            self.policy.reset()
            self._fresh = True
            self._restart_soft_start = True
        fresh = self._fresh
        if stop is not None:
            return self._safe_tick(SAFE_STOP, WARN, stop, None, fresh, restarted)
        if fault is not None:
            return self._safe_tick(SAFE_FAULT, ERROR if fault.kind == "invalid" else STALE, str(fault), fault,
                                   fresh, restarted)
        resumed = self._safe
        if resumed or self._restart_soft_start:
            self.pipeline.restart()
        self._safe = self._restart_soft_start = False
        step_dt = self.period if fresh else dt
        np.copyto(self.obs, obs)  # float64 -> float32: a value beyond float32's range becomes inf, refused below
        try:
            action = self.policy.step(self.obs, step_dt)
        except StepError as exc:
            return self._safe_tick(SAFE_POLICY, ERROR, f"policy step failed: {exc}", None, fresh, restarted)
        self._fresh = False
        command, good = self.pipeline.apply(action, step_dt)
        if not good:
            return self._safe_tick(SAFE_POLICY, ERROR, "policy output is not finite", None, fresh, restarted, action)
        return Tick(command, STEPPED, OK, "", step_dt, action, None, fresh, restarted, resumed)

    def _safe_tick(self, status: int, level: int, reason: str, fault: Fault | None, fresh: bool, restarted: bool,
                   action: np.ndarray | None = None) -> Tick:
        command = self.pipeline.stop() if status == SAFE_STOP else self.pipeline.safe()
        if not self._fresh:  # the state has seen bad or no data: start from zero when good data returns
            self.policy.reset()
            self._fresh = True
        self._safe = True
        return Tick(command, status, level, reason, math.nan, action, fault, fresh, restarted, False)


class EStop:
    """The e-stop input: std_msgs/Bool messages (true = engaged), optionally a heartbeat.

    `required`: engaged until the first message says false. `timeout` > 0: the source must keep
    publishing; silence longer than that counts as engaged, and so does a source never heard. Times are
    seconds on the caller's clock (the node: monotonic wall time, since the e-stop is a physical device;
    replay: bag time).
    """

    def __init__(self, required: bool = False, timeout: float = 0.0):
        self.engaged = bool(required)
        self.heard = False
        self.timeout = float(timeout)
        self.last = -math.inf  # time of the last message: a heartbeat source is silent until first heard
        self.silent = False

    @property
    def active(self) -> bool:
        """Whether check() can return anything but None (skip it otherwise: the common case)."""
        return self.engaged or self.timeout > 0.0

    def message(self, engaged: bool, t: float) -> str | None:
        """A message at time t; a line to log when it changes the state."""
        self.last = t
        changed = bool(engaged) != self.engaged
        self.engaged, self.heard = bool(engaged), True
        if not changed:
            return None
        return "e-stop ENGAGED: safe command" if engaged else "e-stop released"

    def check(self, t: float) -> tuple[str | None, str | None]:
        """(why the e-stop holds the robot at time t, or None; a line to log when the heartbeat state changed)."""
        if self.engaged:
            return ("e-stop engaged" if self.heard else
                    "e-stop engaged (estop_required: no e-stop message received yet)"), None
        if self.timeout <= 0.0:
            return None, None
        silent_for = t - self.last
        silent = silent_for > self.timeout
        note = None
        if silent != self.silent:
            self.silent = silent
            if silent and not self.heard:
                note = "estop_timeout: safe command until the e-stop source is heard"
            elif silent:
                note = (f"e-stop source silent for {silent_for:.2f} s (estop_timeout {self.timeout:g} s): "
                        "safe command until it is heard again")
            else:
                note = "e-stop source heard: within estop_timeout again"
        if not silent:
            return None, note
        if not self.heard:  # a source dead at boot must not let the robot move
            return f"e-stop source not heard yet (estop_timeout {self.timeout:g} s)", note
        return f"e-stop source silent for {silent_for:.2f} s (estop_timeout {self.timeout:g} s)", note
