"""The liquid controller alone, as a lifecycle node, with the robot's params YAML from config/.

    ros2 launch liquid_control controller.launch.py robot:=cartpole model:=/path/policy.onnx use_sim_time:=false

The same node and YAML as `liquid-control run --params config/<robot>.yaml`. The launch arguments
override the YAML: robot, model ('' = the robot's shipped policy), use_sim_time, autostart.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    robot = LaunchConfiguration("robot")
    model = LaunchConfiguration("model")
    use_sim_time = LaunchConfiguration("use_sim_time")
    autostart = LaunchConfiguration("autostart")
    params_file = PathJoinSubstitution([FindPackageShare("liquid_control"), "config", [robot, ".yaml"]])
    return LaunchDescription([
        DeclareLaunchArgument("robot", default_value="cartpole",
                              description="robot name: config/<robot>.yaml (params) and config/robots/<robot>.yaml"),
        DeclareLaunchArgument("model", default_value="",
                              description="policy artifact path; empty = the robot's shipped policy"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="configure and activate at start-up (false: wait for a lifecycle manager)"),
        LifecycleNode(
            package="liquid_control",
            executable="controller",
            name="liquid_controller",
            namespace="",
            output="screen",
            parameters=[
                params_file,
                {
                    # Typed explicitly: an empty model path must stay the empty string, not YAML null.
                    "robot": ParameterValue(robot, value_type=str),
                    "model": ParameterValue(model, value_type=str),
                    "use_sim_time": ParameterValue(use_sim_time, value_type=bool),
                    "autostart": ParameterValue(autostart, value_type=bool),
                },
            ],
        ),
    ])
