"""Command message codecs: every spec command type encodes and decodes back to the same vector."""
import dataclasses

import numpy as np
import pytest

from liquid_control.core.errors import SpecError
from liquid_control.core.spec import FLOAT64_ARRAY, JOINT_STATE, TWIST, load_spec
from liquid_control.core.command import decode_command
from liquid_control.ros.messages import CommandEncoder, message_class

BASE = load_spec("cartpole").action


@pytest.mark.parametrize("msg_type, names", [
    (FLOAT64_ARRAY, ("a", "b", "c")),
    (JOINT_STATE, ("a", "b", "c")),
    (TWIST, ("linear.x", "angular.z", "linear.y")),
])
def test_encode_then_decode_is_identity_and_message_is_reused(msg_type, names):
    action = dataclasses.replace(BASE, msg_type=msg_type, names=names, scale=(1.0,) * 3, lower=(-9.0,) * 3,
                                 upper=(9.0,) * 3, safe=(0.0,) * 3, rate_limit=None)
    enc = CommandEncoder(action)
    assert isinstance(enc.msg, message_class(msg_type))
    for cmd in (np.array([0.5, -1.25, 3.0]), np.array([-2.0, 0.0, 7.5])):
        msg = enc.encode(cmd, stamp_ns=1_500_000_000)
        assert msg is enc.msg
        np.testing.assert_array_equal(decode_command(msg, action), cmd)
    if msg_type == JOINT_STATE:
        assert list(msg.name) == list(names) and (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1, 500_000_000)
    if msg_type == TWIST:
        assert (msg.linear.x, msg.angular.z, msg.linear.y, msg.angular.x) == (-2.0, 0.0, 7.5, 0.0)


def test_joint_state_command_decoded_by_name():
    from sensor_msgs.msg import JointState

    action = dataclasses.replace(BASE, msg_type=JOINT_STATE, names=("a", "b"), scale=(1.0, 1.0),
                                 lower=(-1.0, -1.0), upper=(1.0, 1.0), safe=(0.0, 0.0))
    msg = JointState(name=["b", "a"], effort=[2.0, 1.0])
    np.testing.assert_array_equal(decode_command(msg, action), [1.0, 2.0])
    with pytest.raises(SpecError, match="lacks actuator 'a'"):
        decode_command(JointState(name=["b"], effort=[1.0]), action)


def test_message_class_names():
    from sensor_msgs.msg import Imu

    assert message_class("sensor_msgs/msg/Imu") is Imu and message_class("sensor_msgs/Imu") is Imu
    with pytest.raises(SpecError, match="not available"):
        message_class("nonexistent_msgs/msg/Thing")
    with pytest.raises(SpecError, match="not a ROS message type name"):
        message_class("JointState")
