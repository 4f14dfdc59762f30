"""Assemble the policy's observation vector from ROS messages, as the robot spec lays it out.

The same code serves the controller node (rclpy messages; for JointState, the fields core.cdr reads
from the raw bytes) and the bag tools (rosbags-deserialised messages): all expose the ROS field names
as attributes, so nothing here imports a ROS library.

A message is decoded whole or not at all: a bad one (non-finite value, wrong array length, missing
joint) marks its topic faulted and leaves the last good values untouched, so the vector never
mixes old and half-decoded data. A JointState naming none of the spec's joints on that topic is
ignored rather than a fault: robots often publish /joint_states from several drivers (arm, gripper),
and only a message that names some but not all of our joints is wrong. Freshness is judged by the time the message was *received*
(the caller's clock: node time, or bag time on replay), not by its header stamp, which may come
from another machine's clock; a topic is stale after its entries' `timeout`, else the robot's
safety.sensor_timeout.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import cos, isfinite, sin
from typing import Any

import numpy as np

from liquid_control.core.spec import FLOAT64_ARRAY, JOINT_STATE, SINCOS, ObsEntry, RobotSpec


@dataclass(frozen=True)
class Fault:
    """Why the observation cannot be trusted right now."""

    kind: str  # "missing" (never received), "stale" (too old), "invalid" (last message was bad)
    topic: str
    reason: str

    def __str__(self) -> str:
        return f"{self.topic}: {self.reason}"


class _BadMessage(Exception):
    pass


class _Block:
    """One spec entry's slot in the vector, with what is needed to decode it fast."""

    def __init__(self, entry: ObsEntry, start: int):
        self.entry = entry
        self.slot = slice(start, start + entry.size)
        self.scale = np.asarray(entry.scale, dtype=np.float64)
        self.offset = np.asarray(entry.offset, dtype=np.float64)
        self.attr_path = entry.field.split(".")
        self.index = np.asarray([int(n) for n in entry.names]) if entry.msg_type == FLOAT64_ARRAY else None
        self.sincos = entry.encode == SINCOS
        self.clip = entry.clip  # (low, high) per name, on the raw value (a saturating sensor), or None
        # JointState name order can change between publishers; cache the lookup per name tuple.
        self._joint_index: dict[tuple[str, ...], np.ndarray] = {}

    def decode(self, msg: Any, out: np.ndarray, names: tuple[str, ...] | None) -> None:
        """Decode this entry of `msg` into `out`. `names`: a JointState's names, read once per message by the
        caller for all the topic's entries (the name getter builds a list each call); None for other types."""
        e = self.entry
        if e.msg_type == JOINT_STATE:
            values = getattr(msg, e.field)
            if len(values) != len(names):
                if len(values) == 0:
                    raise _BadMessage(f"JointState.{e.field} is empty")
                raise _BadMessage(f"JointState.{e.field} has {len(values)} values for {len(names)} names")
            idx = self._joint_index.get(names)
            if idx is None:
                missing = [j for j in e.names if j not in names]
                if missing:
                    raise _BadMessage(f"joint {missing[0]!r} missing from JointState (has {list(names)})")
                if len(self._joint_index) > 32:  # a publisher that shuffles names every message
                    self._joint_index.clear()
                idx = self._joint_index[names] = [names.index(j) for j in e.names]
            # A few joints: picking Python floats costs less than building an ndarray and fancy-indexing it.
            raw = [float(values[i]) for i in idx]
            if not all(map(isfinite, raw)):
                bad = e.names[next(k for k, v in enumerate(raw) if not isfinite(v))]
                raise _BadMessage(f"non-finite value in {e.msg_type.split('/')[-1]}.{e.field}[{bad}]")
            if self.clip is not None:
                raw = [min(max(r, lo), hi) for r, lo, hi in zip(raw, *self.clip)]
            if self.sincos:
                angles = [(r - o) * s for r, o, s in zip(raw, e.offset, e.scale)]
                out[:] = [cos(a) for a in angles] + [sin(a) for a in angles]
                return
            out[:] = raw
            out -= self.offset
            out *= self.scale
            return
        if self.index is not None:
            data = msg.data
            if len(data) <= self.index.max():
                raise _BadMessage(f"Float64MultiArray has {len(data)} values, index {int(self.index.max())} needed")
            raw = np.asarray(data, dtype=np.float64)[self.index]
        else:
            obj = msg
            for part in self.attr_path:
                obj = getattr(obj, part)
            raw = np.fromiter((getattr(obj, a) for a in e.names), dtype=np.float64, count=e.size)
        if not np.isfinite(raw).all():
            bad = e.names[int(np.argmin(np.isfinite(raw)))]
            raise _BadMessage(f"non-finite value in {e.msg_type.split('/')[-1]}.{e.field}[{bad}]")
        if self.clip is not None:
            raw = np.clip(raw, *self.clip)
        np.subtract(raw, self.offset, out=out)
        out *= self.scale


class ObservationAssembler:
    """Keeps the latest good value of every spec entry and hands out the assembled vector."""

    def __init__(self, spec: RobotSpec, sensor_timeout: float | None = None):
        self.spec = spec
        self.sensor_timeout = spec.safety.sensor_timeout if sensor_timeout is None else float(sensor_timeout)
        self._vector = np.zeros(spec.obs_size)
        self._staging = np.zeros(spec.obs_size)
        self._blocks: dict[str, list[_Block]] = {}
        start = 0
        for entry in spec.observation:
            self._blocks.setdefault(entry.topic, []).append(_Block(entry, start))
            start += entry.size
        self.topics: tuple[str, ...] = tuple(self._blocks)
        # How long each topic may stay silent: its entries' own timeout (the spec checks they agree), else
        # the robot's.
        self.timeouts: dict[str, float] = {
            t: next((b.entry.timeout for b in blocks if b.entry.timeout is not None), self.sensor_timeout)
            for t, blocks in self._blocks.items()}
        # Per JointState topic, every joint any of its entries names: a message with none of them is another
        # publisher's (see the module docstring).
        self._joints: dict[str, frozenset[str]] = {
            t: frozenset(n for b in blocks if b.entry.msg_type == JOINT_STATE for n in b.entry.names)
            for t, blocks in self._blocks.items()}
        self.ignored = 0  # JointState messages from other publishers (none of our joints)
        self.msg_types: dict[str, str] = {t: b[0].entry.msg_type for t, b in self._blocks.items()}
        self.reset()

    def reset(self) -> None:
        """Forget everything received: every topic is 'missing' until its next good message."""
        self._vector[:] = 0.0
        self._stamp: dict[str, float | None] = dict.fromkeys(self.topics)
        self._error: dict[str, str | None] = dict.fromkeys(self.topics)

    def update(self, topic: str, msg: Any, stamp: float) -> str | None:
        """Decode `msg` received on `topic` at time `stamp` (seconds). Returns an error string or None.

        Topics the spec does not use, and JointStates naming none of our joints, are ignored (None). A bad message keeps the previous values but
        marks the topic invalid until a good message arrives.
        """
        blocks = self._blocks.get(topic)
        if blocks is None:
            return None
        joints = self._joints[topic]
        names = None
        if joints:
            names = tuple(getattr(msg, "name", ()))  # once per message, for every entry of the topic
            if joints.isdisjoint(names):
                self.ignored += 1
                return None
        try:
            for b in blocks:
                b.decode(msg, self._staging[b.slot], names)
        except _BadMessage as exc:
            self._error[topic] = str(exc)
            return str(exc)
        except (AttributeError, TypeError, ValueError, IndexError) as exc:
            reason = f"message does not fit the spec ({type(exc).__name__}: {exc})"
            self._error[topic] = reason
            return reason
        for b in blocks:
            self._vector[b.slot] = self._staging[b.slot]
        self._stamp[topic] = float(stamp)
        self._error[topic] = None
        return None

    def fault(self, now: float) -> Fault | None:
        """The first reason, in spec order, that the vector cannot be used at time `now`."""
        for topic in self.topics:
            stamp = self._stamp[topic]
            if self._error[topic] is not None:
                return Fault("invalid", topic, self._error[topic])
            if stamp is None:
                return Fault("missing", topic, "no message received yet")
            age, timeout = now - stamp, self.timeouts[topic]
            if age > timeout:
                return Fault("stale", topic, f"last message {age:.3f} s old (timeout {timeout:g} s)")
        return None

    def assemble(self, now: float) -> tuple[np.ndarray, Fault | None]:
        """The observation vector (a view of an internal buffer: copy it to keep it) and any fault."""
        return self._vector, self.fault(now)

    def ages(self, now: float) -> dict[str, float | None]:
        return {t: (None if s is None else max(0.0, now - s)) for t, s in self._stamp.items()}
