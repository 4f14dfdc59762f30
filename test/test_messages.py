"""Message codecs, both sides: the command table (core/command_types.py) drives the live encoder
(ros/messages.py, rclpy) and the bag serializer (bags/codecs.py, rosbags), and every CDR fast path
(core/cdr.py) gives the bytes its rclpy / rosbags fallback gives."""
import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message

from liquid_control.bags.codecs import CommandSerializer, build_message, command_vector, standard_definition
from liquid_control.bags.io import decode_cdr, distro_typestore
from liquid_control.core.cdr import ClockCdr, Float64ArrayCdr, JointStateCdr, read_joint_state, tuple_floats
from liquid_control.core.command_types import COMMAND_LAYOUTS, command_fields, decode_command
from liquid_control.core.errors import SpecError
from liquid_control.core.observation import ObservationAssembler
from liquid_control.core.spec import COMMAND_TYPES, FLOAT64_ARRAY, JOINT_STATE, TWIST, load_spec
from liquid_control.ros.messages import CommandEncoder, decode_joint_state, header_stamp_ns, message_class, set_stamp

SPEC = load_spec("cartpole")
NAMES = {FLOAT64_ARRAY: ("a", "b", "c"), JOINT_STATE: ("a", "b", "c"), TWIST: ("linear.x", "angular.z", "linear.y")}
COMMANDS = (np.array([0.5, -1.25, 3.0]), np.array([-2.0, 0.0, 7.5e-300]), np.array([1e300, -0.0, 2.0 ** -40]))
STAMP_NS = 12_345_678_901


def _action(msg_type, names=None):
    names = NAMES[msg_type] if names is None else names
    n = len(names)
    return dataclasses.replace(SPEC.action, msg_type=msg_type, names=names, scale=(1.0,) * n, lower=(-9.0,) * n,
                               upper=(9.0,) * n, safe=(0.0,) * n, rate_limit=None)


def _spec(msg_type, names=None):
    return dataclasses.replace(SPEC, action=_action(msg_type, names))


def test_the_table_covers_exactly_the_command_types_the_spec_accepts():
    assert set(COMMAND_LAYOUTS) == set(COMMAND_TYPES)


# --- the table: vector <-> fields ---------------------------------------------------------------
def test_command_fields_say_where_the_vector_goes():
    assert command_fields(_action(FLOAT64_ARRAY), [1, 2, 3]) == {"data": [1.0, 2.0, 3.0]}
    assert command_fields(_action(JOINT_STATE), [1, 2, 3], STAMP_NS) == {
        "effort": [1.0, 2.0, 3.0], "name": ["a", "b", "c"], "header.stamp.sec": 12, "header.stamp.nanosec": 345_678_901}
    assert command_fields(_action(JOINT_STATE), [1, 2, 3]) == {"effort": [1.0, 2.0, 3.0], "name": ["a", "b", "c"]}
    assert command_fields(_action(TWIST), [1, 2, 3]) == {"linear.x": 1.0, "angular.z": 2.0, "linear.y": 3.0}
    with pytest.raises(SpecError, match="a command of 2 values for 3 actuators"):
        command_fields(_action(TWIST), [1, 2])


def test_decode_command_reads_each_type_and_refuses_what_does_not_fit():
    from geometry_msgs.msg import Twist
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    action = _action(FLOAT64_ARRAY, ("a", "b"))
    out = decode_command(Float64MultiArray(data=[1.5, -2.0]), action)
    assert out.dtype == np.float64 and out.tolist() == [1.5, -2.0]
    # a message built by hand with integers (duck-typed: rclpy, rosbags or any object with the fields)
    out = decode_command(SimpleNamespace(data=[1, 2]), action)
    assert out.dtype == np.float64 and out.tolist() == [1.0, 2.0]
    with pytest.raises(SpecError, match="Float64MultiArray command has 3 values, expected 2"):
        decode_command(Float64MultiArray(data=[1.0, 2.0, 3.0]), action)
    action = _action(JOINT_STATE, ("a", "b"))
    assert decode_command(JointState(name=["b", "x", "a"], effort=[2.0, 7.0, -1.0]), action).tolist() == [-1.0, 2.0]
    with pytest.raises(SpecError, match="JointState command has 2 effort values for 3 names"):
        decode_command(JointState(name=["b", "x", "a"], effort=[2.0, 7.0]), action)
    with pytest.raises(SpecError, match="JointState command lacks actuator 'b'"):
        decode_command(JointState(name=["a", "x"], effort=[2.0, 7.0]), action)
    out = decode_command(SimpleNamespace(name=["a", "b"], effort=[3, 4]), action)
    assert out.dtype == np.float64 and out.tolist() == [3.0, 4.0]
    twist = Twist()
    twist.linear.x, twist.linear.z, twist.angular.z = 0.5, 9.0, -1.25
    out = decode_command(twist, _action(TWIST, ("angular.z", "linear.x")))
    assert out.dtype == np.float64 and out.tolist() == [-1.25, 0.5]
    with pytest.raises(SpecError, match="unsupported command type 'std_msgs/msg/String'"):
        decode_command(object(), dataclasses.replace(action, msg_type="std_msgs/msg/String"))
    # the bag side's wrapper answers None instead
    assert command_vector(Float64MultiArray(data=[1.0]), _spec(FLOAT64_ARRAY, ("a", "b"))) is None


# --- the live side: one reused message ---------------------------------------------------------------
@pytest.mark.parametrize("msg_type", [FLOAT64_ARRAY, JOINT_STATE, TWIST])
def test_encoder_reuses_one_message_that_decodes_back_to_the_vector(msg_type):
    action = _action(msg_type)
    enc = CommandEncoder(action)
    assert isinstance(enc.msg, message_class(msg_type))
    for cmd in COMMANDS:
        msg = enc.encode(cmd, stamp_ns=1_500_000_000)
        assert msg is enc.msg
        np.testing.assert_array_equal(decode_command(msg, action), cmd)
    if msg_type == JOINT_STATE:
        assert list(msg.name) == list(action.names) and (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1, 500_000_000)
    if msg_type == TWIST:  # the axes the spec does not name stay 0
        assert (msg.linear.x, msg.angular.z, msg.linear.y, msg.angular.x, msg.linear.z) == (1e300, -0.0, 2.0 ** -40, 0, 0)


def test_publishable_is_the_serialized_message_for_float64_arrays_and_the_message_otherwise():
    from std_msgs.msg import Float64MultiArray

    enc = CommandEncoder(_action(FLOAT64_ARRAY, ("a", "b")))
    data = enc.publishable(np.array([0.25, -3.5]))
    assert list(deserialize_message(data, Float64MultiArray).data) == [0.25, -3.5]
    enc = CommandEncoder(_action(JOINT_STATE, ("a",)))
    assert enc.publishable(np.array([0.5]), stamp_ns=3) is enc.msg and list(enc.msg.effort) == [0.5]


def test_message_class_names():
    from sensor_msgs.msg import Imu

    assert message_class("sensor_msgs/msg/Imu") is Imu and message_class("sensor_msgs/Imu") is Imu
    with pytest.raises(SpecError, match="not available"):
        message_class("nonexistent_msgs/msg/Thing")
    with pytest.raises(SpecError, match="not a ROS message type name"):
        message_class("JointState")


# --- both sides: the same bytes, and a round trip through each ----------------------------------------
def _rclpy_bytes(enc, cmd):
    """The live side's fallback: rclpy serializing the encoder's message."""
    return serialize_message(enc.encode(cmd, STAMP_NS))


def _padding_free(msg_type, data):
    """rclpy leaves alignment padding uninitialised; in a Float64MultiArray that is the 4 bytes before the
    doubles: blank them for comparison."""
    return data[:16] + bytes(4) + data[20:] if msg_type == FLOAT64_ARRAY else data


@pytest.mark.parametrize("msg_type", [FLOAT64_ARRAY, JOINT_STATE, TWIST])
def test_live_and_bag_sides_write_the_same_bytes_and_read_each_others(msg_type):
    spec, ts = _spec(msg_type), distro_typestore()
    enc, ser = CommandEncoder(spec.action), CommandSerializer(spec, ts)
    for cmd in COMMANDS:
        live, bag = _rclpy_bytes(enc, cmd), ser.serialize_message(cmd, STAMP_NS)
        assert ser.serialize(cmd, STAMP_NS) == bag  # the bag side's fast path (if any) = its rosbags fallback
        if msg_type == FLOAT64_ARRAY:  # the live side's fast path = the bag side's bytes = rclpy's
            assert enc.publishable(cmd) == bag == _padding_free(msg_type, live)
        # live -> bag: rclpy's bytes, decoded as a bag's recorded command. rclpy leaves alignment padding
        # uninitialised and may append some, so its bytes are compared once rosbags has rewritten them.
        recorded, _ = decode_cdr(ts, live, msg_type)
        assert bytes(ts.serialize_cdr(recorded, msg_type)) == bag
        np.testing.assert_array_equal(command_vector(recorded, spec), cmd)
        # bag -> live: a replayed command from a bag, taken by an rclpy subscriber (the sim bridge)
        taken = deserialize_message(bag, message_class(msg_type))
        np.testing.assert_array_equal(decode_command(taken, spec.action), cmd)
        if msg_type == JOINT_STATE:
            assert (taken.header.stamp.sec, taken.header.stamp.nanosec) == (12, 345_678_901)


def test_bag_serializer_uses_rosbags_for_a_bag_with_its_own_float64_array_definition():
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    own = get_typestore(Stores.EMPTY)
    own.register(get_types_from_msg("float64[] data\nint32 extra\n", FLOAT64_ARRAY))
    assert not standard_definition(own, FLOAT64_ARRAY) and standard_definition(distro_typestore(), FLOAT64_ARRAY)
    ser = CommandSerializer(_spec(FLOAT64_ARRAY), own)
    data = ser.serialize(COMMANDS[0], STAMP_NS)
    msg, _ = decode_cdr(own, data, FLOAT64_ARRAY)
    assert msg.extra == 0 and msg.data.tolist() == COMMANDS[0].tolist()


def test_build_message_fills_every_other_field_with_zeros_as_rclpy_does():
    from geometry_msgs.msg import TwistStamped

    ts = distro_typestore()
    msg = build_message(ts, "sensor_msgs/msg/Imu", {"angular_velocity.y": 2.5, "header.frame_id": "imu"})
    assert msg.angular_velocity.y == 2.5 and msg.angular_velocity.x == 0.0 and msg.header.frame_id == "imu"
    assert msg.orientation_covariance.tolist() == [0.0] * 9 and msg.orientation_covariance.dtype == np.float64
    ref = TwistStamped()
    ref.twist.angular.y, ref.header.frame_id = 2.5, "base"
    ours = build_message(ts, "geometry_msgs/msg/TwistStamped", {"twist.angular.y": 2.5, "header.frame_id": "base"})
    theirs, _ = decode_cdr(ts, serialize_message(ref), "geometry_msgs/msg/TwistStamped")
    assert ours == theirs


# --- the fixed-layout fast paths against rclpy ----------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 5])
def test_float64_array_cdr_matches_rclpy_serialization_both_ways(n):
    from std_msgs.msg import Float64MultiArray

    values = np.random.default_rng(n).normal(size=n) * 10.0 ** np.arange(n)
    msg = Float64MultiArray(data=values.tolist())
    ours, theirs = Float64ArrayCdr(n).encode(values.tolist()), serialize_message(msg)
    assert ours == _padding_free(FLOAT64_ARRAY, theirs)
    assert list(deserialize_message(ours, Float64MultiArray).data) == values.tolist()
    decoded = Float64ArrayCdr.decode(theirs)
    assert decoded.dtype == np.float64 and decoded.tolist() == values.tolist()


def test_float64_array_cdr_leaves_other_layouts_to_rclpy():
    from std_msgs.msg import Float64MultiArray, MultiArrayDimension

    msg = Float64MultiArray(data=[1.0, 2.0])
    msg.layout.dim = [MultiArrayDimension(label="x", size=2, stride=2)]
    assert Float64ArrayCdr.decode(serialize_message(msg)) is None  # a layout with dims
    assert Float64ArrayCdr.decode(serialize_message(Float64MultiArray(data=[1.0]))[:-4]) is None  # truncated
    assert Float64ArrayCdr.decode(b"\x00\x00\x00\x00" + bytes(24)) is None  # big-endian encapsulation


def test_clock_cdr_matches_rclpy_serialization():
    from rosgraph_msgs.msg import Clock

    cdr = ClockCdr()
    for ns in (0, 2_000_000, STAMP_NS, 2**31 * 1_000_000_000 - 1):
        msg = Clock()
        set_stamp(msg.clock, ns)
        assert cdr.encode(ns) == serialize_message(msg)


@pytest.mark.parametrize("names, frame_id", [(["slider", "hinge"], ""), (["a"], "base_link"),
                                             (["joint_0", "j1", "shoulder"], "w"), ([], "")])
def test_joint_state_cdr_both_ways_agrees_with_rclpy_and_rosbags(names, frame_id):
    from sensor_msgs.msg import JointState

    position, velocity, effort = np.random.default_rng(len(names)).normal(size=(3, len(names)))
    data = JointStateCdr(names, frame_id).encode(STAMP_NS, position, velocity, effort)
    msg = deserialize_message(data, JointState)
    assert list(msg.name) == names and msg.header.frame_id == frame_id
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 345_678_901)
    assert list(msg.position) == position.tolist() and list(msg.velocity) == velocity.tolist()
    assert list(msg.effort) == effort.tolist()
    ts = distro_typestore()  # rosbags writes zero padding, as JointStateCdr does: the same bytes exactly
    fields = {"header.stamp.sec": 12, "header.stamp.nanosec": 345_678_901, "header.frame_id": frame_id,
              "name": names, "position": position, "velocity": velocity, "effort": effort}
    assert bytes(ts.serialize_cdr(build_message(ts, JOINT_STATE, fields), JOINT_STATE)) == data
    # And back: rclpy's bytes (which may carry trailing padding) read as rclpy reads them, including
    # arrays of other lengths than the names (empty ones have no alignment padding).
    for sizes in ((len(names),) * 3, (len(names), 0, len(names)), (0, 2, 1)):
        ref = JointState(name=names, position=position.tolist()[:sizes[0]] + [1.5] * (sizes[0] - len(names)),
                         velocity=[0.25] * sizes[1], effort=effort.tolist()[:sizes[2]] + [-2.0] * (sizes[2] - len(names)))
        ref.header.frame_id = frame_id
        set_stamp(ref.header.stamp, STAMP_NS)
        fields = decode_joint_state(serialize_message(ref))
        assert fields.name == names and fields.frame_id == frame_id
        assert (fields.sec, fields.nanosec) == (12, 345_678_901) and header_stamp_ns(fields) == header_stamp_ns(ref)
        assert (list(fields.position), list(fields.velocity), list(fields.effort)) == \
            (list(ref.position), list(ref.velocity), list(ref.effort))
    assert decode_joint_state(b"\x00\x00\x00\x00" + data[4:]) is None  # big endian: rclpy's business
    assert decode_joint_state(data[:20]) is None  # truncated
    assert read_joint_state(data, tuple_floats).trailing == 0


def test_the_assembler_reads_decoded_joint_state_fields_as_it_reads_the_rclpy_message():
    from sensor_msgs.msg import JointState

    spec = load_spec("cartpole")
    topic = spec.observation[0].topic
    joints = sorted({n for e in spec.observation if e.msg_type == JOINT_STATE for n in e.names})
    for names in (joints, joints[::-1] + ["other"], joints[:1]):  # any order, extra joints, one missing
        ref = JointState(name=names, position=[0.5 + i for i in range(len(names))],
                         velocity=[-1.0 - i for i in range(len(names))], effort=[0.0] * len(names))
        set_stamp(ref.header.stamp, STAMP_NS)
        by_fields, by_message = ObservationAssembler(spec), ObservationAssembler(spec)
        errors = (by_fields.update(topic, decode_joint_state(serialize_message(ref)), 1.0),
                  by_message.update(topic, ref, 1.0))
        assert errors[0] == errors[1] and (errors[0] is None) == (len(names) > 1)
        assert by_fields.assemble(1.0)[0].tolist() == by_message.assemble(1.0)[0].tolist()
