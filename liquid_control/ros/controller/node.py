"""The liquid controller: an rclpy lifecycle node running a liquid policy at a fixed rate.

    ros2 run liquid_control controller --ros-args --params-file config/cartpole.yaml
    liquid-control run --params config/cartpole.yaml                  (same node, same YAML)

This module is wiring: parameters (params.py), topics, services, the loop's clock and the lifecycle. What
a tick does - measured dt, soft start, stale and invalid sensors, the safe command, dt gaps, e-stop and
policy failures - is core/control.py's ControlLaw, the same object bag replay runs offline.

Lifecycle: configure loads the robot spec and the policy artifact and checks that they match (a failure
is logged and the node stays unconfigured), and creates the topics; activate resets the law (zeroed
hidden state, soft start) and starts the loop; deactivate stops the loop and publishes the safe command
once; cleanup / shutdown release everything. `autostart: true` configures and activates at start-up and
exits with status 1 if that fails (nobody else would configure it: a launcher must see it); a
lifecycle-managed node (autostart false) stays alive and unconfigured through a failed configure.

Threads. The executor (main thread) runs the sensor callbacks, services, lifecycle transitions and the
diagnostics timer. The control loop:
  * wall time: its own thread, sleeping to absolute deadlines on the monotonic clock (core.schedule),
    never waiting for the executor (an rclpy timer would fire from the same executor as a 1 kHz sensor
    flood and queue behind its callbacks). The node's ROS clock is the system clock, which NTP may step;
    the loop's steady clock has the same rate and no jumps;
  * use_sim_time: the same deadlines in sim time, ticked on the executor thread from the /clock callback
    (sim_clock.py). Before the tick it takes any sensor or e-stop message that has arrived but not been
    handled yet, so the tick at sim time t sees what was published before /clock t whatever order the
    executor would run the callbacks in.
A deadline passed by a whole period or more is skipped and counted as an overrun; dt is the measured time
since the previous tick on the loop clock.

The executor is rclpy's C++ EventsExecutor by default (param `executor`: events | single): under a 1 kHz
sensor stream it costs about half the CPU of the SingleThreadedExecutor and holds the GIL less, so the loop
thread wakes closer to its deadline (bench/bench_loop.py). Where rclpy has none (Humble), the node says so
in one WARN and uses the SingleThreadedExecutor.

Sensor callbacks only decode into the observation assembler (latest value per topic, under a short lock);
depth-1 best-effort subscriptions mean nothing queues up. The e-stop subscription (std_msgs/Bool,
reliable) lives as long as the node, so an e-stop sent while unconfigured holds; `estop_required` starts
engaged, `estop_timeout` makes the source a heartbeat (core.control.EStop, on the monotonic clock in both
time modes: the e-stop is a physical device). ~/enable(false), deactivate, shutdown, a dead loop and an
internal error in a tick publish the spec's safe value. ~/reset zeroes the hidden state and restarts the
soft start. The published command is never non-finite (core.command guarantees it).
"""
from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable

import numpy as np
from rcl_interfaces.msg import ParameterType, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.lifecycle import LifecycleState, Node as LifecycleNode, TransitionCallbackReturn
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import SetBool, Trigger

from liquid_control.core.command import CommandPipeline
from liquid_control.core.control import WARN, ControlLaw, EStop, Tick
from liquid_control.core.errors import LiquidControlError
from liquid_control.core.observation import ObservationAssembler
from liquid_control.core.schedule import Schedule
from liquid_control.core.spec import JOINT_STATE
from liquid_control.ros import diagnostics as diag
from liquid_control.ros.controller.params import NODE_NAME, PARAMS, STRUCTURAL, Settings, check_param, resolve
from liquid_control.ros.controller.sim_clock import SimClockTicker, clock_ns, time_source_subscription
from liquid_control.ros.controller.step_debug import StepDebug
from liquid_control.ros.messages import (CommandEncoder, decode_joint_state, from_bytes, header_stamp_ns,
                                         message_class)
from liquid_control.ros.lifecycle import refusing_impossible_transitions
from liquid_control.ros.params import accept_ints_for_doubles
from liquid_control.ros.qos import COMMAND_QOS, DEBUG_QOS, DIAGNOSTICS_QOS, ESTOP_QOS, SENSOR_QOS

LOG_EVERY_S = 2.0  # the same kind of trouble is logged at most this often
SHUTDOWN_ACK_S = 1.0  # at shutdown, how long the safe command may wait for its acknowledgements


class LiquidController(LifecycleNode):
    def __init__(self, **kwargs: Any):
        super().__init__(NODE_NAME, **kwargs)
        service = getattr(self, "_service_change_state", None)  # rclpy's, private: wrapped where it is found
        if service is not None:
            service.callback = refusing_impossible_transitions(self, service.callback)
        self._configured = False
        self.add_on_set_parameters_callback(self._on_set_parameters)
        accept_ints_for_doubles(self, [n for n, (_, d) in PARAMS.items() if d.type == ParameterType.PARAMETER_DOUBLE])
        for name, (default, descriptor) in PARAMS.items():
            self.declare_parameter(name, default, descriptor)
        self._lock = threading.Lock()  # assembler + law: sensor callbacks and services vs the loop
        self._thread: threading.Thread | None = None  # the wall-clock loop
        self._ticker: SimClockTicker | None = None  # the sim-time loop (ticks on the executor thread)
        self._stop = threading.Event()
        self.estop = EStop(required=bool(self.param("estop_required")), timeout=float(self.param("estop_timeout")))
        self._enabled = True
        self._log_times: dict[Any, float] = {}  # kind of trouble -> monotonic time it was last logged
        self._activated_at = 0.0
        self._subs: list[Any] = []
        # (subscription handle, message class, raw, callback) of each sensor topic and the e-stop
        self._takes: list[tuple[Any, type, bool, Callable[[Any], None]]] = []
        self._pubs: list[Any] = []
        self._timers: list[Any] = []
        self.policy = None
        self.law: ControlLaw | None = None
        self.settings: Settings | None = None
        self.stats: diag.LoopStats | None = None
        self._cond = (diag.OK, "not configured")
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.create_service(SetBool, "~/enable", self._on_enable)
        # For the node's whole life, not only while configured: an e-stop sent before configure must hold.
        self._estop_sub = self.create_subscription(Bool, self.param("estop_topic"), self._on_estop, ESTOP_QOS)
        if self.estop.engaged:
            self.get_logger().warning("estop_required: e-stop engaged until an e-stop message says false")

    # ------------------------------------------------------------------------------- parameters
    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        for p in params:
            if p.name not in PARAMS and p.name != "use_sim_time":
                continue
            reason = check_param(p.name, p.value)
            if reason is None and self._configured and p.name in STRUCTURAL:
                reason = (f"{p.name} cannot change while the node is configured; "
                          "deactivate and clean it up, then configure again")
            if reason is not None:
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def param(self, name: str) -> Any:
        return self.get_parameter(name).value

    @property
    def autostart(self) -> bool:
        return bool(self.param("autostart"))

    # ------------------------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except LiquidControlError as exc:
            self.get_logger().error(f"configure failed: {exc}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        except Exception as exc:  # never leave the node half-configured, whatever broke
            self.get_logger().error(f"configure failed: {type(exc).__name__}: {exc}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        return super().on_configure(state)

    def _configure(self) -> None:
        from liquid_control.core.policy import Policy

        settings = resolve(self.param)
        spec = settings.spec
        policy = Policy.load(settings.model, backend=self.param("backend"), spec=spec)
        pipeline = CommandPipeline(spec.action, settings.soft_start, settings.safe_behaviour, settings.lower,
                                   settings.upper)
        self.spec, self.policy, self.settings, self.pipeline = spec, policy, settings, pipeline
        self.period = settings.period
        self.law = ControlLaw(policy, pipeline, self.period, settings.sensor_timeout, spec.obs_size)
        self.encoder = CommandEncoder(spec.action)
        self.assembler = ObservationAssembler(spec, sensor_timeout=settings.sensor_timeout)
        self.stats = diag.LoopStats(self.period)
        self._sensor_header_ns = 0
        self._publish_wall = 0.0
        self._clock_ns = clock_ns(self.get_clock())
        sim_ns = self._clock_ns
        self._loop_now = time.monotonic if not settings.use_sim_time else lambda: sim_ns() * 1e-9
        # A JointState command carries a stamp; Float64MultiArray and Twist have none to fill.
        self._stamp_command = self.encoder.msg_type == JOINT_STATE
        # Sensor-to-command latency compares wall time with the sensors' stamps: meaningless in sim time.
        self._measure_s2c = not settings.use_sim_time
        self._cmd_pub = self.create_publisher(self.encoder.msg_class, spec.action.topic, COMMAND_QOS)
        self._diag_pub = self.create_publisher(self._diag_class(), "/diagnostics", DIAGNOSTICS_QOS)
        self._pubs = [self._cmd_pub, self._diag_pub]
        self._debug = None
        if self.param("step_debug"):
            self._pubs.append(self.create_publisher(Float64MultiArray, "~/step_debug", DEBUG_QOS))
            self._debug = StepDebug(self._pubs[-1], spec.obs_labels(), spec.action.names)
        self._takes = [(self._estop_sub.handle, Bool, False, self._on_estop)]
        for topic in self.assembler.topics:
            cls = message_class(self.assembler.msg_types[topic])
            callback = self._sensor_callback(topic)
            # JointStates are taken serialized and read straight from their bytes (core/cdr.py); other
            # types, and bytes that do not parse, go through rclpy.
            raw = self.assembler.msg_types[topic] == JOINT_STATE
            if raw:
                callback = from_bytes(decode_joint_state, cls, callback, self._undecodable(topic))
            sub = self.create_subscription(cls, topic, callback, SENSOR_QOS, raw=raw)
            self._subs.append(sub)
            self._takes.append((sub.handle, sub.msg_type, sub.raw, callback))
        steady = Clock(clock_type=ClockType.STEADY_TIME)  # diagnostics keep coming even if /clock stops
        self._timers = [self.create_timer(self.param("diagnostics_period"), self._publish_diagnostics, clock=steady)]
        self._configured = True
        self._cond = (diag.OK, "inactive: configured, not commanding")
        nominal = getattr(policy, "nominal_period", None)
        note = ""
        if nominal and abs(nominal * settings.rate_hz - 1.0) > 1e-6:
            note = f" (the policy was trained at {1 / nominal:g} Hz; it steps by the measured dt)"
        self.get_logger().info(
            f"configured: robot {spec.name!r}, model {settings.model}, backend {self.param('backend')}, "
            f"{settings.rate_hz:g} Hz{note}, {'sim' if settings.use_sim_time else 'wall'} time, "
            f"sensors {list(self.assembler.topics)} -> {spec.action.topic} ({spec.action.msg_type})")

    @staticmethod
    def _diag_class() -> type:
        from diagnostic_msgs.msg import DiagnosticArray

        return DiagnosticArray

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self.law.reset()
        self._seq = 0
        self.stats.restart_window()
        self._activated_at = time.monotonic()
        self._stop.clear()
        if self.settings.use_sim_time:
            self._ticker = SimClockTicker(self.get_clock(), int(round(self.period * 1e9)), self._sim_tick,
                                          self.stats.overrun, self._new_epoch, self._loop_died,
                                          time_source_subscription(self))
        else:
            self._thread = threading.Thread(target=self._run_loop, name="liquid_control_loop", daemon=True)
            self._thread.start()
        self._cond = (diag.OK, "active")
        self.get_logger().info(f"active: commanding at {self.settings.rate_hz:g} Hz, soft start "
                               f"{self.settings.soft_start:g} s")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_loop()
        self._publish_command(self.law.stop())
        self._cond = (diag.OK, "inactive: configured, not commanding")
        self.get_logger().info("inactive: published the safe command, loop stopped")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("cleaned up: unconfigured")
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._active:
            self._stop_loop()
            self._publish_command(self.law.stop())
            # The process ends next: give the reliable command time to be acknowledged by its subscribers, or a
            # driver may never hear the safe value (a writer destroyed before the ack drops its history).
            self._cmd_pub.wait_for_all_acked(Duration(seconds=SHUTDOWN_ACK_S))
        self._release()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_loop()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    @property
    def _active(self) -> bool:
        return self._thread is not None or self._ticker is not None

    def _stop_loop(self) -> None:
        if self._ticker is not None:
            self._ticker.close()  # waits for a tick in progress on another thread, if any
            self._ticker = None
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=5.0)
        self._thread = None

    def _release(self) -> None:
        self._stop_loop()
        for t in self._timers:
            self.destroy_timer(t)
        for s in self._subs:
            self.destroy_subscription(s)
        for p in self._pubs:
            self.destroy_publisher(p)
        self._timers, self._subs, self._pubs = [], [], []
        self._takes = []
        self.policy = self.law = None
        self._configured = False
        self._cond = (diag.OK, "not configured")

    # ------------------------------------------------------------------------------- inputs
    def _sensor_callback(self, topic: str):
        update, lock, now = self.assembler.update, self._lock, self._loop_now
        log = self.get_logger()
        stamped = "header" in message_class(self.assembler.msg_types[topic]).get_fields_and_field_types()

        def callback(msg: Any) -> None:
            with lock:
                error = update(topic, msg, now())
            if stamped:
                self._sensor_header_ns = header_stamp_ns(msg)
            if error is not None:
                log.error(f"bad message on {topic}: {error}", throttle_duration_sec=1.0)

        return callback

    def _undecodable(self, topic: str) -> Callable[[str], None]:
        log = self.get_logger()

        def reject(reason: str) -> None:
            log.error(f"bad message on {topic}: {reason}", throttle_duration_sec=1.0)

        return reject

    def _on_estop(self, msg: Bool) -> None:
        note = self.estop.message(bool(msg.data), time.monotonic())
        if note:
            self.get_logger().warning(note)

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if self.law is None:
            response.success, response.message = False, "not configured: nothing to reset"
            return response
        with self._lock:
            self.law.restart()
        response.success, response.message = True, "hidden state zeroed, soft start restarted"
        self.get_logger().info("~/reset: hidden state zeroed, soft start restarted")
        return response

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        self._enabled = bool(request.data)
        response.success = True
        response.message = "enabled" if self._enabled else "disabled: publishing the safe command"
        self.get_logger().info(f"~/enable: {response.message}")
        return response

    # ------------------------------------------------------------------------------- the loop
    def _run_loop(self) -> None:
        try:
            self._loop_wall()
        except Exception as exc:  # a bug must not leave the robot on its last command
            self._loop_died(exc)

    def _loop_wall(self) -> None:
        schedule, mono = Schedule(self.period * 1e9), time.monotonic_ns
        last = mono()
        schedule.start(last)
        while not self._stop.is_set():
            delay = schedule.next_ns - mono()
            if delay > 0:
                time.sleep(delay * 1e-9)  # to an absolute deadline: the error does not accumulate
            now = mono()
            late, skipped = schedule.take(now)
            if skipped:
                self.stats.overrun(skipped)
            self._guarded_tick(now * 1e-9, (now - last) * 1e-9, late * 1e-9)
            last = now

    def _sim_tick(self, now_ns: int, dt_ns: int, late_ns: int) -> None:
        """One sim-time tick (on the executor thread, from the /clock callback)."""
        self._take_waiting()
        self._guarded_tick(now_ns * 1e-9, dt_ns * 1e-9, late_ns * 1e-9)

    def _take_waiting(self) -> None:
        """Handle sensor and e-stop messages that arrived but whose callbacks have not run yet.

        The bridge (and `play --clock`) publishes an instant's messages before its /clock, so the tick at t
        must see them. The EventsExecutor runs callbacks in arrival order and they have run already (each
        take here finds nothing); the SingleThreadedExecutor orders by subscription, /clock first, and
        would tick on the previous sample.
        """
        for handle, msg_type, raw, callback in self._takes:
            with handle:
                info = handle.take_message(msg_type, raw)
                while info is not None:
                    callback(info[0])
                    info = handle.take_message(msg_type, raw)

    def _new_epoch(self) -> None:
        self.get_logger().warning("sim time went backwards: restarting the loop epoch, hidden state reset")
        with self._lock:
            self.law.restart()
            self.assembler.reset()
        self.stats.restart_window()

    def _loop_died(self, exc: Exception) -> None:
        self.get_logger().fatal(f"control loop died: {type(exc).__name__}: {exc}; publishing the safe command")
        self._publish_command(self.law.stop())
        self._cond = (diag.ERROR, f"control loop died: {exc}")

    def _guarded_tick(self, now: float, dt: float, late: float) -> None:
        """A bug inside a tick must not leave the robot on its last command: safe command, ERROR, go on."""
        try:
            self._tick(now, dt, late)
        except Exception as exc:
            reason = f"internal error in the control tick: {type(exc).__name__}: {exc}"
            self._cond = (diag.ERROR, reason)
            self.stats.flag(diag.ERROR, reason)
            self.get_logger().fatal(reason, throttle_duration_sec=2.0)
            try:
                with self._lock:
                    command = self.law.fail()
                self._publish_command(command)
            except Exception:
                pass

    def _tick(self, now: float, dt: float, late: float) -> None:
        t0 = time.perf_counter()
        stop = None
        if self.estop.active:
            stop, note = self.estop.check(time.monotonic())
            if note:
                self.get_logger().warning(note)
        if stop is None and not self._enabled:
            stop = "disabled through ~/enable"
        with self._lock:
            obs, fault = self.assembler.assemble(now)
            s0 = time.perf_counter()
            out = self.law.update(now, dt, obs, fault, stop)
            step_s = time.perf_counter() - s0
        if out.restarted:
            self.stats.restarted()
            self.get_logger().warning(f"dt {dt:.3f} s exceeds {self.law.max_dt:.3f} s (sim time jumped or the loop "
                                      "stalled): hidden state reset, soft start", throttle_duration_sec=2.0)
        if out.safe:
            self._log_safe(out)
            self.stats.flag(out.level, out.reason)
        elif out.resumed and self._due(("resumed",)):
            self.get_logger().info("good data again: resuming with soft start")
        self._cond = (out.level, out.reason or "active")
        self._publish_command(out.command)
        tick_s = time.perf_counter() - t0
        s2c = (self._publish_wall - self._sensor_header_ns * 1e-9
               if self._measure_s2c and self._sensor_header_ns else math.nan)
        self.stats.record(now, dt, late, step_s, tick_s, out.safe, s2c)
        if self._debug is not None:
            self._publish_debug(now, dt, late, step_s, out)
        self._seq += 1

    def _log_safe(self, out: Tick) -> None:
        """At most once per LOG_EVERY_S per kind of trouble, whether it persists or comes and goes (a sensor
        hovering around the timeout flips every few ticks); a new kind is logged at once. (The reason text
        itself changes every tick for a stale sensor: it carries the age.)"""
        key = (out.status, out.fault.kind, out.fault.topic) if out.fault is not None else (out.status, out.reason)
        if not self._due(key):
            return
        if out.level == WARN:  # (rclpy refuses two severities from one call site)
            self.get_logger().warning(f"safe command: {out.reason}")
        else:
            self.get_logger().error(f"safe command: {out.reason}")

    def _due(self, key: tuple) -> bool:
        """Whether trouble of this kind was last logged at least LOG_EVERY_S ago (and now counts as logged)."""
        mono = time.monotonic()
        if mono - self._log_times.get(key, -math.inf) < LOG_EVERY_S:
            return False
        self._log_times[key] = mono
        return True

    def _publish_command(self, command: np.ndarray) -> None:
        if not self._pubs:
            return
        msg = self.encoder.publishable(command, self._clock_ns() if self._stamp_command else None)
        self._publish_wall = time.time()
        self._cmd_pub.publish(msg)

    def _publish_debug(self, now: float, dt: float, late: float, step_s: float, out: Tick) -> None:
        with self._lock:
            ages = [a for a in self.assembler.ages(now).values() if a is not None]
        age = min(ages) if ages else math.nan
        self._debug.publish((self._seq, now, dt if out.safe else out.dt, late, step_s, age,
                             self._sensor_header_ns * 1e-9, self._publish_wall, out.status, out.fresh),
                            self.law.obs, out.action, out.command)

    # ------------------------------------------------------------------------------- diagnostics
    def _publish_diagnostics(self) -> None:
        if self.stats is None or not self._pubs:
            return
        level, reason = self._cond
        active = self._active
        # Active for a whole window, the loop must have ticked: no tick (/clock stopped, loop hung) is STALE.
        expect = active and time.monotonic() - self._activated_at >= self.param("diagnostics_period")
        snap = self.stats.snapshot(level, reason if active else self._cond[1], expect_ticks=expect)
        loop_now = self._loop_now()
        with self._lock:
            ages = self.assembler.ages(loop_now)
        values = {
            "state": "active" if active else "inactive",
            "target_rate_hz": f"{self.settings.rate_hz:g}",
            "clock": "sim" if self.settings.use_sim_time else "wall",
            "estop": str(self.estop.engaged or self.estop.silent).lower(),
            "enabled": str(self._enabled).lower(),
            "soft_start_factor": f"{self.pipeline.ramp:.3f}",
            "model": str(self.settings.model),
            "backend": str(self.param("backend")),
        }
        for topic, age in ages.items():
            values[f"age_{topic}_ms"] = "never" if age is None else f"{age * 1e3:.1f}"
        self._diag_pub.publish(diag.diagnostic_array(f"{self.get_name()}: control loop", self.spec.name, snap,
                                                     self.get_clock().now().nanoseconds, values))
