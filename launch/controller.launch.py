"""The liquid controller alone, as a lifecycle node, with a ROS params YAML.

    ros2 launch liquid_control controller.launch.py robot:=cartpole model:=/path/policy.onnx use_sim_time:=false
    ros2 launch liquid_control controller.launch.py params_file:=/path/my_robot.yaml namespace:=arm1

The same node and YAML as `liquid-control run --params config/<robot>.yaml`. Arguments:
  robot         spec name; also picks the default params file, config/<robot>.yaml of this package
  params_file   a params YAML of your own instead, with a `liquid_controller:` (or `/**:`) section
  namespace     the node's namespace: its relative topics (sensors, command, e-stop, ~/...) move with it
  model         policy artifact path ('' = the robot's shipped policy)
  use_sim_time, autostart
robot, model, use_sim_time and autostart override the YAML.
"""
import tempfile

import yaml
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare
from launch_ros.utilities import make_namespace_absolute, prefix_namespace

NODE = "liquid_controller"


def _params_for_namespace(path: str, namespace: str) -> str:
    """The params file as the node in `namespace` reads it.

    ROS matches a params file's section names against the node's full name, and a bare `liquid_controller:`
    means `/liquid_controller`: under a namespace it would be ignored. So a copy is written with that
    section renamed to `<namespace>/liquid_controller`. Wildcard sections (`/**`, `/**/liquid_controller`)
    match anyway and stay as they are; a file that does not parse goes to the node unchanged, which
    reports it.
    """
    if namespace in ("", "/"):
        return path
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return path
    if not isinstance(doc, dict) or not ({NODE, "/" + NODE} & set(doc)):
        return path
    full = f"{namespace.rstrip('/')}/{NODE}"
    doc = {(full if key in (NODE, "/" + NODE) else key): value for key, value in doc.items()}
    with tempfile.NamedTemporaryFile("w", prefix=f"{NODE}_params_", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(doc, f)
    return f.name


def _controller(context):
    namespace = LaunchConfiguration("namespace").perform(context)
    # The namespace the node really gets: a PushRosNamespace of an including launch file prefixes ours.
    full_namespace = make_namespace_absolute(prefix_namespace(context.launch_configurations.get("ros_namespace"),
                                                              namespace)) or ""
    params_file = _params_for_namespace(LaunchConfiguration("params_file").perform(context), full_namespace)
    return [LifecycleNode(
        package="liquid_control",
        executable="controller",
        name=NODE,
        namespace=namespace,
        output="screen",
        parameters=[
            params_file,
            {
                # Typed explicitly: an empty model path must stay the empty string, not YAML null.
                "robot": ParameterValue(LaunchConfiguration("robot"), value_type=str),
                "model": ParameterValue(LaunchConfiguration("model"), value_type=str),
                "use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool),
                "autostart": ParameterValue(LaunchConfiguration("autostart"), value_type=bool),
            },
        ],
    )]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("robot", default_value="cartpole",
                              description="robot name: config/robots/<robot>.yaml (spec), config/<robot>.yaml (params)"),
        # A flat list of strings and substitutions is their concatenation, which every launch release
        # accepts (Humble's launch 1.0 refuses a list nested inside PathJoinSubstitution).
        DeclareLaunchArgument("params_file", default_value=[FindPackageShare("liquid_control"), "/config/",
                                                            LaunchConfiguration("robot"), ".yaml"],
                              description="ROS params YAML of the node (default: config/<robot>.yaml of this package)"),
        DeclareLaunchArgument("namespace", default_value="", description="ROS namespace of the node ('' = none)"),
        DeclareLaunchArgument("model", default_value="",
                              description="policy artifact path; empty = the robot's shipped policy"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="configure and activate at start-up (false: wait for a lifecycle manager)"),
        OpaqueFunction(function=_controller),
    ])
