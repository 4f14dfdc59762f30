"""The liquid controller: an rclpy lifecycle node running a liquid policy at a fixed rate.

    ros2 run liquid_control controller --ros-args --params-file config/cartpole.yaml
    liquid-control run --params config/cartpole.yaml                  (same node, same YAML)

Lifecycle: configure loads the robot spec and the policy artifact and checks that they match (a
failure is logged and the node stays unconfigured), and creates the topics; activate zeroes the hidden
state and starts the loop with a soft start; deactivate stops the loop and publishes the safe command
once; cleanup / shutdown release everything. `autostart: true` configures and activates at start-up,
and exits with status 1 if that fails (nobody else would configure it: a launcher must see it); a
lifecycle-managed node (autostart false) stays alive and unconfigured through a failed configure.

Threads. The executor (main thread) runs the sensor callbacks, services, lifecycle transitions and the
diagnostics timer. The control loop:
  * wall time: runs in its own thread and never waits for the executor; it sleeps to ABSOLUTE
    deadlines on the monotonic clock (next = previous deadline + period; Python's sleep is
    clock_nanosleep underneath) — an rclpy timer would fire from the same executor as a 1 kHz sensor
    flood and queue behind its callbacks;
  * use_sim_time: the same deadlines in sim time. Sim time only moves when the executor handles a
    /clock message, so the tick runs right there, in that message's callback just after rclpy has set
    the clock (see _SimTicker), when /clock reaches the deadline: no thread hand-off (a loop thread woken from that callback cost a
    wake-up and a GIL hand-over per tick, most of a 500 Hz lockstep tick). Before the tick it takes
    any sensor message that has arrived but not been handled yet, so the tick at sim time t sees the
    samples published before /clock t whatever order the executor would run the callbacks in.
A deadline that has already passed by a whole period or more is skipped and counted as an overrun (as
ros2_control's controller manager does); `dt` is always the measured time since the previous tick on
the loop clock, and it is what the policy steps by. Under use_sim_time that is the node's ROS clock
(sim time). Without it, the node's ROS clock is the system clock, which NTP may step; the loop uses the
steady (monotonic) clock instead: the same rate, no jumps. The clock is chosen at configure.

The executor is rclpy's C++ EventsExecutor by default (param `executor`: events | single): under a
1 kHz sensor stream it costs about half the CPU of the SingleThreadedExecutor and holds the GIL less,
so the loop thread wakes closer to its deadline (bench/bench_loop.py). It also handles callbacks in
arrival order, so in lockstep the sensors published just before /clock are decoded before the tick.
Where rclpy has no EventsExecutor (Humble), the node says so in one WARN and uses the SingleThreadedExecutor.

Sensor callbacks only decode into the observation assembler (latest value per topic, under a short
lock); they never block on the loop, and depth-1 best-effort subscriptions mean nothing queues up.

Safety: any sensor fault (invalid / missing / stale), a policy error or a non-finite output makes the
tick publish the safe command (`safe_behaviour`: zero = the spec's safe value, hold = the last good
command), reset the hidden state and report ERROR / STALE; the first good tick after that restarts the
soft start. Stopping is different from riding out a bad sample: e-stop (std_msgs/Bool), ~/enable(false),
deactivate, shutdown, a dead loop and an internal error always publish the spec's safe value
(`CommandPipeline.stop()`), whatever `safe_behaviour` says — holding a torque is not stopping.
The e-stop subscription lives as long as the node (an e-stop sent while unconfigured is kept), and with
`estop_required: true` the node starts engaged until an e-stop message says false; with `estop_timeout`
> 0 the e-stop source is a heartbeat, and silence longer than that counts as engaged. A tick whose dt is
longer than max(sensor_timeout, 5 periods) (a forward jump in sim time, a long stall) is a restart: the
hidden state is zeroed and the soft start begins again instead of stepping by the gap (counted in
/diagnostics as restarts_large_dt); ~/reset restarts the soft start too.
The published command is never non-finite (the command pipeline guarantees it).
"""
from __future__ import annotations

import gc
import math
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import rclpy
from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.clock import Clock, ClockType, JumpThreshold
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.task import Future
from rclpy.lifecycle import LifecycleState, Node as LifecycleNode, TransitionCallbackReturn
from rclpy.serialization import deserialize_message
from std_msgs.msg import Bool, Float64MultiArray, MultiArrayDimension
from std_srvs.srv import SetBool, Trigger

from liquid_control.core.command import CommandPipeline
from liquid_control.core.errors import LiquidControlError, StepError
from liquid_control.core.observation import ObservationAssembler
from liquid_control.core.spec import JOINT_STATE
from liquid_control.ros import diagnostics as diag
from liquid_control.ros.messages import CommandEncoder, JointStateCdr, message_class
from liquid_control.ros.params import accept_ints_for_doubles
from liquid_control.ros.qos import COMMAND_QOS, DEBUG_QOS, DIAGNOSTICS_QOS, ESTOP_QOS, SENSOR_QOS

_perf_counter, _copyto = time.perf_counter, np.copyto

NODE_NAME = "liquid_controller"
RATE_RANGE = (10.0, 1000.0)
MAX_ACTUATORS = 256  # command_lower/upper lengths: bounds what a params file can make us parse

# ~/step_debug: one Float64MultiArray per tick = these fields, then obs, action, command.
#   time: loop clock (monotonic or sim) s; sensor_age: time since the newest sensor message was received
#   (loop clock); sensor_stamp: header stamp of the newest stamped sensor message (the sender's clock);
#   publish_wall: system time at publish (sensor-to-command latency = publish_wall - sensor_stamp on one
#   machine); status: STEPPED / SAFE_*; fresh: the step started from a zeroed hidden state.
#   dt is what the policy stepped by: the measured time since the previous tick, except after a gap
#   (dt > max(sensor_timeout, 5 periods): a restart, fresh = 1), where the fresh state steps by one period.
DEBUG_FIELDS = ("seq", "time", "dt", "lateness", "step_s", "sensor_age", "sensor_stamp", "publish_wall",
                "status", "fresh")
# status of a tick
STEPPED, SAFE_FAULT, SAFE_STOP, SAFE_POLICY = 0, 1, 2, 3

# Parameters that shape the configured node: changing them needs cleanup + configure. (use_sim_time is
# rclpy's; the loop clock is chosen at configure, so switching it under a running loop is refused too.)
_STRUCTURAL = ("robot", "model", "backend", "rate_hz", "sensor_timeout", "soft_start", "safe_behaviour",
               "command_lower", "command_upper", "step_debug", "use_sim_time")


def _descriptor(kind: int, text: str, lo: float | None = None, hi: float | None = None) -> ParameterDescriptor:
    if kind == ParameterType.PARAMETER_DOUBLE_ARRAY:
        # An empty default has no element type in rclpy (it becomes a byte array), so the arrays are
        # dynamically typed; check_param() insists on a list of numbers.
        return ParameterDescriptor(dynamic_typing=True, description=text + " (a list of numbers)")
    d = ParameterDescriptor(type=kind, description=text)
    if lo is not None:
        d.floating_point_range = [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]
    return d


PARAMS: dict[str, tuple[Any, ParameterDescriptor]] = {
    "robot": ("cartpole", _descriptor(ParameterType.PARAMETER_STRING,
                                      "robot spec: a name from config/robots/ or a path to a spec YAML")),
    "model": ("", _descriptor(ParameterType.PARAMETER_STRING,
                              "policy artifact path; empty = the robot's shipped policy (policies/<robot>.onnx)")),
    "backend": ("numpy", _descriptor(ParameterType.PARAMETER_STRING, "policy backend: numpy | onnxruntime | torch")),
    "rate_hz": (0.0, _descriptor(ParameterType.PARAMETER_DOUBLE,
                                 "control rate in Hz, 10..1000; 0 = the spec's rate")),
    "sensor_timeout": (0.0, _descriptor(ParameterType.PARAMETER_DOUBLE,
                                        "seconds before a sensor counts as stale; 0 = the spec's value", 0.0, 60.0)),
    "soft_start": (-1.0, _descriptor(ParameterType.PARAMETER_DOUBLE,
                                     "seconds to ramp the command in after activation or recovery; "
                                     "-1 = the spec's value", -1.0, 60.0)),
    "safe_behaviour": ("", _descriptor(ParameterType.PARAMETER_STRING,
                                       "safe command: zero (the spec's safe value) | hold (last good command); "
                                       "empty = the spec's choice")),
    "command_lower": ([], _descriptor(ParameterType.PARAMETER_DOUBLE_ARRAY,
                                      "per-actuator lower command limits (may only tighten the spec's); "
                                      "empty = the spec's")),
    "command_upper": ([], _descriptor(ParameterType.PARAMETER_DOUBLE_ARRAY,
                                      "per-actuator upper command limits (may only tighten the spec's); "
                                      "empty = the spec's")),
    "autostart": (False, _descriptor(ParameterType.PARAMETER_BOOL,
                                     "configure and activate at start-up (no lifecycle manager needed)")),
    "estop_topic": ("estop", ParameterDescriptor(
        type=ParameterType.PARAMETER_STRING, read_only=True,
        description="std_msgs/Bool topic (reliable): true forces the spec's safe value until false; "
                    "subscribed at start-up, for the node's whole life")),
    # Default false: the node's out-of-the-box users (the sim demo, bag replay, the launch files with the
    # sim bridge) have no e-stop publisher and would never command. A robot deployment with an e-stop
    # source sets it true in its YAML: then nothing moves until that source is heard saying false.
    "estop_required": (False, ParameterDescriptor(
        type=ParameterType.PARAMETER_BOOL, read_only=True,
        description="start with the e-stop engaged until the first e-stop message says false")),
    # A heartbeat: an e-stop source that dies (cable, crashed process) after saying false is otherwise never
    # noticed, since a silent topic looks like "still released". Measured on the monotonic wall clock in both
    # time modes: the e-stop is a physical device, whatever clock the simulation runs.
    "estop_timeout": (0.0, ParameterDescriptor(
        type=ParameterType.PARAMETER_DOUBLE, read_only=True,
        floating_point_range=[FloatingPointRange(from_value=0.0, to_value=60.0, step=0.0)],
        description="seconds the e-stop source may stay silent before that counts as engaged (it must then "
                    "publish its state periodically, and nothing moves until it is first heard); 0 = no "
                    "heartbeat expected")),
    "step_debug": (False, _descriptor(ParameterType.PARAMETER_BOOL,
                                      "publish ~/step_debug per tick: " + ", ".join(DEBUG_FIELDS)
                                      + ", obs, action, command")),
    "executor": ("events", ParameterDescriptor(
        type=ParameterType.PARAMETER_STRING, read_only=True,
        description="callback executor, chosen at start-up: events (rclpy's C++ EventsExecutor) | single "
                    "(rclpy's SingleThreadedExecutor)")),
    "diagnostics_period": (1.0, _descriptor(ParameterType.PARAMETER_DOUBLE,
                                            "seconds between /diagnostics reports", 0.1, 60.0)),
}


def check_param(name: str, value: Any) -> str | None:
    """Why `value` is not acceptable for parameter `name`, or None. (Ranges come from the descriptors
    too; this adds the rules a range cannot say.)"""
    if name == "rate_hz" and value != 0.0 and not RATE_RANGE[0] <= value <= RATE_RANGE[1]:
        return f"rate_hz must be 0 (the spec's rate) or within {RATE_RANGE[0]:g}..{RATE_RANGE[1]:g} Hz, got {value:g}"
    if name == "safe_behaviour" and value not in ("", "zero", "hold"):
        return f"safe_behaviour must be 'zero' or 'hold' (or empty for the spec's), got {value!r}"
    if name == "backend" and value not in ("numpy", "onnxruntime", "torch"):
        return f"backend must be numpy, onnxruntime or torch, got {value!r}"
    if name == "executor" and value not in ("events", "single"):
        return f"executor must be 'events' or 'single', got {value!r}"
    if name == "robot" and not value:
        return "robot must name a robot spec (e.g. cartpole) or a spec YAML path"
    if name == "sensor_timeout" and value < 0:
        return "sensor_timeout must be > 0 s (or 0 for the spec's)"
    if name == "soft_start" and value < 0 and value != -1.0:
        return "soft_start must be >= 0 s (or -1 for the spec's)"
    if name in ("command_lower", "command_upper"):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or not all(  # rclpy: array('d')
                isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v) for v in value):
            return f"{name} must be a list of numbers (one per actuator), got {str(value)[:80]}"
        if len(value) > MAX_ACTUATORS:
            return f"{name} has {len(value)} values; at most {MAX_ACTUATORS} (one per actuator)"
    if name == "estop_topic":
        from rclpy.validate_topic_name import validate_topic_name

        try:
            validate_topic_name(value)
        except Exception as exc:  # InvalidTopicNameException, or a non-string
            return f"estop_topic {value!r} is not a valid topic name: {str(exc).splitlines()[0]}"
    if name == "use_sim_time" and not isinstance(value, bool):
        return f"use_sim_time must be true or false, got {value!r}"
    return None


@dataclass
class _Settings:
    """The effective configuration, resolved from parameters and the spec at configure."""

    rate_hz: float
    sensor_timeout: float
    soft_start: float
    safe_behaviour: str
    model: Path
    use_sim_time: bool


def clock_ns(clock: Clock) -> Callable[[], int]:
    """A function returning clock.now().nanoseconds without building an rclpy Time each call
    (~0.9 against ~2.6 us; the sim-time loop reads the clock twice per tick)."""
    handle = clock.handle

    def now_ns() -> int:
        with handle:
            return handle.get_now().nanoseconds

    return now_ns


class _SimTicker:
    """The control loop under use_sim_time, driven by the node's ROS clock (sim time).

    Sim time moves only when a /clock message arrives, and the executor thread is the one that handles
    it: rclpy's TimeSource sets the clock from it. So the tick runs right there, on the executor thread,
    once sim time reaches the deadline. A loop thread woken from the callback cost a wake-up and a GIL
    hand-over per tick: about 20 us at the median and milliseconds in the tail on a loaded machine, most
    of a 500 Hz lockstep tick's wall time.

    How it hears of the new time: given the TimeSource's /clock subscription (`clock_sub`), it wraps that
    subscription's callback: rclpy's own handler sets the clock, then the tick reads the time from the
    message. Otherwise a jump callback on the clock does it, which costs a Python shim, a TimeJump and a
    clock read per /clock on top (~10 us a tick in the lockstep loop). Same times either way: the clock
    reads exactly the message's time once the handler has run, and a /clock that does not move the time
    reaches no deadline.

    Deadlines are absolute in sim time (next = previous deadline + period); the first /clock starts the
    epoch, a deadline passed by a whole period or more is skipped and counted, and sim time going
    backwards (the simulation restarted) starts a new epoch.
    """

    def __init__(self, clock: Clock, period_ns: int, tick: Any, overrun: Any, new_epoch: Any, died: Any,
                 clock_sub: Any = None):
        self._now_ns, self._period = clock_ns(clock), period_ns
        self._tick, self._overrun, self._new_epoch, self._died = tick, overrun, new_epoch, died
        self._last: int | None = None  # sim ns of the previous tick, or of the epoch's start
        self._deadline = 0
        # Ticks run on the executor thread, and so do lifecycle transitions, unless a caller drives the
        # node from another thread: the lock keeps a tick and close() apart either way.
        self._lock = threading.Lock()
        self._closed = False
        self._sub = self._set_time = self._handle = None
        if clock_sub is not None and callable(getattr(clock_sub, "callback", None)):
            self._sub, self._set_time = clock_sub, clock_sub.callback
            clock_sub.callback = self._on_clock
        else:
            self._handle = clock.create_jump_callback(
                JumpThreshold(min_forward=Duration(nanoseconds=1), min_backward=Duration(nanoseconds=-1),
                              on_clock_change=True),
                post_callback=self._on_jump)

    def _on_clock(self, msg: Any) -> None:
        self._set_time(msg)  # rclpy's TimeSource handler: the node's clock now reads msg.clock
        stamp = msg.clock
        self._on_time(stamp.sec * 1_000_000_000 + stamp.nanosec)

    def _on_jump(self, jump: Any) -> None:
        self._on_time(self._now_ns())

    def _on_time(self, now: int) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self._advance(now)
            except Exception as exc:  # a bug must not leave the robot on its last command
                self._closed = True
                self._died(exc)

    def _advance(self, now: int) -> None:
        if now <= 0:  # no /clock yet
            return
        last, period = self._last, self._period
        if last is None:  # the first /clock starts the epoch; the first tick comes one period later
            self._last, self._deadline = now, now + period
            return
        if now < last:  # sim time went backwards (the simulation was restarted): a new epoch
            self._new_epoch()
            self._last, self._deadline = now, now + period
            return
        deadline = self._deadline
        if now < deadline:
            return
        late = now - deadline
        if late >= period:  # missed whole periods: skip them, count them
            missed = late // period
            deadline += missed * period
            self._overrun(int(missed))
        self._tick(now, now - last, late)
        self._last, self._deadline = now, deadline + period

    def close(self) -> None:
        with self._lock:
            self._closed = True
        if self._sub is not None:
            self._sub.callback = self._set_time
        else:
            self._handle.unregister()


def _from_bytes(decode: Callable[[bytes], Any], cls: type, callback: Callable[[Any], None],
                reject: Callable[[str], None]) -> Callable[[bytes], None]:
    """A raw subscription's callback: `decode` the bytes (None: rclpy deserializes them), then `callback`.

    Bytes that rclpy cannot deserialize either go to `reject` and are dropped, as rmw drops them on a typed
    subscription: one corrupt sample (or a buggy publisher) must not take the controller down. If the sensor
    itself only sends such bytes, its topic goes stale and the stale-sensor safety takes over.
    """

    def on_bytes(data: bytes) -> None:
        msg = decode(data)
        if msg is None:
            try:
                msg = deserialize_message(data, cls)
            except RuntimeError as exc:  # rclpy's RMWError: not a message of this type
                reject(f"{len(data)} bytes that are not a {cls.__name__} ({str(exc).split(':')[0]}); dropped")
                return
        callback(msg)

    return on_bytes


def _refusing_impossible_transitions(node: LifecycleNode, callback: Callable[[Any, Any], Any]) -> Callable:
    """The change_state service callback, answering success=False to a transition the current state does not
    have. rclpy 9 does that itself; rclpy 7 (Jazzy) lets rcl's error out of the callback, which stops the
    executor and so the node (`ros2 lifecycle set` of a wrong transition would end the controller)."""
    def change_state(request: Any, response: Any) -> Any:
        try:
            return callback(request, response)
        except RuntimeError as exc:  # rclpy's RCLError
            transition = request.transition.label or f"id {request.transition.id}"
            node.get_logger().error(f"change_state: transition {transition} refused: {exc}")
            response.success = False
            return response
    return change_state


class LiquidController(LifecycleNode):
    def __init__(self, **kwargs: Any):
        super().__init__(NODE_NAME, **kwargs)
        service = getattr(self, "_service_change_state", None)  # rclpy's, private: wrapped where it is found
        if service is not None:
            service.callback = _refusing_impossible_transitions(self, service.callback)
        self._configured = False
        self.add_on_set_parameters_callback(self._on_set_parameters)
        accept_ints_for_doubles(self, [n for n, (_, d) in PARAMS.items() if d.type == ParameterType.PARAMETER_DOUBLE])
        for name, (default, descriptor) in PARAMS.items():
            self.declare_parameter(name, default, descriptor)
        self._lock = threading.Lock()  # observation assembler + policy: callbacks / services vs loop
        self._thread: threading.Thread | None = None  # the wall-clock loop
        self._ticker: _SimTicker | None = None  # the sim-time loop (ticks on the executor thread)
        self._stop = threading.Event()
        self._estop = bool(self.param("estop_required"))  # required: engaged until an e-stop says false
        self._estop_heard = False
        self._estop_timeout = float(self.param("estop_timeout"))
        self._estop_last = -math.inf  # a heartbeat source is silent until first heard: no grace at start-up
        self._estop_silent = False
        self._enabled = True
        self._restart_soft_start = False  # set by ~/reset (executor thread), consumed by the next tick
        self._log_times: dict[Any, float] = {}  # fault kind -> monotonic time it was last logged
        self._last_resume_log = -math.inf
        self._activated_at = 0.0
        self._subs: list[Any] = []
        # (subscription handle, message class, raw, callback) of each sensor topic
        self._sensor_takes: list[tuple[Any, type, bool, Callable[[Any], None]]] = []
        self._pubs: list[Any] = []
        self._timers: list[Any] = []
        self.policy = None
        self.spec = None
        self.stats: diag.LoopStats | None = None
        self._cond = (diag.OK, "not configured")
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.create_service(SetBool, "~/enable", self._on_enable)
        # For the node's whole life, not only while configured: an e-stop sent before configure must hold.
        self.create_subscription(Bool, self.param("estop_topic"), self._on_estop, ESTOP_QOS)
        if self._estop:
            self.get_logger().warning("estop_required: e-stop engaged until an e-stop message says false")

    # ------------------------------------------------------------------------------- parameters
    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        for p in params:
            if p.name not in PARAMS and p.name != "use_sim_time":
                continue
            reason = check_param(p.name, p.value)
            if reason is None and self._configured and p.name in _STRUCTURAL:
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
        from liquid_control.core.resources import default_policy_path
        from liquid_control.core.spec import load_spec

        spec = load_spec(self.param("robot"))
        model = self.param("model")
        model_path = Path(model) if model else default_policy_path(spec.name)
        s = spec.safety
        rate = self.param("rate_hz") or spec.rate_hz
        if not RATE_RANGE[0] <= rate <= RATE_RANGE[1]:
            raise LiquidControlError(f"spec {spec.name!r} rate {rate:g} Hz is outside {RATE_RANGE[0]:g}..{RATE_RANGE[1]:g} Hz; "
                                     "set rate_hz")
        settings = _Settings(rate_hz=float(rate), sensor_timeout=self.param("sensor_timeout") or s.sensor_timeout,
                             soft_start=s.soft_start if self.param("soft_start") < 0 else self.param("soft_start"),
                             safe_behaviour=self.param("safe_behaviour") or s.safe_behaviour, model=model_path,
                             use_sim_time=bool(self.param("use_sim_time")))
        lower = tuple(self.param("command_lower")) or None
        upper = tuple(self.param("command_upper")) or None
        for name, given, spec_side, tighter in (("command_lower", lower, spec.action.lower, lambda g, v: g >= v),
                                                ("command_upper", upper, spec.action.upper, lambda g, v: g <= v)):
            if given is not None and (len(given) != spec.action_size
                                      or not all(tighter(g, v) for g, v in zip(given, spec_side))):
                shown = list(given) if len(given) <= 8 else f"[{len(given)} values]"
                raise LiquidControlError(f"{name} {shown} must give {spec.action_size} values within the "
                                         f"spec's limits {list(spec.action.lower)}..{list(spec.action.upper)}")
        policy = Policy.load(model_path, backend=self.param("backend"), spec=spec)
        pipeline = CommandPipeline(spec.action, settings.soft_start, settings.safe_behaviour, lower, upper)
        self.spec, self.policy, self.settings, self.pipeline = spec, policy, settings, pipeline
        self.encoder = CommandEncoder(spec.action)
        self.assembler = ObservationAssembler(spec, sensor_timeout=settings.sensor_timeout)
        self.period = 1.0 / settings.rate_hz
        # A longer dt is a gap, not a step: the state would be advanced across time it never saw data for.
        self._max_dt = max(settings.sensor_timeout, 5.0 * self.period)
        self.stats = diag.LoopStats(self.period)
        self._obs = np.zeros(spec.obs_size, np.float32)  # the policy steps in float32: convert once, here
        self._safe_action = np.full(spec.action_size, np.nan)
        n_debug = len(DEBUG_FIELDS) + spec.obs_size + 2 * spec.action_size
        self._debug_buf = np.zeros(n_debug)
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
        self._debug_pub = None
        if self.param("step_debug"):
            self._debug_pub = self.create_publisher(Float64MultiArray, "~/step_debug", DEBUG_QOS)
            self._debug_msg = Float64MultiArray()
            labels = list(DEBUG_FIELDS) + [f"obs.{x}" for x in spec.obs_labels()] + \
                [f"action.{a}" for a in spec.action.names] + [f"command.{a}" for a in spec.action.names]
            self._debug_msg.layout.dim = [MultiArrayDimension(label=",".join(labels), size=n_debug, stride=n_debug)]
        self._pubs = [self._cmd_pub, self._diag_pub] + ([self._debug_pub] if self._debug_pub else [])
        self._sensor_takes = []
        for topic in self.assembler.topics:
            cls = message_class(self.assembler.msg_types[topic])
            callback = self._sensor_callback(topic)
            # JointStates are taken serialized and read straight from their bytes (~3 us against ~10 us
            # for rclpy's message object); other types, and bytes that do not parse, go through rclpy.
            raw = self.assembler.msg_types[topic] == JOINT_STATE
            if raw:
                callback = _from_bytes(JointStateCdr.decode, cls, callback, self._undecodable(topic))
            sub = self.create_subscription(cls, topic, callback, SENSOR_QOS, raw=raw)
            self._subs.append(sub)
            self._sensor_takes.append((sub.handle, sub.msg_type, sub.raw, callback))
        steady = Clock(clock_type=ClockType.STEADY_TIME)  # diagnostics keep coming even if /clock stops
        self._timers = [self.create_timer(self.param("diagnostics_period"), self._publish_diagnostics, clock=steady)]
        self._configured = True
        self._cond = (diag.OK, "inactive: configured, not commanding")
        nominal = getattr(policy, "nominal_period", None)
        note = ""
        if nominal and abs(nominal * settings.rate_hz - 1.0) > 1e-6:
            note = f" (the policy was trained at {1 / nominal:g} Hz; it steps by the measured dt)"
        self.get_logger().info(
            f"configured: robot {spec.name!r}, model {model_path}, backend {self.param('backend')}, "
            f"{settings.rate_hz:g} Hz{note}, {'sim' if settings.use_sim_time else 'wall'} time, "
            f"sensors {list(self.assembler.topics)} -> {spec.action.topic} ({spec.action.msg_type})")

    @staticmethod
    def _diag_class() -> type:
        from diagnostic_msgs.msg import DiagnosticArray

        return DiagnosticArray

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self.policy.reset()
        self.pipeline.reset()
        self._fresh = True
        self._faulted = self._stopped = False
        self._restart_soft_start = False
        self._seq = 0
        self.stats.restart_window()
        self._activated_at = time.monotonic()
        self._stop.clear()
        if self.settings.use_sim_time:
            # rclpy's TimeSource keeps its /clock subscription in private attributes: if a release renames
            # them, the ticker falls back to a jump callback (same ticks, a little more work each).
            clock_sub = getattr(getattr(self, "_time_source", None), "_clock_sub", None)
            self._ticker = _SimTicker(self.get_clock(), int(round(self.period * 1e9)), self._sim_tick,
                                      self.stats.overrun, self._new_epoch, self._loop_died, clock_sub)
        else:
            self._thread = threading.Thread(target=self._run_loop, name="liquid_control_loop", daemon=True)
            self._thread.start()
        self._cond = (diag.OK, "active")
        self.get_logger().info(f"active: commanding at {self.settings.rate_hz:g} Hz, soft start "
                               f"{self.settings.soft_start:g} s")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_loop()
        self._publish_command(self.pipeline.stop())
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
            self._publish_command(self.pipeline.stop())
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
        self._sensor_takes = []
        self.policy = None
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
                stamp = msg.header.stamp
                self._sensor_header_ns = stamp.sec * 1_000_000_000 + stamp.nanosec
            if error is not None:
                log.error(f"bad message on {topic}: {error}", throttle_duration_sec=1.0)

        return callback

    def _undecodable(self, topic: str) -> Callable[[str], None]:
        log = self.get_logger()

        def reject(reason: str) -> None:
            log.error(f"bad message on {topic}: {reason}", throttle_duration_sec=1.0)

        return reject

    def _on_estop(self, msg: Bool) -> None:
        self._estop_last = time.monotonic()
        if bool(msg.data) != self._estop:
            self.get_logger().warning("e-stop ENGAGED: safe command" if msg.data else "e-stop released")
        self._estop = bool(msg.data)
        self._estop_heard = True

    def _estop_engaged(self) -> str | None:
        """Why the e-stop holds the robot now (a diagnostics reason), or None."""
        if self._estop:
            return "e-stop engaged" if self._estop_heard else \
                "e-stop engaged (estop_required: no e-stop message received yet)"
        if self._estop_timeout > 0.0:
            silent_for = time.monotonic() - self._estop_last
            silent = silent_for > self._estop_timeout
            if silent != self._estop_silent:
                self._estop_silent = silent
                if silent and not self._estop_heard:
                    self.get_logger().warning("estop_timeout: safe command until the e-stop source is heard")
                elif silent:
                    self.get_logger().warning(f"e-stop source silent for {silent_for:.2f} s (estop_timeout "
                                              f"{self._estop_timeout:g} s): safe command until it is heard again")
                else:
                    self.get_logger().info("e-stop source heard: within estop_timeout again")
            if silent:
                if not self._estop_heard:  # a source dead at boot must not let the robot move
                    return f"e-stop source not heard yet (estop_timeout {self._estop_timeout:g} s)"
                return f"e-stop source silent for {silent_for:.2f} s (estop_timeout {self._estop_timeout:g} s)"
        return None

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if self.policy is None:
            response.success, response.message = False, "not configured: nothing to reset"
            return response
        with self._lock:
            self.policy.reset()
            self._fresh = True
            # The zeroed state can change the command abruptly: fade it in again, as after a fault.
            self._restart_soft_start = True
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
        period, mono, sleep = self.period, time.monotonic, time.sleep
        last = mono()
        deadline = last + period
        while not self._stop.is_set():
            delay = deadline - mono()
            if delay > 0:
                sleep(delay)  # to an absolute deadline: the error does not accumulate
            now = mono()
            late = now - deadline
            if late >= period:  # missed whole periods: skip them, count them
                missed = int(late // period)
                deadline += missed * period
                self.stats.overrun(missed)
            self._guarded_tick(now, now - last, late)
            last = now
            deadline += period

    def _sim_tick(self, now_ns: int, dt_ns: int, late_ns: int) -> None:
        """One sim-time tick (on the executor thread, from the /clock callback)."""
        self._take_waiting_sensors()
        self._guarded_tick(now_ns * 1e-9, dt_ns * 1e-9, late_ns * 1e-9)

    def _take_waiting_sensors(self) -> None:
        """Decode sensor messages that arrived but whose callbacks have not run yet.

        The bridge publishes a sim instant's sensors before its /clock, so the tick at t must see them.
        The EventsExecutor runs callbacks in arrival order and they have run already (each take here
        finds nothing, ~2 us); the SingleThreadedExecutor orders by subscription, /clock first, and
        would tick on the previous sample. Taking them here makes the tick use every sample that has
        arrived, whatever the executor.
        """
        for handle, msg_type, raw, callback in self._sensor_takes:
            with handle:
                info = handle.take_message(msg_type, raw)
                while info is not None:
                    callback(info[0])
                    info = handle.take_message(msg_type, raw)

    def _new_epoch(self) -> None:
        self.get_logger().warning("sim time went backwards: restarting the loop epoch, hidden state reset")
        with self._lock:
            self.policy.reset()
            self.assembler.reset()
        self._fresh = True
        self.stats.restart_window()

    def _loop_died(self, exc: Exception) -> None:
        self.get_logger().fatal(f"control loop died: {type(exc).__name__}: {exc}; publishing the safe command")
        self._publish_command(self.pipeline.stop())
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
                    self.policy.reset()
                    self._fresh = True
                self._faulted = True
                self._publish_command(self.pipeline.stop())  # a bug is no sensor glitch: stop, never hold
            except Exception:
                pass

    def _tick(self, now: float, dt: float, late: float) -> None:
        t0 = _perf_counter()
        step_s = 0.0
        action = self._safe_action
        measured_dt = dt  # for the loop statistics; `dt` becomes what the policy steps by
        restarted = dt > self._max_dt  # a gap (sim time jumped, the loop stalled): start over, not step across
        with self._lock:
            if restarted:
                self.policy.reset()
                self._fresh = True
                self._restart_soft_start = True
            obs, fault = self.assembler.assemble(now)
            if fault is None:
                _copyto(self._obs, obs)  # our copy: the assembler's buffer changes under callbacks
            fresh = self._fresh
            restart_soft_start, self._restart_soft_start = self._restart_soft_start, False
        if restarted:
            self.stats.restarted()
            self.get_logger().warning(f"dt {dt:.3f} s exceeds {self._max_dt:.3f} s (sim time jumped or the loop "
                                      "stalled): hidden state reset, soft start", throttle_duration_sec=2.0)
            dt = self.period  # the fresh state steps by one period: there is no history to integrate over
        estop = self._estop_engaged() if (self._estop or self._estop_timeout) else None
        if estop is not None or not self._enabled:
            status, reason, level = SAFE_STOP, estop or "disabled through ~/enable", diag.WARN
        elif fault is not None:
            status, reason = SAFE_FAULT, str(fault)
            level = diag.ERROR if fault.kind == "invalid" else diag.STALE
        else:
            status, reason, level = STEPPED, "", diag.OK
        if status == STEPPED:
            pipeline = self.pipeline
            if self._faulted or self._stopped:  # first good tick after a fault or stop: soft start again
                pipeline.restart()
                mono = time.monotonic()
                if mono - self._last_resume_log >= 2.0:  # a flapping sensor must not flood the log
                    self._last_resume_log = mono
                    self.get_logger().info("good data again: resuming with soft start")
                self._faulted = self._stopped = False
            elif restart_soft_start:  # ~/reset or a dt gap: the zeroed state may change the command abruptly
                pipeline.restart()
            s0 = _perf_counter()
            try:
                with self._lock:
                    action = self.policy.step(self._obs, dt)
                    self._fresh = False
            except StepError as exc:
                status, reason, level = SAFE_POLICY, f"policy step failed: {exc}", diag.ERROR
            step_s = _perf_counter() - s0
            if status == STEPPED:
                command, ok = pipeline.apply(action, dt)
                if not ok:
                    status, reason, level = SAFE_POLICY, "policy output is not finite", diag.ERROR
        if status != STEPPED:
            command = self._safe_tick(status, reason, level, fault)
        self._cond = (level, reason or "active")
        self._publish_command(command)
        tick_s = _perf_counter() - t0
        s2c = (self._publish_wall - self._sensor_header_ns * 1e-9
               if self._measure_s2c and self._sensor_header_ns else math.nan)
        self.stats.record(now, measured_dt, late, step_s, tick_s, status != STEPPED, s2c)
        if self._debug_pub is not None:
            self._publish_debug(now, dt, late, step_s, status, fresh, action, command)
        self._seq += 1

    def _safe_tick(self, status: int, reason: str, level: int, fault: Any) -> np.ndarray:
        """The command of a tick that cannot use the policy's, with the state reset and the log it needs."""
        if status == SAFE_STOP:  # e-stop / disabled: the spec's safe value even under 'hold'
            command = self.pipeline.stop()
            self._stopped = True
        else:  # a sensor fault or policy error: zero or hold, as configured
            command = self.pipeline.safe()
            self._faulted = True
        if not self._fresh:  # the state has seen bad or no data: start from zero when good data returns
            with self._lock:
                self.policy.reset()
                self._fresh = True
        # At most once per 2 s per kind of trouble, whether it persists or comes and goes (a sensor
        # hovering around the timeout flips every few ticks); a new kind is logged at once. (The reason
        # text itself changes every tick for a stale sensor: it carries the age.)
        key = (status, fault.kind, fault.topic) if status == SAFE_FAULT else (status, reason)
        mono = time.monotonic()
        if mono - self._log_times.get(key, -math.inf) >= 2.0:
            self._log_times[key] = mono
            if level == diag.WARN:
                self.get_logger().warning(f"safe command: {reason}")
            else:
                self.get_logger().error(f"safe command: {reason}")
        self.stats.flag(level, reason)
        return command

    def _publish_command(self, command: np.ndarray) -> None:
        if not self._pubs:
            return
        msg = self.encoder.publishable(command, self._clock_ns() if self._stamp_command else None)
        self._publish_wall = time.time()
        self._cmd_pub.publish(msg)

    def _publish_debug(self, now: float, dt: float, late: float, step_s: float, status: int,
                       fresh: bool, action: np.ndarray, command: np.ndarray) -> None:
        with self._lock:
            ages = [a for a in self.assembler.ages(now).values() if a is not None]
        age = min(ages) if ages else math.nan
        b, k, n = self._debug_buf, len(DEBUG_FIELDS), self.spec.obs_size
        b[:k] = (self._seq, now, dt, late, step_s, age, self._sensor_header_ns * 1e-9, self._publish_wall,
                 status, fresh)
        b[k:k + n] = self._obs
        b[k + n:k + n + self.spec.action_size] = action
        b[k + n + self.spec.action_size:] = command
        self._debug_msg.data = b.tolist()
        self._debug_pub.publish(self._debug_msg)

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
            "estop": str(self._estop or self._estop_silent).lower(),
            "enabled": str(self._enabled).lower(),
            "soft_start_factor": f"{self.pipeline.ramp:.3f}",
            "model": str(self.settings.model),
            "backend": str(self.param("backend")),
        }
        for topic, age in ages.items():
            values[f"age_{topic}_ms"] = "never" if age is None else f"{age * 1e3:.1f}"
        self._diag_pub.publish(diag.diagnostic_array(f"{self.get_name()}: control loop", self.spec.name, snap,
                                                     self.get_clock().now().nanoseconds, values))


def main(args: list[str] | None = None) -> int:
    """Entry point of `ros2 run liquid_control controller` and `liquid-control run`."""
    import signal

    from liquid_control.ros.params import init_and_create

    # Our own SIGINT/SIGTERM handling: stop the loop and publish the safe command *before* rclpy's
    # context goes down (rclpy's handler would shut the context first, and the publish would fail).
    stop = threading.Event()
    node = init_and_create(LiquidController, f"{NODE_NAME}: bad parameter", args)
    if node is None:
        return 2
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    # The executor runs callbacks only (the loop has its own thread). rclpy's C++ EventsExecutor costs
    # about half the CPU of the Python SingleThreadedExecutor under a 1 kHz sensor stream and leaves
    # the GIL free more of the time, so the loop thread wakes on time (bench/bench_loop.py measures it).
    executor = None
    if node.param("executor") == "events":
        try:
            from rclpy.experimental import EventsExecutor
        except ImportError:  # Humble's rclpy has none: the node still runs, on the Python executor
            node.get_logger().warning("executor 'events': this rclpy has no rclpy.experimental.EventsExecutor "
                                   "(Humble); using the SingleThreadedExecutor")
        else:
            executor = EventsExecutor()
    if executor is None:
        executor = SingleThreadedExecutor()
    executor.add_node(node)
    if node.autostart and not _autostart(node):
        # Without a lifecycle manager nobody would ever configure it: fail fast, so that the launcher (launch's
        # on_exit / respawn, systemd) sees it. A lifecycle-managed node (autostart false) stays alive instead.
        node.get_logger().fatal("autostart failed: exiting (exit code 1)")
        executor.remove_node(node)
        node.destroy_node()
        rclpy.try_shutdown()
        return 1
    # As in the sim bridge: the configured node lives as long as the process, so the collector need not walk
    # it again (a full pass took ~15-30 ms in the middle of a lockstep run; younger ones a few us a tick).
    gc.collect()
    gc.freeze()
    try:
        if isinstance(executor, SingleThreadedExecutor):
            while not stop.is_set() and rclpy.ok():
                executor.spin_once(timeout_sec=0.1)
        else:
            # The EventsExecutor runs every event for 0.1 s in C++ (spin_once would come back to this
            # Python loop after each callback: two or three times per lockstep tick). A future that never
            # completes: only the timeout ends each round, and `stop` is checked between rounds.
            never = Future()
            while not stop.is_set() and rclpy.ok():
                executor.spin_until_future_complete(never, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        try:
            node.trigger_shutdown()  # active: stop the loop and publish the safe command once
        except Exception:  # already finalized
            pass
        executor.remove_node(node)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def _autostart(node: LiquidController) -> bool:
    """configure + activate; whether both succeeded."""
    return (node.trigger_configure() == TransitionCallbackReturn.SUCCESS
            and node.trigger_activate() == TransitionCallbackReturn.SUCCESS)


if __name__ == "__main__":
    sys.exit(main())
