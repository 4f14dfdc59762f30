"""The sim bridge node: MuJoCo behind the robot's ROS interface, as the spec describes it.

    ros2 run liquid_control sim_bridge --ros-args -p robot:=cartpole -p mode:=lockstep
    liquid-control sim --robot cartpole --mode lockstep

It publishes each sensor topic of the spec from MuJoCo state (stamped JointState with position, velocity
and effort of the spec's joints; Imu from gyro / accelerometer / framequat sensors; PointStamped goals),
subscribes to the command topic (Float64MultiArray, JointState efforts or Twist, decoded by
liquid_control.ros.messages) and applies it to the actuators. The values come from the same readers as
the Gymnasium env's observation (liquid_control.sim.observe), so a controller assembling its vector
from these messages sees exactly what the policy saw in training.

Clocks:
  realtime  steps MuJoCo one period per tick, paced by the wall clock against absolute deadlines;
            messages are stamped with the node's clock.
  lockstep  publishes /clock. Each tick: publish the sensors and then /clock (t), wait for the command
            that answers it, apply it, advance one period. Until the first command arrives the clock
            runs (short waits) but the physics is frozen ("pre-roll"), so the controller starting late
            changes nothing: the run is a deterministic function of the seed and the commands. A command
            that does not come within lockstep_timeout (wall seconds) is counted and the last one held.

Bad commands (wrong size, non-finite, a JointState lacking an actuator) are ignored with a throttled
warning and the last valid command is held, as a motor driver would; MuJoCo never sees a NaN.
Services: ~/reset (std_srvs/Trigger) draws a new initial state from the task (time keeps running).
Disturbances: push_period > 0 pushes push_body with +-push_force newtons along x for one period.
Recording: record:=PATH writes a rosbag2 (MCAP) of the sensor messages, the commands received and /clock,
logged at sim time (lockstep) or the node's clock (realtime).
"""
from __future__ import annotations

import array
import gc
import json
import math
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message

from liquid_control.core.errors import LiquidControlError, SpecError
from liquid_control.core.spec import FLOAT64_ARRAY, IMU, JOINT_STATE, POINT_STAMPED, RobotSpec, load_spec
from liquid_control.ros.messages import (ClockCdr, Float64ArrayCdr, JointStateCdr, decode_command, message_class,
                                         set_stamp)
from liquid_control.ros.params import accept_ints_for_doubles
from liquid_control.ros.qos import COMMAND_SUB_QOS

NODE_NAME = "sim_bridge"
MODES = ("realtime", "lockstep")
PREROLL_WAIT_S = 0.02  # wall wait per pre-roll tick, before the controller's first command
SPIN_EVERY_S = 0.1  # lockstep: wall seconds between executor spins (reset service, graph events)

# Reliable publishers match both reliable and best-effort subscribers (the controller's are best effort);
# depth 10 so that a recorder sees every sample.
SENSOR_PUB_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.VOLATILE)
CLOCK_QOS = SENSOR_PUB_QOS


@dataclass
class BridgeStats:
    sim_time: float = 0.0  # physics seconds simulated
    wall_time: float = 0.0  # from the first tick (lockstep: the first answered one) to the end
    startup_wait: float = 0.0  # lockstep: wall seconds before that (the controller appearing, pre-roll)
    ticks: int = 0
    preroll_ticks: int = 0
    commands: int = 0
    commands_ignored: int = 0
    command_timeouts: int = 0
    overruns: int = 0  # realtime: ticks that came a whole period late
    pushes: int = 0
    resets: int = 0
    answer_wait: float = 0.0  # lockstep: wall seconds spent waiting for commands (the controller's share)
    trace: dict[str, list[float]] = field(default_factory=dict)

    @property
    def real_time_factor(self) -> float:
        return self.sim_time / self.wall_time if self.wall_time > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "trace"}
        out["real_time_factor"] = self.real_time_factor
        return out


class _TraceRecorder:
    """The state trace of a run (sim time, stamp, qpos, qvel, command per published state), kept in flat
    typed arrays while it runs: appending copies a few bytes, and the collector never walks them (lists of
    per-tick lists cost a list each per tick, and gen-2 passes that grow with the run)."""

    def __init__(self) -> None:
        self.t, self.stamp_ns = array.array("d"), array.array("q")
        self.rows = {"qpos": array.array("d"), "qvel": array.array("d"), "command": array.array("d")}
        self._qpos, self._qvel, self._command = self.rows.values()

    def add(self, t: float, stamp_ns: int, qpos: np.ndarray, qvel: np.ndarray, command: np.ndarray) -> None:
        self.t.append(t)
        self.stamp_ns.append(stamp_ns)
        self._qpos.frombytes(qpos.tobytes())
        self._qvel.frombytes(qvel.tobytes())
        self._command.frombytes(command.tobytes())

    def as_dict(self) -> dict[str, list]:
        """{"t": [...], "stamp_ns": [...], "qpos": [[...], ...], "qvel": ..., "command": ...}; {} if empty."""
        n = len(self.t)
        if n == 0:
            return {}
        out: dict[str, list] = {"t": self.t.tolist(), "stamp_ns": self.stamp_ns.tolist()}
        for name, flat in self.rows.items():
            out[name] = np.frombuffer(flat, dtype=np.float64).reshape(n, len(flat) // n).tolist()
        return out


class _MessageFiller:
    """Fills one reusable message of a topic's type from a TopicReader's values."""

    def __init__(self, reader, spec: RobotSpec):
        self.reader = reader
        self.msg_class = message_class(reader.msg_type)
        self.msg = self.msg_class()
        t = reader.msg_type
        if t == JOINT_STATE:
            self.msg.name = list(reader.joints)
            self._cdr = JointStateCdr(reader.joints)
        elif t == IMU:
            self.msg.header.frame_id = str(spec.sim.get("imu_frame", "imu"))
            # REP 145 / sensor_msgs: covariance[0] = -1 marks a field the IMU does not provide.
            for fld, cov in (("orientation", "orientation_covariance"),
                             ("angular_velocity", "angular_velocity_covariance"),
                             ("linear_acceleration", "linear_acceleration_covariance")):
                if fld not in reader.fields:
                    c = getattr(self.msg, cov)
                    c[0] = -1.0
        elif t == POINT_STAMPED:
            self.msg.header.frame_id = str(spec.sim.get("world_frame", "world"))
        self.msg_type = t
        self._stamp = self.msg.header.stamp if hasattr(self.msg, "header") else None  # the message's own field
        self._last: Any = None  # what publishable() returned last

    _cdr: JointStateCdr | None = None  # a JointState's fixed layout, packed directly

    def publishable(self, stamp_ns: int) -> Any:
        """What to hand to Publisher.publish: the serialized message for a JointState (packed in place, no
        message object converted by rclpy), else the filled message."""
        if self._cdr is not None:
            values = self.reader.read()
            self._last = self._cdr.encode(stamp_ns, values["position"], values["velocity"], values["effort"])
        else:
            self._last = self.fill(stamp_ns)
        return self._last

    def serialized(self) -> bytes:
        """The bytes of what publishable() returned last (for the bag)."""
        return self._last if isinstance(self._last, bytes) else serialize_message(self._last)

    def fill(self, stamp_ns: int) -> Any:
        values = self.reader.read()
        msg = self.msg
        if self._stamp is not None:
            set_stamp(self._stamp, stamp_ns)
        if self.msg_type == JOINT_STATE:
            msg.position = values["position"].tolist()
            msg.velocity = values["velocity"].tolist()
            msg.effort = values["effort"].tolist()
            return msg
        if self.msg_type == "std_msgs/msg/Float64MultiArray":
            msg.data = values["data"].tolist()
            return msg
        for fld, vals in values.items():
            obj = msg
            for part in fld.split("."):
                obj = getattr(obj, part)
            axes = ("x", "y", "z", "w") if fld == "orientation" else ("x", "y", "z")
            for axis, v in zip(axes, vals.tolist()):
                setattr(obj, axis, v)
        return msg


class _SubscriptionWaiter:
    """Waits on one subscription with a wait set made once, and takes its message (rclpy's own calls)."""

    def __init__(self, node: Node, sub: Any):
        from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

        # The properties read once: each is a Python call per tick otherwise.
        self.handle, self.msg_type, self.raw = sub.handle, sub.msg_type, sub.raw
        self.context_handle = node.context.handle
        with self.context_handle:
            self.wait_set = _rclpy.WaitSet(1, 0, 0, 0, 0, 0, self.context_handle)

    def wait_take(self, timeout: float) -> Any:
        """The next message, or None after `timeout` seconds without one. (No take before the wait: in
        lockstep the answer is hardly ever there yet, and the wait returns at once when it is.)"""
        handle, wait_set = self.handle, self.wait_set
        with handle, self.context_handle:
            wait_set.clear_entities()
            wait_set.add_subscription(handle)
            wait_set.wait(int(timeout * 1e9))
            info = handle.take_message(self.msg_type, self.raw)
        return None if info is None else info[0]


class SimBridge(Node):
    """MuJoCo + the spec's topics. run(executor) blocks until the duration is over or stop is set."""

    def __init__(self, **kwargs: Any):
        super().__init__(NODE_NAME, **kwargs)
        accept_ints_for_doubles(self, ("rate_hz", "timestep", "duration", "lockstep_timeout", "push_period",
                                       "push_force", "wait_for_controller", "video_fps"))
        p = self.declare_parameter
        p("robot", "cartpole")
        p("mode", "realtime")
        p("rate_hz", 0.0)  # 0: lockstep the spec's control rate, realtime its sim.sensor_rate_hz
        p("timestep", 0.0)  # 0: the MJCF's, or the largest that divides the period
        p("seed", 0)
        p("duration", 0.0)  # sim seconds (realtime: paced to wall seconds); 0: until stopped
        p("lockstep_timeout", 2.0)
        p("push_period", 0.0)
        p("push_force", 0.0)  # N; 0: the spec's sim.push_force
        p("push_body", "")
        p("wait_for_controller", 10.0)  # lockstep: wall seconds to wait for the command publisher
        p("summary", "")  # path: write a JSON summary (and state trace) when the run ends
        p("record", "")  # path: a rosbag2 (MCAP) directory to write
        p("bag_version", 8)  # rosbag2 metadata version of `record` (bags/versions.py: 8 opens in Humble to Kilted)
        p("video", "")  # path: .gif or .mp4 of the run (offscreen rendering: liquid_control.sim.gl picks the GL backend)
        p("video_fps", 25.0)
        g = lambda name: self.get_parameter(name).value  # noqa: E731

        self.mode = str(g("mode"))
        if self.mode not in MODES:
            raise LiquidControlError(f"mode must be one of {MODES}, got {self.mode!r}")
        from liquid_control.sim.env import SpecEnv
        from liquid_control.sim.observe import TopicReader

        self.spec = load_spec(str(g("robot")))
        # Lockstep advances one control period per command. Realtime steps at the sensor rate
        # (sim.sensor_rate_hz, default the control rate): a controller sampling asynchronously then sees fresh
        # sensors and its command acts within one sensor period, as on a robot whose drivers outpace it.
        sensor_rate = float(self.spec.sim.get("sensor_rate_hz", self.spec.rate_hz))
        rate = float(g("rate_hz")) or (self.spec.rate_hz if self.mode == "lockstep" else sensor_rate)
        if not 1.0 <= rate <= 10000.0:
            raise LiquidControlError(f"rate_hz must lie in 1..10000, got {rate}")
        self.period_ns = int(round(1e9 / rate))
        self.period = self.period_ns * 1e-9
        timestep = float(g("timestep")) or None
        self.env = SpecEnv(self.spec, timestep=timestep)
        n = self.period / self.env.timestep
        if timestep is None and abs(n - round(n)) > 1e-6:
            # The MJCF's step does not divide the period: the largest step that does and is no coarser.
            self.env = SpecEnv(self.spec, timestep=self.period / math.ceil(n - 1e-6))
            n = self.period / self.env.timestep
        if abs(n - round(n)) > 1e-6 or round(n) < 1:
            raise LiquidControlError(f"the period {self.period:g} s is not a whole number of MuJoCo timesteps "
                                     f"({self.env.timestep:g} s); set timestep")
        self.seed = int(g("seed"))
        self.duration = float(g("duration"))
        self.lockstep_timeout = float(g("lockstep_timeout"))
        self.wait_for_controller = float(g("wait_for_controller"))
        self.summary_path = str(g("summary"))
        self.push_period = float(g("push_period"))
        self.push_force = float(g("push_force")) or float(self.spec.sim.get("push_force", 0.0))
        if self.push_period > 0 and self.push_force == 0:
            self.get_logger().warning("push_period is set but push_force is 0 (and the spec has no "
                                      "sim.push_force): the pushes do nothing")
        self._push_body = -1
        if self.push_period > 0:
            import mujoco

            name = str(g("push_body")) or str(self.spec.sim.get("push_body", ""))
            model = self.env.model
            bid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name) if name else model.nbody - 1
            if bid < 0:
                raise SpecError(f"push_body: the MuJoCo model has no body named {name!r}")
            self._push_body = bid
        self._push_rng = np.random.default_rng([self.seed, 1])
        self._next_push = self.push_period

        import mujoco

        self._mujoco = mujoco
        self.readers = [TopicReader(self.env.model, self.env.data, self.spec, t) for t in self.spec.topics]
        self._needs_forward = any(r.needs_forward for r in self.readers)
        self._needs_kinematics = any(r.needs_kinematics for r in self.readers)
        self.fillers = [_MessageFiller(r, self.spec) for r in self.readers]
        self.pubs = [self.create_publisher(f.msg_class, r.topic, SENSOR_PUB_QOS)
                     for f, r in zip(self.fillers, self.readers)]
        self.clock_pub = None
        if self.mode == "lockstep":
            from rosgraph_msgs.msg import Clock

            self._clock_cdr = ClockCdr()  # published as bytes: see liquid_control.ros.messages
            self.clock_pub = self.create_publisher(Clock, "/clock", CLOCK_QOS)
        self.command_class = message_class(self.spec.action.msg_type)
        # Commands are taken serialized (raw): a Float64MultiArray is unpacked from its bytes directly, which
        # spares building three message objects per command; the bag gets the bytes as they came.
        self._float64_command = self.spec.action.msg_type == FLOAT64_ARRAY
        self._command_sub = self.create_subscription(self.command_class, self.spec.action.topic,
                                                     self._on_command, COMMAND_SUB_QOS, raw=True)
        self._waiter = _SubscriptionWaiter(self, self._command_sub)
        self._last_spin = 0.0
        from std_srvs.srv import Trigger

        self.create_service(Trigger, "~/reset", self._on_reset)

        self.stats = BridgeStats()
        self._trace = _TraceRecorder()  # into stats.trace when the run ends
        self._lock = threading.Lock()
        self._bag = None
        self._now_ns = 0  # the time messages are logged at in the bag
        if str(g("record")):
            self._open_bag(Path(str(g("record"))))
        self.video_path = str(g("video"))
        self._frames: list[np.ndarray] = []
        self._renderer = None
        if self.video_path:
            from liquid_control.sim.render import FrameRenderer

            self._renderer = FrameRenderer(self.env.model, width=480, height=360,
                                           camera=self.spec.sim.get("camera"))
            self._frame_every = max(1, int(round(1.0 / (float(g("video_fps")) * self.period))))
        # A command (good or bad) arrived since the last _take_command. Lockstep waits for it on the thread
        # that handles commands (its own), so a plain flag does: no Event to set and clear per tick.
        self._answered = False
        self._zeros_cmd = np.zeros(self.spec.action_size)
        self._pending: np.ndarray | None = None  # newest valid command not yet applied
        self._reset_requested = False
        self._last_warn = -math.inf
        self.stop = threading.Event()
        self.env.reset(seed=self.seed)
        self.get_logger().info(
            f"{self.spec.name}: {self.mode}, {rate:g} Hz ({self.period * 1e3:g} ms, "
            f"{int(round(n))} x {self.env.timestep:g} s), topics {list(self.spec.topics)} -> "
            f"command {self.spec.action.topic} ({self.spec.action.msg_type})")

    def _open_bag(self, path: Path) -> None:
        from liquid_control.bags.io import BAG_SENSOR_QOS, BagWriter

        self._bag = BagWriter(path, version=self.get_parameter("bag_version").value)
        for filler, reader in zip(self.fillers, self.readers):
            self._bag.add_topic(reader.topic, reader.msg_type, qos=(BAG_SENSOR_QOS,))
        self._bag.add_topic(self.spec.action.topic, self.spec.action.msg_type)
        if self.mode == "lockstep":
            self._bag.add_topic("/clock", "rosgraph_msgs/msg/Clock")

    def _bag_write(self, topic: str, data: bytes) -> None:
        """Log one serialized message at the current time."""
        with self._lock:  # the command callback may run on the executor thread (realtime)
            self._bag.write(topic, self._now_ns, data)

    # ------------------------------------------------------------------------------- callbacks
    def _warn(self, text: str) -> None:
        now = time.monotonic()
        if now - self._last_warn >= 5.0:
            self._last_warn = now
            self.get_logger().warning(text)

    def _decode_command(self, data: bytes) -> np.ndarray:
        """A serialized command -> the command vector (SpecError if it does not fit the spec)."""
        if self._float64_command:
            cmd = Float64ArrayCdr.decode(data)
            if cmd is not None and cmd.shape == self._zeros_cmd.shape:
                return cmd
        # Any other type, layout or size: rclpy's deserialization, and decode_command's checks and errors.
        try:
            msg = deserialize_message(data, self.command_class)
        except RuntimeError as exc:  # rclpy's RMWError: bytes that are not a message of this type
            raise SpecError(f"{len(data)} bytes that are not a {self.command_class.__name__} "
                            f"({str(exc).split(':')[0]})") from None
        return decode_command(msg, self.spec.action)

    def _on_command(self, data: bytes) -> None:
        if self._bag is not None:
            self._bag_write(self.spec.action.topic, data)
        try:
            cmd = self._decode_command(data)
            if cmd.dot(self._zeros_cmd) != 0.0:  # NaN exactly when an element is NaN or inf (0 * inf)
                raise SpecError(f"non-finite command {cmd.tolist()}")
        except SpecError as exc:
            with self._lock:
                self.stats.commands_ignored += 1
            self._warn(f"ignored a command ({exc}); holding the last one "
                       f"({self.stats.commands_ignored} ignored so far)")
            self._answered = True  # still an answer: lockstep advances, holding the last good command
            return
        with self._lock:
            self._pending = cmd
            self.stats.commands += 1
            self._answered = True

    def _on_reset(self, request: Any, response: Any) -> Any:
        with self._lock:
            self._reset_requested = True
        response.success, response.message = True, "the simulation resets before the next step"
        return response

    # ------------------------------------------------------------------------------- the loop
    def _take_command(self) -> bool:
        with self._lock:
            cmd, self._pending = self._pending, None
            self._answered = False
            reset, self._reset_requested = self._reset_requested, False
        if reset:
            self.stats.resets += 1
            self.env.reset()
            self.get_logger().info("~/reset: new initial state")
        if cmd is None:
            return False
        self.env.apply_command(cmd)
        return True

    def _advance(self) -> None:
        data = self.env.data
        push = self._push_body >= 0 and self.stats.sim_time >= self._next_push - 1e-9
        if push:  # one period of force along x, random sign
            data.xfrc_applied[self._push_body, 0] = self.push_force * (1 if self._push_rng.random() < 0.5 else -1)
            self._next_push += self.push_period
            self.stats.pushes += 1
        self.stats.sim_time += self.env.advance(self.period)
        if push:
            data.xfrc_applied[self._push_body, :] = 0.0
        self.stats.ticks += 1

    def _publish(self, stamp_ns: int) -> None:
        self._publish_sensors(stamp_ns)
        self._bookkeep()

    def _publish_sensors(self, stamp_ns: int) -> None:
        """Publish each sensor topic for the current MuJoCo state, stamped `stamp_ns`."""
        if self._needs_forward:
            self._mujoco.mj_forward(self.env.model, self.env.data)
        elif self._needs_kinematics:
            self._mujoco.mj_kinematics(self.env.model, self.env.data)
        self._now_ns = stamp_ns
        for filler, pub in zip(self.fillers, self.pubs):
            pub.publish(filler.publishable(stamp_ns))

    def _bookkeep(self) -> None:
        """What the run keeps of the state just published (bag, trace, video frame). The fillers still hold
        what they published. Lockstep does this while the controller computes, off the tick's critical path."""
        if self._bag is not None:
            for filler, reader in zip(self.fillers, self.readers):
                self._bag_write(reader.topic, filler.serialized())
        if self.summary_path:
            self._record()
        if self._renderer is not None and self.stats.ticks % self._frame_every == 0:
            self._frames.append(self._renderer.render(self.env.data))

    def _record(self) -> None:
        data = self.env.data
        self._trace.add(self.stats.sim_time, self._now_ns, data.qpos, data.qvel, self.env.command)

    def run(self, executor: SingleThreadedExecutor) -> BridgeStats:
        """Run until duration or stop. Realtime spins `executor` in a thread; lockstep spins it in this
        thread between ticks (no thread hand-off on the command's path: the round trip is the cost)."""
        self._wall0 = time.monotonic()
        spinner = None
        try:
            if self.mode == "lockstep":
                self._run_lockstep(executor)
            else:
                spinner = threading.Thread(target=_spin, args=(executor, self.stop), daemon=True)
                spinner.start()
                self._run_realtime()
        finally:
            self.stats.wall_time = time.monotonic() - self._wall0
            self.stats.trace = self._trace.as_dict()
            self.stop.set()
            if spinner is not None:
                spinner.join(timeout=2.0)
            if self._bag is not None:
                path = self._bag.close()
                self.get_logger().info(f"recorded {self._bag.count} messages to {path}")
            if self._renderer is not None and self._frames:
                from liquid_control.sim.render import write_video

                fps = 1.0 / (self._frame_every * self.period)
                out = write_video(self._frames, self.video_path, fps=fps)
                self._renderer.close()
                self.get_logger().info(f"wrote {len(self._frames)} frames to {out}")
            self.get_logger().info(
                f"done: {self.stats.sim_time:.2f} s simulated in {self.stats.wall_time:.2f} s wall "
                f"(x{self.stats.real_time_factor:.1f}), {self.stats.commands} commands, "
                f"{self.stats.command_timeouts} timeouts, {self.stats.commands_ignored} ignored")
            if self.summary_path:
                path = Path(self.summary_path)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps({"robot": self.spec.name, "mode": self.mode, "period": self.period,
                                            **self.stats.summary(), "trace": self.stats.trace}) + "\n")
        return self.stats

    def _done(self, elapsed: float) -> bool:
        return self.stop.is_set() or not self.context.ok() or (self.duration > 0 and elapsed >= self.duration - 1e-9)

    def _run_realtime(self) -> None:
        clock = self.get_clock()
        mono = time.monotonic
        start = mono()
        self._publish(clock.now().nanoseconds)
        deadline = start + self.period
        while not self._done(self.stats.sim_time):
            delay = deadline - mono()
            if delay > 0:
                if self.stop.wait(delay):
                    break
            late = mono() - deadline
            if late >= self.period:  # skip whole missed periods (the sim falls behind the wall clock)
                missed = int(late // self.period)
                self.stats.overruns += missed
                deadline += missed * self.period
            self._take_command()
            self._advance()
            self._publish(clock.now().nanoseconds)
            deadline += self.period

    def _wait_answer(self, executor: SingleThreadedExecutor, timeout: float) -> bool:
        """Wait until a command (good or bad) arrives or `timeout` wall seconds pass.

        The command subscription is waited on alone, on a wait set built once: an executor's spin_once
        rebuilds its wait set from every entity each call (~0.2 ms here), which would dominate a 500 Hz
        lockstep tick. The executor still runs, between waits, for the reset service and graph events:
        every SPIN_EVERY_S wall seconds (one spin_once there costs ~0.3 ms, ~1 % of the loop at 50 ms).
        """
        mono = time.monotonic
        end = mono() + timeout
        wait_take, stop = self._waiter.wait_take, self.stop
        while not self._answered and not stop.is_set():
            now = mono()
            left = end - now
            if left <= 0:
                break
            msg = wait_take(left if left < SPIN_EVERY_S else SPIN_EVERY_S)
            if msg is not None:
                self._on_command(msg)
            if now - self._last_spin >= SPIN_EVERY_S:
                self._last_spin = now
                executor.spin_once(timeout_sec=0)
        return self._answered

    def _run_lockstep(self, executor: SingleThreadedExecutor) -> None:
        # Wait (bounded) until a controller is there to answer: its command publisher is matched.
        t0 = time.monotonic()
        while (self.wait_for_controller > 0 and self.count_publishers(self.spec.action.topic) == 0
               and not self.stop.is_set() and time.monotonic() - t0 < self.wait_for_controller):
            executor.spin_once(timeout_sec=0.01)
        self._wall0 = time.monotonic()  # restarted at the first answered tick, below
        self.stats.startup_wait = self._wall0 - t0
        clock_ns = self.period_ns  # the controller ignores a zero /clock
        started = False
        while not self._done(self.stats.sim_time):
            self._publish_lockstep(clock_ns)
            w0 = time.monotonic()
            answered = self._wait_answer(executor, self.lockstep_timeout if started else PREROLL_WAIT_S)
            if started:
                self.stats.answer_wait += time.monotonic() - w0
            if self.stop.is_set():
                break
            self._take_command()
            if answered and not started:
                # The run's wall time starts with its first answered tick: the pre-roll before it (physics
                # frozen, PREROLL_WAIT_S per unanswered /clock) is start-up, like the wait above.
                self._wall0 = time.monotonic()
                self.stats.startup_wait = self._wall0 - t0
            if answered:
                started = True
            elif started:
                self.stats.command_timeouts += 1
                self._warn(f"no command within {self.lockstep_timeout:g} s of /clock "
                           f"{clock_ns * 1e-9:.3f}; holding the last one")
            if started:
                self._advance()
            else:
                self.stats.preroll_ticks += 1
            clock_ns += self.period_ns
        if not self.stop.is_set():  # the final state too, as realtime mode publishes after every step
            self._publish_lockstep(clock_ns)

    def _publish_lockstep(self, clock_ns: int) -> None:
        """Sensors first, then /clock: the controller's tick (woken by /clock) finds them already there.
        The bookkeeping waits until both are out: it overlaps the controller's work instead of delaying it."""
        self._publish_sensors(clock_ns)
        clock = self._clock_cdr.encode(clock_ns)
        self.clock_pub.publish(clock)
        self._bookkeep()
        if self._bag is not None:
            self._bag_write("/clock", clock)


def main(args: list[str] | None = None) -> int:
    """Entry point of `ros2 run liquid_control sim_bridge` and `liquid-control sim`."""
    import signal

    from liquid_control.ros.params import init_and_create

    node = init_and_create(SimBridge, NODE_NAME, args)
    if node is None:
        return 2
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: node.stop.set())
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    # Everything allocated so far (modules, the node, MuJoCo's buffers) lives as long as the process: out of
    # the collector's passes with it (a full pass took ~15-30 ms in the middle of a lockstep run).
    gc.collect()
    gc.freeze()
    try:
        node.run(executor)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.stop.set()
        executor.remove_node(node)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def _spin(executor: SingleThreadedExecutor, stop: threading.Event) -> None:
    try:
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.05)
    except ExternalShutdownException:
        pass


if __name__ == "__main__":
    sys.exit(main())
