"""config/ros2_control/*.yaml agree with the robot specs they serve (no DDS, no controller manager).

Each file names its robots in a `# robots: a, b` line. For each robot: the forward_command_controller is
named so that its `~/commands` topic is the spec's command topic, its joints are the joints of the spec's
actuators in command order (read from the MJCF), its interface is the actuators' kind (a <motor> takes an
effort), and the joint_state_broadcaster publishes every joint and field the spec observes on joint_states.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from liquid_control.core.resources import share_dir
from liquid_control.core.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
FILES = sorted((REPO / "config" / "ros2_control").glob("*.yaml"))
FORWARD = "forward_command_controller/ForwardCommandController"
BROADCASTER = "joint_state_broadcaster/JointStateBroadcaster"


def _robots(path: Path) -> list[str]:
    m = re.search(r"^# robots: (.+)$", path.read_text(), re.MULTILINE)
    assert m, f"{path.name}: no '# robots: ...' line"
    return [r.strip() for r in m.group(1).split(",")]


def _actuators(spec) -> dict[str, tuple[str, str]]:
    """Actuator name -> (command interface, joint), read from the spec's compiled model (MJCF or URDF)."""
    from liquid_control.sim.actuators import actuator_interface
    from liquid_control.sim.env import SpecEnv

    m = SpecEnv(spec).model
    return {m.actuator(i).name: (actuator_interface(m, i), m.joint(int(m.actuator_trnid[i][0])).name)
            for i in range(m.nu)}


def problems(controllers: dict, spec) -> list[str]:
    """What in a controllers YAML (parsed) does not fit the spec; [] when it all fits."""
    out = []
    manager = controllers.get("controller_manager", {}).get("ros__parameters", {})
    rate = manager.get("update_rate")
    if not isinstance(rate, int) or rate < spec.rate_hz:
        out.append(f"controller_manager update_rate {rate!r}: an integer of at least the spec's {spec.rate_hz:g} Hz")
    name, _, suffix = spec.action.topic.partition("/")
    if suffix != "commands" or spec.action.msg_type != "std_msgs/msg/Float64MultiArray":
        return out + [f"the spec's command {spec.action.topic} ({spec.action.msg_type}) is not a "
                      f"forward_command_controller's <name>/commands Float64MultiArray"]
    if manager.get(name, {}).get("type") != FORWARD:
        out.append(f"controller_manager has no {name}: type {FORWARD} (the spec commands {spec.action.topic})")
    params = controllers.get(name, {}).get("ros__parameters", {})
    actuators = _actuators(spec)
    joints = [actuators[a][1] for a in spec.action.names]
    if params.get("joints") != joints:
        out.append(f"{name} joints {params.get('joints')} != {joints} (the joints of actuators "
                   f"{list(spec.action.names)}, in command order)")
    kinds = {actuators[a][0] for a in spec.action.names}
    if kinds != {params.get("interface_name")}:
        out.append(f"{name} interface_name {params.get('interface_name')!r}; the actuators take {sorted(kinds)}")
    if manager.get("joint_state_broadcaster", {}).get("type") != BROADCASTER:
        out.append(f"controller_manager has no joint_state_broadcaster: type {BROADCASTER}")
    jsb = controllers.get("joint_state_broadcaster", {}).get("ros__parameters", {})
    for entry in spec.observation:
        if entry.msg_type != "sensor_msgs/msg/JointState":
            continue
        if entry.topic != "joint_states":
            out.append(f"the spec reads JointState from {entry.topic}; joint_state_broadcaster publishes joint_states")
        # The broadcaster publishes every joint and interface unless it lists them.
        missing = [j for j in entry.names if "joints" in jsb and j not in jsb["joints"]]
        if missing:
            out.append(f"joint_state_broadcaster joints lack {missing}, which the spec observes")
        if "interfaces" in jsb and entry.field not in jsb["interfaces"]:
            out.append(f"joint_state_broadcaster interfaces lack {entry.field!r}, which the spec observes")
    return out


def test_every_robot_with_a_forward_command_is_served():
    served = {robot for path in FILES for robot in _robots(path)}
    shipped = {p.stem for p in (REPO / "config" / "robots").glob("*.yaml")
               if load_spec(p.stem).action.msg_type == "std_msgs/msg/Float64MultiArray"}
    assert shipped and shipped <= served, f"no config/ros2_control file for {sorted(shipped - served)}"


@pytest.mark.parametrize("path,robot", [(p, r) for p in FILES for r in _robots(p)],
                         ids=lambda x: x.name if isinstance(x, Path) else x)
def test_controllers_yaml_fits_the_spec(path, robot):
    controllers = yaml.safe_load(path.read_text())
    assert problems(controllers, load_spec(robot)) == []
    # Every section is a ROS params section, as the controller manager's parser wants it.
    from rclpy.parameter import parameter_dict_from_yaml_file

    for node, section in controllers.items():
        assert set(section) == {"ros__parameters"}, f"{node}: {set(section)}"
        assert parameter_dict_from_yaml_file(str(path), target_nodes=[node])


def test_a_mismatch_is_named():
    """The check fails where it should: joints in the wrong order, a position interface for motors."""
    spec = load_spec("reacher")
    controllers = yaml.safe_load((REPO / "config" / "ros2_control" / "reacher.yaml").read_text())
    controllers["effort_controller"]["ros__parameters"].update(joints=["joint1", "joint0"], interface_name="position")
    controllers["joint_state_broadcaster"]["ros__parameters"]["interfaces"] = ["position"]
    found = "\n".join(problems(controllers, spec))
    assert "joints ['joint1', 'joint0'] != ['joint0', 'joint1']" in found
    assert "interface_name 'position'; the actuators take ['effort']" in found
    assert "interfaces lack 'velocity'" in found
