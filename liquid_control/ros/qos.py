"""QoS profiles of the controller's topics, and why.

Sensors: BEST_EFFORT, KEEP_LAST 1, VOLATILE. A best-effort subscription matches both best-effort
publishers (drivers and `ros2 bag play` often use SensorDataQoS) and reliable ones (the rclpy/rclcpp
default): a RELIABLE subscription would silently never connect to a best-effort publisher. Depth 1
because the controller only ever wants the newest sample: nothing queues up behind a slow tick, and a
1 kHz stream costs one callback per message, never a backlog. (Reliable retransmission of an old sensor
sample is useless to a controller anyway: the next sample supersedes it.)

E-stop: RELIABLE, KEEP_LAST 10, VOLATILE. Unlike a sensor sample, an e-stop `True` is not superseded
by the next message: losing it is unsafe, so it must be delivered reliably (a best-effort subscription
dropped a single `True` under load in testing). The price: a best-effort e-stop publisher does not
connect — publish e-stops reliably (the rclpy/rclcpp and `ros2 topic pub` default). The latest value
latches in the node until a new one arrives (`False` releases).

Command: RELIABLE, KEEP_LAST 1, VOLATILE. A reliable publisher matches both reliable subscribers
(ros2_control's forward_command_controller uses the system default, reliable) and best-effort ones;
depth 1 because a stale command must never be delivered after a newer one.

Command, on the receiving side (the sim bridge, like a motor driver): BEST_EFFORT, KEEP_LAST 1,
VOLATILE. It matches reliable and best-effort command publishers alike; only the newest command
matters. A reliable subscription makes every command cost an acknowledgement round (heartbeat,
ACKNACK, handled on both processes' DDS threads, a sizeable part of a 500 Hz lockstep tick; bench sim
measures it) for a repair that cannot come in time: with one command in flight per
lockstep tick, a lost one would only be noticed at the writer's next periodic heartbeat (3 s in Fast
DDS), after the bridge's lockstep timeout.

Sim bridge publishers (sensors and /clock): RELIABLE, KEEP_LAST 10, VOLATILE. A reliable publisher
matches both reliable and best-effort subscribers (the controller's are best effort); depth 10 so that
a recorder sees every sample.

Diagnostics: RELIABLE, depth 10, as diagnostic_aggregator and rqt expect. Step debug: RELIABLE with a
deep queue, so that a test or recorder sees every tick.
"""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy


def _volatile(depth: int, reliability: ReliabilityPolicy) -> QoSProfile:
    """Keep-last `depth`, volatile: every profile here differs only in depth and reliability."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability,
                      durability=DurabilityPolicy.VOLATILE)


SENSOR_QOS = _volatile(1, ReliabilityPolicy.BEST_EFFORT)
ESTOP_QOS = _volatile(10, ReliabilityPolicy.RELIABLE)
COMMAND_QOS = _volatile(1, ReliabilityPolicy.RELIABLE)
COMMAND_SUB_QOS = _volatile(1, ReliabilityPolicy.BEST_EFFORT)
SENSOR_PUB_QOS = _volatile(10, ReliabilityPolicy.RELIABLE)
CLOCK_QOS = SENSOR_PUB_QOS
DIAGNOSTICS_QOS = _volatile(10, ReliabilityPolicy.RELIABLE)
DEBUG_QOS = _volatile(1000, ReliabilityPolicy.RELIABLE)
