"""Synthetic rosbag2 bags of a cart-pole under a controller, for tests and benchmarks.

A small cart-pole (frictionless cart, point-mass pole) is integrated at the joint-state rate with a
state-feedback controller that runs at the command rate and tracks a slow cart reference, so the
joints keep moving. The bag holds what `ros2 bag record` would have captured on a robot:

  /joint_states                 sensor_msgs/msg/JointState (slider, hinge), header stamp = sample time,
                                log time = stamp + a small deterministic latency
  /effort_controller/commands   std_msgs/msg/Float64MultiArray, the controller's effort command

`rmw_padding=True` publishes JointState with an empty effort array and appends the 4 uninitialised
bytes that rmw_fastrtps leaves after such a message (what rclpy and `ros2 bag record` produce).
Everything is deterministic for a given seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from liquid_control.bags.io import BAG_COMMAND_QOS, BAG_SENSOR_QOS, BagWriter, distro_typestore
from liquid_control.bags.versions import BAG_FIELD_SINCE

JOINTS = ("slider", "hinge")
START_NS = 1_700_000_000_000_000_000
_PAD = b"\x5a\xa5\x7f\x01"  # stands in for uninitialised memory: not zeros on purpose


@dataclass(frozen=True)
class SynthBag:
    path: Path
    joint_messages: int
    command_messages: int
    start_ns: int
    duration: float


def simulate_cartpole(duration: float, rate_hz: float, command_rate_hz: float, seed: int = 0
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Joint sample times (s), positions (n,2), velocities (n,2); command times and values (m,)."""
    rng = np.random.default_rng(seed)
    n = int(round(duration * rate_hz))
    dt = 1.0 / rate_hz
    per_cmd = max(1, int(round(rate_hz / command_rate_hz)))
    m_cart, m_pole, length, g = 1.0, 0.1, 0.6, 9.81
    k = np.array([1.0, 25.0, 1.6, 4.0])  # state feedback on (x - ref, theta, x_dot, theta_dot)
    x, th, xd, thd = 0.0, 0.05, 0.0, 0.0
    pos, vel = np.empty((n, 2)), np.empty((n, 2))
    cmd_t, cmd_v = [], []
    u = 0.0
    for i in range(n):
        t = i * dt
        if i % per_cmd == 0:
            ref = 0.3 * np.sin(2 * np.pi * 0.2 * t)
            u = float(np.clip(k @ np.array([x - ref, th, xd, thd]) + rng.normal(0.0, 0.05), -3.0, 3.0))
            cmd_t.append(t)
            cmd_v.append(u)
        pos[i], vel[i] = (x, th), (xd, thd)
        # Cart-pole with the pole angle measured from upright (positive tips towards +x).
        s, c = np.sin(th), np.cos(th)
        tmp = (u + m_pole * length * thd * thd * s) / (m_cart + m_pole)
        thdd = (g * s - c * tmp) / (length * (4.0 / 3.0 - m_pole * c * c / (m_cart + m_pole)))
        xdd = tmp - m_pole * length * thdd * c / (m_cart + m_pole)
        xd += xdd * dt
        thd += thdd * dt
        x += xd * dt
        th += thd * dt
    return np.arange(n) * dt, pos, vel, np.column_stack([cmd_t, cmd_v])


def write_cartpole_bag(path: str | Path, *, duration: float = 10.0, rate_hz: float = 500.0,
                       command_rate_hz: float = 25.0, storage: str = "mcap", seed: int = 0,
                       commands: bool = True, rmw_padding: bool = False, start_ns: int = START_NS,
                       joint_topic: str = "/joint_states", command_topic: str = "/effort_controller/commands",
                       latency_ns: int = 200_000, bag_version: int | str | None = None) -> SynthBag:
    """Write a cart-pole bag; streams (one message in memory at a time), so 10-minute bags are fine.
    `bag_version`: rosbag2 metadata version (bags/versions.py; None: the default)."""
    ts = distro_typestore("kilted")
    JointState = ts.types["sensor_msgs/msg/JointState"]
    Header, Time = ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]
    F64, Layout = ts.types["std_msgs/msg/Float64MultiArray"], ts.types["std_msgs/msg/MultiArrayLayout"]
    rng = np.random.default_rng(seed + 1)
    t, pos, vel, cmds = simulate_cartpole(duration, rate_hz, command_rate_hz, seed)
    jitter = rng.integers(0, latency_ns // 2 + 1, size=len(t))
    names = list(JOINTS)
    no_effort = np.zeros(0)
    with BagWriter(path, storage=storage, typestore=ts, version=bag_version) as bag:
        bag.add_topic(joint_topic, "sensor_msgs/msg/JointState", qos=(BAG_SENSOR_QOS,))
        if commands:
            bag.add_topic(command_topic, "std_msgs/msg/Float64MultiArray", qos=(BAG_COMMAND_QOS,))
        ci = 0
        for i in range(len(t)):
            stamp = start_ns + int(round(t[i] * 1e9))
            log = stamp + latency_ns + int(jitter[i])
            # Commands computed at this sample's time were received just before this joint state.
            while commands and ci < len(cmds) and cmds[ci, 0] <= t[i]:
                c_ns = start_ns + int(round(cmds[ci, 0] * 1e9)) + latency_ns // 2
                bag.write_msg(command_topic, c_ns, F64(layout=Layout(dim=[], data_offset=0),
                                                      data=np.array([cmds[ci, 1]])))
                ci += 1
            effort = no_effort if rmw_padding else np.array([cmds[ci - 1, 1] if ci else 0.0, 0.0])
            msg = JointState(header=Header(stamp=Time(sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id=""),
                             name=names, position=pos[i].copy(), velocity=vel[i].copy(), effort=effort)
            data = bytes(ts.serialize_cdr(msg, "sensor_msgs/msg/JointState"))
            bag.write(joint_topic, log, data + _PAD if rmw_padding else data)
        if bag.version >= BAG_FIELD_SINCE["custom_data"]:  # provenance note; older versions have no place for it
            bag.set_custom_data("liquid_control.synth", f"cartpole seed={seed} rate_hz={rate_hz:g}")
    return SynthBag(Path(path), len(t), ci, start_ns, duration)
