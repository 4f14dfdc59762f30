"""The sim bridge node: MuJoCo behind the robot's ROS interface, as the spec describes it.

    ros2 run liquid_control sim_bridge --ros-args -p robot:=cartpole -p mode:=lockstep
    liquid-control sim --robot cartpole --mode lockstep

It publishes each sensor topic of the spec from MuJoCo state, subscribes to the command topic
(Float64MultiArray, JointState efforts or Twist, decoded by liquid_control.ros.messages) and applies it to
the actuators. This module is the node: its parameters, the simulation it steps, the commands it takes, and
the wiring of its parts:

    sim_sensors.py   the sensor messages, from the same readers as the Gymnasium env's observation
    sim_realtime.py  mode realtime: paced by the wall clock, messages stamped with the node's clock
    sim_lockstep.py  mode lockstep: publishes /clock and steps when the controller has answered
    sim_record.py    statistics, state trace, and the outputs: record:= (rosbag2), video:=, summary:= (JSON)

Bad commands (wrong size, non-finite, a JointState lacking an actuator) are ignored with a throttled
warning and the last valid command is held, as a motor driver would; MuJoCo never sees a NaN.
Services: ~/reset (std_srvs/Trigger) draws a new initial state from the task (time keeps running).
Disturbances: push_period > 0 pushes push_body with +-push_force newtons along x for one period.
"""
from __future__ import annotations

import gc
import math
import sys
import threading
import time
from typing import Any

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.serialization import deserialize_message

from liquid_control.core.cdr import Float64ArrayCdr
from liquid_control.core.command_types import decode_command
from liquid_control.core.errors import LiquidControlError, SpecError
from liquid_control.core.spec import FLOAT64_ARRAY, load_spec
from liquid_control.ros.messages import message_class
from liquid_control.ros.params import accept_ints_for_doubles
from liquid_control.ros.qos import COMMAND_SUB_QOS
from liquid_control.ros.sim_lockstep import LockstepLoop
from liquid_control.ros.sim_realtime import RealtimeLoop
from liquid_control.ros.sim_record import BridgeStats, RunRecord
from liquid_control.ros.sim_sensors import SensorPublisher
from liquid_control.sim.commands import parse_settings

NODE_NAME = "sim_bridge"
MODES = ("realtime", "lockstep")
PARAMETERS: dict[str, Any] = {  # name: default (its type is the parameter's)
    "robot": "cartpole",
    "mode": "realtime",
    "rate_hz": 0.0,  # 0: lockstep the spec's control rate, realtime its sim.sensor_rate_hz
    "timestep": 0.0,  # 0: the MJCF's, or the largest that divides the period
    "seed": 0,
    "commands": "",  # NAME=VALUE,...: the spec's sim.commands held at these values (default: drawn per episode)
    "duration": 0.0,  # sim seconds (realtime: paced to wall seconds); 0: until stopped
    "lockstep_timeout": 2.0,  # wall seconds to wait for the command that answers a /clock
    "push_period": 0.0,
    "push_force": 0.0,  # N; 0: the spec's sim.push_force
    "push_body": "",
    "wait_for_controller": 10.0,  # lockstep: wall seconds to wait for the command publisher
    "summary": "",  # path: write a JSON summary (and state trace) when the run ends
    "record": "",  # path: a rosbag2 (MCAP) directory to write
    "bag_version": 8,  # rosbag2 metadata version of `record` (bags/versions.py: 8 opens in Humble to Kilted)
    "video": "",  # path: .gif or .mp4 of the run
    "video_fps": 25.0,
}


class SimBridge(Node):
    """MuJoCo + the spec's topics. run(executor) blocks until the duration is over or stop is set."""

    def __init__(self, **kwargs: Any):
        super().__init__(NODE_NAME, **kwargs)
        accept_ints_for_doubles(self, [name for name, v in PARAMETERS.items() if isinstance(v, float)])
        for name, default in PARAMETERS.items():
            self.declare_parameter(name, default)
        g = lambda name: self.get_parameter(name).value  # noqa: E731

        self.mode = str(g("mode"))
        if self.mode not in MODES:
            raise LiquidControlError(f"mode must be one of {MODES}, got {self.mode!r}")
        self.spec = load_spec(str(g("robot")))
        self._reset_options = {"commands": parse_settings(str(g("commands")))} if str(g("commands")) else None
        rate = self._make_env(float(g("rate_hz")), float(g("timestep")) or None)
        self.seed, self.duration = int(g("seed")), float(g("duration"))
        self.lockstep_timeout, self.wait_for_controller = float(g("lockstep_timeout")), float(g("wait_for_controller"))
        self._set_pushes(float(g("push_period")), float(g("push_force")), str(g("push_body")))
        self.stats = BridgeStats()
        self.stop = threading.Event()
        self.sensors = SensorPublisher(self, self.env, self.spec)
        self._subscribe_commands()
        from std_srvs.srv import Trigger

        self.create_service(Trigger, "~/reset", self._on_reset)
        self.record = RunRecord(self, summary=str(g("summary")), record=str(g("record")),
                                bag_version=g("bag_version"), video=str(g("video")), video_fps=float(g("video_fps")))
        self._loop = LockstepLoop(self) if self.mode == "lockstep" else RealtimeLoop(self)
        self.wall0 = 0.0  # monotonic seconds the run's wall time counts from
        self.env.reset(seed=self.seed, options=self._reset_options)
        self.get_logger().info(
            f"{self.spec.name}: {self.mode}, {rate:g} Hz ({self.period * 1e3:g} ms, "
            f"{int(round(self.period / self.env.timestep))} x {self.env.timestep:g} s), topics "
            f"{list(self.spec.topics)} -> command {self.spec.action.topic} ({self.spec.action.msg_type})")

    def _make_env(self, rate_hz: float, timestep: float | None) -> float:
        """The env, stepping a whole number of MuJoCo timesteps per period; returns the rate."""
        from liquid_control.sim.env import SpecEnv

        # Lockstep advances one control period per command. Realtime steps at the sensor rate
        # (sim.sensor_rate_hz, default the control rate): a controller sampling asynchronously then sees fresh
        # sensors and its command acts within one sensor period, as on a robot whose drivers outpace it.
        sensor_rate = float(self.spec.sim.get("sensor_rate_hz", self.spec.rate_hz))
        rate = rate_hz or (self.spec.rate_hz if self.mode == "lockstep" else sensor_rate)
        if not 1.0 <= rate <= 10000.0:
            raise LiquidControlError(f"rate_hz must lie in 1..10000, got {rate}")
        self.period_ns = int(round(1e9 / rate))
        self.period = self.period_ns * 1e-9
        self.env = SpecEnv(self.spec, timestep=timestep)
        n = self.period / self.env.timestep
        if timestep is None and abs(n - round(n)) > 1e-6:
            # The MJCF's step does not divide the period: the largest step that does and is no coarser.
            self.env = SpecEnv(self.spec, timestep=self.period / math.ceil(n - 1e-6))
            n = self.period / self.env.timestep
        if abs(n - round(n)) > 1e-6 or round(n) < 1:
            raise LiquidControlError(f"the period {self.period:g} s is not a whole number of MuJoCo timesteps "
                                     f"({self.env.timestep:g} s); set timestep")
        return rate

    def _set_pushes(self, period: float, force: float, body: str) -> None:
        self.push_period = period
        self.push_force = force or float(self.spec.sim.get("push_force", 0.0))
        if period > 0 and self.push_force == 0:
            self.get_logger().warning("push_period is set but push_force is 0 (and the spec has no "
                                      "sim.push_force): the pushes do nothing")
        self._push_body = -1
        if period > 0:
            import mujoco

            name = body or str(self.spec.sim.get("push_body", ""))
            model = self.env.model
            bid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name) if name else model.nbody - 1
            if bid < 0:
                raise SpecError(f"push_body: the MuJoCo model has no body named {name!r}")
            self._push_body = bid
        self._push_rng = np.random.default_rng([self.seed, 1])
        self._next_push = self.push_period

    def _subscribe_commands(self) -> None:
        self.command_class = message_class(self.spec.action.msg_type)
        # Commands are taken serialized (raw): a Float64MultiArray is unpacked from its bytes directly, which
        # spares building three message objects per command; the bag gets the bytes as they came.
        self._float64_command = self.spec.action.msg_type == FLOAT64_ARRAY
        self.command_sub = self.create_subscription(self.command_class, self.spec.action.topic,
                                                    self.on_command, COMMAND_SUB_QOS, raw=True)
        self._lock = threading.Lock()
        # A command (good or bad) arrived since the last take_command. Lockstep waits for it on the thread
        # that handles commands (its own), so a plain flag does: no Event to set and clear per tick.
        self.answered = False
        self._pending: np.ndarray | None = None  # newest valid command not yet applied
        self._reset_requested = False
        self._last_warn = -math.inf

    # ------------------------------------------------------------------------------- callbacks
    def warn(self, text: str) -> None:
        """A warning, at most one every 5 s."""
        now = time.monotonic()
        if now - self._last_warn >= 5.0:
            self._last_warn = now
            self.get_logger().warning(text)

    def _decode_command(self, data: bytes) -> np.ndarray:
        """A serialized command -> the command vector (SpecError if it does not fit the spec)."""
        if self._float64_command:
            cmd = Float64ArrayCdr.decode(data)
            if cmd is not None and cmd.shape == (self.spec.action_size,):
                return cmd
        # Any other type, layout or size: rclpy's deserialization, and decode_command's checks and errors.
        try:
            msg = deserialize_message(data, self.command_class)
        except RuntimeError as exc:  # rclpy's RMWError: bytes that are not a message of this type
            raise SpecError(f"{len(data)} bytes that are not a {self.command_class.__name__} "
                            f"({str(exc).split(':')[0]})") from None
        return decode_command(msg, self.spec.action)

    def on_command(self, data: bytes) -> None:
        if self.record.bag is not None:
            self.record.log(self.spec.action.topic, data)
        try:
            cmd = self._decode_command(data)
            if not np.isfinite(cmd).all():
                raise SpecError(f"non-finite command {cmd.tolist()}")
        except SpecError as exc:
            with self._lock:
                self.stats.commands_ignored += 1
            self.warn(f"ignored a command ({exc}); holding the last one "
                      f"({self.stats.commands_ignored} ignored so far)")
            self.answered = True  # still an answer: lockstep advances, holding the last good command
            return
        with self._lock:
            self._pending = cmd
            self.stats.commands += 1
            self.answered = True

    def _on_reset(self, request: Any, response: Any) -> Any:
        with self._lock:
            self._reset_requested = True
        response.success, response.message = True, "the simulation resets before the next step"
        return response

    # ------------------------------------------------------------------------------- one tick's steps
    def take_command(self) -> bool:
        """Apply the newest command (and a requested reset); False if none came since the last call."""
        with self._lock:
            cmd, self._pending = self._pending, None
            self.answered = False
            reset, self._reset_requested = self._reset_requested, False
        if reset:
            self.stats.resets += 1
            self.env.reset(options=self._reset_options)
            self.get_logger().info("~/reset: new initial state")
        if cmd is None:
            return False
        self.env.apply_command(cmd)
        return True

    def advance(self) -> None:
        """One period of physics (with a push when one is due)."""
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

    def publish_sensors(self, stamp_ns: int) -> None:
        """Publish each sensor topic for the current MuJoCo state, stamped `stamp_ns`."""
        self.record.now_ns = stamp_ns
        self.sensors.publish(stamp_ns)

    def publish(self, stamp_ns: int) -> None:
        """The sensors, and what the run keeps of the state."""
        self.publish_sensors(stamp_ns)
        self.record.keep()

    def done(self) -> bool:
        return self.stop.is_set() or not self.context.ok() or (
            self.duration > 0 and self.stats.sim_time >= self.duration - 1e-9)

    def run(self, executor: SingleThreadedExecutor) -> BridgeStats:
        """Run until duration or stop. Realtime spins `executor` in a thread; lockstep spins it in this
        thread between ticks."""
        self.wall0 = time.monotonic()
        try:
            self._loop.run(executor)
        finally:
            self.stats.wall_time = time.monotonic() - self.wall0
            self.stop.set()
            self._loop.close()
            self.record.close()
            self.get_logger().info(
                f"done: {self.stats.sim_time:.2f} s simulated in {self.stats.wall_time:.2f} s wall "
                f"(x{self.stats.real_time_factor:.1f}), {self.stats.commands} commands, "
                f"{self.stats.command_timeouts} timeouts, {self.stats.commands_ignored} ignored")
        return self.stats


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
    # the collector's passes with it (a full pass stalls a lockstep tick).
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


if __name__ == "__main__":
    sys.exit(main())
