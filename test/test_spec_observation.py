"""The robot spec and the observation assembler, on real rclpy and rosbags message objects."""
import math

import numpy as np
import pytest
from sensor_msgs.msg import Imu, JointState

from liquid_control.core.errors import SpecError
from liquid_control.core.observation import ObservationAssembler
from liquid_control.core.spec import layout_difference, load_spec, parse_spec

CARTPOLE = load_spec("cartpole")


def joint_state(names, pos, vel):
    msg = JointState()
    msg.name, msg.position, msg.velocity = list(names), [float(v) for v in pos], [float(v) for v in vel]
    return msg


def test_cartpole_spec_loads_by_name_and_has_stable_hash():
    assert CARTPOLE.obs_size == 4 and CARTPOLE.action_size == 1
    assert CARTPOLE.topics == ("joint_states",)
    assert CARTPOLE.hash == load_spec(CARTPOLE.source).hash
    assert len(CARTPOLE.hash) == 16


def test_joint_state_matched_by_name_in_any_order():
    asm = ObservationAssembler(CARTPOLE)
    assert asm.update("joint_states", joint_state(["hinge", "extra", "slider"], [0.1, 9.0, -0.5], [2.0, 9.0, 3.0]), 1.0) is None
    obs, fault = asm.assemble(1.05)
    assert fault is None
    np.testing.assert_allclose(obs, [-0.5, 0.1, 3.0, 2.0])


def test_rosbags_messages_decode_the_same():
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    JS, Header, Time = ts.types["sensor_msgs/msg/JointState"], ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]
    msg = JS(header=Header(stamp=Time(sec=0, nanosec=0), frame_id=""), name=["slider", "hinge"],
             position=np.array([1.0, 2.0]), velocity=np.array([3.0, 4.0]), effort=np.array([]))
    asm = ObservationAssembler(CARTPOLE)
    assert asm.update("joint_states", msg, 0.0) is None
    np.testing.assert_allclose(asm.assemble(0.0)[0], [1.0, 2.0, 3.0, 4.0])


@pytest.mark.parametrize("msg, reason", [
    (joint_state(["slider", "hinge"], [0.0, math.nan], [0.0, 0.0]), "non-finite value in JointState.position[hinge]"),
    (joint_state(["slider", "hinge"], [0.0, math.inf], [0.0, 0.0]), "non-finite"),
    (joint_state(["slider"], [0.0], [0.0]), "joint 'hinge' missing"),
    (joint_state(["slider", "hinge"], [0.0, 0.0, 1.0], [0.0, 0.0]), "3 values for 2 names"),
    (joint_state(["slider", "hinge"], [0.0, 0.0], []), "JointState.velocity is empty"),
])
def test_bad_message_is_rejected_whole_and_marks_topic_invalid(msg, reason):
    asm = ObservationAssembler(CARTPOLE)
    asm.update("joint_states", joint_state(["slider", "hinge"], [1, 2], [3, 4]), 0.0)
    err = asm.update("joint_states", msg, 0.01)
    assert err is not None and reason in err
    obs, fault = asm.assemble(0.02)
    np.testing.assert_allclose(obs, [1, 2, 3, 4])  # last good values, nothing half-written
    assert fault.kind == "invalid" and reason in fault.reason
    asm.update("joint_states", joint_state(["slider", "hinge"], [5, 6], [7, 8]), 0.03)
    assert asm.assemble(0.03)[1] is None


def test_missing_then_stale():
    asm = ObservationAssembler(CARTPOLE)
    assert asm.assemble(0.0)[1].kind == "missing"
    asm.update("joint_states", joint_state(["slider", "hinge"], [0, 0], [0, 0]), 1.0)
    assert asm.assemble(1.0 + CARTPOLE.safety.sensor_timeout * 0.9)[1] is None
    fault = asm.assemble(1.0 + CARTPOLE.safety.sensor_timeout * 1.1)[1]
    assert fault.kind == "stale" and "timeout" in fault.reason


def test_imu_and_scaling():
    spec = parse_spec({
        "robot": "t", "rate_hz": 100,
        "observation": [{"topic": "imu", "type": "sensor_msgs/Imu", "field": "angular_velocity", "axes": ["z", "x"],
                         "scale": [2.0, 1.0], "offset": [1.0, 0.0]}],
        "action": {"topic": "cmd", "type": "std_msgs/msg/Float64MultiArray", "names": ["a"]},
    })
    msg = Imu()
    msg.angular_velocity.x, msg.angular_velocity.z = 3.0, 4.0
    asm = ObservationAssembler(spec)
    assert asm.update("imu", msg, 0.0) is None
    np.testing.assert_allclose(asm.assemble(0.0)[0], [(4.0 - 1.0) * 2.0, 3.0])


@pytest.mark.parametrize("patch, message", [
    ({"rate_hz": 0}, "rate_hz"),
    ({"observation": [{"topic": "x", "type": "sensor_msgs/msg/Foo", "field": "a"}]}, "unsupported message type"),
    ({"observation": [{"topic": "x", "type": "sensor_msgs/msg/JointState", "field": "pos", "joints": ["a"]}]}, "no field 'pos'"),
    ({"observation": [{"topic": "x", "type": "sensor_msgs/msg/JointState", "field": "position"}]}, "need 'joints'"),
    ({"action": {"topic": "c", "type": "std_msgs/msg/String", "names": ["a"]}}, "unsupported command type"),
    ({"action": {"topic": "c", "type": "std_msgs/msg/Float64MultiArray", "names": ["a"], "scale": [1, 2]}}, "expected 1 values"),
    ({"action": {"topic": "c", "type": "std_msgs/msg/Float64MultiArray", "names": ["a"], "safe": 5,
                 "limits": {"lower": -1, "upper": 1}}}, "outside the limits"),
    ({"observation": [{"topic": "x", "type": "sensor_msgs/msg/JointState", "field": "position", "joints": ["a"],
                       "encode": "polar"}]}, "unknown encode 'polar'"),
    ({"observation": [{"topic": "x", "type": "sensor_msgs/msg/JointState", "field": "velocity", "joints": ["a"],
                       "encode": "sincos"}]}, "JointState positions .angles. only"),
])
def test_bad_spec_names_the_problem(patch, message):
    data = {"robot": "t", "rate_hz": 50,
            "observation": [{"topic": "js", "type": "sensor_msgs/msg/JointState", "field": "position", "joints": ["a"]}],
            "action": {"topic": "c", "type": "std_msgs/msg/Float64MultiArray", "names": ["a"]}}
    data.update(patch)
    with pytest.raises(SpecError, match=message):
        parse_spec(data)


def test_unknown_robot_lists_known_ones():
    with pytest.raises(SpecError, match="unknown robot 'nope'.*cartpole"):
        load_spec("nope")


def test_layout_difference_names_the_field():
    other = CARTPOLE.layout()
    other["observation"][1]["names"] = ["slider", "pole"]
    assert layout_difference(CARTPOLE.layout(), other) == \
        "observation[1].names is ['slider', 'pole'], expected ['slider', 'hinge']"
    assert layout_difference(CARTPOLE.layout(), CARTPOLE.layout()) is None


def test_joint_state_from_another_publisher_is_ignored_but_partial_overlap_is_a_fault():
    asm = ObservationAssembler(CARTPOLE)
    asm.update("joint_states", joint_state(["slider", "hinge"], [1, 2], [3, 4]), 0.0)
    # A gripper driver on the same topic: none of our joints -> ignored, values and freshness kept.
    assert asm.update("joint_states", joint_state(["finger"], [9.0], [9.0]), 0.05) is None
    obs, fault = asm.assemble(0.1)
    assert fault is None and asm.ignored == 1
    np.testing.assert_allclose(obs, [1, 2, 3, 4])
    assert asm.assemble(0.0 + CARTPOLE.safety.sensor_timeout + 0.01)[1].kind == "stale"  # it did not refresh
    # Some of ours but not all: a broken message from our driver.
    err = asm.update("joint_states", joint_state(["slider", "finger"], [0, 0], [0, 0]), 0.1)
    assert "joint 'hinge' missing" in err


@pytest.mark.parametrize("action_patch, message", [
    ({"scale": float("nan")}, "finite"),
    ({"scale": float("inf")}, "finite"),
    ({"limits": {"lower": float("nan"), "upper": 1.0}}, "finite"),
    ({"rate_limit": float("inf")}, "finite"),
    ({"scale": "fast"}, "expected a number"),
])
def test_non_finite_spec_numbers_are_refused(action_patch, message):
    action = {"topic": "c", "type": "std_msgs/msg/Float64MultiArray", "names": ["a"], **action_patch}
    with pytest.raises(SpecError, match=message):
        parse_spec({"robot": "t", "rate_hz": 50, "action": action,
                    "observation": [{"topic": "js", "type": "sensor_msgs/msg/JointState", "field": "position", "joints": ["a"]}]})


def test_negative_array_index_is_refused():
    with pytest.raises(SpecError, match=r"index\[1\]: expected an index >= 0, got -1"):
        parse_spec({"robot": "t", "rate_hz": 50,
                    "observation": [{"topic": "x", "type": "std_msgs/msg/Float64MultiArray", "field": "data", "index": [0, -1]}],
                    "action": {"topic": "c", "type": "std_msgs/msg/Float64MultiArray", "names": ["a"]}})


SINCOS_SPEC = {
    "robot": "arm", "rate_hz": 50,
    "observation": [
        {"topic": "js", "type": "sensor_msgs/msg/JointState", "field": "position", "joints": ["j0", "j1"],
         "encode": "sincos", "offset": [0.5, 0.0]},
        {"topic": "js", "type": "sensor_msgs/msg/JointState", "field": "velocity", "joints": ["j0", "j1"]}],
    "action": {"topic": "c", "type": "std_msgs/msg/Float64MultiArray", "names": ["j0", "j1"]},
}


def test_sincos_encodes_each_angle_after_the_offset_cosines_first():
    spec = parse_spec(SINCOS_SPEC)
    assert spec.obs_size == 6
    assert spec.obs_labels()[:4] == ["cos(JointState.position[j0])", "cos(JointState.position[j1])",
                                     "sin(JointState.position[j0])", "sin(JointState.position[j1])"]
    asm = ObservationAssembler(spec)
    q0 = 0.5 + 2 * math.pi + 0.3  # a continuous joint wound once around: the same pose as 0.5 + 0.3
    assert asm.update("js", joint_state(["j1", "j0"], [-1.2, q0], [4.0, 3.0]), 0.0) is None
    obs, fault = asm.assemble(0.0)
    assert fault is None
    np.testing.assert_allclose(obs, [math.cos(0.3), math.cos(-1.2), math.sin(0.3), math.sin(-1.2), 3.0, 4.0],
                               rtol=0, atol=1e-12)


def test_encode_is_part_of_the_layout_only_where_set():
    plain = dict(SINCOS_SPEC, observation=[dict(SINCOS_SPEC["observation"][0]), SINCOS_SPEC["observation"][1]])
    del plain["observation"][0]["encode"]
    a, b = parse_spec(SINCOS_SPEC), parse_spec(plain)
    assert "encode" not in b.layout()["observation"][0]  # specs without it keep the hashes they always had
    assert a.hash != b.hash
    assert layout_difference(a.layout(), b.layout()) == "observation[0].encode is None, expected 'sincos'"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_imu_values_are_refused_like_joint_states(value):
    spec = parse_spec({
        "robot": "t", "rate_hz": 100,
        "observation": [{"topic": "imu", "type": "sensor_msgs/Imu", "field": "angular_velocity", "axes": ["x", "y"]}],
        "action": {"topic": "cmd", "type": "std_msgs/msg/Float64MultiArray", "names": ["a"]},
    })
    asm = ObservationAssembler(spec)
    good = Imu()
    good.angular_velocity.x, good.angular_velocity.y = 1.0, 2.0
    assert asm.update("imu", good, 0.0) is None
    bad = Imu()
    bad.angular_velocity.x, bad.angular_velocity.y = 1.0, value
    err = asm.update("imu", bad, 0.01)
    assert err is not None and "non-finite" in err
    obs, fault = asm.assemble(0.01)
    assert fault.kind == "invalid"
    np.testing.assert_allclose(obs, [1.0, 2.0])  # the last good sample, nothing half-written


def _spec(observation, **extra):
    return parse_spec({"robot": "t", "rate_hz": 50, "observation": observation, **extra,
                       "action": {"topic": "c", "type": "std_msgs/msg/Float64MultiArray", "names": ["a"]}})


def test_float64_array_entries_pick_their_indices_then_offset_and_scale():
    from std_msgs.msg import Float64MultiArray

    spec = _spec([{"topic": "arr", "type": "std_msgs/msg/Float64MultiArray", "field": "data", "index": [2, 0],
                   "offset": [1.0, 0.5], "scale": [2.0, -1.0]}])
    asm = ObservationAssembler(spec)
    msg = Float64MultiArray(data=[4.0, 9.0, 3.0])  # exactly as long as index 2 needs
    assert asm.update("arr", msg, 0.0) is None
    assert asm.assemble(0.0)[0].tolist() == [(3.0 - 1.0) * 2.0, (4.0 - 0.5) * -1.0]  # [4.0, -3.5]
    err = asm.update("arr", Float64MultiArray(data=[4.0, 9.0]), 0.01)
    assert err == "Float64MultiArray has 2 values, index 2 needed"
    err = asm.update("arr", Float64MultiArray(data=[math.inf, 9.0, 3.0]), 0.02)
    assert err == "non-finite value in Float64MultiArray.data[0]"  # the second entry of index [2, 0]
    assert asm.assemble(0.02)[0].tolist() == [4.0, -3.5]


def test_dotted_fields_reach_nested_messages():
    from geometry_msgs.msg import TwistStamped

    spec = _spec([{"topic": "vel", "type": "geometry_msgs/msg/TwistStamped", "field": "twist.angular",
                   "axes": ["z", "x"]}])
    msg = TwistStamped()
    msg.twist.angular.x, msg.twist.angular.z, msg.twist.linear.z = 1.5, -2.0, 7.0
    asm = ObservationAssembler(spec)
    assert asm.update("vel", msg, 0.0) is None
    assert asm.assemble(0.0)[0].tolist() == [-2.0, 1.5]


def test_joint_state_offset_and_scale_and_three_entries_in_spec_order():
    spec = _spec([
        {"topic": "js", "type": "sensor_msgs/msg/JointState", "field": "position", "joints": ["a"],
         "offset": [1.0], "scale": [2.0]},
        {"topic": "js", "type": "sensor_msgs/msg/JointState", "field": "velocity", "joints": ["a", "b"]},
        {"topic": "js", "type": "sensor_msgs/msg/JointState", "field": "effort", "joints": ["b"], "scale": [0.5]}])
    msg = joint_state(["b", "a"], [9.0, 4.0], [-1.0, 3.0])
    msg.effort = [6.0, 0.0]
    asm = ObservationAssembler(spec)
    assert asm.update("js", msg, 0.0) is None
    # (4 - 1) * 2 = 6; velocities a, b = 3, -1; effort b * 0.5 = 3
    assert asm.assemble(0.0)[0].tolist() == [6.0, 3.0, -1.0, 3.0]


def test_sincos_applies_the_scale_to_the_angle():
    spec = _spec([{"topic": "js", "type": "sensor_msgs/msg/JointState", "field": "position", "joints": ["j"],
                   "encode": "sincos", "offset": [0.25], "scale": [2.0]}])
    asm = ObservationAssembler(spec)
    assert asm.update("js", joint_state(["j"], [1.0], [0.0]), 0.0) is None
    np.testing.assert_allclose(asm.assemble(0.0)[0], [math.cos(1.5), math.sin(1.5)], rtol=0, atol=1e-15)


def test_message_of_the_wrong_type_is_a_fault_not_a_crash():
    spec = _spec([{"topic": "imu", "type": "sensor_msgs/msg/Imu", "field": "angular_velocity", "axes": ["x"]}])
    asm = ObservationAssembler(spec)
    err = asm.update("imu", joint_state(["a"], [1.0], [1.0]), 0.0)
    assert err.startswith("message does not fit the spec (AttributeError: ")
    fault = asm.assemble(0.0)[1]
    assert (fault.kind, fault.topic, fault.reason) == ("invalid", "imu", err)
    assert str(fault) == f"imu: {err}"


def test_message_without_names_on_a_joint_state_topic_is_ignored():
    asm = ObservationAssembler(CARTPOLE)
    assert asm.update("joint_states", Imu(), 0.0) is None
    assert asm.update("joint_states", Imu(), 0.01) is None
    assert asm.ignored == 2
    assert asm.update("elsewhere", Imu(), 0.01) is None  # a topic the spec does not use
    assert asm.ignored == 2 and asm.assemble(0.01)[1].kind == "missing"


def test_faults_name_topic_and_reason_and_the_timeout_is_inclusive():
    asm = ObservationAssembler(CARTPOLE, sensor_timeout=0.25)
    assert asm.spec is CARTPOLE and asm.sensor_timeout == 0.25
    assert asm.msg_types == {"joint_states": "sensor_msgs/msg/JointState"}
    fault = asm.fault(0.0)
    assert (fault.kind, fault.topic, fault.reason) == ("missing", "joint_states", "no message received yet")
    assert asm.ages(0.0) == {"joint_states": None}
    asm.update("joint_states", joint_state(["slider", "hinge"], [1, 2], [3, 4]), 1.0)
    assert asm.fault(1.25) is None  # exactly the timeout old: still fresh
    assert asm.ages(1.25) == {"joint_states": 0.25}
    assert asm.ages(0.5) == {"joint_states": 0.0}  # a clock behind the stamp: never a negative age
    fault = asm.fault(1.5)
    assert (fault.kind, fault.topic, fault.reason) == ("stale", "joint_states",
                                                       "last message 0.500 s old (timeout 0.25 s)")


def test_reset_forgets_values_and_stamps():
    asm = ObservationAssembler(CARTPOLE)
    asm.update("joint_states", joint_state(["slider", "hinge"], [1, 2], [3, 4]), 0.0)
    asm.reset()
    obs, fault = asm.assemble(0.0)
    assert obs.tolist() == [0.0, 0.0, 0.0, 0.0] and fault.kind == "missing"


def test_clip_bounds_raw_values_before_offset_and_scale_on_both_sides():
    """`clip` (Hopper-v5's +-10 on joint velocities): the assembler bounds the raw value as the env does,
    so a policy sees the same numbers on the robot as in training. Hand-computed values."""
    spec = parse_spec({
        "robot": "t", "rate_hz": 100,
        "observation": [
            {"topic": "js", "type": "sensor_msgs/msg/JointState", "field": "velocity", "joints": ["a", "b"],
             "clip": {"low": -10, "high": 10}, "scale": 0.5, "offset": 1.0},
            {"topic": "imu", "type": "sensor_msgs/msg/Imu", "field": "angular_velocity", "axes": ["x", "y"],
             "clip": {"low": [-1.0, -2.0], "high": [1.0, 2.0]}},
        ],
        "action": {"topic": "cmd", "type": "std_msgs/msg/Float64MultiArray", "names": ["a"]},
    })
    asm = ObservationAssembler(spec)
    assert asm.update("js", joint_state(["b", "a"], [0.0, 0.0], [-25.0, 15.0]), 0.0) is None
    imu = Imu()
    imu.angular_velocity.x, imu.angular_velocity.y = -3.0, 1.5
    assert asm.update("imu", imu, 0.0) is None
    np.testing.assert_array_equal(asm.assemble(0.0)[0], [(10 - 1) * 0.5, (-10 - 1) * 0.5, -1.0, 1.5])
    assert asm.update("js", joint_state(["a", "b"], [0.0, 0.0], [3.0, -4.0]), 0.0) is None  # inside: untouched
    np.testing.assert_array_equal(asm.assemble(0.0)[0][:2], [(3 - 1) * 0.5, (-4 - 1) * 0.5])


def test_a_topic_with_its_own_timeout_goes_stale_on_its_own_clock():
    """An operator's command (cmd_vel at 10 Hz, timeout 0.5 s) beside joint states (the robot's 0.1 s): each
    topic is judged by its own timeout, tick by tick; entries on one topic share theirs; the node's
    sensor_timeout (the assembler's argument) replaces only the robot's default."""
    from geometry_msgs.msg import Twist

    spec = _spec([{"topic": "js", "type": "sensor_msgs/msg/JointState", "field": "position", "joints": ["a"]},
                  {"topic": "cmd_vel", "type": "geometry_msgs/msg/Twist", "field": "linear", "axes": ["x"],
                   "timeout": 0.5},
                  {"topic": "cmd_vel", "type": "geometry_msgs/msg/Twist", "field": "angular", "axes": ["z"]}],
                 safety={"sensor_timeout": 0.1})
    assert [e.timeout for e in spec.observation] == [None, 0.5, None]
    asm = ObservationAssembler(spec)
    assert asm.timeouts == {"js": 0.1, "cmd_vel": 0.5}
    asm.update("cmd_vel", Twist(), 0.0)
    for k in range(1, 6):  # joint states every 0.1 s, no new command: fresh up to 0.5 s inclusive
        t = 0.1 * k
        asm.update("js", joint_state(["a"], [0.0], [0.0]), t)
        assert asm.fault(t) is None, t
    asm.update("js", joint_state(["a"], [0.0], [0.0]), 0.6)
    fault = asm.fault(0.6)
    assert (fault.kind, fault.topic, fault.reason) == ("stale", "cmd_vel", "last message 0.600 s old (timeout 0.5 s)")
    asm.update("cmd_vel", Twist(), 0.6)
    assert asm.fault(0.6) is None
    fault = asm.fault(0.75)  # the joint states are 0.15 s old: stale on the robot's 0.1 s
    assert (fault.kind, fault.topic) == ("stale", "js") and "timeout 0.1 s" in fault.reason
    assert ObservationAssembler(spec, sensor_timeout=0.2).timeouts == {"js": 0.2, "cmd_vel": 0.5}
    # What a model depends on is unchanged by a timeout: the layout has none.
    assert "timeout" not in spec.observation[1].layout()


@pytest.mark.parametrize("timeout, message", [
    (0, "observation.1..timeout"), (-1, "observation.1..timeout"), (float("nan"), "observation.1..timeout"),
    (float("inf"), "observation.1..timeout"), ("soon", "observation.1..timeout"), (1e9, "observation.1..timeout"),
])
def test_a_timeout_that_would_switch_the_watchdog_off_is_refused(timeout, message):
    with pytest.raises(SpecError, match=message):
        _spec([{"topic": "js", "type": "sensor_msgs/msg/JointState", "field": "position", "joints": ["a"]},
               {"topic": "cmd_vel", "type": "geometry_msgs/msg/Twist", "field": "linear", "timeout": timeout}])


def test_entries_on_one_topic_must_not_name_different_timeouts():
    with pytest.raises(SpecError, match=r"observation\[1\].timeout: 0.3 s, but observation\[0\] on the same topic "
                                        r"'cmd_vel' says 0.5 s"):
        _spec([{"topic": "cmd_vel", "type": "geometry_msgs/msg/Twist", "field": "linear", "timeout": 0.5},
               {"topic": "cmd_vel", "type": "geometry_msgs/msg/Twist", "field": "angular", "timeout": 0.3}])
