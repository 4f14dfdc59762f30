"""URDF robots: MuJoCo compiles the URDF, the spec adds what it lacks (liquid_control/sim/urdf.py), and each
ros2_control command interface moves a joint as a ros2_control hardware would (liquid_control/sim/actuators.py).

The interface tests use a one-joint pendulum without gravity, so the expected motion is computed by hand:
the link (mass 2 kg, centre of mass 0.5 m from the axis, own inertia 0.1 kg m^2 about it) has I = 0.1 + 2 * 0.5^2
= 0.6 kg m^2 about the joint.
"""
from __future__ import annotations

import struct
from pathlib import Path

import mujoco
import numpy as np
import pytest
import yaml

from liquid_control.core.errors import SpecError
from liquid_control.core.spec import layout_difference, load_spec, parse_spec
from liquid_control.sim.actuators import actuator_interface
from liquid_control.sim.env import SpecEnv

INERTIA = 0.6  # kg m^2 about the joint (module docstring)

PENDULUM_URDF = """<?xml version="1.0"?>
<robot name="pendulum">
  <link name="world"/>
  <joint name="mount" type="fixed"><parent link="world"/><child link="base_link"/></joint>
  <link name="base_link">
    <inertial><mass value="1.0"/><inertia ixx="0.01" iyy="0.01" izz="0.01" ixy="0" ixz="0" iyz="0"/></inertial>
    {base_visual}
  </link>
  <joint name="swing" type="revolute">
    <parent link="base_link"/><child link="arm"/><origin xyz="0 0 1"/><axis xyz="0 1 0"/>
    <limit lower="-2.0" upper="2.0" effort="20.0" velocity="3.0"/>
  </joint>
  <link name="arm">
    <inertial><origin xyz="0 0 0.5"/><mass value="2.0"/>
      <inertia ixx="0.1" iyy="0.1" izz="0.01" ixy="0" ixz="0" iyz="0"/></inertial>
  </link>
  {ros2_control}
</robot>
"""

ROS2_CONTROL = """<ros2_control name="P" type="system">
    <hardware><plugin>mock_components/GenericSystem</plugin></hardware>
    <joint name="swing">
      <command_interface name="{interface}"><param name="min">{low}</param><param name="max">{high}</param></command_interface>
      <param name="kp">80.0</param>
      <param name="kd">12.0</param>
      <state_interface name="position"/><state_interface name="velocity"/>
    </joint>
  </ros2_control>"""


def pendulum_spec(action: dict | None = None, **sim) -> dict:
    return {"robot": "pendulum", "rate_hz": 50.0,
            "observation": [{"topic": "joint_states", "type": "sensor_msgs/msg/JointState", "field": "position",
                             "joints": ["swing"]}],
            "action": {"names": ["swing"], **(action or {"interface": "effort"})},
            "sim": {"urdf": "pendulum.urdf", "physics": {"timestep": 0.002, "gravity": [0.0, 0.0, 0.0]}, **sim}}


def make_robot(tmp_path: Path, spec: dict, ros2_control: str = "", base_visual: str = "") -> Path:
    (tmp_path / "pendulum.urdf").write_text(PENDULUM_URDF.format(ros2_control=ros2_control, base_visual=base_visual))
    path = tmp_path / "pendulum.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def at_rest(env: SpecEnv, command: float) -> None:
    env.reset(options={"qpos": np.zeros(env.model.nq), "qvel": np.zeros(env.model.nv)})
    assert env.apply_command([command])


# ---- the spec: action.interface -------------------------------------------------------------------------
@pytest.mark.parametrize("interface", ["position", "velocity", "effort"])
def test_interface_defaults_to_its_forward_command_controller(interface):
    spec = parse_spec(pendulum_spec({"interface": interface}))
    a = spec.action
    assert (a.topic, a.msg_type, a.interface) == (f"{interface}_controller/commands",
                                                  "std_msgs/msg/Float64MultiArray", interface)
    assert spec.layout()["action"]["interface"] == interface


def test_interface_is_in_the_layout_only_when_set():
    cartpole = load_spec("cartpole")
    assert cartpole.action.interface is None and "interface" not in cartpole.layout()["action"]
    data = yaml.safe_load(cartpole.source.read_text())
    data["action"]["interface"] = "effort"
    with_interface = parse_spec(data)
    assert with_interface.hash != cartpole.hash
    assert layout_difference(with_interface.layout(), cartpole.layout()) == "action.interface is None, expected 'effort'"


@pytest.mark.parametrize("action,sim,message", [
    ({"names": ["swing"]}, {}, "action: missing key 'topic' (or give 'interface'"),
    ({"names": ["swing"], "topic": "cmd"}, {}, "action: missing key 'type' (or give 'interface'"),
    ({"names": ["swing"], "interface": "position", "type": "sensor_msgs/msg/JointState"}, {},
     "action.interface: joint commands through an interface are std_msgs/msg/Float64MultiArray"),
    ({"names": ["swing"], "interface": "effort"}, {"mjcf": "x.xml"}, "sim: give mjcf or urdf, not both"),
    ({"names": ["swing"], "interface": "effort"}, {"urdf": None, "mjcf": "x.xml"},
     "sim.physics: completes a URDF (sim.urdf); an MJCF says it in its own XML"),
    ({"names": ["swing"], "interface": "effort"}, {"floor": "yes"}, "sim.floor: expected true or false"),
    ({"names": ["swing"], "interface": "effort"}, {"drives": ["swing"]}, "sim.drives: expected a mapping"),
])
def test_spec_mistakes(action, sim, message):
    data = pendulum_spec(**sim)
    data["sim"] = {k: v for k, v in data["sim"].items() if v is not None}
    data["action"] = action
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    assert message in str(err.value)


# ---- the interfaces, by hand ------------------------------------------------------------------------------
def test_effort_gives_the_hand_computed_acceleration_from_rest(tmp_path):
    env = SpecEnv(make_robot(tmp_path, pendulum_spec(drives={"swing": {"gear": 3.0}})))
    assert actuator_interface(env.model, 0) == "effort"
    at_rest(env, 2.0)
    mujoco.mj_forward(env.model, env.data)
    assert env.data.qacc[0] == pytest.approx(3.0 * 2.0 / INERTIA, rel=1e-9)  # gear * command / I = 10 rad/s^2
    env.advance(0.002)
    assert env.data.qvel[0] == pytest.approx(10.0 * 0.002, rel=1e-9)


def test_effort_command_limits_come_from_the_urdf_effort(tmp_path):
    env = SpecEnv(make_robot(tmp_path, pendulum_spec()))
    np.testing.assert_array_equal(env.model.actuator_ctrlrange, [[-20.0, 20.0]])


def test_velocity_command_gives_that_joint_velocity(tmp_path):
    env = SpecEnv(make_robot(tmp_path, pendulum_spec({"interface": "velocity"}, drives={"swing": {"kd": 50.0}})))
    assert actuator_interface(env.model, 0) == "velocity"
    np.testing.assert_array_equal(env.model.actuator_ctrlrange, [[-3.0, 3.0]])  # the URDF's velocity limit
    at_rest(env, 1.5)
    env.advance(0.5)  # time constant I / kd = 12 ms
    assert env.data.qvel[0] == pytest.approx(1.5, abs=1e-9)
    env.apply_command([-1.0])
    env.advance(0.5)
    assert env.data.qvel[0] == pytest.approx(-1.0, abs=1e-9)


def test_position_target_is_reached_by_the_pd_loop(tmp_path):
    # kd near critical damping, 2 sqrt(kp I) = 15.5: the error decays as exp(-12.9 t)
    env = SpecEnv(make_robot(tmp_path, pendulum_spec({"interface": "position"},
                                                     drives={"swing": {"kp": 100.0, "kd": 15.0}})))
    assert actuator_interface(env.model, 0) == "position"
    at_rest(env, 0.1)
    mujoco.mj_forward(env.model, env.data)
    assert env.data.qacc[0] == pytest.approx(100.0 * 0.1 / INERTIA, rel=1e-9)  # kp * error / I from rest
    at_rest(env, 0.7)
    mujoco.mj_forward(env.model, env.data)
    assert env.data.qacc[0] == pytest.approx(20.0 / INERTIA, rel=1e-9)  # kp * 0.7 = 70 N m: the URDF's effort 20
    env.advance(2.0)
    assert env.data.qpos[0] == pytest.approx(0.7, abs=1e-6)
    assert env.data.qvel[0] == pytest.approx(0.0, abs=1e-6)
    env.apply_command([5.0])  # beyond the joint's range: clamped to the URDF's upper limit, 2.0
    env.advance(2.0)
    assert env.data.qpos[0] == pytest.approx(2.0, abs=1e-3)


def test_the_env_step_applies_the_interface(tmp_path):
    """Through SpecEnv.step: a policy action a becomes the target a * scale."""
    spec = pendulum_spec({"interface": "position", "scale": 1.5}, drives={"swing": {"kp": 100.0, "kd": 15.0}})
    env = SpecEnv(make_robot(tmp_path, spec))
    env.reset(options={"qpos": np.zeros(1), "qvel": np.zeros(1)})
    for _ in range(100):
        obs, *_ = env.step(np.array([0.4]))
    assert obs[0] == pytest.approx(0.6, abs=1e-6)


# ---- the <ros2_control> block as defaults, the spec as overrides -----------------------------------------
def test_ros2_control_block_gives_interface_limits_and_gains(tmp_path):
    block = ROS2_CONTROL.format(interface="position", low=-1.0, high=1.5)
    env = SpecEnv(make_robot(tmp_path, pendulum_spec({"topic": "cmd", "type": "std_msgs/msg/Float64MultiArray"}),
                             ros2_control=block))
    m = env.model
    assert actuator_interface(m, 0) == "position"
    np.testing.assert_array_equal(m.actuator_ctrlrange, [[-1.0, 1.5]])
    np.testing.assert_array_equal(m.actuator_biasprm[0, :3], [0.0, -80.0, -12.0])


def test_the_spec_overrides_the_block(tmp_path):
    block = ROS2_CONTROL.format(interface="position", low=-1.0, high=1.5)
    spec = pendulum_spec({"interface": "position"}, drives={"swing": {"kp": 30.0, "upper": 0.5}})
    m = SpecEnv(make_robot(tmp_path, spec, ros2_control=block)).model
    np.testing.assert_array_equal(m.actuator_ctrlrange, [[-1.0, 0.5]])
    np.testing.assert_array_equal(m.actuator_biasprm[0, :3], [0.0, -30.0, -12.0])


# ---- what else the spec adds ------------------------------------------------------------------------------
def test_imu_at_a_link_reads_the_joint_rate(tmp_path):
    spec = pendulum_spec(imu={"link": "arm", "pos": [0.0, 0.0, 0.5]})
    spec["observation"] += [
        {"topic": "imu", "type": "sensor_msgs/msg/Imu", "field": "angular_velocity", "axes": ["y"],
         "sim": {"sensor": "imu_gyro"}},
        {"topic": "imu", "type": "sensor_msgs/msg/Imu", "field": "orientation", "axes": ["y", "w"],
         "sim": {"sensor": "imu_quat"}},
        {"topic": "up", "type": "std_msgs/msg/Float64MultiArray", "field": "data", "index": [0, 1, 2],
         "sim": {"sensor": "imu_up"}}]
    env = SpecEnv(make_robot(tmp_path, spec))
    env.reset(options={"qpos": np.array([0.3]), "qvel": np.array([1.25])})
    obs = env.sim_state_observation()
    # Tilted 0.3 rad about y: the world's up axis, seen from the link, leans back by 0.3 rad.
    np.testing.assert_allclose(obs, [0.3, 1.25, np.sin(0.15), np.cos(0.15), -np.sin(0.3), 0.0, np.cos(0.3)],
                               atol=1e-12)
    assert mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_SENSOR, "imu_accel") >= 0


def test_floor_floating_base_sites_and_cameras(tmp_path):
    spec = pendulum_spec(floor=True, floating=True, sites={"tip": {"link": "arm", "pos": [0.0, 0.0, 1.0]}},
                         cameras={"side": {"pos": [0.0, -3.0, 1.0], "xyaxes": [1, 0, 0, 0, 0, 1]}})
    env = SpecEnv(make_robot(tmp_path, spec))
    m = env.model
    np.testing.assert_allclose(m.cam("side").pos, [0.0, -3.0, 1.0])
    np.testing.assert_allclose(m.cam("side").quat, [np.sqrt(0.5), np.sqrt(0.5), 0.0, 0.0], atol=1e-12)  # looks along +y
    assert m.joint("floating_base").type == mujoco.mjtJoint.mjJNT_FREE and m.nq == 8
    assert m.geom("floor").type == mujoco.mjtGeom.mjGEOM_PLANE
    mujoco.mj_forward(m, env.data)
    np.testing.assert_allclose(env.data.site("tip").xpos, [0.0, 0.0, 2.0], atol=1e-12)


def _stl(path: Path) -> None:
    """A binary STL tetrahedron."""
    tris = [((0, 0, 0), (.1, 0, 0), (0, .1, 0)), ((0, 0, 0), (0, .1, 0), (0, 0, .1)),
            ((0, 0, 0), (0, 0, .1), (.1, 0, 0)), ((.1, 0, 0), (0, 0, .1), (0, .1, 0))]
    data = b"\0" * 80 + struct.pack("<I", len(tris))
    for tri in tris:
        data += struct.pack("<3f", 0, 0, 0) + b"".join(struct.pack("<3f", *v) for v in tri) + b"\0\0"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


MESH = '<visual><geometry><mesh filename="package://my_arm_description/meshes/{name}"/></geometry></visual>'


def test_package_meshes_resolve_through_ament_prefix_path(tmp_path, monkeypatch):
    _stl(tmp_path / "install" / "share" / "my_arm_description" / "meshes" / "base.stl")
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "nothing") + ":" + str(tmp_path / "install"))
    monkeypatch.delenv("ROS_PACKAGE_PATH", raising=False)
    env = SpecEnv(make_robot(tmp_path, pendulum_spec(), base_visual=MESH.format(name="base.stl")))
    assert env.model.nmesh == 1


def test_package_meshes_resolve_through_mesh_dirs(tmp_path, monkeypatch):
    _stl(tmp_path / "assets" / "my_arm_description" / "meshes" / "base.stl")
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    monkeypatch.delenv("ROS_PACKAGE_PATH", raising=False)
    spec = pendulum_spec(mesh_dirs=["assets"])  # relative to the spec file
    assert SpecEnv(make_robot(tmp_path, spec, base_visual=MESH.format(name="base.stl"))).model.nmesh == 1


def test_a_missing_mesh_is_one_line_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "install"))
    monkeypatch.delenv("ROS_PACKAGE_PATH", raising=False)
    path = make_robot(tmp_path, pendulum_spec(), base_visual=MESH.format(name="missing.stl"))
    with pytest.raises(SpecError) as err:
        SpecEnv(path)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith("URDF mesh 'package://my_arm_description/meshes/missing.stl' not found")
    assert str(tmp_path / "install" / "share" / "my_arm_description" / "meshes" / "missing.stl") in text


# ---- mistakes, each one line naming it --------------------------------------------------------------------
BLOCK_POSITION = ROS2_CONTROL.format(interface="position", low=-1.0, high=1.0)


@pytest.mark.parametrize("action,sim,block,message", [
    (None, {"drives": {"elbow": {"kp": 1.0}}}, "", "sim.drives: unknown key 'elbow'"),
    ({"interface": "effort", "names": ["elbow"]}, {}, "", "action.names: the URDF has no joint named 'elbow'"),
    ({"interface": "torque"}, {}, "", "action.interface: unknown interface 'torque'"),
    (None, {"drives": {"swing": {"interface": "torque"}}}, "", "sim.drives.swing: unknown interface 'torque'"),
    ({"interface": "velocity"}, {"drives": {"swing": {"kd": 5.0}}}, BLOCK_POSITION,
     "sim.drives.swing: joint 'swing' takes ['position'] in the URDF's <ros2_control> block, not 'velocity'"),
    ({"interface": "position"}, {}, "", "sim.drives.swing: the position interface needs a gain kp > 0"),
    ({"interface": "position"}, {"drives": {"swing": {"kp": 0.0}}}, "", "needs a gain kp > 0 (PD: kp, kd), got 0.0"),
    ({"interface": "position"}, {"drives": {"swing": {"kp": 5.0, "kd": -1.0}}}, "", "kd must be >= 0"),
    ({"interface": "velocity"}, {"drives": {"default": {"kd": -2.0}}}, "", "needs a gain kd > 0"),
    ({"interface": "position"}, {"drives": {"swing": {"kp": 5.0, "gear": 2.0}}}, "", "gear applies to the effort"),
    (None, {"drives": {"swing": {"effort": 0.0}}}, "", "effort limit must be > 0"),
    (None, {"physics": {"integrator": "verlet"}}, "", "sim.physics.integrator: choose one of"),
    (None, {"imu": {"link": "hand"}}, "", "sim.imu.link: the URDF has no link 'hand'"),
    (None, {"goals": {"g": {"axes": ["q"]}}}, "", "sim.goals.g.axes: choose from ['x', 'y', 'z']"),
])
def test_mistakes_are_one_line(tmp_path, action, sim, block, message):
    spec = pendulum_spec(**sim)
    if action is not None:
        spec["action"].update(action)
    path = make_robot(tmp_path, spec, ros2_control=block)
    with pytest.raises(SpecError) as err:
        SpecEnv(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_an_mjcf_actuator_of_another_interface_is_refused():
    data = yaml.safe_load(load_spec("cartpole").source.read_text())
    data["action"]["interface"] = "position"
    spec = parse_spec(data, source=load_spec("cartpole").source)
    with pytest.raises(SpecError, match="action.interface is 'position', but actuator 'slide' in the model "
                                        "applies 'effort'"):
        SpecEnv(spec)


def test_a_bad_urdf_is_one_line(tmp_path):
    path = make_robot(tmp_path, pendulum_spec())
    (tmp_path / "pendulum.urdf").write_text("<robot name='x'><link name='a'>")
    with pytest.raises(SpecError, match=r"^URDF .*pendulum.urdf does not load: "):
        SpecEnv(path)
    (tmp_path / "pendulum.urdf").unlink()
    with pytest.raises(SpecError, match="URDF 'pendulum.urdf' not found"):
        SpecEnv(path)


def test_a_joint_offering_several_interfaces_takes_the_first_unless_the_spec_picks(tmp_path):
    block = ROS2_CONTROL.format(interface="velocity", low=-1.5, high=1.5).replace(
        "<param name=\"kp\">", "<command_interface name=\"position\"/>\n      <param name=\"kp\">")
    spec = pendulum_spec({"topic": "cmd", "type": "std_msgs/msg/Float64MultiArray"})
    m = SpecEnv(make_robot(tmp_path, spec, ros2_control=block)).model
    assert actuator_interface(m, 0) == "velocity"
    np.testing.assert_array_equal(m.actuator_ctrlrange, [[-1.5, 1.5]])  # the block's min / max
    m = SpecEnv(make_robot(tmp_path, pendulum_spec({"interface": "position"}), ros2_control=block)).model
    assert actuator_interface(m, 0) == "position"
    np.testing.assert_array_equal(m.actuator_ctrlrange, [[-2.0, 2.0]])  # no min / max: the URDF joint's range


def test_position_on_a_continuous_joint_has_no_command_limits(tmp_path):
    path = make_robot(tmp_path, pendulum_spec({"interface": "position"}, drives={"swing": {"kp": 10.0}}))
    urdf = tmp_path / "pendulum.urdf"
    urdf.write_text(urdf.read_text().replace('type="revolute"', 'type="continuous"'))
    env = SpecEnv(path)
    assert not env.model.actuator_ctrllimited[0] and not env.model.jnt_limited[0]
    at_rest(env, 4.0)  # beyond pi: a continuous joint winds
    mujoco.mj_forward(env.model, env.data)
    assert env.data.qacc[0] == pytest.approx(min(10.0 * 4.0, 20.0) / INERTIA)


def test_package_meshes_resolve_through_ros_package_path(tmp_path, monkeypatch):
    _stl(tmp_path / "src" / "my_arm_description" / "meshes" / "base.stl")
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    monkeypatch.setenv("ROS_PACKAGE_PATH", str(tmp_path / "src"))
    assert SpecEnv(make_robot(tmp_path, pendulum_spec(), base_visual=MESH.format(name="base.stl"))).model.nmesh == 1


def test_sim_bridge_messages_of_a_urdf_imu_assemble_to_the_env_observation(tmp_path):
    """test_sim_bridge's parity, for a URDF robot read through JointState and an Imu at a link."""
    from liquid_control.core.observation import ObservationAssembler
    from liquid_control.ros.sim_sensors import MessageFiller
    from liquid_control.sim.observe import TopicReader

    spec = pendulum_spec({"interface": "position"}, drives={"swing": {"kp": 50.0, "kd": 5.0}},
                         imu={"link": "arm", "pos": [0.0, 0.0, 0.5]}, physics={"timestep": 0.002})  # with gravity
    spec["observation"] += [
        {"topic": "imu", "type": "sensor_msgs/msg/Imu", "field": field, "sim": {"sensor": f"imu_{sensor}"}}
        for field, sensor in (("angular_velocity", "gyro"), ("linear_acceleration", "accel"), ("orientation", "quat"))]
    env = SpecEnv(make_robot(tmp_path, spec))
    env.reset(seed=2)
    for action in (0.5, -0.3, 0.8):
        env.step(np.array([action]))
    assembler = ObservationAssembler(env.robot_spec)
    for topic in env.robot_spec.topics:
        filler = MessageFiller(TopicReader(env.model, env.data, env.robot_spec, topic), env.robot_spec)
        assert assembler.update(topic, filler.fill(1_000), 1.0) is None
    obs, fault = assembler.assemble(1.0)
    assert fault is None
    expected = env.sim_state_observation()
    np.testing.assert_array_equal(obs, expected)
    assert abs(expected[2]) > 0.1 and abs(expected[6]) > 1.0  # gyro y: the joint swings; accelerometer z: gravity
