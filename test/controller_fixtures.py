"""Shared pieces of the controller node tests: test artifacts, message builders, debug-record parsing."""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from liquid_control.core.spec import RobotSpec, load_spec

SPEC: RobotSpec = load_spec("cartpole")
JOINTS = ("slider", "hinge")
COMMAND_TOPIC = SPEC.action.topic


def make_artifact(path: Path, spec: RobotSpec = SPEC, seed: int = 0, units: int = 16,
                  overflow: bool = False) -> Path:
    """A CfC artifact with random weights for `spec`. `overflow`: a readout so large that every action
    overflows float32 to +-inf (a policy whose output is never finite)."""
    from liquid_control.core.artifact import write_artifact
    from liquid_control.core.random_params import cfc_cfg, random_params

    cfg = cfc_cfg(spec.obs_size, units, spec.action_size, proj=True)
    params = random_params(cfg, seed)
    if overflow:  # ff1 = ff2 = tanh(100) = 1, so every state unit is 1 and the readout sums to > 3.4e38
        params["cfc0.heads.W"][: 2 * units] = 0.0
        params["cfc0.heads.b"][: 2 * units] = 100.0
        params["proj.W"] = np.full_like(params["proj.W"], 3e38)
        params["proj.b"] = np.full_like(params["proj.b"], 3e38)
    return write_artifact(path, cfg, params, spec=spec)


def joint_state(position: Any, velocity: Any, names: tuple[str, ...] = JOINTS, stamp_ns: int | None = None):
    from sensor_msgs.msg import JointState

    msg = JointState()
    msg.name = list(names)
    msg.position = [float(x) for x in position]
    msg.velocity = [float(x) for x in velocity]
    if stamp_ns is not None:
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return msg


@dataclass
class Record:
    """One ~/step_debug tick."""

    seq: int
    time: float
    dt: float
    lateness: float
    step_s: float
    sensor_age: float
    sensor_stamp: float
    publish_wall: float
    status: int
    fresh: bool
    obs: np.ndarray
    action: np.ndarray
    command: np.ndarray


def parse_debug(msg: Any, spec: RobotSpec = SPEC) -> Record:
    from liquid_control.ros.controller.step_debug import DEBUG_FIELDS

    d = np.asarray(msg.data, dtype=np.float64)
    k, n, a = len(DEBUG_FIELDS), spec.obs_size, spec.action_size
    head = dict(zip(DEBUG_FIELDS, d[:k]))
    return Record(seq=int(head["seq"]), time=head["time"], dt=head["dt"], lateness=head["lateness"],
                  step_s=head["step_s"], sensor_age=head["sensor_age"], sensor_stamp=head["sensor_stamp"],
                  publish_wall=head["publish_wall"], status=int(head["status"]), fresh=bool(head["fresh"]),
                  obs=d[k:k + n], action=d[k + n:k + n + a], command=d[k + n + a:])


def diag_values(array_msg: Any) -> tuple[int, str, dict[str, str]]:
    """(level, message, key/values) of the controller's status in a DiagnosticArray."""
    status = next(s for s in array_msg.status if "liquid_controller" in s.name)
    level = status.level[0] if isinstance(status.level, (bytes, bytearray)) else int(status.level)
    return level, status.message, {kv.key: kv.value for kv in status.values}


class Streamer:
    """Publishes JointState at 200 Hz in a chosen mode; remembers when each mode's first message went out."""

    MODES = ("good", "reversed", "nan", "inf", "short", "missing", "silent")

    def __init__(self, probe: Any, rate: float = 200.0):
        from sensor_msgs.msg import JointState

        self.pub = probe.publisher(JointState, "joint_states", 10)  # reliable: the node's best effort matches
        self.mode, self.rate, self.k = "silent", rate, 0
        self.first_sent: dict[str, float] = {}
        self.sent: list[np.ndarray] = []  # the good observations sent, in spec order (pos, vel)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def set(self, mode: str) -> None:
        assert mode in self.MODES
        self.first_sent.pop(mode, None)
        self.mode = mode

    def wait_sent(self, mode: str, timeout: float = 5.0) -> float:
        deadline = time.monotonic() + timeout
        while mode not in self.first_sent:
            assert time.monotonic() < deadline, f"streamer never sent a {mode} message"
            time.sleep(0.002)
        return self.first_sent[mode]

    def _run(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            mode = self.mode
            self.k += 1
            x = 0.5 * math.sin(self.k * 0.05)
            pos, vel = [x, -0.3 * x + 0.1], [0.2 * x, 0.05 + x]
            names = JOINTS
            if mode == "reversed":
                names, pos, vel = JOINTS[::-1], pos[::-1], vel[::-1]
            elif mode == "nan":
                pos[1] = float("nan")
            elif mode == "inf":
                vel[0] = float("inf")
            elif mode == "short":
                pos = pos[:1]
            elif mode == "missing":
                names, pos, vel = ("slider", "elbow"), pos, vel
            if mode != "silent":
                if mode in ("good", "reversed"):
                    self.sent.append(np.array([x, -0.3 * x + 0.1, 0.2 * x, 0.05 + x]))
                self.pub.publish(joint_state(pos, vel, names, stamp_ns=time.time_ns()))
                self.first_sent.setdefault(mode, time.monotonic())
            next_t += 1.0 / self.rate
            time.sleep(max(0.0, next_t - time.monotonic()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
