"""The sim bridge's sensor topics: each topic of the spec filled from MuJoCo state and published.

The values come from the same readers as the Gymnasium env's observation (liquid_control.sim.observe), so
a controller assembling its vector from these messages sees exactly what the policy saw in training:
stamped JointState with position, velocity and effort of the spec's joints; Imu from gyro /
accelerometer / framequat sensors; PointStamped goals; Float64MultiArray.
"""
from __future__ import annotations

from typing import Any, Iterator

from rclpy.node import Node
from rclpy.serialization import serialize_message

from liquid_control.core.cdr import JointStateCdr
from liquid_control.core.spec import IMU, JOINT_STATE, POINT_STAMPED, RobotSpec
from liquid_control.ros.messages import message_class, set_stamp
from liquid_control.ros.qos import SENSOR_PUB_QOS


class MessageFiller:
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


class SensorPublisher:
    """Every sensor topic of the spec, published for the env's current MuJoCo state."""

    def __init__(self, node: Node, env: Any, spec: RobotSpec):
        import mujoco

        from liquid_control.sim.observe import TopicReader

        self._mujoco, self._env = mujoco, env
        self.readers = [TopicReader(env.model, env.data, spec, t) for t in spec.topics]
        # Sensors and site/body positions describe the previous substep right after a step: recomputed before
        # publishing when a topic reads them.
        self._needs_forward = any(r.needs_forward for r in self.readers)
        self._needs_kinematics = any(r.needs_kinematics for r in self.readers)
        self.fillers = [MessageFiller(r, spec) for r in self.readers]
        self.pubs = [node.create_publisher(f.msg_class, r.topic, SENSOR_PUB_QOS)
                     for f, r in zip(self.fillers, self.readers)]

    def topics(self) -> list[tuple[str, str]]:
        """(topic, message type) of each sensor topic."""
        return [(r.topic, r.msg_type) for r in self.readers]

    def publish(self, stamp_ns: int) -> None:
        """Publish each sensor topic for the current MuJoCo state, stamped `stamp_ns`."""
        if self._needs_forward:
            self._mujoco.mj_forward(self._env.model, self._env.data)
        elif self._needs_kinematics:
            self._mujoco.mj_kinematics(self._env.model, self._env.data)
        for filler, pub in zip(self.fillers, self.pubs):
            pub.publish(filler.publishable(stamp_ns))

    def published(self) -> Iterator[tuple[str, bytes]]:
        """(topic, serialized message) of what publish() sent last."""
        for filler, reader in zip(self.fillers, self.readers):
            yield reader.topic, filler.serialized()
