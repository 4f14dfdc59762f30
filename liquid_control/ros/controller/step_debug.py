"""~/step_debug: one Float64MultiArray per tick, for tests, the demo's plots and whoever debugs a robot.

Its data are DEBUG_FIELDS, then the observation, the action and the command; the layout's one dimension
carries every label, comma-separated.
  time: loop clock (monotonic or sim) s; dt: what the policy stepped by (core.control: the measured time
  since the previous tick, one period from a zeroed state) or, on a safe tick, the measured dt;
  lateness: past the deadline, s; step_s: the control law's update, s; sensor_age: time since the newest
  sensor message was received (loop clock); sensor_stamp: header stamp of the newest stamped sensor
  message (the sender's clock); publish_wall: system time at publish; status: core.control's STEPPED /
  SAFE_*; fresh: the step started from a zeroed hidden state.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

DEBUG_FIELDS = ("seq", "time", "dt", "lateness", "step_s", "sensor_age", "sensor_stamp", "publish_wall",
                "status", "fresh")


class StepDebug:
    """Builds and publishes the per-tick record on a publisher the node created."""

    def __init__(self, publisher: Any, obs_labels: list[str], action_names: tuple[str, ...]):
        from std_msgs.msg import Float64MultiArray, MultiArrayDimension

        labels = list(DEBUG_FIELDS) + [f"obs.{x}" for x in obs_labels] + \
            [f"action.{a}" for a in action_names] + [f"command.{a}" for a in action_names]
        self._pub = publisher
        self._msg = Float64MultiArray()
        self._msg.layout.dim = [MultiArrayDimension(label=",".join(labels), size=len(labels), stride=len(labels))]
        self._k, self._n, self._a = len(DEBUG_FIELDS), len(obs_labels), len(action_names)
        self.buf = np.zeros(len(labels))

    def publish(self, fields: tuple[float, ...], obs: np.ndarray, action: np.ndarray | None,
                command: np.ndarray) -> None:
        b, k, n, a = self.buf, self._k, self._n, self._a
        b[:k] = fields
        b[k:k + n] = obs
        b[k + n:k + n + a] = math.nan if action is None else action
        b[k + n + a:] = command
        self._msg.data = b.tolist()
        self._pub.publish(self._msg)
