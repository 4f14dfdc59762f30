"""arm3, the shipped URDF robot (sim/arm3.urdf, config/robots/arm3.yaml): joints, limits and interface from the
URDF and its <ros2_control> block, gains and goal from the spec, and its ros2_control controllers file."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import mujoco
import numpy as np
import pytest
import yaml

import test_ros2_control_config as r2c
from liquid_control.core.resources import share_dir
from liquid_control.core.spec import load_spec
from liquid_control.sim.actuators import actuator_interface
from liquid_control.sim.env import SpecEnv


# ---- arm3: the shipped URDF robot ------------------------------------------------------------------------
def test_arm3_compiles_with_the_urdf_joints_and_its_ros2_control_limits():
    env = SpecEnv("arm3")
    m = env.model
    joints = [m.joint(i).name for i in range(m.njnt)]
    assert joints[:3] == ["joint1", "joint2", "joint3"]  # the URDF's names, in its order
    assert joints[3:] == ["target_x", "target_z"]  # the spec's goal
    # Joint ranges from the URDF's <limit>, command ranges from the <ros2_control> block's min / max.
    np.testing.assert_array_equal(m.jnt_range[:3], [[-2.8, 2.8], [-2.5, 2.5], [-2.0, 2.0]])
    np.testing.assert_array_equal(m.jnt_actfrcrange[:3], [[-60, 60], [-30, 30], [-10, 10]])
    np.testing.assert_array_equal(m.actuator_ctrlrange, [[-2.8, 2.8], [-2.5, 2.5], [-2.0, 2.0]])
    assert [m.actuator(i).name for i in range(m.nu)] == ["joint1", "joint2", "joint3"]
    assert [actuator_interface(m, i) for i in range(m.nu)] == ["position"] * 3
    # The spec's gains: PD with kp, kd per joint.
    np.testing.assert_array_equal(m.actuator_gainprm[:, 0], [300.0, 150.0, 40.0])
    np.testing.assert_array_equal(m.actuator_biasprm[:, :3], [[0, -300, -20], [0, -150, -10], [0, -40, -2]])
    assert m.opt.timestep == 0.002 and m.opt.integrator == mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    assert mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "tool_link") >= 0  # a fixed joint's link stays a body
    # The command goes where ros2_control's forward_command_controller for the interface listens.
    a = env.robot_spec.action
    assert (a.topic, a.msg_type, a.interface) == ("position_controller/commands", "std_msgs/msg/Float64MultiArray",
                                                  "position")


def test_arm3_goal_is_placed_by_the_reset_and_stays():
    env = SpecEnv("arm3")
    goals = []
    for seed in range(3):
        env.reset(seed=seed)
        start = env.data.site("target").xpos.copy()
        for _ in range(20):
            env.step(np.zeros(3))
        np.testing.assert_allclose(env.data.site("target").xpos, start, atol=1e-9)
        assert start[1] == pytest.approx(0.18) and np.hypot(start[0], start[2] - 1.0) < 0.85
        goals.append(start)
    assert len({tuple(g) for g in goals}) == 3


def test_controllers_yaml_fits_arm3_and_a_wrong_interface_is_named():
    """test_ros2_control_config's rules (actuators read from the compiled URDF model) on arm3's file."""
    path = share_dir() / "config" / "ros2_control" / "arm3.yaml"
    assert r2c._robots(path) == ["arm3"]
    controllers = yaml.safe_load(path.read_text())
    spec = load_spec("arm3")
    assert r2c.problems(controllers, spec) == []
    controllers["position_controller"]["ros__parameters"]["interface_name"] = "effort"
    assert r2c.problems(controllers, spec) == [
        "position_controller interface_name 'effort'; the actuators take ['position']"]


def test_the_shipped_policy_reaches_through_the_node(tmp_path):
    """Controller node + sim bridge over DDS, lockstep, position commands on position_controller/commands:
    the node's actions are the policy's, and the episode scores far above holding the arm still."""
    env = SpecEnv("arm3")
    env.reset(seed=0)  # the sim bridge's default seed: the same goal
    still = sum(env.step(np.zeros(3))[1] for _ in range(150))
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "liquid_control.cli", "demo", "--robot", "arm3", "--duration", "3",
                           "--out", str(out), "--domain", os.environ["ROS_DOMAIN_ID"]],
                          capture_output=True, text=True, timeout=300)  # this run's domain: apart from other workers
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["success"] is True and summary["safe_ticks"] == 0 and summary["command_timeouts"] == 0
    assert summary["node_vs_offline_policy_max_abs_action_diff"] < 1e-5
    assert summary["return"] > 0.5 * still  # still: -240.0; the node's episode (0.5 s soft start): -80.4
