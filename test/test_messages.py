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


@pytest.mark.parametrize("n", [1, 2, 5])
def test_float64_array_cdr_matches_rclpy_serialization_both_ways(n):
    from rclpy.serialization import deserialize_message, serialize_message
    from std_msgs.msg import Float64MultiArray

    from liquid_control.ros.messages import Float64ArrayCdr

    values = np.random.default_rng(n).normal(size=n) * 10.0 ** np.arange(n)
    msg = Float64MultiArray(data=values.tolist())
    ours, theirs = Float64ArrayCdr(n).encode(values.tolist()), serialize_message(msg)
    # Same bytes except the 4 padding bytes before the doubles, which rclpy leaves uninitialised.
    assert len(ours) == len(theirs) and ours[:16] == theirs[:16] and ours[20:] == theirs[20:]
    assert list(deserialize_message(ours, Float64MultiArray).data) == values.tolist()
    decoded = Float64ArrayCdr.decode(theirs)
    assert decoded.dtype == np.float64 and decoded.tolist() == values.tolist()


def test_float64_array_cdr_leaves_other_layouts_to_rclpy():
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Float64MultiArray, MultiArrayDimension

    from liquid_control.ros.messages import Float64ArrayCdr

    msg = Float64MultiArray(data=[1.0, 2.0])
    msg.layout.dim = [MultiArrayDimension(label="x", size=2, stride=2)]
    assert Float64ArrayCdr.decode(serialize_message(msg)) is None  # a layout with dims
    assert Float64ArrayCdr.decode(serialize_message(Float64MultiArray(data=[1.0]))[:-4]) is None  # truncated
    assert Float64ArrayCdr.decode(b"\x00\x00\x00\x00" + bytes(24)) is None  # big-endian encapsulation


def test_clock_cdr_matches_rclpy_serialization():
    from rclpy.serialization import serialize_message
    from rosgraph_msgs.msg import Clock

    from liquid_control.ros.messages import ClockCdr, set_stamp

    cdr = ClockCdr()
    for ns in (0, 2_000_000, 12_345_678_901, 2**31 * 1_000_000_000 - 1):
        msg = Clock()
        set_stamp(msg.clock, ns)
        assert cdr.encode(ns) == serialize_message(msg)


def test_publishable_is_the_serialized_message_for_float64_arrays_and_the_message_otherwise():
    from rclpy.serialization import deserialize_message
    from std_msgs.msg import Float64MultiArray

    enc = CommandEncoder(dataclasses.replace(BASE, msg_type=FLOAT64_ARRAY, names=("a", "b"), scale=(1.0,) * 2,
                                             lower=(-9.0,) * 2, upper=(9.0,) * 2, safe=(0.0,) * 2))
    data = enc.publishable(np.array([0.25, -3.5]))
    assert list(deserialize_message(data, Float64MultiArray).data) == [0.25, -3.5]
    enc = CommandEncoder(dataclasses.replace(BASE, msg_type=JOINT_STATE, names=("a",), scale=(1.0,),
                                             lower=(-9.0,), upper=(9.0,), safe=(0.0,)))
    assert enc.publishable(np.array([0.5]), stamp_ns=3) is enc.msg and list(enc.msg.effort) == [0.5]


@pytest.mark.parametrize("names, frame_id", [(["slider", "hinge"], ""), (["a"], "base_link"),
                                             (["joint_0", "j1", "shoulder"], "w"), ([], "")])
def test_joint_state_cdr_both_ways_agrees_with_rclpy(names, frame_id):
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import JointState

    from liquid_control.ros.messages import JointStateCdr, set_stamp

    position, velocity, effort = np.random.default_rng(len(names)).normal(size=(3, len(names)))
    data = JointStateCdr(names, frame_id).encode(12_345_678_901, position, velocity, effort)
    msg = deserialize_message(data, JointState)
    assert list(msg.name) == names and msg.header.frame_id == frame_id
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 345_678_901)
    assert list(msg.position) == position.tolist() and list(msg.velocity) == velocity.tolist()
    assert list(msg.effort) == effort.tolist()
    # And back: rclpy's bytes (which may carry trailing padding) read as rclpy reads them, including
    # arrays of other lengths than the names (empty ones have no alignment padding).
    for sizes in ((len(names),) * 3, (len(names), 0, len(names)), (0, 2, 1)):
        ref = JointState(name=names, position=position.tolist()[:sizes[0]] + [1.5] * (sizes[0] - len(names)),
                         velocity=[0.25] * sizes[1], effort=effort.tolist()[:sizes[2]] + [-2.0] * (sizes[2] - len(names)))
        ref.header.frame_id = frame_id
        set_stamp(ref.header.stamp, 12_345_678_901)
        view = JointStateCdr.decode(serialize_message(ref))
        assert view.name == tuple(names) and view.header.frame_id == frame_id
        assert (view.header.stamp.sec, view.header.stamp.nanosec) == (12, 345_678_901)
        assert (list(view.position), list(view.velocity), list(view.effort)) == \
            (list(ref.position), list(ref.velocity), list(ref.effort))
    assert JointStateCdr.decode(b"\x00\x00\x00\x00" + data[4:]) is None  # big endian: rclpy's business
    assert JointStateCdr.decode(data[:20]) is None  # truncated
